"""Recording I/O: SigMF (the native format), raw rtl_sdr ``.cu8``, rtl_433 ``.cs16``, GNU Radio ``.cfile``.

Readers stream. :meth:`Recording.blocks` reads one block at a time at a byte
offset, so memory use does not grow with the file's length. cellwatch converts
fixed-point samples itself; sigmf's autoscale is never used:

* ``cu8`` goes through :func:`dsp.iq.cu8_to_complex64`, ``(b - 127.5) / 127.5``:
  the converter live dongle data uses too (sigmf's autoscale would use
  ``(b - 128) / 128``, and a replayed level would then differ from a live one);
  its blocks keep the bytes (:meth:`dsp.records.IQBlock.from_cu8`: the detector reads
  them, and the samples are made only if something else asks for them);
* ``ci16_le`` is scaled by 1/32768;
* ``cf32_le`` is used as stored.

The ``sigmf`` library parses and validates metadata and writes it;
:class:`SigMFWriter` streams the dataset and hashes it on the way.

Sample indices are positions in the dataset (0 is the first sample in the
file; a ``core:offset`` is subtracted from the metadata's indices). Times are
UTC seconds since the Unix epoch: the first capture's ``core:datetime`` plus
the sample offset. Raw files carry no time: they start at 0.0 unless
``t_start_s`` is given (the file's mtime is not used: copying a file changes it,
and it marks the end of a capture, not its start).

A SigMF recording may have several captures (a retune, or a restart after lost
samples). Blocks never span a capture boundary, so each block has one centre
frequency and one time base; a capture whose ``core:datetime`` is later than
the previous capture's samples account for reports the gap as ``n_dropped`` on
its first block (to within the 1 µs a ``core:datetime`` carries).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Any

import jsonschema
import numpy as np
import numpy.typing as npt
from sigmf import keys as sigmf_keys
from sigmf import validate as sigmf_validate
from sigmf.error import SigMFError
from sigmf.sigmffile import SigMFFile

from dsp.errors import InputError
from dsp.iq import ComplexArray, complex64_to_cu8, cu8_to_complex64
from dsp.records import IQBlock

logger = logging.getLogger(__name__)

DEFAULT_BLOCK_SAMPLES = 262_144
MAX_SAMPLE_RATE_HZ = 10e9  # beyond any receiver this project meets; larger values are typos
MAX_CENTER_FREQ_HZ = 300e9
CI16_SCALE = 1.0 / 32768.0
RECORDER = "cellwatch"
EXTENSION_NAME = "cellwatch"
EXTENSION_VERSION = "1.0.0"
SENSOR_ID_KEY = "cellwatch:sensor_id"
GAIN_DB_KEY = "cellwatch:gain_db"
META_SUFFIX = sigmf_keys.SIGMF_METADATA_EXT
DATA_SUFFIX = sigmf_keys.SIGMF_DATASET_EXT
NAME_HINT = "pass --rate and --freq, or name it like g001_902.4M_2.4M.cu8"


@dataclass(frozen=True, slots=True)
class SampleFormat:
    """How one SigMF datatype is laid out: interleaved I,Q components of ``component_dtype``."""

    datatype: str
    component_dtype: np.dtype[Any]

    @property
    def bytes_per_sample(self) -> int:
        return 2 * self.component_dtype.itemsize


SAMPLE_FORMATS: dict[str, SampleFormat] = {
    "cu8": SampleFormat("cu8", np.dtype(np.uint8)),
    "ci16_le": SampleFormat("ci16_le", np.dtype("<i2")),
    "cf32_le": SampleFormat("cf32_le", np.dtype("<f4")),
}

# raw file suffix -> (format name reported, SigMF datatype of its samples)
RAW_SUFFIXES: dict[str, tuple[str, str]] = {
    ".cu8": ("cu8", "cu8"),
    ".cs16": ("cs16", "ci16_le"),
    ".cfile": ("cfile", "cf32_le"),
    ".cf32": ("cfile", "cf32_le"),
    ".fc32": ("cfile", "cf32_le"),
}


def raw_to_complex64(raw: npt.NDArray[Any], datatype: str) -> ComplexArray:
    """Interleaved components (as stored, shape ``(2 * n,)``) to complex64 samples, shape ``(n,)``."""
    if datatype == "cu8":
        return cu8_to_complex64(raw)
    if datatype == "ci16_le":
        return (raw.astype(np.float32) * np.float32(CI16_SCALE)).view(np.complex64)
    if datatype == "cf32_le":
        return np.ascontiguousarray(raw, dtype=np.float32).view(np.complex64)
    raise ValueError(f"unsupported datatype {datatype!r}")


def raw_to_block(raw: npt.NDArray[Any], datatype: str, center_freq_hz: int, sample_rate_hz: float, t_start_s: float,
                 **metadata: Any) -> IQBlock:
    """An :class:`IQBlock` of interleaved components as stored: cu8 bytes are kept as such
    (:meth:`IQBlock.from_cu8`), the others become complex64 samples (:func:`raw_to_complex64`)."""
    if datatype == "cu8":
        return IQBlock.from_cu8(raw, center_freq_hz, sample_rate_hz, t_start_s, **metadata)
    return IQBlock(raw_to_complex64(raw, datatype), center_freq_hz, sample_rate_hz, t_start_s, **metadata)


def complex64_to_raw(samples: npt.ArrayLike, datatype: str) -> npt.NDArray[Any]:
    """Complex samples to interleaved components in ``datatype``; fixed point clips at full scale."""
    x = np.ascontiguousarray(samples, dtype=np.complex64)
    if datatype == "cu8":
        return complex64_to_cu8(x)
    components = x.view(np.float32)
    if datatype == "ci16_le":
        scaled = np.rint(components * np.float32(32768.0))
        return np.clip(scaled, -32768, 32767).astype("<i2")
    if datatype == "cf32_le":
        return components.astype("<f4", copy=False)
    raise ValueError(f"unsupported datatype {datatype!r}")


# ---------------------------------------------------------------------------------------------
# time


_ISO_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<tz>[Zz]|[+-]\d{2}:?\d{2})$"
)


def parse_utc_iso(text: str) -> float:
    """An RFC 3339 timestamp (SigMF ``core:datetime``) as UTC seconds since the epoch.

    Fractions finer than a microsecond are kept (``datetime`` would drop them);
    a time without a zone is refused: it would silently be local time.
    """
    match = _ISO_RE.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not an ISO-8601 UTC time like 2024-05-01T12:00:00.000000Z: {text!r}")
    tz = match["tz"].upper()
    try:
        whole = datetime.fromisoformat(f"{match['date']}T{match['time']}{'+00:00' if tz == 'Z' else tz}")
    except ValueError as exc:
        raise ValueError(f"not a valid time: {text!r} ({exc})") from None
    frac = match["frac"]
    return whole.timestamp() + (float("0." + frac) if frac else 0.0)


def format_utc_iso(t_s: float) -> str:
    """UTC seconds since the epoch as SigMF's ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (rounded to 1 µs)."""
    micros = round(t_s * 1e6)
    seconds, frac = divmod(micros, 1_000_000)
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:06d}Z"


