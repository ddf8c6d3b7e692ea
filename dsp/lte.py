"""LTE uplink (TS 36.211) bursts: waveform synthesis and what a phone sends when.

A phone's LTE uplink is a set of time-frequency rectangles on a 1 ms subframe grid:

* ``lte_pusch`` — data: DFT-spread OFDM (SC-FDMA, §5.3.3) on ``n_rb`` contiguous
  resource blocks, DMRS in symbol 3 of each slot (§5.5.2), optional SRS in the last
  symbol (§5.5.3). Lasts a whole number of subframes.
* ``lte_pucch`` — control (ACK, CQI, scheduling request), §5.4: one RB at one carrier
  edge in slot 0 and the opposite edge in slot 1 (§5.4.3).
* ``lte_srs`` — sounding: the last SC-FDMA symbol of a subframe (71.4 µs), comb 2.
* ``lte_prach`` — random access preamble format 0, §5.7: an 839-point Zadoff-Chu
  sequence on 1.25 kHz subcarriers, 6 RB (1.08 MHz) wide, 903 µs long.

Conventions every caller relies on:

* ``TxBurst.freq_hz``/``bandwidth_hz`` describe the band the *whole* burst occupies
  (the allocation, not the carrier), so a burst is one rectangle in time and frequency.
  The schedules therefore emit PUCCH as one burst per slot (``params["slot"]`` 0 or 1,
  0.5 ms, the RB it hops to); a whole-subframe ``lte_pucch`` burst (no ``slot``) is
  also rendered, and then its band is the carrier's (both edges), see :func:`pucch_burst`.
* Unit power refers to the whole burst: :func:`render` returns samples whose mean power
  over the transmitted part is the share of the burst's energy that falls inside the
  receiver band (1 when the burst is fully in band, 0.3 when 30 % of its resource
  elements are). Only subcarriers inside ``±sample_rate_hz/2`` are synthesized: a
  20 MHz carrier is never built to show 2.4 MHz of it.
* ``power_offset_db`` models open-loop power control at a constant power spectral
  density (TS 36.213 §5.1): a burst on ``n`` RBs is ``10·log10(n/6)`` dB below the
  phone's transmit power, never above it.

Synthesis evaluates the continuous-time signal of §5.6 (with the +Δf/2 uplink shift)
at the receiver's sample instants: when the sample rate is a multiple of the
subcarrier spacing (2.4 MS/s = 160 × 15 kHz) each symbol is one inverse FFT whose
fractional start is a phase ramp, so no resampling is needed; other rates are
synthesized at 1.92·2^k MS/s and resampled (``scipy.signal.resample_poly``). Symbols
are shaped by raised-cosine windowing within the cyclic prefix (WOLA, 144·Ts), as phone
transmitters do to keep their emissions in the allocation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import signal

from dsp.errors import InputError
from dsp.iq import ComplexArray
from dsp.waveform import TxBurst

# --- numerology (TS 36.211 §4, §5.6) --------------------------------------------------
TS_RATE_HZ = 30.72e6  # 1/Ts: every LTE duration is an integer number of Ts
SUBCARRIER_SPACING_HZ = 15_000.0
N_SC_PER_RB = 12
RB_BANDWIDTH_HZ = 180_000.0
SUBFRAME_S = 1e-3
SLOT_S = 0.5e-3
N_SYMBOLS_PER_SLOT = 7
N_SYMBOLS_PER_SUBFRAME = 14
USEFUL_TS = 2048
CP_FIRST_TS = 160  # normal cyclic prefix, symbol 0 of a slot
CP_OTHER_TS = 144
WOLA_RAMP_TS = 144  # transmit windowing overlap, within the cyclic prefix
SRS_SYMBOL_TS = USEFUL_TS + CP_OTHER_TS
SRS_SYMBOL_S = SRS_SYMBOL_TS / TS_RATE_HZ  # 71.35 µs

PRACH_N_ZC = 839
PRACH_SPACING_HZ = 1_250.0
PRACH_CP_TS = 3168
PRACH_SEQUENCE_TS = 24576
PRACH_DURATION_S = (PRACH_CP_TS + PRACH_SEQUENCE_TS) / TS_RATE_HZ  # 903.1 µs, guard not sent
PRACH_N_RB = 6
PRACH_BANDWIDTH_HZ = PRACH_N_RB * RB_BANDWIDTH_HZ

CARRIER_N_RB = (6, 15, 25, 50, 75, 100)  # 1.4, 3, 5, 10, 15, 20 MHz (TS 36.101 Table 5.6-1)
POWER_REFERENCE_N_RB = 6

# Uplink operating bands reachable by an RTL-SDR, (low, high) in Hz (TS 36.101 Table 5.5-1).
LTE_UPLINK_BANDS: dict[int, tuple[float, float]] = {
    28: (703e6, 748e6),
    20: (832e6, 862e6),
    8: (880e6, 915e6),
    3: (1710e6, 1785e6),
}
# TS 36.101 Table 5.7.3-1: F_UL_low (Hz), N_Offs-UL, last N_UL of the band.
_EARFCN_UL: dict[int, tuple[float, int, int]] = {
    3: (1710e6, 19200, 19949),
    8: (880e6, 21450, 21799),
    20: (832e6, 24150, 24449),
    28: (703e6, 27210, 27659),
}

_MODULATIONS = ("qpsk", "16qam", "64qam")

FloatArray64 = npt.NDArray[np.float64]


def earfcn_band(earfcn: int) -> int:
    """The operating band of an uplink EARFCN (bands 3, 8, 20, 28)."""
    for band, (_, n_offset, n_last) in _EARFCN_UL.items():
        if n_offset <= earfcn <= n_last:
            return band
    raise InputError(None, "earfcn", f"{earfcn} is not an uplink EARFCN of bands 3, 8, 20 or 28")


def earfcn_to_uplink_hz(earfcn: int) -> float:
    """Uplink carrier frequency of an EARFCN: F_UL = F_UL_low + 0.1 MHz·(N_UL − N_Offs-UL).

    TS 36.101 §5.7.3, bands 3, 8, 20 and 28. Returns Hz.
    """
    f_low_hz, n_offset, _ = _EARFCN_UL[earfcn_band(earfcn)]
    return f_low_hz + 100e3 * (earfcn - n_offset)


def allocation_center_hz(
    carrier_freq_hz: float, carrier_n_rb: int, start_rb: int, n_rb: int
) -> float:
    """Centre of the band occupied by RBs ``start_rb .. start_rb+n_rb-1`` of an LTE uplink carrier.

    The +Δf/2 shift of §5.6 makes a carrier's RBs symmetric about its centre frequency.
    """
    return carrier_freq_hz + (start_rb + n_rb / 2 - carrier_n_rb / 2) * RB_BANDWIDTH_HZ


def pc_offset_db(n_rb: int) -> float:
    """Power-control offset of an ``n_rb`` burst: constant PSD, capped at the phone's power."""
    return min(0.0, 10.0 * math.log10(n_rb / POWER_REFERENCE_N_RB))


def valid_pusch_n_rb(max_n_rb: int) -> list[int]:
    """Allocation sizes a DFT-spread PUSCH may use: 2^a·3^b·5^c RBs (§5.3.3), up to ``max_n_rb``."""
    out = []
    for n in range(1, max_n_rb + 1):
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            out.append(n)
    return out


# --- sequences ------------------------------------------------------------------------


def _phi_table(text: str) -> npt.NDArray[np.int8]:
    return np.array(
        [[int(v) for v in row.split()] for row in text.strip().splitlines()], dtype=np.int8
    )


