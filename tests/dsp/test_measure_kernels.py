"""The compiled measurement kernels against the numpy expressions they replace, bit for bit.

The detector's records are rounded (0.1 Hz, 0.01 dB, whole samples), but a centroid
0.001 Hz off flips a rounding now and then: the kernels must reproduce numpy's float
operations exactly, so the comparisons here are ``array_equal``, not ``allclose``.
"""

from __future__ import annotations

import numpy as np
import pytest

from dsp import measure_kernels as mk
from dsp.detector import _best_segments
from dsp.iq import CU8_OFFSET, CU8_SCALE, cu8_to_complex64
from dsp.transforms import RowFFT


def _spread(rng: np.random.Generator, shape: tuple[int, ...] | int, dtype: type) -> np.ndarray:
    """Positive values over six decades: their sums round differently in every order."""
    return (rng.random(shape) * 10.0 ** rng.uniform(-3, 3, shape)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pairwise_sums_are_numpys_sums(dtype: type) -> None:
    rng = np.random.default_rng(1)
    fn = mk.pairwise_sum_f64 if dtype is np.float64 else mk.pairwise_sum_f32
    for n in [*range(0, 530), 1000, 1037, 4096, 5000]:
        x = _spread(rng, n + 3, dtype)
        assert fn(x, 3, n) == np.sum(x[3:]), n
    x = _spread(rng, 300, np.float32)  # a float32 array summed in float64 (np.add.reduceat(..., dtype=float64))
    assert mk.pairwise_sum_f64(x, 0, 300) == np.sum(x.astype(np.float64))


def test_row_sums_are_reduceat_along_frames() -> None:
    """``reduceat`` along axis 0 adds the pairwise sum of the other rows to the first one."""
    rng = np.random.default_rng(2)
    out = np.empty(64, dtype=np.float32)
    lanes = np.empty((8, 64), dtype=np.float32)
    for n_rows in [1, 2, 3, 5, 8, 9, 16, 17, 100, 128, 129, 130, 300]:
        a = _spread(rng, (n_rows + 2, 64), np.float32)
        want = np.add.reduceat(a[1 : n_rows + 1], [0], axis=0)[0]
        if n_rows > 1:
            mk._row_sums_f32(a, 2, n_rows - 1, out, lanes)
            got = a[1] + out
        else:
            got = a[1]
        assert np.array_equal(got, want), n_rows


def test_gather_windows_copies_across_epochs_and_zero_fills() -> None:
    """Every sample written once: zeros where the history holds none or past a row's length."""
    rng = np.random.default_rng(3)
    stream = (rng.standard_normal(1000) + 1j * rng.standard_normal(1000)).astype(np.complex64)
    epochs = [(100, stream[100:400]), (400, stream[400:900])]  # the history holds samples 100 .. 899
    starts = np.array([0, 90, 150, 380, 850, 950, 500], dtype=np.int64)
    lengths = np.array([50, 40, 64, 64, 64, 20, 10], dtype=np.int64)
    out = np.full((7, 64), 9.0 + 9.0j, dtype=np.complex64)
    mk.zero_outside(starts, lengths, 100, 900, out)
    for first, samples in epochs:
        mk.gather_windows(samples, first, starts, lengths, out)
    want = np.zeros((7, 64), dtype=np.complex64)
    for r, (s, n) in enumerate(zip(starts, lengths, strict=True)):
        for t in range(s, s + n):
            if 100 <= t < 900:
                want[r, t - s] = stream[t]
    assert np.array_equal(out, want)


def test_gather_windows_from_cu8_bytes_copies_their_samples() -> None:
    """An epoch held as cu8 bytes gathers the samples they convert to, bit for bit, and writes
    nothing outside the history (rows keep what zero_outside left)."""
    rng = np.random.default_rng(4)
    data = rng.integers(0, 256, 2000).astype(np.uint8)
    stream = cu8_to_complex64(data)
    starts = np.array([0, 90, 150, 380, 850, 950, 500], dtype=np.int64)
    lengths = np.array([50, 40, 64, 64, 64, 20, 10], dtype=np.int64)
    want = np.full((7, 64), 9.0 + 9.0j, dtype=np.complex64)
    got = want.copy()
    for first, stop in ((100, 400), (400, 900)):  # the history holds samples 100 .. 899
        mk.gather_windows(stream[first:stop], first, starts, lengths, want)
        mk.gather_windows_cu8(data[2 * first : 2 * stop], first, starts, lengths, np.float32(CU8_OFFSET),
                              np.float32(CU8_SCALE), got.view(np.float32))
    assert np.array_equal(got.view(np.uint64), want.view(np.uint64))
    assert (got[0] == 9.0 + 9.0j).all() and got[1, 10] == stream[100]


def _llr(filtered: np.ndarray, width: int, coef: np.ndarray, off: np.ndarray) -> np.ndarray:
    """The numpy expression of the detector before the kernel."""
    f = filtered[:, :width]
    energy = np.square(f.real) + np.square(f.imag)
    return (coef[:, None] * energy - off[:, None]).astype(np.float32)


def test_edge_change_points_match_the_prefix_rules() -> None:
    rng = np.random.default_rng(4)
    m, width = 12, 256
    filtered = (rng.standard_normal((2 * m, 2 * width)) + 1j * rng.standard_normal((2 * m, 2 * width))).astype(np.complex64)
    filtered[:, 100:180] *= 4.0  # a burst in every window
    snr = rng.uniform(10.0, 20.0, 2 * m)  # the burst is 16x the noise (σ² = 2): LLR weights of about that
    coef = snr / (1.0 + snr) / 2.0
    off = np.log1p(snr)
    llr = _llr(filtered, width, coef, off)
    prefix = np.zeros((2 * m, width + 1), dtype=np.float32)
    np.cumsum(llr, axis=1, out=prefix[:, 1:])
    a, b = mk.edge_change_points(filtered, width, coef, off, True)
    assert np.array_equal(a[:m], np.argmin(prefix[:m], axis=1))
    assert np.array_equal(b[m:], np.argmax(prefix[m:], axis=1))
    a, b = mk.edge_change_points(filtered, width, coef, off, False)
    want_a, want_b = _best_segments(llr)
    assert np.array_equal(a, want_a) and np.array_equal(b, want_b)
    assert (b > a).all() and np.median(a) > 90 and np.median(b) < 190


def test_band_masks_and_noise_match_numpy() -> None:
    rng = np.random.default_rng(5)
    n, n_fft, m = 64, 256, 5
    grid_bin = rng.integers(0, n, n_fft)
    usable = rng.random(n) > 0.2
    lo = np.array([0, 10, 20, 30, 63])
    hi = np.array([64, 20, 21, 30, 64])
    spectrum = (rng.standard_normal((2 * m, n_fft)) + 1j).astype(np.complex64)
    keep = (np.arange(n)[None, :] >= lo[:, None]) & (np.arange(n)[None, :] < hi[:, None]) & usable[None, :]
    mask = np.concatenate((keep, keep))[:, grid_bin].astype(np.float32)
    for scale in (np.float32(1.0), np.float32(1.0 / n_fft)):
        got = spectrum.copy()
        mk.keep_band_bins(got, grid_bin, lo, hi, usable, scale)
        assert np.array_equal(got, spectrum * mask * scale)
    # the inverse of the scaled spectrum is the normalised inverse of the plain one, to the bit
    scaled = spectrum.copy()
    mk.keep_band_bins(scaled, grid_bin, lo, hi, usable, np.float32(1.0 / n_fft))
    fft = RowFFT()
    fft.spectra(2 * m, n_fft)[:] = spectrum * mask
    plain = fft.inverse(2 * m, n_fft).copy()
    fft.spectra(2 * m, n_fft)[:] = scaled
    assert np.array_equal(fft.inverse(2 * m, n_fft, prescaled=True).view(np.uint32), plain.view(np.uint32))
    spectrum *= mask
    noise_cell = _spread(rng, (m, n // 4), np.float64)  # a cell's noise, read for each of its 4 bins
    noise_bin = np.repeat(noise_cell, 4, axis=1)
    per_grid = np.bincount(grid_bin, minlength=n) * usable
    in_band = (np.arange(n)[None, :] >= lo[:, None]) & (np.arange(n)[None, :] < hi[:, None])
    want_sigma2 = np.maximum((noise_bin * per_grid[None, :] * in_band).sum(axis=1) / (n * n_fft), 1e-30)
    got_sigma2 = mk.band_noise(noise_cell, 4, per_grid.astype(np.float64), lo, hi, float(n * n_fft))
    assert np.array_equal(got_sigma2, want_sigma2)


def _frame_sums_numpy(power, peaks, owner, rel, n_rows, lo_w, hi_w, lo, hi, noise_bin):
    """BurstDetector._measure_parts's frame statistics before the kernel."""
    m, n = noise_bin.shape
    bounds = (np.arange(power.shape[0]) * n)[:, None] + np.stack((lo_w[owner], hi_w[owner]), axis=1)
    flat = np.concatenate((power.ravel(), np.zeros(1, np.float32)))
    band_energy = np.add.reduceat(flat, bounds.ravel(), dtype=np.float64)[0::2]
    cum = np.zeros((m, n + 1))
    np.cumsum(noise_bin, axis=1, out=cum[:, 1:])
    rows = np.arange(m)
    wide = cum[rows, hi_w] - cum[rows, lo_w]
    band = cum[rows, hi] - cum[rows, lo]
    edge = np.repeat(wide[:, None], 4, axis=1)
    for j, target in enumerate((np.full(m, -1), np.zeros(m, np.int64), n_rows - 1, n_rows)):
        sel = rel == target[owner]
        edge[owner[sel], j] = band_energy[sel]
    inner = (rel >= 1) & (rel <= n_rows[owner] - 2)
    count = np.bincount(owner[inner], minlength=m)
    interior = np.bincount(owner[inner], weights=band_energy[inner], minlength=m) / np.maximum(count, 1)
    body = (rel >= 0) & (rel < n_rows[owner])
    body_owner = owner[body]
    body_first = np.flatnonzero(np.r_[True, body_owner[1:] != body_owner[:-1]])
    spectra = np.zeros((m, n))
    spectra[body_owner[body_first]] = np.add.reduceat(power[body], body_first, axis=0)
    spectra /= np.maximum(np.bincount(body_owner, minlength=m), 1)[:, None]
    clip = np.zeros(m)
    np.maximum.at(clip, owner, peaks)
    return edge, interior, count, spectra, clip, wide, band


def test_frame_sums_match_numpy() -> None:
    rng = np.random.default_rng(6)
    n, m = 64, 9
    n_rows = np.array([1, 2, 3, 6, 6, 9, 12, 20, 40])
    n_present = n_rows + 2
    n_present[0] = 2  # the first part's frame ra - 1 has left the history
    rel0 = np.full(m, -1)
    rel0[0] = 0
    owner = np.repeat(np.arange(m), n_present)
    rel = np.concatenate([np.arange(f, f + c) for f, c in zip(rel0, n_present, strict=True)])
    power = _spread(rng, (owner.size, n), np.float32)
    peaks = rng.random(owner.size).astype(np.float32)
    lo = rng.integers(0, 30, m)
    hi = lo + rng.integers(1, 30, m)
    lo_w, hi_w = np.maximum(lo - 4, 0), np.minimum(hi + 4, n)
    noise_cell = _spread(rng, (m, n // 4), np.float64)  # a cell's noise, read for each of its 4 bins
    row0 = np.cumsum(n_present) - n_present
    got = mk.frame_sums(power, peaks, row0, n_present, rel0, n_rows, lo_w, hi_w, lo, hi, noise_cell, 4)
    want = _frame_sums_numpy(power, peaks, owner, rel, n_rows, lo_w, hi_w, lo, hi, np.repeat(noise_cell, 4, axis=1))
    for name, g, w in zip(("edge", "interior", "count", "spectra", "clip", "wide", "band"), got, want, strict=True):
        assert np.array_equal(g, w), name


def test_spectrum_stats_match_numpy() -> None:
    rng = np.random.default_rng(7)
    m, n = 30, 256
    freqs = (np.arange(n) - n // 2) * 9375.0
    noise_cell = rng.uniform(0.5, 1.5, (m, n // 4))  # a cell's noise, read for each of its 4 bins
    noise_bin = np.repeat(noise_cell, 4, axis=1)
    spectra = noise_bin + rng.exponential(1.0, (m, n)) - 0.8
    centre = rng.integers(40, 200, m)
    spectra += 50.0 * (np.abs(np.arange(n)[None, :] - centre[:, None]) < rng.integers(2, 30, m)[:, None])
    usable = np.ones(n, dtype=bool)
    usable[126:131] = False
    below, above, inside = np.arange(122, 126), np.arange(131, 135), np.arange(126, 131)
    lo_m = np.maximum(centre - 40, -3)
    hi_m = np.minimum(centre + 40, n + 3)
    lo_m[0], hi_m[0] = 10, 10  # an empty band
    positive = np.empty((m, n))
    total, centroid, k_lo, k_hi, flatness = mk.spectrum_stats(spectra, noise_cell, 4, usable, below, above, inside,
                                                              lo_m, hi_m, freqs, positive)
    excess = np.where(usable[None, :], spectra - noise_bin, 0.0)
    excess[:, inside] = 0.5 * (excess[:, below].mean(axis=1) + excess[:, above].mean(axis=1))[:, None]
    bins = np.arange(n)
    band = np.where((bins[None, :] >= lo_m[:, None]) & (bins[None, :] < hi_m[:, None]), excess, 0.0)
    want_total = band.sum(axis=1)
    want_positive = np.maximum(band, 0.0)
    want_centroid = (want_positive * freqs[None, :]).sum(axis=1) / np.maximum(want_positive.sum(axis=1), 1e-300)
    cum = np.cumsum(band, axis=1) / np.where(want_total > 0, want_total, 1.0)[:, None]
    want_lo = np.argmax(cum >= 0.005, axis=1)
    want_hi = np.maximum(np.argmax(cum >= 0.995, axis=1), want_lo)
    smooth = want_positive.copy()
    smooth[:, 1:-1] = (want_positive[:, :-2] + want_positive[:, 1:-1] + want_positive[:, 2:]) / 3.0
    trim = (want_hi - want_lo) // 10
    inner = (bins[None, :] >= (want_lo + trim)[:, None]) & (bins[None, :] <= (want_hi - trim)[:, None])
    inner_smooth = np.where(inner, smooth, 0.0)
    top = inner_smooth.max(axis=1)
    mean = inner_smooth.sum(axis=1) / np.maximum(inner.sum(axis=1), 1)
    want_flatness = np.where(top > 0, mean / np.where(top > 0, top, 1.0), 0.0)
    for g, w in ((total, want_total), (positive, want_positive), (centroid, want_centroid), (k_lo, want_lo),
                 (k_hi, want_hi), (flatness, want_flatness)):
        assert np.array_equal(g, w)
    assert total[0] == 0.0 and flatness[0] == 0.0
    assert np.all(np.abs(centroid[1:] - freqs[centre[1:]]) < 3 * 9375.0)  # the bursts' centres


def test_gmsk_band_and_line_peaks_match_numpy() -> None:
    rng = np.random.default_rng(8)
    k, span, n_out = 6, 1024, 256
    spectrum = (rng.standard_normal((k, span)) + 1j * rng.standard_normal((k, span))).astype(np.complex64)
    offset_bins = rng.integers(-200, 200, k)
    rel = np.fft.fftfreq(n_out, d=1.0 / n_out).astype(np.int64)
    rel_hz = rel * 2343.75
    band_rel_hz = rng.uniform(-50e3, 50e3, k)
    half_band = rng.uniform(100e3, 200e3, k)
    out = np.empty((k, n_out), dtype=np.complex64)
    scale = np.float32(1.0 / n_out)
    mk.gmsk_band(spectrum, offset_bins, rel, rel_hz, band_rel_hz, half_band, scale, out)
    want = spectrum[np.arange(k)[:, None], (offset_bins[:, None] + rel[None, :]) % span]
    want = np.where(np.abs(rel_hz[None, :] - band_rel_hz[:, None]) <= half_band[:, None], want, 0.0)
    assert np.array_equal(out, want * scale)

    n_fft, half = 512, 116
    squared = (rng.standard_normal((k, n_fft)) + 1j * rng.standard_normal((k, n_fft))).astype(np.complex64)
    squared[0, :] = 1.0 + 1.0j  # ties: the first largest score wins
    squared[2, :7] = 0.0  # |0| is 0
    centres = ((np.arange(n_fft) - n_fft // 2) * 1171.875)[half : n_fft - half]
    twice_guess = rng.uniform(-100e3, 100e3, k)
    twice_guess[1] = 1e9  # nothing searched
    twice_guess[2] = centres[0]
    best, sums, counts, peak, left, right = mk.gmsk_line_peaks(squared, half, centres, twice_guess, 50e3)
    power = np.fft.fftshift(np.abs(squared) ** 2, axes=1)
    score = np.minimum(power[:, : n_fft - 2 * half], power[:, 2 * half :])
    window = np.abs(centres[None, :] - twice_guess[:, None]) <= 50e3
    want_best = np.argmax(np.where(window, score, -np.inf), axis=1)
    rows = np.arange(k)
    assert np.array_equal(best, want_best)
    assert np.array_equal(counts, window.sum(axis=1))
    # |X| as numpy forms it: equal here (the FMA path numpy takes on this machine's CPUs); a
    # CPU whose numpy has no fused multiply-add may differ in the last bit
    for got, want in ((sums, np.where(window, score, 0.0).sum(axis=1)), (peak, score[rows, want_best]),
                      (left, score[rows, np.maximum(want_best - 1, 0)]),
                      (right, score[rows, np.minimum(want_best + 1, score.shape[1] - 1)])):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0.0)


def test_magnitude_is_numpys_abs() -> None:
    rng = np.random.default_rng(11)
    n = 200_000
    z = (rng.standard_normal(n) * 10.0 ** rng.uniform(-8, 8, n)
         + 1j * rng.standard_normal(n) * 10.0 ** rng.uniform(-8, 8, n)).astype(np.complex64)
    z[:4] = [0.0, 3.0 + 4.0j, -5.0j, 1e-30 + 1e30j]
    got = np.array([mk._magnitude(v) for v in z[:1000]], dtype=np.float32)
    np.testing.assert_allclose(got, np.abs(z[:1000]), rtol=1.2e-7, atol=0.0)  # within an ulp anywhere
    assert got[0] == 0.0 and got[1] == 5.0 and got[2] == 5.0
