"""The one interface every radio source implements, and what live sources share.

A :class:`Source` yields :class:`~dsp.records.IQBlock` s: complex64 samples (or the cu8 bytes they come from) with their
centre frequency (the integer Hz that was *requested*: librtlsdr's getter rounds to kHz),
sample rate, manual gain, a UTC ``t_start_s`` and ``n_dropped``, the samples missing just
before the block. ``sample_index`` counts samples since the stream started, dropped ones
included, so for consecutive blocks ``b.sample_index == a.sample_index + a.n_samples +
b.n_dropped`` always holds, and a detector can reset its overlap carry on a gap.

Kinds (:func:`open_source` parses the spec):

* ``rtlsdr:SERIAL``, ``rtlsdr:N`` — a local dongle through pyrtlsdr (:mod:`sdr.sources.rtlsdr`);
* ``rtl_tcp://HOST:PORT`` — a dongle behind the standard ``rtl_tcp`` server (:mod:`sdr.sources.rtltcp`);
* ``replay:PATH`` — a SigMF or raw recording (:mod:`sdr.sources.replay`);
* ``sim:SITE:SENSOR``, ``sim:SITE:SCENARIO:SENSOR`` — one sensor of the simulated prison,
  live (:mod:`sdr.sources.sim`).

Live sources (the first two) share :class:`LiveSource`: a worker thread reads the radio's
cu8 bytes into a bounded queue that this module owns (a full queue drops a chunk and counts
it, never blocks the radio), the consumer hands the bytes over as they are
(:meth:`~dsp.records.IQBlock.from_cu8`: the detector reads them; samples, when asked for,
come from :func:`dsp.iq.cu8_to_complex64`, the one converter for live and replayed data) or,
where the fractional part of the ppm correction is applied by mixing (librtlsdr's correction
is integer-only), as samples; a lost radio is reopened with backoff while
:attr:`Source.state` says ``"retrying"``.

Time: :class:`LiveClock` stamps chunks from a running sample count anchored to the
monotonic clock at their arrival, so arrival jitter never moves a timestamp, and it finds
the samples the radio lost upstream (USB overflow, a stalled rtl_tcp server) from the
arrival times themselves: see its docstring.
"""

from __future__ import annotations

import abc
import collections
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from dsp.errors import InputError
from dsp.iq import ComplexArray, clipped_fraction_cu8, cu8_to_complex64
from dsp.records import IQBlock

logger = logging.getLogger(__name__)

SourceState = Literal["running", "retrying", "stopped"]
RUNNING: SourceState = "running"
RETRYING: SourceState = "retrying"
STOPPED: SourceState = "stopped"

SOURCE_KINDS = ("rtlsdr", "rtl_tcp", "replay", "sim")
RTL_TCP_DEFAULT_PORT = 1234
RTL_XTAL_HZ = 28_800_000
# the RTL2832U resampler's ranges (librtlsdr refuses the rest)
RTL_SAMPLE_RATE_RANGES_HZ = ((225_001, 300_000), (900_001, 3_200_000))
RTL_MAX_STABLE_RATE_HZ = 2_560_000  # above this USB 2.0 dongles drop samples
MAX_TUNER_FREQ_HZ = 0xFFFF_FFFF  # librtlsdr and rtl_tcp take uint32 Hz
OVERLOAD_FRACTION = 1e-4  # a block with more components at the ADC rails counts as overloaded
MAX_CLOCK_DRIFT_PPM = 100.0  # crystals are tens of ppm off; the anchor may follow this much


class SourceError(RuntimeError):
    """The radio is missing, unplugged or unreachable: the hardware's state, not bad input.

    Distinct from :class:`~dsp.errors.InputError` (a user can fix the config) because a
    node reacts differently: it retries, and reports the source as down meanwhile.
    """

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


@dataclass(frozen=True, slots=True)
class SourceStats:
    """A snapshot of a source's health, for heartbeats."""

    state: SourceState
    n_dropped_samples: int  # lost by faults: queue overflow, radio-side loss, outages
    n_overloads: int  # blocks with the ADC at its rails
    n_outages: int  # times the radio was lost and the source went "retrying"
    n_settle_samples: int  # discarded on purpose while the tuner settled after tune()
    last_error: str | None


# ---------------------------------------------------------------------------------------------
# the interface