# TS 36.211 Table 5.5.1.2-1: phi(n) of the 30 base-sequence groups for M_sc = 12.
_PHI_12 = _phi_table(
    """
    -1  1  3 -3  3  3  1  1  3  1 -3  3
     1  1  3  3  3 -1  1 -3 -3  1 -3  3
     1  1 -3 -3 -3 -1 -3 -3  1 -3  1 -1
    -1  1  1  1  1 -1 -3 -3  1 -3  3 -1
    -1  3  1 -1  1 -1 -3 -1  1 -1  1  3
     1 -3  3 -1 -1  1  1 -1 -1  3 -3  1
    -1  3 -3 -3 -3  3  1 -1  3  3 -3  1
    -3 -1 -1 -1  1 -3  3 -1  1 -3  3  1
     1 -3  3  1 -1 -1 -1  1  1  3 -1  1
     1 -3 -1  3  3 -1 -3  1  1  1  1  1
    -1  3 -1  1  1 -3 -3 -1 -3 -3  3 -1
     3  1 -1 -1  3  3 -3  1  3  1  3  3
     1 -3  1  1 -3  1  1  1 -3 -3 -3  1
     3  3 -3  3 -3  1  1  3 -1 -3  3  3
    -3  1 -1 -3 -1  3  1  3  3  3 -1  1
     3 -1  1 -3 -1 -1  1  1  3  1 -1 -3
     1  3  1 -1  1  3  3  3 -1 -1  3 -1
    -3  1  1  3 -3  3 -3 -3  3  1  3 -1
    -3  3  1  1 -3  1 -3 -3 -1 -1  1 -3
    -1  3  1  3  1 -1 -1  3 -3 -1 -3 -1
    -1 -3  1  1  1  1  3  1 -1  1 -3 -1
    -1  3 -1  1 -3 -3 -3 -3 -3  1 -1 -3
     1  1 -3 -3 -3 -3 -1  3 -3  1 -3  3
     1  1 -1 -3 -1 -3  1 -1  1  3 -1  1
     1  1  3  1  3  3 -1  1 -1 -3 -3  1
     1 -3  3  3  1  3  3  1 -3 -1 -1  3
     1  3 -3 -3  3 -3  1 -1 -1  3 -1 -3
    -3 -1 -3 -1 -3  3  1 -1  1  3 -3 -3
    -1  3 -3  3 -1  3  3 -3  3  3 -1 -1
     3 -3 -3 -1 -1 -3 -1  3 -3  3  1 -1
    """
)
# TS 36.211 Table 5.5.1.2-2: the same for M_sc = 24.
_PHI_24 = _phi_table(
    """
    -1  3  1 -3  3 -1  1  3 -3  3  1  3 -3  3  1  1 -1  1  3 -3  3 -3 -1 -3
    -3  3 -3 -3 -3  1 -3 -3  3 -1  1  1  1  3  1 -1  3 -3 -3  1  3  1  1 -3
     3 -1  3  3  1  1 -3  3  3  3  3  1 -1  3 -1  1  1 -1 -3 -1 -1  1  3  3
    -1 -3  1  1  3 -3  1  1 -3 -1 -1  1  3  1  3  1 -1  3  1  1 -3 -1 -3 -1
    -1 -1 -1 -3 -3 -1  1  1  3  3 -1  3 -1  1 -1 -3  1 -1 -3 -3  1 -3 -1 -1
    -3  1  1  3 -1  1  3  1 -3  1 -3  1  1 -1 -1  3 -1 -3  3 -3 -3 -3  1  1
     1  1 -1 -1  3 -3 -3  3 -3  1 -1 -1  1 -1  1  1 -1 -3 -1  1 -1  3 -1 -3
    -3  3  3 -1 -1 -3 -1  3  1  3  1  3  1  1 -1  3  1 -1  1  3 -3 -1 -1  1
    -3  1  3 -3  1 -1 -3  3 -3  3 -1 -1 -1 -1  1 -3 -3 -3  1 -3 -3 -3  1 -3
     1  1 -3  3  3 -1 -3 -1  3 -3  3  3  3 -1  1  1 -3  1 -1  1  1 -3  1  1
    -1  1 -3 -3  3 -1  3 -1 -1 -3 -3 -3 -1 -3 -3  1 -1  1  3  3 -1  1 -1  3
     1  3  3 -3 -3  1  3  1 -1 -3 -3 -3  3  3 -3  3  3 -1 -3  3 -1  1 -3  1
     1  3  3  1  1  1 -1 -1  1 -3  3 -1  1  1 -3  3  3 -1 -3  3 -3 -1 -3 -1
     3 -1 -1 -1 -1 -3 -1  3  3  1 -1  1  3  3  3 -1  1  1 -3  1  3 -1 -3  3
    -3 -3  3  1  3  1 -3  3  1  3  1  1  3  3 -1 -1 -3  1 -3 -1  3  1  1  3
    -1 -1  1 -3  1  3 -3  1 -1 -3 -1  3  1  3  1 -1 -3 -3 -1 -1 -3 -3 -3 -1
    -1 -3  3 -1 -1 -1 -1  1  1 -3  3  1  3  3  1 -1  1 -3  1 -3  1  1 -3 -1
     1  3 -1  3  3 -1 -3  1 -1 -3  3  3  3 -1  1  1  3 -1 -3 -1  3 -1 -1 -1
     1  1  1  1  1 -1  3 -1 -3  1  1  3 -3  1 -3 -1  1  1 -3 -3  3  1  1 -3
     1  3  3  1 -1 -3  3 -1  3  3  3 -3  1 -1  1 -1 -3 -1  1  3 -1  3 -3 -3
    -1 -3  3 -3 -3 -3 -1 -1 -3 -1 -3  3  1  3 -3 -1  3 -1  1 -1  3 -3  1 -1
    -3 -3  1  1 -1  1 -1  1 -1  3  1 -3 -1  1 -1  1 -1 -1  3  3 -3 -1  1 -3
    -3 -1 -3  3  1 -1 -3 -1 -3 -3  3 -3  3 -3 -1  1  3  1 -3  1  3  3 -1 -3
    -1 -1 -1 -1  3  3  3  1  3  3 -3  1  3 -1  3 -1  3  3 -3  3  1 -1  3  3
     1 -1  3  3 -1 -3  3 -3 -1 -1  3 -1  3 -1 -1  1  1  1  1 -1 -1 -3 -1  3
     1 -1  1 -1  3 -1  3  1  1 -1 -1 -3  1  1 -3  1  3 -3  1  1 -3 -3 -1 -1
    -3 -1  1  3  1  1 -3 -1 -1 -3  3 -3  3  1 -3  3 -3  1 -1  1 -3  1  1  1
    -1 -3  3  3  1  1  3 -1 -3 -1 -1 -1  3  1 -3 -3 -1  3 -3 -1 -3 -1 -3 -1
    -1 -3 -1 -1  1 -3 -1 -1  1 -1 -3  1  1 -3  1 -3 -3  3  1  1 -1  3 -1 -1
     1  1 -1 -1 -3 -1  3 -1  3 -1  1  3  1 -1  3  1  3 -3 -3  1 -1 -1  1  3
    """
)


def _largest_prime_below(n: int) -> int:
    for p in range(n - 1, 1, -1):
        if all(p % d for d in range(2, math.isqrt(p) + 1)):
            return p
    raise ValueError(f"no prime below {n}")


@lru_cache(maxsize=256)
def _base_sequence(length: int, group: int) -> npt.NDArray[np.complex128]:
    length_ok = length in (12, 24) or length >= 36
    if not length_ok or not 0 <= group < 30:
        raise ValueError(f"no uplink base sequence of length {length} in group {group}")
    if length == 12:
        return np.exp(1j * np.pi / 4 * _PHI_12[group])
    if length == 24:
        return np.exp(1j * np.pi / 4 * _PHI_24[group])
    n_zc = _largest_prime_below(length)
    q_bar = n_zc * (group + 1) / 31
    q = math.floor(q_bar + 0.5)  # base sequence number v = 0 (sequence hopping off)
    m = np.arange(length) % n_zc
    return np.exp(-1j * np.pi * q * m * (m + 1) / n_zc)


def base_sequence(length: int, group: int, alpha_rad: float = 0.0) -> npt.NDArray[np.complex128]:
    """Uplink reference-signal sequence r^(α)_{u,0}(n) = e^{jαn}·r̄_{u,0}(n), TS 36.211 §5.5.1.

    ``length`` is 12, 24 (computer-generated, Tables 5.5.1.2-1/2) or ≥ 36 (cyclically
    extended Zadoff-Chu); ``group`` is u in 0..29. Unit modulus.
    """
    return _base_sequence(length, group) * np.exp(1j * alpha_rad * np.arange(length))


def zadoff_chu(root: int, length: int, cyclic_shift: int = 0) -> npt.NDArray[np.complex128]:
    """x_u((n + C_v) mod N_ZC) with x_u(n) = exp(−jπ·u·n(n+1)/N_ZC), TS 36.211 §5.7.2 (odd N_ZC)."""
    n = (np.arange(length) + cyclic_shift) % length
    return np.exp(-1j * np.pi * root * n * (n + 1) / length)


def gold_sequence(c_init: npt.ArrayLike, length: int) -> npt.NDArray[np.uint8]:
    """Length-31 Gold sequence c(n), TS 36.211 §7.2 / TS 38.211 §5.2.1, one row per ``c_init``.

    x1 starts 1,0,…,0; x2 holds ``c_init``; N_C = 1600 outputs are skipped. The two
    shift registers advance 28 bits per numpy step (the feedback taps reach back 31
    bits), so a batch of initialisations costs ~(1600 + length)/28 vector operations.
    """
    inits = np.atleast_1d(np.asarray(c_init, dtype=np.int64))
    total = 1600 + length
    n_alloc = total + 31 + 28
    x1 = np.zeros(n_alloc, dtype=np.uint8)
    x1[0] = 1
    x2 = np.zeros((inits.size, n_alloc), dtype=np.uint8)
    x2[:, :31] = (inits[:, None] >> np.arange(31)) & 1
    n = 0
    while n + 31 < total:
        step = min(28, total - n - 31)
        x1[n + 31 : n + 31 + step] = x1[n + 3 : n + 3 + step] ^ x1[n : n + step]
        x2[:, n + 31 : n + 31 + step] = (
            x2[:, n + 3 : n + 3 + step]
            ^ x2[:, n + 2 : n + 2 + step]
            ^ x2[:, n + 1 : n + 1 + step]
            ^ x2[:, n : n + step]
        )
        n += step
    return x1[None, 1600:total] ^ x2[:, 1600:total]


