"""GSM downlink test signals: the BCCH carrier of a base station, and a plain reference carrier.

Why a downlink here: a dongle's crystal error (tens of ppm on generic RTL-SDRs) is
measured against a signal whose frequency is known far better than that. A GSM base
station's BCCH carrier is one (its frequency is held to 0.05 ppm, TS 45.010 §5.1), and
its frequency-correction bursts make it easy: kalibrate-rtl's method. The simulator
renders these so the calibration (:mod:`calibration.ppm`) can be tested on dongles with
known errors.

BCCH carrier ("C0", :class:`BcchCarrier`)
    Transmitted without pause on all eight timeslots at constant power (TS 45.002 §6.5.1:
    the BCCH carrier is filled with dummy or traffic bursts when idle). Timeslot 0 carries
    the 51-multiframe of the broadcast channels (TS 45.002 §7, Table 3): the frequency
    correction burst (FCCH) in frames 0, 10, 20, 30 and 40, the synchronisation burst (SCH)
    in the frame after each, and BCCH/CCCH normal bursts elsewhere (frame 50 is idle and
    gets a normal burst here). Every other timeslot holds normal bursts with training
    sequence ``bcc`` and random data.

    * FCCH (TS 45.002 §5.2.4): 148 bits all 0. With the differential encoding of TS 45.004
      §2 every bit turns the phase by +π/2, so the burst is a pure tone
      :data:`FCCH_OFFSET_HZ` = 1625/24 kHz (67.708 kHz) above the carrier for 546 µs.
    * SCH (TS 45.002 §5.2.5): 3 tail, 39 coded bits, the 64-bit extended training
      sequence :data:`SCH_SYNC_BITS`, 39 coded bits, 3 tail.
    * Timeslots last 157 bit periods in timeslots 0 and 4 and 156 in the others, the
      1250-bit frame a base station sends for the 156.25-bit average slot of TS 45.002 §4.3.
    * Each TDMA frame is GMSK-modulated as one continuous bit stream (BT 0.3,
      :func:`dsp.gsm.gmsk_phase_rad`) with a random starting phase, so frame ``f`` is a
      pure function of ``(seed, f)``: any block of samples can be rendered on its own,
      in any order, and gives the same values.

Reference carrier (:func:`tone`)
    An unmodulated carrier (a signal generator, a CW beacon) with phase continuous in the
    absolute sample index.

Downlink carrier frequencies come from :func:`dsp.gsm.downlink_freq_hz` (P-GSM: 935.0 +
0.2·n MHz, TS 45.005 §2). Samples have unit mean power; the caller scales them.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from dsp import gsm
from dsp.iq import ComplexArray

FCCH_OFFSET_HZ = gsm.BIT_RATE_HZ / 4.0  # TS 45.002 §5.2.4 with TS 45.004 §2: 1625/24 kHz
MULTIFRAME_51 = 51
FCCH_FRAMES: tuple[int, ...] = (0, 10, 20, 30, 40)  # TS 45.002 §7 Table 3, timeslot 0 of C0
SCH_FRAMES: tuple[int, ...] = (1, 11, 21, 31, 41)
N_FCCH_BITS = 148
BCCH_BANDWIDTH_HZ = 200e3  # one GSM channel

# TS 45.002 §5.2.5: the SCH's extended training sequence (bits 42..105 of the burst).
SCH_SYNC_BITS: npt.NDArray[np.uint8] = np.array(
    [1, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1,
     0, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1, 1],
    dtype=np.uint8,
)
SCH_SYNC_BITS.setflags(write=False)
SCH_SYNC_FIRST_BIT = 42

# Bit periods of each timeslot of a frame as a base station sends them (1250 in all).
SLOT_BITS: tuple[int, ...] = (157, 156, 156, 156, 157, 156, 156, 156)
FRAME_BITS = sum(SLOT_BITS)
_SLOT_FIRST_BIT = np.concatenate(([0], np.cumsum(SLOT_BITS)[:-1])).astype(np.int64)


def fcch_frequency_hz(arfcn: int) -> float:
    """Absolute frequency (Hz) of the FCCH tone of a GSM cell on ``arfcn``: carrier + 67.708 kHz."""
    return float(gsm.downlink_freq_hz(arfcn)) + FCCH_OFFSET_HZ


def tone(offset_hz: float, sample_rate_hz: float, start_sample: int, n_samples: int,
         phase_rad: float = 0.0) -> ComplexArray:
    """An unmodulated carrier at ``offset_hz`` for absolute samples ``[start_sample, start_sample + n)``.

    The phase is ``phase_rad + 2π·offset·k/fs`` for absolute index ``k`` (computed modulo one
    cycle in float64), so consecutive blocks join without a jump. Unit power, complex64.
    """
    if sample_rate_hz <= 0:
        raise ValueError("sample_rate_hz must be positive")
    k = np.arange(start_sample, start_sample + n_samples, dtype=np.int64)
    step = offset_hz / sample_rate_hz
    cycles = np.mod(k * step, 1.0)  # int64 * float: exact enough for 1e12 samples
    return np.exp(1j * (2.0 * np.pi * cycles + phase_rad)).astype(np.complex64)


class BcchCarrier:
    """A GSM cell's BCCH carrier as a receiver tuned ``offset_hz`` below it sees it (module notes).

    A plan built once (sample rate, offset, seed, training sequence, frame number at
    sample 0), then :meth:`render` any span of absolute samples. ``first_frame`` is the
    frame number (TS 45.002 §4.3.3) of the frame starting at sample 0; frames start at
    ``f · 120/26 ms``.
    """

    def __init__(self, sample_rate_hz: float, offset_hz: float, *, seed: int = 0, bcc: int = 0,
                 first_frame: int = 0) -> None:
        if not (math.isfinite(sample_rate_hz) and sample_rate_hz > 0):
            raise ValueError("sample_rate_hz must be positive")
        if not 0 <= int(bcc) <= 7:
            raise ValueError("bcc (the training sequence code) must lie in 0..7")
        if int(seed) < 0 or int(first_frame) < 0:
            raise ValueError("seed and first_frame must be >= 0")
        self.sample_rate_hz = float(sample_rate_hz)
        self.offset_hz = float(offset_hz)
        self.seed = int(seed)
        self.bcc = int(bcc)
        self.first_frame = int(first_frame)
        self._samples_per_frame = gsm.TDMA_FRAME_S * self.sample_rate_hz
        self._cached: tuple[int, npt.NDArray[np.complex128]] | None = None

    # ------------------------------------------------------------------ timing
    def frame_start_sample(self, frame_index: int | npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """First sample at or after the start of the ``frame_index``-th frame since sample 0."""
        return np.ceil(np.asarray(frame_index, dtype=np.float64) * self._samples_per_frame - 1e-9).astype(np.int64)

    def frame_number(self, frame_index: int) -> int:
        """TS 45.002 frame number of the ``frame_index``-th frame since sample 0."""
        return (self.first_frame + int(frame_index)) % gsm.HYPERFRAME_FRAMES

    def fcch_starts_s(self, duration_s: float) -> npt.NDArray[np.float64]:
        """Start times (s after sample 0) of the FCCH bursts within ``duration_s``."""
        n_frames = int(math.ceil(duration_s / gsm.TDMA_FRAME_S)) + 1
        index = np.arange(n_frames)
        fn = (self.first_frame + index) % MULTIFRAME_51
        starts = (index[np.isin(fn, FCCH_FRAMES)] * gsm.TDMA_FRAME_S).astype(np.float64)
        return starts[starts < duration_s]

    # ------------------------------------------------------------------ content
    def frame_bits(self, frame_index: int) -> npt.NDArray[np.uint8]:
        """The 1250 bits of one frame: timeslot 0 from the 51-multiframe, normal bursts elsewhere."""
        fn = self.frame_number(frame_index)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 51, fn]))
        bits = rng.integers(0, 2, size=FRAME_BITS, dtype=np.uint8)  # data and guard bits
        for slot, first in enumerate(_SLOT_FIRST_BIT):
            burst = bits[first:first + gsm.N_NORMAL_BURST_BITS]
            if slot == 0 and fn % MULTIFRAME_51 in FCCH_FRAMES:
                burst[:] = 0
            elif slot == 0 and fn % MULTIFRAME_51 in SCH_FRAMES:
                burst[:3] = 0
                burst[SCH_SYNC_FIRST_BIT:SCH_SYNC_FIRST_BIT + SCH_SYNC_BITS.size] = SCH_SYNC_BITS
                burst[-3:] = 0
            else:
                burst[:3] = 0
                burst[60] = burst[87] = 1  # stealing flags of signalling (TS 45.003 §4.1.5)
                burst[gsm.TSC_FIRST_BIT:gsm.TSC_FIRST_BIT + 26] = gsm.TRAINING_SEQUENCES[self.bcc]
                burst[-3:] = 0
        return bits

    def _frame_samples(self, frame_index: int) -> npt.NDArray[np.complex128]:
        """Baseband (carrier at 0 Hz) samples of one whole frame, memoized for the last frame."""
        if self._cached is not None and self._cached[0] == frame_index:
            return self._cached[1]
        first, end = self.frame_start_sample(np.array([frame_index, frame_index + 1]))
        n = int(end - first)
        # bit 0 of the frame starts at frame_index·T_frame, i.e. this long after sample `first`
        first_bit_s = round(frame_index * gsm.TDMA_FRAME_S - first / self.sample_rate_hz, 12)
        phase = gsm.gmsk_phase_rad(self.frame_bits(frame_index), self.sample_rate_hz, n, first_bit_s)
        start_phase = np.random.default_rng(
            np.random.SeedSequence([self.seed, 52, self.frame_number(frame_index)])).uniform(0.0, 2.0 * np.pi)
        samples = np.exp(1j * (phase + start_phase))
        self._cached = (frame_index, samples)
        return samples

    def render(self, start_sample: int, n_samples: int) -> ComplexArray:
        """Samples ``[start_sample, start_sample + n_samples)`` (absolute index), unit power, complex64."""
        if start_sample < 0 or n_samples < 0:
            raise ValueError("start_sample and n_samples must be >= 0")
        out = np.empty(n_samples, dtype=np.complex128)
        if n_samples == 0:
            return out.astype(np.complex64)
        stop = start_sample + n_samples
        frame = int(math.floor(start_sample / self._samples_per_frame))
        while self.frame_start_sample(frame + 1) <= start_sample:
            frame += 1
        while self.frame_start_sample(frame) > start_sample:
            frame -= 1
        while True:  # a loop over the frames the span touches (4.6 ms each), not over samples
            first = int(self.frame_start_sample(frame))
            if first >= stop:
                break
            samples = self._frame_samples(frame)
            lo, hi = max(first, start_sample), min(first + samples.size, stop)
            out[lo - start_sample:hi - start_sample] = samples[lo - first:hi - first]
            frame += 1
        if self.offset_hz:
            out *= tone(self.offset_hz, self.sample_rate_hz, start_sample, n_samples)
        return out.astype(np.complex64)


def render_block(kind: str, offset_hz: float, sample_rate_hz: float, start_sample: int, n_samples: int, *,
                 seed: int = 0, bcc: int = 0) -> ComplexArray | None:
    """Samples ``[start_sample, start_sample + n_samples)`` of a ``"gsm_bcch"`` carrier or a ``"cw"``
    tone ``offset_hz`` from a receiver's centre, or None when its channel does not lie wholly
    inside the receiver's ``±sample_rate_hz/2`` (it would alias). Unit power, complex64."""
    half_width_hz = BCCH_BANDWIDTH_HZ / 2.0 if kind == "gsm_bcch" else 0.0
    if abs(offset_hz) + half_width_hz >= sample_rate_hz / 2.0:
        return None
    if kind == "gsm_bcch":
        return BcchCarrier(sample_rate_hz, offset_hz, seed=seed, bcc=bcc).render(start_sample, n_samples)
    if kind == "cw":
        return tone(offset_hz, sample_rate_hz, start_sample, n_samples)
    raise ValueError(f"unknown downlink kind {kind!r} (gsm_bcch or cw)")