class Source(abc.ABC):
    """A radio (or a recording standing in for one) that yields IQ blocks.

    ``open()`` starts it (raising :class:`SourceError` when the radio cannot be reached,
    :class:`~dsp.errors.InputError` for bad settings), ``close()`` stops it, and it is a
    context manager. :meth:`blocks` iterates until the source is closed or, for a
    recording that does not loop, ends; :meth:`read_block` polls with a timeout so a node
    can keep sending heartbeats while a radio is away.
    """

    def __init__(self, spec: str, sensor_id: str) -> None:
        self._spec = spec
        self._sensor_id = sensor_id
        self._state: SourceState = STOPPED
        self._stats_lock = threading.Lock()
        self._n_dropped_samples = 0
        self._n_overloads = 0
        self._n_outages = 0
        self._n_settle_samples = 0
        self._last_error: str | None = None

    # -- identity and settings ----------------------------------------------------------------

    @property
    def spec(self) -> str:
        return self._spec

    @property
    def sensor_id(self) -> str:
        return self._sensor_id

    @property
    @abc.abstractmethod
    def sample_rate_hz(self) -> float:
        """Samples per second the blocks carry."""

    @property
    @abc.abstractmethod
    def center_freq_hz(self) -> int:
        """The centre frequency requested (integer Hz), not the tuner's rounded report."""

    @property
    @abc.abstractmethod
    def gain_db(self) -> float | None:
        """The manual gain applied (the nearest step the tuner has); None under AGC or unknown."""

    @property
    def can_tune(self) -> bool:
        """Whether :meth:`tune` can move this source to another frequency."""
        return True

    # -- health ---------------------------------------------------------------------------------

    @property
    def state(self) -> SourceState:
        """``"running"``, ``"retrying"`` (radio lost, reopening) or ``"stopped"``."""
        return self._state

    @property
    def n_dropped_samples(self) -> int:
        return self._n_dropped_samples

    @property
    def n_overloads(self) -> int:
        return self._n_overloads

    @property
    def n_outages(self) -> int:
        return self._n_outages

    @property
    def n_settle_samples(self) -> int:
        return self._n_settle_samples

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def stats(self) -> SourceStats:
        with self._stats_lock:
            return SourceStats(
                state=self._state,
                n_dropped_samples=self._n_dropped_samples,
                n_overloads=self._n_overloads,
                n_outages=self._n_outages,
                n_settle_samples=self._n_settle_samples,
                last_error=self._last_error,
            )

    def _count(self, *, dropped: int = 0, overloads: int = 0, outages: int = 0, settle: int = 0) -> None:
        with self._stats_lock:
            self._n_dropped_samples += dropped
            self._n_overloads += overloads
            self._n_outages += outages
            self._n_settle_samples += settle

    # -- life cycle -----------------------------------------------------------------------------

    @abc.abstractmethod
    def open(self) -> None:
        """Start the source; a no-op when it is already open."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the source and release the radio; safe to call twice, from any thread."""

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- data -----------------------------------------------------------------------------------

    @abc.abstractmethod
    def read_block(self, timeout_s: float | None = None) -> IQBlock | None:
        """The next block, or None when ``timeout_s`` passed first or the source stopped.

        ``state == "stopped"`` tells the two apart.
        """

    def blocks(self) -> Iterator[IQBlock]:
        """Blocks until the source is closed (live) or ends (a recording that does not loop)."""
        while True:
            block = self.read_block(None)
            if block is None:
                if self._state == STOPPED:
                    return
                continue
            yield block

    @abc.abstractmethod
    def tune(self, center_freq_hz: int) -> None:
        """Move to ``center_freq_hz`` and return once the tuner has settled.

        The source itself discards the samples taken between the command and the end of
        the settle interval: blocks after ``tune`` returns carry the new frequency, the
        discarded samples count in the next block's ``n_dropped`` and in
        :attr:`n_settle_samples` (not in :attr:`n_dropped_samples`, which counts faults).
        """


# ---------------------------------------------------------------------------------------------
# helpers shared by the live sources


def rtl2832_sample_rate_hz(requested_hz: float) -> float:
    """The rate an RTL2832U really produces for ``requested_hz`` (librtlsdr's resampler ratio).

    The ratio ``xtal * 2**22 / rate`` is truncated to a multiple of 4; exact for the usual
    2.4, 2.048, 1.024 MS/s and 240 kS/s, 0.4 ppm off at 250 kS/s.
    """
    scaled = RTL_XTAL_HZ * 2**22
    ratio = (scaled // int(requested_hz)) & 0x0FFF_FFFC
    ratio |= (ratio & 0x0800_0000) << 1
    return scaled / ratio


def check_rtl_settings(
    source: str,
    sample_rate_hz: Any,
    center_freq_hz: Any,
    gain_db: Any,
    allow_agc: bool,
) -> None:
    """Refuse settings an RTL-SDR cannot honour, naming the field (InputError)."""
    if sample_rate_hz is None:
        raise InputError(source, "sample_rate_hz", "required for a live radio (e.g. 2400000)")
    if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, int | float) or not math.isfinite(sample_rate_hz):
        raise InputError(source, "sample_rate_hz", f"must be a number, got {sample_rate_hz!r}")
    if not any(lo <= sample_rate_hz <= hi for lo, hi in RTL_SAMPLE_RATE_RANGES_HZ):
        raise InputError(
            source, "sample_rate_hz",
            f"{sample_rate_hz:g} S/s is outside the RTL2832U's ranges 225001-300000 and 900001-3200000",
        )
    if sample_rate_hz > RTL_MAX_STABLE_RATE_HZ:
        logger.warning("sample_rate_above_stable source=%s sample_rate_hz=%g max_stable_hz=%d",
                       source, sample_rate_hz, RTL_MAX_STABLE_RATE_HZ)
    check_center_freq(source, center_freq_hz)
    if gain_db is None:
        if not allow_agc:
            raise InputError(
                source, "gain_db",
                "automatic gain is refused: AGC changes the gain unannounced, so burst power in "
                "dBFS no longer maps to dBm and sensors cannot be compared; give a manual gain "
                "in dB (allow_agc=True only for a listening test)",
            )
    elif isinstance(gain_db, bool) or not isinstance(gain_db, int | float) or not math.isfinite(gain_db):
        raise InputError(source, "gain_db", f"must be a number of dB, got {gain_db!r}")


def check_center_freq(source: str, center_freq_hz: Any) -> int:
    """``center_freq_hz`` as integer Hz a tuner takes (uint32), or InputError."""
    if center_freq_hz is None:
        raise InputError(source, "center_freq_hz", "required for a live radio (integer Hz)")
    if isinstance(center_freq_hz, bool) or not isinstance(center_freq_hz, int | float):
        raise InputError(source, "center_freq_hz", f"must be a frequency in Hz, got {center_freq_hz!r}")
    if not math.isfinite(center_freq_hz) or center_freq_hz != round(center_freq_hz):
        raise InputError(source, "center_freq_hz", f"must be whole Hz, got {center_freq_hz!r}")
    if not 0 < center_freq_hz <= MAX_TUNER_FREQ_HZ:
        raise InputError(source, "center_freq_hz", f"{center_freq_hz:g} Hz is outside 1..{MAX_TUNER_FREQ_HZ} Hz")
    return int(center_freq_hz)


