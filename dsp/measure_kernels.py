"""Compiled kernels of the burst measurement (:meth:`dsp.detector.BurstDetector._measure_parts`).

A batch holds ~50 bursts of a few frames each, so the numpy version of the measurement
spent most of its time in per-call overhead on small (m, 256) arrays and in temporaries
(masks, gathers, padded copies). These kernels do the per-burst loops in one pass each.
Every one reproduces the float operations of the numpy expression it replaces, in the
same order, so the detections do not change by a rounding step: sums that numpy forms
pairwise (``np.sum``, ``add.reduce``) use :func:`pairwise_sum_f64` / :func:`pairwise_sum_f32`,
numpy's own pairwise algorithm (8 accumulators, blocks of 128); cumulative sums are
sequential, as ``np.cumsum`` is. The FFTs are :mod:`dsp.transforms`' (FFTW).
"""

from __future__ import annotations

import numba
import numpy as np

_PW_BLOCK = 128  # numpy's PW_BLOCKSIZE (numpy/_core/src/umath/loops_utils.h.src)


@numba.njit(cache=True, nogil=True)
def _half(n):
    """Where numpy's pairwise_sum splits n > 128: half, rounded down to a multiple of the unroll factor 8."""
    n2 = n // 2
    return n2 - n2 % 8


@numba.njit(cache=True, nogil=True)
def _leaf(a, start, n, one):
    """numpy's pairwise_sum for 1 <= n <= 128: 8 accumulators, then the remainder in order.
    ``one`` (1.0 of the accumulator's type) sets the precision: ``a[k] * one`` is exact."""
    if n < 8:
        s = a[start] * one
        for i in range(1, n):
            s += a[start + i] * one
        return s
    r0 = a[start] * one
    r1 = a[start + 1] * one
    r2 = a[start + 2] * one
    r3 = a[start + 3] * one
    r4 = a[start + 4] * one
    r5 = a[start + 5] * one
    r6 = a[start + 6] * one
    r7 = a[start + 7] * one
    i = 8
    end = n - n % 8
    while i < end:
        j = start + i
        r0 += a[j] * one
        r1 += a[j + 1] * one
        r2 += a[j + 2] * one
        r3 += a[j + 3] * one
        r4 += a[j + 4] * one
        r5 += a[j + 5] * one
        r6 += a[j + 6] * one
        r7 += a[j + 7] * one
        i += 8
    s = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        s += a[start + i] * one
        i += 1
    return s


@numba.njit(cache=True, nogil=True)
def _split_1(a, start, n, one):
    """Exact for n <= 240: one split into leaves."""
    if n <= _PW_BLOCK:
        return _leaf(a, start, n, one)
    n2 = _half(n)
    return _leaf(a, start, n2, one) + _leaf(a, start + n2, n - n2, one)


@numba.njit(cache=True, nogil=True)
def _split_2(a, start, n, one):
    """Exact for n <= 480: two levels of splits."""
    if n <= _PW_BLOCK:
        return _leaf(a, start, n, one)
    n2 = _half(n)
    return _split_1(a, start, n2, one) + _split_1(a, start + n2, n - n2, one)


@numba.njit(cache=True, nogil=True)
def _stacked(a, start, n, one):
    """Any n: the recursion of numpy's pairwise_sum on explicit stacks (cached numba code must not recurse)."""
    node_start = np.empty(128, dtype=np.int64)
    node_n = np.empty(128, dtype=np.int64)
    node_done = np.zeros(128, dtype=np.bool_)
    values = np.full(128, one)
    top = 0
    n_values = 0
    node_start[0] = start
    node_n[0] = n
    node_done[0] = False
    while top >= 0:
        s0 = node_start[top]
        k = node_n[top]
        if k <= 480:
            values[n_values] = _split_2(a, s0, k, one)
            n_values += 1
            top -= 1
        elif node_done[top]:
            values[n_values - 2] = values[n_values - 2] + values[n_values - 1]
            n_values -= 1
            top -= 1
        else:
            k2 = _half(k)
            node_done[top] = True
            node_start[top + 1] = s0 + k2  # right half, evaluated second
            node_n[top + 1] = k - k2
            node_done[top + 1] = False
            node_start[top + 2] = s0  # left half, evaluated first
            node_n[top + 2] = k2
            node_done[top + 2] = False
            top += 2
    return values[0]


