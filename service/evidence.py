"""Evidence for an event: a spectrogram of its bursts and an export staff can hand over.

An event says "a phone in cell A-1-03"; the evidence shows why: the detections that
placed it, the workflow around it, and the radio samples of some of its bursts (IQ
snippets, :mod:`dsp.snippets`), as SigMF, the open format any SDR tool reads.

The export is one zip:

* ``event.json`` — the event as the API shows it (place, confidence, candidates, the
  sensors with their levels), its candidates, its workflow history (who acknowledged,
  escalated, closed it, when, with which note), and the list of snippet files;
* ``detections.jsonl`` — the contributing detections in DESIGN.md's JSON Lines form
  (``cellwatch locate`` reads it back);
* ``snippets/<sensor>_<n>.sigmf-meta`` + ``.sigmf-data`` — each snippet's cu8 bytes as
  the node received them, with ``core:datatype``, ``core:sample_rate``, ``core:frequency``,
  ``core:datetime``, ``core:hw`` and an annotation around the burst (its band and
  technology), written with the ``sigmf`` library (which also checks them);
* ``SHA256SUMS`` — ``sha256sum -c SHA256SUMS`` checks every other file.

The same event in the same state gives the same zip, byte for byte (fixed entry times
from the event's start, fixed order and permissions, no export time inside): its SHA-256,
which the manifest gives and the audit log records with each export, identifies what
was handed over. Who exported it and when is in the audit log, not in the zip.

Size is bounded: at most ``max_snippets`` snippets (taken in turn from each sensor,
earliest first) and ``max_detections`` detections; ``event.json`` says how many there
were in all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from sigmf import keys as sigmf_keys
from sigmf.sigmffile import SigMFFile

from dsp.iq import cu8_to_complex64
from dsp.snippets import IQSnippet
from service.schemas import action_out, event_out
from service.store import EventRow, NotFoundError, SnippetRef, Store, StoredSnippet

FORMAT = "cellwatch-evidence/1"
MAX_SNIPPETS = 64
MAX_DETECTIONS = 100_000
SPECTROGRAM_FFT = 128
SPECTROGRAM_MAX_ROWS = 128
SPECTROGRAM_MAX_COLUMNS = 128
SIGMF_EXTENSION = {"name": "cellwatch", "version": "1.0.0", "optional": True}
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def safe_name(text: str) -> str:
    """``text`` usable in a file name (and a Content-Disposition header)."""
    return _SAFE.sub("_", text)[:64] or "_"


def format_utc(t_s: float) -> str:
    """SigMF's ``core:datetime``: ISO 8601 UTC with microseconds and a ``Z``."""
    moment = _EPOCH + dt.timedelta(microseconds=round(t_s * 1e6))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- spectrogram -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spectrogram:
    """Power per time x frequency cell of a snippet, in dBFS per FFT bin (|x| = 1 is 0 dBFS).

    ``power_db`` has shape ``(len(t_s), len(freq_hz))``: rows are times (UTC seconds, the
    centre of each row's frames), columns absolute frequencies (centre of each bin).
    """

    t_s: npt.NDArray[np.float64]
    freq_hz: npt.NDArray[np.float64]
    power_db: npt.NDArray[np.float32]


def _group_mean(values: npt.NDArray[Any], group: int, axis: int) -> npt.NDArray[Any]:
    """Means of consecutive groups of ``group`` along ``axis`` (the last group may be shorter)."""
    n = values.shape[axis]
    if group <= 1:
        return values
    starts = np.arange(0, n, group)
    counts = np.diff(np.append(starts, n)).astype(np.float64)
    sums = np.add.reduceat(values, starts, axis=axis)
    shape = [1] * values.ndim
    shape[axis] = counts.size
    return sums / counts.reshape(shape)


