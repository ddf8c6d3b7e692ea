"""Fused numba kernels of the detector's front end (cu8 bytes -> power grid -> noise floor).

The numpy versions of these steps make one pass over the data per operation (subtract,
divide; multiply, max, min; square, add, strided adds, shift; pair sums, minima, where,
count; sort), each through a fresh array: at 2.4 MS/s that was over half of an idle
band's time. Each kernel here reads its input once and writes each output once, with the
same float32 operations in the same order as the numpy expressions it replaces (no
``fastmath``: a fused multiply-add or a reordered sum would round differently), so every
value is bit-identical and the detections do not change (tests/dsp/test_fastgrid.py
checks each kernel against the numpy expression it replaced).

Compiled on first use and cached in ``__pycache__`` (``cache=True``): ~4-8 s once per
machine, ~0.5 s to load in a new process.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

_ABS_BITS = np.int32(0x7FFFFFFF)  # float32 bits without the sign


@numba.njit(cache=True, nogil=True)
def cu8_to_float32(data: npt.NDArray[np.uint8], offset: np.float32, scale: np.float32,
                   out: FloatArray) -> None:  # pragma: no cover - compiled
    """``out[i] = (float32(data[i]) - offset) / scale`` in float32, one pass (numpy needs three)."""
    for i in range(data.shape[0]):
        out[i] = (np.float32(data[i]) - offset) / scale


@numba.njit(cache=True, nogil=True)
def window_frames(iq: FloatArray, window_iq: FloatArray, out: FloatArray,
                  peak: FloatArray) -> None:  # pragma: no cover - compiled
    """Frames times the window, and each frame's largest ``|I|`` or ``|Q|`` (the clipping flag).

    ``iq``: interleaved float32 I, Q of ``peak.shape[0]`` frames; ``window_iq``: the window
    repeated for I and Q (``2 * fft_size``). The peak is taken on the float32 bit patterns
    with the sign bit cleared: for non-negative floats their order is that of the values,
    and an integer maximum vectorizes where a float one (NaN rules) does not (8x faster).
    """
    width = window_iq.shape[0]
    bits = iq.view(np.int32)
    peak_bits = peak.view(np.int32)
    for f in range(peak.shape[0]):
        base = f * width
        top = np.int32(0)
        for k in range(width):
            out[base + k] = iq[base + k] * window_iq[k]
            top = max(top, bits[base + k] & _ABS_BITS)
        peak_bits[f] = top


@numba.njit(cache=True, nogil=True)
def window_frames_cu8(data: npt.NDArray[np.uint8], offset: np.float32, scale: np.float32, window_iq: FloatArray,
                      out: FloatArray, peak: FloatArray) -> None:  # pragma: no cover - compiled
    """:func:`window_frames` of the samples of cu8 bytes, read from the bytes: bit for bit
    :func:`cu8_to_float32` then :func:`window_frames`, with no float copy of the samples made.

    The peak comes from the bytes as integers: ``|b - 127.5|`` orders as ``|2b - 255|``, and
    ``b`` and ``255 - b`` give the same float magnitude, so the largest is the magnitude of
    the value of ``b* = (max|2b - 255| + 255) / 2`` (an integer maximum: it vectorizes).
    """
    width = window_iq.shape[0]
    for f in range(peak.shape[0]):
        base = f * width
        top = np.int32(0)
        for k in range(width):
            b = data[base + k]
            out[base + k] = ((np.float32(b) - offset) / scale) * window_iq[k]
            top = max(top, abs(np.int32(b) * 2 - 255))
        peak[f] = abs((np.float32((top + 255) // 2) - offset) / scale)


@numba.njit(cache=True, nogil=True)
def power_cells(spectra: FloatArray, guard_bins: IntArray, bins_per_cell: int,
                power: FloatArray, cells: FloatArray) -> None:  # pragma: no cover - compiled
    """|X_k|² per bin (natural order, guard bins 0) and cell sums in shifted column order.

    ``spectra``: (n_frames, 2 * fft_size) interleaved re, im; ``power``: (n_frames,
    fft_size); ``cells``: (n_frames, fft_size // bins_per_cell), natural column ``c`` at
    ``(c + n_columns / 2) % n_columns``. ``re*re + im*im`` and the left-to-right cell sum
    are the numpy expressions' operations, rounding for rounding. Each cell sum reads its
    bins contiguously and writes its shifted column directly (two half-row loops); with
    four bins a cell (the default) the sum is spelled out, a fixed stride LLVM vectorizes
    where the generic inner loop does not (3x faster than strided gathers into a scratch row).
    """
    n_frames, n = power.shape
    n_columns = cells.shape[1]
    half = n_columns // 2
    g = bins_per_cell
    for f in range(n_frames):
        src = spectra[f]
        row = power[f]
        for k in range(n):
            re = src[2 * k]
            im = src[2 * k + 1]
            row[k] = re * re + im * im
        for k in guard_bins:
            row[k] = np.float32(0.0)
        out = cells[f]
        for part in range(2):  # natural columns [0, half) go to [half, n), [half, n) to [0, half)
            bins = row[part * half * g : (part + 1) * half * g]
            dst = out[(1 - part) * half : (2 - part) * half]
            if g == 4:
                for c in range(half):
                    dst[c] = ((bins[4 * c] + bins[4 * c + 1]) + bins[4 * c + 2]) + bins[4 * c + 3]
            else:
                for c in range(half):
                    total = bins[c * g]
                    for j in range(1, g):
                        total += bins[c * g + j]
                    dst[c] = total


@numba.njit(cache=True, nogil=True)
def group_minima(data: FloatArray, busy: npt.NDArray[np.bool_], n_sum: int, n_min: int,
                 bias: npt.NDArray[np.float64], raw: FloatArray, clean: FloatArray) -> None:  # pragma: no cover
    """Minimum statistics of :class:`dsp.noise.NoiseFloorTracker` for whole groups, one pass.

    ``data``/``busy``: (n_groups * n_sum * n_min, n_columns) cell powers and painted flags;
    ``bias``: (n_min + 1, n_columns). Sum ``s`` of a group adds frames ``s*n_sum .. +n_sum``
    left to right in float32; ``raw[g, c]`` is the minimum of the group's sums times
    ``bias[n_min, c]`` and ``clean[g, c]`` that of its sums with no painted frame times
    ``bias[n_free, c]`` (inf where every sum is painted), both rounded to float32 from
    float64 as numpy's ``(min * bias).astype(float32)``. Columns are the inner loop
    (contiguous, compare-and-select: it vectorizes).
    """
    n_groups, n_columns = raw.shape
    lowest = np.empty(n_columns, np.float32)
    lowest_free = np.empty(n_columns, np.float32)
    n_free = np.empty(n_columns, np.int64)
    total = np.empty(n_columns, np.float32)
    taken = np.empty(n_columns, np.bool_)
    for g in range(n_groups):
        lowest[:] = np.inf
        lowest_free[:] = np.inf
        n_free[:] = 0
        for i in range(n_min):
            f0 = (g * n_min + i) * n_sum
            for c in range(n_columns):
                total[c] = data[f0, c]
                taken[c] = busy[f0, c]
            for j in range(1, n_sum):
                for c in range(n_columns):
                    total[c] = total[c] + data[f0 + j, c]
                    taken[c] = taken[c] | busy[f0 + j, c]
            for c in range(n_columns):
                t = total[c]
                lowest[c] = t if t < lowest[c] else lowest[c]
                free = not taken[c]
                lowest_free[c] = t if (free and t < lowest_free[c]) else lowest_free[c]
                n_free[c] += free
        for c in range(n_columns):
            raw[g, c] = np.float32(np.float64(lowest[c]) * bias[n_min, c])
            clean[g, c] = np.float32(np.float64(lowest_free[c]) * bias[n_free[c], c])


@numba.njit(cache=True, nogil=True)
def select(a: FloatArray, m: int, k: int) -> np.float32:  # pragma: no cover - compiled
    """The ``k``-th smallest of ``a[:m]`` (Hoare's quickselect, in place: ``a`` is reordered).

    No copy and no allocation: numba's ``np.partition`` copies its input and took ~1 µs
    on 50 entries. ``a`` must hold no NaN (the order statistic would be undefined).
    """
    lo = 0
    hi = m - 1
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return a[k]


@numba.njit(cache=True, nogil=True)
def row_quantiles(values: FloatArray, n_used: int, quantile: float, guess: npt.NDArray[np.float64],
                  out: npt.NDArray[np.float64], n_finite: npt.NDArray[np.int64]) -> None:  # pragma: no cover
    """Per row of ``values[:, :n_used]``: the ``quantile`` of its finite entries, and their count.

    Entry ``k = min(int(quantile * n_finite), max(n_finite - 1, 0))`` of the row in
    ascending order (inf last) -- the order statistic :meth:`NoiseFloorTracker._estimate`
    takes, so any selection method gives the same value. The floor moves little between
    two estimates, so the entries within 3 % of the previous one (``guess``) nearly always
    hold it (99.9 % on the busy scene): a counting pass (vectorized) says whether they do,
    and a selection among those ~50 entries replaces one over the whole row; a miss, or
    no guess (NaN), selects over the whole row.
    """
    n_rows = values.shape[0]
    scratch = np.empty(max(n_used, 1), np.float32)
    for r in range(n_rows):
        lo = np.float32(guess[r] * 0.97)
        hi = np.float32(guess[r] * 1.03)
        count = np.int64(0)
        n_below = np.int64(0)
        n_upto = np.int64(0)
        for i in range(n_used):
            v = values[r, i]
            n_below += np.int64(v < lo)
            n_upto += np.int64(v <= hi)
            count += np.int64(v < np.inf)
        n_finite[r] = count
        k = min(int(quantile * count), max(int(count) - 1, 0))
        if n_below <= k < n_upto:
            m = np.int64(0)
            for i in range(n_used):  # branch-free compaction: the branch mispredicts on fresh data
                v = values[r, i]
                scratch[m] = v
                m += np.int64(v >= lo) & np.int64(v <= hi)
            out[r] = select(scratch, int(m), k - int(n_below))
        else:
            scratch[:n_used] = values[r, :n_used]
            out[r] = select(scratch, n_used, k)


@numba.njit(cache=True, nogil=True)
def scale_cells(raw: FloatArray, scale: FloatArray, offset: FloatArray, out: FloatArray) -> None:  # pragma: no cover
    """``out = raw * scale + offset`` per column, rounded after the product as numpy's two passes."""
    n_rows, n_columns = raw.shape
    for f in range(n_rows):
        for c in range(n_columns):
            product = raw[f, c] * scale[c]
            out[f, c] = product + offset[c]
