"""Correlation: detections of several sensors into bursts, bursts into transmissions."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from calibration.gain import CalibrationTable, SensorCalibration
from calibration.site import load_site
from dsp.errors import InputError
from dsp.records import Detection
from service.correlate import (
    GSM_FRAME_S,
    BurstGrouper,
    CorrelatorConfig,
    PatternTest,
    SensorStates,
    Transmission,
    TransmissionTracker,
    member_from,
)
from service.locate import Locator, LocatorConfig
from tests.conftest import DEMO_SITE

T0 = 1_767_648_600.0
TIMESLOT_S = GSM_FRAME_S / 8


@pytest.fixture(scope="module")
def demo():
    return load_site(DEMO_SITE)


@pytest.fixture(scope="module")
def loss(demo):
    """Mean loss (dB) from one point of each place to every sensor, by place id."""
    locator = Locator(demo)
    table = locator.loss_table_db(902.4e6)
    return {p.id: table[np.flatnonzero(locator.place_of_point == i)[0]] for i, p in enumerate(demo.places)}


class Chain:
    """Grouper and tracker fed like the engine feeds them."""

    def __init__(self, site, calibration: CalibrationTable | None = None, **overrides: float) -> None:
        self.site = site
        self.config = CorrelatorConfig(**overrides)
        locator = LocatorConfig(detect_snr_db=6.0)
        self.sensors = SensorStates(site, calibration or CalibrationTable(), self.config, locator)
        for i in range(len(site.sensors)):
            self.sensors.mark_listening(i, math.inf)
        self.grouper = BurstGrouper(self.config)
        self.tracker = TransmissionTracker(self.sensors, self.config, locator)
        self.late = []

    def feed(self, detections: list[Detection]) -> None:
        for d in sorted(detections, key=lambda d: d.t_start_s):
            index = self.site.sensor_index(d.sensor_id)
            member = member_from(d, self.sensors, index)
            self.sensors.observe(index, member.t_s, member.freq_hz, d, member.rssi_dbm)
            group, late = self.grouper.add(member)
            if late:
                self.late.append(self.tracker.add_late(group, member))

    def bursts(self, before_s: float = math.inf):
        return self.grouper.close(before_s)

    def transmissions(self, before_s: float = math.inf) -> list[Transmission]:
        found: list[Transmission] = []
        for group in self.bursts(before_s):
            self.sensors.track_clocks(group)
            tr = self.tracker.assign(group)
            if tr not in found:
                found.append(tr)
        return found


def det(sensor: str, t_s: float, rssi_dbm: float, *, freq_hz: float = 902.4e6, duration_s: float = 546e-6,
        bandwidth_hz: float = 250e3, snr_db: float | None = None, tech: str = "unknown",
        session_id: str | None = None) -> Detection:
    snr = rssi_dbm + 100.0 if snr_db is None else snr_db  # a noise floor of -100 dBm in the band
    return Detection(sensor_id=sensor, t_start_s=t_s, duration_s=duration_s, freq_hz=freq_hz,
                     bandwidth_hz=bandwidth_hz, power_dbfs=rssi_dbm + 15.0, snr_db=snr, tech=tech,
                     rssi_dbm=rssi_dbm, session_id=session_id)


def gsm_call(demo, loss_db: np.ndarray, *, timeslot: int, n_frames: int, tx_dbm: float = 15.0,
             arfcn_hz: float = 902.4e6, t0_s: float = T0, threshold_dbm: float = -92.0,
             rng: np.random.Generator | None = None, power_steps_db: np.ndarray | None = None) -> list[Detection]:
    """One burst per TDMA frame in ``timeslot``, at every sensor that gets it above the threshold."""
    rng = rng or np.random.default_rng(0)
    out = []
    for frame in range(n_frames):
        t = t0_s + frame * GSM_FRAME_S + timeslot * TIMESLOT_S
        power = tx_dbm + (0.0 if power_steps_db is None else power_steps_db[frame])
        levels = power - loss_db + rng.normal(0.0, 2.0, loss_db.shape)
        for s, level in enumerate(levels):
            if level >= threshold_dbm:
                out.append(det(demo.sensors[s].id, t + rng.normal(0, 5e-6), float(level),
                               freq_hz=arfcn_hz + rng.normal(0, 2e3)))
    return out


def test_one_burst_heard_by_several_sensors_is_one_group(demo) -> None:
    chain = Chain(demo)
    chain.feed([det("A1-S1", T0, -60.0), det("A1-S2", T0 + 40e-6, -70.0, freq_hz=902.403e6),
                det("A1-S3", T0 - 35e-6, -75.0, freq_hz=902.397e6), det("A2-S2", T0 + 10e-6, -85.0)])
    groups = chain.bursts()
    assert len(groups) == 1 and len(groups[0].members) == 4
    assert groups[0].best.detection.sensor_id == "A1-S1"  # the best-measured one sets time and frequency
    assert groups[0].t_ref_s == T0


def test_adjacent_timeslots_and_channels_stay_apart(demo, loss) -> None:
    """Two phones on one ARFCN in timeslots 3 and 4 (577 µs apart), a third on the next ARFCN."""
    rng = np.random.default_rng(1)
    detections = (gsm_call(demo, loss["A-1-03"], timeslot=3, n_frames=60, rng=rng)
                  + gsm_call(demo, loss["A-1-12"], timeslot=4, n_frames=60, rng=rng)
                  + gsm_call(demo, loss["A-1-05"], timeslot=3, n_frames=60, arfcn_hz=902.6e6, rng=rng))
    chain = Chain(demo)
    chain.feed(detections)
    transmissions = chain.transmissions()
    assert sorted(tr.n_bursts for tr in transmissions) == [60, 60, 60]
    phases = sorted(round((tr.slot_phase_s - (T0 % GSM_FRAME_S)) % GSM_FRAME_S / TIMESLOT_S, 1)
                    for tr in transmissions)
    assert phases == [3.0, 3.0, 4.0]
    assert sorted(round(tr.freq_hz / 1e5) for tr in transmissions) == [9024, 9024, 9026]


def test_a_weak_sensor_with_moved_edges_still_joins(demo) -> None:
    chain = Chain(demo)
    # the weak sensor caught only the middle 300 µs of the burst: its start is 250 µs late
    chain.feed([det("B2-S1", T0, -55.0), det("B2-S2", T0 + 20e-6, -62.0),
                det("B1-S1", T0 + 250e-6, -93.0, duration_s=300e-6)])
    groups = chain.bursts()
    assert len(groups) == 1 and len(groups[0].members) == 3
    # ... but a burst in the next timeslot does not
    chain.feed([det("B2-S1", T0 + 1.0 + TIMESLOT_S, -55.0), det("B1-S1", T0 + 1.0, -93.0)])
    assert len(chain.bursts()) == 2


def test_sensor_clocks_are_corrected_and_followed(demo, loss) -> None:
    """A sensor whose clock is 3 ms ahead (calibrated) and another drifting 120 µs ahead (followed)."""
    calibration = CalibrationTable({"A1-S3": SensorCalibration("A1-S3", clock_offset_s=3e-3)})
    detections = gsm_call(demo, loss["A-1-05"], timeslot=2, n_frames=200)
    shifted = []
    for d in detections:
        if d.sensor_id == "A1-S3":
            shifted.append(Detection(d.sensor_id, d.t_start_s + 3e-3, d.duration_s, d.freq_hz, d.bandwidth_hz,
                                     d.power_dbfs, d.snr_db, d.tech, d.rssi_dbm))
        elif d.sensor_id == "A1-S1":
            shifted.append(Detection(d.sensor_id, d.t_start_s + 120e-6, d.duration_s, d.freq_hz, d.bandwidth_hz,
                                     d.power_dbfs, d.snr_db, d.tech, d.rssi_dbm))
        else:
            shifted.append(d)
    chain = Chain(demo, calibration)
    chain.feed(shifted[: len(shifted) // 2])
    first = chain.transmissions(chain.grouper.watermark_s)
    chain.feed(shifted[len(shifted) // 2:])
    second = chain.transmissions()
    assert {id(tr) for tr in first} == {id(tr) for tr in second} and len(second) == 1
    assert second[0].n_bursts == 200
    s1, s3 = demo.sensor_index("A1-S1"), demo.sensor_index("A1-S3")
    assert second[0].n_heard[s3] == 200 and second[0].n_heard[s1] == 200
    # A1-S1's offset is learnt relative to the others (residuals below the tolerance move it)
    assert chain.sensors.clock_offset_s[s1] == pytest.approx(120e-6, abs=40e-6)


def test_power_control_keeps_one_transmission_and_its_pattern(demo, loss) -> None:
    steps = np.repeat(np.random.default_rng(2).choice([-8.0, 0.0, 6.0], size=10), 30)  # a step every 30 frames
    detections = gsm_call(demo, loss["B-1-06"], timeslot=5, n_frames=300, power_steps_db=steps,
                          rng=np.random.default_rng(3))
    chain = Chain(demo)
    chain.feed(detections)
    (tr,) = chain.transmissions()
    assert tr.n_bursts == 300
    heard = tr.n_heard >= 250
    assert heard.sum() >= 3
    # the pattern (levels relative to the transmission's power) keeps the loss differences
    relative = tr.pattern_db()[heard] + loss["B-1-06"][heard]
    assert np.ptp(relative) < 2.0
    assert np.all(tr.sum_sq_db2[heard] / tr.n_heard[heard] - tr.pattern_db()[heard] ** 2 < 9.0)  # spread ~2 dB


def test_a_long_pause_ends_a_transmission(demo, loss) -> None:
    first = gsm_call(demo, loss["A-2-10"], timeslot=1, n_frames=20)
    second = gsm_call(demo, loss["A-2-10"], timeslot=1, n_frames=20, t0_s=T0 + 5.0 * 1.0 + GSM_FRAME_S * 1083)
    chain = Chain(demo)
    chain.feed(first + second)
    assert [tr.n_bursts for tr in chain.transmissions()] == [20, 20]


def test_two_lte_phones_on_one_carrier_stay_apart(demo, loss) -> None:
    """Subframes of two phones on one 5 MHz carrier, interleaved, at hopping allocations."""
    rng = np.random.default_rng(4)
    detections = []
    for k in range(200):
        place = "A-1-07" if k % 2 == 0 else "B-2-02"
        t = T0 + k * 1e-3
        f = 903.0e6 + rng.uniform(-2.0e6, 2.0e6)
        levels = 5.0 - loss[place] + rng.normal(0, 2.0, len(demo.sensors))
        for s, level in enumerate(levels):
            if level >= -92.0:
                detections.append(det(demo.sensors[s].id, t, float(level), freq_hz=f, duration_s=1e-3,
                                      bandwidth_hz=720e3, tech="lte"))
    chain = Chain(demo)
    chain.feed(detections)
    transmissions = chain.transmissions()
    assert sorted(tr.n_bursts for tr in transmissions) == [100, 100]
    wings = {tr.number: {demo.sensors[s].wing for s in np.flatnonzero(tr.n_heard > 50)} for tr in transmissions}
    assert sorted(tuple(w) for w in wings.values()) == [("A",), ("B",)]


def test_an_iq_image_is_dropped_but_a_weak_real_burst_is_not(demo) -> None:
    chain = Chain(demo)
    fc = 902.4e6
    strong = [det("A1-S1", T0, -40.0, freq_hz=fc + 600e3), det("A1-S2", T0 + 2e-6, -48.0, freq_hz=fc + 600e3)]
    image = [det("A1-S1", T0, -77.0, freq_hz=fc - 600e3), det("A1-S2", T0 + 2e-6, -85.0, freq_hz=fc - 600e3)]
    # a genuine weak burst at the same moment, heard where the strong one is not loud
    other = [det("A1-S1", T0 + 1e-6, -80.0, freq_hz=fc - 200e3), det("B1-S1", T0, -70.0, freq_hz=fc - 200e3)]
    chain.feed(strong + image + other)
    groups = sorted(chain.bursts(), key=lambda g: g.freq_hz)
    assert [round(g.freq_hz / 1e3) for g in groups] == [902200, 903000]
    # the image's two views are gone; so is A1-S1's view of the weak burst, which a 40 dB
    # stronger burst at the same instant makes indistinguishable from an image there
    assert chain.grouper.n_images == 3
    assert [m.detection.sensor_id for m in groups[0].members] == ["B1-S1"]


def test_a_late_detection_moves_a_sensor_from_missed_to_heard(demo, loss) -> None:
    chain = Chain(demo)
    detections = gsm_call(demo, loss["A-1-05"], timeslot=0, n_frames=10)
    late_sensor = "A2-S2"
    chain.feed([d for d in detections if d.sensor_id != late_sensor])
    (tr,) = chain.transmissions(chain.grouper.watermark_s + 1e-3)
    s = demo.sensor_index(late_sensor)
    assert tr.n_heard[s] == 0 and tr.n_missed[s] == 10
    late = [d for d in detections if d.sensor_id == late_sensor]
    assert late
    chain.feed(late)
    assert len(chain.late) == len(late) and all(t is tr for t in chain.late)
    assert tr.n_heard[s] == len(late) and tr.n_missed[s] == 10 - len(late)


def test_noise_floor_and_detection_threshold_are_learnt(demo) -> None:
    chain = Chain(demo)
    # rssi - snr = -100 dBm in 250 kHz: -154 dBm/Hz
    chain.feed([det("A1-S1", T0 + k * 0.01, -70.0) for k in range(20)])
    s = demo.sensor_index("A1-S1")
    assert chain.sensors.noise_dbm_per_hz[s] == pytest.approx(-100.0 - 10 * math.log10(250e3))
    thresholds = chain.sensors.thresholds_dbm(200e3)
    assert thresholds[s] == pytest.approx(-154.0 + 10 * math.log10(200e3) + 6.0, abs=0.1)
    # sensors never heard from borrow the others' noise
    assert thresholds[demo.sensor_index("B2-S3")] == pytest.approx(thresholds[s])


def test_learnt_detection_snr_follows_the_detector(demo) -> None:
    """With no configured SNR, the low edge of the detections' own SNRs is the threshold."""
    sensors = SensorStates(demo, CalibrationTable(), CorrelatorConfig(), LocatorConfig())
    rng = np.random.default_rng(0)
    for k, snr in enumerate(rng.uniform(-3.0, 30.0, 600)):
        sensors.observe(0, T0 + k, 902.4e6, det("A1-S1", T0 + k, -80.0, snr_db=float(snr)), -80.0)
    assert sensors.detect_snr_db() == pytest.approx(-3.0 + 0.05 * 33.0, abs=1.0)