@numba.njit(cache=True, nogil=True)
def _pairwise_sum(a, start, n, one):
    if n <= 480:
        return _split_2(a, start, n, one)
    return _stacked(a, start, n, one)


@numba.njit(cache=True, nogil=True)
def pairwise_sum_f64(a, start, n):
    """``np.sum(a[start:start + n].astype(np.float64))`` exactly: numpy's pairwise summation (8 accumulators, blocks of 128)."""
    if n <= 0:
        return np.float64(0.0)
    return _pairwise_sum(a, start, n, np.float64(1.0))


@numba.njit(cache=True, nogil=True)
def pairwise_sum_f32(a, start, n):
    """``np.sum(a[start:start + n])`` of float32 ``a`` exactly: numpy's pairwise summation (8 accumulators, blocks of 128)."""
    if n <= 0:
        return np.float32(0.0)
    return _pairwise_sum(a, start, n, np.float32(1.0))


@numba.njit(cache=True, nogil=True)
def zero_outside(starts, lengths, cover_start, cover_end, out):
    """Zero what :func:`gather_windows` will not write: every row of ``out`` but stream samples
    ``[starts[r], starts[r] + lengths[r])`` that lie in ``[cover_start, cover_end)`` (the history)."""
    width = out.shape[1]
    for r in range(starts.shape[0]):
        s0 = starts[r]
        a = min(max(cover_start - s0, 0), width)
        b = min(max(min(lengths[r], cover_end - s0), a), width)
        row = out[r]
        row[:a] = 0.0
        row[b:] = 0.0


@numba.njit(cache=True, nogil=True)
def gather_windows(samples, sample_start, starts, lengths, out):
    """Copy stream samples ``[starts[r], starts[r] + lengths[r])`` that lie in one epoch's ``samples``
    (stream index ``sample_start`` onwards) to ``out[r]`` (rest of the row untouched: see
    :func:`zero_outside`). Slice copies (memcpy): 2.5x faster than an element loop over complex64."""
    n = samples.shape[0]
    for r in range(starts.shape[0]):
        s0 = starts[r]
        a = max(s0, sample_start)
        b = max(min(s0 + lengths[r], sample_start + n), a)
        out[r, a - s0 : b - s0] = samples[a - sample_start : b - sample_start]


@numba.njit(cache=True, nogil=True)
def gather_windows_cu8(data, sample_start, starts, lengths, offset, scale, out_iq):
    """:func:`gather_windows` from one epoch held as the receiver's cu8 bytes (``data``: 2 per
    sample) into ``out_iq``, the float32 view of the complex rows (I, Q interleaved): each value
    converted as :func:`dsp.fastgrid.cu8_to_float32` does it (a contiguous loop: it vectorizes,
    and reads a quarter of the bytes a copy of samples does)."""
    n = data.shape[0] // 2
    for r in range(starts.shape[0]):
        s0 = starts[r]
        a = max(s0, sample_start)
        b = max(min(s0 + lengths[r], sample_start + n), a)
        src = data[2 * (a - sample_start) : 2 * (b - sample_start)]  # slices: see labelling._shift_add
        dst = out_iq[r, 2 * (a - s0) : 2 * (b - s0)]
        for k in range(src.shape[0]):
            dst[k] = (np.float32(src[k]) - offset) / scale


