"""The fused front-end kernels give, bit for bit, the numpy expressions they replace."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft

from dsp import fastgrid
from dsp.iq import CU8_OFFSET, CU8_SCALE, cu8_to_complex64


def _numpy_cu8(raw: np.ndarray) -> np.ndarray:
    out = raw.astype(np.float32)
    out -= np.float32(CU8_OFFSET)
    out /= np.float32(CU8_SCALE)
    return out


def test_cu8_every_byte_value_matches_numpy() -> None:
    raw = np.arange(256, dtype=np.uint8)
    out = np.empty(256, dtype=np.float32)
    fastgrid.cu8_to_float32(raw, np.float32(CU8_OFFSET), np.float32(CU8_SCALE), out)
    assert np.array_equal(out.view(np.uint32), _numpy_cu8(raw).view(np.uint32))
    assert out[0] == -1.0 and out[255] == 1.0


def test_cu8_to_complex64_interleaves_i_and_q() -> None:
    raw = np.random.default_rng(1).integers(0, 256, 2 * 1000, dtype=np.uint8)
    x = cu8_to_complex64(raw)
    assert x.dtype == np.complex64 and x.shape == (1000,)
    assert np.array_equal(x.view(np.float32), _numpy_cu8(raw))
    assert np.array_equal(cu8_to_complex64(raw.tobytes()), x)
    with pytest.raises(ValueError):
        cu8_to_complex64(raw[:3])


def test_window_frames_products_and_peaks() -> None:
    rng = np.random.default_rng(2)
    n, n_frames = 64, 9
    iq = rng.uniform(-1, 1, 2 * n * n_frames).astype(np.float32)
    iq[5] = -1.25  # a negative extreme must count by its magnitude
    iq[2 * n : 4 * n] = 0.0  # a silent frame has peak 0
    iq[4 * n + 7] = np.float32(0.99)
    window_iq = np.repeat(np.hanning(n).astype(np.float32), 2)
    out = np.empty_like(iq)
    peak = np.empty(n_frames, dtype=np.float32)
    fastgrid.window_frames(iq, window_iq, out, peak)
    frames = iq.reshape(n_frames, 2 * n)
    assert np.array_equal(out.reshape(n_frames, 2 * n), frames * window_iq)
    assert np.array_equal(peak, np.maximum(frames.max(axis=1), -frames.min(axis=1)))
    assert peak[0] == np.float32(1.25) and peak[1] == 0.0


def test_window_frames_of_cu8_bytes_are_those_of_their_samples() -> None:
    """Windowing the bytes themselves gives the bits of converting them, then windowing: every
    byte value at every window position, and each frame's peak (rails, mid-scale, silence)."""
    rng = np.random.default_rng(4)
    n, n_frames = 64, 12
    data = rng.integers(0, 256, 2 * n * n_frames).astype(np.uint8)
    data[: 2 * n] = np.arange(2 * n) % 256  # every value once in a frame ...
    data[2 * n : 4 * n] = np.arange(256)[::-1][: 2 * n]  # ... and the rest in the next
    data[4 * n : 6 * n] = 128  # one step from mid-scale: the smallest magnitude
    data[6 * n : 8 * n] = 127
    data[8 * n : 10 * n] = 130
    data[8 * n + 5] = 60  # the farthest from mid-scale, below it
    data[10 * n : 12 * n] = 126
    data[10 * n + 9] = 255  # a rail
    window_iq = np.repeat(np.hanning(n).astype(np.float32), 2)
    samples = np.empty(data.shape[0], dtype=np.float32)
    fastgrid.cu8_to_float32(data, np.float32(CU8_OFFSET), np.float32(CU8_SCALE), samples)
    want_out, want_peak = np.empty_like(samples), np.empty(n_frames, dtype=np.float32)
    fastgrid.window_frames(samples, window_iq, want_out, want_peak)
    out, peak = np.empty_like(samples), np.empty(n_frames, dtype=np.float32)
    fastgrid.window_frames_cu8(data, np.float32(CU8_OFFSET), np.float32(CU8_SCALE), window_iq, out, peak)
    assert np.array_equal(out.view(np.uint32), want_out.view(np.uint32))
    assert np.array_equal(peak.view(np.uint32), want_peak.view(np.uint32))
    assert peak[0] == peak[1] == peak[5] == 1.0
    assert peak[2] == peak[3] == np.float32(0.5) / np.float32(127.5)
    assert peak[4] == np.float32(67.5) / np.float32(127.5)


