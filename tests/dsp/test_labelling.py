"""The compiled grid kernels against the numpy/scipy code they replace, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from dsp import labelling
from dsp.detector import BoxTest, DetectorConfig, _box_arrays, _Workspace
from dsp.measure_kernels import pairwise_sum_f64
from tests.dsp.box_reference import _box_dilate, _Doubling


def _reference_box_tests(grid: np.ndarray, n_carry: int, tests: tuple[BoxTest, ...], neutral: float) -> np.ndarray:
    """The detector's former numpy box tests: doubling sums, dilated hits, neutral painted cells."""
    flat = grid.ravel().copy()
    n_rows, n_cols = grid.shape
    painted = np.zeros((n_rows, n_cols), dtype=bool)
    ws = _Workspace()
    for test in tests:
        if n_rows < test.n_frames:
            continue
        stride = test.stride
        cols = n_cols // stride
        width = test.n_columns // stride
        valid = cols - width + 1
        base = flat if stride == 1 else (flat[0::2] + flat[1::2]).astype(np.float32)
        sums = _Doubling(base, 1, ws, "f").sums(width)
        padded = np.zeros(n_rows * cols, dtype=np.float32)
        padded[: sums.shape[0]] = sums
        compact = padded.reshape(n_rows, cols)[:, :valid].copy().ravel()
        first = max(0, n_carry - test.n_frames + 1)
        box = _Doubling(compact, valid, ws, "t").sums(test.n_frames)[first * valid :]
        hits = (box > np.float32(test.threshold)).reshape(-1, valid)
        if not hits.any():
            continue
        cover = _box_dilate(hits, test.n_frames, width)
        if stride > 1:
            cover = np.repeat(cover, stride, axis=1)
        painted[first : first + cover.shape[0], : cover.shape[1]] |= cover
        flat[painted.ravel()] = np.float32(neutral)
    return painted


def _run_kernel(grid: np.ndarray, n_carry: int, tests: tuple[BoxTest, ...], neutral: float) -> tuple[bool, np.ndarray]:
    n_frames, n_columns, strides, thresholds = _box_arrays(tests)
    level_shape, cover_shape = labelling.scratch_shapes(n_frames, n_columns, *grid.shape)
    painted = np.empty(grid.shape, dtype=bool)
    work = grid.copy()
    anything = labelling.box_tests(work, n_carry, n_frames, n_columns, strides, thresholds, np.float32(neutral),
                                   painted, np.empty(level_shape, np.float32), np.empty(cover_shape, bool))
    assert np.all(work[painted] == np.float32(neutral)) and np.array_equal(work[~painted], grid[~painted])
    return anything, painted


@pytest.mark.parametrize("width", [1, 2, 5, 7, 16, 29, 58])
@pytest.mark.parametrize("step", [1, 3, 64])
def test_tree_sums_equal_doubling_bit_for_bit(width: int, step: int) -> None:
    rng = np.random.default_rng(width * 100 + step)
    a = rng.gamma(2.0, 3.0, size=700).astype(np.float32)
    want = _Doubling(a, step, _Workspace(), "x").sums(width)
    got = labelling.tree_sums(a, width, step)
    assert got.dtype == np.float32 and np.array_equal(got, want)
    # float32 order matters: the plain float64 sum differs in the last bits somewhere
    exact = np.array([a[i : i + (width - 1) * step + 1 : step].astype(np.float64).sum() for i in range(got.shape[0])])
    assert np.allclose(got, exact, rtol=1e-5)


@pytest.mark.parametrize("width", range(1, labelling.SMALL_WIDTH + 1))
def test_small_tree_equals_doubling_bit_for_bit(width: int) -> None:
    """The one-pass sums of the narrow boxes are the levels' sums, rounding for rounding."""
    a = np.random.default_rng(width).gamma(2.0, 3.0, size=300).astype(np.float32) ** 3  # wide range: rounding shows
    want = _Doubling(a, 1, _Workspace(), "x").sums(width)
    got = np.full(a.shape[0], np.nan, dtype=np.float32)
    labelling._small_tree(a, width, got, want.shape[0])
    assert np.array_equal(got[: want.shape[0]], want) and np.isnan(got[want.shape[0] :]).all()


@pytest.mark.parametrize("template_width_hz", [80e3, 190e3, 300e3])
def test_box_tests_narrow_widths_paint_what_the_numpy_code_painted(template_width_hz: float) -> None:
    """2, 5 and 8 column boxes (the one-pass frequency sums), several lengths."""
    from dsp.detector import BurstDetector

    cfg = DetectorConfig(templates=(("a", 0.3e-3, template_width_hz), ("b", 0.55e-3, template_width_hz),
                                    ("c", 1.0e-3, template_width_hz), ("d", 1.0e-3, 720e3)))
    det = BurstDetector(cfg, 2.4e6, 900_000_000)
    grid = _grid_with_bursts(11, 300, det.n_columns)
    want = _reference_box_tests(grid, 9, det.box_tests, 4.0)
    anything, got = _run_kernel(grid, 9, det.box_tests, 4.0)
    assert anything and np.array_equal(got, want)


