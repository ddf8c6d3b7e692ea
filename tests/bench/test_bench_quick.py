"""The detector benchmarks run end to end in quick mode and their figures are physically plausible.

No timing is asserted: the quick mode is a smoke test of the machinery (generation,
scoring, theory, counting, JSON and plots), not a measurement.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from bench import detect_false_alarms as fa
from bench import detect_sensitivity as sens
from bench.common import CENTER_FREQ_HZ, SAMPLE_RATE_HZ, crossing, isotonic, probit_crossing
from bench.run import format_summary, main
from dsp.detector import BoxTest, DetectorConfig
from dsp.waveform import render_burst


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench")
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        # the detector benchmarks; the others have quick smoke tests of their own modules
        assert main(["--quick", "--only", "sensitivity", "false_alarms", "throughput", "--out", str(out)]) == 0
    return out, buffer.getvalue()


def _load(out: Path, name: str) -> dict[str, Any]:
    return json.loads((out / name).read_text())


def test_every_benchmark_writes_json_and_png(quick_run: tuple[Path, str]) -> None:
    out, printed = quick_run
    for stem in ("detect_sensitivity", "detect_false_alarms", "detect_throughput"):
        assert _load(out, f"{stem}.json")["mode"] == "quick"
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = _load(out, "summary.json")
    assert set(summary) == {"sensitivity", "false_alarms", "throughput"}
    assert "Sensitivity" in printed and "False alarms" in printed and "Throughput" in printed
    assert printed.strip() == format_summary(summary)


def test_sensitivity_curves_rise_with_snr_and_sit_right_of_theory(quick_run: tuple[Path, str]) -> None:
    result = _load(quick_run[0], "detect_sensitivity.json")
    assert set(result["waveforms"]) == {w.name for w in sens.WAVEFORMS}
    for name, e in result["waveforms"].items():
        snr = np.array(e["snr_db"])
        theory = np.array(e["theory_pd"])
        assert np.all(np.diff(snr) > 0)
        assert np.all(np.diff(theory) > 0) or np.all(theory[-2:] > 0.999), name
        assert snr[0] < e["theory_snr_db_at_pd90"] < snr[-1]
        # the ideal detector at 1 FA/h is more sensitive than at the detector's per-test Pfa
        assert e["theory_snr_db_at_pd90"] < e["theory_snr_db_at_pd90_config_pfa"]
        for curve in (e, e["rtl_sdr"]):
            pd = np.array(curve["pd"])
            assert len(pd) == len(snr) and np.all((pd >= 0) & (pd <= 1))
            assert pd[0] <= 0.25 and pd[-1] >= 0.9 and pd[-1] > pd[0], (name, pd)
            # no detector beats the ideal one by more than the quick mode's sampling error
            assert curve["gap_db_at_pd90"] is not None and curve["gap_db_at_pd90"] > -1.5, (name, curve)
            assert curve["n_spurious_detections"] >= 0


def test_false_alarm_run_counts_tests_and_exceedances(quick_run: tuple[Path, str]) -> None:
    result = _load(quick_run[0], "detect_false_alarms.json")
    assert 19.0 < result["observed_s"] <= 20.0  # 20 s minus the noise-floor warm-up
    assert result["false_alarms_per_hour"] == pytest.approx(result["n_false_alarms"] / (result["observed_s"] / 3600))
    assert [s["gain_db"] for s in result["segments"][0]["gain_steps"]] == list(fa.GAIN_STEPS_DB[:3])
    steady, after = result["steady"], result["after_gain_steps"]
    assert steady["hours"] == pytest.approx((result["observed_s"] - 2 * fa.TRANSIENT_S) / 3600)
    assert steady["n_false_alarms"] + after["n_false_alarms"] == result["n_false_alarms"]
    assert [s["to_gain_db"] for s in after["steps"]] == list(fa.GAIN_STEPS_DB[1:3])
    both = result["per_test_pfa_steady"]["n_tests"] + result["per_test_pfa_after_gain_steps"]["n_tests"]
    assert result["per_test_pfa"]["n_tests"] == both
    pfa = result["per_test_pfa_steady"]
    assert pfa["levels"][0] == pytest.approx(1e-2) and pfa["configured_pfa"] == DetectorConfig().pfa
    for name, t in pfa["templates"].items():
        assert t["n_tests"] > 500_000, name
        assert np.all(np.diff(t["exceedances"]) <= 0), name  # higher threshold, fewer exceedances
    narrow = pfa["templates"]["gsm_normal"]["observed_pfa"][0]
    assert 0.1 * 1e-2 < narrow < 3 * 1e-2  # noise normalized by the floor follows the configured law


def test_throughput_reports_both_rates_and_memory(quick_run: tuple[Path, str]) -> None:
    result = _load(quick_run[0], "detect_throughput.json")
    p = result["pipeline"]
    assert p["real_time_factor"] == pytest.approx(result["recording"]["duration_s"] / p["best_s"])
    assert p["n_detections"] > result["idle_band"]["n_detections"]
    assert result["bare_fft_power"]["msps"]["numpy"] > 0 and result["bare_fft_power"]["msps"]["scipy"] > 0
    assert 0 < result["fraction_of_bare_fft_power"] < 2
    assert result["memory"]["peak_traced_mb"] > 0
    assert result["recording"]["n_truth_bursts"] > 100
    curve = result["load_curve"]
    rates = {p["scene"]: p["detections_per_s"] for p in curve["points"]}
    assert list(rates) == ["idle", "volte", "gsm_dtx", "lte_data", "gsm_call", "busy"]
    assert rates["idle"] == 0 and rates["busy"] > max(rates["gsm_dtx"], rates["gsm_call"], rates["lte_data"])
    assert math.isfinite(curve["fit_cost_per_detection_us"])  # quick timings are too short to be figures


# ---------------------------------------------------------------------------------------
# The pieces, checked against physics and arithmetic


def test_theory_matches_a_monte_carlo_energy_detector() -> None:
    tw, snr_db, pfa = 40, 0.0, 1e-3
    rng = np.random.default_rng(0)
    n_trials = 20_000
    noise = (rng.standard_normal((n_trials, tw)) + 1j * rng.standard_normal((n_trials, tw))) / math.sqrt(2)
    signal = 10 ** (snr_db / 20) * np.exp(2j * np.pi * rng.random((n_trials, tw)))  # any shape, same energy
    energy = np.sum(np.abs(noise + signal) ** 2, axis=1)
    threshold = stats.gamma.isf(pfa, tw)
    assert float(sens.theory_pd(snr_db, tw, pfa)) == pytest.approx(np.mean(energy > threshold), abs=0.015)
    assert float(sens.theory_pd(-60.0, tw, pfa)) == pytest.approx(pfa, rel=0.01)
    snr90 = sens.theory_snr_db(0.9, tw, pfa)
    assert float(sens.theory_pd(snr90, tw, pfa)) == pytest.approx(0.9, abs=1e-6)


def test_theory_pfa_spreads_the_hourly_budget_over_the_slot_tiling() -> None:
    # GSM: 546.5 µs × 200 kHz slots, 12 across 2.4 MHz, 6587 per second
    slots = sens.slots_per_hour(546.5e-6, 200e3)
    assert slots == pytest.approx(3600 / 546.5e-6 * 12)
    assert sens.theory_pfa(546.5e-6, 200e3, 2.0) * slots == pytest.approx(2.0)


@pytest.mark.parametrize("waveform", sens.WAVEFORMS, ids=lambda w: w.name)
def test_rendered_burst_energy_is_its_nominal_power_times_duration(waveform: sens.Waveform) -> None:
    # the SNR definition relies on it: amplitude² · T · fs is the burst's energy
    rng = np.random.default_rng(1)
    offset = sens.burst_centres_hz(1, waveform.bandwidth_hz, DetectorConfig().dc_guard_hz, rng)[0]
    y = render_burst(waveform.build(CENTER_FREQ_HZ + offset, rng), rng, SAMPLE_RATE_HZ, CENTER_FREQ_HZ)
    energy = float(np.sum(np.abs(y.astype(np.complex128)) ** 2))
    assert energy / (waveform.duration_s * SAMPLE_RATE_HZ) == pytest.approx(1.0, abs=0.03)


def test_burst_centres_stay_in_band_and_off_dc() -> None:
    rng = np.random.default_rng(2)
    f = sens.burst_centres_hz(10_000, 200e3, 10e3, rng)
    assert np.all(np.abs(f) - 100e3 >= 10e3)
    assert np.all(np.abs(f) + 100e3 <= 1.2e6 - sens.EDGE_MARGIN_HZ)
    assert np.mean(f > 0) == pytest.approx(0.5, abs=0.03)
    wide = sens.burst_centres_hz(1000, 2.16e6, 10e3, rng)  # cannot avoid DC: centred within the margin
    assert np.all(np.abs(wide) <= 1.2e6 - sens.EDGE_MARGIN_HZ - 1.08e6 + 1e-6)


@dataclass(frozen=True)
class _Detection:
    sample_start: int
    sample_count: int
    freq_hz: float
    bandwidth_hz: float


def test_score_needs_overlap_in_time_and_frequency() -> None:
    starts = np.array([1000, 5000, 9000])
    ends = starts + 1300
    freqs = np.array([100e3, -300e3, 500e3])
    detections = [
        _Detection(1200, 1000, 120e3, 150e3),  # burst 0
        _Detection(1500, 500, 110e3, 150e3),  # burst 0 again (a fragment)
        _Detection(5100, 1000, 300e3, 150e3),  # right time, wrong frequency: spurious
        _Detection(2400, 500, 100e3, 150e3),  # right frequency, after the burst: spurious
        _Detection(8000, 1100, 470e3, 100e3),  # overlaps the start of burst 2
    ]
    detected, n_matches, n_spurious = sens.score(detections, starts, ends, freqs, 200e3)  # type: ignore[arg-type]
    assert detected.tolist() == [True, False, True]
    assert n_matches.tolist() == [2, 0, 1]
    assert n_spurious == 2


def test_probit_crossing_reads_the_ideal_curve_between_grid_points() -> None:
    """On the ideal detector's own Pd curve sampled every 1 dB, the probit reads the Pd 0.9
    point within 0.03 dB wherever the grid falls; straight lines are up to ~0.2 dB high."""
    from bench.detect_sensitivity import theory_pd, theory_snr_db

    time_bandwidth, pfa = 180.0, 2e-8
    exact = theory_snr_db(0.9, time_bandwidth, pfa)
    snrs = np.arange(-6.0, 9.0, 1.0)
    n = np.full(snrs.shape, 400)
    worst_linear = 0.0
    for shift_db in (0.0, 0.25, 0.5, 0.75):
        pd = theory_pd(snrs - shift_db, time_bandwidth, pfa)
        assert probit_crossing(snrs, pd * n, n, 0.9) == pytest.approx(exact + shift_db, abs=0.03)
        worst_linear = max(worst_linear, crossing(snrs, pd, 0.9) - (exact + shift_db))
    assert worst_linear > 0.1  # what the probit corrects
    assert probit_crossing(snrs, np.zeros(snrs.shape), n, 0.9) is None  # never detected


def test_isotonic_fit_and_crossing() -> None:
    fit = isotonic([0.0, 0.5, 0.4, 0.95, 1.0])
    assert fit.tolist() == pytest.approx([0.0, 0.45, 0.45, 0.95, 1.0])
    assert crossing([0, 1, 2, 3, 4], fit, 0.9) == pytest.approx(2 + 0.45 / 0.5)
    assert crossing([0, 1], [0.1, 0.5], 0.9) is None  # never reached
    assert crossing([0, 1], [0.95, 1.0], 0.9) is None  # reached below the range


def test_box_counter_follows_the_gamma_law_on_independent_cells() -> None:
    g, k, b, pfa = 4, 5, 5, 1e-9
    dof = k * b * g  # independent bins: the box sum is exactly Gamma(k·b·g)
    test = BoxTest("box", k, b, dof, float(stats.gamma.isf(pfa, dof)), pfa)
    counter = fa.BoxStatisticCounter((test,), pfa, (1e-1, 1e-2))
    rng = np.random.default_rng(3)
    for _ in range(4):
        counter.count(rng.gamma(g, 1.0, size=(512, 64)).astype(np.float32))
    assert counter.n_tests[0] == 4 * (512 - k + 1) * (64 - b + 1)
    assert counter.levels == (1e-1, 1e-2, pfa)  # the configured Pfa is always among the levels
    observed = counter.exceedances[0] / counter.n_tests[0]
    assert observed[:2] == pytest.approx([1e-1, 1e-2], rel=0.3)
    assert observed[2] == 0


def test_poisson_interval_of_no_event_in_an_hour() -> None:
    lo, hi = fa.poisson_interval(0, 1.0)
    assert lo == 0.0 and hi == pytest.approx(3.689, abs=1e-3)
    lo, hi = fa.poisson_interval(10, 2.0)
    assert lo < 5.0 < hi


def test_weak_one_rb_allocation_near_dc_on_an_rtl_sdr_is_a_burst_not_a_carrier(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 4 dB the 99 % bandwidth of a 180 kHz allocation is noise; near the RTL-SDR's DC it
    read under 100 kHz and the burst was dropped as a carrier. Its rectangle keeps it."""
    from bench.detect_sensitivity import WAVEFORMS, run_trials
    from dsp.detector import BurstDetector

    one_rb = next(w for w in WAVEFORMS if w.name == "lte_pusch_1rb")
    centres_hz = np.tile([-150e3, -130e3, 110e3, 140e3], 8)

    def trials() -> Any:
        return run_trials(one_rb, np.array([4.0]), centres_hz.size, "rtl_sdr", np.random.default_rng(5),
                          centres_hz=centres_hz)

    kept = trials()
    assert kept.detected.all()
    monkeypatch.setattr(BurstDetector, "_BANDWIDTH_RELIABLE_SNR", 0.0)  # trust every measured bandwidth
    assert not trials().detected.all()