def test_pattern_test_tells_phones_apart(demo, loss) -> None:
    rng = np.random.default_rng(6)
    chain = Chain(demo)
    chain.feed(gsm_call(demo, loss["A-1-03"], timeslot=1, n_frames=80, rng=rng)
               + gsm_call(demo, loss["A-1-03"], timeslot=1, n_frames=80, t0_s=T0 + 10.0, tx_dbm=9.0, rng=rng)
               + gsm_call(demo, loss["A-1-14"], timeslot=1, n_frames=80, t0_s=T0 + 20.0, rng=rng))
    a, b, c = chain.transmissions()
    test = PatternTest(5.0, 2.0, 15.0, 0.99, len(demo.sensors))
    assert test.mismatch(a, b) <= 1.0  # one phone, 6 dB quieter
    assert test.mismatch(a, c) > 1.0  # another cell down the corridor


def test_config_is_validated() -> None:
    with pytest.raises(InputError, match="gsm_slot_tolerance_s"):
        CorrelatorConfig(gsm_slot_tolerance_s=3e-3)
    with pytest.raises(InputError, match="burst_time_tolerance_s"):
        CorrelatorConfig.from_dict({"burst_time_tolerance_s": 0.0})
    with pytest.raises(InputError, match="unknown key"):
        CorrelatorConfig.from_dict({"burst_tolerance_s": 1e-4})
    assert CorrelatorConfig.from_dict({"burst_time_tolerance_s": 1e-4}).burst_time_tolerance_s == 1e-4


