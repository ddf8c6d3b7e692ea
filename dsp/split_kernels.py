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


# -- the per-batch arithmetic of BurstDetector._measure_parts --------------------------------
# Each was a dozen numpy calls on arrays of a batch's ~60 parts (µs of dispatch each, twice a
# batch); one pass per kernel, the same float64 operations in the same order.


@numba.njit(cache=True, nogil=True)
def part_frames(power: npt.NDArray[np.float32], peak: npt.NDArray[np.float32], ep_first: int,
                first: IntArray, n_present: IntArray, row0: IntArray, out_power: npt.NDArray[np.float32],
                out_peak: npt.NDArray[np.float32]) -> None:
    """Copy the frames ``[first[i], first[i] + n_present[i])`` of every part that fall in one
    epoch (``power``/``peak`` from absolute frame ``ep_first``) to rows ``row0[i]`` on of
    ``out_power``, fftshifted, and their I/Q peaks to ``out_peak``: the gather of
    :meth:`dsp.detector.BurstDetector._frame_power` without the frame list."""
    n_ep, n = power.shape
    half = n // 2
    for i in range(first.shape[0]):
        lo = max(first[i], ep_first)
        hi = min(first[i] + n_present[i], ep_first + n_ep)
        for f in range(lo, hi):
            src = f - ep_first
            dst = row0[i] + f - first[i]
            for k in range(half):
                out_power[dst, k] = power[src, k + half]
                out_power[dst, k + half] = power[src, k]
            out_peak[dst] = peak[src]


@numba.njit(cache=True, nogil=True)
def _lower_bound(sorted_values: FloatArray, x: float) -> int:
    """``np.searchsorted(sorted_values, x, side="left")`` (NaN after every number, as numpy sorts it)."""
    lo = 0
    hi = sorted_values.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        v = sorted_values[mid]
        if v < x or (np.isnan(x) and not np.isnan(v)):
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True)
def _clip_0_2(x: float) -> float:
    """``np.clip(x, 0.0, 2.0)`` of one value (NaN stays NaN)."""
    if x < 0.0:
        return 0.0
    if x > 2.0:
        return 2.0
    return x


@numba.njit(cache=True, nogil=True)
def edge_estimates(edge: FloatArray, interior: FloatArray, inner_count: IntArray, wide_noise: FloatArray,
                   n_rows: IntArray, frame_start: IntArray, n: int, neg_suffix2: FloatArray,
                   prefix2: FloatArray) -> tuple[IntArray, IntArray, npt.NDArray[np.bool_]]:
    """Start and stop of each part from the energy of its edge frames (``BurstDetector._measure_parts``):
    for a part of 3 frames or more with inner frames (``long``), the share of its plateau that the
    two frames around each edge hold, inverted through the window's two-frame cumulative energy
    (``prefix2``, and the suffix negated so that it ascends); the rectangle's frame edges otherwise."""
    m = frame_start.shape[0]
    t0 = np.empty(m, dtype=np.int64)
    t1 = np.empty(m, dtype=np.int64)
    long = np.empty(m, dtype=np.bool_)
    for i in range(m):
        is_long = n_rows[i] >= 3 and inner_count[i] > 0
        long[i] = is_long
        if is_long:
            diff = interior[i] - wide_noise[i]
            plateau = diff if (diff > 1e-30 or np.isnan(diff)) else 1e-30  # np.maximum keeps NaN
            two_noise = 2 * wide_noise[i]
            x_start = _clip_0_2((edge[i, 0] + edge[i, 1] - two_noise) / plateau)
            x_end = _clip_0_2((edge[i, 2] + edge[i, 3] - two_noise) / plateau)
            t0[i] = frame_start[i] - n + _lower_bound(neg_suffix2, -x_start)
            t1[i] = frame_start[i] + (n_rows[i] - 1) * n + _lower_bound(prefix2, x_end)
        else:
            t0[i] = frame_start[i]
            t1[i] = frame_start[i] + n_rows[i] * n
    return t0, t1, long