def split_ppm(ppm: float) -> tuple[int, float]:
    """``(integer part for the tuner, remainder for DSP)``; the remainder is within ±0.5 ppm.

    librtlsdr's correction is integer-only and refuses an unchanged value (pyrtlsdr then
    closes the device), so the integer part is only set when it is not zero.
    """
    whole = round(ppm)
    return int(whole), float(ppm - whole)


class FrequencyShifter:
    """Shifts blocks by ``shift_hz`` with a phase that is continuous in ``sample_index``.

    Applies the fractional ppm left after the tuner's integer correction. A crystal fast
    by ``q`` ppm puts the LO ``f * q * 1e-6`` high and every signal that much low, so the
    correction shifts up by ``center_freq_hz * q * 1e-6``. (The sample clock is off by the
    same ``q`` ppm, under 1 Hz across a 2.4 MHz band: not corrected.)
    """

    def __init__(self, sample_rate_hz: float) -> None:
        self._rate = float(sample_rate_hz)
        self._ramp_key: tuple[int, float] | None = None
        self._ramp: ComplexArray | None = None

    def apply(self, samples: ComplexArray, sample_index: int, shift_hz: float) -> ComplexArray:
        """``samples * exp(2j*pi*shift_hz*(sample_index + n)/rate)``, a new complex64 array."""
        if shift_hz == 0.0 or samples.size == 0:
            return samples
        n = samples.shape[0]
        if self._ramp_key != (n, shift_hz):
            step = 2.0 * np.pi * shift_hz / self._rate
            self._ramp = np.exp(1j * step * np.arange(n, dtype=np.float64)).astype(np.complex64)
            self._ramp_key = (n, shift_hz)
        cycles = math.fmod(shift_hz / self._rate * sample_index, 1.0)
        start = np.complex64(complex(math.cos(2 * math.pi * cycles), math.sin(2 * math.pi * cycles)))
        assert self._ramp is not None
        return samples * (self._ramp * start)


def _utc_offset_s() -> float:
    return time.time() - time.monotonic()