# ---------------------------------------------------------------------------------------------
# rtl_433-style names


_SI = {"k": Decimal(10) ** 3, "K": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9}
_SI_TOKEN_RE = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<unit>[kKMG])(?:hz|sps)?$", re.IGNORECASE)


def _si_token(token: str) -> Decimal | None:
    match = _SI_TOKEN_RE.match(token)
    if match is None:
        return None
    unit = match["unit"]
    # IGNORECASE lets "m" through; only k, K, M and G are multipliers here (m would be milli)
    if unit not in _SI:
        return None
    try:
        return Decimal(match["number"]) * _SI[unit]
    except InvalidOperation:
        return None


def parse_rtl433_name(name: str | os.PathLike[str]) -> tuple[int, float] | None:
    """``(center_freq_hz, sample_rate_hz)`` from a name such as ``g001_902.4M_2.4M.cu8``.

    rtl_433 names its dumps ``gNNN_<freq>_<rate>.cu8`` (``g005_433.92M_250k.cu8``).
    The first two consecutive ``_``-separated tokens that are numbers with a
    ``k``/``M``/``G`` suffix are taken as centre frequency then sample rate; a
    trailing ``Hz``/``sps`` is accepted. ``None`` when the name holds no such pair.
    Decimal arithmetic keeps 902.4M exactly 902400000 Hz.
    """
    stem = Path(name).name
    for suffix in (*RAW_SUFFIXES, DATA_SUFFIX, META_SUFFIX):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    tokens = re.split(r"[_\s]+", stem)
    for first, second in itertools.pairwise(tokens):
        freq = _si_token(first)
        rate = _si_token(second)
        if freq is not None and rate is not None:
            return int(freq.to_integral_value()), float(rate)
    return None


# ---------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True, slots=True)
class Capture:
    """One SigMF capture segment: from ``sample_start`` on, this centre frequency and time base."""

    sample_start: int  # dataset index of its first sample
    center_freq_hz: int
    t_start_s: float  # UTC of sample ``sample_start``
    n_dropped: int = 0  # samples lost just before it, from a forward jump of core:datetime


@dataclass(frozen=True)
class Annotation:
    """A SigMF annotation: what is known about samples ``[sample_start, sample_start + sample_count)``."""

    sample_start: int
    sample_count: int | None = None
    freq_lower_hz: float | None = None
    freq_upper_hz: float | None = None
    label: str | None = None
    comment: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # every other key, e.g. cellwatch:tech


@dataclass(frozen=True)
class RecordingInfo:
    """What a recording is, read from its metadata or name without touching its samples."""

    path: str  # as the user named it
    format: str  # "sigmf", "cu8", "cs16" or "cfile"
    datatype: str  # SigMF datatype of the samples: cu8, ci16_le, cf32_le
    sample_rate_hz: float
    center_freq_hz: int  # of the first capture
    t_start_s: float  # UTC of the first sample; 0.0 when unknown (see t_start_known)
    t_start_known: bool
    n_samples: int
    sensor_id: str
    gain_db: float | None
    data_path: str
    meta_path: str | None = None
    captures: tuple[Capture, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    hw: str = ""
    description: str = ""
    sha512: str | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)  # non-core global keys
    data_offset_bytes: int = 0  # where sample 0 sits in the data file (non-conforming datasets)

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate_hz

    @property
    def t_end_s(self) -> float:
        """UTC just after the last sample, assuming no gap (see captures for jumps)."""
        last = self.captures[-1] if self.captures else None
        if last is None:
            return self.t_start_s + self.duration_s
        return last.t_start_s + (self.n_samples - last.sample_start) / self.sample_rate_hz

    @property
    def bytes_per_sample(self) -> int:
        return SAMPLE_FORMATS[self.datatype].bytes_per_sample


@dataclass(frozen=True, slots=True, eq=False)
class RawBlock:
    """Samples as stored: interleaved components (uint8, <i2 or <f4), shape ``(2 * n_samples,)``."""

    sample_index: int
    data: npt.NDArray[Any]
    capture_index: int

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[0] // 2)


# ---------------------------------------------------------------------------------------------
# reader


