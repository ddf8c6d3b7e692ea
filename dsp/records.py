"""Records that cross process boundaries, defined once, with a versioned wire form.

* :class:`IQBlock` — a run of contiguous complex samples from one receiver.
* :class:`Detection` — one burst seen by one sensor (DESIGN.md "Detection").
* :class:`Heartbeat` — a node's periodic health report.

Wire form: a JSON object (one per line in files, one per message on ZeroMQ)
holding the record's fields plus ``"v": WIRE_VERSION``. Parsing validates every
field and raises :class:`~dsp.errors.InputError` naming the field, so a malformed
message is rejected with a clear reason instead of crashing its reader.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from operator import attrgetter
from typing import Any, TypeVar

import numpy as np

from dsp.errors import InputError
from dsp.iq import ComplexArray, U8Array, cu8_to_complex64

WIRE_VERSION = 1
TECHNOLOGIES = ("gsm", "lte", "nr", "umts", "unknown")


@dataclass(frozen=True, slots=True, eq=False)
class IQBlock:
    """Contiguous complex64 samples from one receiver, with where and when they were taken.

    ``sample_index`` counts samples since the stream started (dropped samples
    included), so ``t_start_s`` of later blocks can be checked against it, and
    ``n_dropped`` says how many samples were lost just before this block.

    A block read from an RTL-SDR or a cu8 recording may carry the receiver's interleaved
    I, Q bytes (``cu8``, :meth:`from_cu8`) instead: its ``samples`` are then made from them
    on first use (:func:`dsp.iq.cu8_to_complex64`, kept), and the detector reads the bytes
    themselves (a quarter of the memory, and no conversion pass: DESIGN.md's performance facts).
    """

    samples: ComplexArray  # complex64, shape (n_samples,); from ``cu8`` on first use when not given
    center_freq_hz: int
    sample_rate_hz: float
    t_start_s: float  # UTC of the first sample, seconds since the Unix epoch
    sensor_id: str = ""
    sample_index: int = 0
    gain_db: float | None = None
    n_dropped: int = 0
    cu8: U8Array | None = None  # the receiver's bytes I0, Q0, I1, ... that ``samples`` are (b - 127.5) / 127.5 of

    def __post_init__(self) -> None:
        if self.cu8 is not None and (self.cu8.dtype != np.uint8 or self.cu8.ndim != 1 or self.cu8.shape[0] % 2):
            raise ValueError("cu8 must be a 1-D uint8 array of interleaved I, Q bytes (an even number of them)")
        if self.samples is None:
            if self.cu8 is None:
                raise TypeError("an IQBlock needs samples or cu8 bytes")
            object.__delattr__(self, "samples")  # unset: made on first use (__getattr__)

    def __getattr__(self, name: str) -> Any:
        """Called only for an unset slot: the samples of a block given as bytes, made once."""
        if name == "samples" and self.cu8 is not None:
            samples = cu8_to_complex64(self.cu8)
            object.__setattr__(self, "samples", samples)
            return samples
        raise AttributeError(name)

    @classmethod
    def from_cu8(cls, cu8: U8Array, center_freq_hz: int, sample_rate_hz: float, t_start_s: float,
                 **metadata: Any) -> IQBlock:
        """A block of the receiver's interleaved I, Q bytes (``metadata``: the other fields)."""
        return cls(None, center_freq_hz, sample_rate_hz, t_start_s, cu8=cu8, **metadata)  # type: ignore[arg-type]

    @property
    def n_samples(self) -> int:
        if self.cu8 is not None:  # without making the samples
            return int(self.cu8.shape[0] // 2)
        return int(self.samples.shape[0])

    def samples_in(self, start: int, stop: int) -> ComplexArray:
        """Samples ``[start, stop)`` of the block (indices within it): of a block given as bytes whose
        samples were not made, only those are converted (a snippet cut from a ring of blocks)."""
        if self.cu8 is not None:
            try:
                object.__getattribute__(self, "samples")
            except AttributeError:
                return cu8_to_complex64(self.cu8[2 * start : 2 * stop])
        return self.samples[start:stop]

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate_hz

    @property
    def t_end_s(self) -> float:
        """UTC time just after the last sample."""
        return self.t_start_s + self.duration_s


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # integers on the wire: what a database column and a float hold


def _require(obj: dict[str, Any], name: str, kinds: tuple[type, ...], optional: bool = False) -> Any:
    value = obj.get(name)
    if value is None:
        if optional:
            return None
        raise InputError(None, name, "missing")
    kind = type(value)
    if kind in kinds:  # what JSON gives (str, float, int): the checks below that apply, in short
        if kind is float and not math.isfinite(value):
            raise InputError(None, name, "must be finite")
        if kind is int and not INT64_MIN <= value <= INT64_MAX:
            raise InputError(None, name, "integer out of range (64-bit)")
        return value
    if isinstance(value, bool) and bool not in kinds:
        raise InputError(None, name, f"expected {kinds[0].__name__}, got bool")
    if not isinstance(value, kinds):
        raise InputError(None, name, f"expected {kinds[0].__name__}, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(None, name, "must be finite")
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        raise InputError(None, name, "integer out of range (64-bit)")  # no float, no database column holds it
    return value


def _check_keys(obj: dict[str, Any], allowed: set[str] | frozenset[str], kind: str) -> None:
    unknown = sorted(set(obj) - allowed - {"v"})
    if unknown:
        raise InputError(None, unknown[0], f"unknown field in {kind}")
    version = obj.get("v", WIRE_VERSION)
    if version != WIRE_VERSION:
        raise InputError(None, "v", f"unsupported wire version {version!r} (this build reads {WIRE_VERSION})")


_NUM = (int, float)
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def _float_or(value: Any, default: float) -> float:
    """``value`` as a float, ``default`` only when it is absent (0.0 is a value)."""
    return default if value is None else float(value)


@dataclass(frozen=True, slots=True)
class Detection:
    """One burst seen by one sensor; the fields and units of DESIGN.md's detection record."""

    sensor_id: str
    t_start_s: float
    duration_s: float
    freq_hz: float
    bandwidth_hz: float
    power_dbfs: float
    snr_db: float
    tech: str = "unknown"
    rssi_dbm: float | None = None
    seq: int | None = None
    sample_start: int | None = None
    sample_count: int | None = None
    channel: str | None = None
    flags: tuple[str, ...] = field(default_factory=tuple)
    gain_db: float | None = None
    session_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The wire form: DESIGN.md's fields, optional ones only when set, plus ``v``."""
        out: dict[str, Any] = {"v": WIRE_VERSION}
        for name, value in zip(_DETECTION_FIELDS, _detection_values(self), strict=True):
            if value is None:
                if name == "rssi_dbm":
                    out[name] = None  # part of the contract even when null
            elif name == "flags":
                if value:
                    out[name] = list(value)
            else:
                out[name] = value
        return out

    def to_json(self) -> str:
        return _COMPACT_JSON.encode(self.to_dict())  # json.dumps(..., separators=(",", ":")), its encoder made once

    @classmethod
    def from_dict(cls, obj: Any) -> Detection:
        """Validate a wire-form object; raises InputError naming the first bad field."""
        if not isinstance(obj, dict):
            raise InputError(None, None, f"detection must be a JSON object, got {type(obj).__name__}")
        _check_keys(obj, _DETECTION_FIELD_SET, "detection")
        sensor_id = _require(obj, "sensor_id", (str,))
        if not sensor_id:
            raise InputError(None, "sensor_id", "must not be empty")
        tech = _require(obj, "tech", (str,), optional=True) or "unknown"
        if tech not in TECHNOLOGIES:
            raise InputError(None, "tech", f"must be one of {', '.join(TECHNOLOGIES)}, got {tech!r}")
        duration_s = float(_require(obj, "duration_s", _NUM))
        if duration_s < 0:
            raise InputError(None, "duration_s", "must not be negative")
        bandwidth_hz = float(_require(obj, "bandwidth_hz", _NUM))
        if bandwidth_hz < 0:
            raise InputError(None, "bandwidth_hz", "must not be negative")
        flags = obj.get("flags") or []
        if not isinstance(flags, list) or not all(isinstance(x, str) for x in flags):
            raise InputError(None, "flags", "must be a list of strings")
        rssi = _require(obj, "rssi_dbm", _NUM, optional=True)
        gain = _require(obj, "gain_db", _NUM, optional=True)
        return cls(
            sensor_id=sensor_id,
            t_start_s=float(_require(obj, "t_start_s", _NUM)),
            duration_s=duration_s,
            freq_hz=float(_require(obj, "freq_hz", _NUM)),
            bandwidth_hz=bandwidth_hz,
            power_dbfs=float(_require(obj, "power_dbfs", _NUM)),
            snr_db=float(_require(obj, "snr_db", _NUM)),
            tech=tech,
            rssi_dbm=None if rssi is None else float(rssi),
            seq=_require(obj, "seq", (int,), optional=True),
            sample_start=_require(obj, "sample_start", (int,), optional=True),
            sample_count=_require(obj, "sample_count", (int,), optional=True),
            channel=_require(obj, "channel", (str,), optional=True),
            flags=tuple(flags),
            gain_db=None if gain is None else float(gain),
            session_id=_require(obj, "session_id", (str,), optional=True),
        )

    @classmethod
    def from_json(cls, line: str | bytes) -> Detection:
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(None, None, f"not valid JSON ({exc})") from None
        return cls.from_dict(obj)


# a node checks and serializes every detection it sends (to_dict, from_dict): the field list once
_T = TypeVar("_T")


def frozen_builder(cls: type[_T]) -> Callable[[Sequence[Any]], _T]:
    """``cls(*values)`` with every field given, for a frozen slotted dataclass without ``__post_init__``:
    the slots are set directly. The ``__init__`` a frozen dataclass gets looks ``object.__setattr__``
    up for every field (~0.1 µs each): half the cost of a :class:`Detection` (and of a
    :class:`dsp.detector.Burst`), made once per detection, ~300 a second on a busy band.
    The builder's body is written out field by field (as :mod:`dataclasses` writes
    ``__init__``): a loop over the fields cost a third more (1.45 against 0.95 µs a Burst)."""
    if hasattr(cls, "__post_init__") or not hasattr(cls, "__slots__"):
        raise TypeError(f"{cls.__name__} is not a slotted dataclass without __post_init__")
    setters = {f"set_{i}": getattr(cls, f.name).__set__ for i, f in enumerate(fields(cls))}  # type: ignore[arg-type]
    n = len(setters)
    unpack = "".join(f"v{i}, " for i in range(n))
    body = "".join(f"    set_{i}(obj, v{i})\n" for i in range(n))
    source = f"def build(values):\n    {unpack}= values\n    obj = new(cls)\n{body}    return obj\n"
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls, **setters}
    exec(source, scope)  # our own text, from the class's field count
    build: Callable[[Sequence[Any]], _T] = scope["build"]
    return build


def decimal_round(values: Sequence[float] | np.ndarray, ndigits: int) -> list[float]:
    """``[round(v, ndigits) for v in values]``, the same floats, vectorized (a node rounds six values
    of every detection it sends; Python's ``round`` with digits costs ~0.2 µs each).

    Python rounds the exact binary value to ``ndigits`` decimals (half to even) and reads that
    decimal back. Here ``rint(v·10^n) / 10^n``: the product is within half an ulp of the exact
    one, so its nearest integer is the exact decimal rounding unless the product lies within
    two ulps of a tie; the quotient of two exact doubles is correctly rounded, as the decimal
    read back is. Values near a tie, beyond 2^52 once scaled, or not finite are left to
    ``round`` itself."""
    if not 0 <= ndigits <= 22:  # 10^n exact
        return [round(float(v), ndigits) for v in values]
    x = np.asarray(values, dtype=np.float64)
    scale = 10.0**ndigits
    with np.errstate(over="ignore", invalid="ignore"):  # huge or not finite: left to round below
        scaled = x * scale
        out = (np.rint(scaled) / scale).tolist()
        tie_distance = np.abs(scaled - np.floor(scaled) - 0.5)
        risky = ~(np.abs(scaled) < 2.0**52) | (tie_distance <= 2.0 * np.abs(np.spacing(scaled)))
    for i in np.flatnonzero(risky).tolist():
        out[i] = round(float(x[i]), ndigits)
    return out


_DETECTION_FIELDS = tuple(f.name for f in fields(Detection))
detection_from_values = frozen_builder(Detection)  # Detection(*values), every field given, in field order
_DETECTION_FIELD_SET = frozenset(_DETECTION_FIELDS)
_detection_values = attrgetter(*_DETECTION_FIELDS)  # all of a detection's values, in field order


@dataclass(frozen=True, slots=True)
class BandHealth:
    """Health of one band a node watches."""

    band: str
    noise_floor_dbfs: float
    watched_fraction: float = 1.0
    revisit_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A node's periodic report: is it alive, is its radio working, what has it lost."""

    sensor_id: str
    t_s: float
    source_state: str  # "running", "retrying", "stopped", ...
    n_dropped_samples: int = 0
    n_overload_blocks: int = 0
    clock_offset_s: float | None = None
    bands: tuple[BandHealth, ...] = ()
    seq: int | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {"v": WIRE_VERSION, **asdict(self)}
        out["bands"] = [asdict(b) for b in self.bands]
        return out

    @classmethod
    def from_dict(cls, obj: Any) -> Heartbeat:
        if not isinstance(obj, dict):
            raise InputError(None, None, "heartbeat must be a JSON object")
        _check_keys(obj, {f.name for f in fields(cls)}, "heartbeat")
        bands_raw = obj.get("bands") or []
        if not isinstance(bands_raw, list):
            raise InputError(None, "bands", "must be a list")
        bands = []
        for i, b in enumerate(bands_raw):
            if not isinstance(b, dict):
                raise InputError(None, f"bands[{i}]", "must be an object")
            try:
                bands.append(
                    BandHealth(
                        band=str(_require(b, "band", (str,))),
                        noise_floor_dbfs=float(_require(b, "noise_floor_dbfs", _NUM)),
                        watched_fraction=_float_or(_require(b, "watched_fraction", _NUM, optional=True), 1.0),
                        revisit_s=_float_or(_require(b, "revisit_s", _NUM, optional=True), 0.0),
                    )
                )
            except InputError as exc:
                raise InputError(None, f"bands[{i}].{exc.field}", exc.problem) from None
        offset = _require(obj, "clock_offset_s", _NUM, optional=True)
        return cls(
            sensor_id=_require(obj, "sensor_id", (str,)),
            t_s=float(_require(obj, "t_s", _NUM)),
            source_state=_require(obj, "source_state", (str,)),
            n_dropped_samples=int(_require(obj, "n_dropped_samples", (int,), optional=True) or 0),
            n_overload_blocks=int(_require(obj, "n_overload_blocks", (int,), optional=True) or 0),
            clock_offset_s=None if offset is None else float(offset),
            bands=tuple(bands),
            seq=_require(obj, "seq", (int,), optional=True),
            message=str(_require(obj, "message", (str,), optional=True) or ""),
        )


def as_complex64(samples: Any) -> ComplexArray:
    """``samples`` as a contiguous complex64 array, without copying when it already is one."""
    return np.ascontiguousarray(samples, dtype=np.complex64)