@numba.njit(cache=True, nogil=True)
def _row_sums_f32(a, r0, n_rows, out, lanes):
    """``out[b] = pairwise_sum_f32(a[:, b], r0, n_rows)`` for every column b, a row at a time (the
    8 accumulators of numpy's pairwise sum are 8 rows of ``lanes``); columns one by one past 128 rows."""
    n = a.shape[1]
    if n_rows <= 0:
        return
    if n_rows < 8:
        for b in range(n):
            out[b] = a[r0, b]
        for q in range(1, n_rows):
            for b in range(n):
                out[b] += a[r0 + q, b]
        return
    if n_rows > _PW_BLOCK:
        column = np.empty(n_rows, dtype=np.float32)  # contiguous: one compiled pairwise_sum_f32 for all callers
        for b in range(n):
            for q in range(n_rows):
                column[q] = a[r0 + q, b]
            out[b] = pairwise_sum_f32(column, 0, n_rows)
        return
    for j in range(8):
        for b in range(n):
            lanes[j, b] = a[r0 + j, b]
    q = 8
    end = n_rows - n_rows % 8
    while q < end:
        for j in range(8):
            for b in range(n):
                lanes[j, b] += a[r0 + q + j, b]
        q += 8
    for b in range(n):
        out[b] = ((lanes[0, b] + lanes[1, b]) + (lanes[2, b] + lanes[3, b])) + (
            (lanes[4, b] + lanes[5, b]) + (lanes[6, b] + lanes[7, b]))
    while q < n_rows:
        for b in range(n):
            out[b] += a[r0 + q, b]
        q += 1


