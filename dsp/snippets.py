"""IQ snippets: the raw samples of a detected burst, kept as evidence, and how a node picks them.

A detection says *that* a burst was there; a snippet shows it. Staff open an event and
see a spectrogram of the burst, and the evidence export holds the samples themselves as
SigMF, so anyone can check the detection with their own tools.

* :class:`IQSnippet` — the record that crosses the node -> service boundary: the burst
  ± a small margin as cu8 bytes (interleaved I, Q: the RTL-SDR's own format, 2 bytes a
  sample), where and when they were taken, and the key of the detection they illustrate
  (``sensor_id`` + ``detection_t_start_s`` + ``detection_freq_hz``: the service links a
  snippet to its event through that detection). Wire form: a JSON object with the bytes
  in base64 (``data_b64``) and ``"v": WIRE_VERSION``, validated field by field.
* :class:`SnippetCutter` — the node's plan, built once per radio and called block after
  block: it keeps a bounded ring of the most recent :class:`~dsp.records.IQBlock` s
  (references, no copy: ``ring_s`` of samples, ~19 MB a second at 2.4 MS/s, ~5 MB as the cu8
  bytes a dongle's blocks carry) and, for
  the detections the pipeline reports, cuts the samples out of it. The detector reports a
  burst up to ~1 s after it started (its batching delay) plus an epoch and a block, so
  the ring must hold that much (``ring_s`` = 1.5 s by default).
* :class:`SnippetRateLimiter` — not every burst: a GSM call sends 216 bursts a second
  (TS 45.002 §4.3: one per 4.615 ms TDMA frame), the uplink must stay small. The first
  ``first_per_session`` bursts of each new session, then at most one per session every
  ``interval_s``, and at most ``max_per_minute`` in all, measured on the stream's own
  clock (burst times), so a replay and a live radio choose the same bursts.

Samples are turned back into cu8 with :func:`dsp.iq.complex64_to_cu8`, the exact inverse
of :func:`dsp.iq.cu8_to_complex64` for the 256 byte values: for a cu8 source (a dongle,
a cu8 recording) the snippet holds the bytes as received. Sources in other formats (or
a live source correcting a fractional ppm by mixing) give the samples the detector saw,
quantized to 8 bits as an RTL2832U would.

Pure: no I/O, no clock, no logging; counters and explicit rejection reasons instead.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from dsp.errors import InputError
from dsp.iq import complex64_to_cu8
from dsp.records import INT64_MAX, INT64_MIN, TECHNOLOGIES, WIRE_VERSION, Detection, IQBlock

DATATYPES = ("cu8",)
BYTES_PER_SAMPLE = {"cu8": 2}
MAX_SNIPPET_SAMPLES = 131_072  # 54.6 ms at 2.4 MS/s, 256 kB of cu8 (~350 kB in base64): two fit a message
MAX_SNIPPET_JSON_BYTES = 4 * MAX_SNIPPET_SAMPLES * 2 // 3 + 4096  # the base64 bytes plus the fields

# Why a snippet was not cut (counted by SnippetCutter.counts)
TAKEN = "taken"
RATE_LIMITED = "rate_limited"
NO_POSITION = "no_position"  # the detection carries no sample_start / sample_count
NOT_IN_RING = "not_in_ring"  # its samples already left the ring, or a gap / retune cut it
REASONS = (TAKEN, RATE_LIMITED, NO_POSITION, NOT_IN_RING)


def _require(obj: dict[str, Any], name: str, kinds: tuple[type, ...], optional: bool = False) -> Any:
    value = obj.get(name)
    if value is None:
        if optional:
            return None
        raise InputError(None, name, "missing")
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise InputError(None, name, f"expected {kinds[0].__name__}, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(None, name, "must be finite")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise InputError(None, name, "integer out of range (64-bit)")
    return value


_NUM = (int, float)


@dataclass(frozen=True, slots=True, eq=False)
class IQSnippet:
    """The samples of one burst ± a margin, from one sensor, and the detection they illustrate.

    ``t_start_s`` is the UTC time of the first sample; the burst itself starts
    ``burst_offset`` samples in and lasts ``burst_samples`` (the SigMF annotation).
    ``sample_index`` is the first sample's index in the node's stream (dropped samples
    included), for tracing a snippet back to a recording.
    """

    sensor_id: str
    t_start_s: float
    center_freq_hz: int
    sample_rate_hz: float
    data: bytes  # interleaved I, Q in ``datatype``
    detection_t_start_s: float
    detection_freq_hz: float
    burst_offset: int
    burst_samples: int
    burst_bandwidth_hz: float = 0.0
    gain_db: float | None = None
    datatype: str = "cu8"
    tech: str = "unknown"
    session_id: str | None = None
    sample_index: int | None = None
    seq: int | None = None

    @property
    def n_samples(self) -> int:
        return len(self.data) // BYTES_PER_SAMPLE[self.datatype]

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate_hz

    @property
    def key(self) -> tuple[str, float, float]:
        """The key of the detection it illustrates: (sensor_id, t_start_s, freq_hz)."""
        return (self.sensor_id, self.detection_t_start_s, self.detection_freq_hz)

    def to_dict(self) -> dict[str, Any]:
        """The wire form: every field (``data`` as ``data_b64``), optional ones only when set, plus ``v``."""
        out: dict[str, Any] = {"v": WIRE_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "data":
                out["data_b64"] = base64.b64encode(value).decode("ascii")
            elif value is not None:
                out[f.name] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, obj: Any) -> IQSnippet:
        """Validate a wire-form object; raises InputError naming the first bad field."""
        if not isinstance(obj, dict):
            raise InputError(None, None, f"snippet must be a JSON object, got {type(obj).__name__}")
        allowed = {f.name for f in fields(cls)} - {"data"} | {"data_b64", "v"}
        unknown = sorted(set(obj) - allowed)
        if unknown:
            raise InputError(None, unknown[0], "unknown field in snippet")
        version = obj.get("v", WIRE_VERSION)
        if version != WIRE_VERSION or isinstance(version, bool):
            raise InputError(None, "v", f"unsupported wire version {version!r:.20} (this build reads {WIRE_VERSION})")
        sensor_id = _require(obj, "sensor_id", (str,))
        if not sensor_id or len(sensor_id) > 64:
            raise InputError(None, "sensor_id", "must be 1-64 characters")
        datatype = _require(obj, "datatype", (str,), optional=True) or "cu8"
        if datatype not in DATATYPES:
            raise InputError(None, "datatype", f"must be one of {', '.join(DATATYPES)}, got {datatype!r:.20}")
        encoded = _require(obj, "data_b64", (str,))
        if len(encoded) > 4 * MAX_SNIPPET_SAMPLES * BYTES_PER_SAMPLE[datatype] // 3 + 4:
            raise InputError(None, "data_b64", f"more than {MAX_SNIPPET_SAMPLES} samples")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(None, "data_b64", "not valid base64") from None
        size = BYTES_PER_SAMPLE[datatype]
        if not data or len(data) % size:
            raise InputError(None, "data_b64", f"must hold a whole, non-zero number of {size}-byte samples")
        n_samples = len(data) // size
        center = _require(obj, "center_freq_hz", (int,))
        if center <= 0:
            raise InputError(None, "center_freq_hz", "must be positive")
        rate = float(_require(obj, "sample_rate_hz", _NUM))
        if rate <= 0:
            raise InputError(None, "sample_rate_hz", "must be positive")
        offset = _require(obj, "burst_offset", (int,))
        count = _require(obj, "burst_samples", (int,))
        if offset < 0 or count < 1 or offset + count > n_samples:
            raise InputError(None, "burst_samples", f"burst [{offset}, {offset}+{count}) is not inside the "
                                                    f"{n_samples} samples")
        bandwidth = float(_require(obj, "burst_bandwidth_hz", _NUM, optional=True) or 0.0)
        if bandwidth < 0:
            raise InputError(None, "burst_bandwidth_hz", "must not be negative")
        tech = _require(obj, "tech", (str,), optional=True) or "unknown"
        if tech not in TECHNOLOGIES:
            raise InputError(None, "tech", f"must be one of {', '.join(TECHNOLOGIES)}, got {tech!r:.20}")
        gain = _require(obj, "gain_db", _NUM, optional=True)
        seq = _require(obj, "seq", (int,), optional=True)
        index = _require(obj, "sample_index", (int,), optional=True)
        session_id = _require(obj, "session_id", (str,), optional=True)
        if session_id is not None and len(session_id) > 200:
            raise InputError(None, "session_id", "longer than 200 characters")
        return cls(
            sensor_id=sensor_id,
            t_start_s=float(_require(obj, "t_start_s", _NUM)),
            center_freq_hz=center,
            sample_rate_hz=rate,
            data=data,
            detection_t_start_s=float(_require(obj, "detection_t_start_s", _NUM)),
            detection_freq_hz=float(_require(obj, "detection_freq_hz", _NUM)),
            burst_offset=offset,
            burst_samples=count,
            burst_bandwidth_hz=bandwidth,
            gain_db=None if gain is None else float(gain),
            datatype=datatype,
            tech=tech,
            session_id=session_id,
            sample_index=index,
            seq=seq,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> IQSnippet:
        try:
            obj = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(None, None, f"not valid JSON ({str(exc)[:80]})") from None
        return cls.from_dict(obj)


# -- which bursts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnippetPolicy:
    """How many snippets a node takes, and how much of the signal around each burst.

    Defaults: a GSM call (one session) gives 2 snippets at once, then one every 10 s:
    ~0.1 snippet/s of ~7.4 kB; ``max_per_minute`` caps a node whatever happens (many
    short LTE sessions), at ~12 kB/s of uplink with base64.
    """

    margin_s: float = 0.5e-3  # before and after the burst
    first_per_session: int = 2  # bursts of each new session that all get a snippet
    interval_s: float = 10.0  # then at most one per session this often
    max_per_minute: int = 60  # in all, whatever the sessions
    ring_s: float = 1.5  # recent samples kept to cut from (detector delay, an epoch, a block)
    max_samples: int = MAX_SNIPPET_SAMPLES  # a longer burst is cut at this length
    session_ttl_s: float = 120.0  # a session not seen this long is forgotten (it is new if it comes back)
    max_sessions: int = 4096  # the oldest are forgotten beyond this

    def __post_init__(self) -> None:
        checks = (
            ("margin_s", 0.0 <= self.margin_s <= 0.1, "must be 0 .. 0.1 s"),
            ("first_per_session", self.first_per_session >= 0, "must not be negative"),
            ("interval_s", self.interval_s > 0 and math.isfinite(self.interval_s), "must be positive"),
            ("max_per_minute", self.max_per_minute >= 0, "must not be negative"),
            ("ring_s", 0.0 < self.ring_s <= 30.0, "must be in (0, 30] s"),
            ("max_samples", 1 <= self.max_samples <= MAX_SNIPPET_SAMPLES, f"must be 1 .. {MAX_SNIPPET_SAMPLES}"),
            ("session_ttl_s", self.session_ttl_s > 0, "must be positive"),
            ("max_sessions", self.max_sessions >= 1, "must be at least 1"),
        )
        for name, ok, problem in checks:
            if not ok:
                raise InputError(None, f"snippets.{name}", problem)


@dataclass(slots=True)
class _SessionState:
    n_taken: int
    last_taken_s: float
    last_seen_s: float


class SnippetRateLimiter:
    """Decides which detections get a snippet (see :class:`SnippetPolicy`), on burst times.

    :meth:`allows` asks, :meth:`record` books a snippet actually cut (a burst whose samples
    were missing does not use up its session's share). State is bounded: sessions expire
    after ``session_ttl_s`` without bursts, and at most ``max_sessions`` are kept.
    """

    def __init__(self, policy: SnippetPolicy | None = None) -> None:
        self.policy = policy or SnippetPolicy()
        self._sessions: collections.OrderedDict[tuple[str, str], _SessionState] = collections.OrderedDict()
        self._taken_s: collections.deque[float] = collections.deque()  # times of the last minute's snippets

    @staticmethod
    def session_key(detection: Detection) -> tuple[str, str]:
        """A detection's session: its session id, else its channel, else its frequency to 100 kHz."""
        name = detection.session_id or detection.channel or f"f{round(detection.freq_hz / 100e3)}"
        return (detection.sensor_id, name)

    def _seen(self, key: tuple[str, str], t_s: float) -> _SessionState:
        p = self.policy
        while self._sessions:
            oldest_key, oldest = next(iter(self._sessions.items()))
            if len(self._sessions) < p.max_sessions and oldest.last_seen_s >= t_s - p.session_ttl_s:
                break
            del self._sessions[oldest_key]
        state = self._sessions.get(key)
        if state is None or t_s < state.last_taken_s - p.interval_s:  # new, or the stream's clock went back
            state = _SessionState(0, -math.inf, t_s)
            self._sessions[key] = state
        state.last_seen_s = max(state.last_seen_s, t_s)
        self._sessions.move_to_end(key)
        return state

    def allows(self, detection: Detection) -> bool:
        p = self.policy
        t_s = detection.t_start_s
        state = self._seen(self.session_key(detection), t_s)
        while self._taken_s and not (t_s - 60.0 < self._taken_s[0] <= t_s + 60.0):
            self._taken_s.popleft()
        if len(self._taken_s) >= p.max_per_minute:
            return False
        return state.n_taken < p.first_per_session or t_s - state.last_taken_s >= p.interval_s

    def record(self, detection: Detection) -> None:
        t_s = detection.t_start_s
        state = self._seen(self.session_key(detection), t_s)
        state.n_taken += 1
        state.last_taken_s = t_s
        self._taken_s.append(t_s)

    @property
    def n_sessions(self) -> int:
        return len(self._sessions)


# -- where the samples are ----------------------------------------------------------------------


class IQRing:
    """The most recent blocks of one radio, at least ``ring_s`` of them (plus the block that crosses it).

    Holds references to the blocks (which are never modified), so keeping them costs no
    pass over the samples; memory is bounded by ``ring_s`` x the sample rate x 8 bytes
    plus one block.
    """

    def __init__(self, ring_s: float) -> None:
        if not ring_s > 0:
            raise ValueError("ring_s must be positive")
        self.ring_s = ring_s
        self._blocks: collections.deque[IQBlock] = collections.deque()
        self._n_samples = 0

    def append(self, block: IQBlock) -> None:
        if block.n_samples == 0:
            return
        self._blocks.append(block)
        self._n_samples += block.n_samples
        keep = math.ceil(self.ring_s * block.sample_rate_hz)
        while self._n_samples - self._blocks[0].n_samples >= keep:
            self._n_samples -= self._blocks.popleft().n_samples

    @property
    def n_samples(self) -> int:
        return self._n_samples

    @property
    def n_blocks(self) -> int:
        return len(self._blocks)

    @property
    def sample_rate_hz(self) -> float | None:
        """The rate of the newest block (None while empty)."""
        return self._blocks[-1].sample_rate_hz if self._blocks else None

    def clear(self) -> None:
        self._blocks.clear()
        self._n_samples = 0

    def _run_around(self, index: int, center_freq_hz: int) -> list[IQBlock] | None:
        """The contiguous run of blocks at ``center_freq_hz`` that holds sample ``index``."""
        blocks = list(self._blocks)
        at = next((i for i, b in enumerate(blocks)
                   if b.sample_index <= index < b.sample_index + b.n_samples), None)
        if at is None or blocks[at].center_freq_hz != center_freq_hz:
            return None
        first = last = at
        rate = blocks[at].sample_rate_hz
        while first > 0:
            prev, cur = blocks[first - 1], blocks[first]
            if (prev.center_freq_hz != center_freq_hz or prev.sample_rate_hz != rate
                    or prev.sample_index + prev.n_samples != cur.sample_index):
                break
            first -= 1
        while last + 1 < len(blocks):
            cur, nxt = blocks[last], blocks[last + 1]
            if (nxt.center_freq_hz != center_freq_hz or nxt.sample_rate_hz != rate
                    or cur.sample_index + cur.n_samples != nxt.sample_index):
                break
            last += 1
        return blocks[first : last + 1]

    def cut(self, start: int, stop: int, center_freq_hz: int, *, need_start: int, need_stop: int
            ) -> tuple[IQBlock, int, np.ndarray] | None:
        """Samples ``[start, stop)`` of the stream (clipped to what the ring holds contiguously
        at ``center_freq_hz``), provided ``[need_start, need_stop)`` is all there.

        Returns (the block holding the first sample, the first sample's stream index, the
        samples as a complex64 copy), or None.
        """
        run = self._run_around(need_start, center_freq_hz)
        if run is None:
            return None
        run_start = run[0].sample_index
        run_stop = run[-1].sample_index + run[-1].n_samples
        if need_stop > run_stop:
            return None
        start, stop = max(start, run_start), min(stop, run_stop)
        parts: list[np.ndarray] = []
        first_block = run[0]
        for b in run:
            a = max(start, b.sample_index)
            z = min(stop, b.sample_index + b.n_samples)
            if a >= z:
                continue
            if not parts:
                first_block = b
            parts.append(b.samples_in(a - b.sample_index, z - b.sample_index))  # of bytes: only these converted
        return first_block, start, np.concatenate(parts).astype(np.complex64, copy=False)


class SnippetCutter:
    """One radio's snippet maker: ``observe(block)`` for every block, ``cut(detections, ...)`` for
    what its pipelines report. ``limiter`` may be shared by the radios of one node."""

    def __init__(self, policy: SnippetPolicy | None = None, limiter: SnippetRateLimiter | None = None) -> None:
        self.policy = policy or (limiter.policy if limiter is not None else SnippetPolicy())
        self.limiter = limiter or SnippetRateLimiter(self.policy)
        self.ring = IQRing(self.policy.ring_s)
        self.counts: collections.Counter[str] = collections.Counter({r: 0 for r in REASONS})

    def observe(self, block: IQBlock) -> None:
        self.ring.append(block)

    def reset(self) -> None:
        """Forget the ring (the source was reopened: its stream indices start again)."""
        self.ring.clear()

    def cut(self, detections: Iterable[Detection], center_freq_hz: int) -> list[IQSnippet]:
        """Snippets for those of ``detections`` (from the pipeline tuned at ``center_freq_hz``) the
        rate limit lets through and whose samples the ring still holds."""
        out = []
        for d in detections:
            snippet, reason = self._one(d, center_freq_hz)
            self.counts[reason] += 1
            if snippet is not None:
                out.append(snippet)
        return out

    def _one(self, d: Detection, center_freq_hz: int) -> tuple[IQSnippet | None, str]:
        if d.sample_start is None or not d.sample_count:
            return None, NO_POSITION
        if not self.limiter.allows(d):
            return None, RATE_LIMITED
        p = self.policy
        rate = self.ring.sample_rate_hz
        if rate is None:
            return None, NOT_IN_RING
        margin = min(int(round(p.margin_s * rate)), (p.max_samples - 1) // 2)
        start = max(d.sample_start - margin, 0)
        stop = min(d.sample_start + d.sample_count + margin, start + p.max_samples)
        need_stop = min(d.sample_start + d.sample_count, start + p.max_samples)
        found = self.ring.cut(start, stop, int(center_freq_hz), need_start=d.sample_start,
                              need_stop=need_stop)
        if found is None:
            return None, NOT_IN_RING
        block, first, samples = found
        offset = d.sample_start - first
        snippet = IQSnippet(
            sensor_id=d.sensor_id,
            t_start_s=round(block.t_start_s + (first - block.sample_index) / block.sample_rate_hz, 7),
            center_freq_hz=int(block.center_freq_hz),
            sample_rate_hz=float(block.sample_rate_hz),
            data=complex64_to_cu8(samples).tobytes(),
            detection_t_start_s=d.t_start_s,
            detection_freq_hz=d.freq_hz,
            burst_offset=offset,
            burst_samples=min(d.sample_count, samples.shape[0] - offset),
            burst_bandwidth_hz=d.bandwidth_hz,
            gain_db=block.gain_db if block.gain_db is not None else d.gain_db,
            tech=d.tech,
            session_id=d.session_id,
            sample_index=first,
        )
        self.limiter.record(d)
        return snippet, TAKEN
