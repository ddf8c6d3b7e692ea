"""Compiled kernels of the detector's grid stage: CFAR box tests and connected regions.

The detector (:mod:`dsp.detector`) runs, for every epoch of ~1024 frames × 64 columns,
seven box templates over the cell grid, paints the hits, labels the painted mask in
connected regions and gathers each finished region's cells. In numpy that was ~60 calls
per epoch over 130 kB arrays (memory speed), dilations for the painting, and gathers
through index arrays; here the box sums run block by block in cache, templates of one
width share their partial sums, and each region is read once, in place.

The arithmetic is the numpy code's, operation for operation, so the detections do not
change: box sums are float32 and built by the same doubling tree (:func:`tree_sums`:
a width's sum is the sum, largest span first, of power-of-two partial sums, each the
sum of two halves), region sums are float64 accumulated in the same order as
``np.bincount`` and ``np.add.reduceat``. Labels are those of ``scipy.ndimage.label``
with its default structure (4-connected in 2-D), numbered in raster order of each
region's first cell.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from dsp.measure_kernels import pairwise_sum_f64

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@numba.njit(cache=True, nogil=True)
def _n_levels(width: int) -> int:
    """Levels 1, 2, 4, ... up to the highest power of two in ``width`` (bit length)."""
    n = 0
    while (1 << n) <= width:
        n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _shift_add(out: FloatArray, a: FloatArray, shift: int, n: int) -> None:
    """``out[i] = a[i] + a[i + shift]`` for i < n: one doubling step (a contiguous, vectorized pass).

    The shifted operand is a slice, not ``a[i + shift]``: an index that may be negative
    takes numba's wraparound branch, which keeps LLVM from vectorizing (5x slower).
    """
    later = a[shift : shift + n]
    for i in range(n):
        out[i] = a[i] + later[i]


@numba.njit(cache=True, nogil=True)
def _extend_levels(levels: FloatArray, lev0: int, have: int, need: int, step: int, n: int) -> int:
    """Build doubling levels ``have`` .. ``need - 1`` in rows ``lev0 + k`` of ``levels`` (level k:
    sums of 2^k values ``step`` apart, valid for i < n - (2^k - 1)·step); returns the levels now built.

    Rows are taken whole (integer index): a sliced 2-D array loses its contiguous layout
    in numba, and with it the vectorized loops (10x slower).
    """
    for k in range(have, need):
        half = 1 << (k - 1)
        _shift_add(levels[lev0 + k], levels[lev0 + k - 1], half * step, n - ((1 << k) - 1) * step)
    return max(have, need)


@numba.njit(cache=True, nogil=True)
def _tree_at(levels: FloatArray, lev0: int, width: int, step: int, base: int, out: FloatArray, out_base: int,
             n_out: int) -> None:
    """``out[out_base + c]`` = doubling-tree sum of ``width`` values ``step`` apart from ``base + c``, c < n_out:
    the largest level first, then the smaller ones of ``width``'s binary digits, left to right
    (the order of the doubling sums of ``tests/dsp/box_reference.py``)."""
    top = _n_levels(width) - 1
    dst = out[out_base : out_base + n_out]  # slices: see _shift_add
    src = levels[lev0 + top][base : base + n_out]
    for c in range(n_out):
        dst[c] = src[c]
    offset = 1 << top
    for k in range(top - 1, -1, -1):
        if width & (1 << k):
            at = base + offset * step
            src = levels[lev0 + k][at : at + n_out]
            for c in range(n_out):
                dst[c] += src[c]
            offset += 1 << k


@numba.njit(cache=True, nogil=True)
def tree_sums(a: FloatArray, width: int, step: int) -> FloatArray:
    """``out[i]`` = float32 doubling-tree sum of ``a[i + d·step]``, d < width (the reference
    meaning of the box sums: the doubling sums of ``tests/dsp/box_reference.py`` computes the same numbers)."""
    n = a.shape[0]
    n_out = n - (width - 1) * step
    if n_out <= 0:
        return np.zeros(0, dtype=np.float32)
    levels = np.empty((_n_levels(width), n), dtype=np.float32)
    levels[0, :] = a
    _extend_levels(levels, 0, 1, _n_levels(width), step, n)
    out = np.empty(n_out, dtype=np.float32)
    _tree_at(levels, 0, width, step, 0, out, 0, n_out)
    return out


SMALL_WIDTH = 8  # narrower boxes sum their columns in one pass (:func:`_small_tree`)


@numba.njit(cache=True, nogil=True)
def _small_tree(a: FloatArray, width: int, out: FloatArray, n_out: int) -> None:
    """``out[c]`` = doubling-tree sum of ``a[c : c + width]`` for ``width <= 8``, c < n_out, in one pass.

    The same additions in the same order as :func:`_tree_at` over the levels of ``a``
    (``L2 = a0 + a1``, ``L4 = L2 + L2'``, then the largest level plus the smaller ones of
    ``width``'s digits), spelled out and kept in registers: the levels' copy, build and
    tree passes over the block (five for the 5-column GSM boxes) become one.
    """
    a0 = a[0:n_out]  # shifted slices: see _shift_add
    a1 = a[1 : 1 + n_out] if width > 1 else a0
    a2 = a[2 : 2 + n_out] if width > 2 else a0
    a3 = a[3 : 3 + n_out] if width > 3 else a0
    a4 = a[4 : 4 + n_out] if width > 4 else a0
    a5 = a[5 : 5 + n_out] if width > 5 else a0
    a6 = a[6 : 6 + n_out] if width > 6 else a0
    a7 = a[7 : 7 + n_out] if width > 7 else a0
    dst = out[0:n_out]
    if width == 1:
        for c in range(n_out):
            dst[c] = a0[c]
    elif width == 2:
        for c in range(n_out):
            dst[c] = a0[c] + a1[c]
    elif width == 3:
        for c in range(n_out):
            dst[c] = (a0[c] + a1[c]) + a2[c]
    elif width == 4:
        for c in range(n_out):
            dst[c] = (a0[c] + a1[c]) + (a2[c] + a3[c])
    elif width == 5:
        for c in range(n_out):
            dst[c] = ((a0[c] + a1[c]) + (a2[c] + a3[c])) + a4[c]
    elif width == 6:
        for c in range(n_out):
            dst[c] = ((a0[c] + a1[c]) + (a2[c] + a3[c])) + (a4[c] + a5[c])
    elif width == 7:
        for c in range(n_out):
            dst[c] = (((a0[c] + a1[c]) + (a2[c] + a3[c])) + (a4[c] + a5[c])) + a6[c]
    else:
        for c in range(n_out):
            dst[c] = ((a0[c] + a1[c]) + (a2[c] + a3[c])) + ((a4[c] + a5[c]) + (a6[c] + a7[c]))


BLOCK_ROWS = 64  # box top rows tested together: their levels stay in the core's cache
SUB_ROWS = 8  # a block with a hit is searched this many top rows at a time: a burst lights a few


def scratch_shapes(n_frames: IntArray, n_columns: IntArray, n_rows: int, n_cols: int) -> tuple[tuple[int, int], tuple[int, int, int]]:
    """Shapes of the scratch of :func:`box_tests`: ``levels`` (frequency levels, time levels,
    box sums of one block of ``BLOCK_ROWS`` top rows and the rows their boxes reach) and
    ``col_cover`` (one grid of hit columns per template)."""
    n_levels = int(n_columns.max()).bit_length() + int(n_frames.max()).bit_length() + 1
    return (n_levels, (BLOCK_ROWS + int(n_frames.max()) - 1) * n_cols), (n_frames.shape[0], n_rows, n_cols)


@numba.njit(cache=True, nogil=True)
def _block_hits(grid: FloatArray, top: int, n_block: int, stride: int, width: int, group: IntArray,
                n_frames: IntArray, firsts: IntArray, thresholds: FloatArray, levels: FloatArray, n_freq: int,
                hit_rows: BoolArray, col_cover: BoolArray) -> None:
    """Test the boxes of templates ``group`` (one stride and width) whose top row is in
    [top, top + n_block); mark the columns each hit covers in ``col_cover[t]`` (row: the hit's
    top row, flagged in ``hit_rows[t]``).

    The block's frequency sums (of the rows its boxes reach), their time levels and the box
    sums are a few kB that stay in L1/L2 cache, where the same passes over the whole grid
    (1.3 MB of levels) ran at memory speed; templates of one width share the first two.
    """
    n_rows, n_cols = grid.shape
    flat = grid.reshape(n_rows * n_cols)
    cols = n_cols // stride
    valid = cols - width + 1
    k_max = 1
    for t in group:
        k_max = max(k_max, n_frames[t])
    n_in = min(n_block + k_max - 1, n_rows - top)  # rows the block's boxes reach
    n = n_in * cols
    # frequency sums at every position of the block (those at columns >= valid straddle two
    # rows and are never used), then the time levels over them
    n_sums = n - (width - 1)
    sums = levels[n_freq]
    if stride == 1 and width <= SMALL_WIDTH:
        _small_tree(flat[top * n_cols : top * n_cols + n], width, sums, n_sums)
    else:
        base = levels[0]
        if stride == 1:
            src = flat[top * n_cols : top * n_cols + n]
            for i in range(n):
                base[i] = src[i]
        else:
            two = flat[top * n_cols : top * n_cols + 2 * n].reshape(n, 2)  # column pairs
            for i in range(n):
                base[i] = two[i, 0] + two[i, 1]
        _extend_levels(levels, 0, 1, _n_levels(width), 1, n)
        _tree_at(levels, 0, width, 1, 0, sums, 0, n_sums)
    row_len = cols
    if 2 * valid <= cols:
        # a wide box has few positions: keep only those before summing over time
        for r in range(1, n_in):
            dst = sums[r * valid : (r + 1) * valid]
            src = sums[r * cols : r * cols + valid]
            for c in range(valid):
                dst[c] = src[c]
        row_len = valid
        n_sums = n_in * valid
    _extend_levels(levels, n_freq, 1, _n_levels(k_max), row_len, n_sums)
    box = levels[levels.shape[0] - 1]
    cover_row = np.zeros(n_cols + 1, dtype=np.int32)
    for t in group:
        k_rows = n_frames[t]
        lo = max(top, firsts[t]) - top  # the template's top rows in this block (local)
        hi = min(top + n_block, n_rows - k_rows + 1) - top
        for r in range(max(lo, 0), max(hi, 0)):
            hit_rows[t, top + r] = False
        if hi <= lo:
            continue
        n_box = min(hi * row_len, n_sums - (k_rows - 1) * row_len)
        _tree_at(levels, n_freq, k_rows, row_len, lo * row_len, box, lo * row_len, n_box - lo * row_len)
        threshold = thresholds[t]
        tested = box[lo * row_len : n_box]  # a slice, looped from 0: see _shift_add
        n_over = 0  # a branch-free count first: most blocks light nothing
        for i in range(tested.shape[0]):
            n_over += tested[i] > threshold
        if n_over == 0:
            continue
        # a burst lights a few top rows: count again SUB_ROWS rows at a time and search only
        # those with a hit row by row (searching every row, each a short loop, cost ~7 % more)
        for s0 in range(lo, hi, SUB_ROWS):
            a = s0 * row_len
            sub = box[a : min((s0 + SUB_ROWS) * row_len, n_box)]
            n_over = 0
            for i in range(sub.shape[0]):
                n_over += sub[i] > threshold
            if n_over == 0:
                continue
            for r in range(s0, min(s0 + SUB_ROWS, hi)):
                row = box[r * row_len : r * row_len + valid]
                n_over = 0  # the same count, row by row: only rows with hits are looked at closely
                for c in range(valid):
                    n_over += row[c] > threshold
                if n_over == 0:
                    continue
                cover_row[:] = 0
                for c in range(valid):
                    if row[c] > threshold:
                        cover_row[c * stride] += 1
                        cover_row[(c + width) * stride] -= 1
                hit_rows[t, top + r] = True
                running = 0
                for j in range(n_cols):
                    running += cover_row[j]
                    col_cover[t, top + r, j] = running > 0


@numba.njit(cache=True, nogil=True)
def _paint(grid: FloatArray, painted: BoolArray, changed: BoolArray, hit_rows: BoolArray, col_cover: BoolArray,
           first: int, k_rows: int, neutral: np.float32) -> bool:
    """Paint the cells of one template's hits (a hit in row r covers rows r .. r + k_rows - 1
    of its columns), set them ``neutral`` in ``grid`` and flag their rows ``changed``; any hit?"""
    n_rows, n_cols = grid.shape
    counts = np.zeros(n_cols, dtype=np.int32)
    n_open = 0  # hit rows in the window
    anything = False
    for r in range(first, n_rows):
        if hit_rows[r]:
            n_open += 1
            anything = True
            for j in range(n_cols):
                counts[j] += col_cover[r, j]
        gone = r - k_rows
        if gone >= first and hit_rows[gone]:
            n_open -= 1
            for j in range(n_cols):
                counts[j] -= col_cover[gone, j]
        if n_open:
            painted_row = painted[r]
            grid_row = grid[r]
            for j in range(n_cols):  # branch-free: vectorized
                hit = counts[j] > 0
                painted_row[j] |= hit
                grid_row[j] = neutral if hit else grid_row[j]
            changed[r] = True
    return anything


@numba.njit(cache=True, nogil=True)
def box_tests(grid: FloatArray, n_carry: int, n_frames: IntArray, n_columns: IntArray, strides: IntArray,
              thresholds: FloatArray, neutral: np.float32, painted: BoolArray, levels: FloatArray,
              col_cover: BoolArray) -> bool:
    """Run the templates in order over ``grid`` (n_rows, n_cols), painting ``painted``; any hit?

    Template t tests every box of ``n_frames[t]`` rows × ``n_columns[t]`` columns whose
    top-left corner is at a multiple of ``strides[t]`` columns and whose last row lies
    after the ``n_carry`` rows carried over from earlier epochs. A box is a hit when its
    float32 sum (frequency tree first, on column pairs for stride 2, then the time tree)
    exceeds ``thresholds[t]``; every cell of a hit is painted, and painted cells of
    ``grid`` are set to ``neutral`` before the next template (``grid`` is overwritten).

    Consecutive templates of one stride and width are tested together, block by block;
    once one of them paints, the later ones are tested again where the paint changed the
    cells their boxes reach. Scratch from the caller: ``levels`` and ``col_cover``
    (:func:`scratch_shapes`).
    """
    n_rows, n_cols = grid.shape
    painted[:, :] = False
    anything = False
    n_templates = n_frames.shape[0]
    n_freq = _n_levels(max(n_columns.max(), 1))
    firsts = np.empty(n_templates, dtype=np.int64)
    usable = np.zeros(n_templates, dtype=np.bool_)
    for t in range(n_templates):
        firsts[t] = max(0, n_carry - n_frames[t] + 1)
        usable[t] = (n_rows - n_frames[t] + 1 - firsts[t] > 0) and (n_cols // strides[t] - n_columns[t] // strides[t] >= 0)
    hit_rows = np.zeros((n_templates, n_rows), dtype=np.bool_)
    changed = np.zeros(n_rows, dtype=np.bool_)
    t = 0
    while t < n_templates:
        if not usable[t]:
            t += 1
            continue
        stride = strides[t]
        width = n_columns[t] // stride
        end = t + 1
        while end < n_templates and usable[end] and strides[end] == stride and n_columns[end] == n_columns[t]:
            end += 1
        group = np.arange(t, end)
        start = firsts[group].min()
        stop = (n_rows - n_frames[group] + 1).max()
        for top in range(start, stop, BLOCK_ROWS):
            _block_hits(grid, top, min(BLOCK_ROWS, stop - top), stride, width, group, n_frames, firsts,
                        thresholds, levels, n_freq, hit_rows, col_cover)
        changed[:] = False
        for u in range(t, end):
            k_rows = n_frames[u]
            if u > t and changed.any():
                # an earlier template of the group painted: test again the boxes that reach
                # a changed row, runs of top rows at a time
                one = np.arange(u, u + 1)
                last_top = n_rows - k_rows  # the template's top rows: firsts[u] .. last_top
                again = np.zeros(n_rows + 1, dtype=np.bool_)
                for r in range(n_rows):
                    if changed[r]:
                        again[max(firsts[u], r - k_rows + 1) : min(r, last_top) + 1] = True
                top = firsts[u]
                while top <= last_top:
                    if not again[top]:
                        top += 1
                        continue
                    end_run = top
                    while again[end_run] and end_run - top < BLOCK_ROWS:
                        end_run += 1
                    _block_hits(grid, top, end_run - top, stride, width, one, n_frames, firsts, thresholds, levels,
                                n_freq, hit_rows, col_cover)
                    top = end_run
            if _paint(grid, painted, changed, hit_rows[u], col_cover[u], firsts[u], k_rows, neutral):
                anything = True
        t = end
    return anything


@numba.njit(cache=True, nogil=True)
def _root(parent: npt.NDArray[np.int32], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@numba.njit(cache=True, nogil=True)
def label_regions(mask: BoolArray, labels: npt.NDArray[np.int32]) -> IntArray:
    """4-connected regions of ``mask``, written to ``labels`` (same shape): 1..n in raster
    order of their first cell, as ``scipy.ndimage.label``; returns each one's bounding box
    ``(r0, r1, c0, c1)``, (n, 4), as ``scipy.ndimage.find_objects``.

    Union-find in one raster pass, then a relabelling pass; rows without a painted cell
    (most of them) are skipped in both.
    """
    n_rows, n_cols = mask.shape
    labels[:, :] = 0
    occupied = np.zeros(n_rows, dtype=np.bool_)
    for i in range(n_rows):
        row = mask[i]
        anything = False
        for j in range(n_cols):
            anything |= row[j]
        occupied[i] = anything
    parent = np.empty(n_rows * n_cols // 2 + 2, dtype=np.int32)
    n_prov = 1
    for i in range(n_rows):
        if not occupied[i]:
            continue
        for j in range(n_cols):
            if not mask[i, j]:
                continue
            up = labels[i - 1, j] if i > 0 else 0
            left = labels[i, j - 1] if j > 0 else 0
            if up == 0 and left == 0:
                parent[n_prov] = n_prov
                labels[i, j] = n_prov
                n_prov += 1
            elif up == 0:
                labels[i, j] = left
            elif left == 0:
                labels[i, j] = up
            else:
                a = _root(parent, up)
                b = _root(parent, left)
                if a < b:
                    parent[b] = a
                elif b < a:
                    parent[a] = b
                labels[i, j] = min(a, b)
    # a set's root is its smallest provisional label, given to its first cell in raster order
    final = np.zeros(n_prov, dtype=np.int32)
    n_labels = 0
    for p in range(1, n_prov):
        root = _root(parent, p)
        if root == p:
            n_labels += 1
            final[p] = n_labels
        else:
            final[p] = final[root]
    bounds = np.empty((n_labels, 4), dtype=np.int64)
    bounds[:, 0] = n_rows
    bounds[:, 1] = 0
    bounds[:, 2] = n_cols
    bounds[:, 3] = 0
    for i in range(n_rows):
        if not occupied[i]:
            continue
        for j in range(n_cols):
            p = labels[i, j]
            if p:
                lab = final[p]
                labels[i, j] = lab
                b = bounds[lab - 1]
                if i < b[0]:
                    b[0] = i
                if i + 1 > b[1]:
                    b[1] = i + 1
                if j < b[2]:
                    b[2] = j
                if j + 1 > b[3]:
                    b[3] = j + 1
    return bounds


@numba.njit(cache=True, nogil=True)
def region_sums(labels: npt.NDArray[np.int32], cells: FloatArray, bounds: IntArray, ids: IntArray,
                neutral: float) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], IntArray]:
    """Per region ``ids[i]`` in its bounding box ``bounds[i]``: column means of its own
    cells minus ``neutral`` (0 outside it), column means of all cells of its rows minus
    ``neutral``, (m, n_cols) each, and its number of cells. float64 sums, row by row."""
    m = ids.shape[0]
    n_cols = cells.shape[1]
    own = np.zeros((m, n_cols), dtype=np.float64)
    rows = np.zeros((m, n_cols), dtype=np.float64)
    n_cells = np.zeros(m, dtype=np.int64)
    for i in range(m):
        r0, r1, c0, c1 = bounds[i, 0], bounds[i, 1], bounds[i, 2], bounds[i, 3]
        lab = ids[i]
        count = 0
        for r in range(r0, r1):
            for c in range(c0, c1):
                if labels[r, c] == lab:
                    own[i, c] += np.float64(cells[r, c]) - neutral
                    count += 1
            for c in range(n_cols):
                rows[i, c] += np.float64(cells[r, c])
        h = np.float64(r1 - r0)
        for c in range(n_cols):
            own[i, c] = own[i, c] / h
            rows[i, c] = rows[i, c] / h - neutral
        n_cells[i] = count
    return own, rows, n_cells


@numba.njit(cache=True, nogil=True)
def region_boxes(labels: npt.NDArray[np.int32], cells: FloatArray, bounds: IntArray,
                 ids: IntArray, neutral: float) -> tuple[IntArray, npt.NDArray[np.float64]]:
    """Each region's bounding box of cells, row-major, one after the other (float64),
    cells outside the region set to ``neutral``; and the (m + 1,) offsets of the boxes."""
    m = ids.shape[0]
    offsets = np.zeros(m + 1, dtype=np.int64)
    for i in range(m):
        offsets[i + 1] = offsets[i] + (bounds[i, 1] - bounds[i, 0]) * (bounds[i, 3] - bounds[i, 2])
    z = np.empty(offsets[m], dtype=np.float64)
    for i in range(m):
        lab = ids[i]
        k = offsets[i]
        for r in range(bounds[i, 0], bounds[i, 1]):
            for c in range(bounds[i, 2], bounds[i, 3]):
                z[k] = np.float64(cells[r, c]) if labels[r, c] == lab else neutral
                k += 1
    return offsets, z


@numba.njit(cache=True, nogil=True)
def clear_finished(mask: BoolArray, labels: npt.NDArray[np.int32], finished: BoolArray) -> None:
    """Unset the cells of ``mask`` whose label is ``finished`` (in place)."""
    n_rows, n_cols = mask.shape
    for i in range(n_rows):
        for j in range(n_cols):
            if finished[labels[i, j]]:
                mask[i, j] = False


@numba.njit(cache=True, nogil=True)
def artefacts(own: npt.NDArray[np.float64], rows: npt.NDArray[np.float64], c0: IntArray, c1: IntArray,
              image_ratio: float, edge: int, edge_hi_start: int, edge_lo_stop: int, alias_ratio: float,
              neutral: float) -> BoolArray:
    """The tests of :meth:`dsp.detector.BurstDetector._artefacts`, component by component
    (the numpy expressions' arithmetic and sums, to the bit). ``edge_hi_start``/``edge_lo_stop``:
    the normalized bounds of ``rows[:, n - edge:]`` and ``rows[:, :edge]``."""
    m, n = own.shape
    out = np.zeros(m, dtype=np.bool_)
    positive = np.empty(n, dtype=np.float64)
    explained = np.empty(n, dtype=np.float64)
    padded = np.zeros(n + 2, dtype=np.float64)
    for i in range(m):
        # image: the mirrored signal (a column of slack either side), scaled down by the
        # image rejection, accounts for the component's energy
        for c in range(n):
            positive[c] = max(own[i, c], 0.0)
            padded[c + 1] = max(rows[i, c], 0.0)
        for c in range(n):
            mirror = max(max(padded[n + 1 - c], padded[n - c]), padded[n - 1 - c])
            explained[c] = min(positive[c], mirror / image_ratio)
        total = pairwise_sum_f64(positive, 0, positive.shape[0])
        image = total > 0 and pairwise_sum_f64(explained, 0, explained.shape[0]) >= 0.8 * total
        # alias: a strip along one edge, well below a signal along the other
        low = c0[i] < edge and c1[i] <= n // 2
        high = c1[i] > n - edge and c0[i] >= n // 2
        alias = False
        if low or high:
            peak = -np.inf
            strip = -np.inf
            for c in range(c0[i], c1[i]):
                peak = max(peak, own[i, c])
                if (low and c < edge) or (not low and c >= n - edge):
                    strip = max(strip, own[i, c])
            theirs = -np.inf
            start, stop = (edge_hi_start, n) if low else (0, edge_lo_stop)
            for c in range(start, stop):
                theirs = max(theirs, rows[i, c])
            # the component is that strip (not a burst whose painting reaches the edge), and
            # the other edge carries a real signal well above it
            alias = strip >= 0.5 * peak and theirs > max(alias_ratio * strip, 2.0 * neutral)
        out[i] = image or alias
    return out
