"""False alarms: an hour of a sensor listening to nothing, with what a real RTL-SDR adds to nothing.

The stream is :class:`sdr.receiver.RtlSdrModel` output (thermal and ADC noise, DC offset
and a strong LO leak — the centre spike —, I/Q imbalance, 8-bit quantization) with a
continuous carrier of -70 dBm at +437.1 kHz (42 dB above the noise in its 9.4 kHz bin,
and its I/Q image at -437.1 kHz), and the tuner gain stepped every
:data:`GAIN_STEP_PERIOD_S` through :data:`GAIN_STEPS_DB`, each block carrying the gain
it was taken at, as a node's blocks do. Every burst the detector reports at its default
configuration is a false alarm. Generated block by block: memory stays flat.

Figures
    * false alarms per hour per sensor (goal: below 1), with a 95 % Poisson interval,
      and when each happened relative to the last gain step;
    * per-test false-alarm probability observed versus configured: the detector's own
      normalized cells (after its noise-floor division) are summed over every box of
      every template inside each epoch, and the exceedances of the thresholds for Pfa
      1e-2 … 1e-9 and the configured one are counted. This checks the CFAR calibration (the Gamma law of the
      box sums and the noise-floor estimate) directly, where the false-alarm count alone
      has too few events to say anything.

A full hour is 8.64 G samples; when a short probe run projects more than
:data:`SPLIT_ABOVE_S` of wall time on one core, the hour is split across two processes
with different seeds (two half-hour sensors, the figures pooled).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from bench.common import (
    BLOCK_SAMPLES,
    CENTER_FREQ_HZ,
    RESULTS_DIR,
    SAMPLE_RATE_HZ,
    feed,
    header,
    pyplot,
    save_figure,
    write_json,
)
from dsp.detector import BoxTest, Burst, BurstDetector, DetectorConfig
from dsp.iq import cu8_to_complex64
from sdr.receiver import ReceiverConfig, RtlSdrModel

log = logging.getLogger(__name__)

GOAL_PER_HOUR = 1.0
GAIN_STEPS_DB = (28.0, 33.8, 22.9, 38.6, 25.4, 19.7, 36.4, 28.0, 15.7, 42.1, 29.7, 20.7)
GAIN_STEP_PERIOD_S = 300.0
QUICK_GAIN_STEP_PERIOD_S = 7.0  # 20 s: a step up at 7 s, a step down at 14 s
TRANSIENT_S = 2.0  # what follows a gain step this closely is booked apart from the steady state
CARRIER_OFFSET_HZ = 437_100.0
CARRIER_DBM = -70.0
LO_LEAKAGE_DBM = -85.0  # the centre spike: about -42 dBFS at 28 dB of gain
PFA_LEVELS = tuple(10.0 ** -np.arange(2, 10))  # 1e-2 … 1e-9, plus the configured Pfa
SPLIT_ABOVE_S = 15 * 60.0
PROBE_S = 20.0
MAX_LISTED = 500  # false alarms listed one by one in the JSON


class BoxStatisticCounter:
    """Counts how often each box test's sum exceeds the thresholds of several Pfa levels.

    Thresholds come from the detector's own :class:`~dsp.detector.BoxTest` (its Gamma
    shape and its threshold at its own ``pfa``), so the count checks the detector's law.
    Only boxes lying inside one epoch are counted; ``n_tests`` says how many there were.
    """

    def __init__(self, tests: tuple[BoxTest, ...], config_pfa: float, levels: tuple[float, ...]) -> None:
        self.tests = tests
        self.levels = tuple(sorted({float(p) for p in levels} | {float(config_pfa)}, reverse=True))
        self.thresholds = np.array([
            [t.threshold * float(stats.gamma.isf(p, t.dof) / stats.gamma.isf(t.pfa, t.dof)) for p in self.levels]
            for t in tests
        ])
        self.config_thresholds = np.array([t.threshold for t in tests])
        self.n_tests = np.zeros(len(tests), dtype=np.int64)
        self.exceedances = np.zeros((len(tests), len(self.levels)), dtype=np.int64)
        self.max_ratio = np.zeros(len(tests))  # largest box sum over the configured threshold

    def count(self, cells: npt.NDArray[np.float32]) -> None:
        n_frames, n_cols = cells.shape
        across = np.zeros((n_frames, n_cols + 1))
        np.cumsum(cells, axis=1, dtype=np.float64, out=across[:, 1:])
        by_width: dict[int, npt.NDArray[np.float64]] = {}
        for i, test in enumerate(self.tests):
            if n_frames < test.n_frames or n_cols < test.n_columns:
                continue
            down = by_width.get(test.n_columns)
            if down is None:
                b = test.n_columns
                down = np.zeros((n_frames + 1, n_cols - b + 1))
                np.cumsum(across[:, b:] - across[:, :-b], axis=0, out=down[1:])
                by_width[b] = down
            box = down[test.n_frames :] - down[: -test.n_frames]
            self.n_tests[i] += box.size
            self.max_ratio[i] = max(self.max_ratio[i], float(box.max()) / self.config_thresholds[i])
            above = box[box > self.thresholds[i, 0]]
            if above.size:
                self.exceedances[i] += (above[:, None] > self.thresholds[i][None, :]).sum(axis=0)

    def as_dict(self, config_pfa: float) -> dict[str, Any]:
        templates = {}
        for i, t in enumerate(self.tests):
            n = max(int(self.n_tests[i]), 1)
            templates[t.name] = {
                "n_frames": t.n_frames, "n_columns": t.n_columns, "gamma_shape": t.dof,
                "n_tests": int(self.n_tests[i]),
                "exceedances": self.exceedances[i],
                "observed_pfa": self.exceedances[i] / n,
                "max_statistic_over_threshold": float(self.max_ratio[i]),
            }
        k = self.levels.index(float(config_pfa))
        total_tests = int(self.n_tests.sum())
        total_at_config = int(self.exceedances[:, k].sum())
        return {
            "levels": list(self.levels),
            "templates": templates,
            "configured_pfa": config_pfa,
            "observed_pfa_at_configured": total_at_config / max(total_tests, 1),
            "n_exceedances_at_configured": total_at_config,
            "n_tests": total_tests,
        }


class CountingDetector(BurstDetector):
    """The default detector, unchanged, plus :class:`BoxStatisticCounter` s on its normalized cells.

    The caller sets :attr:`after_gain_step` while it feeds the blocks that follow a gain
    step: their epochs are counted in :attr:`transient`, the others in :attr:`steady`.
    """

    def __init__(self, config: DetectorConfig, sample_rate_hz: float, center_freq_hz: int,
                 levels: tuple[float, ...] = PFA_LEVELS) -> None:
        super().__init__(config, sample_rate_hz, center_freq_hz)
        self.steady = BoxStatisticCounter(self.box_tests, config.pfa, levels)
        self.transient = BoxStatisticCounter(self.box_tests, config.pfa, levels)
        self.after_gain_step = False

    def _box_tests(self, epoch: Any) -> None:  # the detector's per-epoch hook: count, then test as usual
        super()._box_tests(epoch)
        if epoch.cells is not None:
            (self.transient if self.after_gain_step else self.steady).count(epoch.cells)


def gain_at(t_s: float, period_s: float) -> float:
    return GAIN_STEPS_DB[int(t_s // period_s) % len(GAIN_STEPS_DB)]


def run_segment(seed: int, duration_s: float, t0_s: float, period_s: float) -> dict[str, Any]:
    """One sensor's stream from ``t0_s`` (hour timeline, which sets the gain schedule) for ``duration_s``."""
    started = time.perf_counter()
    fs = SAMPLE_RATE_HZ
    rng = np.random.default_rng(seed)
    config = DetectorConfig()
    detector = CountingDetector(config, fs, CENTER_FREQ_HZ)
    n_total = int(duration_s * fs)
    amplitude = math.sqrt(10.0 ** (CARRIER_DBM / 10.0))
    tone = np.exp(2j * np.pi * (CARRIER_OFFSET_HZ / fs) * np.arange(BLOCK_SAMPLES)).astype(np.complex64)
    phase0 = rng.uniform(0.0, 1.0)
    base = ReceiverConfig(lo_leakage_dbm=LO_LEAKAGE_DBM)
    gain = gain_at(t0_s, period_s)
    model = RtlSdrModel(replace(base, gain_db=gain), fs, CENTER_FREQ_HZ, rng)
    steps: list[tuple[float, float]] = [(period_s * (t0_s // period_s), gain)]  # (when the gain was set, gain)
    alarms: list[tuple[Burst, float]] = []
    t_model = t_detect = 0.0
    for first in range(0, n_total, BLOCK_SAMPLES):  # a loop over blocks
        n = min(BLOCK_SAMPLES, n_total - first)
        t_s = t0_s + first / fs
        g = gain_at(t_s, period_s)
        if g != gain:
            gain = g
            model = RtlSdrModel(replace(base, gain_db=gain), fs, CENTER_FREQ_HZ, rng)
            steps.append((t_s, gain))
            log.info("false_alarms seed=%d t_s=%.0f gain_db=%g n_alarms=%d wall_s=%.0f", seed, t_s, gain,
                     len(alarms), time.perf_counter() - started)
        detector.after_gain_step = len(steps) > 1 and t_s - steps[-1][0] < TRANSIENT_S
        a = time.perf_counter()
        cycles = (phase0 + first * CARRIER_OFFSET_HZ / fs) % 1.0
        incident = tone[:n] * np.complex64(amplitude * np.exp(2j * np.pi * cycles))
        raw, _ = model.process(incident, first)
        x = cu8_to_complex64(raw)
        b = time.perf_counter()
        alarms += [(burst, gain) for burst in feed(detector, x, first, gain)]
        t_detect += time.perf_counter() - b
        t_model += b - a
    b = time.perf_counter()
    alarms += [(burst, gain) for burst in detector.flush()]
    t_detect += time.perf_counter() - b
    stats_ = detector.stats
    observed_s = (stats_.n_frames - stats_.n_warmup_frames) * detector.frame_s
    if observed_s > 1.0 and detector.steady.n_tests.sum() + detector.transient.n_tests.sum() == 0:
        raise RuntimeError("the detector no longer calls its per-epoch _box_tests hook: update bench.detect_false_alarms")
    step_times = np.array([s for s, _ in steps])
    listed = []
    for burst, g in alarms:
        t = t0_s + burst.sample_start / fs
        k = int(np.searchsorted(step_times, t, side="right")) - 1
        last_step = step_times[k]
        listed.append({
            "after_gain_step": bool(k > 0 and t - last_step < TRANSIENT_S),
            "t_s": t, "freq_offset_hz": burst.freq_hz - CENTER_FREQ_HZ, "bandwidth_hz": burst.bandwidth_hz,
            "duration_s": burst.duration_s, "snr_db": burst.snr_db, "power_dbfs": burst.power_dbfs,
            "gain_db": g, "since_gain_step_s": t - float(last_step),
        })
    return {
        "seed": seed,
        "t0_s": t0_s,
        "duration_s": n_total / fs,
        "observed_s": observed_s,
        "false_alarms": listed,
        "gain_steps": [{"t_s": s, "gain_db": g} for s, g in steps],
        "transient_s": sum(min(TRANSIENT_S, t0_s + n_total / fs - s) for s, _ in steps[1:]),
        "steady_counter": detector.steady,
        "transient_counter": detector.transient,
        "rejected": dict(stats_.rejected),
        "carrier_columns": np.flatnonzero(detector.carrier_mask).tolist(),
        "carrier_column_freqs_hz": detector.column_freqs_hz[detector.carrier_mask].tolist(),
        "model_s": t_model,
        "detector_s": t_detect,
        "wall_s": time.perf_counter() - started,
    }


def _merge_counters(counters: list[BoxStatisticCounter]) -> BoxStatisticCounter:
    total = counters[0]
    for c in counters[1:]:
        total.n_tests += c.n_tests
        total.exceedances += c.exceedances
        total.max_ratio = np.maximum(total.max_ratio, c.max_ratio)
    return total


def _copy_counter(counter: BoxStatisticCounter) -> BoxStatisticCounter:
    copy = BoxStatisticCounter.__new__(BoxStatisticCounter)
    copy.__dict__.update({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(counter).items()})
    return copy


def poisson_interval(k: int, exposure: float, level: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval of a Poisson rate with ``k`` events over ``exposure``."""
    alpha = 1.0 - level
    lo = 0.0 if k == 0 else float(stats.chi2.ppf(alpha / 2, 2 * k)) / 2.0
    hi = float(stats.chi2.ppf(1 - alpha / 2, 2 * k + 2)) / 2.0
    return lo / exposure, hi / exposure


def run(out_dir: Path = RESULTS_DIR, quick: bool = False, seed: int = 1, duration_s: float | None = None,
        workers: int | None = None) -> dict[str, Any]:
    """Run the noise hour (20 s in quick mode), write ``detect_false_alarms.json`` and ``.png``."""
    duration_s = duration_s or (20.0 if quick else 3600.0)
    period_s = QUICK_GAIN_STEP_PERIOD_S if quick else GAIN_STEP_PERIOD_S
    projected_s = None
    if workers is None:
        workers = 1
        if not quick and duration_s > 2 * PROBE_S and (os.cpu_count() or 1) >= 2:
            probe = run_segment(seed + 1000, PROBE_S, 0.0, period_s)
            projected_s = probe["wall_s"] * duration_s / PROBE_S
            workers = 2 if projected_s > SPLIT_ABOVE_S else 1
            log.info("false_alarms probe_s=%.0f wall_s=%.1f projected_s=%.0f workers=%d",
                     PROBE_S, probe["wall_s"], projected_s, workers)
    started = time.perf_counter()
    share = duration_s / workers
    jobs = [(seed + i, share, i * share, period_s) for i in range(workers)]
    if workers == 1:
        segments = [run_segment(*jobs[0])]
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            segments = list(pool.map(run_segment, *zip(*jobs, strict=True)))
    wall_s = time.perf_counter() - started
    config = DetectorConfig()
    probe_detector = BurstDetector(config, SAMPLE_RATE_HZ, CENTER_FREQ_HZ)
    observed_s = sum(s["observed_s"] for s in segments)
    alarms = sorted((a for s in segments for a in s["false_alarms"]), key=lambda a: a["t_s"])
    n_alarms = len(alarms)
    hours = observed_s / 3600.0
    rate = n_alarms / hours if hours > 0 else math.nan
    steady = _merge_counters([s["steady_counter"] for s in segments])
    transient = _merge_counters([s["transient_counter"] for s in segments])
    pooled = _merge_counters([_copy_counter(steady), transient])
    transient_s = sum(s["transient_s"] for s in segments)
    steady_hours = (observed_s - transient_s) / 3600.0
    n_steady = sum(not a["after_gain_step"] for a in alarms)
    per_step = []
    for seg in segments:
        gains = seg["gain_steps"]
        for prev, step in itertools.pairwise(gains):
            n = sum(1 for a in alarms if a["after_gain_step"] and step["t_s"] <= a["t_s"] < step["t_s"] + TRANSIENT_S)
            per_step.append({"t_s": step["t_s"], "from_gain_db": prev["gain_db"], "to_gain_db": step["gain_db"],
                             "n_false_alarms": n})
    rejected: Counter[str] = Counter()
    for s in segments:
        rejected.update(s["rejected"])
    result: dict[str, Any] = header("detect_false_alarms", quick)
    result.update({
        "duration_s": duration_s,
        "observed_s": observed_s,
        "n_workers": workers,
        "projected_single_process_s": projected_s,
        "wall_s": wall_s,
        "signal_per_wall_s": duration_s / wall_s,
        "model_s": sum(s["model_s"] for s in segments),
        "detector_s": sum(s["detector_s"] for s in segments),
        "impairments": {
            "receiver": {k: (str(v) if isinstance(v, complex) else v)
                         for k, v in vars(ReceiverConfig(lo_leakage_dbm=LO_LEAKAGE_DBM)).items() if k != "gain_db"},
            "carrier_offset_hz": CARRIER_OFFSET_HZ,
            "carrier_dbm": CARRIER_DBM,
            "gain_steps_db": GAIN_STEPS_DB,
            "gain_step_period_s": period_s,
        },
        "segments": [{k: v for k, v in s.items() if not k.endswith("counter") and k != "false_alarms"}
                     for s in segments],
        "detector": {
            "pfa_per_test": config.pfa,
            "tests_per_second": probe_detector.tests_per_second,
            "nominal_false_alarms_per_hour": probe_detector.tests_per_second * config.pfa * 3600.0,
        },
        "n_false_alarms": n_alarms,
        "false_alarms_per_hour": rate,
        "false_alarms_per_hour_ci95": poisson_interval(n_alarms, hours) if hours > 0 else None,
        "goal_per_hour": GOAL_PER_HOUR,
        "goal_met": bool(rate < GOAL_PER_HOUR),
        "steady": {
            "definition": f"more than {TRANSIENT_S:g} s after the last gain step",
            "hours": steady_hours,
            "n_false_alarms": n_steady,
            "false_alarms_per_hour": n_steady / steady_hours if steady_hours > 0 else None,
            "false_alarms_per_hour_ci95": poisson_interval(n_steady, steady_hours) if steady_hours > 0 else None,
        },
        "after_gain_steps": {
            "definition": f"within {TRANSIENT_S:g} s after a gain step",
            "n_false_alarms": n_alarms - n_steady,
            "steps": per_step,
        },
        "false_alarms": alarms[:MAX_LISTED],
        "rejected": dict(rejected),
        "per_test_pfa": pooled.as_dict(config.pfa),
        "per_test_pfa_steady": steady.as_dict(config.pfa),
        "per_test_pfa_after_gain_steps": transient.as_dict(config.pfa),
    })
    out_dir = Path(out_dir)
    write_json(out_dir / "detect_false_alarms.json", result)
    plot(result, out_dir / "detect_false_alarms.png")
    return result


def plot(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    pfa = result["per_test_pfa_steady"]
    levels = np.array(pfa["levels"])
    for name, t in pfa["templates"].items():
        obs = np.array(t["observed_pfa"], dtype=np.float64)
        floor = 1.0 / max(t["n_tests"], 1)
        ax1.loglog(levels, np.where(obs > 0, obs, np.nan), "o-", ms=3, label=f"{name} ({t['n_columns']}×{t['n_frames']})")
        ax1.plot(levels[obs == 0], np.full(int((obs == 0).sum()), floor), "v", ms=4, color=ax1.lines[-1].get_color())
    after = result["per_test_pfa_after_gain_steps"]
    if after["n_tests"]:
        pooled = np.array([sum(t["exceedances"][j] for t in after["templates"].values())
                           for j in range(len(levels))]) / after["n_tests"]
        ax1.loglog(levels, np.where(pooled > 0, pooled, np.nan), "k^:", ms=3,
                   label=f"all, < {TRANSIENT_S:g} s after a gain step")
    ax1.loglog(levels, levels, "k--", lw=1, label="observed = configured")
    ax1.axvline(pfa["configured_pfa"], color="grey", lw=0.6)
    ax1.set_xlabel("configured per-test Pfa")
    ax1.set_ylabel("observed exceedance fraction of box sums")
    ax1.set_title("CFAR calibration on noise, steady state (▼: none seen, at 1/n_tests)", fontsize=9)
    ax1.legend(fontsize=7, loc="lower right")
    ax1.grid(alpha=0.3, which="both")
    hours = result["observed_s"] / 3600.0
    alarms = result["false_alarms"]
    if alarms:
        late = [a for a in alarms if a["after_gain_step"]]
        steady_alarms = [a for a in alarms if not a["after_gain_step"]]
        ax2.plot([a["t_s"] / 60 for a in late], [a["snr_db"] for a in late], "x", color="orange", ms=5,
                 label=f"< {TRANSIENT_S:g} s after a gain step")
        ax2.plot([a["t_s"] / 60 for a in steady_alarms], [a["snr_db"] for a in steady_alarms], "rx", ms=7,
                 label="steady state")
        ax2.legend(fontsize=7)
    for seg in result["segments"]:
        for step in seg["gain_steps"]:
            ax2.axvline(step["t_s"] / 60, color="grey", lw=0.5)
            ax2.text(step["t_s"] / 60, 0.01, f" {step['gain_db']:g} dB", rotation=90, fontsize=6, va="bottom",
                     transform=ax2.get_xaxis_transform(), color="grey")
    ax2.set_xlim(0, result["duration_s"] / 60)
    ax2.set_xlabel("time (min); vertical lines: gain steps")
    ax2.set_ylabel("reported SNR of the false alarm (dB)")
    ax2.set_title(f"{result['n_false_alarms']} false alarms in {hours:.2f} h = "
                  f"{result['false_alarms_per_hour']:.2f}/h (goal < {GOAL_PER_HOUR:g}/h); "
                  f"steady state {result['steady']['n_false_alarms']}", fontsize=9)
    ax2.grid(alpha=0.3)
    return save_figure(fig, path)