class Recording:
    """An opened recording: its :class:`RecordingInfo` and streaming access to its samples.

    Holds no open file: each iteration opens the data file and reads it block
    by block, so several readers can share one ``Recording``.
    """

    def __init__(self, info: RecordingInfo) -> None:
        self._info = info
        self._format = SAMPLE_FORMATS[info.datatype]
        captures = info.captures or (Capture(0, info.center_freq_hz, info.t_start_s),)
        self._captures = captures
        self._capture_starts = np.array([c.sample_start for c in captures], dtype=np.int64)

    @property
    def info(self) -> RecordingInfo:
        return self._info

    @property
    def n_samples(self) -> int:
        return self._info.n_samples

    def __repr__(self) -> str:
        i = self._info
        return (
            f"Recording({i.path!r}, {i.format}/{i.datatype}, {i.center_freq_hz} Hz, "
            f"{i.sample_rate_hz:g} S/s, {i.n_samples} samples)"
        )

    def capture_at(self, sample_index: int) -> Capture:
        """The capture segment that holds dataset sample ``sample_index``."""
        position = int(np.searchsorted(self._capture_starts, sample_index, side="right")) - 1
        return self._captures[max(position, 0)]

    def time_of_sample(self, sample_index: int) -> float:
        """UTC of dataset sample ``sample_index``."""
        capture = self.capture_at(sample_index)
        return capture.t_start_s + (sample_index - capture.sample_start) / self._info.sample_rate_hz

    def raw_blocks(
        self,
        n_samples_per_block: int = DEFAULT_BLOCK_SAMPLES,
        start_sample: int = 0,
        n_samples: int | None = None,
    ) -> Iterator[RawBlock]:
        """Samples as stored, block by block (for byte-level statistics such as cu8 clipping)."""
        start, stop = self._window(n_samples_per_block, start_sample, n_samples)
        return self._iter_raw(start, stop, n_samples_per_block)

    def blocks(
        self,
        n_samples_per_block: int = DEFAULT_BLOCK_SAMPLES,
        start_sample: int = 0,
        n_samples: int | None = None,
    ) -> Iterator[IQBlock]:
        """complex64 blocks of ``n_samples_per_block`` samples (fewer at the end and before a capture boundary).

        Each block carries its UTC start (capture time + offset / rate), its
        dataset ``sample_index``, centre frequency, sensor id and gain.
        Arguments are checked now, not at the first ``next()``.
        """
        start, stop = self._window(n_samples_per_block, start_sample, n_samples)
        return self._iter_blocks(start, stop, n_samples_per_block)

    def read(self, start_sample: int = 0, n_samples: int | None = None) -> ComplexArray:
        """Samples ``[start_sample, start_sample + n_samples)`` as one complex64 array (for short spans)."""
        start, stop = self._window(1, start_sample, n_samples)
        parts = [block.samples for block in self._iter_blocks(start, stop, max(stop - start, 1))]
        if not parts:
            return np.zeros(0, dtype=np.complex64)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    # -- internals ----------------------------------------------------------------------------

    def _window(self, n_samples_per_block: int, start_sample: int, n_samples: int | None) -> tuple[int, int]:
        source = self._info.path
        if not isinstance(n_samples_per_block, int | np.integer) or n_samples_per_block < 1:
            raise InputError(source, "n_samples_per_block", f"must be a positive integer, got {n_samples_per_block!r}")
        total = self._info.n_samples
        if start_sample < 0 or start_sample > total:
            raise InputError(source, "start_sample", f"{start_sample} is outside the recording (0..{total})")
        if n_samples is None:
            return int(start_sample), total
        if n_samples < 0 or start_sample + n_samples > total:
            raise InputError(
                source, "n_samples",
                f"{n_samples} samples from {start_sample} runs past the end ({total} samples)",
            )
        return int(start_sample), int(start_sample + n_samples)

    def _spans(self, start: int, stop: int, block: int) -> Iterator[tuple[int, int, int]]:
        """(capture index, first sample, count) for every block; blocks never cross a capture boundary."""
        n_captures = len(self._captures)
        for index, capture in enumerate(self._captures):
            cap_lo = 0 if index == 0 else capture.sample_start
            cap_hi = self._captures[index + 1].sample_start if index + 1 < n_captures else self._info.n_samples
            lo, hi = max(start, cap_lo), min(stop, cap_hi)
            for first in range(lo, hi, block):
                yield index, first, min(block, hi - first)

    def _iter_raw(self, start: int, stop: int, block: int) -> Iterator[RawBlock]:
        data_path = self._info.data_path
        bytes_per_sample = self._format.bytes_per_sample
        dtype = self._format.component_dtype
        try:
            handle = open(data_path, "rb")
        except OSError as exc:
            raise InputError(data_path, None, f"cannot read: {exc.strerror}") from None
        with handle:
            for capture_index, first, count in self._spans(start, stop, block):
                n_bytes = count * bytes_per_sample
                buffer = np.empty(n_bytes, dtype=np.uint8)
                handle.seek(self._info.data_offset_bytes + first * bytes_per_sample)
                n_read = handle.readinto(buffer.data)
                if n_read != n_bytes:
                    raise InputError(
                        data_path, None,
                        f"file ended at sample {first + (n_read or 0) // bytes_per_sample} while reading "
                        f"(it held {self._info.n_samples} samples when opened: shrunk since?)",
                    )
                yield RawBlock(first, buffer.view(dtype), capture_index)

    def _iter_blocks(self, start: int, stop: int, block: int) -> Iterator[IQBlock]:
        info = self._info
        rate = info.sample_rate_hz
        for raw in self._iter_raw(start, stop, block):
            capture = self._captures[raw.capture_index]
            yield raw_to_block(
                raw.data, info.datatype,
                center_freq_hz=capture.center_freq_hz,
                sample_rate_hz=rate,
                t_start_s=capture.t_start_s + (raw.sample_index - capture.sample_start) / rate,
                sensor_id=info.sensor_id,
                sample_index=raw.sample_index,
                gain_db=info.gain_db,
                n_dropped=capture.n_dropped if raw.sample_index == capture.sample_start else 0,
            )


