"""Band plan maths: channels tile the bands, schedules are UTC-aligned cycles, coverage and
revisit follow from dwell and settle, splitting between dongles is optimal, and the
expected detection times match what the activity patterns imply."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.errors import InputError
from sdr.bandplan import (
    ACTIVITIES,
    DEFAULT_BANDS,
    GSM_51_MULTIFRAME_S,
    GSM_FRAME_S,
    GSM_SLOT_S,
    SDCCH_CATCH_DWELL_S,
    Band,
    BandPlan,
    Channel,
    ScanSchedule,
    band_coverage,
    band_estimate,
    channelize,
    describe,
    first_detection,
    split_channels,
)


@pytest.mark.parametrize("band", DEFAULT_BANDS, ids=lambda b: b.name)
def test_channels_tile_the_band_within_the_usable_width(band: Band) -> None:
    channels = channelize(band, 2.0e6)
    assert len(channels) == math.ceil(band.width_hz / 2.0e6)
    assert channels[0].low_hz == band.low_hz and channels[-1].high_hz == pytest.approx(band.high_hz)
    for a, b in itertools.pairwise(channels):
        assert a.high_hz == pytest.approx(b.low_hz)  # no gap, no overlap
    for c in channels:
        assert c.width_hz <= 2.0e6 + 1e-6
        assert abs(c.center_freq_hz - (c.low_hz + c.high_hz) / 2) <= 0.5
        assert isinstance(c.center_freq_hz, int)


def test_default_plan_counts() -> None:
    plan = BandPlan()
    assert [len(channelize(b)) for b in plan.bands] == [15, 15, 18, 28]
    gsm = plan.band("GSM-900")
    assert gsm.dwell_s >= SDCCH_CATCH_DWELL_S  # one SDCCH burst is sure to fall in each visit
    assert SDCCH_CATCH_DWELL_S == pytest.approx(GSM_51_MULTIFRAME_S - 3 * GSM_FRAME_S + GSM_SLOT_S)


def _two_band_plan() -> BandPlan:
    return BandPlan((Band("A", 700_000_000, 710_000_000, 0.1), Band("B", 900_000_000, 904_000_000, 0.3)),
                    2.0e6, 0.02)


def test_cycle_coverage_and_revisit_by_hand() -> None:
    plan = _two_band_plan()
    _, (schedule,) = plan.schedules(1)
    assert len(schedule.visits) == 7
    assert schedule.cycle_s == pytest.approx(5 * 0.12 + 2 * 0.32)  # 1.24 s
    a, b = plan.coverage([schedule])
    assert a.watched_fraction == pytest.approx(0.1 / 1.24)
    assert b.watched_fraction == pytest.approx(0.3 / 1.24)
    assert a.revisit_s == b.revisit_s == pytest.approx(1.24)
    assert schedule.duty == pytest.approx((5 * 0.1 + 2 * 0.3) / 1.24)


def test_schedule_is_aligned_to_utc() -> None:
    _, (schedule,) = _two_band_plan().schedules(1)
    t0 = 1_795_000_000.0
    index, end = schedule.visit_at(t0)
    k = math.floor(t0 / schedule.cycle_s)
    visit = schedule.visits[index]
    assert k * schedule.cycle_s + visit.offset_s <= t0 < end == pytest.approx(k * schedule.cycle_s + visit.end_s)
    for n in (1, 7, 1000):  # same slot a whole number of cycles later, on any node
        later_index, later_end = schedule.visit_at(t0 + n * schedule.cycle_s)
        assert later_index == index and later_end == pytest.approx(end + n * schedule.cycle_s)
    # walking slot ends visits every channel once per cycle, in order
    t, seen = k * schedule.cycle_s, []
    for _ in range(len(schedule.visits)):
        i, t = schedule.visit_at(t + 1e-6)
        seen.append(i)
    assert seen == list(range(len(schedule.visits)))


def test_a_late_retune_skips_a_slot_it_could_not_watch() -> None:
    _, (schedule,) = _two_band_plan().schedules(1)
    k = 1_795_000_000.0 // schedule.cycle_s
    second, third = schedule.visits[1], schedule.visits[2]
    first_freq = schedule.visits[0].channel.center_freq_hz
    for into_s in np.linspace(0.0, second.slot_s, 41, endpoint=False):
        t_s = k * schedule.cycle_s + second.offset_s + into_s + 1e-6  # clear of the rounding at the slot start
        index, end_s = schedule.visit_to_tune(t_s, first_freq)
        if into_s + second.settle_s < second.slot_s:  # time left to watch after settling: stay
            assert index == 1 and end_s == pytest.approx(k * schedule.cycle_s + second.end_s)
        else:  # settling would end after the slot: go on to the next one
            assert index == 2 and end_s == pytest.approx(k * schedule.cycle_s + third.end_s)
        # already on the slot's channel: no settling, stay whatever is left
        assert schedule.visit_to_tune(t_s, second.channel.center_freq_hz)[0] == 1
    # the last slot's successor is the next cycle's first
    last = schedule.visits[-1]
    t_s = k * schedule.cycle_s + last.end_s - last.settle_s / 2
    index, end_s = schedule.visit_to_tune(t_s, first_freq)
    assert index == 0 and end_s == pytest.approx((k + 1) * schedule.cycle_s + schedule.visits[0].end_s)


def test_fixed_tuning_watches_its_slice_all_the_time() -> None:
    plan = BandPlan()
    fixed = ScanSchedule.fixed(plan.fixed_channel(902_400_000, 2.4e6))
    assert fixed.is_fixed and fixed.visit_at(1e9) == (0, math.inf)
    coverage = band_coverage(plan.band("GSM-900"), [fixed])
    assert coverage.watched_fraction == pytest.approx(2.0 / 35.0)
    assert coverage.revisit_s == 0.0
    outside = plan.fixed_channel(433_920_000, 2.4e6)
    assert outside.band == "433.920MHz"
    assert plan.coverage([ScanSchedule.fixed(outside)])[-1].watched_fraction == 1.0


def _brute_force_max_cycle(costs: list[float], n: int) -> float:
    best = math.inf
    for cuts in itertools.combinations(range(1, len(costs)), n - 1):
        bounds = (0, *cuts, len(costs))
        best = min(best, max(sum(costs[a:b]) for a, b in itertools.pairwise(bounds)))
    return best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0.05, 0.1, 0.23, 0.4]), min_size=2, max_size=9), st.integers(1, 4))
def test_split_is_contiguous_and_optimal(dwells: list[float], n: int) -> None:
    n = min(n, len(dwells))
    channels = [Channel("X", i, 800_000_000 + 2_000_000 * i, 0.0, 1.0, d) for i, d in enumerate(dwells)]
    parts = split_channels(channels, n, settle_s=0.02)
    assert len(parts) == n and all(parts)
    assert [c for part in parts for c in part] == channels  # contiguous, in order, nothing lost
    longest = max(sum(0.02 + c.dwell_s for c in part) for part in parts)
    assert longest == pytest.approx(_brute_force_max_cycle([0.02 + d for d in dwells], n))


def test_more_dongles_shorten_the_revisit() -> None:
    plan = BandPlan()
    (_, (one,)), (_, two) = plan.schedules(1), plan.schedules(2)
    assert one.cycle_s == pytest.approx(sum(0.02 + c.dwell_s for c in plan.channels()))
    assert max(s.cycle_s for s in two) <= 0.52 * one.cycle_s
    for band in plan.bands:  # every band still fully covered, each frequency watched twice as often
        cov1, cov2 = band_coverage(band, [one]), band_coverage(band, two)
        assert cov2.watched_fraction == pytest.approx(2 * cov1.watched_fraction, rel=0.05)
    with pytest.raises(ValueError, match="dongles for"):
        split_channels(plan.channels(["B28"]), 16)


def test_pinned_dongles_take_their_bands_and_the_rest_is_shared() -> None:
    plan = BandPlan()
    pinned, shared = plan.schedules(1, [["GSM-900"]])
    assert {c.band for c in pinned[0].channels} == {"GSM-900"}
    assert {c.band for c in shared[0].channels} == {"B28", "B20", "B3"}


def test_call_detection_time_is_half_a_revisit() -> None:
    _, (schedule,) = BandPlan().schedules(1)
    channel = next(c for c in schedule.channels if c.band == "GSM-900")
    estimate = first_detection(schedule, channel, ACTIVITIES["gsm_call"])
    assert estimate.p_detect == 1.0
    # a continuous emitter waits for its channel's next visit: uniform over one cycle
    assert estimate.mean_s == pytest.approx(schedule.cycle_s / 2, rel=0.06)
    assert estimate.p90_s is not None and estimate.p90_s <= schedule.cycle_s


def test_sms_catch_probability_follows_the_dwell() -> None:
    """One visit per SMS at most (cycle 10 s > 2.5 s): P = P(a visit during the SMS) x P(a burst in it)."""
    sms = ACTIVITIES["gsm_sms"]
    for dwell_s in (0.05, 0.1, 0.3):
        channel = Channel("G", 0, 900_000_000, 899e6, 901e6, dwell_s)
        filler = Channel("F", 0, 700_000_000, 699e6, 701e6, 10.0 - dwell_s - 0.04)
        schedule = ScanSchedule.scanning([channel, filler], settle_s=0.02)
        estimate = first_detection(schedule, channel, sms, n_phases=4000)
        span = 3 * GSM_FRAME_S  # the 4 bursts of an SDCCH block
        p_burst = min(1.0, (dwell_s - GSM_SLOT_S + span) / GSM_51_MULTIFRAME_S)
        p_visit = (sms.duration_s + dwell_s - span) / schedule.cycle_s
        assert estimate.p_detect == pytest.approx(p_visit * p_burst, rel=0.12), dwell_s
    fixed = first_detection(ScanSchedule.fixed(channel), channel, sms)
    assert fixed.p_detect == 1.0 and fixed.mean_s == pytest.approx(GSM_SLOT_S)


def test_default_plan_meets_its_documented_figures() -> None:
    """The figures of sdr/bandplan.py's docstring and node.example.toml."""
    plan = BandPlan()
    _, one = plan.schedules(1)
    _, two = plan.schedules(2)
    assert one[0].cycle_s == pytest.approx(8.56, abs=0.01)
    call = band_estimate(plan, "B20", one, ACTIVITIES["gsm_call"])
    lte = band_estimate(plan, "B20", one, ACTIVITIES["lte_data"])
    sms1 = band_estimate(plan, "GSM-900", one, ACTIVITIES["gsm_sms"])
    sms2 = band_estimate(plan, "GSM-900", two, ACTIVITIES["gsm_sms"])
    assert call is not None and call.mean_s is not None and call.mean_s < 4.5
    assert lte is not None and lte.p_detect == 1.0
    assert sms1 is not None and sms2 is not None
    assert 0.25 < sms1.p_detect < 0.35 and 0.55 < sms2.p_detect < 0.7
    text = describe(plan, one)
    assert "GSM-900" in text and "8.56" in text