@numba.njit(cache=True, nogil=True)
def part_levels(t0: IntArray, t1: IntArray, t0_fixed: IntArray, t1_fixed: IntArray, n_rows: IntArray, n: int,
                total: FloatArray, k_lo: IntArray, k_hi: IntArray, noise_band: FloatArray, lo: IntArray,
                hi: IntArray, bin_hz: float, to_power: float, gmsk_max_bandwidth_hz: float, gmsk_min_length: float,
                ) -> tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Per part (``BurstDetector._measure_parts``): the start (a split's fixed one where placed) and
    length, the 99 % bandwidth, the burst power rescaled from the rectangle's whole frames to the
    share of them the burst fills, the noise density, and whether to look for GMSK lines."""
    m = t0.shape[0]
    start = np.empty(m, dtype=np.int64)
    length = np.empty(m, dtype=np.int64)
    bandwidth = np.empty(m)
    signal_power = np.empty(m)
    noise_density = np.empty(m)
    gmsk = np.empty(m, dtype=np.bool_)
    for i in range(m):
        a = t0_fixed[i] if t0_fixed[i] >= 0 else t0[i]
        b = t1_fixed[i] if t1_fixed[i] >= 0 else t1[i]
        start[i] = a
        length[i] = b - a
        bandwidth[i] = (k_hi[i] - k_lo[i] + 1) * bin_hz
        fill = max(length[i] / float(max(n_rows[i] * n, 1)), 1e-3)
        signal_power[i] = total[i] * to_power / min(fill, 1.0)
        noise_density[i] = noise_band[i] / float(max(hi[i] - lo[i], 1)) * to_power / bin_hz
        gmsk[i] = bandwidth[i] <= gmsk_max_bandwidth_hz and length[i] >= gmsk_min_length and total[i] > 0
    return start, length, bandwidth, signal_power, noise_density, gmsk


# -- the slot grid of BurstDetector._split_in_time ---------------------------------------------


@numba.njit(cache=True, nogil=True)
def slot_grid(t0: IntArray, n_measured: IntArray, before: IntArray, n_slots: IntArray, slot: float,
              half_guard: float) -> tuple[IntArray, IntArray, IntArray, IntArray, IntArray, FloatArray]:
    """The timeslot grid of each candidate region (``BurstDetector._split_in_time``): ``n_slots[c]``
    slots from ``t0[c] - before[c]·slot``, the measured part's ``n_measured[c]`` among them.

    Returns per boundary between two slots of a region (``n_slots[c] - 1`` of them, regions one
    after the other) its region ``owner``, its index ``j`` (slot j starts at ``t0 + j·slot``) and
    the sample at its guard period's centre; the first boundary and first slot of each region;
    and per slot its start sample (float, as the grid is)."""
    n_c = t0.shape[0]
    first_bound = np.empty(n_c, dtype=np.int64)
    slot_first = np.empty(n_c, dtype=np.int64)
    n_b = 0
    n_s = 0
    for c in range(n_c):
        first_bound[c] = n_b
        slot_first[c] = n_s
        n_b += n_slots[c] - 1
        n_s += n_slots[c]
    owner = np.empty(n_b, dtype=np.int64)
    j = np.empty(n_b, dtype=np.int64)
    centre = np.empty(n_b, dtype=np.int64)
    slot_start = np.empty(n_s, dtype=np.float64)
    for c in range(n_c):
        for q in range(n_slots[c] - 1):
            b = first_bound[c] + q
            owner[b] = c
            jj = q + 1 - before[c]
            j[b] = jj
            centre[b] = t0[c] + np.int64(np.rint(jj * slot - half_guard))
        grid_t0 = t0[c] - before[c] * slot
        for q in range(n_slots[c]):
            slot_start[slot_first[c] + q] = grid_t0 + q * slot
    return owner, j, centre, first_bound, slot_first, slot_start


@numba.njit(cache=True, nogil=True)
def slot_states(slot_snr: FloatArray, slot_first: IntArray, n_slots: IntArray, owner: IntArray, j: IntArray,
                before: IntArray, n_measured: IntArray, on_snr: float, on_relative: float,
                ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_],
                           npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Busy slots and what each boundary is (``BurstDetector._split_in_time``): a slot is on when its
    SNR exceeds ``on_snr`` and ``on_relative`` of its region's strongest slot; a boundary is ``busy``
    between two on slots, a ``step`` between an on and an off one unless the off one lies beyond
    the measured part. Returns slot_on (per slot), on_left, on_right, busy, step (per boundary)."""
    slot_on = np.empty(slot_snr.shape[0], dtype=np.bool_)
    for c in range(slot_first.shape[0]):
        a = slot_first[c]
        strongest = slot_snr[a]
        for s in range(a + 1, a + n_slots[c]):  # np.maximum.reduceat (NaN wins)
            x = slot_snr[s]
            if np.isnan(strongest) or np.isnan(x):
                strongest = np.nan
            elif x > strongest:
                strongest = x
        limit = on_relative * strongest
        for s in range(a, a + n_slots[c]):
            slot_on[s] = slot_snr[s] > on_snr and slot_snr[s] > limit
    n_b = owner.shape[0]
    on_left = np.empty(n_b, dtype=np.bool_)
    on_right = np.empty(n_b, dtype=np.bool_)
    busy = np.empty(n_b, dtype=np.bool_)
    step = np.empty(n_b, dtype=np.bool_)
    for b in range(n_b):
        c = owner[b]
        left = slot_on[slot_first[c] + j[b] - 1 + before[c]]
        right = slot_on[slot_first[c] + j[b] + before[c]]
        on_left[b] = left
        on_right[b] = right
        busy[b] = left and right
        step[b] = (left and not right and not j[b] >= n_measured[c]) or (not left and right and not j[b] <= 0)
    return slot_on, on_left, on_right, busy, step


@numba.njit(cache=True, nogil=True)
def time_pieces(chosen: IntArray, candidates: IntArray, first_bound: IntArray, slot_first: IntArray,
                n_slots: IntArray, slot_on: npt.NDArray[np.bool_], slot_snr: FloatArray,
                cut: npt.NDArray[np.bool_], on_left: npt.NDArray[np.bool_], on_right: npt.NDArray[np.bool_],
                left_end: IntArray, right_start: IntArray, centre: IntArray, before: IntArray, after: IntArray,
                ) -> tuple[IntArray, IntArray, IntArray, FloatArray, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """The pieces of the regions ``candidates[chosen]`` cut in time (``BurstDetector._split_in_time``):
    each run of slots between two cuts holding a busy slot is a piece, from the change point after
    the cut before it (the boundary's centre when its right slot is idle; -1 for the region's
    start) to the one before the cut after it (-1 for the region's end). Returns per piece its
    part, start, stop, the largest slot SNR of its run, and whether it starts (stops) at the
    region's bounding box: a busy slot before (after) the measured part is in it."""
    n_max = 0
    for q in range(chosen.shape[0]):
        n_max += n_slots[chosen[q]]
    idx = np.empty(n_max, dtype=np.int64)
    t0 = np.empty(n_max, dtype=np.int64)
    t1 = np.empty(n_max, dtype=np.int64)
    snr = np.empty(n_max, dtype=np.float64)
    box_first = np.empty(n_max, dtype=np.bool_)
    box_last = np.empty(n_max, dtype=np.bool_)
    k = 0
    for q in range(chosen.shape[0]):
        c = chosen[q]
        i = candidates[c]
        s0 = slot_first[c]
        nb = n_slots[c] - 1
        first_on = slot_on[s0]
        start = -1
        run_lo = 0  # the run holds slots run_lo .. s (relative to the region)
        for s in range(nb):
            b = first_bound[c] + s
            if cut[b]:
                busy_run = False
                best = slot_snr[s0 + run_lo]
                for r in range(run_lo, s + 1):
                    busy_run = busy_run or slot_on[s0 + r]
                    if slot_snr[s0 + r] > best:  # Python's max: the first of equals, NaN never replaced
                        best = slot_snr[s0 + r]
                if busy_run:
                    idx[k] = i
                    t0[k] = start
                    t1[k] = left_end[b] if on_left[b] else centre[b]
                    snr[k] = best
                    box_first[k] = before[i] != 0 and first_on
                    box_last[k] = False
                    k += 1
                start = right_start[b] if on_right[b] else centre[b]
                run_lo = s + 1
        busy_run = False
        best = slot_snr[s0 + run_lo]
        for r in range(run_lo, nb + 1):
            busy_run = busy_run or slot_on[s0 + r]
            if slot_snr[s0 + r] > best:
                best = slot_snr[s0 + r]
        if busy_run:
            idx[k] = i
            t0[k] = start
            t1[k] = -1
            snr[k] = best
            box_first[k] = start < 0 and before[i] != 0 and first_on
            box_last[k] = after[i] != 0 and slot_on[s0 + nb]
            k += 1
    return idx[:k], t0[:k], t1[:k], snr[:k], box_first[:k], box_last[:k]


@numba.njit(cache=True, nogil=True)
def slot_candidates(t0: IntArray, length: IntArray, box_start: IntArray, box_end: IntArray, bandwidth: FloatArray,
                    total: FloatArray, truncated: npt.NDArray[np.bool_], t0_fixed: IntArray, t1_fixed: IntArray,
                    line_ratio: FloatArray, slot: float, guard: float, reach: float, max_bandwidth_hz: float,
                    max_slots: int, gmsk_ratio: float, lo: IntArray, hi: IntArray, bins_per_cell: int,
                    ) -> tuple[IntArray, IntArray, IntArray, npt.NDArray[np.bool_], IntArray, FloatArray,
                               IntArray, IntArray, int]:
    """Which measured parts ``BurstDetector._split_in_time`` looks at, and the extra slots to probe.

    Per part: the timeslots ``k`` its measured length spans (at least 1), whether its bounding box
    leaves room for one more slot before / after it (a leftover of ``reach`` of a slot counts),
    and whether it is ``eligible`` (narrow enough, with power, not truncated, not already cut, no
    more than ``max_slots`` slots with the extra ones). The extra slots count only beside a
    GSM-like part (two slots or more, or GMSK lines): ``before``/``after`` are zeroed elsewhere.
    Returns k, before, after, eligible, then the slots to probe — the parts, the slots' start
    samples and their column bands, those before the parts first (``n_before`` of them)."""
    m = t0.shape[0]
    k = np.empty(m, dtype=np.int64)
    before = np.empty(m, dtype=np.int64)
    after = np.empty(m, dtype=np.int64)
    eligible = np.empty(m, dtype=np.bool_)
    n_before = 0
    n_after = 0
    for i in range(m):
        k[i] = max(np.int64(np.rint((length[i] + guard) / slot)), 1)  # type: ignore[call-overload]
        b = np.floor((t0[i] - box_start[i]) / slot + reach)
        a = np.floor((box_end[i] - t0[i] - length[i]) / slot + reach)
        before[i] = np.int64(min(max(b, 0.0), 1.0))
        after[i] = np.int64(min(max(a, 0.0), 1.0))
        eligible[i] = (bandwidth[i] <= max_bandwidth_hz and total[i] > 0 and not truncated[i] and t0_fixed[i] < 0
                       and t1_fixed[i] < 0 and k[i] + before[i] + after[i] <= max_slots)
        if not (k[i] >= 2 or line_ratio[i] >= gmsk_ratio):
            before[i] = 0
            after[i] = 0
        if eligible[i]:
            n_before += before[i]
            n_after += after[i]
    probe = np.empty(n_before + n_after, dtype=np.int64)
    first = np.empty(n_before + n_after, dtype=np.float64)
    q_b = 0
    q_a = n_before
    for i in range(m):
        if eligible[i] and before[i] > 0:
            probe[q_b] = i
            first[q_b] = t0[i] + -slot
            q_b += 1
        if eligible[i] and after[i] > 0:
            probe[q_a] = i
            first[q_a] = t0[i] + k[i] * slot
            q_a += 1
    c_lo = np.empty(probe.shape[0], dtype=np.int64)
    c_hi = np.empty(probe.shape[0], dtype=np.int64)
    for q in range(probe.shape[0]):
        c_lo[q] = lo[probe[q]] // bins_per_cell
        c_hi[q] = hi[probe[q]] // bins_per_cell
    return k, before, after, eligible, probe, first, c_lo, c_hi, n_before
