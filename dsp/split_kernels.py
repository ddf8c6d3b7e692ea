"""Compiled loops of the detector's segmentation and cuts: band cuts, signal rectangles,
cell sums, the guard-period search of the time cut, the spectrum rotation of the frequency cut.

A busy band finalizes ~300 regions a second, most of them one GSM burst or one LTE
allocation of a few hundred cells. Flat numpy over all regions of a batch (keys,
``bincount``, padded ragged rows, (k, 641) prefix arrays) costs tens of array passes and
temporaries per batch; these kernels walk each region's box (or window) once instead.
Every sum is taken in the order the numpy formulation took it (row-major within a box,
frames and samples in time order), so the results are the same to the last bit; what
needs a transcendental function (the log-likelihood weights) stays in numpy between
kernel calls, as numpy's ``log1p`` (SIMD) need not round as libm's does.

Boxes are *views* into the flat cell array of :class:`dsp.detector._Components`: box ``i``
has ``heights[i]`` rows of ``widths[i]`` cells, its row ``r`` starting at
``z[bases[i] + r * strides[i]]`` (``strides[i] > widths[i]`` for a band cut out of a
wider region, so nothing is copied).
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@numba.njit(cache=True, nogil=True)
def _best_segment(values: FloatArray, n: int) -> tuple[int, int]:
    """Maximum-sum contiguous segment ``[start, stop)`` of ``values[:n]`` (n ≥ 1), ties to the
    first: the same prefix sums, gains and first argmax/argmin as ``detector._best_segments``."""
    prefix = 0.0
    lowest = 0.0  # min of prefix[0..j]
    best_gain = -np.inf
    stop = 1
    for j in range(n):
        nxt = prefix + values[j]
        gain = nxt - lowest
        if gain > best_gain:
            best_gain = gain
            stop = j + 1
        prefix = nxt
        lowest = min(lowest, prefix)
    # the first minimum of prefix[0 .. stop-1]
    prefix = 0.0
    start = 0
    lowest = 0.0
    for j in range(stop - 1):
        prefix += values[j]
        if prefix < lowest:
            lowest = prefix
            start = j + 1
    return start, stop


@numba.njit(cache=True, nogil=True)
def band_cuts(z: FloatArray, offsets: IntArray, heights: IntArray, widths: IntArray, neutral: float,
              quiet_excess: float, quiet_columns: int, strong_excess: float, valley_ratio: float,
              valley_min_peak: float, image_ratio: float,
              ) -> tuple[npt.NDArray[np.bool_], IntArray, IntArray, IntArray, IntArray]:
    """The band cuts of ``BurstDetector._separate_bands`` for whole boxes ``z[offsets[i]:]``.

    Per box: the mean excess of each column over its rows; quiet columns (under
    ``quiet_excess``, or ``valley_ratio`` under the weaker of the peaks either side when
    both reach ``valley_min_peak``); runs of ``quiet_columns`` or more of them split the
    box into segments; a segment is strong when a column reaches ``strong_excess`` and its
    peak is within ``image_ratio`` of the box's. A box with more than one segment and more
    than one strong one is cut: returns ``(cut (m,), parent, lo, hi, n_cells)`` of every
    strong segment of the cut boxes, in box then column order, with its active (not quiet)
    columns ``[lo, hi)`` relative to the box and its cells that are not neutral (≥ 1).
    """
    m = heights.shape[0]
    cut = np.zeros(m, dtype=np.bool_)
    n_max = 0
    for i in range(m):
        n_max += widths[i] // (quiet_columns + 1) + 1
    parent = np.empty(n_max, dtype=np.int64)
    seg_lo = np.empty(n_max, dtype=np.int64)
    seg_hi = np.empty(n_max, dtype=np.int64)
    n_cells = np.empty(n_max, dtype=np.int64)
    n_out = 0
    w_max = 0
    for i in range(m):
        w_max = max(w_max, widths[i])
    level = np.empty(w_max)
    quiet = np.empty(w_max, dtype=np.bool_)
    gap = np.empty(w_max, dtype=np.bool_)
    rise = np.empty(w_max)
    # per segment of one box: first column, last active column + 1, peak, has a strong column
    s_first = np.empty(w_max, dtype=np.int64)
    s_lo = np.empty(w_max, dtype=np.int64)
    s_hi = np.empty(w_max, dtype=np.int64)
    s_peak = np.empty(w_max)
    s_strong = np.empty(w_max, dtype=np.bool_)
    for i in range(m):
        h = heights[i]
        w = widths[i]
        base = offsets[i]
        for c in range(w):
            level[c] = 0.0
        for r in range(h):
            row = base + r * w
            for c in range(w):
                level[c] += z[row + c] - neutral
        for c in range(w):
            level[c] = level[c] / h
            quiet[c] = level[c] < quiet_excess
        if w >= 2 * quiet_columns + 3:  # room for two signals and a gap: a deep valley between them
            peak = -np.inf
            for c in range(w):
                peak = max(peak, level[c])
                rise[c] = peak
            peak = -np.inf
            for c in range(w - 1, -1, -1):
                peak = max(peak, level[c])
                side = min(rise[c], peak)
                if side >= valley_min_peak and level[c] * valley_ratio < side:
                    quiet[c] = True
        # wide gaps: runs of quiet columns at least quiet_columns long
        c = 0
        while c < w:
            if quiet[c]:
                e = c
                while e < w and quiet[e]:
                    e += 1
                wide = e - c >= quiet_columns
                for q in range(c, e):
                    gap[q] = wide
                c = e
            else:
                gap[c] = False
                c += 1
        # segments: columns between wide gaps
        n_seg = 0
        comp_peak = -np.inf
        c = 0
        while c < w:
            if gap[c]:
                c += 1
                continue
            s_first[n_seg] = c
            s_lo[n_seg] = w
            s_hi[n_seg] = -1
            s_peak[n_seg] = -np.inf
            s_strong[n_seg] = False
            while c < w and not gap[c]:
                s_peak[n_seg] = max(s_peak[n_seg], level[c])
                if level[c] >= strong_excess:
                    s_strong[n_seg] = True
                if not quiet[c]:
                    s_lo[n_seg] = min(s_lo[n_seg], c)
                    s_hi[n_seg] = c + 1
                c += 1
            comp_peak = max(comp_peak, s_peak[n_seg])
            n_seg += 1
        n_strong = 0
        for s in range(n_seg):
            s_strong[s] = s_strong[s] and s_peak[s] * image_ratio >= comp_peak
            n_strong += s_strong[s]
        if n_seg > 1 and n_strong > 1:
            cut[i] = True
            for s in range(n_seg):
                if not s_strong[s]:
                    continue
                lo = s_lo[s]
                hi = s_hi[s]
                count = 0
                for r in range(h):
                    row = base + r * w
                    for q in range(lo, hi):
                        count += z[row + q] != neutral
                parent[n_out] = i
                seg_lo[n_out] = lo
                seg_hi[n_out] = hi
                n_cells[n_out] = max(count, 1)
                n_out += 1
    return cut, parent[:n_out], seg_lo[:n_out], seg_hi[:n_out], n_cells[:n_out]


@numba.njit(cache=True, nogil=True)
def core_snr(z: FloatArray, bases: IntArray, strides: IntArray, row_a: IntArray, row_b: IntArray,
             col_a: IntArray, col_b: IntArray, neutral: float) -> FloatArray:
    """Mean cell SNR (linear, at least 1e-3) of rows ``[row_a, row_b)`` × columns ``[col_a, col_b)``
    of each box: the cells summed row-major, as ``bincount`` did."""
    m = bases.shape[0]
    out = np.empty(m)
    for i in range(m):
        total = 0.0
        for r in range(row_a[i], row_b[i]):
            row = bases[i] + r * strides[i]
            for c in range(col_a[i], col_b[i]):
                total += z[row + c]
        n = (row_b[i] - row_a[i]) * (col_b[i] - col_a[i])
        out[i] = max(total / float(max(n, 1)) / neutral - 1.0, 1e-3)
    return out


@numba.njit(cache=True, nogil=True)
def refine_rectangles(z: FloatArray, bases: IntArray, strides: IntArray, heights: IntArray, widths: IntArray,
                      weight: FloatArray, offset: FloatArray, row_a: IntArray, row_b: IntArray,
                      col_a: IntArray, col_b: IntArray) -> None:
    """One pass of ``BurstDetector._rectangles``, in place: the rows of each box (maximum-sum
    segment of the per-row LLR ``weight·z - offset`` over columns ``[col_a, col_b)``), then its
    columns over those rows."""
    h_max = 0
    w_max = 0
    for i in range(bases.shape[0]):
        h_max = max(h_max, heights[i])
        w_max = max(w_max, widths[i])
    rows = np.empty(h_max)
    cols = np.empty(w_max)
    for i in range(bases.shape[0]):
        h = heights[i]
        w = widths[i]
        wt = weight[i]
        off = offset[i]
        for r in range(h):
            row = bases[i] + r * strides[i]
            total = 0.0
            for c in range(col_a[i], col_b[i]):
                total += wt * z[row + c] - off
            rows[r] = total
        a, b = _best_segment(rows, h)
        row_a[i] = a
        row_b[i] = b
        for c in range(w):
            cols[c] = 0.0
        for r in range(a, b):
            row = bases[i] + r * strides[i]
            for c in range(w):
                cols[c] += wt * z[row + c] - off
        a, b = _best_segment(cols, w)
        col_a[i] = a
        col_b[i] = b


@numba.njit(cache=True, nogil=True)
def add_frames(cells: npt.NDArray[np.float32], first_frame: int, end_frame: int, neutral: float,
               frame_a: IntArray, frame_b: IntArray, sums: FloatArray) -> None:
    """Add the frames ``[frame_a[q], frame_b[q])`` that fall in ``[first_frame, end_frame)`` to
    row ``q`` of ``sums`` (n_queries, n_columns), column by column, frames in time order:
    rows of ``cells`` (the epoch's, from ``first_frame``), or ``neutral`` when it has none
    (zero rows). Called on consecutive frame ranges in time order, it sums each query's
    frames in the order of one ``add.reduceat`` over them."""
    n_cols = sums.shape[1]
    have = cells.shape[0] > 0
    for q in range(frame_a.shape[0]):
        lo = max(frame_a[q], first_frame)
        hi = min(frame_b[q], end_frame)
        for f in range(lo, hi):
            if have:
                row = f - first_frame
                for c in range(n_cols):
                    sums[q, c] += cells[row, c]
            else:
                for c in range(n_cols):
                    sums[q, c] += neutral


@numba.njit(cache=True, nogil=True)
def band_means(sums: FloatArray, col_lo: IntArray, col_hi: IntArray, n_frames: IntArray) -> FloatArray:
    """Mean cell of columns ``[col_lo, col_hi)`` of each row of frame sums over ``n_frames`` frames:
    the difference of the column prefix sums, as ``cumsum`` then gather did."""
    out = np.empty(sums.shape[0])
    for q in range(sums.shape[0]):
        prefix = 0.0
        at_lo = 0.0
        for c in range(col_hi[q]):
            if c == col_lo[q]:
                at_lo = prefix
            prefix += sums[q, c]
        if col_lo[q] >= col_hi[q]:
            at_lo = prefix
        out[q] = (prefix - at_lo) / float(max((col_hi[q] - col_lo[q]) * n_frames[q], 1))
    return out


@numba.njit(cache=True, nogil=True)
def column_segments(sums: FloatArray, col_lo: IntArray, col_hi: IntArray, weight: FloatArray,
                    offset: FloatArray) -> tuple[IntArray, IntArray]:
    """Maximum-sum segment ``[a, b)`` (relative to ``col_lo``) of the per-column LLR
    ``weight·sums - offset`` over columns ``[col_lo, col_hi)`` of each row of frame sums."""
    m = sums.shape[0]
    a = np.zeros(m, dtype=np.int64)
    b = np.zeros(m, dtype=np.int64)
    llr = np.empty(sums.shape[1])
    for q in range(m):
        n = col_hi[q] - col_lo[q]
        for c in range(n):
            llr[c] = weight[q] * sums[q, col_lo[q] + c] - offset[q]
        a[q], b[q] = _best_segment(llr, n)
    return a, b


@numba.njit(cache=True, nogil=True)
def slot_gaps(energy: npt.NDArray[np.floating], sigma2: FloatArray, search_lo: int, search_hi: int, span: int,
              flank: int, offset: int) -> tuple[FloatArray, IntArray, FloatArray, FloatArray]:
    """The guard period of each window of band-filtered sample power (k, width) around a slot
    boundary: the lowest ``span``-sample mean starting in ``[search_lo, search_hi]`` (the first
    of equal ones), and the ``flank``-sample means ``offset`` samples either side of its centre,
    each minus the noise ``sigma2``: ``(gap, gap_centre, left, right)``. Sums are differences
    of the float64 prefix sums, as ``cumsum`` then gather took them."""
    k, width = energy.shape
    gap = np.empty(k)
    centre = np.empty(k, dtype=np.int64)
    left = np.empty(k)
    right = np.empty(k)
    prefix = np.empty(width + 1)
    for i in range(k):
        prefix[0] = 0.0
        for p in range(width):
            prefix[p + 1] = prefix[p] + energy[i, p]
        best = np.inf
        at = search_lo
        for low in range(search_lo, search_hi + 1):
            mean = (prefix[low + span] - prefix[low]) / span
            if mean < best:
                best = mean
                at = low
        gap[i] = best - sigma2[i]
        c = at + span // 2
        centre[i] = c
        left[i] = (prefix[c - offset] - prefix[c - offset - flank]) / flank - sigma2[i]
        right[i] = (prefix[c + offset + flank] - prefix[c + offset]) / flank - sigma2[i]
    return gap, centre, left, right


@numba.njit(cache=True, nogil=True)
def change_points(energy: npt.NDArray[np.floating], scale_left: FloatArray, off_left: FloatArray,
                  scale_right: FloatArray, off_right: FloatArray, split_at: IntArray) -> tuple[IntArray, IntArray]:
    """Where the burst left of a slot boundary ends and the one right of it starts, in each window
    of sample power (k, width): the first maximum, at positions ``0 .. split_at``, of the running
    sum of the left burst's per-sample LLR ``scale_left·x - off_left`` (from position 0), and the
    first minimum, at positions ``split_at .. width``, of the right one's."""
    k, width = energy.shape
    ends = np.empty(k, dtype=np.int64)
    starts = np.empty(k, dtype=np.int64)
    for i in range(k):
        stop = split_at[i]
        sum_left = 0.0
        sum_right = 0.0
        best_left = 0.0  # the running sums at position 0
        best_right = np.inf if stop > 0 else 0.0
        at_left = 0
        at_right = 0
        for p in range(1, width + 1):  # both sums in one pass: two independent chains of additions
            x = energy[i, p - 1]
            sum_left += scale_left[i] * x - off_left[i]
            sum_right += scale_right[i] * x - off_right[i]
            if p <= stop and sum_left > best_left:
                best_left = sum_left
                at_left = p
            if p >= stop and sum_right < best_right:
                best_right = sum_right
                at_right = p
        ends[i] = at_left
        starts[i] = at_right
    return ends, starts


@numba.njit(cache=True, nogil=True)
def roll_rows(spectra: npt.NDArray[np.complex64], shifts: IntArray) -> npt.NDArray[np.complex64]:
    """Each row of ``spectra`` (k, n) rotated left by its shift: ``out[i, j] = spectra[i, (shifts[i] + j) mod n]``
    (bin ``shifts[i]`` moved to 0 Hz; a copy, as the fancy-index gather it replaces)."""
    k, n = spectra.shape
    out = np.empty_like(spectra)
    for i in range(k):
        s = shifts[i] % n
        for j in range(n - s):
            out[i, j] = spectra[i, s + j]
        for j in range(n - s, n):
            out[i, j] = spectra[i, j - (n - s)]
    return out