def open_recording(
    path: str | os.PathLike[str],
    *,
    sample_rate_hz: float | None = None,
    center_freq_hz: float | None = None,
    sensor_id: str | None = None,
    t_start_s: float | None = None,
) -> Recording:
    """Open a SigMF recording (meta, data or base name), a raw ``.cu8``/``.cs16`` or a ``.cfile``/``.cf32``.

    Only the metadata and the file size are read here. ``sample_rate_hz`` and
    ``center_freq_hz`` fill what a file does not say (raw files take them from an
    rtl_433-style name otherwise); when SigMF metadata says something else they
    are refused as contradictory. ``sensor_id`` and ``t_start_s`` override the
    file (``t_start_s`` shifts every capture's time by the same amount).
    Every problem a user can cause raises :class:`InputError` naming file and field.
    """
    given = Path(path)
    source = str(given)
    _check_rate(source, "sample_rate_hz", sample_rate_hz, optional=True)
    _check_freq(source, "center_freq_hz", center_freq_hz, optional=True)
    if t_start_s is not None and not math.isfinite(t_start_s):
        raise InputError(source, "t_start_s", f"must be finite, got {t_start_s!r}")
    if sensor_id is not None and not sensor_id:
        raise InputError(source, "sensor_id", "must not be empty")

    name = given.name.lower()
    if name.endswith(META_SUFFIX):
        return _open_sigmf(given, given, sample_rate_hz, center_freq_hz, sensor_id, t_start_s)
    if name.endswith(DATA_SUFFIX):
        meta = given.with_name(given.name[: -len(DATA_SUFFIX)] + META_SUFFIX)
        return _open_sigmf(given, meta, sample_rate_hz, center_freq_hz, sensor_id, t_start_s)
    if given.suffix.lower() in RAW_SUFFIXES:
        return _open_raw(given, sample_rate_hz, center_freq_hz, sensor_id, t_start_s)
    if any(name.endswith(ext) for ext in sigmf_keys.SIGMF_ARCHIVE_EXTS):
        raise InputError(source, None, "SigMF archives are not read: unpack it (tar -xf) and open the .sigmf-meta")
    meta = given.with_name(given.name + META_SUFFIX)
    data = given.with_name(given.name + DATA_SUFFIX)
    if meta.exists() or data.exists():
        return _open_sigmf(given, meta, sample_rate_hz, center_freq_hz, sensor_id, t_start_s)
    if given.exists():
        raise InputError(
            source, None,
            "unknown recording type: expected .sigmf-meta/.sigmf-data, .cu8, .cs16, .cfile or .cf32",
        )
    raise InputError(source, None, f"no such file (nor {meta.name})")


