"""What a recording holds: one streaming pass for ``cellwatch info PATH``.

Levels are dBFS with ``|x| = 1`` as 0 dBFS (so a cu8 sample at both rails reads
+3 dBFS). Powers are averaged in linear units. The power distribution is taken
over short frames (1 ms by default: about two GSM timeslots, one LTE subframe)
and kept as a fixed 0.01 dB histogram, so memory does not grow with the file's
length and the 1/50/99 % points read noise floor, typical level and bursts.

Clipping counts I/Q components at full scale: cu8 bytes at 0 or 255 (the
RTL2832U's ADC rails), otherwise ``|I|`` or ``|Q|`` >= 0.999. More than
:data:`CLIPPING_WARN_PERCENT` means the gain is too high for the site.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from typing import Any

import numpy as np

from dsp.iq import ComplexArray
from sdr.recording import DEFAULT_BLOCK_SAMPLES, format_utc_iso, open_recording, raw_to_complex64

PERCENTILES = (1, 50, 99)
CLIPPING_WARN_PERCENT = 0.1
FULL_SCALE_THRESHOLD = 0.999
_HIST_LOW_DBFS = -200.0
_HIST_HIGH_DBFS = 20.0
_HIST_STEP_DB = 0.01
_N_BINS = round((_HIST_HIGH_DBFS - _HIST_LOW_DBFS) / _HIST_STEP_DB)


def _frame_powers(powers: np.ndarray, frame_len: int) -> np.ndarray:
    """Mean power of consecutive frames of ``frame_len`` samples; a short tail is its own frame."""
    n_full = powers.size // frame_len
    means = powers[: n_full * frame_len].reshape(n_full, frame_len).mean(axis=1, dtype=np.float64)
    if powers.size > n_full * frame_len:
        tail = np.mean(powers[n_full * frame_len :], dtype=np.float64)
        means = np.append(means, tail)
    return means


def _to_dbfs(power: float) -> float:
    return float(10.0 * math.log10(max(power, 1e-20)))


def summarize_recording(
    path: str | os.PathLike[str],
    *,
    n_samples_per_block: int = DEFAULT_BLOCK_SAMPLES,
    frame_duration_s: float = 1e-3,
    **open_kwargs: Any,
) -> dict[str, Any]:
    """Metadata and level statistics of a recording, from one pass over its samples.

    ``open_kwargs`` go to :func:`sdr.recording.open_recording` (``sample_rate_hz``,
    ``center_freq_hz`` for raw files...). The result is JSON-serializable; levels
    are ``None`` for an empty recording. ``checksum`` is ``"ok"``, ``"mismatch"``,
    ``"absent"`` (no ``core:sha512``) or ``"not checked"`` (raw files, or data
    around the samples that the hash covers but this pass does not read).
    """
    recording = open_recording(path, **{k: v for k, v in open_kwargs.items() if v is not None})
    info = recording.info
    frame_len = max(1, round(frame_duration_s * info.sample_rate_hz))
    block = max(frame_len, (n_samples_per_block // frame_len) * frame_len)

    hasher = None
    if info.sha512 is not None and info.data_offset_bytes == 0:
        data_bytes = os.path.getsize(info.data_path)
        if data_bytes == info.n_samples * info.bytes_per_sample:
            hasher = hashlib.sha512()

    sum_power = 0.0
    peak_power = 0.0
    sum_i = 0.0
    sum_q = 0.0
    n_clipped = 0
    histogram = np.zeros(_N_BINS, dtype=np.int64)
    for raw in recording.raw_blocks(block):
        if hasher is not None:
            hasher.update(np.ascontiguousarray(raw.data).view(np.uint8).data)
        samples: ComplexArray = raw_to_complex64(raw.data, info.datatype)
        if info.datatype == "cu8":
            n_clipped += int(np.count_nonzero((raw.data == 0) | (raw.data == 255)))
        else:
            n_clipped += int(np.count_nonzero(np.abs(samples.view(np.float32)) >= FULL_SCALE_THRESHOLD))
        powers = samples.real * samples.real + samples.imag * samples.imag
        sum_power += float(np.sum(powers, dtype=np.float64))
        peak_power = max(peak_power, float(powers.max()))
        sum_i += float(np.sum(samples.real, dtype=np.float64))
        sum_q += float(np.sum(samples.imag, dtype=np.float64))
        frame_dbfs = 10.0 * np.log10(np.maximum(_frame_powers(powers, frame_len), 1e-20))
        bins = np.clip(((frame_dbfs - _HIST_LOW_DBFS) / _HIST_STEP_DB).astype(np.int64), 0, _N_BINS - 1)
        histogram += np.bincount(bins, minlength=_N_BINS)

    n = info.n_samples
    checksum = "not checked"
    if info.format == "sigmf" and info.sha512 is None:
        checksum = "absent"
    elif hasher is not None:
        checksum = "ok" if hasher.hexdigest().lower() == str(info.sha512).lower() else "mismatch"

    percentiles: dict[str, float] | None = None
    if n:
        cumulative = np.cumsum(histogram)
        total = int(cumulative[-1])
        percentiles = {}
        for q in PERCENTILES:
            index = int(np.searchsorted(cumulative, q / 100.0 * total, side="left"))
            index = min(index, _N_BINS - 1)
            percentiles[str(q)] = round(_HIST_LOW_DBFS + (index + 0.5) * _HIST_STEP_DB, 3)

    dc_i = sum_i / n if n else None
    dc_q = sum_q / n if n else None
    labels = Counter(a.label or "" for a in info.annotations)
    return {
        "path": info.path,
        "format": info.format,
        "datatype": info.datatype,
        "sample_rate_hz": info.sample_rate_hz,
        "center_freq_hz": info.center_freq_hz,
        "t_start": format_utc_iso(info.t_start_s) if info.t_start_known else None,
        "t_start_s": info.t_start_s,
        "t_start_known": info.t_start_known,
        "duration_s": info.duration_s,
        "n_samples": n,
        "n_captures": len(info.captures),
        "capture_freqs_hz": sorted({c.center_freq_hz for c in info.captures}),
        "sensor_id": info.sensor_id,
        "gain_db": info.gain_db,
        "hw": info.hw,
        "description": info.description,
        "mean_power_dbfs": _to_dbfs(sum_power / n) if n else None,
        "peak_power_dbfs": _to_dbfs(peak_power) if n else None,
        "frame_duration_s": frame_len / info.sample_rate_hz,
        "frame_power_percentiles_dbfs": percentiles,
        "dc_offset_i": dc_i,
        "dc_offset_q": dc_q,
        "dc_offset_dbfs": _to_dbfs(dc_i * dc_i + dc_q * dc_q) if dc_i is not None and dc_q is not None else None,
        "clipped_percent": 100.0 * n_clipped / (2 * n) if n else 0.0,
        "n_annotations": len(info.annotations),
        "annotation_labels": {label: labels[label] for label in sorted(labels)},
        "checksum": checksum,
    }


def _db(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def format_recording_summary(summary: dict[str, Any]) -> str:
    """The summary as aligned lines of text for a terminal."""
    s = summary
    kind = "SigMF" if s["format"] == "sigmf" else f"raw {s['format']}"
    lines = [
        f"recording    {s['path']}",
        f"format       {kind}, {s['datatype']}",
        f"sensor       {s['sensor_id']}" + ("" if s.get("gain_db") is None else f"   gain {s['gain_db']:.1f} dB"),
        f"centre       {s['center_freq_hz'] / 1e6:.6f} MHz   rate {s['sample_rate_hz'] / 1e6:.6g} MS/s",
    ]
    if s.get("n_captures", 1) > 1:
        freqs = ", ".join(f"{f / 1e6:.6g}" for f in s["capture_freqs_hz"])
        lines.append(f"captures     {s['n_captures']} segments at {freqs} MHz")
    start = s["t_start"] if s.get("t_start_known") else "unknown (raw file: times count from 0)"
    lines += [
        f"start        {start}",
        f"duration     {s['duration_s']:.6g} s ({s['n_samples']:,} samples)",
        f"power        mean {_db(s['mean_power_dbfs'])} dBFS   peak {_db(s['peak_power_dbfs'])} dBFS",
    ]
    percentiles = s.get("frame_power_percentiles_dbfs")
    if percentiles:
        points = "  ".join(f"p{q} {value:.1f}" for q, value in percentiles.items())
        lines.append(f"{s['frame_duration_s'] * 1e3:g} ms frames  {points} dBFS")
    if s.get("dc_offset_i") is not None:
        lines.append(
            f"DC offset    I {s['dc_offset_i']:+.4f}  Q {s['dc_offset_q']:+.4f}  ({_db(s['dc_offset_dbfs'])} dBFS)"
        )
    clipping = f"clipping     {s['clipped_percent']:.4f} % of I/Q values at full scale"
    if s["clipped_percent"] > CLIPPING_WARN_PERCENT:
        clipping += "  (overloaded: lower the gain)"
    lines.append(clipping)
    annotations = f"annotations  {s['n_annotations']}"
    if s.get("annotation_labels"):
        annotations += "  (" + ", ".join(f"{label or 'unlabelled'}: {count}" for label, count in s["annotation_labels"].items()) + ")"
    lines.append(annotations)
    if s.get("description"):
        lines.append(f"description  {s['description']}")
    if s.get("hw"):
        lines.append(f"hardware     {s['hw']}")
    lines.append(f"checksum     {s['checksum']}")
    return "\n".join(lines)
