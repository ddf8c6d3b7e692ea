"""What every benchmark shares: where results go, the JSON writer, plotting, stream feeding, curve reading."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import platform
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy
from scipy import optimize, stats

from dsp.detector import Burst, BurstDetector
from dsp.records import IQBlock

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"

SAMPLE_RATE_HZ = 2.4e6  # the RTL-SDR's stable rate (DESIGN.md)
CENTER_FREQ_HZ = 900_000_000  # inside GSM-900 / LTE band 8 uplink
BLOCK_SAMPLES = 262_144  # what `cellwatch detect` reads per block (its default)
DETECTOR_SOURCES = ("dsp/detector.py", "dsp/noise.py", "dsp/pipeline.py")


def header(name: str, quick: bool) -> dict[str, Any]:
    """The common head of every result file: which benchmark, which mode, when, on what."""
    return {
        "benchmark": name,
        "mode": "quick" if quick else "full",
        "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(),
    }


def machine_info() -> dict[str, Any]:
    """Enough about the machine and the code to compare figures between runs."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=5, check=False).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    digest = hashlib.sha1()
    for name in DETECTOR_SOURCES:
        path = REPO / name
        digest.update(path.read_bytes() if path.exists() else b"")
    return {
        "detector_sources_sha1": digest.hexdigest()[:12],  # the detector may differ from the commit
        "cpu": cpu,
        "n_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "git_commit": commit,
    }


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars and arrays to Python, non-finite floats to null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(payload), indent=1) + "\n")
    return path


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return path


def feed(detector: BurstDetector, samples: npt.NDArray[np.complex64], sample_index: int,
         gain_db: float | None = None) -> list[Burst]:
    """Give ``samples`` (stream samples from ``sample_index`` on) to the detector as one block."""
    block = IQBlock(samples=samples, center_freq_hz=detector.center_freq_hz,
                    sample_rate_hz=detector.sample_rate_hz,
                    t_start_s=sample_index / detector.sample_rate_hz,
                    sample_index=sample_index, gain_db=gain_db)
    return detector.process(block)


def isotonic(values: npt.ArrayLike, weights: npt.ArrayLike | None = None) -> npt.NDArray[np.float64]:
    """Non-decreasing least-squares fit (pool adjacent violators) of a measured curve.

    A probability of detection measured with a few hundred trials wobbles by a few
    percent; reading the SNR at which it crosses 0.9 from the isotonic fit takes the
    first crossing of the trend, not of the noise.
    """
    y = np.asarray(values, dtype=np.float64)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)
    blocks: list[list[float]] = []  # [mean, weight, count]
    for yi, wi in zip(y, w, strict=True):
        blocks.append([float(yi), float(wi), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            total = w1 + w2
            blocks.append([(m1 * w1 + m2 * w2) / total if total > 0 else 0.5 * (m1 + m2), total, n1 + n2])
    return np.concatenate([np.full(int(n), m) for m, _, n in blocks]) if blocks else y.copy()


def crossing(x: npt.ArrayLike, y: npt.ArrayLike, level: float) -> float | None:
    """First ``x`` where the piecewise-linear curve ``y(x)`` reaches ``level`` (None if it never does).

    ``None`` also when the curve already starts at or above ``level``: the crossing is
    then below the measured range and any number would be invented.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    above = np.flatnonzero(ys >= level)
    if above.size == 0 or above[0] == 0:
        return None
    i = int(above[0])
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return float(x0 + (level - y0) * (x1 - x0) / (y1 - y0))


def probit_crossing(x: npt.ArrayLike, k: npt.ArrayLike, n: npt.ArrayLike, level: float,
                    half_width: float = 2.5) -> float | None:
    """``x`` where a probit curve fitted to ``k`` successes in ``n`` trials reaches ``level``.

    Reading the crossing off straight lines between grid points overstates it where the
    curve bends (a Pd curve is concave near 0.9): on the ideal detector's own curves,
    sampled every 1 dB, linear interpolation put the Pd 0.9 point 0 to 0.19 dB too high,
    depending on where the grid falls. A probit ``Φ(a + b·x)`` fitted by maximum
    likelihood to the points within ``half_width`` of the rough (isotonic, linear)
    crossing reads it within ±0.03 dB. ``None`` when the rough crossing is ``None``.
    """
    xs = np.asarray(x, dtype=np.float64)
    ks = np.asarray(k, dtype=np.float64)
    ns = np.asarray(n, dtype=np.float64)
    rough = crossing(xs, isotonic(ks / np.maximum(ns, 1.0), ns), level)
    if rough is None:
        return None
    near = (np.abs(xs - rough) <= half_width) & (ns > 0)
    if np.count_nonzero(near) < 3:
        return rough
    xs, ks, ns = xs[near], ks[near], ns[near]

    def neg_log_likelihood(p: npt.NDArray[np.float64]) -> float:
        log_q = stats.norm.logcdf(p[0] + p[1] * xs)
        log_1q = stats.norm.logsf(p[0] + p[1] * xs)
        return -float(np.sum(ks * log_q + (ns - ks) * log_1q))

    start = np.array([-rough, 1.0])
    fit = optimize.minimize(neg_log_likelihood, start, method="Nelder-Mead",
                            options={"xatol": 1e-7, "fatol": 1e-10, "maxiter": 4000})
    a, b = fit.x
    if not fit.success or b <= 0:
        return rough
    return float((stats.norm.ppf(level) - a) / b)


@contextmanager
def one_core() -> Iterator[int | None]:
    """Pin this process to one CPU for the duration (returns it), then restore the affinity."""
    if not hasattr(os, "sched_getaffinity"):
        yield None
        return
    previous = os.sched_getaffinity(0)
    cpu = max(previous)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, previous)


def db(value: float) -> float:
    return 10.0 * math.log10(value)
