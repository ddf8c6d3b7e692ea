"""Plane geometry of the site model: point in polygon, crossings, overlap checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibration import geometry

SQUARE = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]])
# L shape: 4 x 1 foot along x, 1 x 4 leg up the right side.
ELL = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [3.0, 4.0], [3.0, 1.0], [0.0, 1.0]])


def shifted(polygon: np.ndarray, dx: float, dy: float = 0.0) -> np.ndarray:
    return polygon + np.array([dx, dy])


def reference_crossing(a, b, c, d, tol=geometry.TOL_M):
    """Scalar reference: does path a->b meet segment c->d (touching yes, collinear no)? t or None."""
    r = b - a
    s = d - c
    denom = r[0] * s[1] - r[1] * s[0]
    if abs(denom) < 1e-12:
        return None
    q = c - a
    t = (q[0] * s[1] - q[1] * s[0]) / denom
    u = (q[0] * r[1] - q[1] * r[0]) / denom
    eps_t = tol / np.hypot(*r)
    eps_u = tol / np.hypot(*s)
    if -eps_t <= t <= 1 + eps_t and -eps_u <= u <= 1 + eps_u:
        return min(max(t, 0.0), 1.0)
    return None


# ----------------------------------------------------------------- polygons
def test_area_and_centroid_of_an_l_shape():
    assert geometry.signed_area_m2(ELL) == pytest.approx(7.0)
    assert geometry.signed_area_m2(ELL[::-1]) == pytest.approx(-7.0)
    # Foot: area 4 at (2, 0.5); leg above it: area 3 at (3.5, 2.5).
    expected = (4 * np.array([2.0, 0.5]) + 3 * np.array([3.5, 2.5])) / 7
    np.testing.assert_allclose(geometry.polygon_centroid(ELL), expected)


def test_points_in_polygon_l_shape():
    xy = np.array([[0.5, 0.5], [3.5, 3.5], [1.0, 3.0], [2.0, 2.0], [5.0, 0.5], [-0.1, 0.5]])
    assert geometry.points_in_polygon(xy, ELL).tolist() == [True, True, False, False, False, False]


def test_points_in_polygon_does_not_depend_on_orientation():
    xy = np.random.default_rng(3).uniform(-1, 5, (500, 2))
    np.testing.assert_array_equal(
        geometry.points_in_polygon(xy, ELL), geometry.points_in_polygon(xy, ELL[::-1])
    )


@settings(max_examples=60, deadline=None)
@given(st.floats(0.0, 3.99, allow_nan=False), st.booleans())
def test_point_on_a_shared_edge_belongs_to_exactly_one_polygon(s, on_vertical_edge):
    # Four squares tiling [0, 4)^2: a point on an inner edge (or the centre corner) is in exactly one.
    tiles = [shifted(SQUARE, dx, dy) for dx in (0.0, 2.0) for dy in (0.0, 2.0)]
    point = np.array([[2.0, s]]) if on_vertical_edge else np.array([[s, 2.0]])
    owners = sum(int(geometry.points_in_polygon(point, tile)[0]) for tile in tiles)
    assert owners == 1


def test_distance_to_boundary():
    xy = np.array([[1.0, 1.0], [1.0, 0.25], [3.0, 1.0], [2.0, 2.0]])
    np.testing.assert_allclose(geometry.distance_to_boundary(xy, SQUARE), [1.0, 0.25, 1.0, 0.0])


def test_grid_in_polygon_keeps_margin_and_is_centred():
    points = geometry.grid_in_polygon(np.array([[0, 0], [3, 0], [3, 4], [0, 4.0]]), 0.5, 0.3)
    assert points.shape == (5 * 7, 2)
    assert (
        geometry.distance_to_boundary(points, np.array([[0, 0], [3, 0], [3, 4], [0, 4.0]])).min()
        >= 0.3 - 1e-9
    )
    np.testing.assert_allclose(points.mean(axis=0), [1.5, 2.0])
    inside_ell = geometry.grid_in_polygon(ELL, 0.25, 0.1)
    assert geometry.points_in_polygon(inside_ell, ELL).all()
    assert geometry.grid_in_polygon(SQUARE, 0.5, 1.5).shape == (0, 2)


def test_self_crossing_finds_a_bow_tie_and_accepts_simple_polygons():
    bow_tie = np.array([[0.0, 0.0], [2.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    assert geometry.self_crossing(bow_tie) == (0, 2)
    assert geometry.self_crossing(SQUARE) is None
    assert geometry.self_crossing(ELL) is None
    # A vertex touching a non-adjacent edge is not a simple polygon either.
    pinched = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    assert geometry.self_crossing(pinched) is not None


# ------------------------------------------------------------------ overlap
def _square(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


@pytest.mark.parametrize(
    ("other", "overlap"),
    [
        pytest.param(shifted(SQUARE, 2.0), False, id="shared-edge"),
        pytest.param(shifted(SQUARE, 2.0, 2.0), False, id="shared-corner"),
        pytest.param(shifted(SQUARE, 3.0), False, id="apart"),
        pytest.param(shifted(SQUARE, 2.0 - 1e-8), False, id="overlap-below-tolerance"),
        pytest.param(shifted(SQUARE, 1.9), True, id="strip-proper-crossings"),
        pytest.param(SQUARE.copy(), True, id="identical"),
        pytest.param(SQUARE[::-1].copy(), True, id="identical-reversed"),
        pytest.param(_square(0, 0, 1, 2), True, id="inside-3-edges-shared"),
        pytest.param(_square(0, 0, 2, 1), True, id="half-same-vertices"),
        pytest.param(
            np.array([[1.0, 0], [2, 1], [1, 2], [0, 1]]), True, id="diamond-touching-sides"
        ),
        pytest.param(_square(0.5, 0.5, 1.5, 1.5), True, id="strictly-inside"),
        pytest.param(_square(-1, -1, 3, 3), True, id="contains"),
        pytest.param(_square(1, 2, 3, 4), False, id="edges-overlap-in-part"),
    ],
)
def test_polygons_overlap(other, overlap):
    assert geometry.polygons_overlap(SQUARE, other) is overlap
    assert geometry.polygons_overlap(other, SQUARE) is overlap


def test_l_corridor_and_the_cells_in_its_crook_do_not_overlap():
    crook_cell = np.array([[0.0, 1.0], [3.0, 1.0], [3.0, 4.0], [0.0, 4.0]])
    assert not geometry.polygons_overlap(ELL, crook_cell)
    assert geometry.polygons_overlap(ELL, shifted(crook_cell, 0.5))


# ---------------------------------------------------------------- crossings
def test_segment_crossing_parameter():
    a = np.array([[0.0, 0.0]])
    b = np.array([[4.0, 0.0]])
    path, seg, t = geometry.segment_crossings(a, b, np.array([[1.0, -1.0]]), np.array([[1.0, 1.0]]))
    assert path.tolist() == [0] and seg.tolist() == [0]
    assert t[0] == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("b", "start", "end", "hit"),
    [
        ([2.0, 0.0], [2.0, -1.0], [2.0, 1.0], True),  # path ends on the wall
        ([4.0, 0.0], [1.0, 0.0], [1.0, 1.0], True),  # wall end touches the path
        ([4.0, 0.0], [1.0, 0.5], [1.0, 1.0], False),  # wall stops short of the path
        ([4.0, 0.0], [1.0, 0.0], [3.0, 0.0], False),  # collinear: runs along the wall
        ([4.0, 0.0], [0.0, 1.0], [4.0, 1.0], False),  # parallel
        ([0.0, 0.0], [0.0, -1.0], [0.0, 1.0], False),  # zero-length path on a wall
    ],
)
def test_segment_crossing_edge_cases(b, start, end, hit):
    path, _, _ = geometry.segment_crossings(
        np.array([[0.0, 0.0]]), np.array([b]), np.array([start]), np.array([end])
    )
    assert (path.size == 1) is hit


def test_segment_crossings_match_a_scalar_reference_across_chunks():
    rng = np.random.default_rng(11)
    n_paths, n_segs = 1500, 120  # more paths than one chunk holds at this segment count
    a = rng.uniform(0, 10, (n_paths, 2))
    b = rng.uniform(0, 10, (n_paths, 2))
    c = rng.uniform(0, 10, (n_segs, 2))
    d = c + rng.uniform(-3, 3, (n_segs, 2))
    # Exact touching cases: some paths end on a segment's start point.
    b[:40] = c[:40]
    path, seg, t = geometry.segment_crossings(a, b, c, d)
    got = {(int(p), int(s)): float(v) for p, s, v in zip(path, seg, t, strict=True)}
    expected = {}
    for p in range(n_paths):
        for s in range(n_segs):
            value = reference_crossing(a[p], b[p], c[s], d[s])
            if value is not None:
                expected[(p, s)] = value
    assert got.keys() == expected.keys()
    assert all(abs(got[k] - expected[k]) < 1e-9 for k in got)
    assert all((p, p) in got for p in range(40))


def test_locate_points_takes_the_floor_into_account():
    polygons = [SQUARE, shifted(SQUARE, 2.0), SQUARE]
    xy = np.array([[1.0, 1.0], [3.0, 1.0], [1.0, 1.0], [9.0, 9.0]])
    floors = np.array([0, 0, 1, 0])
    assert geometry.locate_points(xy, floors, polygons, [0, 0, 1]).tolist() == [0, 1, 2, -1]