def _numpy_power_cells(spectra: np.ndarray, guard: np.ndarray, g: int) -> tuple[np.ndarray, np.ndarray]:
    """The detector's former numpy front end (guard zeroed, squares, strided cell sums, shift)."""
    spectra = spectra.copy()
    spectra[:, guard] = 0.0
    squares = np.square(spectra.view(np.float32))
    power = squares[:, 0::2] + squares[:, 1::2]
    natural = power[:, 0::g].copy()
    for j in range(1, g):
        natural += power[:, j::g]
    half = natural.shape[1] // 2
    return power, np.concatenate((natural[:, half:], natural[:, :half]), axis=1)


@pytest.mark.parametrize(("g", "guard"), [(4, [0, 1, 63]), (2, [0]), (1, [])])
def test_power_cells_match_numpy(g: int, guard: list[int]) -> None:
    rng = np.random.default_rng(3)
    n, n_frames = 64, 7
    x = (rng.standard_normal((n_frames, n)) + 1j * rng.standard_normal((n_frames, n))).astype(np.complex64)
    spectra = scipy.fft.fft(x, axis=1)
    guard_bins = np.array(guard, dtype=np.int64)
    power = np.empty((n_frames, n), dtype=np.float32)
    cells = np.empty((n_frames, n // g), dtype=np.float32)
    fastgrid.power_cells(spectra.view(np.float32), guard_bins, g, power, cells)
    want_power, want_cells = _numpy_power_cells(spectra, guard_bins, g)
    assert np.array_equal(power, want_power)
    assert np.array_equal(cells, want_cells)
    assert np.all(power[:, guard_bins] == 0.0)


def _numpy_minima(data: np.ndarray, busy: np.ndarray, n_sum: int, n_min: int,
                  bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NoiseFloorTracker.push's former numpy minimum statistics."""
    n_groups = data.shape[0] // (n_sum * n_min)
    cols = np.arange(data.shape[1])
    sums = data[0::n_sum].copy()
    taken = busy[0::n_sum].copy()
    for j in range(1, n_sum):
        sums += data[j::n_sum]
        taken |= busy[j::n_sum]
    sums = sums.reshape(n_groups, n_min, -1)
    taken = taken.reshape(n_groups, n_min, -1)
    raw = (sums.min(axis=1) * bias[n_min, cols]).astype(np.float32)
    n_free = n_min - np.count_nonzero(taken, axis=1)
    clean = (np.where(taken, np.inf, sums).min(axis=1) * bias[n_free, cols]).astype(np.float32)
    return raw, clean


@pytest.mark.parametrize(("n_sum", "n_min"), [(2, 8), (1, 4), (3, 2)])
def test_group_minima_match_numpy(n_sum: int, n_min: int) -> None:
    rng = np.random.default_rng(4)
    n_groups, n_cols = 5, 12
    data = rng.gamma(4.0, 1.0, (n_groups * n_sum * n_min, n_cols)).astype(np.float32)
    busy = rng.random(data.shape) < 0.3
    busy[:, 0] = True  # a column painted throughout: no clean estimate (inf)
    busy[:, 1] = False
    bias = rng.uniform(1.0, 3.0, (n_min + 1, n_cols))
    raw = np.empty((n_groups, n_cols), dtype=np.float32)
    clean = np.empty_like(raw)
    fastgrid.group_minima(data, busy, n_sum, n_min, bias, raw, clean)
    want_raw, want_clean = _numpy_minima(data, busy, n_sum, n_min, bias)
    assert np.array_equal(raw, want_raw)
    assert np.array_equal(clean, want_clean)
    assert np.all(np.isinf(clean[:, 0])) and np.array_equal(clean[:, 1], raw[:, 1])


def test_select_is_the_order_statistic() -> None:
    rng = np.random.default_rng(5)
    for m in (1, 2, 3, 10, 57, 200):
        a = rng.integers(0, 6, m).astype(np.float32)  # many ties
        a[rng.random(m) < 0.2] = np.inf
        for k in {0, m // 2, m - 1}:
            assert fastgrid.select(a.copy(), m, k) == np.sort(a)[k]
            assert fastgrid.select.py_func(a.copy(), m, k) == np.sort(a)[k]


def test_row_quantiles_whatever_the_guess() -> None:
    rng = np.random.default_rng(6)
    n_rows, width, n_used = 6, 300, 250
    values = rng.gamma(8.0, 1.0, (n_rows, width)).astype(np.float32)
    values[1, rng.random(width) < 0.6] = np.inf  # partly painted
    values[2] = np.inf  # all painted: the quantile is inf
    values[3, :] = 2.0  # ties everywhere
    used = values[:, :n_used]
    n_finite_want = np.isfinite(used).sum(axis=1)
    k = np.minimum((0.5 * n_finite_want).astype(np.int64), np.maximum(n_finite_want - 1, 0))
    want = np.take_along_axis(np.sort(used, axis=1), k[:, None], axis=1)[:, 0].astype(np.float64)
    good = np.where(np.isfinite(want), want * 1.01, 1.0)
    for guess in (good, np.full(n_rows, np.nan), np.full(n_rows, 1e-3), np.full(n_rows, np.inf)):
        out = np.empty(n_rows)
        n_finite = np.empty(n_rows, dtype=np.int64)
        fastgrid.row_quantiles(values, n_used, 0.5, guess, out, n_finite)
        assert np.array_equal(out, want)
        assert np.array_equal(n_finite, n_finite_want)
    assert np.isinf(want[2]) and want[3] == 2.0


def test_scale_cells_rounds_as_numpy() -> None:
    rng = np.random.default_rng(8)
    raw = rng.gamma(4.0, 1e-6, (9, 12)).astype(np.float32)
    scale = rng.uniform(1e5, 1e7, 12).astype(np.float32)
    scale[3] = 0.0  # a masked column: neutral value from the offset alone
    offset = rng.integers(0, 4, 12).astype(np.float32)
    out = np.empty_like(raw)
    fastgrid.scale_cells(raw, scale, offset, out)
    want = raw * scale
    want += offset
    assert np.array_equal(out, want)
    assert np.all(out[:, 3] == offset[3])


def test_power_cells_full_size_with_dc_guard() -> None:
    """The default grid: 256 bins, 4 a cell (the unrolled path), guard bins at DC."""
    rng = np.random.default_rng(4)
    n, n_frames = 256, 5
    x = (rng.standard_normal((n_frames, n)) + 1j * rng.standard_normal((n_frames, n))).astype(np.complex64)
    spectra = scipy.fft.fft(x, axis=1)
    guard_bins = np.array([0, 1, 255], dtype=np.int64)
    power = np.empty((n_frames, n), dtype=np.float32)
    cells = np.empty((n_frames, n // 4), dtype=np.float32)
    fastgrid.power_cells(spectra.view(np.float32), guard_bins, 4, power, cells)
    want_power, want_cells = _numpy_power_cells(spectra, guard_bins, 4)
    assert np.array_equal(power, want_power) and np.array_equal(cells, want_cells)
    assert np.all(power[:, guard_bins] == 0.0)