@dataclass(frozen=True, slots=True, eq=False)
class StampedChunk:
    """cu8 bytes from a live radio with where they sit in the stream and when they were taken."""

    raw: npt.NDArray[np.uint8]  # interleaved I,Q bytes, shape (2 * n_samples,)
    sample_index: int
    t_start_s: float  # UTC

    @property
    def n_samples(self) -> int:
        return int(self.raw.shape[0] // 2)


@dataclass(slots=True)
class _Pending:
    raw: npt.NDArray[np.uint8]
    received_start: int  # samples received in this session before this chunk
    received_end: int
    key_s: float  # arrival time minus (received_end / rate): its offset, up to the session base


class LiveClock:
    """Sample indexes and UTC times for chunks of a fixed-rate stream, from their arrival times.

    Every chunk's arrival time ``t`` (monotonic) gives an *offset* ``t - end_index / rate``:
    the time sample 0 would have been taken, plus this chunk's delivery latency. The
    smallest offset seen is the *anchor*; chunk ``k`` is stamped ``anchor + index / rate``,
    so late deliveries (jitter, a busy CPU) never move timestamps, and the anchor only moves
    earlier when a faster delivery shows the old one was late.

    Lost samples (the radio's FIFO overflowed while USB was not served, an rtl_tcp server
    dropped buffers) make every later offset larger by the gap. The clock holds chunks
    back for ``hold_s`` of stream time; when the chunk at the head of the queue and every
    one after it are late by at least ``loss_threshold_s``, and the newest chunk arrived
    on schedule (not in a catch-up burst after a stall, whose chunks are late but nothing
    was lost), it declares ``round(excess * rate)`` samples lost before the head chunk.
    The threshold must exceed the largest burst the transport delivers at once (a USB
    buffer, an rtl_tcp server buffer); the position of a loss is known to within the
    burst that precedes it. Smaller persistent excesses are crystal drift: the anchor
    follows them at up to ``max_drift_ppm``.

    After an outage (:meth:`start_session`), the first chunk's place in the stream comes
    from the wall clock: the gap is ``(its start time - the anchor) * rate`` minus the
    samples already stamped.

    UTC is the monotonic anchor plus ``time.time() - time.monotonic()``, re-measured at
    each chunk, so an NTP step moves timestamps with UTC without looking like a loss.
    Not thread-safe except :meth:`index_at`, which a consumer may call while a producer
    pushes.
    """

    def __init__(
        self,
        sample_rate_hz: float,
        *,
        hold_s: float,
        loss_threshold_s: float,
        max_drift_ppm: float = MAX_CLOCK_DRIFT_PPM,
        utc_offset: Callable[[], float] = _utc_offset_s,
    ) -> None:
        if hold_s < 0 or loss_threshold_s <= 0:
            raise ValueError("hold_s must be >= 0 and loss_threshold_s > 0")
        self._rate = float(sample_rate_hz)
        self._hold_samples = round(hold_s * self._rate)
        self._threshold_s = float(loss_threshold_s)
        self._max_drift = max_drift_ppm * 1e-6
        self._utc_offset = utc_offset
        self._lock = threading.Lock()
        self._anchor: float | None = None  # monotonic time of sample index 0 (plus min latency)
        self._utc_shift = utc_offset()
        self._pending: collections.deque[_Pending] = collections.deque()
        self._new_session = True
        self._session_base = 0  # stream index of the session's first sample
        self._received = 0  # samples received in this session
        self._declared = 0  # samples declared lost in this session (they shift later indexes)
        self._last_arrival: float | None = None
        self._last_nudge_index = 0
        self.n_lost_samples = 0
        self.n_losses = 0

    @property
    def sample_rate_hz(self) -> float:
        return self._rate

    @property
    def next_index(self) -> int:
        """Stream index just after the last chunk pushed."""
        return self._session_base + self._received + self._declared

    def start_session(self) -> None:
        """The next chunk comes from a reopened radio: place it by the wall clock."""
        self._new_session = True

    def push(self, raw: npt.NDArray[np.uint8], t_arrival_s: float) -> list[StampedChunk]:
        """Take one chunk that arrived (fully) at monotonic ``t_arrival_s``; return those released."""
        n = raw.shape[0] // 2
        rate = self._rate
        with self._lock:
            shift = self._utc_offset()
            if abs(shift - self._utc_shift) > 1e-3:  # a clock step, not slewing noise
                self._utc_shift = shift
            fresh = True
            if self._new_session:
                self._new_session = False
                if self._anchor is not None:
                    first = round((t_arrival_s - n / rate - self._anchor) * rate)
                    gap = max(0, first - self.next_index)
                    if gap:
                        self.n_lost_samples += gap
                        self.n_losses += 1
                    self._session_base = self.next_index + gap
                self._received = 0
                self._declared = 0
            elif self._last_arrival is not None:
                fresh = t_arrival_s - self._last_arrival >= 0.5 * n / rate
            self._last_arrival = t_arrival_s
            start = self._received
            self._received += n
            key = t_arrival_s - self._received / rate
            offset = key - (self._session_base + self._declared) / rate
            if self._anchor is None or offset < self._anchor:
                self._anchor = offset
            self._pending.append(_Pending(raw, start, self._received, key))
            released = []
            while self._pending and self._pending[-1].received_end - self._pending[0].received_end >= self._hold_samples:
                if fresh:
                    self._judge_head()
                released.append(self._release_head())
            return released

    def flush(self) -> list[StampedChunk]:
        """Release every held chunk (the stream ended or the radio was lost)."""
        with self._lock:
            return [self._release_head() for _ in range(len(self._pending))]

    def index_at(self, t_s: float) -> int | None:
        """Stream index of the sample taken at monotonic ``t_s``; None before any data."""
        with self._lock:
            if self._anchor is None:
                return None
            return math.floor((t_s - self._anchor) * self._rate)

    def _judge_head(self) -> None:
        assert self._anchor is not None
        base_s = (self._session_base + self._declared) / self._rate
        excess_s = min(p.key_s for p in self._pending) - base_s - self._anchor
        head = self._pending[0]
        if excess_s >= self._threshold_s:
            n_lost = round(excess_s * self._rate)
            index = self._session_base + head.received_start + self._declared
            self._declared += n_lost
            self.n_lost_samples += n_lost
            self.n_losses += 1
            self._last_nudge_index = index + n_lost
            logger.warning("samples_lost n_samples=%d before_index=%d late_s=%.4f", n_lost, index, excess_s)
        elif excess_s > 0:
            index = self._session_base + head.received_start + self._declared
            allowed_s = self._max_drift * max(0, index - self._last_nudge_index) / self._rate
            if allowed_s > 0:
                self._anchor += min(excess_s, allowed_s)
                self._last_nudge_index = index

    def _release_head(self) -> StampedChunk:
        assert self._anchor is not None
        head = self._pending.popleft()
        index = self._session_base + head.received_start + self._declared
        return StampedChunk(head.raw, index, self._anchor + index / self._rate + self._utc_shift)


@dataclass(slots=True)
class _Tune:
    command_index: int  # first sample taken after the command was sent
    settled_index: int  # first sample taken after the tuner settled
    center_freq_hz: int


class LiveSource(Source):
    """What rtlsdr and rtl_tcp share: worker thread, bounded queue, reconnection, tuning, ppm.

    Subclasses implement ``_connect`` (open and configure the radio with the current
    settings; raise :class:`SourceError`), ``_stream`` (block, calling
    ``self._deliver(raw_bytes, t_arrival_monotonic)`` for each chunk, until
    ``self._stopping`` is set or the radio is lost), ``_interrupt`` (make ``_stream``
    return, from any thread), ``_disconnect`` and ``_send_center_freq``.

    Options: ``buffer_samples`` (one chunk and one block, a multiple of 256), ``queue_s``
    (the bounded queue, in seconds of samples: beyond it chunks are dropped and counted),
    ``hold_s`` and ``loss_threshold_s`` (:class:`LiveClock`; both are raised to suit the
    transport's bursts), ``settle_s`` (see :meth:`tune`), ``stall_timeout_s`` (a radio
    silent this long is restarted), ``backoff_s``/``max_backoff_s``, ``overload_fraction``.

    Reconnection: when ``_stream`` returns or raises without a ``close()``, the state goes
    ``"retrying"``, the outage is logged and counted, and ``_connect`` is retried with
    exponential backoff (``backoff_s`` doubling up to ``max_backoff_s``); the first block
    after it carries the gap (from the wall clock) in ``n_dropped``. After ``close()``,
    :meth:`read_block` still hands over what was queued, then returns None.
    """

    default_settle_s = 0.02

    def __init__(
        self,
        spec: str,
        *,
        sensor_id: str,
        sample_rate_hz: float,
        center_freq_hz: int,
        gain_db: float | None,
        ppm: float = 0.0,
        allow_agc: bool = False,
        settle_s: float | None = None,
        queue_s: float = 2.0,
        buffer_samples: int = 65_536,
        hold_s: float = 0.25,
        loss_threshold_s: float = 0.02,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        stall_timeout_s: float | None = None,
        overload_fraction: float = OVERLOAD_FRACTION,
    ) -> None:
        super().__init__(spec, sensor_id)
        check_rtl_settings(spec, sample_rate_hz, center_freq_hz, gain_db, allow_agc)
        if not isinstance(ppm, int | float) or isinstance(ppm, bool) or not math.isfinite(ppm) or abs(ppm) > 1000:
            raise InputError(spec, "ppm", f"must be a number of ppm within ±1000, got {ppm!r}")
        settle = self.default_settle_s if settle_s is None else settle_s
        for name, value in (("settle_s", settle), ("queue_s", queue_s), ("hold_s", hold_s),
                            ("backoff_s", backoff_s), ("max_backoff_s", max_backoff_s)):
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise InputError(spec, name, f"must be a non-negative number of seconds, got {value!r}")
        if not isinstance(buffer_samples, int) or buffer_samples < 256 or buffer_samples % 256:
            raise InputError(spec, "buffer_samples", f"must be a positive multiple of 256, got {buffer_samples!r}")
        self._requested_rate_hz = int(sample_rate_hz)
        self._rate_hz = rtl2832_sample_rate_hz(sample_rate_hz)
        self._center_freq_hz = int(center_freq_hz)
        self._gain_requested_db = None if gain_db is None else float(gain_db)
        self._gain_applied_db: float | None = self._gain_requested_db
        self._ppm = float(ppm)
        self._ppm_int, self._ppm_frac = split_ppm(self._ppm)
        self._settle_s = float(settle)
        self._buffer_samples = buffer_samples
        self._queue_chunks = max(2, math.ceil(queue_s * self._rate_hz / buffer_samples))
        burst_s = self._burst_samples() / self._rate_hz
        self._hold_s = max(hold_s, 2 * burst_s + buffer_samples / self._rate_hz)
        self._loss_threshold_s = max(loss_threshold_s, 2 * burst_s)
        self._stall_timeout_s = max(2.0, 4 * burst_s) if stall_timeout_s is None else float(stall_timeout_s)
        self._backoff_s = max(backoff_s, 1e-3)
        self._max_backoff_s = max(max_backoff_s, self._backoff_s)
        self._overload_fraction = overload_fraction

        self._last_chunk_s = 0.0  # monotonic arrival of the last chunk (the stall watchdog)
        self._produce_lock = threading.Lock()  # keeps chunks in order between producer and idle flush
        self._stopping = threading.Event()
        self._worker_done = threading.Event()
        self._worker_done.set()
        self._worker: threading.Thread | None = None
        self._device_lock = threading.RLock()  # the radio: connect, configure, retune
        self._tune_lock = threading.Lock()  # the pending retunes the consumer applies
        self._connected = False
        self._queue: queue.Queue[StampedChunk] = queue.Queue(self._queue_chunks)
        self._clock = self._new_clock()
        self._ready: collections.deque[IQBlock] = collections.deque()
        self._yielded_end = 0
        self._tunes: collections.deque[_Tune] = collections.deque()
        self._block_freq_hz = self._center_freq_hz
        self._shifter = FrequencyShifter(self._rate_hz)

    # -- subclass hooks -------------------------------------------------------------------------

    @abc.abstractmethod
    def _connect(self) -> None: ...

    @abc.abstractmethod
    def _stream(self) -> None: ...

    @abc.abstractmethod
    def _interrupt(self) -> None: ...

    @abc.abstractmethod
    def _disconnect(self) -> None: ...

    @abc.abstractmethod
    def _send_center_freq(self, center_freq_hz: int) -> None: ...

    def _burst_samples(self) -> int:
        """Largest number of samples the transport delivers at once (sets the loss threshold)."""
        return self._buffer_samples

    # -- settings -------------------------------------------------------------------------------

    @property
    def sample_rate_hz(self) -> float:
        return self._rate_hz

    @property
    def center_freq_hz(self) -> int:
        return self._center_freq_hz

    @property
    def gain_db(self) -> float | None:
        return self._gain_applied_db

    @property
    def ppm(self) -> float:
        return self._ppm

    @property
    def settle_s(self) -> float:
        return self._settle_s

    @property
    def loss_threshold_s(self) -> float:
        return self._loss_threshold_s

    # -- life cycle -----------------------------------------------------------------------------

    def _new_clock(self) -> LiveClock:
        return LiveClock(self._rate_hz, hold_s=self._hold_s, loss_threshold_s=self._loss_threshold_s)

    def open(self) -> None:
        if self._worker is not None and not self._worker_done.is_set():
            return
        self._stopping.clear()
        self._queue = queue.Queue(self._queue_chunks)
        self._clock = self._new_clock()
        self._yielded_end = 0
        self._ready.clear()
        self._tunes.clear()
        self._block_freq_hz = self._center_freq_hz
        cu8_to_complex64(np.zeros(2, np.uint8))  # load the compiled conversion (~0.5 s) before the radio streams
        with self._device_lock:
            self._connect()
            self._connected = True
            self._last_chunk_s = time.monotonic()
        self._state = RUNNING
        self._last_error = None
        self._worker_done.clear()
        self._worker = threading.Thread(target=self._run, name=f"source {self._spec}", daemon=True)
        self._worker.start()
        logger.info("source_open source=%s sensor_id=%s center_freq_hz=%d sample_rate_hz=%.1f gain_db=%s ppm=%g",
                    self._spec, self._sensor_id, self._center_freq_hz, self._rate_hz, self._gain_applied_db, self._ppm)

    def close(self) -> None:
        self._stopping.set()
        worker = self._worker
        if worker is not None:
            deadline = time.monotonic() + 10.0
            while worker.is_alive() and time.monotonic() < deadline:
                self._interrupt()  # again and again: the worker may be between connect and stream
                worker.join(0.05)
            if worker.is_alive():
                logger.error("source_close_timeout source=%s", self._spec)
        self._worker = None
        self._state = STOPPED

    def _run(self) -> None:
        backoff = self._backoff_s
        try:
            while not self._stopping.is_set():
                if not self._connected:
                    try:
                        with self._device_lock:
                            self._connect()
                            self._connected = True
                            self._last_chunk_s = time.monotonic()
                    except (SourceError, OSError) as exc:
                        self._last_error = str(exc)
                        logger.debug("source_reconnect_failed source=%s error=%s backoff_s=%.2f", self._spec, exc, backoff)
                        self._stopping.wait(backoff)
                        backoff = min(2 * backoff, self._max_backoff_s)
                        continue
                    backoff = self._backoff_s
                    self._clock.start_session()
                    self._state = RUNNING
                    logger.warning("source_resumed source=%s", self._spec)
                reason = "stream ended"
                try:
                    self._stream()
                except (SourceError, OSError) as exc:
                    reason = str(exc)
                with self._produce_lock:
                    self._enqueue_all(self._clock.flush())
                with self._device_lock:
                    self._connected = False
                    try:
                        self._disconnect()
                    except (SourceError, OSError) as exc:
                        logger.debug("source_disconnect_failed source=%s error=%s", self._spec, exc)
                if self._stopping.is_set():
                    break
                self._state = RETRYING
                self._last_error = reason
                self._count(outages=1)
                logger.warning("source_lost source=%s reason=%s retry_in_s=%.2f", self._spec, reason, backoff)
                self._stopping.wait(backoff)
        except Exception:
            logger.exception("source_worker_crashed source=%s", self._spec)
            self._last_error = "worker crashed"
            raise
        finally:
            self._state = STOPPED
            self._worker_done.set()

    # -- producer side --------------------------------------------------------------------------

    def _deliver(self, raw: npt.NDArray[np.uint8], t_arrival_s: float) -> None:
        """One chunk of cu8 bytes from the radio (called by ``_stream``, in the worker thread)."""
        with self._produce_lock:
            self._last_chunk_s = t_arrival_s
            before = self._clock.n_lost_samples
            released = self._clock.push(raw, t_arrival_s)
            lost = self._clock.n_lost_samples - before
            if lost:
                self._count(dropped=lost)
            self._enqueue_all(released)

    def _enqueue_all(self, chunks: list[StampedChunk]) -> None:
        for chunk in chunks:
            try:
                self._queue.put_nowait(chunk)
            except queue.Full:  # the next block's sample_index skips it: n_dropped says so
                self._count(dropped=chunk.n_samples)
                logger.debug("queue_full source=%s n_samples=%d", self._spec, chunk.n_samples)

    # -- consumer side --------------------------------------------------------------------------

    def read_block(self, timeout_s: float | None = None) -> IQBlock | None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._ready:
            wait_s = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            try:
                chunk = self._queue.get(timeout=max(wait_s, 0.0)) if wait_s > 0 else self._queue.get_nowait()
            except queue.Empty:
                if self._worker_done.is_set() and self._queue.empty():
                    return None
                self._check_quiet()
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            self._ready.extend(self._blocks_from(chunk))
        return self._ready.popleft()

    def _blocks_from(self, chunk: StampedChunk) -> list[IQBlock]:
        """Split a chunk at pending retunes: old frequency, discarded settle span, new frequency."""
        pieces: list[tuple[int, int, int]] = []
        pos, end = chunk.sample_index, chunk.sample_index + chunk.n_samples
        n_settle = 0
        with self._tune_lock:
            while self._tunes and pos < end:
                tune = self._tunes[0]
                if pos < tune.command_index:
                    stop = min(end, tune.command_index)
                    pieces.append((pos, stop, self._block_freq_hz))
                    pos = stop
                    continue
                if pos < tune.settled_index:
                    stop = min(end, tune.settled_index)
                    n_settle += stop - pos
                    pos = stop
                    continue
                self._block_freq_hz = tune.center_freq_hz
                self._tunes.popleft()
        if pos < end:
            pieces.append((pos, end, self._block_freq_hz))
        if n_settle:
            self._count(settle=n_settle)
        blocks = []
        for first, stop, freq in pieces:
            offset = first - chunk.sample_index
            raw = chunk.raw[2 * offset : 2 * (stop - chunk.sample_index)]
            if clipped_fraction_cu8(raw) > self._overload_fraction:
                self._count(overloads=1)
            metadata: dict[str, Any] = dict(sensor_id=self._sensor_id, sample_index=first, gain_db=self._gain_applied_db,
                                            n_dropped=first - self._yielded_end)
            t_start_s = chunk.t_start_s + offset / self._rate_hz
            if self._ppm_frac:  # mixed: samples only
                samples = self._shifter.apply(cu8_to_complex64(raw), first, freq * self._ppm_frac * 1e-6)
                blocks.append(IQBlock(samples, freq, self._rate_hz, t_start_s, **metadata))
            else:  # the bytes as read (the chunk is never refilled): the detector reads them
                blocks.append(IQBlock.from_cu8(raw, freq, self._rate_hz, t_start_s, **metadata))
            self._yielded_end = stop
        return blocks

    def _check_quiet(self) -> None:
        """Hand over held chunks when the radio goes quiet; restart a radio that stalled.

        The clock holds chunks until later ones confirm their timing; with none coming
        for ``hold_s`` they are released as they are. A radio that streams nothing for
        ``stall_timeout_s`` without an error (a hung USB transfer) is treated as lost.
        """
        silent_s = time.monotonic() - self._last_chunk_s
        if silent_s > self._hold_s:
            with self._produce_lock:
                self._enqueue_all(self._clock.flush())
        if self._state == RUNNING and self._connected and silent_s > self._stall_timeout_s:
            logger.warning("source_stalled source=%s silent_s=%.1f", self._spec, silent_s)
            self._last_chunk_s = time.monotonic()  # once per stall timeout
            self._interrupt()

    # -- tuning ---------------------------------------------------------------------------------

    def tune(self, center_freq_hz: int) -> None:
        freq = check_center_freq(self._spec, center_freq_hz)
        if freq == self._center_freq_hz:
            return
        with self._device_lock:
            self._center_freq_hz = freq  # a reconnect configures the new frequency
            t_command = time.monotonic()
            if self._connected:
                try:
                    self._send_center_freq(freq)
                except (SourceError, OSError) as exc:
                    logger.warning("tune_failed source=%s center_freq_hz=%d error=%s", self._spec, freq, exc)
                    self._interrupt()  # the worker reconnects, configuring ``freq``
            t_settled = time.monotonic() + self._settle_s
        command_index = self._clock.index_at(t_command)
        settled_index = self._clock.index_at(t_settled)
        if command_index is None or settled_index is None:  # no data yet: drop the first settle_s
            command_index, settled_index = 0, math.ceil(self._settle_s * self._rate_hz)
        with self._tune_lock:
            self._tunes.append(_Tune(command_index, settled_index, freq))
        self._stopping.wait(max(0.0, t_settled - time.monotonic()))


# ---------------------------------------------------------------------------------------------
# specs


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A parsed source spec: ``kind`` and where the radio or file is."""

    kind: str  # "rtlsdr", "rtl_tcp", "replay" or "sim"
    text: str  # as given
    serial: str | None = None  # rtlsdr
    index: int | None = None  # rtlsdr
    host: str | None = None  # rtl_tcp
    port: int | None = None  # rtl_tcp
    path: str | None = None  # replay
    site: str | None = None  # sim: a bundled site name or a site file
    scenario: str | None = None  # sim: a bundled scenario name or a scenario file (None: the site's own)
    sensor: str | None = None  # sim: the simulated sensor's id


_INDEX_RE = re.compile(r"^(0|[1-9]\d?)$")  # 0..99 without a leading zero; "00000001" is a serial


def parse_source_spec(spec: str) -> SourceSpec:
    """Parse ``rtlsdr:SERIAL``, ``rtlsdr:N``, ``rtl_tcp://HOST:PORT``, ``replay:PATH`` or ``sim:SITE[:SCENARIO]:SENSOR``.

    ``rtlsdr:N`` with N a number 0-99 without leading zero is a device index (the order
    USB enumerated the dongles, which can change at a reboot: prefer serials); anything
    else is a serial, as are ``rtlsdr:serial=X`` and ``rtlsdr:index=N`` when ambiguous.
    A bare ``rtlsdr`` is index 0. rtl_tcp's port defaults to 1234; IPv6 hosts go in
    brackets (``rtl_tcp://[::1]:1234``). ``sim`` names a site and a sensor, optionally a
    scenario between them (bundled names or TOML files, no ``:`` in them; see
    :mod:`sdr.sources.sim`). Raises InputError (field ``source``).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(None, "source", f"empty source; expected one of {_SPEC_FORMS}")
    text = spec.strip()
    kind, sep, rest = text.partition(":")
    kind = kind.lower()
    if kind == "rtlsdr":
        if not sep or rest == "":
            if sep:
                raise InputError(None, "source", f"{text!r}: give a serial number or an index after 'rtlsdr:'")
            return SourceSpec("rtlsdr", text, index=0)
        key, eq, value = rest.partition("=")
        if eq:
            if key == "serial" and value:
                return SourceSpec("rtlsdr", text, serial=value)
            if key == "index" and value.isdigit():
                return SourceSpec("rtlsdr", text, index=int(value))
            raise InputError(None, "source", f"{text!r}: expected rtlsdr:serial=SERIAL or rtlsdr:index=N")
        if _INDEX_RE.match(rest):
            return SourceSpec("rtlsdr", text, index=int(rest))
        if not rest.isprintable() or " " in rest:
            raise InputError(None, "source", f"{text!r}: a serial number has no spaces or control characters")
        return SourceSpec("rtlsdr", text, serial=rest)
    if kind == "rtl_tcp":
        if not rest.startswith("//"):
            raise InputError(None, "source", f"{text!r}: expected rtl_tcp://HOST:PORT")
        parts = urlsplit("tcp:" + rest)
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise InputError(None, "source", f"{text!r}: expected rtl_tcp://HOST:PORT and nothing else")
        try:
            port = parts.port
        except ValueError:
            raise InputError(None, "source", f"{text!r}: the port must be a number 1-65535") from None
        host = parts.hostname
        if not host:
            raise InputError(None, "source", f"{text!r}: the host is missing (rtl_tcp://HOST:PORT)")
        if port == 0:
            raise InputError(None, "source", f"{text!r}: the port must be a number 1-65535")
        return SourceSpec("rtl_tcp", text, host=host, port=port or RTL_TCP_DEFAULT_PORT)
    if kind == "replay":
        if not rest:
            raise InputError(None, "source", f"{text!r}: give a recording after 'replay:' (replay:PATH)")
        return SourceSpec("replay", text, path=rest)
    if kind == "sim":
        names = rest.split(":")
        if len(names) not in (2, 3) or not all(names):
            raise InputError(None, "source", f"{text!r}: expected sim:SITE:SENSOR or sim:SITE:SCENARIO:SENSOR")
        return SourceSpec("sim", text, site=names[0], scenario=names[1] if len(names) == 3 else None, sensor=names[-1])
    raise InputError(None, "source", f"{text!r}: unknown source kind {kind!r}; expected one of {_SPEC_FORMS}")


_SPEC_FORMS = "rtlsdr:SERIAL, rtlsdr:INDEX, rtl_tcp://HOST:PORT, replay:PATH, sim:SITE[:SCENARIO]:SENSOR"


def create_source(
    spec: str | SourceSpec,
    *,
    sensor_id: str | None = None,
    sample_rate_hz: float | None = None,
    center_freq_hz: int | None = None,
    gain_db: float | None = None,
    ppm: float = 0.0,
    **options: Any,
) -> Source:
    """A source for ``spec``, validated but not opened (see :func:`open_source`).

    ``options`` go to the kind's class: live sources take ``allow_agc``, ``bias_tee``
    (rtlsdr, rtl_tcp), ``settle_s``, ``queue_s``, ``buffer_samples``, ``backoff_s`` ...;
    replay takes ``realtime``, ``loop``, ``timestamps`` ("recording" or "now"),
    ``block_samples``; sim takes ``seed``, ``realtime``, ``loop``, ``timestamps`` ("now" or
    "scenario"), ``start_utc``, ``start_s``, ``duration_s``, ``settle_s``, ``block_samples``,
    ``max_lag_s``. For replay, ``sample_rate_hz`` and ``center_freq_hz`` only fill
    in what a raw file does not say, and ``gain_db`` is refused (a recording's gain was
    set when it was made).
    """
    parsed = spec if isinstance(spec, SourceSpec) else parse_source_spec(spec)
    try:
        return _create(parsed, sensor_id, sample_rate_hz, center_freq_hz, gain_db, ppm, options)
    except TypeError as exc:
        match = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if match is None:
            raise
        raise InputError(parsed.text, match.group(1), f"not an option of a {parsed.kind} source") from None


def _create(
    parsed: SourceSpec,
    sensor_id: str | None,
    sample_rate_hz: float | None,
    center_freq_hz: int | None,
    gain_db: float | None,
    ppm: float,
    options: dict[str, Any],
) -> Source:
    if parsed.kind == "rtlsdr":
        from sdr.sources.rtlsdr import RtlSdrSource

        return RtlSdrSource(
            serial=parsed.serial, index=parsed.index, spec=parsed.text, sensor_id=sensor_id,
            sample_rate_hz=sample_rate_hz, center_freq_hz=center_freq_hz, gain_db=gain_db, ppm=ppm, **options,
        )
    if parsed.kind == "rtl_tcp":
        from sdr.sources.rtltcp import RtlTcpSource

        assert parsed.host is not None and parsed.port is not None
        return RtlTcpSource(
            parsed.host, parsed.port, spec=parsed.text, sensor_id=sensor_id,
            sample_rate_hz=sample_rate_hz, center_freq_hz=center_freq_hz, gain_db=gain_db, ppm=ppm, **options,
        )
    if parsed.kind == "sim":
        from sdr.sources.sim import SimSource

        assert parsed.site is not None and parsed.sensor is not None
        return SimSource(
            parsed.site, parsed.sensor, scenario=parsed.scenario, spec=parsed.text, sensor_id=sensor_id,
            sample_rate_hz=sample_rate_hz, center_freq_hz=center_freq_hz, gain_db=gain_db, ppm=ppm, **options,
        )
    from sdr.sources.replay import ReplaySource

    assert parsed.path is not None
    if gain_db is not None:
        raise InputError(parsed.text, "gain_db", "a recording's gain was set when it was made; leave it unset for replay")
    if ppm:
        raise InputError(parsed.text, "ppm", "a recording's frequency error was fixed when it was made; use 0 for replay")
    return ReplaySource(
        parsed.path, spec=parsed.text, sensor_id=sensor_id,
        sample_rate_hz=sample_rate_hz, center_freq_hz=center_freq_hz, **options,
    )


def open_source(
    spec: str | SourceSpec,
    *,
    sensor_id: str | None = None,
    sample_rate_hz: float | None = None,
    center_freq_hz: int | None = None,
    gain_db: float | None = None,
    ppm: float = 0.0,
    **options: Any,
) -> Source:
    """Create the source ``spec`` names (see :func:`create_source`) and open it.

    Usable as ``with open_source("rtlsdr:00000042", sample_rate_hz=2.4e6,
    center_freq_hz=900_000_000, gain_db=28.0) as source: for block in source.blocks(): ...``.
    Raises InputError for a bad spec or setting, SourceError when the radio is absent.
    An unknown keyword option is an InputError naming it.
    """
    source = create_source(
        spec, sensor_id=sensor_id, sample_rate_hz=sample_rate_hz, center_freq_hz=center_freq_hz,
        gain_db=gain_db, ppm=ppm, **options,
    )
    source.open()
    return source
