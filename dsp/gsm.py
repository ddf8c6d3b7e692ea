"""GSM uplink: the bursts a phone sends (normal and access bursts, GMSK) and when it sends them.

Waveform (what :func:`render` synthesizes)
    GMSK, BT = 0.3, 270.833 kbit/s (1625000/6), modulation index 1/2, with the differential
    encoding of 3GPP TS 45.004 §2 and the burst structures of TS 45.002 §5.2: the normal
    burst (3 tail, 57 data, stealing flag, 26-bit training sequence, stealing flag, 57 data,
    3 tail = 148 bits + 8.25 guard) and the access burst (8 extended tail, 41-bit
    synchronisation sequence, 36 coded bits, 3 tail = 88 bits + 68.25 guard). Data bits are
    random (ciphered traffic looks random). The phase is evaluated exactly at every sample
    instant from the closed-form integral of the Gaussian-filtered NRZ pulse, so any sample
    rate works (2.4 MS/s is 8.86 samples a bit) without resampling.

Power-vs-time envelope
    Raised-cosine amplitude ramps of :data:`RAMP_S` placed so that the envelope is at -1 dB
    exactly at the edges of the *useful part* (TS 45.005 Annex B: from the middle of bit 0
    to the middle of the last bit, 147 bits = 542.8 µs for a normal burst, 87 bits for an
    access burst). The lower time mask (≥ -1 dB over the useful part) holds by construction
    and the ramp starts 9.7 µs before the useful part, well inside the upper mask (-6 dB
    10 µs before, -30 dB 18 µs before). The -3 dB points then fall on the bit edges, so
    the -3 dB width is the whole 148 bits (546.5 µs); a longer ramp (the mask allows up to
    ~20 µs) would widen it and spill beyond the 8.25-bit guard period.

Timing (TS 45.002 §4.3, §5.2)
    A TDMA frame lasts 120/26 ms (4.615 ms) and holds 8 timeslots of 15/26 ms (576.9 µs,
    156.25 bits). A :class:`~dsp.waveform.TxBurst` from this module starts at the start of
    its timeslot; its samples begin with the ramp-up, :data:`RAMP_LEAD_S` before bit 0,
    and last :data:`NORMAL_BURST_DURATION_S` (562.1 µs) or
    :data:`ACCESS_BURST_DURATION_S` (340.6 µs) so a burst never overlaps the next slot.

Schedules (what a phone does): :func:`call_bursts` (TCH/F with SACCH, DTX, hopping),
:func:`rach_bursts` (random access) and :func:`sdcch_bursts` (SMS, location update).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import erf

from dsp.errors import InputError
from dsp.iq import ComplexArray
from dsp.waveform import TxBurst

BitArray = npt.NDArray[np.uint8]

BIT_RATE_HZ = 1625000.0 / 6.0  # TS 45.004 §2.1: 270.833 kbit/s
BIT_PERIOD_S = 6.0 / 1625000.0  # 48/13 µs
BANDWIDTH_HZ = 200e3  # channel spacing
BT = 0.3  # Gaussian filter bandwidth × bit period (TS 45.004 §2.4)
TDMA_FRAME_S = 0.120 / 26.0  # TS 45.002 §4.3.1: 4.615 ms
TIMESLOT_S = TDMA_FRAME_S / 8.0  # 576.9 µs = 156.25 bits
N_TIMESLOTS = 8
HYPERFRAME_FRAMES = 2048 * 26 * 51  # TS 45.002 §4.3.3: frame numbers wrap here

# TS 45.002 §5.2.3, training sequence code (TSC) 0..7 of the normal burst, bits 61..86.
# Each is a 16-bit core (bits 5..20) with 5 bits of cyclic extension on either side.
TRAINING_SEQUENCES: BitArray = np.array(
    [
        [0, 0, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 1, 1, 1],
        [0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1],
        [0, 1, 0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0],
        [0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0],
        [0, 0, 0, 1, 1, 0, 1, 0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 1, 1],
        [0, 1, 0, 0, 1, 1, 1, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 0, 1, 0],
        [1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1],
        [1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0],
    ],
    dtype=np.uint8,
)
TRAINING_SEQUENCES.setflags(write=False)

# TS 45.002 §5.2.7: access burst extended tail bits and synchronisation sequence TS0
# (the one every GSM phone uses for a channel request; TS1/TS2 are for EGPRS).
ACCESS_EXTENDED_TAIL_BITS: BitArray = np.array([0, 0, 1, 1, 1, 0, 1, 0], dtype=np.uint8)
ACCESS_SYNC_BITS: BitArray = np.array(
    [0, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 1,
     0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0],
    dtype=np.uint8,
)
ACCESS_EXTENDED_TAIL_BITS.setflags(write=False)
ACCESS_SYNC_BITS.setflags(write=False)

N_NORMAL_BURST_BITS = 148
N_ACCESS_BURST_BITS = 88
TSC_FIRST_BIT = 61  # bit index of the training sequence inside the normal burst
ACCESS_SYNC_FIRST_BIT = 8
NORMAL_GUARD_BITS = 8.25
ACCESS_GUARD_BITS = 68.25

# Power ramp: raised-cosine in amplitude, 0 → full in RAMP_S; its -1 dB point is put on
# the edge of the useful part (middle of the first / last bit). See the module docstring.
RAMP_S = 12.3e-6
_RAMP_X_1DB = math.acos(1.0 - 2.0 * 10.0 ** (-1.0 / 20.0)) / math.pi  # fraction of the ramp at -1 dB
RAMP_LEAD_S = _RAMP_X_1DB * RAMP_S - 0.5 * BIT_PERIOD_S  # ramp start → start of bit 0 (7.8 µs)
NORMAL_BURST_DURATION_S = 2.0 * RAMP_LEAD_S + N_NORMAL_BURST_BITS * BIT_PERIOD_S
ACCESS_BURST_DURATION_S = 2.0 * RAMP_LEAD_S + N_ACCESS_BURST_BITS * BIT_PERIOD_S

# Logical channels whose bursts carry signalling: their stealing flags are 1 (TS 45.003 §4.1.5).
_CONTROL_CHANNELS = frozenset({"sacch", "sdcch", "facch"})

# TS 45.002 §6.2.3, Table 14: RNTABLE of the pseudo-random hopping sequence generator.
_RNTABLE = np.array(
    [48, 98, 63, 1, 36, 95, 78, 102, 94, 73, 0, 64, 25, 81, 76, 59, 124, 23, 104, 100,
     101, 47, 118, 85, 18, 56, 96, 86, 54, 2, 80, 34, 127, 13, 6, 89, 57, 103, 12, 74,
     55, 111, 75, 38, 109, 71, 112, 29, 11, 88, 87, 19, 3, 68, 110, 26, 33, 31, 8, 45,
     82, 58, 40, 107, 32, 5, 106, 92, 62, 67, 77, 108, 122, 37, 60, 66, 121, 42, 51, 126,
     117, 114, 4, 90, 43, 52, 53, 113, 120, 72, 16, 49, 7, 79, 119, 61, 22, 84, 9, 97,
     91, 15, 21, 24, 46, 39, 93, 105, 65, 70, 125, 99, 17, 123],
    dtype=np.int64,
)

# TS 44.018 §3.3.1.1.2, Table 3.3.1.1.2.1: S (RACH slots) per Tx-integer T.
_RACH_S = {
    **dict.fromkeys((3, 8, 14, 50), (55, 41)),
    **dict.fromkeys((4, 9, 16), (76, 52)),
    **dict.fromkeys((5, 10, 20), (109, 58)),
    **dict.fromkeys((6, 11, 25), (163, 86)),
    **dict.fromkeys((7, 12, 32), (217, 115)),
}  # value: (S for a non-combined CCCH, S for a CCCH combined with SDCCH/4)
# Uplink RACH frames (FN mod 51) of a combined CCCH/SDCCH/4 timeslot 0 (TS 45.002 §7, Table 5).
_COMBINED_RACH_FRAMES = np.array([4, 5, *range(14, 37), 45, 46], dtype=np.int64)

# TS 45.008 §8.3: frames (FN mod 104) a TCH/F sends even during DTX silence (the SID frame).
_TCH_F_SID_FRAMES = np.arange(52, 60, dtype=np.int64)
TALKSPURT_MEAN_S = 1.0  # conversational speech (Brady's on-off model): ~1 s talk spurts
PAUSE_MEAN_S = 1.5  # and somewhat longer pauses, i.e. ~40 % voice activity

_GMSK_WINDOW_BITS = 3  # the BT = 0.3 frequency pulse is < 1e-10 beyond ±3.5 bits of its bit


# ---------------------------------------------------------------------------------------
# Channel numbers


def uplink_freq_hz(arfcn: int) -> int:
    """Uplink carrier of ``arfcn`` in Hz (TS 45.005 §2).

    P-GSM 1–124 and E-GSM 0: 890.0 + 0.2·n MHz; E-GSM 975–1023 and R-GSM 955–1023:
    890.0 + 0.2·(n − 1024) MHz; DCS-1800 512–885: 1710.2 + 0.2·(n − 512) MHz. Numbers
    512–810 are read as DCS-1800 (PCS-1900 reuses them, but its uplink is out of an
    RTL-SDR's reach). Anything else raises :class:`InputError` (a ``ValueError``).
    """
    return _carrier_hz(_check_arfcn(arfcn))


def _carrier_hz(n: int) -> int:
    """:func:`uplink_freq_hz` of a valid channel number, without the argument checks."""
    if 0 <= n <= 124:
        return 890_000_000 + 200_000 * n
    if 955 <= n <= 1023:
        return 890_000_000 + 200_000 * (n - 1024)
    return 1_710_200_000 + 200_000 * (n - 512)


def downlink_freq_hz(arfcn: int) -> int:
    """Downlink carrier of ``arfcn`` in Hz: 45 MHz above the uplink at 900 MHz, 95 MHz at 1800."""
    uplink = uplink_freq_hz(arfcn)
    return uplink + (95_000_000 if uplink >= 1_710_000_000 else 45_000_000)


def arfcn_for_uplink_freq_hz(freq_hz: float, tolerance_hz: float = 50e3) -> int | None:
    """The ARFCN whose uplink carrier lies within ``tolerance_hz`` of ``freq_hz``, else None."""
    if 876.1e6 <= freq_hz <= 914.9e6:
        n = round((freq_hz - 890e6) / 200e3)
        arfcn = n if n >= 0 else n + 1024
    elif 1710.1e6 <= freq_hz <= 1784.9e6:
        arfcn = round((freq_hz - 1710.2e6) / 200e3) + 512
    else:
        return None
    # called for every burst: the checks of uplink_freq_hz are the line before
    if not _is_valid_arfcn(arfcn) or abs(_carrier_hz(arfcn) - freq_hz) > tolerance_hz:
        return None
    return arfcn


def _is_valid_arfcn(n: int) -> bool:
    return 0 <= n <= 124 or 512 <= n <= 885 or 955 <= n <= 1023


def _check_arfcn(arfcn: Any, field: str = "arfcn") -> int:
    if isinstance(arfcn, bool) or not isinstance(arfcn, int | np.integer):
        raise InputError(None, field, f"an ARFCN is an integer, not {arfcn!r}")
    n = int(arfcn)
    if not _is_valid_arfcn(n):
        raise InputError(
            None, field,
            f"ARFCN {n} is not a GSM-900 (0-124, 955-1023) or DCS-1800 (512-885) channel",
        )
    return n


def _check_range(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not low <= int(value) <= high:
        raise InputError(None, field, f"must be an integer in {low}..{high}, not {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------
# Burst bits


def normal_burst_bits(rng: np.random.Generator, tsc: int = 0, stealing: int = 0) -> BitArray:
    """The 148 bits of a normal burst (TS 45.002 §5.2.3): random data around training sequence ``tsc``.

    ``stealing`` is the value of both stealing flags: 0 for speech, 1 for signalling.
    """
    tsc = _check_range(tsc, "tsc", 0, 7)
    bits = np.zeros(N_NORMAL_BURST_BITS, dtype=np.uint8)
    data = rng.integers(0, 2, size=114, dtype=np.uint8)
    bits[3:60] = data[:57]
    bits[60] = bits[87] = 1 if stealing else 0
    bits[TSC_FIRST_BIT:TSC_FIRST_BIT + 26] = TRAINING_SEQUENCES[tsc]
    bits[88:145] = data[57:]
    return bits


def access_burst_bits(rng: np.random.Generator) -> BitArray:
    """The 88 bits of an access burst (TS 45.002 §5.2.7): extended tail, sync TS0, 36 coded bits, tail."""
    bits = np.zeros(N_ACCESS_BURST_BITS, dtype=np.uint8)
    bits[:8] = ACCESS_EXTENDED_TAIL_BITS
    bits[ACCESS_SYNC_FIRST_BIT:ACCESS_SYNC_FIRST_BIT + 41] = ACCESS_SYNC_BITS
    bits[49:85] = rng.integers(0, 2, size=36, dtype=np.uint8)
    return bits


# ---------------------------------------------------------------------------------------
# GMSK


def gmsk_phase_integral(t_s: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """q(t): the integral of the GMSK frequency pulse g of TS 45.004 §2.4, rising from 0 to 1.

    g(t) = h(t) * rect(t/T) with h a Gaussian of standard deviation σ = δ·T,
    δ = √(ln 2)/(2π·BT); ``t_s`` is measured from the centre of the bit. Closed form:
    q(t) = 1/2 + [F(t + T/2) − F(t − T/2)]/(2T), F(x) = x·erf(x/(√2σ)) + σ√(2/π)·e^(−x²/2σ²).
    """
    t = np.asarray(t_s, dtype=np.float64) / BIT_PERIOD_S  # in bits, so T = 1
    sigma = math.sqrt(math.log(2.0)) / (2.0 * math.pi * BT)

    def antiderivative(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return x * erf(x / (math.sqrt(2.0) * sigma)) + sigma * math.sqrt(2.0 / math.pi) * np.exp(
            -(x * x) / (2.0 * sigma * sigma)
        )

    return 0.5 + 0.5 * (antiderivative(t + 0.5) - antiderivative(t - 0.5))


@functools.lru_cache(maxsize=32)
def _gmsk_geometry(
    sample_rate_hz: float, n_samples: int, first_bit_s: float
) -> tuple[int, npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Where each sample falls among the bits, and the pulse integrals it needs.

    Returns ``(n_pad_before, bit_index, q)``: ``bit_index`` (n_samples,) is the padded index
    of the bit interval holding each sample and ``q`` (n_samples, 2W+1) the values
    q(t_k − centre of bit (index + j)) for j = −W..W. It depends only on the timing, so one
    table serves every burst of a kind at a sample rate: each burst then costs a gather.
    """
    w = _GMSK_WINDOW_BITS
    t_bits = np.arange(n_samples, dtype=np.float64) / (sample_rate_hz * BIT_PERIOD_S) - first_bit_s / BIT_PERIOD_S
    interval = np.floor(t_bits).astype(np.int64)
    n_pad_before = max(0, -int(interval.min(initial=0))) + w + 1
    offsets = np.arange(-w, w + 1, dtype=np.int64)
    centres = interval[:, None] + offsets[None, :] + 0.5
    q = gmsk_phase_integral((t_bits[:, None] - centres) * BIT_PERIOD_S)
    index = interval + n_pad_before
    index.setflags(write=False)
    q.setflags(write=False)
    return n_pad_before, index, q


def gmsk_phase_rad(
    bits: npt.ArrayLike, sample_rate_hz: float, n_samples: int, first_bit_s: float
) -> npt.NDArray[np.float64]:
    """Carrier phase (radians) of GMSK-modulated ``bits`` at ``n_samples`` sample instants k/fs.

    Bit 0 starts ``first_bit_s`` after sample 0. TS 45.004 §2: the bits are differentially
    encoded (d̂ᵢ = dᵢ ⊕ dᵢ₋₁, αᵢ = 1 − 2d̂ᵢ) with dummy bits d = 1 before and after the burst
    (§2.2), and φ(t) = Σᵢ αᵢ·(π/2)·q(t − centre of bit i): each bit turns the phase by ±π/2.
    Bits more than W intervals in the past contribute their full ±π/2 (a cumulative sum),
    the 2W+1 nearest ones their partial q, all vectorized over samples.
    """
    data = np.asarray(bits, dtype=np.uint8)
    n_pad_before, index, q = _gmsk_geometry(float(sample_rate_hz), int(n_samples), float(first_bit_s))
    w = _GMSK_WINDOW_BITS
    n_padded = max(int(index.max(initial=0)) + w + 2, n_pad_before + data.size + w + 1)
    padded = np.ones(n_padded, dtype=np.uint8)
    padded[n_pad_before:n_pad_before + data.size] = data
    encoded = padded ^ np.concatenate(([1], padded[:-1])).astype(np.uint8)
    alpha = 1.0 - 2.0 * encoded.astype(np.float64)
    completed = np.concatenate(([0.0], np.cumsum(alpha)))  # completed[p] = sum of alpha[:p]
    offsets = np.arange(-w, w + 1, dtype=np.int64)
    partial = np.einsum("kj,kj->k", alpha[index[:, None] + offsets[None, :]], q)
    return (0.5 * np.pi) * (completed[index - w] + partial)


def burst_envelope(n_samples: int, sample_rate_hz: float, n_bits: int) -> npt.NDArray[np.float64]:
    """Amplitude vs time of a burst of ``n_bits`` whose ramp-up starts at sample 0 (module docstring)."""
    t = np.arange(n_samples, dtype=np.float64) / sample_rate_hz
    rise = np.clip(t / RAMP_S, 0.0, 1.0)
    fall = np.clip((2.0 * RAMP_LEAD_S + n_bits * BIT_PERIOD_S - t) / RAMP_S, 0.0, 1.0)
    return 0.5 * (1.0 - np.cos(np.pi * np.minimum(rise, fall)))


def modulate(bits: npt.ArrayLike, sample_rate_hz: float, offset_hz: float = 0.0) -> ComplexArray:
    """A complete burst from its bits: ramps, GMSK, shifted by ``offset_hz`` (complex64).

    ``ceil((2·RAMP_LEAD_S + n_bits·T)·fs)`` samples; the constant-envelope part has |x| = 1.
    Content the shift would push beyond ±fs/2 is removed rather than aliased, as a
    receiver's anti-aliasing filter would.
    """
    data = np.asarray(bits, dtype=np.uint8)
    if sample_rate_hz <= 0:
        raise ValueError("sample_rate_hz must be positive")
    n_samples = math.ceil((2.0 * RAMP_LEAD_S + data.size * BIT_PERIOD_S) * sample_rate_hz)
    return _synthesize(data, sample_rate_hz, n_samples, offset_hz)


def _synthesize(bits: BitArray, sample_rate_hz: float, n_samples: int, offset_hz: float) -> ComplexArray:
    phase = gmsk_phase_rad(bits, sample_rate_hz, n_samples, RAMP_LEAD_S)
    if offset_hz:
        phase = phase + (2.0 * np.pi * offset_hz / sample_rate_hz) * np.arange(n_samples, dtype=np.float64)
    samples = burst_envelope(n_samples, sample_rate_hz, bits.size) * np.exp(1j * phase)
    if abs(offset_hz) + 0.4e6 > 0.5 * sample_rate_hz:
        samples = _remove_out_of_band(samples, sample_rate_hz, offset_hz)
    return samples.astype(np.complex64)


def _remove_out_of_band(samples: npt.NDArray[np.complex128], sample_rate_hz: float, offset_hz: float) -> npt.NDArray[np.complex128]:
    """Zero the DFT bins whose true frequency (offset + baseband frequency) lies beyond ±fs/2."""
    n = samples.size
    spectrum = np.fft.fft(samples)
    bin_hz = np.fft.fftfreq(n, d=1.0 / sample_rate_hz)
    baseband_hz = (bin_hz - offset_hz + 0.5 * sample_rate_hz) % sample_rate_hz - 0.5 * sample_rate_hz
    true_hz = offset_hz + baseband_hz
    spectrum[np.abs(true_hz) >= 0.5 * sample_rate_hz] = 0.0
    return np.fft.ifft(spectrum)


def render(burst: TxBurst, rng: np.random.Generator, sample_rate_hz: float, offset_hz: float) -> ComplexArray:
    """Complex baseband of a GSM burst (``gsm_normal`` or ``gsm_access``), shifted by ``offset_hz``.

    Returns ``ceil(burst.duration_s · sample_rate_hz)`` complex64 samples starting with the
    ramp-up (bit 0 at :data:`RAMP_LEAD_S`); |x| = 1 over the useful part, so the caller
    scales by the received power. ``params`` may give ``tsc`` (0..7, default 0) and
    ``channel`` (``sacch``/``sdcch``/``facch`` set the stealing flags); data bits come from ``rng``.
    """
    if sample_rate_hz <= 0:
        raise ValueError("sample_rate_hz must be positive")
    if burst.kind == "gsm_normal":
        channel = str(burst.params.get("channel", "tch"))
        bits = normal_burst_bits(rng, tsc=burst.params.get("tsc", 0), stealing=int(channel in _CONTROL_CHANNELS))
    elif burst.kind == "gsm_access":
        bits = access_burst_bits(rng)
    else:
        raise ValueError(f"unknown GSM burst kind {burst.kind!r} (gsm_normal or gsm_access)")
    n_samples = math.ceil(burst.duration_s * sample_rate_hz)
    return _synthesize(bits, float(sample_rate_hz), n_samples, float(offset_hz))


# ---------------------------------------------------------------------------------------
# Activity schedules


def hopping_index(fn: npt.ArrayLike, n_arfcns: int, hsn: int, maio: int = 0) -> npt.NDArray[np.int64]:
    """Mobile allocation index (MAI) used in TDMA frames ``fn``: TS 45.002 §6.2.3.

    HSN 0 is cyclic hopping; HSN 1..63 the pseudo-random sequence built from RNTABLE and
    the frame's T1, T2, T3.
    """
    frames = np.asarray(fn, dtype=np.int64)
    if n_arfcns < 1:
        raise InputError(None, "hopping_arfcns", "needs at least one ARFCN")
    hsn = _check_range(hsn, "hsn", 0, 63)
    maio = _check_range(maio, "maio", 0, n_arfcns - 1)
    if hsn == 0:
        return (frames + maio) % n_arfcns
    t1 = frames // (26 * 51)
    t2 = frames % 26
    t3 = frames % 51
    mask = (1 << n_arfcns.bit_length()) - 1  # 2^NBIN - 1, NBIN = floor(log2(N)) + 1
    m = t2 + _RNTABLE[(hsn ^ (t1 % 64)) + t3]
    m_prime = m & mask
    s = np.where(m_prime < n_arfcns, m_prime, (m_prime + (t3 & mask)) % n_arfcns)
    return (s + maio) % n_arfcns


def _normal_burst(t_start_s: float, arfcn: int, timeslot: int, tsc: int, fn: int, channel: str,
                  session: str) -> TxBurst:
    return TxBurst(
        t_start_s=t_start_s,
        duration_s=NORMAL_BURST_DURATION_S,
        freq_hz=float(uplink_freq_hz(arfcn)),
        bandwidth_hz=BANDWIDTH_HZ,
        tech="gsm",
        kind="gsm_normal",
        params={"arfcn": arfcn, "timeslot": timeslot, "tsc": tsc, "fn": fn, "channel": channel,
                "session": session},
    )


def _talking(n_frames: int, rng: np.random.Generator) -> npt.NDArray[np.bool_]:
    """Voice activity per TDMA frame: alternating exponential talk spurts and pauses."""
    talking = np.zeros(n_frames, dtype=bool)
    state = bool(rng.random() < TALKSPURT_MEAN_S / (TALKSPURT_MEAN_S + PAUSE_MEAN_S))
    frame = 0
    while frame < n_frames:  # a loop over talk spurts, not samples
        mean_s = TALKSPURT_MEAN_S if state else PAUSE_MEAN_S
        length = max(1, round(rng.exponential(mean_s) / TDMA_FRAME_S))
        talking[frame:frame + length] = state
        frame += length
        state = not state
    return talking


def call_bursts(
    t0_s: float,
    duration_s: float,
    arfcn: int,
    timeslot: int,
    rng: np.random.Generator,
    *,
    tsc: int = 0,
    dtx: bool = False,
    hopping_arfcns: Sequence[int] | None = None,
    hsn: int | None = None,
    maio: int = 0,
    session: str = "call",
) -> list[TxBurst]:
    """A voice call on a full-rate traffic channel (TCH/F + SACCH/TF) from ``t0_s`` for ``duration_s``.

    TS 45.002 §7 Table 1: in each 26-frame multiframe the phone sends a normal burst in
    its timeslot in frames 0–11 and 13–24 (traffic), in frame 12 (SACCH, always sent) and
    nothing in frame 25 (idle, used to read neighbour cells): 25 bursts every 120 ms,
    24 of them traffic. With ``dtx`` (TS 45.008 §8.3) the traffic bursts are sent only
    during talk spurts; in pauses only the SACCH and the SID frame (FN mod 104 = 52..59)
    remain, 12 bursts every 480 ms. ``hopping_arfcns`` (the mobile allocation) makes the
    carrier hop per TS 45.002 §6.2.3 with ``hsn`` (0 cyclic; None draws one from ``rng``)
    and ``maio``; ``arfcn`` is then only the channel the call was set up on. The frame
    number of the first frame is drawn from ``rng`` (it sets the hopping phase).
    """
    _check_arfcn(arfcn)
    timeslot = _check_range(timeslot, "timeslot", 0, N_TIMESLOTS - 1)
    tsc = _check_range(tsc, "tsc", 0, 7)
    if not duration_s >= 0:
        raise InputError(None, "duration_s", f"must be >= 0, not {duration_s!r}")
    fn0 = int(rng.integers(0, HYPERFRAME_FRAMES))
    n_frames = math.ceil((duration_s - timeslot * TIMESLOT_S) / TDMA_FRAME_S) if duration_s > timeslot * TIMESLOT_S else 0
    offsets = np.arange(n_frames, dtype=np.int64)
    fn = (fn0 + offsets) % HYPERFRAME_FRAMES
    position = fn % 26
    sacch = position == 12
    traffic = (position != 12) & (position != 25)
    if dtx:
        traffic &= _talking(n_frames, rng) | np.isin(fn % 104, _TCH_F_SID_FRAMES)
    sent = sacch | traffic
    if hopping_arfcns:
        allocation = sorted({_check_arfcn(a, "hopping_arfcns") for a in hopping_arfcns})
        chosen_hsn = int(rng.integers(0, 64)) if hsn is None else hsn
        arfcns = np.asarray(allocation)[hopping_index(fn, len(allocation), chosen_hsn, maio)]
    else:
        arfcns = np.full(n_frames, arfcn)
    bursts = []
    for i in np.flatnonzero(sent):  # one record per burst
        bursts.append(_normal_burst(
            t0_s + float(i) * TDMA_FRAME_S + timeslot * TIMESLOT_S, int(arfcns[i]), timeslot, tsc,
            int(fn[i]), "sacch" if sacch[i] else "tch", session,
        ))
    return bursts


def rach_bursts(
    t0_s: float,
    arfcn: int,
    rng: np.random.Generator,
    n: int = 2,
    *,
    tx_integer: int = 10,
    combined_ccch: bool = False,
    bsic: int | None = None,
    session: str = "rach",
) -> list[TxBurst]:
    """``n`` channel requests (access bursts) on the RACH of BCCH carrier ``arfcn``, timeslot 0.

    TS 44.018 §3.3.1.1.2: the first goes out after a random number of RACH slots drawn from
    {0, …, max(T, 8) − 1}, each retry S + {0, …, T − 1} slots after the previous one
    (T = ``tx_integer``, S from Table 3.3.1.1.2.1). Every uplink frame of timeslot 0 is a
    RACH slot on a non-combined CCCH; 27 of 51 are with ``combined_ccch`` (SDCCH/4).
    ``bsic`` (0..63, drawn when None) only labels the bursts: the 36 coded bits are random.
    """
    _check_arfcn(arfcn)
    if tx_integer not in _RACH_S:
        raise InputError(None, "tx_integer", f"must be one of {sorted(_RACH_S)}, not {tx_integer!r}")
    if not isinstance(n, int | np.integer) or n < 0:
        raise InputError(None, "n", f"must be a count >= 0, not {n!r}")
    bsic = int(rng.integers(0, 64)) if bsic is None else _check_range(bsic, "bsic", 0, 63)
    s_slots = _RACH_S[tx_integer][1 if combined_ccch else 0]
    gaps = np.concatenate((
        rng.integers(0, max(tx_integer, 8), size=min(n, 1)),
        s_slots + rng.integers(0, tx_integer, size=max(n - 1, 0)),
    ))
    slot_numbers = np.cumsum(gaps)  # 0 = the first RACH slot at or after t0_s
    fn0 = int(rng.integers(0, HYPERFRAME_FRAMES))
    if combined_ccch:
        # RACH slots in frame order from fn0 onwards: slot k sits in multiframe k // 27.
        first = int(np.searchsorted(_COMBINED_RACH_FRAMES, fn0 % 51))
        k = slot_numbers + first
        frame_offsets = (k // 27) * 51 + _COMBINED_RACH_FRAMES[k % 27] - fn0 % 51
    else:
        frame_offsets = slot_numbers
    bursts = []
    for offset in frame_offsets:  # one record per burst
        fn = (fn0 + int(offset)) % HYPERFRAME_FRAMES
        bursts.append(TxBurst(
            t_start_s=t0_s + int(offset) * TDMA_FRAME_S,
            duration_s=ACCESS_BURST_DURATION_S,
            freq_hz=float(uplink_freq_hz(arfcn)),
            bandwidth_hz=BANDWIDTH_HZ,
            tech="gsm",
            kind="gsm_access",
            params={"arfcn": arfcn, "timeslot": 0, "bsic": bsic, "fn": fn, "channel": "rach",
                    "session": session},
        ))
    return bursts


def sdcch_bursts(
    t0_s: float,
    arfcn: int,
    timeslot: int,
    rng: np.random.Generator,
    n_messages: int = 12,
    *,
    subchannel: int | None = None,
    tsc: int = 0,
    session: str = "sdcch",
) -> list[TxBurst]:
    """A short dedicated exchange (SMS, location update) on one SDCCH/8 sub-channel.

    TS 45.002 §7 Table 4: on the uplink, sub-channel k owns frames 15+4k … 18+4k of every
    51-frame multiframe (235.4 ms) — four consecutive bursts, one LAPDm frame — and its
    SACCH/8 block four frames every 102 (uplink = downlink frame 32+4·(k mod 4) of
    multiframe k div 4, plus 15). In dedicated mode the phone fills every block it owns,
    so the session lasts ``n_messages`` SDCCH blocks (12 ≈ 2.8 s, typical of a location
    update; an SMS takes ~15–25) with the SACCH blocks that fall inside it.
    ``subchannel`` 0..7 is drawn from ``rng`` when None.
    """
    _check_arfcn(arfcn)
    timeslot = _check_range(timeslot, "timeslot", 0, N_TIMESLOTS - 1)
    tsc = _check_range(tsc, "tsc", 0, 7)
    if not isinstance(n_messages, int | np.integer) or n_messages < 0:
        raise InputError(None, "n_messages", f"must be a count >= 0, not {n_messages!r}")
    k = int(rng.integers(0, 8)) if subchannel is None else _check_range(subchannel, "subchannel", 0, 7)
    fn0 = int(rng.integers(0, HYPERFRAME_FRAMES))
    if n_messages == 0:
        return []
    # Frames (offset from fn0) of the first SDCCH block at or after fn0, then one a multiframe.
    first_block = (15 + 4 * k - fn0) % 51
    block_offsets = first_block + 51 * np.arange(n_messages, dtype=np.int64)
    sdcch = (block_offsets[:, None] + np.arange(4)[None, :]).ravel()
    end = int(sdcch[-1]) + 1
    sacch_start = (51 * (k // 4) + 32 + 4 * (k % 4) + 15) % 102
    first_sacch = int(sdcch[0]) + (sacch_start - fn0 - int(sdcch[0])) % 102
    sacch_blocks = np.arange(first_sacch, end - 3, 102, dtype=np.int64)  # whole blocks inside the session
    sacch = (sacch_blocks[:, None] + np.arange(4)[None, :]).ravel()
    frames = np.concatenate((sdcch, sacch))
    channels = np.array(["sdcch"] * sdcch.size + ["sacch"] * sacch.size)
    order = np.argsort(frames, kind="stable")
    bursts = []
    for i in order:  # one record per burst
        offset = int(frames[i])
        bursts.append(_normal_burst(
            t0_s + offset * TDMA_FRAME_S + timeslot * TIMESLOT_S, arfcn, timeslot, tsc,
            (fn0 + offset) % HYPERFRAME_FRAMES, str(channels[i]), session,
        ))
    return bursts
