"""Plane geometry for the site model, vectorized with numpy.

Pure functions on float64 arrays in metres: point-in-polygon, distance to a
polygon's boundary, path/wall-segment crossings for many paths at once, and the
checks a site file is validated with (polygon overlap, self-crossing).

Why signed distances: every side test below is expressed as the signed distance
of a point from a line through a *unit* direction vector, so one tolerance in
metres (``TOL_M``) means the same thing everywhere, whatever the length of the
wall or of the path.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

TOL_M = 1e-6
"""Geometric tolerance in metres: points closer than this to a line are on it."""

# Path rows handled per chunk in segment_crossings: about 2^17 (path, segment)
# pairs per chunk keeps the four float64 work arrays in cache (measured fastest
# on 2 vCPUs; chunks 8x larger ran about twice as slow).
_PAIRS_PER_CHUNK = 1 << 17


def signed_area_m2(polygon: FloatArray) -> float:
    """Shoelace area of a closed polygon ``(k, 2)``: positive when counter-clockwise."""
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def polygon_centroid(polygon: FloatArray) -> FloatArray:
    """Area centroid ``(2,)`` of a simple polygon (vertex mean if its area is zero)."""
    x, y = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    area6 = 3.0 * float(cross.sum())
    if abs(area6) < 1e-12:
        return polygon.mean(axis=0)
    return np.array([np.dot(x + x1, cross) / area6, np.dot(y + y1, cross) / area6])


def polygon_edges(polygon: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Start and end points ``(k, 2)`` of the k edges of a closed polygon."""
    return polygon, np.roll(polygon, -1, axis=0)


def points_in_polygon(xy: FloatArray, polygon: FloatArray) -> BoolArray:
    """Which of the points ``xy (N, 2)`` lie inside ``polygon (k, 2)``, shape ``(N,)``.

    Crossing-number (ray casting) rule with half-open edges: of two polygons sharing
    an edge, a point on that edge belongs to exactly one, so polygons that tile a
    floor assign every point of it once.
    """
    xy = np.asarray(xy, dtype=np.float64)
    polygon = np.asarray(polygon, dtype=np.float64)
    px = xy[:, 0:1]
    py = xy[:, 1:2]
    start, end = polygon_edges(polygon)
    xi, yi, xj, yj = start[:, 0], start[:, 1], end[:, 0], end[:, 1]
    dy = yj - yi
    slope = np.divide(xj - xi, dy, out=np.zeros_like(dy), where=dy != 0)
    straddles = (yi > py) != (yj > py)  # (N, k); False on horizontal edges
    x_cross = xi + (py - yi) * slope
    n_crossings = np.count_nonzero(straddles & (px < x_cross), axis=1)
    return (n_crossings % 2) == 1


def nearest_on_segments(xy: FloatArray, start: FloatArray, end: FloatArray) -> tuple[FloatArray, FloatArray]:
    """For each point ``(N, 2)``: the nearest point ``(N, 2)`` on the segments ``(k, 2)`` and its distance ``(N,)``."""
    xy = np.asarray(xy, dtype=np.float64)
    start = np.asarray(start, dtype=np.float64)
    d = np.asarray(end, dtype=np.float64) - start  # (k, 2)
    length2 = np.einsum("ij,ij->i", d, d)
    rel_x = xy[:, 0:1] - start[:, 0]
    rel_y = xy[:, 1:2] - start[:, 1]
    t = np.divide(
        rel_x * d[:, 0] + rel_y * d[:, 1], length2, out=np.zeros_like(rel_x), where=length2 > 0
    )
    np.clip(t, 0.0, 1.0, out=t)
    gap_x = rel_x - t * d[:, 0]
    gap_y = rel_y - t * d[:, 1]
    dist2 = gap_x * gap_x + gap_y * gap_y
    best = np.argmin(dist2, axis=1)
    rows = np.arange(xy.shape[0])
    nearest = np.stack([xy[:, 0] - gap_x[rows, best], xy[:, 1] - gap_y[rows, best]], axis=1)
    return nearest, np.sqrt(dist2[rows, best])


def distance_to_segments(xy: FloatArray, start: FloatArray, end: FloatArray) -> FloatArray:
    """Distance ``(N,)`` from each point ``(N, 2)`` to the nearest of the segments ``(k, 2)``."""
    return nearest_on_segments(xy, start, end)[1]


def distance_to_boundary(xy: FloatArray, polygon: FloatArray) -> FloatArray:
    """Distance ``(N,)`` from each point to the boundary of ``polygon``."""
    start, end = polygon_edges(polygon)
    return distance_to_segments(xy, start, end)