def test_a_weak_sensor_that_caught_a_sliver_of_the_burst_joins_it(demo) -> None:
    """Door antennas at the far end of a wing catch 100-250 µs of a 546 µs burst near their
    noise: such a view is shorter than the shape rule allows, but lies inside the burst."""
    chain = Chain(demo)
    chain.feed([det("B2-S1", T0, -55.0), det("B2-S2", T0 + 20e-6, -62.0),
                det("B1-S1", T0 + 200e-6, -99.0, duration_s=150e-6)])  # 1 dB SNR
    groups = chain.bursts()
    assert len(groups) == 1 and len(groups[0].members) == 3
    # a strong view that short is another signal (its edges are well measured): not the burst
    chain.feed([det("B2-S1", T0 + 1.0, -55.0), det("B1-S1", T0 + 1.0 + 200e-6, -70.0, duration_s=150e-6)])
    assert [len(g.members) for g in chain.bursts()] == [1, 1]


def test_a_burst_cut_differently_does_not_start_a_rival_of_the_call(demo, loss) -> None:
    """At frame 10 the loud sensors ran the burst together with the next timeslot's (one
    1.4 ms detection each), the weak ones saw it alone: two groups. The weak one belongs to
    the call (the loud sensors did hear the burst, cut differently) and must not start a
    transmission of its own, which would then take the call's later bursts: its pattern,
    from one burst at two sensors, fits every burst loosely. Both happened in simulated door
    antenna scenes, as fragments of 25-100 bursts beside the call in another cell."""
    rng = np.random.default_rng(7)
    call = gsm_call(demo, loss["A-1-05"], timeslot=3, n_frames=60, tx_dbm=25.0, rng=rng)
    t_cut = T0 + 10 * GSM_FRAME_S + 3 * TIMESLOT_S
    burst = sorted((d for d in call if abs(d.t_start_s - t_cut) < 1e-4), key=lambda d: d.rssi_dbm)
    assert len(burst) >= 5
    merged = [replace(d, duration_s=1400e-6) for d in burst[2:]]
    detections = [d for d in call if abs(d.t_start_s - t_cut) >= 1e-4] + burst[:2] + merged
    chain = Chain(demo)
    chain.feed(detections)
    transmissions = chain.transmissions()
    call_tr = max(transmissions, key=lambda tr: tr.n_bursts)
    assert call_tr.n_bursts == 60  # 59 whole bursts and the weak sensors' view of frame 10
    assert [tr.n_bursts for tr in transmissions if tr is not call_tr] == [1]  # the merged views