def _grid_with_bursts(seed: int, n_rows: int, n_cols: int) -> np.ndarray:
    """Noise cells (mean 4, as normalized cells) with strong and marginal rectangles."""
    rng = np.random.default_rng(seed)
    grid = rng.gamma(4.0, 1.0, size=(n_rows, n_cols)).astype(np.float32)
    for _ in range(12):
        r = int(rng.integers(0, n_rows - 3))
        c = int(rng.integers(0, n_cols - 3))
        h = int(rng.integers(2, 14))
        w = int(rng.integers(2, 40))
        grid[r : r + h, c : c + w] *= np.float32(rng.choice([1.3, 2.0, 8.0, 60.0]))
    return grid


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n_carry", [0, 9])
def test_box_tests_paint_what_the_numpy_code_painted(seed: int, n_carry: int) -> None:
    from dsp.detector import BurstDetector

    det = BurstDetector(DetectorConfig(), 2.4e6, 900_000_000)
    n_rows = n_carry + (520 if seed % 2 else 75)
    grid = _grid_with_bursts(seed, n_rows, det.n_columns)
    want = _reference_box_tests(grid, n_carry, det.box_tests, 4.0)
    anything, got = _run_kernel(grid, n_carry, det.box_tests, 4.0)
    assert anything == bool(want.any())
    assert np.array_equal(got, want)
    assert want.any() and not want.all()  # the scene exercises both outcomes


def test_box_tests_odd_configs_and_noise_only() -> None:
    from dsp.detector import BurstDetector

    cfg = DetectorConfig(fft_size=128, bins_per_cell=2, pfa=1e-3)
    det = BurstDetector(cfg, 1.2e6, 900_000_000)
    grid = _grid_with_bursts(3, 140, det.n_columns) / np.float32(2.0)
    want = _reference_box_tests(grid, 4, det.box_tests, 2.0)
    assert np.array_equal(_run_kernel(grid, 4, det.box_tests, 2.0)[1], want)
    quiet = np.full((60, det.n_columns), 2.0, dtype=np.float32)
    anything, painted = _run_kernel(quiet, 0, det.box_tests, 2.0)
    assert not anything and not painted.any()


@pytest.mark.parametrize("seed", range(6))
def test_label_regions_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 90)), int(rng.integers(1, 70)))
    mask = rng.random(shape) < [0.2, 0.45, 0.6][seed % 3]
    labels = np.full(mask.shape, 99, dtype=np.int32)  # stale contents are overwritten
    bounds = labelling.label_regions(mask, labels)
    want, n = ndimage.label(mask)
    assert np.array_equal(labels, want)
    slices = ndimage.find_objects(want)
    assert bounds.shape == (n, 4)
    assert [tuple(b) for b in bounds] == [(s[0].start, s[0].stop, s[1].start, s[1].stop) for s in slices]


def test_label_regions_spiral_and_empty() -> None:
    # a U shape whose arms meet late: provisional labels must merge to the first one
    mask = np.zeros((6, 7), dtype=bool)
    mask[:, 0] = mask[:, 6] = mask[5, :] = True
    mask[0:3, 3] = True
    labels = np.empty(mask.shape, dtype=np.int32)
    bounds = labelling.label_regions(mask, labels)
    assert np.array_equal(labels, ndimage.label(mask)[0])
    assert bounds.tolist() == [[0, 6, 0, 7], [0, 3, 3, 4]]
    labels = np.ones((4, 5), dtype=np.int32)
    bounds = labelling.label_regions(np.zeros((4, 5), dtype=bool), labels)
    assert not labels.any() and bounds.shape == (0, 4)