@numba.njit(cache=True, nogil=True)
def frame_sums(power, peaks, row0, n_present, rel0, n_rows, lo_w, hi_w, lo, hi, noise_cell, bins_per_cell):
    """Per part, from its frames' shifted spectra ``power`` (rows ``row0[i]`` on, ``n_present[i]`` of
    them, the first at frame ``rel0[i]`` relative to the rectangle, which has ``n_rows[i]``):

    band energy (float64 sum over bins [lo_w, hi_w), as ``np.add.reduceat``) of frames -1, 0,
    n_rows - 1 and n_rows (``edge``, the band's noise where a frame is missing); mean band energy
    of the inner frames 1 .. n_rows - 2 and their count; the mean spectrum of frames 0 .. n_rows - 1
    (float32 sum, as ``reduceat`` along frames forms it: the first frame plus the pairwise sum of
    the others); the largest I/Q peak of all of them; the noise of
    bins [lo_w, hi_w) and [lo, hi) (differences of the sequential cumulative sum of the noise per
    bin, ``noise_cell[i, b // bins_per_cell]``: a cell's noise spread over its bins, never repeated
    into an (m, n) array).
    """
    m = row0.shape[0]
    n = power.shape[1]
    edge = np.empty((m, 4), dtype=np.float64)
    interior = np.empty(m, dtype=np.float64)
    inner_count = np.zeros(m, dtype=np.int64)
    spectra = np.zeros((m, n), dtype=np.float64)
    clip_peak = np.zeros(m, dtype=np.float64)
    wide_noise = np.empty(m, dtype=np.float64)
    noise_band = np.empty(m, dtype=np.float64)
    cum = np.empty(n + 1, dtype=np.float64)
    segment = np.empty(n, dtype=np.float64)
    rest = np.empty(n, dtype=np.float32)
    lanes = np.empty((8, n), dtype=np.float32)
    for i in range(m):
        cum[0] = 0.0
        c = 0.0
        for b in range(max(hi_w[i], hi[i], lo_w[i], lo[i])):  # the sums are read up to there
            c += noise_cell[i, b // bins_per_cell]
            cum[b + 1] = c
        wide_noise[i] = cum[hi_w[i]] - cum[lo_w[i]]
        noise_band[i] = cum[hi[i]] - cum[lo[i]]
        for j in range(4):
            edge[i, j] = wide_noise[i]
        inner_sum = 0.0
        n_inner = 0
        n_body = 0
        body0 = 0
        peak = 0.0
        span = hi_w[i] - lo_w[i]
        for q in range(n_present[i]):
            r = row0[i] + q
            rel = rel0[i] + q
            if span > 0:
                for b in range(span - 1):  # float64 copy: one compiled pairwise_sum_f64 for all callers
                    segment[b] = power[r, lo_w[i] + 1 + b]
                e = np.float64(power[r, lo_w[i]]) + pairwise_sum_f64(segment, 0, span - 1)
            else:  # reduceat of an empty segment is its first element
                e = np.float64(power[r, lo_w[i]]) if lo_w[i] < n else 0.0
            if rel == -1:
                edge[i, 0] = e
            if rel == 0:
                edge[i, 1] = e
            if rel == n_rows[i] - 1:
                edge[i, 2] = e
            if rel == n_rows[i]:
                edge[i, 3] = e
            if rel >= 1 and rel <= n_rows[i] - 2:
                inner_sum += e
                n_inner += 1
            if rel >= 0 and rel < n_rows[i]:
                if n_body == 0:
                    body0 = r
                n_body += 1
            p = np.float64(peaks[r])
            if p > peak:
                peak = p
        inner_count[i] = n_inner
        interior[i] = inner_sum / max(n_inner, 1)
        if n_body:
            _row_sums_f32(power, body0 + 1, n_body - 1, rest, lanes)
            d = np.float64(n_body)
            for b in range(n):
                acc = power[body0, b] + rest[b] if n_body > 1 else power[body0, b]
                spectra[i, b] = np.float64(acc) / d
        clip_peak[i] = peak
    return edge, interior, inner_count, spectra, clip_peak, wide_noise, noise_band


@numba.njit(cache=True, nogil=True)
def spectrum_stats(spectra, noise_cell, bins_per_cell, usable, below, above, inside, lo_m, hi_m, bin_freqs_hz,
                   positive):
    """Per part: the in-band excess spectrum and its statistics (``BurstDetector._measure_parts``).

    The noise of bin ``b`` is its cell's, ``noise_cell[i, b // bins_per_cell]``.

    ``positive`` (m, n) receives the in-band excess clipped at 0; returns total in-band excess,
    power centroid (Hz), the bins where the cumulative excess crosses 0.5 % and 99.5 % (k_lo,
    k_hi), and the flatness (mean over max of the 3-bin smoothed excess inside the 99 % band
    less a tenth each side).
    """
    m, n = spectra.shape
    total = np.empty(m, dtype=np.float64)
    centroid = np.empty(m, dtype=np.float64)
    k_lo = np.empty(m, dtype=np.int64)
    k_hi = np.empty(m, dtype=np.int64)
    flatness = np.empty(m, dtype=np.float64)
    excess = np.empty(n, dtype=np.float64)
    band = np.empty(n, dtype=np.float64)
    tmp = np.empty(n, dtype=np.float64)
    fill = np.empty(max(below.shape[0], above.shape[0], 1), dtype=np.float64)
    for i in range(m):
        for cell in range(n // bins_per_cell):
            noise = noise_cell[i, cell]
            for b in range(cell * bins_per_cell, (cell + 1) * bins_per_cell):
                excess[b] = spectra[i, b] - noise if usable[b] else 0.0
        if inside.shape[0]:
            for q in range(below.shape[0]):
                fill[q] = excess[below[q]]
            mean_below = pairwise_sum_f64(fill, 0, below.shape[0]) / below.shape[0]
            for q in range(above.shape[0]):
                fill[q] = excess[above[q]]
            mean_above = pairwise_sum_f64(fill, 0, above.shape[0]) / above.shape[0]
            bridged = 0.5 * (mean_below + mean_above)
            for q in range(inside.shape[0]):
                excess[inside[q]] = bridged
        for b in range(n):
            band[b] = excess[b] if (b >= lo_m[i] and b < hi_m[i]) else 0.0
        tot = pairwise_sum_f64(band, 0, n)
        total[i] = tot
        for b in range(n):
            positive[i, b] = max(band[b], 0.0)
        weight = max(pairwise_sum_f64(positive[i], 0, n), 1e-300)
        for b in range(n):
            tmp[b] = positive[i, b] * bin_freqs_hz[b]
        centroid[i] = pairwise_sum_f64(tmp, 0, n) / weight
        safe = tot if tot > 0 else 1.0
        c = 0.0
        lo_k = -1
        hi_k = -1
        for b in range(n):
            c += band[b]
            frac = c / safe
            if lo_k < 0 and frac >= 0.005:
                lo_k = b
            if hi_k < 0 and frac >= 0.995:
                hi_k = b
                break
        lo_k = max(lo_k, 0)
        hi_k = max(hi_k, 0, lo_k)
        k_lo[i] = lo_k
        k_hi[i] = hi_k
        trim = (hi_k - lo_k) // 10
        a = lo_k + trim
        z = hi_k - trim
        n_inner = 0
        top = 0.0
        for b in range(n):
            if b >= a and b <= z:
                if b == 0 or b == n - 1:
                    s = positive[i, b]
                else:
                    s = (positive[i, b - 1] + positive[i, b] + positive[i, b + 1]) / 3.0
                tmp[b] = s
                n_inner += 1
                if s > top:
                    top = s
            else:
                tmp[b] = 0.0
        mean = pairwise_sum_f64(tmp, 0, n) / max(n_inner, 1)
        flatness[i] = mean / top if top > 0 else 0.0
    return total, centroid, k_lo, k_hi, flatness


@numba.njit(cache=True, nogil=True)
def keep_band_bins(spectrum, grid_bin, lo, hi, usable, scale):
    """Zero, in place, the FFT bins of row r whose grid bin is outside [lo[r % m], hi[r % m]) or not usable
    (rows r and r + m belong to part r), and multiply the others by ``scale`` (float32; 1/n for
    an inverse FFT that is not normalised again: :meth:`dsp.transforms.RowFFT.inverse`).

    Each complex64 bin is ANDed, as 64 bits, with all ones or all zeros (0 + 0j, as storing 0.0
    gives): branch-free, so the loop vectorizes (5x faster than a test and a store per bin)."""
    m = lo.shape[0]
    n_fft = spectrum.shape[1]
    usable_at = np.empty(n_fft, dtype=np.bool_)
    for j in range(n_fft):
        usable_at[j] = usable[grid_bin[j]]
    bits = spectrum.view(np.uint64)
    parts = spectrum.view(np.float32)
    for r in range(spectrum.shape[0]):
        p = r % m
        a = lo[p]
        b = hi[p]
        row = bits[r]
        for j in range(n_fft):
            k = grid_bin[j]
            keep = np.uint64(usable_at[j] & (k >= a) & (k < b))
            row[j] = row[j] & (np.uint64(0) - keep)
        if scale != 1.0:
            values = parts[r]
            for j in range(2 * n_fft):
                values[j] = values[j] * scale


@numba.njit(cache=True, nogil=True)
def band_noise(noise_cell, bins_per_cell, per_grid, lo, hi, scale):
    """Noise power per sample of the kept band of each row: ``max(sum(noise_bin * per_grid * in_band) / scale, 1e-30)``,
    ``noise_bin[i, b]`` being ``noise_cell[i, b // bins_per_cell]``."""
    m = noise_cell.shape[0]
    n = per_grid.shape[0]
    out = np.empty(m, dtype=np.float64)
    row = np.empty(n, dtype=np.float64)
    for i in range(m):
        for b in range(n):
            row[b] = noise_cell[i, b // bins_per_cell] * per_grid[b] if (b >= lo[i] and b < hi[i]) else 0.0
        out[i] = max(pairwise_sum_f64(row, 0, n) / scale, 1e-30)
    return out


@numba.njit(cache=True, nogil=True)
def edge_change_points(filtered, width, coef, off, one_sided):
    """Change points of the log-likelihood ratio ``float32(coef·|x|² - off)`` of the first ``width``
    samples of each row of ``filtered`` (2m rows: m start windows, then m stop windows).

    ``one_sided``: start = first minimum of the float32 prefix sum (index 0 .. width) for the
    first m rows, stop = first maximum for the others. Otherwise the maximum-sum segment
    ``[start, stop)`` of every row (float64 prefix sums, as ``detector._best_segments``).
    Returns (start, stop) per row.
    """
    rows = filtered.shape[0]
    m = rows // 2
    start = np.zeros(rows, dtype=np.int64)
    stop = np.zeros(rows, dtype=np.int64)
    prefix = np.empty(width + 1, dtype=np.float64)
    for r in range(rows):
        c = coef[r]
        o = off[r]
        if one_sided:
            s = np.float32(0.0)
            best = s
            k = 0
            lowest = r < m
            for t in range(width):
                x = filtered[r, t]
                e = x.real * x.real + x.imag * x.imag
                s += np.float32(c * np.float64(e) - o)
                if (lowest and s < best) or (not lowest and s > best):
                    best = s
                    k = t + 1
            start[r] = k
            stop[r] = k
        else:
            acc = 0.0
            prefix[0] = 0.0
            low = 0.0
            best_gain = -np.inf
            b = 1
            for t in range(width):
                x = filtered[r, t]
                e = x.real * x.real + x.imag * x.imag
                acc += np.float64(np.float32(c * np.float64(e) - o))
                prefix[t + 1] = acc
                low = min(low, prefix[t])
                gain = acc - low
                if gain > best_gain:
                    best_gain = gain
                    b = t + 1
            a = 0
            for t in range(b):
                if prefix[t] < prefix[a]:
                    a = t
            start[r] = a
            stop[r] = b
    return start, stop


@numba.njit(cache=True, nogil=True)
def gmsk_band(spectrum, offset_bins, rel, rel_hz, band_rel_hz, half_band_hz, scale, out):
    """The ``out.shape[1]`` bins around ``offset_bins[r]`` of each row of ``spectrum`` (natural order of
    the small FFT: bin q of ``out`` is ``rel[q]`` bins from the offset) times ``scale`` (float32),
    zero where ``|rel_hz[q] - band_rel_hz[r]| > half_band_hz[r]``."""
    span = spectrum.shape[1]
    for r in range(out.shape[0]):
        row = out[r]
        for q in range(out.shape[1]):
            if abs(rel_hz[q] - band_rel_hz[r]) <= half_band_hz[r]:
                x = spectrum[r, (offset_bins[r] + rel[q]) % span]
                row[q] = np.complex64(complex(x.real * scale, x.imag * scale))
            else:
                row[q] = 0.0


@numba.njit(cache=True, nogil=True)
def _magnitude(z):
    """|z| of a complex64 as numpy's SIMD loop forms it (larger · sqrt(fma(r, r, 1)), r = smaller /
    larger, float32; the fused multiply-add done in float64, where r·r is exact): bit for bit
    ``np.abs`` on this machine's AVX-512/FMA path, where numba's own ``abs`` rounds differently."""
    a = abs(z.real)
    b = abs(z.imag)
    larger = max(a, b)
    if larger == 0.0:
        return np.float32(0.0)
    ratio = np.float32(min(a, b) / larger)
    return np.float32(np.sqrt(np.float32(np.float64(ratio) * np.float64(ratio) + 1.0))) * larger


@numba.njit(cache=True, nogil=True)
def gmsk_line_peaks(spectrum, half, centres_hz, twice_guess_hz, reach_hz):
    """The strongest line pair of each row near its guess (``gmsk_line_frequencies``).

    ``spectrum``: FFT of the squared bursts, (k, n_fft) natural order, complex64. The score of
    line-pair centre j (shifted order) is min(|X|²) of the lines R_b/2 (``half`` bins) either side;
    scores with |centres_hz[j] - twice_guess_hz[r]| <= reach_hz are searched (only theirs are
    formed: a sixth of the row). Returns the index of the first largest score, the float32 sum of
    the searched scores (numpy's pairwise order over the row, others counting 0), their count,
    and the scores at the peak and either side of it.
    """
    k, n_fft = spectrum.shape
    width = n_fft - 2 * half
    shift = n_fft // 2
    masked = np.empty(width, dtype=np.float32)
    best = np.empty(k, dtype=np.int64)
    sums = np.empty(k, dtype=np.float32)
    counts = np.empty(k, dtype=np.int64)
    peak = np.empty(k, dtype=np.float32)
    left = np.empty(k, dtype=np.float32)
    right = np.empty(k, dtype=np.float32)
    for r in range(k):
        top = -np.inf
        kk = 0
        n_in = 0
        for j in range(width):
            if abs(centres_hz[j] - twice_guess_hz[r]) <= reach_hz:
                masked[j] = _line_pair_score(spectrum, r, j, shift, half, n_fft)
                n_in += 1
                if masked[j] > top:
                    top = masked[j]
                    kk = j
            else:
                masked[j] = 0.0
        best[r] = kk
        sums[r] = pairwise_sum_f32(masked, 0, width)
        counts[r] = n_in
        peak[r] = _line_pair_score(spectrum, r, kk, shift, half, n_fft)
        left[r] = _line_pair_score(spectrum, r, max(kk - 1, 0), shift, half, n_fft)
        right[r] = _line_pair_score(spectrum, r, min(kk + 1, width - 1), shift, half, n_fft)
    return best, sums, counts, peak, left, right


@numba.njit(cache=True, nogil=True)
def _line_pair_score(spectrum, r, j, shift, half, n_fft):
    """min(|X|²) of the two lines of shifted centre j (fftshift: shifted bin j is natural bin j + n/2)."""
    ia = j + shift
    if ia >= n_fft:
        ia -= n_fft
    ib = ia + 2 * half
    if ib >= n_fft:
        ib -= n_fft
    a = _magnitude(spectrum[r, ia])
    b = _magnitude(spectrum[r, ib])
    pa = a * a
    pb = b * b
    return pa if pa <= pb else pb


@numba.njit(cache=True, nogil=True)
def _mean_power(filtered, r, lo, hi):
    """Mean power of ``filtered[r, lo:hi]`` (0 when empty), summed in order."""
    acc = 0.0
    for t in range(lo, hi):
        x = filtered[r, t]
        acc += x.real * x.real + x.imag * x.imag
    return acc / max(hi - lo, 1)


@numba.njit(cache=True, nogil=True)
def _smoothed(filtered, r, k, half):
    """Mean power of ``filtered[r]`` over ``[k - half, k + half)`` (clipped to the row)."""
    return _mean_power(filtered, r, max(k - half, 0), min(k + half, filtered.shape[1]))


@numba.njit(cache=True, nogil=True)
def half_power_edges(filtered, width, start, stop, sigma2, one_sided, min_plateau_snr, half, max_shift):
    """Move the change points of :func:`edge_change_points` of strong bursts to the half-power
    (-3 dB) points of their plateau.

    The band filter keeps whole FFT bins (a brick wall): its impulse response rings for tens
    of microseconds, ~1/(pi·B·t)² in power, so a burst 45 dB above the noise spreads energy
    that the change point counts 40-60 µs before it starts and after it stops. The plateau
    (mean power over the burst's part of the window, its first quarter left out for the
    ramp) sets the level; the edge is the first (start rows, the first half) or last (stop
    rows) sample within ``max_shift`` of the change point, inward, whose power averaged over
    ±``half`` samples reaches half of it. Bursts whose plateau is under ``min_plateau_snr``
    times the noise ``sigma2`` keep their change points (the ringing is then under the noise)."""
    rows = filtered.shape[0]
    m = rows // 2
    out_start = start.copy()
    out_stop = stop.copy()
    for r in range(rows):
        if r < m:
            cp = start[r]
            end = width if one_sided else stop[r]
            first = cp + (end - cp) // 4
            if end - first < 2 * half:
                continue
            plateau = _mean_power(filtered, r, first, end)
            if plateau < min_plateau_snr * sigma2[r]:
                continue
            for k in range(cp, min(cp + max_shift, end)):
                if _smoothed(filtered, r, k, half) >= 0.5 * plateau:
                    out_start[r] = k
                    if not one_sided:
                        out_stop[r] = max(stop[r], k + 1)
                    break
        else:
            cp = stop[r]
            begin = 0 if one_sided else start[r]
            last = cp - (cp - begin) // 4
            if last - begin < 2 * half:
                continue
            plateau = _mean_power(filtered, r, begin, last)
            if plateau < min_plateau_snr * sigma2[r]:
                continue
            for k in range(cp - 1, max(cp - 1 - max_shift, begin - 1), -1):
                if _smoothed(filtered, r, k, half) >= 0.5 * plateau:
                    out_stop[r] = k + 1
                    break
    return out_start, out_stop