def _check_rate(source: str, name: str, value: Any, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(source, name, f"must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InputError(source, name, f"must be a positive sample rate, got {value!r}")
    if value > MAX_SAMPLE_RATE_HZ:
        raise InputError(source, name, f"{value:g} S/s is beyond any receiver (max {MAX_SAMPLE_RATE_HZ:g})")


def _check_freq(source: str, name: str, value: Any, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(source, name, f"must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise InputError(source, name, f"must be a non-negative frequency in Hz, got {value!r}")
    if value > MAX_CENTER_FREQ_HZ:
        raise InputError(source, name, f"{value:g} Hz is beyond any receiver (max {MAX_CENTER_FREQ_HZ:g})")


def _file_size(path: Path, what: str) -> int:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(str(path), None, f"{what} missing") from None
    except OSError as exc:
        raise InputError(str(path), None, f"cannot read: {exc.strerror}") from None
    if not path.is_file():
        raise InputError(str(path), None, "not a regular file")
    return size


def _whole_samples(path: Path, n_bytes: int, fmt: SampleFormat) -> int:
    n_samples, leftover = divmod(n_bytes, fmt.bytes_per_sample)
    if leftover:
        raise InputError(
            str(path), None,
            f"{n_bytes} bytes of data is not a whole number of {fmt.bytes_per_sample}-byte {fmt.datatype} "
            f"samples: {leftover} byte{'s' if leftover > 1 else ''} left over (truncated file?)",
        )
    return n_samples


def _open_raw(
    path: Path,
    sample_rate_hz: float | None,
    center_freq_hz: float | None,
    sensor_id: str | None,
    t_start_s: float | None,
) -> Recording:
    format_name, datatype = RAW_SUFFIXES[path.suffix.lower()]
    fmt = SAMPLE_FORMATS[datatype]
    n_samples = _whole_samples(path, _file_size(path, "recording file"), fmt)
    from_name = parse_rtl433_name(path.name)
    freq = center_freq_hz if center_freq_hz is not None else (from_name[0] if from_name else None)
    rate = sample_rate_hz if sample_rate_hz is not None else (from_name[1] if from_name else None)
    if rate is None and freq is None:
        raise InputError(str(path), None, f"sample rate and centre frequency unknown: {NAME_HINT}")
    if rate is None:
        raise InputError(str(path), "sample rate", f"unknown: {NAME_HINT}")
    if freq is None:
        raise InputError(str(path), "centre frequency", f"unknown: {NAME_HINT}")
    _check_rate(str(path), "sample rate", rate)
    _check_freq(str(path), "centre frequency", freq)
    t0 = 0.0 if t_start_s is None else float(t_start_s)
    center = round(freq)
    info = RecordingInfo(
        path=str(path),
        format=format_name,
        datatype=datatype,
        sample_rate_hz=float(rate),
        center_freq_hz=center,
        t_start_s=t0,
        t_start_known=t_start_s is not None,
        n_samples=n_samples,
        sensor_id=sensor_id or path.stem,
        gain_db=None,
        data_path=str(path),
        captures=(Capture(0, center, t0),),
    )
    return Recording(info)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _schema_field(exc: jsonschema.ValidationError) -> str | None:
    """A jsonschema error's location as ``captures[1].core:frequency``."""
    parts: list[str] = []
    for part in exc.absolute_path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    if exc.validator == "required":
        match = re.match(r"'(.+)' is a required property", exc.message)
        if match:
            parts.append(("." if parts else "") + match.group(1))
    if not parts:
        match = re.match(r"(captures|annotations) has", exc.message)
        return match.group(1) if match else None
    return "".join(parts)


def _load_meta(meta_path: Path) -> dict[str, Any]:
    source = str(meta_path)
    try:
        text = meta_path.read_bytes()
    except OSError as exc:
        raise InputError(source, None, f"cannot read: {exc.strerror}") from None
    try:
        meta = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise InputError(source, None, f"not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise InputError(source, None, "must hold a JSON object with global, captures and annotations")
    top = meta.get("global")
    if isinstance(top, dict):
        datatype = top.get(sigmf_keys.DATATYPE_KEY)
        if isinstance(datatype, str) and datatype not in SAMPLE_FORMATS:
            raise InputError(
                source, f"global.{sigmf_keys.DATATYPE_KEY}",
                f"{datatype!r} is not supported (cellwatch reads {', '.join(SAMPLE_FORMATS)})",
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undeclared extension namespaces only warn
            sigmf_validate.validate(meta)
    except jsonschema.ValidationError as exc:
        raise InputError(source, _schema_field(exc), exc.message) from None
    return meta


def _open_sigmf(
    given: Path,
    meta_path: Path,
    sample_rate_hz: float | None,
    center_freq_hz: float | None,
    sensor_id: str | None,
    t_start_s: float | None,
) -> Recording:
    source = str(meta_path)
    if not meta_path.exists():
        data_name = meta_path.name[: -len(META_SUFFIX)] + DATA_SUFFIX
        raise InputError(source, None, f"SigMF metadata file missing (needed to read {data_name})")
    meta = _load_meta(meta_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sigmf_file = SigMFFile(metadata=meta, skip_checksum=True, autoscale=False)
    except SigMFError as exc:
        raise InputError(source, None, str(exc)) from None
    glob = sigmf_file.get_global_info()
    datatype = glob[sigmf_keys.DATATYPE_KEY]
    fmt = SAMPLE_FORMATS[datatype]

    n_channels = glob.get(sigmf_keys.NUM_CHANNELS_KEY, 1)
    if n_channels != 1:
        raise InputError(source, f"global.{sigmf_keys.NUM_CHANNELS_KEY}", f"{n_channels} channels: cellwatch reads single-channel recordings")
    if glob.get(sigmf_keys.METADATA_ONLY_KEY) and not glob.get(sigmf_keys.DATASET_KEY):
        raise InputError(source, f"global.{sigmf_keys.METADATA_ONLY_KEY}", "a metadata-only recording has no samples")

    rate = _resolve_rate(source, glob.get(sigmf_keys.SAMPLE_RATE_KEY), sample_rate_hz)

    # the dataset: <base>.sigmf-data, or the file a non-conforming dataset names
    dataset_name = glob.get(sigmf_keys.DATASET_KEY)
    if dataset_name:
        if (not isinstance(dataset_name, str) or Path(dataset_name).name != dataset_name or dataset_name in (".", "..")
                or "\x00" in dataset_name or len(dataset_name.encode("utf-8", "replace")) > 255
                or not dataset_name.isprintable() or any("\ud800" <= c <= "\udfff" for c in dataset_name)):
            raise InputError(source, f"global.{sigmf_keys.DATASET_KEY}",
                             f"must be a file name beside the metadata, got {dataset_name!r:.80}")
        data_path = meta_path.with_name(dataset_name)
    else:
        data_path = meta_path.with_name(meta_path.name[: -len(META_SUFFIX)] + DATA_SUFFIX)
    file_bytes = _file_size(data_path, f"SigMF data file (described by {meta_path.name})")

    captures_raw = sigmf_file.get_captures() or [{sigmf_keys.SAMPLE_START_KEY: glob.get(sigmf_keys.OFFSET_KEY, 0)}]
    header_bytes = _whole(source, f"captures[0].{sigmf_keys.HEADER_BYTES_KEY}",
                          captures_raw[0].get(sigmf_keys.HEADER_BYTES_KEY, 0))
    for index, capture in enumerate(captures_raw[1:], start=1):
        if capture.get(sigmf_keys.HEADER_BYTES_KEY, 0):
            raise InputError(source, f"captures[{index}].{sigmf_keys.HEADER_BYTES_KEY}", "header bytes inside the dataset are not supported")
    trailing_bytes = _whole(source, f"global.{sigmf_keys.TRAILING_BYTES_KEY}", glob.get(sigmf_keys.TRAILING_BYTES_KEY, 0))
    sample_bytes = file_bytes - header_bytes - trailing_bytes
    if sample_bytes < 0:
        raise InputError(
            source, f"captures[0].{sigmf_keys.HEADER_BYTES_KEY}",
            f"{header_bytes} header + {trailing_bytes} trailing bytes exceed the {file_bytes}-byte data file",
        )
    n_samples = _whole_samples(data_path, sample_bytes, fmt)

    offset = _whole(source, f"global.{sigmf_keys.OFFSET_KEY}", glob.get(sigmf_keys.OFFSET_KEY, 0))
    captures, t_known = _parse_captures(source, captures_raw, offset, n_samples, rate, fmt, center_freq_hz, t_start_s)
    annotations = _parse_annotations(source, sigmf_file.get_annotations(), offset, n_samples, fmt)

    meta_sensor = glob.get(SENSOR_ID_KEY)
    if meta_sensor is not None and (not isinstance(meta_sensor, str) or not meta_sensor):
        raise InputError(source, f"global.{SENSOR_ID_KEY}", f"must be a non-empty string, got {meta_sensor!r}")
    gain = glob.get(GAIN_DB_KEY)
    if gain is not None and (isinstance(gain, bool) or not isinstance(gain, int | float) or not math.isfinite(gain)):
        raise InputError(source, f"global.{GAIN_DB_KEY}", f"must be a number, got {gain!r}")
    base_stem = meta_path.name[: -len(META_SUFFIX)]
    first = captures[0]
    info = RecordingInfo(
        path=str(given),
        format="sigmf",
        datatype=datatype,
        sample_rate_hz=rate,
        center_freq_hz=first.center_freq_hz,
        t_start_s=first.t_start_s - first.sample_start / rate,
        t_start_known=t_known,
        n_samples=n_samples,
        sensor_id=sensor_id or meta_sensor or base_stem,
        gain_db=None if gain is None else float(gain),
        data_path=str(data_path),
        meta_path=str(meta_path),
        captures=captures,
        annotations=annotations,
        hw=str(glob.get(sigmf_keys.HW_KEY, "")),
        description=str(glob.get(sigmf_keys.DESCRIPTION_KEY, "")),
        sha512=glob.get(sigmf_keys.SHA512_KEY),
        extensions={k: v for k, v in glob.items() if not k.startswith("core:")},
        data_offset_bytes=header_bytes,
    )
    return Recording(info)


def _resolve_rate(source: str, meta_rate: Any, given: float | None) -> float:
    field_name = f"global.{sigmf_keys.SAMPLE_RATE_KEY}"
    if meta_rate is None:
        if given is None:
            raise InputError(source, field_name, "missing (pass --rate)")
        return float(given)
    _check_rate(source, field_name, meta_rate)
    if given is not None and not math.isclose(given, meta_rate, rel_tol=1e-9):
        raise InputError(source, field_name, f"metadata says {meta_rate:g} S/s but {given:g} S/s was given")
    return float(meta_rate)


def _whole(source: str, field: str, value: Any) -> int:
    """A count of samples or bytes from the metadata: JSON may spell it 1000.0 (the schema
    lets integral numbers through); anything else is refused here, not deep in a loop."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value != int(value):
        raise InputError(source, field, f"must be a whole number, got {value!r:.60}")
    if value < 0:
        raise InputError(source, field, f"must not be negative, got {value!r:.60}")
    return int(value)


def _parse_captures(
    source: str,
    captures_raw: list[dict[str, Any]],
    offset: int,
    n_samples: int,
    rate: float,
    fmt: SampleFormat,
    center_freq_hz: float | None,
    t_start_s: float | None,
) -> tuple[tuple[Capture, ...], bool]:
    """Captures with dataset indices, integer centre frequencies and absolute times."""
    starts: list[int] = []
    freqs: list[int] = []
    times: list[float | None] = []
    for index, capture in enumerate(captures_raw):
        where = f"captures[{index}]"
        start = _whole(source, f"{where}.{sigmf_keys.SAMPLE_START_KEY}", capture[sigmf_keys.SAMPLE_START_KEY]) - offset
        if start < 0:
            raise InputError(source, f"{where}.{sigmf_keys.SAMPLE_START_KEY}", f"before core:offset {offset}")
        if starts and start == starts[-1]:
            raise InputError(source, f"{where}.{sigmf_keys.SAMPLE_START_KEY}", f"same as captures[{index - 1}]'s ({start})")
        if start > n_samples:
            missing = (start - n_samples) * fmt.bytes_per_sample
            raise InputError(
                source, f"{where}.{sigmf_keys.SAMPLE_START_KEY}",
                f"starts at sample {start} but the data file holds only {n_samples} samples "
                f"({missing} bytes short: truncated?)",
            )
        freq = capture.get(sigmf_keys.FREQUENCY_KEY)
        if freq is None:
            if index == 0:
                if center_freq_hz is None:
                    raise InputError(source, f"{where}.{sigmf_keys.FREQUENCY_KEY}", "missing (pass --freq)")
                freq = center_freq_hz
            else:
                freq = freqs[-1]  # a segment that does not say keeps the previous tuning
        else:
            _check_freq(source, f"{where}.{sigmf_keys.FREQUENCY_KEY}", freq)
            if index == 0 and center_freq_hz is not None and round(center_freq_hz) != round(freq):
                raise InputError(
                    source, f"{where}.{sigmf_keys.FREQUENCY_KEY}",
                    f"metadata says {freq:.0f} Hz but {center_freq_hz:.0f} Hz was given",
                )
        stamp = capture.get(sigmf_keys.DATETIME_KEY)
        t = None
        if stamp is not None:
            try:
                t = parse_utc_iso(stamp)
            except ValueError as exc:
                raise InputError(source, f"{where}.{sigmf_keys.DATETIME_KEY}", str(exc)) from None
        starts.append(start)
        freqs.append(round(freq))
        times.append(t)

    t_known = times[0] is not None or t_start_s is not None
    result: list[Capture] = []
    prev_t: float | None = None  # time of the previous capture's start, None while unknown
    for index, (start, freq, t) in enumerate(zip(starts, freqs, times, strict=True)):
        n_dropped = 0
        if index == 0:
            t_cap = t if t is not None else start / rate
        else:
            expected = result[-1].t_start_s + (start - starts[index - 1]) / rate
            t_cap = t if t is not None else expected
            gap_s = t_cap - expected
            if t is not None and prev_t is not None and gap_s > 2e-6:  # datetimes carry 1 µs
                n_dropped = round(gap_s * rate)
        prev_t = t if t is not None else prev_t
        result.append(Capture(start, freq, t_cap, n_dropped))
    if t_start_s is not None:
        shift_s = t_start_s - (result[0].t_start_s - starts[0] / rate)
        result = [Capture(c.sample_start, c.center_freq_hz, c.t_start_s + shift_s, c.n_dropped) for c in result]
    return tuple(result), t_known


_ANNOTATION_CORE = {
    sigmf_keys.SAMPLE_START_KEY,
    sigmf_keys.SAMPLE_COUNT_KEY,
    sigmf_keys.FREQ_LOWER_EDGE_KEY,
    sigmf_keys.FREQ_UPPER_EDGE_KEY,
    sigmf_keys.LABEL_KEY,
    sigmf_keys.COMMENT_KEY,
}


def _parse_annotations(
    source: str, annotations_raw: list[dict[str, Any]], offset: int, n_samples: int, fmt: SampleFormat
) -> tuple[Annotation, ...]:
    result = []
    for index, ann in enumerate(annotations_raw):
        where = f"annotations[{index}]"
        start = _whole(source, f"{where}.{sigmf_keys.SAMPLE_START_KEY}", ann[sigmf_keys.SAMPLE_START_KEY]) - offset
        if start < 0:
            raise InputError(source, f"{where}.{sigmf_keys.SAMPLE_START_KEY}", f"before core:offset {offset}")
        count = ann.get(sigmf_keys.SAMPLE_COUNT_KEY)
        if count is not None:
            count = _whole(source, f"{where}.{sigmf_keys.SAMPLE_COUNT_KEY}", count)
        end = start + (count or 0)
        if end > n_samples:
            missing = (end - n_samples) * fmt.bytes_per_sample
            raise InputError(
                source, where,
                f"ends at sample {end} but the data file holds only {n_samples} samples "
                f"({missing} bytes short: truncated?)",
            )
        lower = ann.get(sigmf_keys.FREQ_LOWER_EDGE_KEY)
        upper = ann.get(sigmf_keys.FREQ_UPPER_EDGE_KEY)
        if lower is not None and upper is not None and upper < lower:
            raise InputError(source, f"{where}.{sigmf_keys.FREQ_UPPER_EDGE_KEY}", f"{upper} is below freq_lower_edge {lower}")
        result.append(
            Annotation(
                sample_start=start,
                sample_count=count,
                freq_lower_hz=None if lower is None else float(lower),
                freq_upper_hz=None if upper is None else float(upper),
                label=ann.get(sigmf_keys.LABEL_KEY),
                comment=ann.get(sigmf_keys.COMMENT_KEY),
                extra={k: v for k, v in ann.items() if k not in _ANNOTATION_CORE},
            )
        )
    return tuple(result)


# ---------------------------------------------------------------------------------------------
# writer


def sigmf_base(path: str | os.PathLike[str]) -> Path:
    """The base path of a SigMF pair, whichever of base, meta or data name is given."""
    p = Path(path)
    for suffix in (META_SUFFIX, DATA_SUFFIX):
        if p.name.lower().endswith(suffix):
            return p.with_name(p.name[: -len(suffix)])
    return p


def _check_namespaced(keys: Mapping[str, Any], what: str) -> None:
    for key in keys:
        namespace = key.split(":", 1)[0] if ":" in key else None
        if namespace not in ("core", EXTENSION_NAME):
            raise ValueError(f"{what} key {key!r} must be 'core:...' or '{EXTENSION_NAME}:...'")


class SigMFWriter:
    """Streams samples into ``<base>.sigmf-data`` and writes ``<base>.sigmf-meta`` on close.

    ``write`` takes complex samples (quantized to ``datatype``: cu8 through
    :func:`dsp.iq.complex64_to_cu8`, the ADC model, clipping at full scale);
    ``write_raw`` takes bytes already in ``datatype``. ``start_capture`` begins a
    new capture segment (retune, or a restart after lost samples). The dataset
    is hashed as it is written (``core:sha512``). Output is deterministic: the
    same calls give the same bytes, metadata included (no "now" anywhere).

    Closing, also on an exception (e.g. Ctrl-C while recording), writes the
    metadata, so what was recorded stays readable. Annotations are trimmed to
    the samples written (a burst cut by the end of the recording is annotated as
    far as it was recorded; one that starts after the end is dropped), since a
    SigMF reader refuses annotations past the data. Existing files are overwritten.
    """

    def __init__(
        self,
        base_path: str | os.PathLike[str],
        *,
        datatype: str = "cu8",
        sample_rate_hz: float,
        center_freq_hz: float,
        t_start_s: float,
        sensor_id: str | None = None,
        gain_db: float | None = None,
        description: str = "",
        hw: str | None = None,
        extra_global: Mapping[str, Any] | None = None,
    ) -> None:
        if datatype not in SAMPLE_FORMATS:
            raise ValueError(f"datatype {datatype!r} not supported ({', '.join(SAMPLE_FORMATS)})")
        base = sigmf_base(base_path)
        source = str(base)
        _check_rate(source, "sample_rate_hz", sample_rate_hz)
        _check_freq(source, "center_freq_hz", center_freq_hz)
        if not math.isfinite(t_start_s):
            raise ValueError(f"t_start_s must be finite, got {t_start_s!r}")
        if gain_db is not None and not math.isfinite(gain_db):
            raise ValueError(f"gain_db must be finite, got {gain_db!r}")
        extra = dict(extra_global or {})
        _check_namespaced(extra, "extra_global")
        reserved = {
            sigmf_keys.DATATYPE_KEY, sigmf_keys.SAMPLE_RATE_KEY, sigmf_keys.SHA512_KEY, sigmf_keys.VERSION_KEY,
            sigmf_keys.NUM_CHANNELS_KEY, sigmf_keys.OFFSET_KEY, sigmf_keys.DATASET_KEY, sigmf_keys.EXTENSIONS_KEY,
            SENSOR_ID_KEY, GAIN_DB_KEY,
        }
        clash = sorted(reserved & set(extra))
        if clash:
            raise ValueError(f"extra_global may not set {clash[0]!r}: the writer owns it")

        self.base_path = base
        self.meta_path = base.with_name(base.name + META_SUFFIX)
        self.data_path = base.with_name(base.name + DATA_SUFFIX)
        self._format = SAMPLE_FORMATS[datatype]
        self._rate = float(sample_rate_hz)
        self._global: dict[str, Any] = {
            sigmf_keys.DATATYPE_KEY: datatype,
            sigmf_keys.SAMPLE_RATE_KEY: self._rate,
            sigmf_keys.RECORDER_KEY: RECORDER,
            sigmf_keys.EXTENSIONS_KEY: [{"name": EXTENSION_NAME, "version": EXTENSION_VERSION, "optional": True}],
        }
        if description:
            self._global[sigmf_keys.DESCRIPTION_KEY] = description
        if hw:
            self._global[sigmf_keys.HW_KEY] = hw
        if sensor_id:
            self._global[SENSOR_ID_KEY] = sensor_id
        if gain_db is not None:
            self._global[GAIN_DB_KEY] = float(gain_db)
        self._global.update(extra)
        # (sample_start, center_freq_hz, t_start_s)
        self._captures: list[tuple[int, int, float]] = [(0, round(center_freq_hz), float(t_start_s))]
        self._annotations: list[tuple[int, int | None, dict[str, Any]]] = []
        self._hash = hashlib.sha512()
        self._n_samples = 0
        self._closed = False
        try:
            self.data_path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.data_path, "wb")
        except OSError as exc:
            raise InputError(str(self.data_path), None, f"cannot write: {exc.strerror}") from None

    def __enter__(self) -> SigMFWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def n_samples(self) -> int:
        """Samples written so far."""
        return self._n_samples

    @property
    def t_next_s(self) -> float:
        """UTC of the next sample to be written."""
        start, _, t = self._captures[-1]
        return t + (self._n_samples - start) / self._rate

    def write(self, samples: npt.ArrayLike) -> None:
        """Append complex samples (1-D), quantized to the datatype."""
        x = np.asarray(samples)
        if x.ndim != 1:
            raise ValueError(f"samples must be 1-D, got shape {x.shape}")
        self._append(complex64_to_raw(x, self._format.datatype))

    def write_raw(self, data: bytes | bytearray | memoryview | npt.NDArray[Any]) -> None:
        """Append samples already in the datatype's byte layout (e.g. cu8 bytes from a dongle)."""
        if isinstance(data, np.ndarray):
            view = np.ascontiguousarray(data).view(np.uint8).data
        else:
            view = memoryview(data).cast("B")
        if len(view) % self._format.bytes_per_sample:
            raise ValueError(
                f"{len(view)} bytes is not a whole number of {self._format.bytes_per_sample}-byte samples"
            )
        self._append(view)

    def start_capture(self, center_freq_hz: float | None = None, t_start_s: float | None = None) -> None:
        """Begin a capture segment at the next sample: a new centre frequency and/or a new time base.

        ``t_start_s`` defaults to where the previous segment's samples end; give
        it after lost samples so readers see the gap.
        """
        self._check_open()
        _, prev_freq, _ = self._captures[-1]
        freq = prev_freq if center_freq_hz is None else center_freq_hz
        _check_freq(str(self.base_path), "center_freq_hz", freq)
        t = self.t_next_s if t_start_s is None else float(t_start_s)
        if not math.isfinite(t):
            raise ValueError(f"t_start_s must be finite, got {t_start_s!r}")
        entry = (self._n_samples, round(freq), t)
        if self._captures[-1][0] == self._n_samples:
            self._captures[-1] = entry  # nothing written since the last one: replace it
        else:
            self._captures.append(entry)

    def annotate(
        self,
        sample_start: int,
        sample_count: int,
        freq_lower_hz: float | None = None,
        freq_upper_hz: float | None = None,
        label: str | None = None,
        comment: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Annotate ``[sample_start, sample_start + sample_count)``; written, sorted by start, on close."""
        self._check_open()
        if sample_start < 0 or sample_count < 0:
            raise ValueError(f"annotation needs sample_start >= 0 and sample_count >= 0, got {sample_start}, {sample_count}")
        if (freq_lower_hz is None) != (freq_upper_hz is None):
            raise ValueError("SigMF needs both freq_lower_hz and freq_upper_hz, or neither")
        body: dict[str, Any] = {}
        if freq_lower_hz is not None and freq_upper_hz is not None:
            if freq_upper_hz < freq_lower_hz:
                raise ValueError(f"freq_upper_hz {freq_upper_hz} is below freq_lower_hz {freq_lower_hz}")
            body[sigmf_keys.FREQ_LOWER_EDGE_KEY] = float(freq_lower_hz)
            body[sigmf_keys.FREQ_UPPER_EDGE_KEY] = float(freq_upper_hz)
        if label is not None:
            body[sigmf_keys.LABEL_KEY] = label
        if comment is not None:
            body[sigmf_keys.COMMENT_KEY] = comment
        if extra:
            _check_namespaced(extra, "annotation extra")
            body.update(extra)
        self._annotations.append((int(sample_start), int(sample_count), body))

    def close(self) -> None:
        """Finish the dataset and write the metadata (atomically, via a temporary file)."""
        if self._closed:
            return
        self._closed = True
        self._file.close()
        n = self._n_samples
        captures = [c for i, c in enumerate(self._captures) if i == 0 or c[0] < n]
        annotations = []
        n_dropped = 0
        for start, count, body in self._annotations:
            if start + (count or 0) > n:
                if start >= n:
                    n_dropped += 1
                    continue
                count = n - start
            annotations.append((start, count, body))
        if n_dropped:
            logger.info("annotations_past_end path=%s n_dropped=%d n_samples=%d", self.meta_path, n_dropped, n)

        sigmf_file = SigMFFile(global_info={**self._global, sigmf_keys.SHA512_KEY: self._hash.hexdigest()})
        for start, freq, t in captures:
            sigmf_file.add_capture(
                start, metadata={sigmf_keys.FREQUENCY_KEY: freq, sigmf_keys.DATETIME_KEY: format_utc_iso(t)}
            )
        # sigmf's add_annotation re-sorts the whole list on every call and its validator walks
        # every annotation through jsonschema: both are quadratic-or-slow for the ~200 bursts a
        # second a GSM call leaves. Validate the file with a sample of annotations built by the
        # same code (first, middle, last: they share one shape), then set the whole sorted list.
        annotations.sort(key=lambda a: a[0])
        sample = annotations if len(annotations) <= 64 else annotations[:32] + annotations[-32:]
        for start, count, body in sample:
            sigmf_file.add_annotation(start, length=count, metadata=dict(body))
        sigmf_file.validate()
        sigmf_file._metadata[SigMFFile.ANNOTATION_KEY] = [
            {**body, sigmf_keys.SAMPLE_START_KEY: start, sigmf_keys.SAMPLE_COUNT_KEY: count}
            for start, count, body in annotations
        ]
        tmp = self.meta_path.with_name(self.meta_path.name + ".part")
        try:
            with open(tmp, "w", encoding="utf-8") as stream:
                sigmf_file.dump(stream, pretty=True)
                stream.write("\n")
            os.replace(tmp, self.meta_path)
        except OSError as exc:
            raise InputError(str(self.meta_path), None, f"cannot write: {exc.strerror}") from None

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self.meta_path}: writer is closed")

    def _append(self, data: npt.NDArray[Any] | memoryview) -> None:
        self._check_open()
        buffer = np.ascontiguousarray(data).view(np.uint8).data if isinstance(data, np.ndarray) else data
        self._file.write(buffer)
        self._hash.update(buffer)
        self._n_samples += len(buffer) // self._format.bytes_per_sample


def write_raw_file(path: str | os.PathLike[str], samples: npt.ArrayLike) -> Path:
    """Write complex samples as a raw file whose suffix picks the layout (.cu8, .cs16, .cfile, .cf32)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in RAW_SUFFIXES:
        raise ValueError(f"{p}: raw files end in {', '.join(RAW_SUFFIXES)}")
    _, datatype = RAW_SUFFIXES[suffix]
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"samples must be 1-D, got shape {x.shape}")
    complex64_to_raw(x, datatype).tofile(p)
    return p


def write_raw_cu8(path: str | os.PathLike[str], samples: npt.ArrayLike) -> Path:
    """Write complex samples as rtl_sdr does: interleaved unsigned bytes, no header."""
    if Path(path).suffix.lower() != ".cu8":
        raise ValueError(f"{path}: a raw cu8 file should end in .cu8")
    return write_raw_file(path, samples)