def test_fixed_tuning_sees_only_its_share_of_the_band() -> None:
    plan = BandPlan()
    fixed = [ScanSchedule.fixed(plan.fixed_channel(902_400_000, 2.4e6))]
    estimate = band_estimate(plan, "GSM-900", fixed, ACTIVITIES["gsm_call"])
    assert estimate is not None and estimate.p_detect == pytest.approx(2.0 / 35.0)
    assert band_estimate(plan, "B3", fixed, ACTIVITIES["gsm_call"]) is None


@pytest.mark.parametrize(("bands", "field"), [
    ((Band("B3", 1_710_000_000, 1_785_000_000, 0.05),), "bands[0]"),  # above the R820T's 1766 MHz
    ((Band("X", 900_000_000, 890_000_000, 0.05),), "bands[0].high_mhz"),
    ((Band("X", 880_000_000, 890_000_000), Band("X", 890_000_000, 900_000_000)), "bands[1].name"),
])
def test_bad_plans_name_the_field(bands: tuple[Band, ...], field: str) -> None:
    with pytest.raises(InputError) as error:
        BandPlan(bands)
    assert error.value.field == field


def test_watch_windows_exclude_the_settle_time() -> None:
    _, (schedule,) = _two_band_plan().schedules(1)
    for visit in schedule.visits:
        (start, end), = schedule.watch_windows(visit.channel)
        assert start == pytest.approx(visit.offset_s + 0.02) and end - start == pytest.approx(visit.dwell_s)
    total = sum(e - s for v in schedule.visits for s, e in schedule.watch_windows(v.channel))
    assert total / schedule.cycle_s == pytest.approx(schedule.duty)
    assert np.isclose(schedule.visits[-1].end_s, schedule.cycle_s)