def qam_symbols(
    rng: np.random.Generator, shape: tuple[int, ...], modulation: str
) -> npt.NDArray[np.complex64]:
    """Random unit-mean-power QPSK/16QAM/64QAM symbols (TS 36.211 §7.1 constellations)."""
    table = _constellation(modulation)
    return table[rng.integers(0, table.size, size=shape, dtype=np.uint8)]


@lru_cache(maxsize=8)
def _constellation(modulation: str) -> npt.NDArray[np.complex64]:
    bits_per_axis = {"qpsk": 1, "16qam": 2, "64qam": 3}[modulation]
    levels = np.arange(-(2**bits_per_axis) + 1, 2**bits_per_axis, 2, dtype=np.float64)
    points = (levels[:, None] + 1j * levels[None, :]).ravel()
    return (points / math.sqrt(np.mean(np.abs(points) ** 2))).astype(np.complex64)


def mix_fast(
    samples: npt.NDArray[np.complex64], offset_hz: float, sample_rate_hz: float
) -> ComplexArray:
    """``samples·e^{j2π·offset·n/fs}`` (phase 0 at n = 0) as a new complex64 array.

    The oscillator is built as an outer product of a block phase and an in-block
    table, so it costs one complex multiply per sample instead of one ``exp``.
    """
    n = samples.shape[0]
    if offset_hz == 0.0 or n == 0:
        return samples.astype(np.complex64, copy=True)
    block = 4096
    n_blocks = -(-n // block)
    step = offset_hz / sample_rate_hz
    inner = np.exp(2j * np.pi * np.mod(step * np.arange(block), 1.0))
    outer = np.exp(2j * np.pi * np.mod(step * block * np.arange(n_blocks), 1.0))
    lo = (outer[:, None] * inner[None, :]).astype(np.complex64).ravel()[:n]
    return (samples * lo).astype(np.complex64, copy=False)


# --- generic OFDM / SC-FDMA synthesis ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class GridChunk:
    """In-band resource elements of a run of symbols, and their energy accounting.

    ``values[s, j]`` is subcarrier ``k_lo + j`` of symbol ``s`` (shape
    ``(n_symbols, k_hi - k_lo + 1)``); ``energy_whole`` is Σ|a_k|² over *all* the
    symbol's subcarriers, in band or not, ``energy_inband`` over those in ``values``.
    """

    values: npt.NDArray[np.complex64]
    energy_whole: FloatArray64
    energy_inband: FloatArray64


# fill(first_symbol, end_symbol, k_lo, k_hi) -> GridChunk
GridFill = Callable[[int, int, int, int], GridChunk]


@dataclass(frozen=True, slots=True)
class OfdmPlan:
    """A burst as a sequence of OFDM symbols on a subcarrier grid, ready to synthesize.

    Subcarrier ``k`` sits at ``carrier_freq_hz + subcarrier0_offset_hz + k·spacing_hz``;
    symbol ``l`` has ``cp_ts[l]`` Ts of cyclic prefix and ``useful_ts`` Ts of body and
    follows symbol ``l-1`` without gap. ``occupied`` is the range of subcarriers the
    burst uses at all; ``active_s`` the transmitted span (the rest of the burst is silent).
    """

    carrier_freq_hz: float
    subcarrier0_offset_hz: float
    spacing_hz: float
    useful_ts: int
    cp_ts: npt.NDArray[np.int64]
    fill: GridFill
    occupied: tuple[int, int]
    active_s: float
    ramp_ts: int = WOLA_RAMP_TS


def zero_grid(n_symbols: int, k_lo: int, k_hi: int) -> GridChunk:
    return GridChunk(
        values=np.zeros((n_symbols, k_hi - k_lo + 1), dtype=np.complex64),
        energy_whole=np.zeros(n_symbols),
        energy_inband=np.zeros(n_symbols),
    )


def place(
    chunk: GridChunk,
    rows: npt.NDArray[np.intp],
    k_first: int,
    k_step: int,
    values: npt.ArrayLike,
    k_lo: int,
) -> None:
    """Write ``values`` (``(len(rows), m)``) to subcarriers ``k_first + k_step·i`` of ``rows``.

    Only the in-band columns are stored; the energy of all of them is booked.
    """
    vals = np.asarray(values)
    if rows.size == 0:
        return
    n_cols = chunk.values.shape[1]
    k = k_first + k_step * np.arange(vals.shape[1])
    sel = (k >= k_lo) & (k < k_lo + n_cols)
    power = np.square(vals.real, dtype=np.float32) + np.square(vals.imag, dtype=np.float32)
    chunk.energy_whole[rows] += power.sum(axis=1, dtype=np.float64)
    if sel.any():
        chunk.values[rows[:, None], (k[sel] - k_lo)[None, :]] = vals[:, sel]
        chunk.energy_inband[rows] += power[:, sel].sum(axis=1, dtype=np.float64)


_CHUNK_ELEMENTS = 1 << 20


def _modulate(
    plan: OfdmPlan,
    rate_hz: float,
    n_fft: int,
    k_lo: int,
    k_hi: int,
    m_center: int,
    n_samples: int,
) -> tuple[npt.NDArray[np.complex64], float, float]:
    """The plan's symbols at ``rate_hz`` (``n_fft = rate_hz/spacing_hz``), relative to subcarrier ``m_center``.

    Returns the samples and the time-weighted in-band and whole energies. Symbol ``l``
    is s_l(t) = Σ a_k·e^{j2π f_k (t − u_l)} (u_l: end of its cyclic prefix), evaluated
    at t = n/rate as an inverse FFT read cyclically from ⌊u_l·rate⌋, the fractional
    part of u_l·rate being a linear phase across the bins. Each symbol rises over the
    first ``ramp_ts`` of its cyclic prefix and is extended by a cyclic postfix that
    falls over the first ``ramp_ts`` of the next symbol's prefix (WOLA: raised-cosine
    edges that overlap-add to 1, the FFT window of every symbol left intact, so a
    receiver sees orthogonal subcarriers). Output samples are *gathered*: sample n belongs
    to the symbol whose extended start precedes it, and the previous symbol's fading
    tail is added on the few samples where they overlap.
    """
    cp_ts = plan.cp_ts.astype(np.int64)
    n_sym = cp_ts.size
    len_ts = cp_ts + plan.useful_ts
    start_ts = np.concatenate(([0], np.cumsum(len_ts)[:-1]))
    ramp_s = plan.ramp_ts / TS_RATE_HZ
    signed_bins = np.arange(k_lo, k_hi + 1) - m_center
    bins = signed_bins % n_fft
    f_center_rel_hz = plan.subcarrier0_offset_hz + m_center * plan.spacing_hz  # relative to carrier
    out = np.zeros(n_samples + 1, dtype=np.complex64)  # last element: sink for clipped samples
    e_inband = 0.0
    e_whole = 0.0
    per_chunk = max(1, _CHUNK_ELEMENTS // n_fft)
    for lo in range(0, n_sym, per_chunk):
        hi = min(n_sym, lo + per_chunk)
        n = hi - lo
        grid_chunk = plan.fill(lo, hi, k_lo, k_hi)
        dur_ts = len_ts[lo:hi].astype(np.float64)
        e_inband += float(grid_chunk.energy_inband @ dur_ts)
        e_whole += float(grid_chunk.energy_whole @ dur_ts)
        t_start = start_ts[lo:hi] / TS_RATE_HZ
        t_end = (start_ts[lo:hi] + len_ts[lo:hi]) / TS_RATE_HZ
        t_useful = (start_ts[lo:hi] + cp_ts[lo:hi]) / TS_RATE_HZ
        nu = t_useful * rate_hz
        nu_int = np.floor(nu).astype(np.int64)
        # Phase of each symbol: carrier-relative centre frequency times its useful start
        # (§5.6 references every symbol to its own start), and the fractional delay.
        frac, frac_index = np.unique(np.round(nu - nu_int, 12), return_inverse=True)
        delay = np.exp(-2j * np.pi * signed_bins[None, :] * (frac[:, None] / n_fft)).astype(
            np.complex64
        )
        row_phase = np.exp(-2j * np.pi * np.mod(f_center_rel_hz * t_useful, 1.0)).astype(
            np.complex64
        )
        grid = np.zeros((n, n_fft), dtype=np.complex64)
        grid[:, bins] = grid_chunk.values * delay[frac_index] * row_phase[:, None]
        body = np.fft.ifft(grid, axis=1, norm="forward").astype(np.complex64, copy=False).ravel()

        first = np.ceil(t_start * rate_hz - 1e-9).astype(np.int64)
        after = np.ceil(t_end * rate_hz - 1e-9).astype(np.int64)  # next symbol's first
        core = np.ceil((t_start + ramp_s) * rate_hz - 1e-9).astype(np.int64)
        end = np.ceil((t_end + ramp_s) * rate_hz - 1e-9).astype(np.int64)
        counts = after - first
        owner = np.repeat(np.arange(n), counts)
        positions = np.arange(first[0], after[-1])
        samples = body[owner * n_fft + (positions - nu_int[owner]) % n_fft]
        if plan.ramp_ts > 0:
            # rising edge of each symbol: its first (core - first) samples
            width = int((core - first).max())
            cols = np.arange(width)
            pos = first[:, None] + cols[None, :]
            inside = cols[None, :] < (core - first)[:, None]
            rise = np.clip((pos / rate_hz - t_start[:, None]) / ramp_s, 0.0, 1.0)
            rel = (pos - first[0])[inside]
            samples[rel] *= (np.sin(0.5 * np.pi * rise[inside]) ** 2).astype(np.float32)
            # falling tail of each symbol, over the next symbol's rising edge
            width = int((end - after).max())
            cols = np.arange(width)
            pos = after[:, None] + cols[None, :]
            inside = cols[None, :] < (end - after)[:, None]
            fall = np.clip((pos / rate_hz - t_end[:, None]) / ramp_s, 0.0, 1.0)
            rows = np.broadcast_to(np.arange(n)[:, None], pos.shape)[inside]
            tail = body[rows * n_fft + (pos[inside] - nu_int[rows]) % n_fft]
            tail *= (np.cos(0.5 * np.pi * fall[inside]) ** 2).astype(np.float32)
            tail_pos = pos[inside]
            tail_pos[(tail_pos < 0) | (tail_pos >= n_samples)] = n_samples
            out[tail_pos] += tail  # tails of different symbols never overlap
        a = max(0, int(first[0]))
        b = min(n_samples, int(after[-1]))
        if b > a:
            out[a:b] += samples[a - first[0] : b - first[0]]
    return out[:n_samples], e_inband, e_whole


def _native_fft_128(sample_rate_hz: float) -> int:
    n = 128
    while SUBCARRIER_SPACING_HZ * n < sample_rate_hz:
        n *= 2
    return n


def synthesize(
    plan: OfdmPlan, sample_rate_hz: float, rx_freq_hz: float, n_out: int
) -> ComplexArray:
    """Complex baseband of ``plan`` for a receiver at ``rx_freq_hz``, normalized per the module conventions."""
    zeros = np.zeros(n_out, dtype=np.complex64)
    f0 = plan.carrier_freq_hz + plan.subcarrier0_offset_hz
    half_band = sample_rate_hz / 2
    k_lo = max(plan.occupied[0], math.floor((rx_freq_hz - half_band - f0) / plan.spacing_hz) + 1)
    k_hi = min(plan.occupied[1], math.ceil((rx_freq_hz + half_band - f0) / plan.spacing_hz) - 1)
    if k_lo > k_hi or n_out == 0:
        return zeros
    m_center = round((rx_freq_hz - f0) / plan.spacing_hz)
    ratio = sample_rate_hz / plan.spacing_hz
    if abs(ratio - round(ratio)) < 1e-9 * ratio:
        rate_hz = sample_rate_hz
        resample: tuple[int, int] | None = None
    else:
        rate_hz = SUBCARRIER_SPACING_HZ * _native_fft_128(sample_rate_hz)
        frac = Fraction(sample_rate_hz / rate_hz).limit_denominator(1000)
        resample = (frac.numerator, frac.denominator)
    n_fft = round(rate_hz / plan.spacing_hz)
    n_native = n_out if resample is None else math.ceil(n_out * rate_hz / sample_rate_hz) + 1
    x, e_inband, e_whole = _modulate(plan, rate_hz, n_fft, k_lo, k_hi, m_center, n_native)
    if e_whole <= 0.0 or e_inband <= 0.0:
        return zeros
    if resample is not None:
        x = signal.resample_poly(x, resample[0], resample[1])[:n_out]
        if x.size < n_out:
            x = np.concatenate((x, np.zeros(n_out - x.size, dtype=x.dtype)))
    offset_hz = f0 + m_center * plan.spacing_hz - rx_freq_hz
    y = mix_fast(x.astype(np.complex64, copy=False), offset_hz, sample_rate_hz)
    n_active = max(1, min(n_out, math.ceil(plan.active_s * sample_rate_hz)))
    head = y[:n_active]
    power = float(np.mean(head.real.astype(np.float64) ** 2 + head.imag.astype(np.float64) ** 2))
    if power <= 0.0:
        return zeros
    y *= np.float32(math.sqrt((e_inband / e_whole) / power))
    return y


# --- parameters -------------------------------------------------------------------------


def param_int(burst: TxBurst, name: str, default: int | None, lo: int, hi: int) -> int:
    value = burst.params.get(name, default)
    if value is None:
        raise InputError(None, f"params.{name}", f"missing for {burst.kind}")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(None, f"params.{name}", f"expected an integer, got {value!r}")
    if not lo <= int(value) <= hi:
        raise InputError(None, f"params.{name}", f"{value} not in {lo}..{hi}")
    return int(value)


def _param_subframes(burst: TxBurst, name: str) -> set[int]:
    value = burst.params.get(name) or ()
    try:
        return {int(v) for v in value}
    except (TypeError, ValueError):
        raise InputError(None, f"params.{name}", "expected a list of subframe indices") from None


@dataclass(frozen=True, slots=True)
class _Carrier:
    freq_hz: float
    n_rb: int

    @property
    def n_sc(self) -> int:
        return self.n_rb * N_SC_PER_RB

    @property
    def subcarrier0_offset_hz(self) -> float:
        return (0.5 - self.n_sc / 2) * SUBCARRIER_SPACING_HZ


def _carrier(burst: TxBurst, default_n_rb: int) -> _Carrier:
    n_rb = param_int(burst, "carrier_n_rb", default_n_rb, 1, 110)
    freq = burst.params.get("carrier_freq_hz", burst.freq_hz)
    if not isinstance(freq, (int, float)) or not math.isfinite(freq):
        raise InputError(
            None, "params.carrier_freq_hz", f"expected a frequency in Hz, got {freq!r}"
        )
    return _Carrier(float(freq), n_rb)


def slot_cp_ts(n_slots: int) -> npt.NDArray[np.int64]:
    one = np.full(N_SYMBOLS_PER_SLOT, CP_OTHER_TS, dtype=np.int64)
    one[0] = CP_FIRST_TS
    return np.tile(one, n_slots)


def _n_subframes(burst: TxBurst) -> int:
    return max(1, math.ceil(burst.duration_s / SUBFRAME_S - 1e-6))


# --- PUSCH ------------------------------------------------------------------------------


def _pusch_plan(burst: TxBurst, rng: np.random.Generator) -> OfdmPlan:
    default_n_rb = max(1, round(burst.bandwidth_hz / RB_BANDWIDTH_HZ))
    carrier = _carrier(burst, default_n_rb)
    n_rb = param_int(burst, "n_rb", default_n_rb, 1, carrier.n_rb)
    if n_rb not in valid_pusch_n_rb(n_rb):
        raise InputError(None, "params.n_rb", f"{n_rb} RBs is not 2^a·3^b·5^c (TS 36.211 §5.3.3)")
    start_rb = param_int(burst, "start_rb", 0, 0, carrier.n_rb - n_rb)
    modulation = burst.params.get("modulation", "qpsk")
    if modulation not in _MODULATIONS:
        raise InputError(None, "params.modulation", f"expected one of {', '.join(_MODULATIONS)}")
    n_sf = _n_subframes(burst)
    srs_sf = _param_subframes(burst, "srs_subframes")
    if burst.params.get("srs") and not srs_sf:
        srs_sf = set(range(n_sf))
    shortened = _param_subframes(burst, "shortened_subframes") | srs_sf
    srs_n_rb = param_int(burst, "srs_n_rb", 4 * max(1, n_rb // 4), 4, carrier.n_rb) if srs_sf else 0
    if srs_sf and srs_n_rb % 4:
        raise InputError(
            None, "params.srs_n_rb", "SRS bandwidths are multiples of 4 RBs (§5.5.3.2)"
        )
    srs_start_rb = (
        param_int(burst, "srs_start_rb", start_rb, 0, carrier.n_rb - srs_n_rb) if srs_sf else 0
    )
    comb = param_int(burst, "srs_comb", 0, 0, 1)
    group = param_int(burst, "dmrs_group", int(rng.integers(30)), 0, 29)
    n_sc = n_rb * N_SC_PER_RB
    base = _base_sequence(n_sc, group)
    srs_len = srs_n_rb * N_SC_PER_RB // 2
    srs_base = _base_sequence(srs_len, group) if srs_sf else None
    k_alloc = start_rb * N_SC_PER_RB

    def fill(lo: int, hi: int, k_lo: int, k_hi: int) -> GridChunk:
        chunk = zero_grid(hi - lo, k_lo, k_hi)
        sym = np.arange(lo, hi)
        sf, sym_in_sf = np.divmod(sym, N_SYMBOLS_PER_SUBFRAME)
        last = sym_in_sf == N_SYMBOLS_PER_SUBFRAME - 1
        is_srs = last & np.isin(sf, list(srs_sf))
        is_empty = last & np.isin(sf, list(shortened))
        is_dmrs = (sym_in_sf % N_SYMBOLS_PER_SLOT) == 3
        rows = np.flatnonzero(~is_dmrs & ~is_empty)
        n_inband = min(k_hi, k_alloc + n_sc - 1) - max(k_lo, k_alloc) + 1
        if 2 * n_inband >= n_sc:
            data = qam_symbols(rng, (rows.size, n_sc), modulation)
            place(chunk, rows, k_alloc, 1, np.fft.fft(data, axis=1, norm="ortho"), k_lo)
        elif n_inband > 0 and rows.size:
            # A receiver sees under half of the allocation: its DFT outputs are, to the
            # central limit, independent unit-power complex Gaussians; draw just those
            # and book the rest of the symbol at its expected energy (one per RE).
            gauss = rng.standard_normal((rows.size, n_inband, 2), dtype=np.float32)
            values = gauss.view(np.complex64)[..., 0] * np.float32(math.sqrt(0.5))
            first = max(k_lo, k_alloc)
            chunk.values[rows[:, None], (first - k_lo + np.arange(n_inband))[None, :]] = values
            power = np.square(values.real) + np.square(values.imag)
            inband = power.sum(axis=1, dtype=np.float64)
            chunk.energy_inband[rows] += inband
            chunk.energy_whole[rows] += inband + (n_sc - n_inband)
        else:
            chunk.energy_whole[rows] += n_sc
        rows = np.flatnonzero(is_dmrs)
        alpha = 2 * np.pi * rng.integers(0, 12, size=rows.size) / 12
        place(
            chunk,
            rows,
            k_alloc,
            1,
            base[None, :] * np.exp(1j * alpha[:, None] * np.arange(n_sc)),
            k_lo,
        )
        rows = np.flatnonzero(is_srs)
        if rows.size and srs_base is not None:
            alpha = 2 * np.pi * rng.integers(0, 8, size=rows.size) / 8
            seq = (
                math.sqrt(2.0)
                * srs_base[None, :]
                * np.exp(1j * alpha[:, None] * np.arange(srs_len))
            )
            place(chunk, rows, srs_start_rb * N_SC_PER_RB + comb, 2, seq, k_lo)
        return chunk

    k_hi_alloc = k_alloc + n_sc - 1
    occupied = (k_alloc, k_hi_alloc)
    if srs_sf:
        occupied = (
            min(k_alloc, srs_start_rb * N_SC_PER_RB),
            max(k_hi_alloc, (srs_start_rb + srs_n_rb) * N_SC_PER_RB - 1),
        )
    return OfdmPlan(
        carrier_freq_hz=carrier.freq_hz,
        subcarrier0_offset_hz=carrier.subcarrier0_offset_hz,
        spacing_hz=SUBCARRIER_SPACING_HZ,
        useful_ts=USEFUL_TS,
        cp_ts=slot_cp_ts(2 * n_sf),
        fill=fill,
        occupied=occupied,
        active_s=burst.duration_s,
    )


# --- PUCCH ------------------------------------------------------------------------------

_PUCCH_DMRS = {"1": (2, 3, 4), "1a": (2, 3, 4), "1b": (2, 3, 4), "2": (1, 5)}
# TS 36.211 Table 5.4.1-2: orthogonal covers w(i) of the four data symbols (normal PUCCH).
_W4 = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, -1, -1, 1]], dtype=np.float64)
# Table 5.4.1-3 (shortened format, 3 data symbols): DFT covers.
_W3 = np.exp(2j * np.pi * np.outer(np.arange(3), np.arange(3)) / 3)


def pucch_rb(resource: int, slot: int, carrier_n_rb: int) -> int:
    """RB of PUCCH resource m in slot n_s (TS 36.211 §5.4.3): the two slots hop between edges."""
    if (resource + slot % 2) % 2 == 0:
        return resource // 2
    return carrier_n_rb - 1 - resource // 2


def _pucch_plan(burst: TxBurst, rng: np.random.Generator) -> OfdmPlan:
    carrier = _carrier(burst, max(1, round(burst.bandwidth_hz / RB_BANDWIDTH_HZ)))
    resource = param_int(burst, "resource", 0, 0, 2 * carrier.n_rb - 1)
    fmt = str(burst.params.get("pucch_format", "1a"))
    if fmt not in _PUCCH_DMRS:
        raise InputError(None, "params.pucch_format", f"expected one of {', '.join(_PUCCH_DMRS)}")
    slot_param = burst.params.get("slot")
    slots = [0, 1] if slot_param is None else [param_int(burst, "slot", None, 0, 1)]
    shortened = bool(burst.params.get("shortened", False)) and fmt != "2"
    group = param_int(burst, "dmrs_group", int(rng.integers(30)), 0, 29)
    base = _base_sequence(N_SC_PER_RB, group)
    n_sym = N_SYMBOLS_PER_SLOT * len(slots)
    rbs = [pucch_rb(resource, s, carrier.n_rb) for s in slots]

    def fill(lo: int, hi: int, k_lo: int, k_hi: int) -> GridChunk:
        chunk = zero_grid(hi - lo, k_lo, k_hi)
        for row, sym in enumerate(range(lo, hi)):
            slot_pos, sym_in_slot = divmod(sym, N_SYMBOLS_PER_SLOT)
            slot = slots[slot_pos]
            short = shortened and slot == 1
            if short and sym_in_slot == N_SYMBOLS_PER_SLOT - 1:
                continue
            if sym_in_slot in _PUCCH_DMRS[fmt]:
                coef = complex(np.exp(2j * np.pi * rng.integers(3) / 3))  # orthogonal cover w̄
            elif fmt == "2":
                coef = complex(qam_symbols(rng, (1,), "qpsk")[0])
            else:
                data_index = [0, 1, 5, 6].index(sym_in_slot)
                bit = 1.0 if fmt == "1" else float(rng.choice([-1.0, 1.0]))
                d0 = bit if fmt != "1b" else complex(qam_symbols(rng, (1,), "qpsk")[0])
                cover = _W3[1, min(data_index, 2)] if short else _W4[1, data_index]
                coef = d0 * cover
            alpha = 2 * np.pi * int(rng.integers(12)) / 12
            seq = coef * base * np.exp(1j * alpha * np.arange(N_SC_PER_RB))
            place(chunk, np.array([row]), rbs[slot_pos] * N_SC_PER_RB, 1, seq[None, :], k_lo)
        return chunk

    return OfdmPlan(
        carrier_freq_hz=carrier.freq_hz,
        subcarrier0_offset_hz=carrier.subcarrier0_offset_hz,
        spacing_hz=SUBCARRIER_SPACING_HZ,
        useful_ts=USEFUL_TS,
        cp_ts=slot_cp_ts(len(slots)),
        fill=fill,
        occupied=(min(rbs) * N_SC_PER_RB, (max(rbs) + 1) * N_SC_PER_RB - 1),
        active_s=min(burst.duration_s, n_sym / N_SYMBOLS_PER_SLOT * SLOT_S),
    )


# --- SRS --------------------------------------------------------------------------------


def _srs_plan(burst: TxBurst, rng: np.random.Generator) -> OfdmPlan:
    default_n_rb = max(4, 4 * round(burst.bandwidth_hz / RB_BANDWIDTH_HZ / 4))
    carrier = _carrier(burst, default_n_rb)
    srs_n_rb = param_int(burst, "srs_n_rb", default_n_rb, 4, carrier.n_rb)
    if srs_n_rb % 4:
        raise InputError(
            None, "params.srs_n_rb", "SRS bandwidths are multiples of 4 RBs (§5.5.3.2)"
        )
    start_rb = param_int(burst, "srs_start_rb", 0, 0, carrier.n_rb - srs_n_rb)
    comb = param_int(burst, "srs_comb", 0, 0, 1)
    cyclic_shift = param_int(burst, "cyclic_shift", int(rng.integers(8)), 0, 7)
    group = param_int(burst, "dmrs_group", int(rng.integers(30)), 0, 29)
    length = srs_n_rb * N_SC_PER_RB // 2
    seq = math.sqrt(2.0) * base_sequence(length, group, 2 * np.pi * cyclic_shift / 8)
    k_first = start_rb * N_SC_PER_RB + comb

    def fill(lo: int, hi: int, k_lo: int, k_hi: int) -> GridChunk:
        chunk = zero_grid(hi - lo, k_lo, k_hi)
        place(chunk, np.arange(hi - lo), k_first, 2, np.broadcast_to(seq, (hi - lo, length)), k_lo)
        return chunk

    n_sym = max(1, round(burst.duration_s / SRS_SYMBOL_S))
    return OfdmPlan(
        carrier_freq_hz=carrier.freq_hz,
        subcarrier0_offset_hz=carrier.subcarrier0_offset_hz,
        spacing_hz=SUBCARRIER_SPACING_HZ,
        useful_ts=USEFUL_TS,
        cp_ts=np.full(n_sym, CP_OTHER_TS, dtype=np.int64),
        fill=fill,
        occupied=(k_first, k_first + 2 * (length - 1)),
        active_s=burst.duration_s,
    )


# --- PRACH ------------------------------------------------------------------------------


def prach_plan(
    carrier_freq_hz: float,
    block_low_offset_hz: float,
    root: int,
    cyclic_shift: int,
    active_s: float,
) -> OfdmPlan:
    """Long preamble format 0 (TS 36.211 §5.7; TS 38.211 §6.3.3.1 uses the same one).

    The 839 values y(k) = DFT of x_{u,v} sit on 1.25 kHz subcarriers k = 0..838 at
    ``block_low_offset_hz + (k + 7)·1.25 kHz`` from the carrier (φ = 7, so the sequence
    is centred in its 6-RB block); ``block_low_offset_hz`` is where subcarrier 0 of
    the block would be with the grid's half-subcarrier shift included.
    """
    y = np.fft.fft(zadoff_chu(root, PRACH_N_ZC, cyclic_shift), norm="ortho")

    def fill(lo: int, hi: int, k_lo: int, k_hi: int) -> GridChunk:
        chunk = zero_grid(hi - lo, k_lo, k_hi)
        place(chunk, np.arange(hi - lo), 0, 1, np.broadcast_to(y, (hi - lo, PRACH_N_ZC)), k_lo)
        return chunk

    return OfdmPlan(
        carrier_freq_hz=carrier_freq_hz,
        subcarrier0_offset_hz=block_low_offset_hz + 7 * PRACH_SPACING_HZ,
        spacing_hz=PRACH_SPACING_HZ,
        useful_ts=PRACH_SEQUENCE_TS,
        cp_ts=np.array([PRACH_CP_TS], dtype=np.int64),
        fill=fill,
        occupied=(0, PRACH_N_ZC - 1),
        active_s=active_s,
    )


def _prach_plan(burst: TxBurst, rng: np.random.Generator) -> OfdmPlan:
    carrier = _carrier(burst, PRACH_N_RB)
    start_rb = param_int(burst, "start_rb", 0, 0, carrier.n_rb - PRACH_N_RB)
    root = param_int(burst, "root", int(rng.integers(1, PRACH_N_ZC)), 1, PRACH_N_ZC - 1)
    shift = param_int(burst, "cyclic_shift", 0, 0, PRACH_N_ZC - 1)
    # §5.7.3: subcarrier k at (k + φ + K(k0 + 1/2))·Δf_RA, k0 = n_PRB·12 − N_RB·6, K = 12.
    k0 = start_rb * N_SC_PER_RB - carrier.n_sc // 2
    block_low = (k0 + 0.5) * SUBCARRIER_SPACING_HZ
    return prach_plan(
        carrier.freq_hz, block_low, root, shift, min(burst.duration_s, PRACH_DURATION_S)
    )


_PLANS: dict[str, Callable[[TxBurst, np.random.Generator], OfdmPlan]] = {
    "lte_pusch": _pusch_plan,
    "lte_pucch": _pucch_plan,
    "lte_srs": _srs_plan,
    "lte_prach": _prach_plan,
}


def render(
    burst: TxBurst, rng: np.random.Generator, sample_rate_hz: float, offset_hz: float
) -> ComplexArray:
    """Samples of an ``lte_*`` burst for a receiver whose centre is ``burst.freq_hz − offset_hz``.

    Returns ``ceil(duration_s · sample_rate_hz)`` complex64 samples starting at the burst
    start (a subframe or slot boundary, or the SRS symbol). Mean power over the
    transmitted part is the burst's in-band energy share (1 when fully in band).
    """
    make = _PLANS.get(burst.kind)
    if make is None:
        raise InputError(None, "kind", f"unknown LTE burst kind {burst.kind!r}")
    n_out = int(np.ceil(burst.duration_s * sample_rate_hz))
    plan = make(burst, rng)
    return synthesize(plan, sample_rate_hz, burst.freq_hz - offset_hz, n_out)


# --- burst constructors -----------------------------------------------------------------


def pusch_burst(
    t_start_s: float,
    carrier_freq_hz: float,
    carrier_n_rb: int,
    start_rb: int,
    n_rb: int,
    n_subframes: int = 1,
    **params: Any,
) -> TxBurst:
    """A PUSCH transmission on RBs ``start_rb..start_rb+n_rb-1`` for ``n_subframes`` subframes.

    Extra ``params``: ``modulation``, ``srs`` / ``srs_subframes`` (SRS in the last
    symbol, comb 2 over ``srs_start_rb``/``srs_n_rb``, by default the allocation),
    ``shortened_subframes`` (last symbol left for another burst's SRS), ``session``.
    """
    return TxBurst(
        t_start_s=t_start_s,
        duration_s=n_subframes * SUBFRAME_S,
        freq_hz=allocation_center_hz(carrier_freq_hz, carrier_n_rb, start_rb, n_rb),
        bandwidth_hz=n_rb * RB_BANDWIDTH_HZ,
        tech="lte",
        kind="lte_pusch",
        power_offset_db=pc_offset_db(n_rb),
        params={
            "carrier_freq_hz": carrier_freq_hz,
            "carrier_n_rb": carrier_n_rb,
            "start_rb": start_rb,
            "n_rb": n_rb,
            **params,
        },
    )


def pucch_burst(
    subframe_start_s: float,
    carrier_freq_hz: float,
    carrier_n_rb: int,
    *,
    resource: int = 0,
    slot: int | None = None,
    pucch_format: str = "1a",
    **params: Any,
) -> TxBurst:
    """PUCCH in one subframe: one slot (``slot`` 0/1, its RB exactly) or both (``slot=None``).

    A one-slot burst starts at ``subframe_start_s + slot·0.5 ms`` and its band is the
    RB it uses. A two-slot burst covers the subframe and, since its slots sit at
    opposite edges, its band spans both RBs (the carrier's width for resource 0/1), so
    a detection of either hop lies inside it.
    """
    slots = [0, 1] if slot is None else [slot]
    rbs = [pucch_rb(resource, s, carrier_n_rb) for s in slots]
    low, high = min(rbs), max(rbs) + 1
    return TxBurst(
        t_start_s=subframe_start_s + (slot or 0) * SLOT_S,
        duration_s=len(slots) * SLOT_S,
        freq_hz=allocation_center_hz(carrier_freq_hz, carrier_n_rb, low, high - low),
        bandwidth_hz=(high - low) * RB_BANDWIDTH_HZ,
        tech="lte",
        kind="lte_pucch",
        power_offset_db=pc_offset_db(1),
        params={
            "carrier_freq_hz": carrier_freq_hz,
            "carrier_n_rb": carrier_n_rb,
            "resource": resource,
            "slot": slot,
            "pucch_format": pucch_format,
            **params,
        },
    )


def srs_burst(
    subframe_start_s: float,
    carrier_freq_hz: float,
    carrier_n_rb: int,
    srs_start_rb: int,
    srs_n_rb: int,
    **params: Any,
) -> TxBurst:
    """SRS in the last symbol of the subframe starting at ``subframe_start_s`` (§5.5.3)."""
    return TxBurst(
        t_start_s=subframe_start_s + SUBFRAME_S - SRS_SYMBOL_S,
        duration_s=SRS_SYMBOL_S,
        freq_hz=allocation_center_hz(carrier_freq_hz, carrier_n_rb, srs_start_rb, srs_n_rb),
        bandwidth_hz=srs_n_rb * RB_BANDWIDTH_HZ,
        tech="lte",
        kind="lte_srs",
        power_offset_db=pc_offset_db(srs_n_rb),
        params={
            "carrier_freq_hz": carrier_freq_hz,
            "carrier_n_rb": carrier_n_rb,
            "srs_start_rb": srs_start_rb,
            "srs_n_rb": srs_n_rb,
            **params,
        },
    )


def prach_burst(
    subframe_start_s: float,
    carrier_freq_hz: float,
    carrier_n_rb: int,
    start_rb: int,
    *,
    root: int = 129,
    cyclic_shift: int = 0,
    power_offset_db: float = 0.0,
    **params: Any,
) -> TxBurst:
    """A format-0 preamble (903 µs; the subframe's last 97 µs are guard time)."""
    return TxBurst(
        t_start_s=subframe_start_s,
        duration_s=PRACH_DURATION_S,
        freq_hz=allocation_center_hz(carrier_freq_hz, carrier_n_rb, start_rb, PRACH_N_RB),
        bandwidth_hz=PRACH_BANDWIDTH_HZ,
        tech="lte",
        kind="lte_prach",
        power_offset_db=power_offset_db,
        params={
            "carrier_freq_hz": carrier_freq_hz,
            "carrier_n_rb": carrier_n_rb,
            "start_rb": start_rb,
            "root": root,
            "cyclic_shift": cyclic_shift,
            **params,
        },
    )


# --- activity schedules ------------------------------------------------------------------


@dataclass
class _Timeline:
    """What one phone sends in each subframe of a session, resolved into bursts at the end.

    Collisions follow TS 36.213: uplink control in a subframe with PUSCH rides on the
    PUSCH (no PUCCH burst); SRS shortens a PUSCH or PUCCH format 1/1a of its subframe
    and is dropped against PUCCH format 2; nothing else is sent in a PRACH subframe.
    """

    t0_s: float
    n_subframes: int
    carrier_freq_hz: float
    carrier_n_rb: int
    session: str
    rng: np.random.Generator
    pusch: dict[int, tuple[int, int, str]] = field(default_factory=dict)
    pucch: dict[int, str] = field(default_factory=dict)
    srs: set[int] = field(default_factory=set)
    prach: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = self.rng
        n_rb = self.carrier_n_rb
        self.n_edge_rb = 1 if n_rb <= 15 else 2  # PUCCH RBs at each carrier edge
        self.pusch_sizes = valid_pusch_n_rb(n_rb - 2 * self.n_edge_rb)
        self.cqi_resource = int(rng.integers(2))
        self.ack_resource = 2 * (self.n_edge_rb - 1) + int(rng.integers(2))
        self.prach_start_rb = 0 if n_rb <= PRACH_N_RB else self.n_edge_rb
        self.prach_subframe = int(rng.choice([1, 4, 7]))  # PRACH configuration: once per frame
        self.prach_root = int(rng.integers(1, PRACH_N_ZC))
        self.cqi_period = int(rng.choice([10, 20, 40]))
        self.cqi_offset = int(rng.integers(self.cqi_period))
        self.srs_period = int(rng.choice([20, 40, 80]))
        self.srs_offset = int(rng.integers(self.srs_period))
        usable = n_rb - 2 * self.n_edge_rb
        if usable >= 4 and rng.random() < 0.5:
            self.srs_n_rb = 4 * (usable // 4)  # wideband sounding
        else:
            self.srs_n_rb = 4  # narrowband, hopping over the band
        self.srs_n_rb = min(self.srs_n_rb, 4 * (n_rb // 4)) if n_rb >= 4 else 0
        self.srs_comb = int(rng.integers(2))
        self.srs_hops = 0

    # -- events --
    def add_pusch(self, sf: int, start_rb: int, n_rb: int, modulation: str = "qpsk") -> None:
        if 0 <= sf < self.n_subframes and sf not in self.pusch:
            self.pusch[sf] = (start_rb, n_rb, modulation)

    def add_pucch(self, sf: int, fmt: str) -> None:
        if not 0 <= sf < self.n_subframes:
            return
        held = self.pucch.get(sf)
        # CQI with ACK is format 2a/2b (a format-2 burst); SR with ACK uses the SR resource.
        if held is None or fmt == "2" or (held == "1" and fmt == "1a"):
            self.pucch[sf] = fmt

    def add_prach(self, sf: int, ramp_db: float = 0.0) -> None:
        if 0 <= sf < self.n_subframes:
            self.prach[sf] = ramp_db

    def next_prach_occasion(self, sf: int) -> int:
        return sf + (self.prach_subframe - sf) % 10

    def random_grant(self, max_n_rb: int | None = None) -> tuple[int, int]:
        sizes = [n for n in self.pusch_sizes if max_n_rb is None or n <= max_n_rb] or [1]
        weights = 1.0 / np.asarray(sizes, dtype=np.float64)  # small grants are the common case
        n_rb = int(self.rng.choice(sizes, p=weights / weights.sum()))
        lo = self.n_edge_rb
        hi = self.carrier_n_rb - self.n_edge_rb - n_rb
        return int(self.rng.integers(lo, max(lo, hi) + 1)), n_rb

    def pusch_with_harq(
        self, sf: int, start_rb: int, n_rb: int, modulation: str = "qpsk", bler: float = 0.1
    ) -> None:
        """A PUSCH and, at the 10 % block error rate link adaptation aims for, its retransmissions 8 ms later."""
        self.add_pusch(sf, start_rb, n_rb, modulation)
        while self.rng.random() < bler:
            sf += 8
            self.add_pusch(sf, start_rb, n_rb, modulation)

    def rrc_setup(self, sf: int, *, msg5_n_rb: int = 4) -> int:
        """Random access and RRC connection setup from idle (TS 36.321 §5.1, TS 36.331 §5.3.3).

        Preamble (retried with 2 dB more power when no response comes, 10 % of the
        time), msg3 ~10 ms later, the ACK of msg4, then RRCConnectionSetupComplete
        after a scheduling request. Returns the subframe when the connection is up.
        """
        sf = self.next_prach_occasion(sf)
        ramp = 0.0
        while self.rng.random() < 0.1:
            self.add_prach(sf, ramp)
            ramp += 2.0
            sf = self.next_prach_occasion(sf + 10 + int(self.rng.integers(10)))
        self.add_prach(sf, ramp)
        msg3 = sf + 3 + int(self.rng.integers(3)) + 6
        start, _ = self.random_grant(3)
        self.pusch_with_harq(msg3, start, min(3, self.carrier_n_rb - 2 * self.n_edge_rb))
        msg4_ack = msg3 + 4 + int(self.rng.integers(8)) + 4
        self.add_pucch(msg4_ack, "1a")
        sr = msg4_ack + 2 + int(self.rng.integers(8))
        self.add_pucch(sr, "1")
        start, n_rb = self.random_grant(msg5_n_rb)
        self.pusch_with_harq(sr + 4, start, n_rb)
        self.add_pucch(
            sr + 12 + int(self.rng.integers(8)), "1a"
        )  # ACK of the security/reconfiguration
        return sr + 20

    def traffic(self, sf_from: int, sf_to: int, rate_kbps: float, dl_activity: float) -> None:
        """Bursty uplink grants averaging ``rate_kbps``, and ACKs for downlink data.

        Grants come in runs of consecutive subframes (mean 3) on one allocation; a run
        after a quiet spell is preceded by a scheduling request 4 ms earlier. Each
        downlink subframe (probability ``dl_activity``) is acknowledged 4 ms later.
        """
        rng = self.rng
        sf = sf_from
        last_ul = -100
        while sf < sf_to:
            start_rb, n_rb = self.random_grant()
            modulation = "16qam" if rng.random() < 0.4 else "qpsk"
            bits_per_sf = n_rb * 144 * (2.4 if modulation == "16qam" else 1.2)
            run = int(rng.geometric(1 / 3))
            if sf - last_ul > 10:
                self.add_pucch(sf - 4, "1")
            for i in range(run):
                if sf + i < sf_to:
                    self.pusch_with_harq(sf + i, start_rb, n_rb, modulation)
            last_ul = sf + run
            gap_ms = run * bits_per_sf / max(rate_kbps, 1e-3) - run
            sf += run + 1 + int(rng.exponential(max(gap_ms, 1.0)))
        dl = np.flatnonzero(rng.random(max(0, sf_to - sf_from)) < dl_activity) + sf_from
        for d in dl:
            self.add_pucch(int(d) + 4, "1a")

    def periodic(self, sf_from: int, sf_to: int, *, cqi: bool = True, srs: bool = True) -> None:
        """Periodic CQI (PUCCH format 2) and SRS while the phone is in active time."""
        for sf in range(max(0, sf_from), min(sf_to, self.n_subframes)):
            if cqi and (sf - self.cqi_offset) % self.cqi_period == 0:
                self.add_pucch(sf, "2")
            if srs and self.srs_n_rb and (sf - self.srs_offset) % self.srs_period == 0:
                self.srs.add(sf)

    def drx(self, sf_from: int, sf_to: int, cycle_ms: int) -> None:
        """Connected-mode DRX: one CQI report per on-duration, silence otherwise."""
        offset = int(self.rng.integers(cycle_ms))
        first = sf_from + (offset - sf_from) % cycle_ms
        for sf in range(first, min(sf_to, self.n_subframes), cycle_ms):
            self.add_pucch(sf + int(self.rng.integers(1, 8)), "2")

    # -- resolution --
    def _srs_position(self) -> int:
        usable_lo = self.n_edge_rb if self.carrier_n_rb - 2 * self.n_edge_rb >= self.srs_n_rb else 0
        span = max(1, (self.carrier_n_rb - 2 * usable_lo) // self.srs_n_rb)
        pos = usable_lo + (self.srs_hops % span) * self.srs_n_rb
        self.srs_hops += 1
        return pos

    def bursts(self) -> list[TxBurst]:
        t0 = self.t0_s
        common = {"session": self.session}
        out: list[TxBurst] = []
        for sf, ramp_db in sorted(self.prach.items()):
            out.append(
                prach_burst(
                    t0 + sf * SUBFRAME_S,
                    self.carrier_freq_hz,
                    self.carrier_n_rb,
                    self.prach_start_rb,
                    root=self.prach_root,
                    cyclic_shift=13 * int(self.rng.integers(64)),
                    power_offset_db=pc_offset_db(PRACH_N_RB) - 6.0 + ramp_db,
                    **common,
                )
            )
        pusch_sfs = sorted(sf for sf in self.pusch if sf not in self.prach)
        i = 0
        while i < len(pusch_sfs):
            j = i
            while (
                j + 1 < len(pusch_sfs)
                and pusch_sfs[j + 1] == pusch_sfs[j] + 1
                and self.pusch[pusch_sfs[j + 1]] == self.pusch[pusch_sfs[i]]
            ):
                j += 1
            start_rb, n_rb, modulation = self.pusch[pusch_sfs[i]]
            group = pusch_sfs[i : j + 1]
            shortened = [k for k, sf in enumerate(group) if sf in self.srs]
            extra: dict[str, Any] = {"shortened_subframes": shortened} if shortened else {}
            out.append(
                pusch_burst(
                    t0 + group[0] * SUBFRAME_S,
                    self.carrier_freq_hz,
                    self.carrier_n_rb,
                    start_rb,
                    n_rb,
                    len(group),
                    modulation=modulation,
                    **extra,
                    **common,
                )
            )
            i = j + 1
        for sf, fmt in sorted(self.pucch.items()):
            if sf in self.pusch or sf in self.prach:
                continue
            resource = self.cqi_resource if fmt == "2" else self.ack_resource
            short_pucch = sf in self.srs and fmt != "2"
            for slot in (0, 1):
                out.append(
                    pucch_burst(
                        t0 + sf * SUBFRAME_S,
                        self.carrier_freq_hz,
                        self.carrier_n_rb,
                        resource=resource,
                        slot=slot,
                        pucch_format=fmt,
                        shortened=short_pucch,
                        **common,
                    )
                )
        for sf in sorted(self.srs):
            if sf in self.prach or (self.pucch.get(sf) == "2" and sf not in self.pusch):
                continue
            out.append(
                srs_burst(
                    t0 + sf * SUBFRAME_S,
                    self.carrier_freq_hz,
                    self.carrier_n_rb,
                    self._srs_position(),
                    self.srs_n_rb,
                    srs_comb=self.srs_comb,
                    **common,
                )
            )
        out.sort(key=lambda b: b.t_start_s)
        return out


def _check_carrier(carrier_n_rb: int) -> None:
    if carrier_n_rb not in CARRIER_N_RB:
        raise InputError(
            None, "carrier_n_rb", f"expected one of {CARRIER_N_RB}, got {carrier_n_rb}"
        )


def data_session_bursts(
    t0_s: float,
    duration_s: float,
    carrier_freq_hz: float,
    carrier_n_rb: int,
    rng: np.random.Generator,
    *,
    mean_rate_kbps: float = 50.0,
    dl_activity: float = 0.3,
    mean_on_s: float = 2.0,
    mean_off_s: float = 8.0,
    inactivity_ms: int = 200,
    drx_cycle_ms: int = 320,
    rrc_release_s: float = 10.0,
    session: str = "data",
) -> list[TxBurst]:
    """A phone browsing or messaging: bursts of activity separated by reading time.

    Activity periods (exponential, mean ``mean_on_s``) carry uplink grants averaging
    ``mean_rate_kbps`` and ACKs for downlink data; the phone then stays in active time
    ``inactivity_ms`` (CQI, SRS), sleeps in connected-mode DRX (one CQI per
    ``drx_cycle_ms``), and is released to idle after ``rrc_release_s`` without traffic,
    so the next activity starts with random access again. Subframe 0 starts at ``t0_s``.
    """
    _check_carrier(carrier_n_rb)
    tl = _Timeline(t0_s, int(duration_s / SUBFRAME_S), carrier_freq_hz, carrier_n_rb, session, rng)
    sf = 0
    connected = False
    while sf < tl.n_subframes:
        if not connected:
            setup_start = sf
            sf = tl.rrc_setup(sf)
            tl.periodic(setup_start, sf, cqi=False)
            connected = True
        on_end = min(tl.n_subframes, sf + max(1, int(rng.exponential(mean_on_s) / SUBFRAME_S)))
        tl.traffic(sf, on_end, mean_rate_kbps, dl_activity)
        tl.periodic(sf, on_end + inactivity_ms)
        next_on = on_end + inactivity_ms + int(rng.exponential(mean_off_s) / SUBFRAME_S)
        release = on_end + int(rrc_release_s / SUBFRAME_S)
        tl.drx(on_end + inactivity_ms, min(next_on, release), drx_cycle_ms)
        connected = next_on < release
        sf = next_on
    return tl.bursts()


def voice_call_bursts(
    t0_s: float,
    duration_s: float,
    carrier_freq_hz: float,
    carrier_n_rb: int,
    rng: np.random.Generator,
    *,
    mean_talk_s: float = 1.0,
    mean_silence_s: float = 1.5,
    voice_n_rb: int | None = None,
    session: str = "voice",
) -> list[TxBurst]:
    """A VoLTE call: setup signalling, then one speech frame per 20 ms while talking.

    While the near end talks, a 1–3 RB PUSCH every 20 ms (semi-persistent grant, same
    RBs); while it is silent, a silence descriptor every 160 ms. Far-end speech (mostly
    when the near end is silent) is acknowledged on PUCCH 4 ms after each downlink
    frame. CQI and SRS are periodic, RTCP goes up every 5 s. Talk spurts and pauses
    are exponential (ITU-T P.59-like means).
    """
    _check_carrier(carrier_n_rb)
    tl = _Timeline(t0_s, int(duration_s / SUBFRAME_S), carrier_freq_hz, carrier_n_rb, session, rng)
    tl.cqi_period = max(tl.cqi_period, 40)
    sf = tl.rrc_setup(0, msg5_n_rb=6)
    signalling_end = sf + 800 + int(rng.integers(700))  # SIP INVITE / 183 / PRACK / 200 / ACK
    tl.traffic(sf, signalling_end, 20.0, 0.1)
    tl.periodic(0, tl.n_subframes)
    n_rb = voice_n_rb or int(rng.integers(1, 4))
    n_rb = max(v for v in tl.pusch_sizes if v <= n_rb)
    start_rb, _ = tl.random_grant(1)
    start_rb = min(start_rb, carrier_n_rb - tl.n_edge_rb - n_rb)
    frame0 = signalling_end + int(rng.integers(20))  # the semi-persistent grant's 20 ms grid
    sf = frame0
    frame = 0
    talking = bool(rng.random() < 0.5)
    while sf < tl.n_subframes:
        period_end = sf + max(
            20, int(rng.exponential(mean_talk_s if talking else mean_silence_s) / SUBFRAME_S)
        )
        far_talking = not talking and rng.random() < 0.8
        while frame0 + 20 * frame < min(period_end, tl.n_subframes):
            frame_sf = frame0 + 20 * frame
            if talking or frame % 8 == 0:  # speech, or a silence descriptor every 160 ms
                tl.pusch_with_harq(frame_sf, start_rb, n_rb)
            if far_talking or frame % 8 == 0:  # downlink speech/SID, ACKed 4 ms later
                tl.add_pucch(frame_sf + 10 + 4, "1a")
            frame += 1
        sf = period_end
        talking = not talking
    for rtcp in range(signalling_end + int(rng.integers(5000)), tl.n_subframes, 5000):
        start, n = tl.random_grant(6)
        tl.pusch_with_harq(rtcp, start, n)
    return tl.bursts()


def sms_bursts(
    t0_s: float,
    duration_s: float,
    carrier_freq_hz: float,
    carrier_n_rb: int,
    rng: np.random.Generator,
    *,
    session: str = "sms",
) -> list[TxBurst]:
    """Sending one SMS from idle (SMS over NAS, TS 24.011): about 1–2 s of activity.

    Random access and connection setup, the SMS in an uplink NAS transport, ACKs for
    the network's CP-ACK and RP-ACK, the phone's CP-ACK, CQI/SRS while connected.
    Nothing is sent after ``t0_s + duration_s`` (the exchange is cut short there).
    """
    _check_carrier(carrier_n_rb)
    tl = _Timeline(t0_s, 2500, carrier_freq_hz, carrier_n_rb, session, rng)
    limit = min(tl.n_subframes, int(duration_s / SUBFRAME_S))
    sf = tl.rrc_setup(0)
    sms = sf + 20 + int(rng.integers(40))
    start, n_rb = tl.random_grant(8)
    tl.add_pucch(sms - 4, "1")
    tl.pusch_with_harq(sms, start, n_rb)
    tl.add_pucch(sms + 30 + int(rng.integers(30)), "1a")  # CP-ACK from the network
    rp_ack = sms + 300 + int(rng.integers(900))
    tl.add_pucch(rp_ack + 4, "1a")
    tl.add_pucch(rp_ack + 8, "1")
    start, n_rb = tl.random_grant(4)
    tl.pusch_with_harq(rp_ack + 12, start, n_rb)  # CP-ACK for the RP-ACK
    end = rp_ack + 200
    tl.periodic(sf, end)
    return [b for b in tl.bursts() if b.t_end_s <= t0_s + limit * SUBFRAME_S + 1e-9]


def idle_update_bursts(
    t0_s: float,
    duration_s: float,
    carrier_freq_hz: float,
    carrier_n_rb: int,
    rng: np.random.Generator,
    *,
    period_s: float = 3240.0,
    session: str = "idle",
) -> list[TxBurst]:
    """An idle phone's periodic tracking-area updates (T3412, default 54 min, TS 24.301).

    Each update is random access, connection setup carrying the TAU request, the
    ACKs and the TAU complete, ~100–300 ms in all. The first falls at a random phase.
    """
    _check_carrier(carrier_n_rb)
    tl = _Timeline(t0_s, int(duration_s / SUBFRAME_S), carrier_freq_hz, carrier_n_rb, session, rng)
    period_sf = max(1000, int(period_s / SUBFRAME_S))
    sf = int(rng.integers(min(period_sf, max(1, tl.n_subframes))))
    while sf < tl.n_subframes:
        ready = tl.rrc_setup(sf, msg5_n_rb=6)
        accept = ready + 30 + int(rng.integers(100))
        tl.add_pucch(accept, "1a")
        start, n_rb = tl.random_grant(4)
        tl.add_pucch(accept + 4, "1")
        tl.pusch_with_harq(accept + 8, start, n_rb)  # TRACKING AREA UPDATE COMPLETE
        tl.periodic(ready, accept + 60)
        sf += period_sf
    return tl.bursts()