def points_strictly_inside(xy: FloatArray, polygon: FloatArray, tol_m: float = TOL_M) -> BoolArray:
    """Points inside ``polygon`` and farther than ``tol_m`` from its boundary."""
    if xy.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    return points_in_polygon(xy, polygon) & (distance_to_boundary(xy, polygon) > tol_m)


def segment_crossings(
    a_xy: FloatArray,
    b_xy: FloatArray,
    seg_start: FloatArray,
    seg_end: FloatArray,
    tol_m: float = TOL_M,
) -> tuple[IntArray, IntArray, FloatArray]:
    """Every (path, segment) pair whose 2-D segments meet, as sparse index lists.

    Paths run from ``a_xy[n]`` to ``b_xy[n]`` (both ``(N, 2)``); segments from
    ``seg_start[s]`` to ``seg_end[s]`` (``(S, 2)``, non-zero length). Returns
    ``(path_idx, seg_idx, t)``, with ``t`` in [0, 1] the fraction of the path where it
    meets the segment. Touching counts (an end of either within ``tol_m`` of the
    other); a path running along a segment's line (collinear) does not, since it
    grazes the wall rather than passing through it, nor does a zero-length path.

    The four side tests are signed distances (of a and b from each segment's line,
    of the segment's ends from each path's line), each an ``(n, 3) @ (3, S)`` matrix
    product, computed in chunks of paths so memory stays bounded for N = 10^5.
    """
    a_xy, b_xy, seg_start, seg_end = (
        np.asarray(v, dtype=np.float64) for v in (a_xy, b_xy, seg_start, seg_end)
    )
    n_paths = a_xy.shape[0]
    n_segs = seg_start.shape[0]
    empty = (np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0, np.float64))
    if n_paths == 0 or n_segs == 0:
        return empty

    seg_vec = seg_end - seg_start
    seg_unit = seg_vec / np.hypot(seg_vec[:, 0], seg_vec[:, 1])[:, None]
    # Signed distance of point p from segment s's line: p_y*u_x - p_x*u_y - k_s.
    seg_k = seg_start[:, 1] * seg_unit[:, 0] - seg_start[:, 0] * seg_unit[:, 1]
    side_of_point = np.stack([-seg_unit[:, 1], seg_unit[:, 0], -seg_k])  # (3, S)
    # Signed distance of a segment end q from path n's line: r_x*q_y - r_y*q_x - m_n.
    start_h = np.stack([seg_start[:, 1], -seg_start[:, 0], np.ones(n_segs)])  # (3, S)
    end_h = np.stack([seg_end[:, 1], -seg_end[:, 0], np.ones(n_segs)])

    rows = max(16, _PAIRS_PER_CHUNK // n_segs)
    path_parts: list[IntArray] = []
    seg_parts: list[IntArray] = []
    t_parts: list[FloatArray] = []
    for first in range(0, n_paths, rows):
        a = a_xy[first : first + rows]
        b = b_xy[first : first + rows]
        n = a.shape[0]
        ones = np.ones((n, 1))
        dist_a = np.hstack([a, ones]) @ side_of_point  # (n, S)
        dist_b = np.hstack([b, ones]) @ side_of_point
        path_vec = b - a
        path_len = np.hypot(path_vec[:, 0], path_vec[:, 1])
        path_unit = np.divide(
            path_vec, path_len[:, None], out=np.zeros_like(path_vec), where=path_len[:, None] > 0
        )
        path_m = path_unit[:, 0] * a[:, 1] - path_unit[:, 1] * a[:, 0]
        path_h = np.column_stack([path_unit[:, 0], path_unit[:, 1], -path_m])
        dist_c = path_h @ start_h
        dist_d = path_h @ end_h

        # a and b not strictly on the same side of the wall line, and the wall's
        # ends not strictly on the same side of the path line.
        low = np.minimum(dist_a, dist_b)
        hit = low <= tol_m
        hit &= np.maximum(dist_a, dist_b, out=low) >= -tol_m
        np.minimum(dist_c, dist_d, out=low)
        hit &= low <= tol_m
        hit &= np.maximum(dist_c, dist_d, out=low) >= -tol_m

        path_idx, seg_idx = np.nonzero(hit)
        da = dist_a[path_idx, seg_idx]
        db = dist_b[path_idx, seg_idx]
        collinear = (np.abs(da) <= tol_m) & (np.abs(db) <= tol_m)
        keep = ~collinear
        path_idx, seg_idx, da, db = path_idx[keep], seg_idx[keep], da[keep], db[keep]
        t = np.clip(da / (da - db), 0.0, 1.0)
        path_parts.append(path_idx + first)
        seg_parts.append(seg_idx)
        t_parts.append(t)
    return np.concatenate(path_parts), np.concatenate(seg_parts), np.concatenate(t_parts)


def segments_meet(
    p1: FloatArray,
    p2: FloatArray,
    q1: FloatArray,
    q2: FloatArray,
    tol_m: float = TOL_M,
    proper: bool = False,
) -> BoolArray:
    """Do segments p (``(P, 2)`` ends) and q (``(Q, 2)`` ends) meet? ``(P, Q)`` booleans.

    ``proper=True``: only crossings through the interior of both segments, each end
    farther than ``tol_m`` from the other's line (two rooms sharing a wall or a corner
    do not cross). ``proper=False``: any contact, touching and collinear overlap
    included (used to find a polygon edge meeting a non-adjacent edge).
    """

    def side(a: FloatArray, b: FloatArray, c: FloatArray) -> FloatArray:
        # Signed distance of points c (Q, 2) from the lines a->b (P, 2): (P, Q).
        d = b - a
        length = np.hypot(d[:, 0], d[:, 1])[:, None]
        cross = d[:, 0:1] * (c[:, 1] - a[:, 1:2]) - d[:, 1:2] * (c[:, 0] - a[:, 0:1])
        return cross / length

    s1 = side(p1, p2, q1)  # q's ends from p's lines, (P, Q)
    s2 = side(p1, p2, q2)
    s3 = side(q1, q2, p1).T  # p's ends from q's lines, (P, Q)
    s4 = side(q1, q2, p2).T
    if proper:
        return (
            (s1 * s2 < 0)
            & (np.minimum(np.abs(s1), np.abs(s2)) > tol_m)
            & (s3 * s4 < 0)
            & (np.minimum(np.abs(s3), np.abs(s4)) > tol_m)
        )
    straddle_q = (np.minimum(s1, s2) <= tol_m) & (np.maximum(s1, s2) >= -tol_m)
    straddle_p = (np.minimum(s3, s4) <= tol_m) & (np.maximum(s3, s4) >= -tol_m)
    collinear = (np.abs(s1) <= tol_m) & (np.abs(s2) <= tol_m)
    # Collinear pairs meet only if their extents along the common line overlap.
    d = p2 - p1
    unit = d / np.hypot(d[:, 0], d[:, 1])[:, None]
    along_q1 = unit[:, 0:1] * (q1[:, 0] - p1[:, 0:1]) + unit[:, 1:2] * (q1[:, 1] - p1[:, 1:2])
    along_q2 = unit[:, 0:1] * (q2[:, 0] - p1[:, 0:1]) + unit[:, 1:2] * (q2[:, 1] - p1[:, 1:2])
    length = np.hypot(d[:, 0], d[:, 1])[:, None]
    overlap = (np.maximum(along_q1, along_q2) >= -tol_m) & (
        np.minimum(along_q1, along_q2) <= length + tol_m
    )
    return np.where(collinear, overlap, straddle_q & straddle_p)


def self_crossing(polygon: FloatArray, tol_m: float = TOL_M) -> tuple[int, int] | None:
    """The first pair of non-adjacent edges of ``polygon`` that meet, or None if it is simple."""
    polygon = np.asarray(polygon, dtype=np.float64)
    k = polygon.shape[0]
    if k < 4:
        return None
    start, end = polygon_edges(polygon)
    meet = segments_meet(start, end, start, end, tol_m)
    idx = np.arange(k)
    gap = np.abs(idx[:, None] - idx[None, :])
    adjacent = (gap <= 1) | (gap == k - 1)
    pairs = np.argwhere(meet & ~adjacent & (idx[:, None] < idx[None, :]))
    if pairs.size == 0:
        return None
    return int(pairs[0, 0]), int(pairs[0, 1])


def _probe_points(polygon: FloatArray, other: FloatArray, tol_m: float) -> FloatArray:
    """Points of ``polygon`` to test against ``other`` for a positive-area overlap.

    Each edge is cut where ``other``'s edges meet it and at ``other``'s vertices that
    lie on it; the probes are the vertices, the mid-points of the pieces, and those
    mid-points moved a little into the polygon. If the two interiors overlap, one
    probe of one polygon lies strictly inside the other: either a piece of boundary
    runs through the other's interior, or the boundaries coincide along a piece
    and the nudged mid-point beside it lies in both interiors.
    """
    start, end = polygon_edges(polygon)
    o_start, o_end = polygon_edges(other)
    edge = end - start
    length = np.hypot(edge[:, 0], edge[:, 1])
    unit = edge / length[:, None]
    orientation = 1.0 if signed_area_m2(polygon) > 0 else -1.0
    inward = orientation * np.column_stack([-unit[:, 1], unit[:, 0]])
    nudge_m = max(100.0 * tol_m, 1e-4)

    probes = [polygon]
    for i in range(polygon.shape[0]):
        cuts = [0.0, 1.0]
        # Where other's edges cross this edge's line within the edge.
        _, _, t = segment_crossings(start[i : i + 1], end[i : i + 1], o_start, o_end, tol_m)
        cuts.extend(t.tolist())
        # Other's vertices on this edge (also catches collinear overlaps).
        rel = other - start[i]
        along = rel @ unit[i]
        across = rel[:, 0] * unit[i, 1] - rel[:, 1] * unit[i, 0]
        on_edge = (np.abs(across) <= tol_m) & (along > 0) & (along < length[i])
        cuts.extend((along[on_edge] / length[i]).tolist())
        t_sorted = np.unique(np.clip(cuts, 0.0, 1.0))
        mids = 0.5 * (t_sorted[:-1] + t_sorted[1:])
        mid_points = start[i] + mids[:, None] * edge[i]
        probes.append(mid_points)
        probes.append(mid_points + nudge_m * inward[i])
    return np.vstack(probes)


def polygons_overlap(p: FloatArray, q: FloatArray, tol_m: float = TOL_M) -> bool:
    """Do two simple polygons share a positive area? Shared edges and corners do not count.

    Boundaries crossing properly, or a probe point (:func:`_probe_points`) of one
    strictly inside the other, means an overlap; anything thinner than ``tol_m``
    is taken as touching.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p_min, p_max = p.min(axis=0), p.max(axis=0)
    q_min, q_max = q.min(axis=0), q.max(axis=0)
    if np.any(p_min >= q_max - tol_m) or np.any(q_min >= p_max - tol_m):
        return False
    p_start, p_end = polygon_edges(p)
    q_start, q_end = polygon_edges(q)
    if segments_meet(p_start, p_end, q_start, q_end, tol_m, proper=True).any():
        return True
    for a, b in ((p, q), (q, p)):
        probes = _probe_points(a, b, tol_m)
        # A nudged probe counts only if it stayed inside its own polygon.
        inside_own = points_in_polygon(probes, a) | (distance_to_boundary(probes, a) <= tol_m)
        if np.any(inside_own & points_strictly_inside(probes, b, tol_m)):
            return True
    return False


def locate_points(
    xy: FloatArray,
    floors: npt.NDArray[np.int64],
    polygons: list[FloatArray],
    polygon_floors: list[int],
) -> IntArray:
    """Index of the first polygon on the point's floor that contains it, -1 if none; ``(N,)``.

    A bounding-box test first keeps the ray casting to the few points near each polygon.
    """
    result = np.full(xy.shape[0], -1, dtype=np.intp)
    for index, (polygon, floor) in enumerate(zip(polygons, polygon_floors, strict=True)):
        lo = polygon.min(axis=0)
        hi = polygon.max(axis=0)
        candidate = (result < 0) & (floors == floor)
        candidate &= (
            (xy[:, 0] >= lo[0]) & (xy[:, 0] <= hi[0]) & (xy[:, 1] >= lo[1]) & (xy[:, 1] <= hi[1])
        )
        rows = np.flatnonzero(candidate)
        if rows.size:
            result[rows[points_in_polygon(xy[rows], polygon)]] = index
    return result


def grid_in_polygon(polygon: FloatArray, spacing_m: float, margin_m: float) -> FloatArray:
    """A square grid ``(K, 2)`` of points inside ``polygon``, at least ``margin_m`` from its edges.

    The grid is centred on the polygon's bounding box so a symmetric room gets
    symmetric points. K may be 0 when the polygon is smaller than the margins.
    """
    lo = polygon.min(axis=0) + margin_m
    hi = polygon.max(axis=0) - margin_m
    if np.any(hi < lo):
        return np.zeros((0, 2))
    axes = []
    for dim in range(2):
        span = hi[dim] - lo[dim]
        n = int(np.floor(span / spacing_m + 1e-9)) + 1
        offset = 0.5 * (span - (n - 1) * spacing_m)
        axes.append(lo[dim] + offset + spacing_m * np.arange(n))
    gx, gy = np.meshgrid(axes[0], axes[1], indexing="xy")
    points = np.column_stack([gx.ravel(), gy.ravel()])
    keep = points_in_polygon(points, polygon) & (
        distance_to_boundary(points, polygon) >= margin_m - 1e-9
    )
    return points[keep]
