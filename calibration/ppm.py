"""Frequency calibration: a dongle's crystal error in ppm, from a tone of known frequency.

Two references, both a tone whose true frequency is known to far better than a ppm:

* **GSM FCCH** (kalibrate-rtl's method): every GSM cell's BCCH carrier sends, in timeslot
  0 of frames 0, 10, 20, 30 and 40 of each 51-multiframe, a frequency-correction burst
  that is a pure tone 1625/24 kHz (67.708 kHz) above the carrier for 546 µs (TS 45.002
  §5.2.4, §7; see :mod:`dsp.downlink`). Base stations hold their frequency to 0.05 ppm
  (TS 45.010 §5.1), twenty times better than the 1 ppm TCXO of a good dongle.
* **A reference carrier**: a signal generator or CW beacon at a known frequency.

**Method.** The recording is cut into Hann-windowed frames of ``window_samples``
(427 µs at 2.4 MS/s: shorter than an FCCH burst, so some frame falls wholly inside each)
hopping by ``hop_samples``. In each frame the *tone fraction* is the share of the power
in the search band (the expected tone ± ``max_ppm`` of the tuning, widened by a GSM
channel) that lies within ±2 bins of the strongest bin: about 0.9 for a tone, 0.1 for
the GMSK bursts around it. Runs of tone frames are bursts; the frame of highest tone
fraction in each run is measured precisely by a 16× zero-padded FFT with parabolic
interpolation of the log-power peak (a few Hz). The error is the median over bursts, so
a stray burst of another cell cannot move it.

**Sign** (:mod:`sdr.receiver`, librtlsdr's convention): a crystal ``ppm_error`` fast
tunes the local oscillator to ``f_c (1 + ppm·1e-6)``, so every signal appears
``f_c · ppm · 1e-6`` *low*: ``ppm_error = (expected - measured) / f_c · 1e6``. That is
the value ``rtl_sdr -p`` and the node's ``ppm`` setting correct, and what the
calibration file's ``ppm_error`` holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dsp.downlink import BCCH_BANDWIDTH_HZ, FCCH_OFFSET_HZ, fcch_frequency_hz
from dsp.errors import InputError

FloatArray = npt.NDArray[np.float64]

DEFAULT_MAX_PPM = 100.0
DEFAULT_WINDOW_SAMPLES = 1024
MIN_TONE_FRACTION = 0.5
CARRIER_WINDOW_SAMPLES = 8192  # a steady carrier: long frames, narrow bins (293 Hz at 2.4 MS/s)
CARRIER_MIN_SNR_DB = 12.0
_PEAK_HALF_WIDTH_BINS = 2  # a Hann window's main lobe: ±2 bins hold > 95 % of a tone
_ZERO_PAD = 16
_FRAMES_PER_PASS = 512  # frames per vectorized FFT pass (keeps the block in cache)


@dataclass(frozen=True)
class ToneBurst:
    """One tone measured in a recording: where it starts and the frequency it showed."""

    start_sample: int
    offset_hz: float  # measured frequency relative to the tuning (baseband)
    tone_fraction: float
    snr_db: float  # tone power over the noise in the search band


@dataclass(frozen=True)
class PpmEstimate:
    """A crystal error measured against a reference tone (see the module notes for the sign)."""

    ppm_error: float
    freq_error_hz: float  # measured minus expected tone frequency
    spread_ppm: float  # robust spread of the per-burst values (1.4826 · MAD)
    n_bursts: int
    snr_db: float  # median over bursts
    reference: str  # e.g. "FCCH ARFCN 20" or "carrier 903.0 MHz"
    reference_freq_hz: float  # true frequency of the tone
    center_freq_hz: float

    @property
    def uncertainty_ppm(self) -> float:
        """Standard error of the median, from the spread of the bursts (0 for one burst)."""
        return 1.2533 * self.spread_ppm / math.sqrt(self.n_bursts) if self.n_bursts > 1 else float("nan")


def ppm_from_offset(measured_offset_hz: float, expected_offset_hz: float, center_freq_hz: float) -> float:
    """Crystal error (ppm, positive: runs fast) from where a tone showed and where it should be."""
    return (expected_offset_hz - measured_offset_hz) / center_freq_hz * 1e6


def _frames(samples: npt.NDArray[np.complex64], window: int, hop: int) -> npt.NDArray[np.complex64]:
    n_frames = 1 + (samples.shape[0] - window) // hop
    return np.lib.stride_tricks.as_strided(
        samples, shape=(n_frames, window), strides=(samples.strides[0] * hop, samples.strides[0]), writeable=False)


def find_tone_bursts(
    samples: npt.ArrayLike,
    sample_rate_hz: float,
    expected_offset_hz: float,
    search_hz: float,
    *,
    window_samples: int = DEFAULT_WINDOW_SAMPLES,
    hop_samples: int | None = None,
    min_tone_fraction: float = MIN_TONE_FRACTION,
    min_snr_db: float = 0.0,
    every_frame: bool = False,
) -> list[ToneBurst]:
    """Tone bursts within ``expected_offset_hz ± search_hz`` of the tuning (baseband Hz).

    ``samples`` ``(n,)`` complex. Frames are grouped into runs of consecutive tone frames
    and each run gives one burst (its best frame), unless ``every_frame`` (a continuous
    carrier: each tone frame is its own measurement). A frame is a tone frame when its tone
    fraction reaches ``min_tone_fraction`` and its peak stands ``min_snr_db`` above the
    band's median bin (the noise, as long as signals fill less than half of the band).
    See the module notes.
    """
    x = np.ascontiguousarray(samples, dtype=np.complex64)
    if window_samples < 64:
        raise ValueError("window_samples must be >= 64")
    hop = int(hop_samples or window_samples // 8)
    if x.shape[0] < window_samples:
        return []
    bin_hz = sample_rate_hz / window_samples
    freqs_hz = np.fft.fftshift(np.fft.fftfreq(window_samples, d=1.0 / sample_rate_hz))
    lo_hz = expected_offset_hz - search_hz
    hi_hz = expected_offset_hz + search_hz
    peak_bins = np.flatnonzero((freqs_hz >= lo_hz) & (freqs_hz <= hi_hz))
    margin_hz = BCCH_BANDWIDTH_HZ
    band_bins = np.flatnonzero((freqs_hz >= lo_hz - margin_hz) & (freqs_hz <= hi_hz + margin_hz))
    if peak_bins.size == 0:
        raise ValueError("the search band lies outside the recording's bandwidth")
    window = np.hanning(window_samples).astype(np.float32)
    frames = _frames(x, window_samples, hop)
    fraction = np.empty(frames.shape[0])
    peak = np.empty(frames.shape[0], dtype=np.int64)
    snr = np.empty(frames.shape[0])
    w = _PEAK_HALF_WIDTH_BINS
    for start in range(0, frames.shape[0], _FRAMES_PER_PASS):  # a loop over blocks of frames
        spectrum = np.fft.fftshift(np.fft.fft(frames[start:start + _FRAMES_PER_PASS] * window, axis=1), axes=1)
        power = spectrum.real**2 + spectrum.imag**2  # (frames, bins)
        band = power[:, band_bins]
        search = power[:, peak_bins]
        best = peak_bins[np.argmax(search, axis=1)]
        cumulative = np.concatenate([np.zeros((power.shape[0], 1)), np.cumsum(power, axis=1)], axis=1)
        lo = np.clip(best - w, 0, window_samples)
        hi = np.clip(best + w + 1, 0, window_samples)
        rows = np.arange(power.shape[0])
        peak_power = cumulative[rows, hi] - cumulative[rows, lo]
        total = band.sum(axis=1)
        noise = np.maximum(np.median(band, axis=1), 1e-30) * (2 * w + 1) / math.log(2.0)  # median of Exp(1): ln 2
        fraction[start:start + power.shape[0]] = peak_power / np.maximum(total, 1e-30)
        snr[start:start + power.shape[0]] = 10.0 * np.log10(np.maximum(peak_power - noise, 1e-30) / noise)
        peak[start:start + power.shape[0]] = best
    tonal = (fraction >= min_tone_fraction) & (snr >= min_snr_db)
    if not np.any(tonal):
        return []
    if every_frame:
        chosen = np.flatnonzero(tonal)
    else:
        # runs of consecutive tone frames; the best frame of each run
        edges = np.diff(np.concatenate(([0], tonal.astype(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        chosen = np.array([s + int(np.argmax(fraction[s:e])) for s, e in zip(starts, ends, strict=True)],
                          dtype=np.int64)
    out = []
    for index in chosen:  # one refinement per burst
        offset = _refine_hz(frames[index], window, sample_rate_hz, float(freqs_hz[peak[index]]), bin_hz)
        if lo_hz <= offset <= hi_hz:
            out.append(ToneBurst(start_sample=int(index * hop), offset_hz=offset,
                                 tone_fraction=float(fraction[index]), snr_db=float(snr[index])))
    return out


def _refine_hz(frame: npt.NDArray[np.complex64], window: npt.NDArray[np.float32], sample_rate_hz: float,
               coarse_hz: float, bin_hz: float) -> float:
    """Tone frequency in one frame: 16x zero-padded FFT around the coarse bin, parabolic peak of log power."""
    n = frame.shape[0] * _ZERO_PAD
    k = np.arange(frame.shape[0], dtype=np.float64)
    # mix the coarse estimate to 0 Hz so the padded FFT's peak sits near bin 0
    mixed = frame.astype(np.complex128) * window * np.exp(-2j * np.pi * coarse_hz / sample_rate_hz * k)
    spectrum = np.fft.fft(mixed, n)
    fine_bin_hz = sample_rate_hz / n
    span = int(math.ceil(2.0 * bin_hz / fine_bin_hz))
    candidates = np.concatenate((np.arange(0, span + 1), np.arange(n - span, n)))
    power = np.abs(spectrum[candidates]) ** 2
    best = int(np.argmax(power))
    centre = int(candidates[best])
    values = np.log(np.maximum(np.abs(spectrum[[(centre - 1) % n, centre, (centre + 1) % n]]) ** 2, 1e-300))
    denominator = values[0] - 2.0 * values[1] + values[2]
    delta = 0.5 * (values[0] - values[2]) / denominator if denominator < 0 else 0.0
    signed_bin = centre if centre <= n // 2 else centre - n
    return coarse_hz + (signed_bin + float(np.clip(delta, -0.5, 0.5))) * fine_bin_hz


def _summarize(bursts: Iterable[ToneBurst], expected_offset_hz: float, center_freq_hz: float, reference: str,
               reference_freq_hz: float, source: str | None) -> PpmEstimate:
    found = list(bursts)
    if not found:
        raise InputError(source, None, f"no {reference} tone found: is the dongle tuned near it, and is it on the air?")
    offsets = np.array([b.offset_hz for b in found])
    measured = float(np.median(offsets))
    ppms = (expected_offset_hz - offsets) / center_freq_hz * 1e6
    spread = float(1.4826 * np.median(np.abs(ppms - np.median(ppms))))
    return PpmEstimate(
        ppm_error=ppm_from_offset(measured, expected_offset_hz, center_freq_hz),
        freq_error_hz=measured - expected_offset_hz,
        spread_ppm=spread,
        n_bursts=len(found),
        snr_db=float(np.median([b.snr_db for b in found])),
        reference=reference,
        reference_freq_hz=reference_freq_hz,
        center_freq_hz=center_freq_hz,
    )


def estimate_ppm_fcch(
    samples: npt.ArrayLike,
    sample_rate_hz: float,
    center_freq_hz: float,
    arfcn: int,
    *,
    max_ppm: float = DEFAULT_MAX_PPM,
    source: str | None = None,
) -> PpmEstimate:
    """Crystal error from the FCCH bursts of the GSM cell on downlink ``arfcn`` in ``samples``.

    The recording must be tuned within ``sample_rate_hz/2`` of the cell's carrier; half a
    second holds about ten FCCH bursts. Raises :class:`InputError` when none is found.
    """
    tone_hz = fcch_frequency_hz(arfcn)
    expected = tone_hz - center_freq_hz
    search = max_ppm * 1e-6 * center_freq_hz
    _check_in_band(expected, search, sample_rate_hz, source, f"the FCCH of ARFCN {arfcn} ({tone_hz / 1e6:.4f} MHz)")
    bursts = find_tone_bursts(samples, sample_rate_hz, expected, min(search, FCCH_OFFSET_HZ * 1.4))
    return _summarize(bursts, expected, center_freq_hz, f"FCCH ARFCN {arfcn}", tone_hz, source)


def estimate_ppm_carrier(
    samples: npt.ArrayLike,
    sample_rate_hz: float,
    center_freq_hz: float,
    carrier_freq_hz: float,
    *,
    max_ppm: float = DEFAULT_MAX_PPM,
    source: str | None = None,
) -> PpmEstimate:
    """Crystal error from an unmodulated reference carrier at ``carrier_freq_hz`` in ``samples``."""
    expected = carrier_freq_hz - center_freq_hz
    search = max_ppm * 1e-6 * center_freq_hz
    _check_in_band(expected, search, sample_rate_hz, source, f"the carrier at {carrier_freq_hz / 1e6:.4f} MHz")
    bursts = find_tone_bursts(samples, sample_rate_hz, expected, search, window_samples=CARRIER_WINDOW_SAMPLES,
                              hop_samples=CARRIER_WINDOW_SAMPLES, min_tone_fraction=0.0,
                              min_snr_db=CARRIER_MIN_SNR_DB, every_frame=True)
    n_frames = np.asarray(samples).shape[0] // CARRIER_WINDOW_SAMPLES
    if len(bursts) < 0.5 * n_frames:  # a steady carrier is in (nearly) every frame; spurs and bursts are not
        raise InputError(source, None, f"no steady carrier near {carrier_freq_hz / 1e6:.4f} MHz (a tone in only "
                         f"{len(bursts)} of {n_frames} frames): is it on the air, and strong enough?")
    return _summarize(bursts, expected, center_freq_hz, f"carrier {carrier_freq_hz / 1e6:.4f} MHz",
                      carrier_freq_hz, source)


def _check_in_band(expected_hz: float, search_hz: float, sample_rate_hz: float, source: str | None,
                   what: str) -> None:
    if abs(expected_hz) + search_hz >= sample_rate_hz / 2.0:
        raise InputError(source, "center_freq_hz",
                         f"{what} ± {search_hz / 1e3:.0f} kHz is not inside the recording's ±{sample_rate_hz / 2e6:.2f} MHz: "
                         "tune the dongle to it")
