"""UMTS (WCDMA FDD) uplink: a dedicated physical channel in a call (TS 25.211, TS 25.213).

A phone in a UMTS call transmits continuously: the DPCCH (pilot, TFCI, TPC bits at
spreading factor 256) on the Q branch and the DPDCH carrying speech on the I branch
(§4.2.1: c_c = C_ch,256,0, c_d,1 = C_ch,SF,SF/4, gains β_c, β_d), the sum multiplied by
the long complex scrambling code of §4.3.2.2 (the real Gold code: x and y m-sequences
of degree 25, the second component 16 777 232 chips further on, decimated so
consecutive chips never flip by 180°). Chips at 3.84 Mcps are shaped by a root-raised-
cosine filter with roll-off 0.22 (§4.2.2 of TS 25.101): a 5 MHz channel of which
3.84·1.22 = 4.68 MHz is occupied. The DPCCH bits are random rather than the slot
formats of TS 25.211 (only their statistics reach the spectrum).

``call_bursts`` cuts a call into 10 ms radio frames, one ``umts_dpch`` burst each
(phase continuity between frames is not modelled). Frames where the speech codec is
silent carry no DPDCH (discontinuous transmission, a silence descriptor every 8th
frame): those bursts are DPCCH only, ``power_offset_db`` below the full frames by
10·log10(β_c²/(β_c² + β_d²)).

Rendering is done in the frequency domain, a block of whole frames at a time: the
chip sequence's spectrum times the RRC response, cut to the receiver band, shifted by
the carrier's offset and inverse-transformed at the receiver rate. A block is a
periodic segment (its filter tails wrap around), so a frame has no edge transient.
The power convention is :mod:`dsp.lte`'s: mean power equals the share of the
carrier's energy inside the receiver band.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from dsp.errors import InputError
from dsp.iq import ComplexArray
from dsp.lte import mix_fast
from dsp.waveform import TxBurst

CHIP_RATE_HZ = 3.84e6
ROLL_OFF = 0.22
OCCUPIED_BANDWIDTH_HZ = CHIP_RATE_HZ * (1 + ROLL_OFF)  # 4.685 MHz
CHANNEL_BANDWIDTH_HZ = 5e6
FRAME_S = 10e-3
CHIPS_PER_FRAME = 38_400
SLOTS_PER_FRAME = 15
DPCCH_SF = 256
_LONG_CODE_PERIOD = 2**25 - 1
_SECOND_CODE_OFFSET = 16_777_232

# TS 25.101 Table 5.0 / 5.2: uplink UARFCN = 5·(F_UL[MHz] − offset) within each band.
# band: (UARFCN low, UARFCN high, F_UL offset in MHz)
_UARFCN_BANDS: dict[int, tuple[int, int, float]] = {
    1: (9612, 9888, 0.0),
    3: (937, 1288, 1525.0),
    8: (2712, 2863, 340.0),
}


def uarfcn_to_uplink_hz(uarfcn: int) -> float:
    """Uplink carrier frequency of a UARFCN in bands I, III or VIII (N_U = 5·(F_UL − F_offset))."""
    for low, high, offset_mhz in _UARFCN_BANDS.values():
        if low <= uarfcn <= high:
            return (uarfcn / 5.0 + offset_mhz) * 1e6
    raise InputError(None, "uarfcn", f"{uarfcn} is not an uplink UARFCN of bands I, III or VIII")


@lru_cache(maxsize=16)
def ovsf_code(sf: int, k: int) -> npt.NDArray[np.int8]:
    """Channelization code C_ch,SF,k (TS 25.213 §4.3.1.1): the OVSF code tree, ±1."""
    if sf < 1 or sf & (sf - 1) or not 0 <= k < sf:
        raise ValueError(f"no OVSF code C_ch,{sf},{k}")
    code = np.ones(1, dtype=np.int8)
    for bit in reversed(range(sf.bit_length() - 1)):
        branch = (k >> bit) & 1
        code = np.concatenate((code, -code if branch else code))
    return code


def _lfsr_bits(
    state: npt.NDArray[np.uint8], taps: tuple[int, ...], n_bits: int
) -> npt.NDArray[np.uint8]:
    """Bits s(0..n_bits−1) of s(i+25) = ⊕ s(i+t) for t in ``taps``, from s(0..24) = ``state``.

    The largest tap is 3, so 22 new bits depend only on known ones: 22 bits per step.
    """
    out = np.zeros(n_bits + 25 + 22, dtype=np.uint8)
    out[:25] = state
    i = 0
    while i + 25 < n_bits:
        step = min(22, n_bits - i - 25)
        new = out[i + taps[0] : i + taps[0] + step].copy()
        for t in taps[1:]:
            new ^= out[i + t : i + t + step]
        out[i + 25 : i + 25 + step] = new
        i += step
    return out[:n_bits]


def _jump(taps: tuple[int, ...], distance: int) -> npt.NDArray[np.int64]:
    """GF(2) matrix taking the state s(i..i+24) to s(i+distance..i+distance+24)."""
    step = np.zeros((25, 25), dtype=np.int64)
    step[np.arange(24), np.arange(1, 25)] = 1
    step[24, list(taps)] = 1
    result = np.eye(25, dtype=np.int64)
    while distance:
        if distance & 1:
            result = (step @ result) % 2
        step = (step @ step) % 2
        distance >>= 1
    return result


_X_TAPS = (0, 3)
_Y_TAPS = (0, 1, 2, 3)


@lru_cache(maxsize=8)
def long_scrambling_code(number: int) -> npt.NDArray[np.complex64]:
    """One frame (38 400 chips) of the uplink long scrambling code n, TS 25.213 §4.3.2.2.

    x_n starts with the 24 bits of n (LSB first) and a 1, y with 25 ones; z_n = x_n ⊕ y,
    Z_n = ±1; c1(i) = Z_n(i), c2(i) = Z_n(i + 16 777 232 mod 2^25−1), and
    C(i) = c1(i)·(1 + j·(−1)^i·c2(2⌊i/2⌋)). Not normalized (|C| = √2).
    """
    if not 0 <= number < 2**24:
        raise InputError(None, "params.scrambling_code", f"{number} not in 0..2^24-1")
    x0 = np.zeros(25, dtype=np.uint8)
    x0[:24] = (number >> np.arange(24)) & 1
    x0[24] = 1
    y0 = np.ones(25, dtype=np.uint8)
    z1 = _lfsr_bits(x0, _X_TAPS, CHIPS_PER_FRAME) ^ _lfsr_bits(y0, _Y_TAPS, CHIPS_PER_FRAME)
    x_far = (_jump(_X_TAPS, _SECOND_CODE_OFFSET) @ x0) % 2
    y_far = (_jump(_Y_TAPS, _SECOND_CODE_OFFSET) @ y0) % 2
    z2 = _lfsr_bits(x_far.astype(np.uint8), _X_TAPS, CHIPS_PER_FRAME) ^ _lfsr_bits(
        y_far.astype(np.uint8), _Y_TAPS, CHIPS_PER_FRAME
    )
    c1 = 1.0 - 2.0 * z1
    c2 = 1.0 - 2.0 * z2
    i = np.arange(CHIPS_PER_FRAME)
    sign = np.where(i % 2 == 0, 1.0, -1.0)
    return (c1 * (1 + 1j * sign * c2[2 * (i // 2)])).astype(np.complex64)


def raised_cosine_psd(freqs_hz: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """|H_RRC(f)|² for roll-off 0.22 at 3.84 Mcps, 1 in the flat part (TS 25.101 §6.8.1)."""
    f = np.abs(np.asarray(freqs_hz, dtype=np.float64))
    f1 = (1 - ROLL_OFF) * CHIP_RATE_HZ / 2
    f2 = (1 + ROLL_OFF) * CHIP_RATE_HZ / 2
    roll = 0.5 * (1 + np.cos(np.pi * (f - f1) / (f2 - f1)))
    return np.where(f <= f1, 1.0, np.where(f < f2, roll, 0.0))


def _chips(burst: TxBurst, rng: np.random.Generator, n_chips: int) -> npt.NDArray[np.complex64]:
    sf = int(burst.params.get("sf", 64))
    if sf not in (4, 8, 16, 32, 64, 128, 256):
        raise InputError(None, "params.sf", f"{sf} is not a DPDCH spreading factor (4..256)")
    beta_c = float(burst.params.get("beta_c", 8 / 15))
    beta_d = float(burst.params.get("beta_d", 1.0)) if burst.params.get("dpdch", True) else 0.0
    code = long_scrambling_code(int(burst.params.get("scrambling_code", 0)))
    n_frames = -(-n_chips // CHIPS_PER_FRAME)
    total = n_frames * CHIPS_PER_FRAME
    dpcch_bits = rng.integers(0, 2, size=total // DPCCH_SF, dtype=np.int8) * 2 - 1
    q = np.repeat(dpcch_bits.astype(np.float32) * beta_c, DPCCH_SF)  # C_ch,256,0 is all ones
    i = np.zeros(total, dtype=np.float32)
    if beta_d > 0.0:
        data = rng.integers(0, 2, size=(total // sf, 1), dtype=np.int8) * 2 - 1
        c_d = ovsf_code(sf, sf // 4)
        i = ((data * c_d[None, :]).ravel() * beta_d).astype(np.float32)
    chips = (i + 1j * q).astype(np.complex64) * np.tile(code, n_frames)
    return chips[:n_chips]


def render(
    burst: TxBurst, rng: np.random.Generator, sample_rate_hz: float, offset_hz: float
) -> ComplexArray:
    """Samples of a ``umts_dpch`` burst for a receiver centred ``offset_hz`` below its carrier.

    ``ceil(duration_s·sample_rate_hz)`` complex64 samples; mean power is the share of
    the RRC spectrum inside ``±sample_rate_hz/2`` of the receiver (1 when it all fits).
    Work per block: one FFT of the chips and one inverse FFT at the receiver rate.
    """
    if burst.kind != "umts_dpch":
        raise InputError(None, "kind", f"unknown UMTS burst kind {burst.kind!r}")
    n_out = int(np.ceil(burst.duration_s * sample_rate_hz))
    half = sample_rate_hz / 2
    f2 = OCCUPIED_BANDWIDTH_HZ / 2
    if n_out == 0 or offset_hz - half >= f2 or offset_hz + half <= -f2:
        return np.zeros(n_out, dtype=np.complex64)
    ratio = Fraction(sample_rate_hz / CHIP_RATE_HZ).limit_denominator(1000)
    p, q = ratio.numerator, ratio.denominator
    # A block of chips and of output samples spanning the same time: N_c·p = N_o·q.
    n_chips = -(-math.ceil(n_out * q / p) // q) * q
    n_block_out = n_chips * p // q
    spacing_hz = CHIP_RATE_HZ / n_chips  # = sample_rate_hz / n_block_out
    shift_bins = round(offset_hz / spacing_hz)
    out_index, chip_index, gain, share = _band_map(n_chips, n_block_out, shift_bins)
    spectrum = np.fft.fft(_chips(burst, rng, n_chips))
    y_spec = np.zeros(n_block_out, dtype=np.complex64)
    y_spec[out_index] = spectrum[chip_index] * gain
    y = np.fft.ifft(y_spec).astype(np.complex64)[:n_out]
    residual_hz = offset_hz - shift_bins * spacing_hz
    y = mix_fast(y, residual_hz, sample_rate_hz)
    power = float(np.mean(y.real.astype(np.float64) ** 2 + y.imag.astype(np.float64) ** 2))
    if power <= 0.0 or share <= 0.0:
        return np.zeros(n_out, dtype=np.complex64)
    y *= np.float32(math.sqrt(share / power))
    return y


@lru_cache(maxsize=32)
def _band_map(
    n_chips: int, n_block_out: int, shift_bins: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float32], float]:
    """Which chip-spectrum bins land in which output bins, their RRC gain, and the in-band share.

    Output bin b (frequency b·Δ from the receiver centre, |b| < N_o/2) holds carrier
    frequency (b − shift)·Δ, i.e. chip bin (b − shift) mod N_c; only bins inside the
    RRC support are kept. The share is the raised-cosine energy in the receiver band
    over the whole carrier's.
    """
    out_bins = np.arange(n_block_out) - n_block_out // 2
    carrier_bins = out_bins - shift_bins
    spacing_hz = CHIP_RATE_HZ / n_chips
    psd = raised_cosine_psd(carrier_bins * spacing_hz)
    keep = psd > 0.0
    support = math.ceil(OCCUPIED_BANDWIDTH_HZ / 2 / spacing_hz)
    all_bins = np.arange(-support, support + 1)
    whole = float(raised_cosine_psd(all_bins * spacing_hz).sum())
    share = float(psd[keep].sum()) / whole
    return (
        out_bins[keep] % n_block_out,
        carrier_bins[keep] % n_chips,
        np.sqrt(psd[keep]).astype(np.float32),
        share,
    )


def dpch_burst(
    t_start_s: float,
    carrier_freq_hz: float,
    *,
    duration_s: float = FRAME_S,
    dpdch: bool = True,
    beta_c: float = 8 / 15,
    beta_d: float = 1.0,
    sf: int = 64,
    scrambling_code: int = 0,
    **params: Any,
) -> TxBurst:
    """A DPCCH (+ DPDCH) transmission; AMR 12.2 kbit/s speech uses SF 64, β_c = 8/15, β_d = 1."""
    offset_db = 0.0 if dpdch else 10 * math.log10(beta_c**2 / (beta_c**2 + beta_d**2))
    return TxBurst(
        t_start_s=t_start_s,
        duration_s=duration_s,
        freq_hz=carrier_freq_hz,
        bandwidth_hz=OCCUPIED_BANDWIDTH_HZ,
        tech="umts",
        kind="umts_dpch",
        power_offset_db=offset_db,
        params={
            "dpdch": dpdch,
            "beta_c": beta_c,
            "beta_d": beta_d,
            "sf": sf,
            "scrambling_code": scrambling_code,
            **params,
        },
    )


def call_bursts(
    t0_s: float,
    duration_s: float,
    uarfcn_or_freq_hz: float,
    rng: np.random.Generator,
    *,
    mean_talk_s: float = 1.0,
    mean_silence_s: float = 1.5,
    session: str = "voice",
) -> list[TxBurst]:
    """A UMTS voice call as 10 ms frames: continuous DPCCH, DPDCH while the phone talks.

    ``uarfcn_or_freq_hz`` is an uplink UARFCN (bands I, III, VIII; values below 10^5)
    or a carrier frequency in Hz. Talk spurts and pauses are exponential; during a
    pause only every 8th frame (a 160 ms silence descriptor) carries a DPDCH.
    """
    carrier_hz = (
        uarfcn_to_uplink_hz(int(uarfcn_or_freq_hz))
        if uarfcn_or_freq_hz < 1e5
        else float(uarfcn_or_freq_hz)
    )
    code = int(rng.integers(2**24))
    n_frames = int(duration_s / FRAME_S)
    talking = np.zeros(n_frames, dtype=bool)
    frame = 0
    state = bool(rng.random() < 0.5)
    while frame < n_frames:
        length = max(1, int(rng.exponential(mean_talk_s if state else mean_silence_s) / FRAME_S))
        talking[frame : frame + length] = state
        frame += length
        state = not state
    sid = (np.arange(n_frames) % 8) == 0
    return [
        dpch_burst(
            t0_s + k * FRAME_S,
            carrier_hz,
            dpdch=bool(talking[k] or sid[k]),
            scrambling_code=code,
            session=session,
            frame=k,
        )
        for k in range(n_frames)
    ]