def spectrogram(snippet: IQSnippet, *, n_fft: int = SPECTROGRAM_FFT, max_rows: int = SPECTROGRAM_MAX_ROWS,
                max_columns: int = SPECTROGRAM_MAX_COLUMNS) -> Spectrogram:
    """Short-time spectrum of a snippet: Hann-windowed ``n_fft``-point FFTs, half overlapped.

    Powers are averaged (in linear units) over groups of consecutive frames and bins so the
    result has at most ``max_rows`` x ``max_columns`` cells, then turned into dB. With the
    defaults a 1.5 ms GSM snippet at 2.4 MS/s gives 57 rows of 26.7 µs x 128 bins of
    18.75 kHz: the 200 kHz burst spans ~11 bins. A full-scale tone centred on a bin reads
    0 dB (the window's power is normalized out).
    """
    x = cu8_to_complex64(snippet.data)
    n_fft = int(min(n_fft, max(8, 1 << int(math.floor(math.log2(max(x.size, 1)))))))
    if x.size < n_fft:
        x = np.concatenate([x, np.zeros(n_fft - x.size, dtype=np.complex64)])
    hop = n_fft // 2
    frames = sliding_window_view(x, n_fft)[::hop]  # (n_frames, n_fft), a view
    window = np.hanning(n_fft + 2)[1:-1].astype(np.float32)  # no zero ends: every sample counts
    spectrum = np.fft.fftshift(np.fft.fft(frames * window, axis=1), axes=1)
    power = (spectrum.real.astype(np.float64) ** 2 + spectrum.imag.astype(np.float64) ** 2) / float(window.sum()) ** 2
    rate = snippet.sample_rate_hz
    centres_s = snippet.t_start_s + (np.arange(frames.shape[0]) * hop + n_fft / 2.0) / rate
    freqs_hz = snippet.center_freq_hz + np.fft.fftshift(np.fft.fftfreq(n_fft, 1.0 / rate))
    row_group = math.ceil(frames.shape[0] / max_rows)
    column_group = math.ceil(n_fft / max_columns)
    power = _group_mean(_group_mean(power, row_group, 0), column_group, 1)
    return Spectrogram(
        t_s=_group_mean(centres_s, row_group, 0),
        freq_hz=_group_mean(freqs_hz, column_group, 0),
        power_db=(10.0 * np.log10(np.maximum(power, 1e-20))).astype(np.float32),
    )


def choose_snippet(event: EventRow, refs: Sequence[SnippetRef]) -> SnippetRef | None:
    """The snippet to show by default: from the sensor that heard the event strongest.

    Strength is the event's calibrated level per sensor (``rssi_dbm``); sensors it does
    not list rank by their bursts' dBFS. Within the sensor: the burst with the best SNR,
    then the earliest.
    """
    if not refs:
        return None
    rssi: dict[str, float] = {}
    for s in event.sensors:
        value = s.get("rssi_dbm") if isinstance(s, Mapping) else None
        if isinstance(value, int | float) and math.isfinite(value):
            rssi[str(s.get("sensor_id"))] = float(value)

    def sensor_rank(sensor_id: str) -> tuple[bool, float]:
        own = [r.detection_power_dbfs for r in refs if r.sensor_id == sensor_id]
        return (sensor_id in rssi, rssi.get(sensor_id, max(own)))

    best_sensor = max(sorted({r.sensor_id for r in refs}), key=sensor_rank)
    candidates = [r for r in refs if r.sensor_id == best_sensor]
    return min(candidates, key=lambda r: (-r.detection_snr_db, r.t_start_s, r.id))


# -- SigMF ---------------------------------------------------------------------------------------