def test_region_sums_and_boxes_match_numpy() -> None:
    rng = np.random.default_rng(7)
    cells = rng.gamma(4.0, 1.0, size=(80, 64)).astype(np.float32)
    labels = np.empty((80, 64), dtype=np.int32)
    bounds = labelling.label_regions(rng.random((80, 64)) < 0.5, labels)
    ids = np.array([1, 3, 4, 9, labels.max()], dtype=np.int64)
    sel = bounds[ids - 1]
    g = 4.0
    own, rows, n_cells = labelling.region_sums(labels, cells, sel, ids, g)
    offsets, z = labelling.region_boxes(labels, cells, sel, ids, g)
    for i, lab in enumerate(ids):
        r0, r1, c0, c1 = sel[i]
        h = r1 - r0
        inside = labels[r0:r1, c0:c1] == lab
        values = cells[r0:r1, c0:c1].astype(np.float64)
        assert n_cells[i] == inside.sum()
        assert np.array_equal(z[offsets[i] : offsets[i + 1]], np.where(inside, values, g).ravel())
        want_own = np.zeros(64)
        want_own[c0:c1] = np.bincount(np.tile(np.arange(c1 - c0), h), weights=np.where(inside, values - g, 0.0).ravel(),
                                      minlength=c1 - c0)
        assert np.array_equal(own[i], want_own / h)
        padded = np.zeros((81, 64))
        padded[:-1] = cells
        want_rows = np.add.reduceat(padded, [r0, r1], axis=0)[0] / h - g
        assert np.array_equal(rows[i], want_rows)


def test_clear_finished_unsets_only_finished_labels() -> None:
    mask = np.array([[1, 1, 0, 1], [0, 0, 0, 1], [1, 0, 1, 1]], dtype=bool)
    labels = np.empty(mask.shape, dtype=np.int32)
    labelling.label_regions(mask, labels)
    finished = np.zeros(labels.max() + 1, dtype=bool)
    finished[2] = True
    kept = mask.copy()
    labelling.clear_finished(kept, labels, finished)
    assert np.array_equal(kept, mask & (labels != 2))


def _reference_artefacts(own: np.ndarray, rows: np.ndarray, c0: np.ndarray, c1: np.ndarray, image_ratio: float,
                         edge: int, ratio: float, g: float) -> np.ndarray:
    """The detector's former numpy artefact tests."""
    m, n = own.shape
    positive = np.maximum(own, 0.0)
    padded = np.zeros((m, n + 2))
    padded[:, 1:-1] = np.maximum(rows, 0.0)
    mirror = padded[:, ::-1]
    mirror = np.maximum(np.maximum(mirror[:, :-2], mirror[:, 1:-1]), mirror[:, 2:])
    total = positive.sum(axis=1)
    image = (total > 0) & (np.minimum(positive, mirror / image_ratio).sum(axis=1) >= 0.8 * total)
    low = (c0 < edge) & (c1 <= n // 2)
    high = (c1 > n - edge) & (c0 >= n // 2)
    cols = np.arange(n)[None, :]
    spanned = (cols >= c0[:, None]) & (cols < c1[:, None])
    peak = np.where(spanned, own, -np.inf).max(axis=1)
    strip_low = np.where(spanned & (cols < edge), own, -np.inf).max(axis=1)
    strip_high = np.where(spanned & (cols >= n - edge), own, -np.inf).max(axis=1)
    mine = np.where(low, strip_low, strip_high)
    theirs = np.where(low, rows[:, n - edge :].max(axis=1), rows[:, :edge].max(axis=1))
    alias = (low | high) & (mine >= 0.5 * peak) & (theirs > np.maximum(ratio * mine, 2.0 * g))
    return image | alias


@pytest.mark.parametrize("n", [3, 8, 13, 64, 128, 200, 512])
def test_pairwise_sum_is_numpys(n: int) -> None:
    """The artefact tests' sums (signed values over 16 decades) are numpy's, to the bit."""
    rng = np.random.default_rng(n)
    a = rng.standard_normal((5, n)) * 10.0 ** rng.uniform(-8, 8, size=(5, n))
    for row, want in zip(a, a.sum(axis=1), strict=True):
        assert pairwise_sum_f64(row, 0, n) == want


@pytest.mark.parametrize("seed", range(5))
def test_artefacts_match_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 64
    m = 300
    c0 = rng.integers(0, n, size=m)
    c1 = np.minimum(c0 + rng.integers(1, 12, size=m), n)
    rows = rng.standard_normal((m, n)) * 2.0
    rows[rng.random(m) < 0.5] *= 200.0  # strong signals: images and aliases
    own = np.zeros((m, n))
    for i in range(m):
        own[i, c0[i] : c1[i]] = rows[i, c0[i] : c1[i]] * rng.choice([1.0, 0.5, 0.02, -0.1])
        if rng.random() < 0.5:  # a faint copy of the mirror image
            own[i, c0[i] : c1[i]] = np.abs(rows[i, ::-1][c0[i] : c1[i]]) / 80.0
    want = _reference_artefacts(own, rows, c0, c1, 63.1, 3, 4.0, 4.0)
    got = labelling.artefacts(own, rows, c0, c1, 63.1, 3, n - 3, 3, 4.0, 4.0)
    assert np.array_equal(got, want)
    assert 0 < want.sum() < m