def test_an_lte_phone_hopping_over_its_carrier_stays_one_transmission(demo, loss) -> None:
    """Each sensor's classifier opens a new LTE session when an allocation hops further than
    its tolerance: session ids that disagree must not split the phone's transmission (they did:
    fragments of 3-34 bursts with alerts of their own, bench dense_events)."""
    rng = np.random.default_rng(6)
    detections = []
    for k in range(120):
        t = T0 + k * 1e-3
        edge = k % 2  # PUCCH-like slots alternating between the carrier's two edges
        f = 901.74e6 if edge == 0 else 903.0e6 + rng.uniform(-0.5e6, 0.5e6)
        levels = 5.0 - loss["A-2-10"] + rng.normal(0, 2.0, len(demo.sensors))
        for s, level in enumerate(levels):
            if level >= -92.0:
                sensor = demo.sensors[s].id
                detections.append(det(sensor, t, float(level), freq_hz=f, duration_s=0.5e-3, bandwidth_hz=180e3,
                                      tech="lte", session_id=f"{sensor}:{edge + 1}"))
    chain = Chain(demo)
    chain.feed(detections)
    assert [tr.n_bursts for tr in chain.transmissions()] == [120]


def test_a_clear_view_outvotes_labels_read_near_the_noise(demo) -> None:
    """A burst's group is GSM-like by its members' labels; views 0-3 dB above the noise
    (a PUCCH slot there looks GSM-sized) count a fifth of one read well above it."""
    chain = Chain(demo)
    ids = [s.id for s in demo.sensors]
    members = [det(ids[0], T0, -75.0, snr_db=20.0, tech="lte", duration_s=0.5e-3, bandwidth_hz=180e3)]
    members += [det(sid, T0, -99.0, snr_db=1.5, tech="gsm", duration_s=0.5e-3, bandwidth_hz=180e3)
                for sid in ids[1:4]]
    chain.feed(members)
    (group,) = chain.bursts()
    assert not chain.tracker.is_gsm_like(group)
    chain = Chain(demo)
    chain.feed([replace(m, snr_db=12.0) if m.tech == "gsm" else m for m in members])  # read well: they count
    (group,) = chain.bursts()
    assert chain.tracker.is_gsm_like(group)