def snippet_sigmf_meta(stored: StoredSnippet, event_id: str) -> str:
    """The ``.sigmf-meta`` text of a snippet (its ``.sigmf-data`` is ``snippet.data`` as is)."""
    s = stored.snippet
    hw = f"RTL-SDR (cellwatch sensor {s.sensor_id}, node {stored.node_id})"
    if s.gain_db is not None:
        hw += f", manual gain {s.gain_db:g} dB"
    global_info: dict[str, Any] = {
        sigmf_keys.DATATYPE_KEY: s.datatype,
        sigmf_keys.SAMPLE_RATE_KEY: float(s.sample_rate_hz),
        sigmf_keys.NUM_CHANNELS_KEY: 1,
        sigmf_keys.HW_KEY: hw,
        sigmf_keys.RECORDER_KEY: "cellwatch",
        sigmf_keys.DESCRIPTION_KEY: f"cellwatch evidence for event {event_id}: a {s.tech} burst seen by "
                                    f"sensor {s.sensor_id}, +- a margin, as its node received it",
        sigmf_keys.SHA512_KEY: hashlib.sha512(s.data).hexdigest(),
        sigmf_keys.EXTENSIONS_KEY: [SIGMF_EXTENSION],
        "cellwatch:event_id": event_id,
        "cellwatch:sensor_id": s.sensor_id,
        "cellwatch:node_id": stored.node_id,
        "cellwatch:snippet_stream": f"{stored.stream_id}:{stored.seq}",
        "cellwatch:received_s": stored.received_s,
    }
    if s.gain_db is not None:
        global_info["cellwatch:gain_db"] = s.gain_db
    if s.sample_index is not None:
        global_info["cellwatch:stream_sample_index"] = s.sample_index
    sigmf_file = SigMFFile(global_info=global_info)
    sigmf_file.add_capture(0, metadata={sigmf_keys.FREQUENCY_KEY: int(s.center_freq_hz),
                                        sigmf_keys.DATETIME_KEY: format_utc(s.t_start_s)})
    half_hz = 0.5 * s.burst_bandwidth_hz
    annotation: dict[str, Any] = {
        sigmf_keys.FREQ_LOWER_EDGE_KEY: s.detection_freq_hz - half_hz,
        sigmf_keys.FREQ_UPPER_EDGE_KEY: s.detection_freq_hz + half_hz,
        sigmf_keys.LABEL_KEY: s.tech,
        sigmf_keys.COMMENT_KEY: f"detection {stored.ref.detection_id}: burst at {s.detection_t_start_s:.7f} s UTC, "
                                f"{s.detection_freq_hz:.1f} Hz",
        "cellwatch:detection_t_start_s": s.detection_t_start_s,
        "cellwatch:detection_freq_hz": s.detection_freq_hz,
        "cellwatch:snr_db": stored.ref.detection_snr_db,
        "cellwatch:power_dbfs": stored.ref.detection_power_dbfs,
    }
    if s.session_id is not None:
        annotation["cellwatch:session_id"] = s.session_id
    sigmf_file.add_annotation(s.burst_offset, length=s.burst_samples, metadata=annotation)
    sigmf_file.validate()
    return sigmf_file.dumps(pretty=True) + "\n"


