"""Throughput: cu8 bytes to detection records on one core, against the machine's bare FFT + power.

The recording is what a corridor sensor at 900 MHz hears (generated in memory with the
simulator's pieces: :mod:`dsp.gsm`, :mod:`dsp.lte` schedules rendered by
:func:`dsp.waveform.render_burst`, through :class:`sdr.receiver.RtlSdrModel` at 28 dB
of gain): a GSM call (no DTX: 25 bursts every 120 ms), an LTE data session and a VoLTE call
on a 5 MHz carrier whose allocations fall partly inside the 2.4 MHz band. The same
length of idle band (receiver noise only) is timed too: the difference is the cost
of the detections, which the report gives per detection.

The timed path is exactly what ``cellwatch detect`` (and a node on a dongle) runs per block
once the bytes are read: :meth:`dsp.records.IQBlock.from_cu8` (the bytes as read; the
detector windows them itself, with no complex64 copy) →
:class:`dsp.pipeline.DetectionPipeline` (detector, classifier, sessions), blocks of
:data:`bench.common.BLOCK_SAMPLES`, best of ``n_repeats`` passes with a fresh pipeline,
the process pinned to one CPU and numerical libraries to one thread. File reading is
left out (the page cache makes it a memory copy).

In the same run, the bound: the bare FFT + |X|² throughput of this machine for the
detector's ``fft_size``, on complex64 frames of the same recording, 512 frames per
call (numpy.fft with preallocated outputs, scipy.fft, and a planned pyfftw object when
pyfftw is importable); the report gives the fraction of the best of them the pipeline
reaches. Peak memory: the peak traced by :mod:`tracemalloc` over one extra pass (the
pipeline's working set; it does not grow with the recording), and the process's
maximum resident set size.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.fft

from bench.common import (
    BLOCK_SAMPLES,
    CENTER_FREQ_HZ,
    RESULTS_DIR,
    SAMPLE_RATE_HZ,
    header,
    one_core,
    pyplot,
    save_figure,
    write_json,
)
from dsp import gsm, lte
from dsp.allocator import tune_malloc
from dsp.detector import DetectorConfig
from dsp.iq import cu8_to_complex64
from dsp.pipeline import DetectionPipeline
from dsp.records import IQBlock
from dsp.warmup import compile_kernels
from dsp.waveform import TxBurst, render_burst
from sdr.receiver import ReceiverConfig, RtlSdrModel

log = logging.getLogger(__name__)

GOAL_REAL_TIME = 40.0
AIM_REAL_TIME = 100.0
FRAMES_PER_CALL = 512
GAIN_DB = 28.0
LTE_CARRIER_HZ = 899_300_000.0
LTE_CARRIER_N_RB = 25
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# The phones of each scene (keys of ``phones``): the load curve runs the pipeline over a
# range of detection rates, from the idle band to the busy one the headline figures use.
SCENES: dict[str, tuple[str, ...]] = {
    "idle": (),
    "volte": ("voice",),
    "gsm_dtx": ("gsm_dtx",),
    "lte_data": ("data",),
    "gsm_call": ("gsm",),
    "busy": ("gsm", "data", "voice"),
}


def phones(duration_s: float, rng: np.random.Generator, scene: str = "busy",
           ) -> list[tuple[str, float, list[TxBurst]]]:
    """(description, received power in dBm before the burst's own offset, bursts) of each phone of ``scene``."""
    makers = {
        "gsm": lambda: ("GSM call, ARFCN 48 TS 2 (899.6 MHz)", -65.0,
                        gsm.call_bursts(0.0, duration_s, 48, 2, rng, session="gsm")),
        "gsm_dtx": lambda: ("GSM call with DTX, ARFCN 48 TS 2 (899.6 MHz)", -65.0,
                            gsm.call_bursts(0.0, duration_s, 48, 2, rng, dtx=True, session="gsm")),
        "data": lambda: ("LTE data session, 5 MHz carrier at 899.3 MHz", -70.0,
                         lte.data_session_bursts(0.0, duration_s, LTE_CARRIER_HZ, LTE_CARRIER_N_RB, rng,
                                                 session="data")),
        "voice": lambda: ("VoLTE call, same carrier", -78.0,
                          lte.voice_call_bursts(0.0, duration_s, LTE_CARRIER_HZ, LTE_CARRIER_N_RB, rng,
                                                session="voice")),
    }
    return [makers[key]() for key in SCENES[scene]]


def make_recording(duration_s: float, seed: int, scene: str = "busy",
                   ) -> tuple[npt.NDArray[np.uint8], dict[str, Any]]:
    """cu8 bytes ``(2·n,)`` of a corridor scene (:data:`SCENES`), block by block, and what is in it."""
    fs = SAMPLE_RATE_HZ
    fc = CENTER_FREQ_HZ
    rng = np.random.default_rng(seed)
    n_total = int(duration_s * fs)
    present = phones(duration_s, rng, scene)
    events: list[tuple[int, float, TxBurst]] = []  # (start sample, amplitude sqrt(mW), burst)
    kinds: Counter[str] = Counter()
    for _, power_dbm, bursts in present:
        for b in bursts:
            start = round(b.t_start_s * fs)
            if start >= n_total:
                continue
            events.append((start, math.sqrt(10.0 ** ((power_dbm + b.power_offset_db) / 10.0)), b))
            kinds[b.kind] += 1
    events.sort(key=lambda e: e[0])
    model = RtlSdrModel(ReceiverConfig(gain_db=GAIN_DB), fs, fc, rng)
    raw = np.empty(2 * n_total, dtype=np.uint8)
    active: list[tuple[int, npt.NDArray[np.complex64]]] = []
    next_event = 0
    for first in range(0, n_total, BLOCK_SAMPLES):  # a loop over blocks
        n = min(BLOCK_SAMPLES, n_total - first)
        end = first + n
        while next_event < len(events) and events[next_event][0] < end:  # a loop over bursts
            start, amplitude, burst = events[next_event]
            phase = np.complex64(amplitude * np.exp(2j * np.pi * rng.random()))
            active.append((start, render_burst(burst, rng, fs, fc) * phase))
            next_event += 1
        field = np.zeros(n, dtype=np.complex64)
        for start, y in active:
            a, b = max(start, first), min(start + y.shape[0], end)
            if b > a:
                field[a - first : b - first] += y[a - start : b - start]
        active = [(s, y) for s, y in active if s + y.shape[0] > end]
        block, _ = model.process(field, first)
        raw[2 * first : 2 * end] = block
    info = {
        "duration_s": n_total / fs,
        "n_samples": n_total,
        "gain_db": model.config.gain_db,
        "n_truth_bursts": len(events),
        "truth_bursts_by_kind": dict(kinds),
        "scene": scene,
        "phones": [{"description": d, "rx_power_dbm": p} for d, p, _ in present],
    }
    return raw, info


def run_pipeline(raw: npt.NDArray[np.uint8], gain_db: float, block_samples: int = BLOCK_SAMPLES,
                 ) -> tuple[float, Counter[str]]:
    """Seconds to take ``raw`` cu8 bytes to detection records, and the detections by technology."""
    fs = SAMPLE_RATE_HZ
    n = raw.shape[0] // 2
    techs: Counter[str] = Counter()
    started = time.perf_counter()
    pipeline = DetectionPipeline("bench", fs, CENTER_FREQ_HZ)
    for first in range(0, n, block_samples):  # a loop over blocks
        block = IQBlock.from_cu8(raw[2 * first : 2 * min(n, first + block_samples)], CENTER_FREQ_HZ, fs, first / fs,
                                 sensor_id="bench", sample_index=first, gain_db=gain_db)
        techs.update(d.tech for d in pipeline.process(block))
    techs.update(d.tech for d in pipeline.flush())
    return time.perf_counter() - started, techs


def _power(spectra: npt.NDArray[np.complex64], p: npt.NDArray[np.float32], q: npt.NDArray[np.float32]) -> None:
    np.multiply(spectra.real, spectra.real, out=p)
    np.multiply(spectra.imag, spectra.imag, out=q)
    np.add(p, q, out=p)


def bare_fft_power_msps(samples: npt.NDArray[np.complex64], fft_size: int, backend: str,
                        n_repeats: int = 3) -> float | None:
    """Mega-samples per second of FFT + |X|² over ``samples`` in calls of 512 frames (None: no backend)."""
    n_calls = samples.shape[0] // (fft_size * FRAMES_PER_CALL)
    if n_calls == 0:
        raise ValueError("need at least one call's worth of samples")
    frames = samples[: n_calls * FRAMES_PER_CALL * fft_size].reshape(n_calls, FRAMES_PER_CALL, fft_size)
    p = np.empty((FRAMES_PER_CALL, fft_size), np.float32)
    q = np.empty_like(p)
    if backend == "numpy":
        out = np.empty((FRAMES_PER_CALL, fft_size), np.complex64)

        def one(chunk: npt.NDArray[np.complex64]) -> None:
            np.fft.fft(chunk, axis=1, out=out)  # type: ignore[arg-type]  # numpy 2 keeps complex64
            _power(out, p, q)
    elif backend == "scipy":
        def one(chunk: npt.NDArray[np.complex64]) -> None:
            _power(scipy.fft.fft(chunk, axis=1, workers=1), p, q)
    elif backend == "pyfftw":
        try:
            import pyfftw
        except ImportError:
            return None
        a = pyfftw.empty_aligned((FRAMES_PER_CALL, fft_size), dtype="complex64")
        b = pyfftw.empty_aligned((FRAMES_PER_CALL, fft_size), dtype="complex64")
        plan = pyfftw.FFTW(a, b, axes=(1,), threads=1, flags=("FFTW_MEASURE",))

        def one(chunk: npt.NDArray[np.complex64]) -> None:
            a[:] = chunk
            plan()
            _power(b, p, q)
    else:
        raise ValueError(f"unknown FFT backend {backend!r}")
    best = math.inf
    for _ in range(n_repeats):
        started = time.perf_counter()
        for chunk in frames:  # a loop over FFT calls of 512 frames
            one(chunk)
        best = min(best, time.perf_counter() - started)
    return frames.size / best / 1e6


def load_curve(duration_s: float, seed: int, n_repeats: int) -> dict[str, Any]:
    """Real-time factor of every scene of :data:`SCENES` (idle to busy), and the detection
    rate the goal holds up to: a straight-line fit of the processing seconds per second of
    signal against the detection rate (a fixed cost for the band plus a cost per detection)."""
    points = []
    for i, scene in enumerate(SCENES):  # a loop over scenes
        raw, recording = make_recording(duration_s, seed + 10 + i, scene)
        best_s = math.inf
        techs: Counter[str] = Counter()
        for _ in range(n_repeats):
            elapsed, techs = run_pipeline(raw, recording["gain_db"])
            best_s = min(best_s, elapsed)
        n_detections = sum(techs.values())
        points.append({
            "scene": scene,
            "phones": [p["description"] for p in recording["phones"]],
            "duration_s": recording["duration_s"],
            "best_s": best_s,
            "real_time_factor": recording["duration_s"] / best_s,
            "n_detections": n_detections,
            "detections_per_s": n_detections / recording["duration_s"],
        })
    rate = np.array([p["detections_per_s"] for p in points])
    load = np.array([p["best_s"] / p["duration_s"] for p in points])
    per_detection_s, fixed = np.polyfit(rate, load, 1)
    at_goal = (1.0 / GOAL_REAL_TIME - fixed) / per_detection_s if per_detection_s > 0 else math.inf
    return {
        "duration_s": duration_s,
        "n_repeats": n_repeats,
        "points": points,
        "fit_idle_load": float(fixed),
        "fit_cost_per_detection_us": float(1e6 * per_detection_s),
        "detections_per_s_at_goal": float(max(at_goal, 0.0)),
    }


def run(out_dir: Path = RESULTS_DIR, quick: bool = False, seed: int = 1, duration_s: float | None = None,
        n_repeats: int | None = None) -> dict[str, Any]:
    """Time the pipeline and the bare FFT bound, write ``detect_throughput.json`` and ``.png``."""
    duration_s = duration_s or (2.0 if quick else 20.0)
    n_repeats = n_repeats or (2 if quick else 5)
    fft_size = DetectorConfig().fft_size
    compile_kernels()  # a fresh install compiles the detector once (~25 s): not the pipeline's time
    malloc_tuned = tune_malloc()  # as every cellwatch process (a node) runs it: dsp.allocator
    started = time.perf_counter()
    raw, recording = make_recording(duration_s, seed)
    log.info("throughput recording_s=%.1f generated_in_s=%.1f bursts=%d", recording["duration_s"],
             time.perf_counter() - started, recording["n_truth_bursts"])
    idle, _ = make_recording(duration_s, seed + 1, scene="idle")
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with one_core() as cpu:
        runs = []
        techs: Counter[str] = Counter()
        for _ in range(n_repeats):
            elapsed, techs = run_pipeline(raw, recording["gain_db"])
            runs.append(elapsed)
        idle_runs = []
        idle_techs: Counter[str] = Counter()
        for _ in range(n_repeats):
            elapsed, idle_techs = run_pipeline(idle, recording["gain_db"])
            idle_runs.append(elapsed)
        curve = load_curve(1.0 if quick else 10.0, seed, 1 if quick else 3)
        samples = cu8_to_complex64(raw[: 2 * min(raw.shape[0] // 2, int(5.0 * SAMPLE_RATE_HZ))])
        bare = {backend: bare_fft_power_msps(samples, fft_size, backend, n_repeats)
                for backend in ("numpy", "scipy", "pyfftw")}
    rss_after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    run_pipeline(raw, recording["gain_db"])
    _, peak_traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    best_s = min(runs)
    idle_s = min(idle_runs)
    msps = recording["n_samples"] / best_s / 1e6
    n_detections = sum(techs.values())
    measured = {k: v for k, v in bare.items() if v is not None}
    best_backend = max(measured, key=lambda k: measured[k])
    result: dict[str, Any] = header("detect_throughput", quick)
    result.update({
        "sample_rate_hz": SAMPLE_RATE_HZ,
        "fft_size": fft_size,
        "block_samples": BLOCK_SAMPLES,
        "cpu_affinity": cpu,
        "threads": {k: os.environ.get(k) for k in THREAD_VARIABLES},
        "malloc_tuned": malloc_tuned,  # glibc thresholds raised, as in a node (dsp.allocator)
        "recording": recording,
        "n_repeats": n_repeats,
        "pipeline": {
            "elapsed_s": runs,
            "best_s": best_s,
            "msps": msps,
            "real_time_factor": recording["duration_s"] / best_s,
            "n_detections": n_detections,
            "detections_per_s": n_detections / recording["duration_s"],
            "detections_by_tech": dict(techs),
        },
        "idle_band": {
            "elapsed_s": idle_runs,
            "best_s": idle_s,
            "msps": recording["n_samples"] / idle_s / 1e6,
            "real_time_factor": recording["duration_s"] / idle_s,
            "n_detections": sum(idle_techs.values()),
        },
        "cost_per_detection_ms": 1e3 * (best_s - idle_s) / n_detections if n_detections else None,
        "bare_fft_power": {
            "frames_per_call": FRAMES_PER_CALL,
            "msps": bare,
            "best_backend": best_backend,
            "best_msps": measured[best_backend],
            "real_time_factor": measured[best_backend] * 1e6 / SAMPLE_RATE_HZ,
        },
        "fraction_of_bare_fft_power": msps / measured[best_backend],
        "memory": {
            "peak_traced_mb": peak_traced / 1e6,
            "recording_mb": raw.nbytes / 1e6,
            "maxrss_mb": rss_after_kb / 1e3,
            "maxrss_delta_mb": (rss_after_kb - rss_before_kb) / 1e3,
        },
        "load_curve": curve,
        "goal_real_time_factor": GOAL_REAL_TIME,
        "aim_real_time_factor": AIM_REAL_TIME,
        "goal_met": bool(recording["duration_s"] / best_s >= GOAL_REAL_TIME),
    })
    out_dir = Path(out_dir)
    write_json(out_dir / "detect_throughput.json", result)
    plot(result, out_dir / "detect_throughput.png")
    return result


def plot(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    fig, (ax, ax_load) = plt.subplots(2, 1, figsize=(8, 7.2), gridspec_kw={"height_ratios": [1, 1.1]})
    labels, values = [], []
    for backend, v in result["bare_fft_power"]["msps"].items():
        if v is not None:
            labels.append(f"bare FFT+|X|², {backend}")
            values.append(v)
    labels.append("pipeline, idle band")
    values.append(result["idle_band"]["msps"])
    labels.append(f"pipeline, scene ({result['pipeline']['detections_per_s']:.0f} detections/s)")
    values.append(result["pipeline"]["msps"])
    colors = ["#9ab"] * (len(values) - 2) + ["#e96", "#c53"]
    ax.barh(labels, values, color=colors)
    rate = result["sample_rate_hz"] / 1e6
    for factor, style in ((result["goal_real_time_factor"], "--"), (result["aim_real_time_factor"], ":")):
        ax.axvline(factor * rate, color="k", ls=style, lw=1)
        ax.text(factor * rate, 1.0, f" {factor:g}× real time", transform=ax.get_xaxis_transform(), fontsize=7,
                va="bottom")
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.0f} MS/s ({v / rate:.0f}×)", va="center", fontsize=7)
    ax.set_xlabel(f"mega-samples per second on one core (real time = {rate:g} MS/s)")
    ax.set_title(f"Detector throughput, fft_size {result['fft_size']}: pipeline reaches "
                 f"{100 * result['fraction_of_bare_fft_power']:.0f} % of the bare FFT+power bound", fontsize=9, pad=16)
    ax.set_xlim(0, max(values) * 1.3)
    curve = result.get("load_curve")
    if curve:
        x = [p["detections_per_s"] for p in curve["points"]]
        y = [p["real_time_factor"] for p in curve["points"]]
        ax_load.plot(x, y, "o", color="#c53")
        for p in curve["points"]:
            ax_load.annotate(p["scene"], (p["detections_per_s"], p["real_time_factor"]), fontsize=7,
                             xytext=(4, 4), textcoords="offset points")
        grid = np.linspace(0.0, max(x) * 1.05, 100)
        fit = 1.0 / (curve["fit_idle_load"] + 1e-6 * curve["fit_cost_per_detection_us"] * grid)
        ax_load.plot(grid, fit, "-", color="#e96", lw=1,
                     label=f"fit: {curve['fit_cost_per_detection_us']:.0f} µs a detection")
        ax_load.axhline(result["goal_real_time_factor"], color="k", ls="--", lw=1, label="goal")
        ax_load.axvline(curve["detections_per_s_at_goal"], color="#777", ls=":", lw=1,
                        label=f"goal held up to {curve['detections_per_s_at_goal']:.0f} detections/s")
        ax_load.set_xlabel("detections per second in the band")
        ax_load.set_ylabel("× real time, one core")
        ax_load.set_ylim(0, max(max(y), result["goal_real_time_factor"]) * 1.15)
        ax_load.legend(fontsize=7)
        ax_load.set_title("Load curve: scenes from the idle band to the busy one", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
