"""The segmentation kernels against the numpy formulations they replace, to the last bit.

Each reference below is the flat-array numpy code the detector ran before the kernels
(``bincount`` over keys, padded ragged rows, ``reduceat`` over gathered frames); the
kernels must give the same segments and the same floats, so that detection records do
not move.
"""

from __future__ import annotations

import numpy as np
import pytest

from dsp import split_kernels
from dsp.detector import _GSM_GUARD_S, _GSM_TIMESLOT_S, _best_segments, _llr_weights

G = 4.0  # bins per cell: a noise cell has mean 4
SLOT = _GSM_TIMESLOT_S * 2.4e6  # a GSM timeslot and a normal burst's guard period, in samples at 2.4 MS/s
GUARD = _GSM_GUARD_S * 2.4e6


def ragged_best_segments(values: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = lengths.shape[0]
    padded = np.full((m, int(lengths.max())), -1e30)
    starts = np.cumsum(lengths) - lengths
    owner = np.repeat(np.arange(m), lengths)
    padded[owner, np.arange(values.shape[0]) - starts[owner]] = values
    return _best_segments(padded)


def random_boxes(rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Boxes of noise cells (exponential-like, mean G) with a few bright signal strips, and
    neutral cells (exactly G) outside the painted region: like a batch of components."""
    h = rng.integers(1, 14, m)
    w = rng.integers(1, 40, m)
    sizes = h * w
    offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    z = rng.gamma(G, 1.0, offsets[-1])
    for i in range(m):
        box = z[offsets[i] : offsets[i + 1]].reshape(h[i], w[i])
        for _ in range(int(rng.integers(0, 3))):  # signals: a band of columns over some rows
            c0 = int(rng.integers(0, w[i]))
            c1 = min(w[i], c0 + int(rng.integers(1, 8)))
            r0 = int(rng.integers(0, h[i]))
            box[r0:, c0:c1] *= 10.0 ** rng.uniform(0.0, 4.0)
        box[rng.random(box.shape) < 0.2] = G  # outside the region: neutral
    return z, offsets, h.astype(np.int64), w.astype(np.int64)


def test_best_segment_is_the_numpy_segment_including_ties() -> None:
    rng = np.random.default_rng(1)
    for n in (1, 2, 5, 17):
        for _ in range(200):
            values = rng.integers(-3, 4, n).astype(np.float64)  # integers: many equal sums
            a, b = _best_segments(values[None, :])
            assert split_kernels._best_segment(values, n) == (a[0], b[0])


def reference_band_cuts(z, offsets, h, w, quiet_excess=1.5, quiet_columns=3, strong=4.0, valley_ratio=10.0,
                        valley_min_peak=40.0, image_ratio=10.0 ** 2.5):
    """The numpy body of BurstDetector._separate_bands (as it was): cut mask, and the strong
    segments of cut boxes (parent, lo, hi, n_cells)."""
    m = h.shape[0]
    owner = np.repeat(np.arange(m), h * w)
    k = np.arange(z.shape[0]) - offsets[owner]
    cc = k % w[owner]
    col_base = np.cumsum(w) - w
    n_keys = int(w.sum())
    excess = np.bincount(col_base[owner] + cc, weights=z - G, minlength=n_keys)
    col_owner = np.repeat(np.arange(m), w)
    level = excess / h[col_owner]
    quiet = level < quiet_excess
    for i in np.flatnonzero(w >= 2 * quiet_columns + 3).tolist():
        a, b = int(col_base[i]), int(col_base[i] + w[i])
        lv = level[a:b]
        side = np.minimum(np.maximum.accumulate(lv), np.maximum.accumulate(lv[::-1])[::-1])
        quiet[a:b] |= (side >= valley_min_peak) & (lv * valley_ratio < side)
    first_col = np.zeros(n_keys, dtype=bool)
    first_col[col_base] = True
    starts = quiet & (first_col | ~np.r_[False, quiet[:-1]])
    run_id = np.cumsum(starts) - 1
    run_len = np.bincount(run_id[quiet], minlength=int(starts.sum()))
    wide_gap = np.zeros(n_keys, dtype=bool)
    wide_gap[quiet] = run_len[run_id[quiet]] >= quiet_columns
    seg_start = ~wide_gap & (first_col | np.r_[True, wide_gap[:-1]])
    seg_id = np.cumsum(seg_start) - 1
    keep_col = ~wide_gap
    n_seg = np.bincount(col_owner[seg_start], minlength=m)
    is_strong = np.bincount(seg_id[keep_col & (level >= strong)], minlength=int(seg_start.sum())) > 0
    seg_owner = col_owner[seg_start]
    seg_peak = np.full(int(seg_start.sum()), -np.inf)
    np.maximum.at(seg_peak, seg_id[keep_col], level[keep_col])
    comp_peak = np.full(m, -np.inf)
    np.maximum.at(comp_peak, seg_owner, seg_peak)
    is_strong &= seg_peak * image_ratio >= comp_peak[seg_owner]
    n_strong = np.bincount(seg_owner[is_strong], minlength=m)
    cut = (n_seg > 1) & (n_strong > 1)
    n_segs = int(seg_start.sum())
    cols = np.flatnonzero(keep_col & ~quiet)
    seg_lo = np.full(n_segs, n_keys)
    seg_hi = np.full(n_segs, -1)
    np.minimum.at(seg_lo, seg_id[cols], cols)
    np.maximum.at(seg_hi, seg_id[cols], cols)
    chosen = np.flatnonzero(is_strong & cut[seg_owner])
    parent = seg_owner[chosen]
    lo = seg_lo[chosen] - col_base[parent]
    hi = seg_hi[chosen] - col_base[parent] + 1
    n_cells = [max(int((z[offsets[p] : offsets[p + 1]].reshape(h[p], w[p])[:, a:b] != G).sum()), 1)
               for p, a, b in zip(parent, lo, hi, strict=True)]
    return cut, parent, lo, hi, np.array(n_cells, dtype=np.int64)


@pytest.mark.parametrize("seed", range(6))
def test_band_cuts_match_the_numpy_cuts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    z, offsets, h, w = random_boxes(rng, 60)
    expected = reference_band_cuts(z, offsets, h, w)
    got = split_kernels.band_cuts(z, offsets, h, w, G, 1.5, 3, 4.0, 10.0, 40.0, 10.0 ** 2.5)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(g, e)


def test_band_cuts_cut_two_signals_apart_and_leave_one_whole() -> None:
    """Physics: two strong strips 5 quiet columns apart are two segments; one strip is not cut."""
    noise = np.full((6, 16), G)
    two = noise.copy()
    two[:, 2:5] += 40.0
    two[:, 10:13] += 20.0
    one = noise.copy()
    one[:, 4:9] += 40.0
    z = np.concatenate((two.ravel(), one.ravel()))
    offsets = np.array([0, 96, 192])
    h = np.array([6, 6])
    w = np.array([16, 16])
    cut, parent, lo, hi, n_cells = split_kernels.band_cuts(z, offsets, h, w, G, 1.5, 3, 4.0, 10.0, 40.0, 10.0 ** 2.5)
    assert cut.tolist() == [True, False]
    assert parent.tolist() == [0, 0] and lo.tolist() == [2, 10] and hi.tolist() == [5, 13]
    assert n_cells.tolist() == [18, 18]


def reference_rectangles(z, offsets, h, w):
    """The numpy body of BurstDetector._rectangles (as it was) on whole boxes."""
    m = h.shape[0]
    owner = np.repeat(np.arange(m), h * w)
    k = np.arange(z.shape[0]) - offsets[owner]
    width = w[owner]
    rr = k // width
    cc = k - rr * width
    row_key = (np.cumsum(h) - h)[owner] + rr
    col_key = (np.cumsum(w) - w)[owner] + cc
    a, b = np.zeros(m, dtype=np.int64), h.copy()
    a2, b2 = np.zeros(m, dtype=np.int64), w.copy()
    snr = np.ones(m)
    for _ in range(2):
        row_in = (rr >= a[owner]) & (rr < b[owner])
        col_in = (cc >= a2[owner]) & (cc < b2[owner])
        core = row_in & col_in
        n_core = np.bincount(owner, weights=core, minlength=m)
        snr = np.maximum(np.bincount(owner, weights=np.where(core, z, 0.0), minlength=m)
                         / np.maximum(n_core, 1) / G - 1.0, 1e-3)
        weight, off = _llr_weights(snr)
        llr = weight[owner] * z - (G * off)[owner]
        row_llr = np.bincount(row_key, weights=np.where(col_in, llr, 0.0), minlength=int(h.sum()))
        a, b = ragged_best_segments(row_llr, h)
        row_in = (rr >= a[owner]) & (rr < b[owner])
        col_llr = np.bincount(col_key, weights=np.where(row_in, llr, 0.0), minlength=int(w.sum()))
        a2, b2 = ragged_best_segments(col_llr, w)
    return a, b, a2, b2, snr


def kernel_rectangles(z, bases, strides, h, w):
    m = h.shape[0]
    a, b = np.zeros(m, dtype=np.int64), h.copy()
    a2, b2 = np.zeros(m, dtype=np.int64), w.copy()
    snr = np.ones(m)
    for _ in range(2):
        snr = split_kernels.core_snr(z, bases, strides, a, b, a2, b2, G)
        weight, off = _llr_weights(snr)
        split_kernels.refine_rectangles(z, bases, strides, h, w, weight, G * off, a, b, a2, b2)
    return a, b, a2, b2, snr


@pytest.mark.parametrize("seed", range(6))
def test_rectangles_match_the_numpy_rectangles_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    z, offsets, h, w = random_boxes(rng, 80)
    expected = reference_rectangles(z, offsets, h, w)
    got = kernel_rectangles(z, offsets[:-1], w, h, w)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(g, e)  # snr included: the same float, not a close one


def test_rectangles_of_a_band_view_equal_those_of_its_copy() -> None:
    """A band cut out of a wider box, read in place (stride > width), is trimmed as its copy is."""
    rng = np.random.default_rng(7)
    z, offsets, h, w = random_boxes(rng, 30)
    lo = np.minimum(rng.integers(0, 5, 30), w - 1)
    hi = np.maximum(lo + 1, w - rng.integers(0, 5, 30))
    copies = [z[offsets[i] : offsets[i + 1]].reshape(h[i], w[i])[:, lo[i] : hi[i]].ravel() for i in range(30)]
    sub_w = hi - lo
    sub_offsets = np.zeros(31, dtype=np.int64)
    np.cumsum(h * sub_w, out=sub_offsets[1:])
    expected = reference_rectangles(np.concatenate(copies), sub_offsets, h, sub_w)
    got = kernel_rectangles(z, offsets[:-1] + lo, w, h, sub_w)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(g, e)


def test_rectangle_of_a_burst_in_painted_overhang_is_the_burst() -> None:
    """Physics: a 10 dB burst on rows 3-7, columns 5-9 of a 12 × 16 box of noise is found there."""
    rng = np.random.default_rng(3)
    box = rng.gamma(G, 1.0, (12, 16))
    box[3:8, 5:10] += rng.gamma(G, 10.0, (5, 5))
    h, w = np.array([12]), np.array([16])
    a, b, a2, b2, snr = kernel_rectangles(box.ravel(), np.array([0]), w, h, w)
    assert (a[0], b[0], a2[0], b2[0]) == (3, 8, 5, 10)
    assert 7.0 < snr[0] < 14.0


def test_frame_sums_and_band_means_match_reduceat_over_gathered_frames() -> None:
    rng = np.random.default_rng(11)
    n_cols = 64
    epochs = [(0, rng.gamma(G, 1.0, (50, n_cols)).astype(np.float32)), (50, None),
              (80, rng.gamma(G, 1.0, (40, n_cols)).astype(np.float32))]
    f_a = rng.integers(-5, 125, 40)
    f_b = f_a + rng.integers(1, 9, 40)
    c_lo = rng.integers(0, 60, 40)
    c_hi = c_lo + rng.integers(1, n_cols - c_lo + 1)
    # reference: gather every frame (neutral where no epoch has cells), reduceat, cumsum, difference
    counts = f_b - f_a
    frames = np.repeat(f_a, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    cells = np.full((frames.shape[0], n_cols), G, dtype=np.float32)
    for (first, data), end in zip(epochs, (50, 80, 120), strict=True):  # frames 0-120; neutral outside
        idx = np.flatnonzero((frames >= first) & (frames < end))
        if data is not None:
            cells[idx] = data[frames[idx] - first]
    sums = np.add.reduceat(cells.astype(np.float64), np.cumsum(counts) - counts, axis=0)
    prefix = np.zeros((40, n_cols + 1))
    np.cumsum(sums, axis=1, out=prefix[:, 1:])
    rows = np.arange(40)
    expected = (prefix[rows, c_hi] - prefix[rows, c_lo]) / np.maximum((c_hi - c_lo) * counts, 1)
    got = np.zeros((40, n_cols))
    none = np.zeros((0, n_cols), dtype=np.float32)
    split_kernels.add_frames(none, int(f_a.min()), 0, G, f_a, f_b, got)
    for (first, data), end in zip(epochs, (50, 80, 120), strict=True):
        split_kernels.add_frames(none if data is None else data, first, end, G, f_a, f_b, got)
    split_kernels.add_frames(none, 120, int(f_b.max()), G, f_a, f_b, got)
    np.testing.assert_array_equal(got, sums)
    np.testing.assert_array_equal(split_kernels.band_means(got, c_lo, c_hi, counts), expected)
    # the per-column LLR segment of each row, as the ragged numpy segments gave it
    weight, off = _llr_weights(rng.uniform(0.1, 30.0, 40))
    offset = counts * 4 * off
    widths = c_hi - c_lo
    col_owner = np.repeat(rows, widths)
    col = c_lo[col_owner] + np.arange(widths.sum()) - np.repeat(np.cumsum(widths) - widths, widths)
    llr = weight[col_owner] * sums[col_owner, col] - offset[col_owner]
    a, b = ragged_best_segments(llr, widths)
    got_a, got_b = split_kernels.column_segments(sums, c_lo, c_hi, weight, offset)
    np.testing.assert_array_equal(got_a, a)
    np.testing.assert_array_equal(got_b, b)


def test_slot_gaps_and_change_points_match_the_numpy_search() -> None:
    rng = np.random.default_rng(21)
    k, width, half, search, span, flank, offset = 30, 640, 320, 192, 24, 48, 72
    energy = rng.exponential(1.0, (k, width)).astype(np.float32)
    for i in range(k):  # a burst ending and another starting around a guard period
        g0 = half + int(rng.integers(-150, 150))
        energy[i, : g0 - 12] *= np.float32(10.0 ** rng.uniform(0, 3))
        energy[i, g0 + 12 :] *= np.float32(10.0 ** rng.uniform(0, 3))
    sigma2 = rng.uniform(0.5, 1.5, k)
    prefix = np.zeros((k, width + 1))
    np.cumsum(energy, axis=1, out=prefix[:, 1:])
    lows = np.arange(half - search, half + search - span + 1)
    means = (prefix[:, lows + span] - prefix[:, lows]) / span
    lowest = np.argmin(means, axis=1)
    rows = np.arange(k)
    gap = means[rows, lowest] - sigma2
    centre = lows[lowest] + span // 2
    left = (prefix[rows, centre - offset] - prefix[rows, centre - offset - flank]) / flank - sigma2
    right = (prefix[rows, centre + offset + flank] - prefix[rows, centre + offset]) / flank - sigma2
    got = split_kernels.slot_gaps(energy, sigma2, half - search, half + search - span, span, flank, offset)
    for e, g in zip((gap, centre, left, right), got, strict=True):
        np.testing.assert_array_equal(g, e)
    w_left, off_left = _llr_weights(np.maximum(left, 0.0) / sigma2)
    w_right, off_right = _llr_weights(np.maximum(right, 0.0) / sigma2)
    split_at = np.where(rng.random(k) < 0.5, centre, half)
    split_at[:2] = (0, width)  # the whole window on one side
    positions = np.arange(width + 1)[None, :]
    steps = np.zeros((k, width + 1))
    np.cumsum((w_left / sigma2)[:, None] * energy - off_left[:, None], axis=1, out=steps[:, 1:])
    ends = np.argmax(np.where(positions <= split_at[:, None], steps, -np.inf), axis=1)
    np.cumsum((w_right / sigma2)[:, None] * energy - off_right[:, None], axis=1, out=steps[:, 1:])
    starts = np.argmin(np.where(positions >= split_at[:, None], steps, np.inf), axis=1)
    got_ends, got_starts = split_kernels.change_points(energy, w_left / sigma2, off_left, w_right / sigma2,
                                                       off_right, split_at)
    np.testing.assert_array_equal(got_ends, ends)
    np.testing.assert_array_equal(got_starts, starts)
    assert np.all(np.abs(centre - half) <= search)


def test_roll_rows_is_the_cyclic_gather_it_replaces() -> None:
    rng = np.random.default_rng(31)
    spectra = (rng.standard_normal((20, 64)) + 1j * rng.standard_normal((20, 64))).astype(np.complex64)
    shifts = rng.integers(-150, 150, 20)
    rel = np.fft.fftfreq(64, d=1.0 / 64).astype(np.int64)
    expected = spectra[np.arange(20)[:, None], (shifts[:, None] + rel[None, :]) % 64]
    got = split_kernels.roll_rows(spectra, shifts)
    assert got.dtype == np.complex64
    np.testing.assert_array_equal(got, expected)
    assert got[0, 0] == spectra[0, shifts[0] % 64]  # the shifted bin at 0 Hz


# -- the batch arithmetic of _measure_parts and _split_in_time, against the numpy it replaced --


def test_part_frames_is_the_shifted_gather_of_every_part_frame() -> None:
    rng = np.random.default_rng(41)
    n = 16
    epochs = [(100, rng.random((30, n), dtype=np.float32), rng.random(30, dtype=np.float32)),
              (130, rng.random((25, n), dtype=np.float32), rng.random(25, dtype=np.float32))]
    first = rng.integers(100, 150, 12)
    n_present = np.minimum(rng.integers(1, 9, 12), 155 - first)
    row0 = np.cumsum(n_present) - n_present
    frames = np.repeat(first, n_present) + np.arange(n_present.sum()) - np.repeat(row0, n_present)
    all_power = np.concatenate([p for _, p, _ in epochs])
    all_peak = np.concatenate([q for _, _, q in epochs])
    expected = np.fft.fftshift(all_power[frames - 100], axes=1)
    power = np.empty((frames.shape[0], n), dtype=np.float32)
    peaks = np.empty(frames.shape[0], dtype=np.float32)
    for ep_first, p, q in epochs:
        split_kernels.part_frames(p, q, ep_first, first, n_present, row0, power, peaks)
    np.testing.assert_array_equal(power, expected)
    np.testing.assert_array_equal(peaks, all_peak[frames - 100])


def test_edge_estimates_are_the_numpy_edges_they_replace() -> None:
    rng = np.random.default_rng(43)
    m, n = 200, 256
    window = np.hanning(n) ** 2
    two = np.concatenate((window, window)) / window.sum()
    prefix2 = np.concatenate(([0.0], np.cumsum(two)))
    suffix2 = prefix2[-1] - prefix2
    wide_noise = rng.uniform(1.0, 5.0, m)
    interior = wide_noise + rng.uniform(-1.0, 50.0, m)  # some plateaus under the noise
    edge = wide_noise[:, None] + rng.uniform(-0.3, 1.3, (m, 4)) * (interior - wide_noise)[:, None]
    edge[:3] = np.nan  # NaN sorts last, as numpy's searchsorted puts it
    inner_count = rng.integers(0, 4, m)
    n_rows = rng.integers(1, 12, m)
    frame_start = rng.integers(0, 10**6, m)
    # the old expressions
    t0 = frame_start.copy()
    t1 = frame_start + n_rows * n
    long = (n_rows >= 3) & (inner_count > 0)
    plateau = np.maximum(interior - wide_noise, 1e-30)
    x_start = np.clip((edge[:, 0] + edge[:, 1] - 2 * wide_noise) / plateau, 0.0, 2.0)
    x_end = np.clip((edge[:, 2] + edge[:, 3] - 2 * wide_noise) / plateau, 0.0, 2.0)
    t0 = np.where(long, frame_start - n + np.searchsorted(-suffix2, -x_start, side="left"), t0)
    t1 = np.where(long, frame_start + (n_rows - 1) * n + np.searchsorted(prefix2, x_end, side="left"), t1)
    got = split_kernels.edge_estimates(edge, interior, inner_count, wide_noise, n_rows, frame_start, n,
                                       -suffix2, prefix2)
    for g, e in zip(got, (t0, t1, long), strict=True):
        np.testing.assert_array_equal(g, e)
    assert long.sum() > 50 and (x_start[long] == 2.0).any() and (x_end[long] == 0.0).any()


def test_part_levels_are_the_numpy_levels_they_replace() -> None:
    rng = np.random.default_rng(47)
    m, n, bin_hz = 300, 256, 9375.0
    t0 = rng.integers(0, 10**6, m)
    t1 = t0 + rng.integers(-3, 4000, m)
    t0_fixed = np.where(rng.random(m) < 0.3, t0 + 17, -1)
    t1_fixed = np.where(rng.random(m) < 0.3, t1 - 5, -1)
    n_rows = rng.integers(0, 40, m)
    total = rng.uniform(-1.0, 1e4, m)
    k_lo = rng.integers(0, 128, m)
    k_hi = k_lo + rng.integers(-1, 100, m)
    noise_band = rng.uniform(0.0, 100.0, m)
    lo = rng.integers(0, 200, m)
    hi = lo + rng.integers(-1, 56, m)
    to_power = 1.0 / (n * n * 0.87)
    a = np.where(t0_fixed >= 0, t0_fixed, t0)
    length = np.where(t1_fixed >= 0, t1_fixed, t1) - a
    bandwidth = (k_hi - k_lo + 1) * bin_hz
    fill = np.clip(length / np.maximum(n_rows * n, 1), 1e-3, None)
    expected = (a, length, bandwidth, total * to_power / np.minimum(fill, 1.0),
                noise_band / np.maximum(hi - lo, 1) * to_power / bin_hz,
                (bandwidth <= 450e3) & (length >= 200e-6 * 2.4e6) & (total > 0))
    got = split_kernels.part_levels(t0, t1, t0_fixed, t1_fixed, n_rows, n, total, k_lo, k_hi, noise_band, lo, hi,
                                    bin_hz, to_power, 450e3, 200e-6 * 2.4e6)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


def test_slot_grid_and_states_are_the_numpy_grid_they_replace() -> None:
    rng = np.random.default_rng(53)
    c = 30
    slot, guard = SLOT, GUARD
    t0 = rng.integers(0, 10**6, c)
    k = rng.integers(1, 6, c)
    before = rng.integers(0, 2, c)
    total = np.maximum(k + before + rng.integers(0, 2, c), 2)
    owner, j, centre, first_bound, slot_first, slot_start = split_kernels.slot_grid(t0, k, before, total, slot,
                                                                                    guard / 2)
    # the old flat-array grid
    n_bounds = total - 1
    e_owner = np.repeat(np.arange(c), n_bounds)
    e_first_bound = np.cumsum(n_bounds) - n_bounds
    e_j = np.arange(e_owner.size) - e_first_bound[e_owner] + 1 - before[e_owner]
    e_centre = t0[e_owner] + np.rint(e_j * slot - guard / 2).astype(np.int64)
    e_slot_first = np.cumsum(total) - total
    slot_owner = np.repeat(np.arange(c), total)
    s_idx = np.arange(slot_owner.size) - e_slot_first[slot_owner]
    e_slot_start = (t0 - before * slot)[slot_owner] + s_idx * slot
    for g, e in zip((owner, j, centre, first_bound, slot_first, slot_start),
                    (e_owner, e_j, e_centre, e_first_bound, e_slot_first, e_slot_start), strict=True):
        np.testing.assert_array_equal(g, e)
    slot_snr = rng.choice([0.5, 2.0, 30.0, 300.0, 0.01], slot_owner.size)
    strongest = np.maximum.reduceat(slot_snr, e_slot_first)
    slot_on = (slot_snr > 1.0) & (slot_snr > 0.01 * strongest[slot_owner])
    on_left = slot_on[e_slot_first[e_owner] + e_j - 1 + before[e_owner]]
    on_right = slot_on[e_slot_first[e_owner] + e_j + before[e_owner]]
    step = (on_left & ~on_right & ~(e_j >= k[e_owner])) | (~on_left & on_right & ~(e_j <= 0))
    got = split_kernels.slot_states(slot_snr, slot_first, total, owner, j, before, k, 1.0, 0.01)
    for g, e in zip(got, (slot_on, on_left, on_right, on_left & on_right, step), strict=True):
        np.testing.assert_array_equal(g, e)
    assert step.any() and (on_left & on_right).any()


def reference_time_pieces(chosen, candidates, first_bound, slot_first, n_slots, slot_on, slot_snr, cut, on_left,
                          on_right, left_end, right_start, centre, before, after):
    """The Python loop of ``_split_in_time`` that assembled the pieces (before time_pieces)."""
    rows = []
    for c in chosen:
        i = int(candidates[c])
        b0 = int(first_bound[c])
        nb = int(n_slots[c] - 1)
        on = slot_on[slot_first[c] : slot_first[c] + nb + 1].tolist()
        snrs = slot_snr[slot_first[c] : slot_first[c] + nb + 1].tolist()
        start = -1
        run = [0]
        for q in range(nb):
            b = b0 + q
            if cut[b]:
                if any(on[s] for s in run):
                    stop = int(left_end[b]) if on_left[b] else int(centre[b])
                    rows.append((i, start, stop, max(snrs[s] for s in run), bool(before[i] and on[0]), False))
                start = int(right_start[b]) if on_right[b] else int(centre[b])
                run = []
            run.append(q + 1)
        if any(on[s] for s in run):
            rows.append((i, start, -1, max(snrs[s] for s in run), bool(start < 0 and before[i] and on[0]),
                         bool(after[i] and on[-1])))
    return rows


def test_time_pieces_are_the_runs_the_python_loop_made() -> None:
    rng = np.random.default_rng(59)
    m, c = 50, 25
    candidates = np.sort(rng.choice(m, c, replace=False))
    n_slots = rng.integers(2, 7, c)
    first_bound = np.cumsum(n_slots - 1) - (n_slots - 1)
    slot_first = np.cumsum(n_slots) - n_slots
    n_b, n_s = int((n_slots - 1).sum()), int(n_slots.sum())
    slot_on = rng.random(n_s) < 0.7
    slot_snr = rng.choice([1.5, 4.0, 40.0], n_s)  # ties: the first of equal maxima
    cut = rng.random(n_b) < 0.6
    on_left, on_right = rng.random(n_b) < 0.7, rng.random(n_b) < 0.7
    centre = rng.integers(10**5, 10**6, n_b)
    left_end, right_start = centre - rng.integers(0, 50, n_b), centre + rng.integers(0, 50, n_b)
    before, after = rng.integers(0, 2, m), rng.integers(0, 2, m)
    chosen = np.flatnonzero(rng.random(c) < 0.8)
    args = (chosen, candidates, first_bound, slot_first, n_slots, slot_on, slot_snr, cut, on_left, on_right,
            left_end, right_start, centre, before, after)
    rows = reference_time_pieces(*args)
    got = split_kernels.time_pieces(*args)
    assert len(rows) > 20
    expected = [np.array([r[q] for r in rows]) for q in (0, 1, 2, 3, 4, 5)]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


def test_slot_candidates_are_the_numpy_selection_they_replace() -> None:
    rng = np.random.default_rng(61)
    m = 300
    slot, guard = SLOT, GUARD
    reach = 0.7
    t0 = rng.integers(10**5, 10**6, m)
    length = rng.integers(100, 6 * 1400, m)
    box_start = t0 - rng.integers(0, 2000, m)
    box_end = t0 + length + rng.integers(0, 2000, m)
    bandwidth = rng.uniform(100e3, 1.2e6, m)
    total = rng.uniform(-1.0, 10.0, m)
    truncated = rng.random(m) < 0.1
    t0_fixed = np.where(rng.random(m) < 0.1, t0, -1)
    t1_fixed = np.where(rng.random(m) < 0.1, t0 + length, -1)
    line_ratio = np.where(rng.random(m) < 0.3, np.nan, rng.uniform(0.0, 30.0, m))
    lo = rng.integers(0, 200, m)
    hi = lo + rng.integers(4, 56, m)
    # the old numpy selection
    k = np.maximum(np.rint((length + guard) / slot).astype(np.int64), 1)
    before = np.clip(np.floor((t0 - box_start) / slot + reach), 0, 1).astype(np.int64)
    after = np.clip(np.floor((box_end - t0 - length) / slot + reach), 0, 1).astype(np.int64)
    eligible = ((bandwidth <= 1e6) & (total > 0) & ~truncated & (t0_fixed < 0) & (t1_fixed < 0)
                & (k + before + after <= 16))
    gsm_like = (k >= 2) | (line_ratio >= 15.0)
    probe_before = np.flatnonzero(eligible & gsm_like & (before > 0))
    probe_after = np.flatnonzero(eligible & gsm_like & (after > 0))
    probe = np.concatenate((probe_before, probe_after))
    first = np.concatenate((t0[probe_before] + -slot, t0[probe_after] + k[probe_after] * slot))
    before[~gsm_like] = 0
    after[~gsm_like] = 0
    got = split_kernels.slot_candidates(t0, length, box_start, box_end, bandwidth, total, truncated, t0_fixed,
                                        t1_fixed, line_ratio, slot, guard, reach, 1e6, 16, 15.0, lo, hi, 4)
    expected = (k, before, after, eligible, probe, first, lo[probe] // 4, hi[probe] // 4)
    for g, e in zip(got[:-1], expected, strict=True):
        np.testing.assert_array_equal(g, e)
    assert got[-1] == probe_before.size > 0 and probe_after.size > 0