# -- the export ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceFile:
    name: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def n_bytes(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Evidence:
    """One event's evidence: its files (SHA256SUMS last) and the zip that holds them."""

    event_id: str
    files: tuple[EvidenceFile, ...]
    zip_bytes: bytes
    n_snippets: int  # of the event, in all
    n_snippets_included: int
    n_detections: int
    n_detections_included: int

    @property
    def zip_sha256(self) -> str:
        return hashlib.sha256(self.zip_bytes).hexdigest()

    def manifest(self) -> dict[str, Any]:
        return {"files": [{"name": f.name, "sha256": f.sha256, "bytes": f.n_bytes} for f in self.files],
                "zip_sha256": self.zip_sha256}


def _canonical_json(value: Any) -> bytes:
    return (json.dumps(_finite(value), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
            + "\n").encode("utf-8")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _round_robin(refs: Sequence[SnippetRef], limit: int) -> list[SnippetRef]:
    """Up to ``limit`` refs taken in turn from each sensor (earliest first), in (sensor, time) order."""
    per_sensor: dict[str, list[SnippetRef]] = {}
    for ref in refs:
        per_sensor.setdefault(ref.sensor_id, []).append(ref)
    chosen: list[SnippetRef] = []
    depth = 0
    while len(chosen) < limit and any(depth < len(v) for v in per_sensor.values()):
        for sensor in sorted(per_sensor):
            if depth < len(per_sensor[sensor]) and len(chosen) < limit:
                chosen.append(per_sensor[sensor][depth])
        depth += 1
    return sorted(chosen, key=lambda r: (r.sensor_id, r.t_start_s, r.id))


def _zip_time(t_s: float) -> tuple[int, int, int, int, int, int]:
    moment = _EPOCH + dt.timedelta(seconds=max(int(t_s), 315_532_800))  # zip times start in 1980
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def _zip(files: Sequence[EvidenceFile], t_s: float) -> bytes:
    """The files in a zip whose bytes depend on nothing but the files and ``t_s``."""
    buffer = io.BytesIO()
    stamp = _zip_time(t_s)
    with zipfile.ZipFile(buffer, "w") as archive:
        for f in files:
            info = zipfile.ZipInfo(f.name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever the platform
            info.external_attr = 0o100644 << 16
            archive.writestr(info, f.data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    return buffer.getvalue()


def build_evidence(store: Store, event_id: str, *, max_snippets: int = MAX_SNIPPETS,
                   max_detections: int = MAX_DETECTIONS) -> Evidence:
    """The evidence of one event (raises :class:`~service.store.NotFoundError` for an unknown event)."""
    row = store.get_event(event_id)
    if row is None:
        raise NotFoundError(f"no event {event_id!r}")
    n_detections, stored_detections = store.event_detections(event_id, max_detections)
    refs = store.event_snippet_refs(event_id)
    snippets = store.get_snippets(_round_robin(refs, max_snippets))
    files: list[EvidenceFile] = []
    listed: list[dict[str, Any]] = []
    counters: dict[str, int] = {}
    for stored in snippets:
        s = stored.snippet
        counters[s.sensor_id] = counters.get(s.sensor_id, 0) + 1
        base = f"snippets/{safe_name(s.sensor_id)}_{counters[s.sensor_id]:03d}"
        files.append(EvidenceFile(f"{base}.sigmf-meta", snippet_sigmf_meta(stored, row.event_id).encode("utf-8")))
        files.append(EvidenceFile(f"{base}.sigmf-data", s.data))
        listed.append({
            "files": [f"{base}.sigmf-meta", f"{base}.sigmf-data"], "sensor_id": s.sensor_id,
            "node_id": stored.node_id, "t_start_s": s.t_start_s, "center_freq_hz": s.center_freq_hz,
            "sample_rate_hz": s.sample_rate_hz, "n_samples": s.n_samples, "datatype": s.datatype,
            "data_sha256": stored.data_sha256, "received_s": stored.received_s,
            "detection": {"id": stored.ref.detection_id, "t_start_s": s.detection_t_start_s,
                          "freq_hz": s.detection_freq_hz, "snr_db": stored.ref.detection_snr_db}})
    event = event_out(row).model_dump(mode="json")
    document = {
        "format": FORMAT,
        "event": event,
        "candidates": event["candidates"],
        "history": [action_out(a).model_dump(mode="json") for a in store.event_actions_of(row.event_id)],
        "n_detections": n_detections,
        "n_detections_included": len(stored_detections),
        "n_snippets": len(refs),
        "n_snippets_included": len(snippets),
        "snippets": listed,
    }
    lines = [json.dumps(d.detection.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
             for d in stored_detections]
    files = [EvidenceFile("event.json", _canonical_json(document)),
             EvidenceFile("detections.jsonl", "".join(line + "\n" for line in lines).encode("utf-8")), *files]
    sums = "".join(f"{f.sha256}  {f.name}\n" for f in sorted(files, key=lambda f: f.name))
    files.append(EvidenceFile("SHA256SUMS", sums.encode("ascii")))
    return Evidence(row.event_id, tuple(files), _zip(files, row.t_start_s), len(refs), len(snippets),
                    n_detections, len(stored_detections))
