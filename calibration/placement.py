"""Sensor placement planning: where to mount N sensors in the corridors for the best cell accuracy.

The locator tells cells apart by *differences* of level between sensors (a phone's
transmit power is unknown), against the building's static shadowing. How well it can
depends on where the sensors are: a sensor on a corridor's centre line hears the two
facing cells alike; one on a wall, close to a cell door, hears its own row 10 dB above
the facing row. This module searches the mounting positions for the placement that
maximizes the expected cell accuracy, on any site (nothing here knows a site's shape).

**Candidates** (:func:`candidate_positions`): points along every edge of each corridor
zone, ``wall_offset_m`` inside it (a sensor screwed to the wall), every ``spacing_m``, and
points along the corridor's centre line (the ridge of the distance to its walls), at
mounting height ``height_m``.

**Objective, fast** (:meth:`PlacementProblem.score`): the propagation model's mean loss
from the points of every place to every candidate is computed once. For a set of sensors,
the discriminability of a phone in place ``p`` from place ``q`` is the distance between the
two places' level vectors with the common level (the unknown transmit power) projected out,

    d²(p, q) = Σ_s w_s (Δ_s − Δ̄)² / σ²,   Δ_s = ℓ_s(p) − ℓ_s(q),   Δ̄ = Σ w_s Δ_s / Σ w_s

where ``ℓ`` is the level at the sensor clipped at its detection threshold (a sensor that
hears neither place tells nothing; one that hears only one tells through its silence),
``w_s`` is 1 where either place is heard, ``σ²`` the shadowing plus the spread of the loss
inside a place. Two Gaussian hypotheses ``d`` apart are confused with probability
``Q(d/2)``; a phone in ``p`` is placed right with probability about
``1 / (1 + Σ_{q≠p} Q(d(p, q)/2))``, averaged over a few transmit powers and over the cells. It is a sum over sensors,
so adding or moving one sensor is an O(places²) update.

**Search** (:func:`plan_placement`): greedy addition of the best candidate, then local moves
(each sensor to a candidate within ``move_radius_m`` on its floor, best improvement first)
until none helps; the same local search started from the naive placement; the better of the
two is the proposal.

**Objective, honest** (:meth:`PlacementProblem.oracle_accuracy`): the localization
benchmark's oracle, by Monte Carlo: phones at random points of random cells, transmit
power uniform in 5-25 dBm, log-normal shadowing of the true sigma, Rician fading on each of
``n_bursts`` bursts, bursts below the threshold missed, located by the service's own
:class:`service.locate.Locator` logic on the true model — here reimplemented without the
service (``calibration`` may not import it) as the same Gaussian likelihood with the
transmit power marginalized and the silent sensors censored. The proposal and the site's
current placement are compared on it.

**Naive placement** (:func:`naive_placement`): the sensors shared among the corridors in
proportion to their length and spaced evenly along each centre line (k-means of the
centre-line points): what one would do without this planner.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import spatial, special

from calibration import geometry
from calibration.fit import sensor_at, with_sensors
from calibration.propagation import PropagationModel, fading_db
from calibration.site import Sensor, Site

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

DEFAULT_HEIGHT_M = 2.6
DEFAULT_THRESHOLD_DBM = -97.0  # GSM burst at 6 dB SNR for an RTL-SDR at 28 dB of gain
DEFAULT_FREQ_HZ = 902.4e6
TX_POWERS_DBM = (8.0, 15.0, 22.0)  # the fast objective's transmit powers (phones: 5-25 dBm)
_CENTRE_GRID_M = 0.25
_SCORE_CHUNK = 1 << 19  # candidates x cells x places per vectorized pass


# ============================================================== candidates
@dataclass(frozen=True)
class Candidate:
    """A mounting position: a point of a corridor zone at mounting height."""

    xy: tuple[float, float]
    floor: int
    height_m: float
    zone_id: str
    wing: str | None
    kind: str  # "wall" or "centre"


def _thin(points: FloatArray, spacing_m: float) -> FloatArray:
    """Points at least ``spacing_m`` apart, kept greedily in the given order."""
    kept: list[FloatArray] = []
    for p in points:  # a loop over a few hundred candidate points
        if not kept or np.min(np.hypot(*(np.asarray(kept) - p).T)) >= 0.99 * spacing_m:
            kept.append(p)
    return np.asarray(kept).reshape(-1, 2)


def centre_line_points(polygon: FloatArray, spacing_m: float) -> FloatArray:
    """Points ``(K, 2)`` along a polygon's centre line: grid points where the distance to the
    walls is a local maximum (within half the corridor's width), thinned to ``spacing_m``."""
    grid = geometry.grid_in_polygon(polygon, _CENTRE_GRID_M, 0.0)
    if grid.shape[0] == 0:
        return geometry.polygon_centroid(polygon)[None, :]
    depth = geometry.distance_to_boundary(grid, polygon)
    radius = max(float(depth.max()), 2.0 * _CENTRE_GRID_M)
    tree = spatial.cKDTree(grid)
    neighbours = tree.query_ball_point(grid, r=radius)
    ridge = np.array([depth[i] >= depth[n].max() - 1e-6 for i, n in enumerate(neighbours)])
    points = grid[ridge]
    order = np.lexsort((points[:, 1], points[:, 0]))
    return _thin(points[order], spacing_m)


def wall_points(polygon: FloatArray, spacing_m: float, offset_m: float) -> FloatArray:
    """Points ``(K, 2)`` along every edge, ``offset_m`` inside, every ``spacing_m``."""
    starts, ends = geometry.polygon_edges(polygon)
    area_sign = 1.0 if geometry.signed_area_m2(polygon) > 0 else -1.0
    out = []
    for a, b in zip(starts, ends, strict=True):  # a loop over edges
        length = float(np.hypot(*(b - a)))
        n = int(length // spacing_m)
        if n < 1:
            continue
        t = (np.arange(n) + 0.5) / n
        direction = (b - a) / length
        inward = area_sign * np.array([-direction[1], direction[0]])  # left of the edge in a CCW polygon
        out.append(a + t[:, None] * (b - a) + offset_m * inward)
    if not out:
        return np.zeros((0, 2))
    points = np.vstack(out)
    inside = geometry.points_in_polygon(points, polygon)
    deep = geometry.distance_to_boundary(points, polygon) >= offset_m - 1e-6
    return _thin(points[inside & deep], spacing_m)


def corridor_zones(site: Site, kinds: Sequence[str] = ("corridor",)) -> list[int]:
    """Place indices of the zones sensors may go in."""
    return [i for i, p in enumerate(site.places) if not p.is_cell and p.kind in kinds]


def candidate_positions(site: Site, *, kinds: Sequence[str] = ("corridor",), spacing_m: float = 1.5,
                        wall_offset_m: float = 0.3, height_m: float = DEFAULT_HEIGHT_M) -> list[Candidate]:
    """Mounting positions along the walls and centre lines of the site's corridor zones."""
    out = []
    for index in corridor_zones(site, kinds):
        zone = site.places[index]
        for kind, points in (("wall", wall_points(zone.polygon, spacing_m, wall_offset_m)),
                             ("centre", centre_line_points(zone.polygon, spacing_m))):
            where = site.locate(points, zone.floor) if points.shape[0] else np.zeros(0, dtype=np.intp)
            for xy, place in zip(points, where, strict=True):
                if place == index:
                    out.append(Candidate((float(xy[0]), float(xy[1])), zone.floor, height_m, zone.id, zone.wing, kind))
    return out


def naive_placement(site: Site, n_sensors: int, *, kinds: Sequence[str] = ("corridor",),
                    height_m: float = DEFAULT_HEIGHT_M) -> list[Candidate]:
    """``n_sensors`` spread over the corridors by length, evenly along each centre line."""
    zones = corridor_zones(site, kinds)
    if not zones:
        raise ValueError(f"site {site.name!r} has no zone of kind {', '.join(kinds)} to put sensors in")
    lines = [centre_line_points(site.places[i].polygon, _CENTRE_GRID_M * 2) for i in zones]
    lengths = np.array([max(line.shape[0], 1) for line in lines], dtype=np.float64)
    share = n_sensors * lengths / lengths.sum()
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts))[: n_sensors - int(counts.sum())]:
        counts[i] += 1
    out = []
    for index, line, k in zip(zones, lines, counts, strict=True):
        if k == 0:
            continue
        zone = site.places[index]
        for xy in _even_points(line, int(k)):
            out.append(Candidate((float(xy[0]), float(xy[1])), zone.floor, height_m, zone.id, zone.wing, "centre"))
    return out


def _even_points(line: FloatArray, k: int) -> FloatArray:
    """``k`` points spread evenly over ``line``'s points: k-means (farthest-point start), snapped."""
    if k >= line.shape[0]:
        return line[:k]
    centres = [line[0]]
    for _ in range(k - 1):  # farthest-point initialization
        d = np.min(np.linalg.norm(line[:, None, :] - np.asarray(centres)[None], axis=2), axis=1)
        centres.append(line[int(np.argmax(d))])
    c = np.asarray(centres, dtype=np.float64)
    for _ in range(50):  # Lloyd iterations on a few hundred points
        owner = np.argmin(np.linalg.norm(line[:, None, :] - c[None], axis=2), axis=1)
        new = np.array([line[owner == j].mean(axis=0) if np.any(owner == j) else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    snapped = line[np.argmin(np.linalg.norm(line[:, None, :] - c[None], axis=2), axis=0)]
    return snapped[np.lexsort((snapped[:, 1], snapped[:, 0]))]


# ============================================================== the problem
@dataclass(frozen=True)
class PlacementResult:
    chosen: tuple[int, ...]  # candidate indices
    score: float  # the fast objective
    naive_score: float
    greedy_score: float
    n_moves: int


class PlacementProblem:
    """Loss tables from every place's points to every candidate, and the objectives on them."""

    def __init__(self, site: Site, candidates: Sequence[Candidate], *, model: PropagationModel | None = None,
                 freq_hz: float = DEFAULT_FREQ_HZ, sigma_db: float | None = None,
                 threshold_dbm: float = DEFAULT_THRESHOLD_DBM, phone_height_m: float = 1.2,
                 point_spacing_m: float = 1.0, max_points_per_place: int = 24) -> None:
        if not candidates:
            raise ValueError("no candidate positions")
        self.site = site
        self.candidates = list(candidates)
        self.model = model or PropagationModel.for_site(site)
        self.freq_hz = float(freq_hz)
        self.sigma_db = float(self.model.shadowing_sigma_db if sigma_db is None else sigma_db)
        self.threshold_dbm = float(threshold_dbm)
        self.phone_height_m = float(phone_height_m)
        points, owners = [], []
        for index, place in enumerate(site.places):
            spacing = max(point_spacing_m, math.sqrt(place.area_m2 / max_points_per_place))
            xy = site.sample_points(index, spacing_m=spacing)
            while xy.shape[0] > max_points_per_place:
                spacing *= 1.15
                xy = site.sample_points(index, spacing_m=spacing)
            z = float(site.z_m(place.floor, phone_height_m))
            points.append(np.column_stack([xy, np.full(xy.shape[0], z)]))
            owners.append(np.full(xy.shape[0], index))
        self.points_xyz = np.vstack(points)
        self.place_of_point = np.concatenate(owners)
        self.cand_xyz = np.array([[c.xy[0], c.xy[1], float(site.z_m(c.floor, c.height_m))] for c in self.candidates])
        j, c = self.points_xyz.shape[0], self.cand_xyz.shape[0]
        tx = np.repeat(self.points_xyz, c, axis=0)
        rx = np.tile(self.cand_xyz, (j, 1))
        self.loss_db = self.model.mean_path_loss_db(site, tx, rx, freq_hz).reshape(j, c)  # (J, C)
        n_places = len(site.places)
        counts = np.bincount(self.place_of_point, minlength=n_places).astype(np.float64)
        mean = np.zeros((n_places, c))
        np.add.at(mean, self.place_of_point, self.loss_db)
        mean /= counts[:, None]
        sq = np.zeros((n_places, c))
        np.add.at(sq, self.place_of_point, (self.loss_db - mean[self.place_of_point]) ** 2)
        self.place_loss_db = mean  # (P, C)
        self.place_var_db2 = sq / counts[:, None]
        self.cells = np.array([i for i, p in enumerate(site.places) if p.is_cell], dtype=np.intp)
        self._pair_terms = [self._terms(p) for p in TX_POWERS_DBM]

    def _terms(self, tx_dbm: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Per candidate, over (cell p, place q) pairs: weight w, w·Δ and w·Δ², shape ``(C, n_cells, P)``."""
        level = np.maximum(tx_dbm - self.place_loss_db, self.threshold_dbm)  # (P, C)
        heard = tx_dbm - self.place_loss_db >= self.threshold_dbm
        delta = level[self.cells][:, None, :] - level[None, :, :]  # (cells, P, C)
        informative = heard[self.cells][:, None, :] | heard[None, :, :]
        variance = self.sigma_db**2 + 0.5 * (self.place_var_db2[self.cells][:, None, :] + self.place_var_db2[None, :, :])
        w = np.where(informative, 1.0 / variance, 0.0)
        return (np.moveaxis(w, 2, 0).astype(np.float32), np.moveaxis(w * delta, 2, 0).astype(np.float32),
                np.moveaxis(w * delta**2, 2, 0).astype(np.float32))

    def score(self, chosen: Sequence[int]) -> float:
        """The fast objective: expected cell accuracy (0-1) of a set of candidate indices."""
        return self._score_from(self._accumulate(chosen))

    def _accumulate(self, chosen: Sequence[int]) -> list[tuple[FloatArray, FloatArray, FloatArray]]:
        idx = np.asarray(list(chosen), dtype=np.intp)
        return [(w[idx].sum(axis=0, dtype=np.float64), wd[idx].sum(axis=0, dtype=np.float64),
                 wd2[idx].sum(axis=0, dtype=np.float64)) for w, wd, wd2 in self._pair_terms]

    @staticmethod
    def _accuracy(w: npt.NDArray[np.floating], wd: npt.NDArray[np.floating], wd2: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
        """Mean over cells of ``1 / (1 + Σ_{q≠p} Q(d(p, q) / 2))`` for pair sums ``(..., cells, P)``."""
        d2 = np.maximum(wd2 - np.where(w > 0, wd**2 / np.maximum(w, 1e-12), 0.0), 0.0)
        confusion = special.ndtr(-0.5 * np.sqrt(d2)).sum(axis=-1) - 0.5  # the place itself: Q(0) = 0.5
        return np.mean(1.0 / (1.0 + confusion), axis=-1)

    @classmethod
    def _score_from(cls, sums: Sequence[tuple[FloatArray, FloatArray, FloatArray]]) -> float:
        return float(np.mean([cls._accuracy(w, wd, wd2) for w, wd, wd2 in sums]))

    def _scores_adding(self, sums: Sequence[tuple[FloatArray, FloatArray, FloatArray]],
                       options: IntArray, removing: int | None = None) -> FloatArray:
        """The objective for ``sums`` (minus candidate ``removing``) plus each of ``options``."""
        out = np.zeros(options.size)
        step = max(1, _SCORE_CHUNK // max(1, sums[0][0].size))
        for (w, wd, wd2), (cw, cwd, cwd2) in zip(sums, self._pair_terms, strict=True):
            if removing is not None:
                w, wd, wd2 = w - cw[removing], wd - cwd[removing], wd2 - cwd2[removing]
            for start in range(0, options.size, step):  # blocks of candidates, each one vectorized pass
                part = options[start:start + step]
                out[start:start + part.size] += self._accuracy(w[None] + cw[part], wd[None] + cwd[part],
                                                               wd2[None] + cwd2[part])
        return out / len(sums)

    # ---------------------------------------------------------------- search
    def greedy(self, n_sensors: int) -> list[int]:
        chosen: list[int] = []
        all_candidates = np.arange(len(self.candidates))
        for _ in range(n_sensors):
            sums = self._accumulate(chosen) if chosen else [
                (np.zeros_like(w[0], dtype=np.float64),) * 3 for w, _, _ in self._pair_terms]
            options = np.setdiff1d(all_candidates, chosen)
            scores = self._scores_adding(sums, options)
            chosen.append(int(options[int(np.argmax(scores))]))
        return chosen

    def improve(self, chosen: Sequence[int], move_radius_m: float = 6.0, max_rounds: int = 20) -> tuple[list[int], int]:
        """Local search: move one sensor at a time to a nearby candidate on its floor while it helps."""
        current = list(chosen)
        best = self.score(current)
        floors = np.array([c.floor for c in self.candidates])
        n_moves = 0
        for _ in range(max_rounds):
            improved = False
            for slot in range(len(current)):  # a loop over sensors
                here = current[slot]
                near = np.flatnonzero((floors == floors[here])
                                      & (np.linalg.norm(self.cand_xyz[:, :2] - self.cand_xyz[here, :2], axis=1)
                                         <= move_radius_m))
                near = np.setdiff1d(near, current)
                if near.size == 0:
                    continue
                sums = self._accumulate(current)
                scores = self._scores_adding(sums, near, removing=here)
                k = int(np.argmax(scores))
                if scores[k] > best + 1e-6:
                    current[slot] = int(near[k])
                    best = float(scores[k])
                    improved = True
                    n_moves += 1
            if not improved:
                break
        return current, n_moves

    def nearest(self, placement: Sequence[Candidate]) -> list[int]:
        """Candidate indices closest to given positions (same floor)."""
        out = []
        floors = np.array([c.floor for c in self.candidates])
        for p in placement:
            d = np.linalg.norm(self.cand_xyz[:, :2] - np.asarray(p.xy), axis=1) + 1e6 * (floors != p.floor)
            out.append(int(np.argmin(d)))
        return out

    # ---------------------------------------------------------------- honest objective
    def oracle_accuracy(self, sensors_xyz: FloatArray, *, n_phones: int = 600, n_bursts: int = 20,
                        seed: int = 0, tx_power_range_dbm: tuple[float, float] = (5.0, 25.0),
                        rician_k_db: float | None = None) -> dict[str, float]:
        """Monte-Carlo localization accuracy of a placement (module notes): % right cell for
        phones in cells, % right wing and floor, and the mean confidence."""
        rng = np.random.default_rng(seed)
        site = self.site
        s = sensors_xyz.shape[0]
        # the locator's table: every place point to every sensor
        j = self.points_xyz.shape[0]
        table = self.model.mean_path_loss_db(site, np.repeat(self.points_xyz, s, axis=0),
                                             np.tile(sensors_xyz, (j, 1)), self.freq_hz).reshape(j, s)
        cells = self.cells
        true_place = cells[rng.integers(0, cells.size, n_phones)]
        xyz = np.empty((n_phones, 3))
        for k, place in enumerate(true_place):  # a loop over phones to draw a point in their cell
            pts = site.sample_points(int(place), spacing_m=0.25, margin_m=0.3)
            xy = pts[rng.integers(pts.shape[0])]
            xyz[k] = (xy[0], xy[1], float(site.z_m(site.places[int(place)].floor, self.phone_height_m)))
        true_loss = self.model.mean_path_loss_db(site, np.repeat(xyz, s, axis=0), np.tile(sensors_xyz, (n_phones, 1)),
                                                 self.freq_hz).reshape(n_phones, s)
        power = rng.uniform(*tx_power_range_dbm, size=n_phones)
        shadow = rng.normal(0.0, self.sigma_db, size=(n_phones, s))
        k_db = self.model.rician_k_db if rician_k_db is None else rician_k_db
        fades = fading_db(rng, n_phones * s * n_bursts, k_db).reshape(n_phones, s, n_bursts)
        levels = (power[:, None] - true_loss - shadow)[:, :, None] + fades
        heard = levels >= self.threshold_dbm
        n_heard = heard.sum(axis=2)
        mean_level = np.where(n_heard > 0, np.where(heard, levels, 0.0).sum(axis=2) / np.maximum(n_heard, 1), np.nan)
        loglik = _oracle_loglik(mean_level, n_heard, n_bursts, table, self.sigma_db, self.threshold_dbm,
                                tx_power_range_dbm)
        place_of_point = self.place_of_point
        n_places = len(site.places)
        top = loglik.max(axis=1, keepdims=True)
        mass = np.zeros((n_phones, n_places))
        weights = np.exp(loglik - top)
        counts = np.bincount(place_of_point, minlength=n_places)
        for p in range(n_places):  # a loop over places: mean likelihood of its points
            mass[:, p] = weights[:, place_of_point == p].sum(axis=1) / counts[p]
        post = mass / mass.sum(axis=1, keepdims=True)
        best = np.argmax(post, axis=1)
        wings = np.array([p.wing or "" for p in site.places])
        floors = np.array([p.floor for p in site.places])
        return {
            "pct_correct_cell": 100.0 * float(np.mean(best == true_place)),
            "pct_correct_wing_floor": 100.0 * float(np.mean((wings[best] == wings[true_place])
                                                            & (floors[best] == floors[true_place]))),
            "mean_confidence": float(np.mean(post[np.arange(n_phones), best])),
            "pct_heard_by_two": 100.0 * float(np.mean((n_heard > 0).sum(axis=1) >= 2)),
        }

    def sensors_xyz(self, chosen: Sequence[int]) -> FloatArray:
        return self.cand_xyz[np.asarray(list(chosen), dtype=np.intp)]


def _oracle_loglik(level: FloatArray, n_heard: npt.NDArray[np.int64], n_bursts: int, table: FloatArray,
                   sigma_db: float, threshold_dbm: float, power_range: tuple[float, float]) -> FloatArray:
    """``(phones, points)`` log-likelihood: Gaussian levels with the transmit power marginalized
    over a flat prior, silent sensors censored below the threshold (as :mod:`service.locate`)."""
    heard = np.isfinite(level)
    sigma2 = sigma_db**2 + (5.0**2) / np.maximum(n_heard, 1)  # static + what is left of fading
    w = np.where(heard, 1.0 / sigma2, 0.0)  # (B, S)
    m = np.where(heard, level, 0.0)
    big_w = w.sum(axis=1)[:, None]
    a = (w * m).sum(axis=1)[:, None] + w @ table.T
    q = (w * m * m).sum(axis=1)[:, None] + 2.0 * (w * m) @ table.T + w @ (table * table).T
    safe = np.maximum(big_w, 1e-12)
    p_hat = a / safe
    resid = np.maximum(q - a * p_hat, 0.0)
    lo, hi = power_range
    mass = special.ndtr((hi - p_hat) * np.sqrt(safe)) - special.ndtr((lo - p_hat) * np.sqrt(safe))
    loglik = -0.5 * resid - 0.5 * np.log(safe) + np.log(np.maximum(mass, 1e-300))
    p_used = np.clip(p_hat, lo, hi)
    # silent sensors: every burst fell below the threshold
    silent = ~heard
    shift = np.minimum(5.0 * special.ndtri(0.5 ** (1.0 / n_bursts)), 6.0)
    for s in range(table.shape[1]):  # a loop over sensors
        rows = silent[:, s]
        if np.any(rows):
            z = ((threshold_dbm - shift) - (p_used[rows] - table[None, :, s])) / sigma_db
            loglik[rows] += special.log_ndtr(z)
    no_level = ~heard.any(axis=1)
    if np.any(no_level):
        loglik[no_level] = np.where(np.isfinite(loglik[no_level]), loglik[no_level], -1e300)
    return loglik


# ============================================================== the planner
def plan_placement(problem: PlacementProblem, n_sensors: int, *, naive: Sequence[Candidate] | None = None,
                   move_radius_m: float = 6.0) -> PlacementResult:
    """Greedy + local moves, and local moves from the naive placement; the better of the two."""
    if n_sensors < 1:
        raise ValueError("n_sensors must be >= 1")
    if n_sensors > len(problem.candidates):
        raise ValueError(f"only {len(problem.candidates)} candidate positions for {n_sensors} sensors")
    greedy = problem.greedy(n_sensors)
    greedy_score = problem.score(greedy)
    from_greedy, moves_a = problem.improve(greedy, move_radius_m)
    starts = [(from_greedy, moves_a)]
    naive_score = float("nan")
    if naive:
        naive_idx = problem.nearest(naive)
        if len(set(naive_idx)) == len(naive_idx):
            naive_score = problem.score(naive_idx)
            starts.append(problem.improve(naive_idx, move_radius_m))
    best, moves = max(starts, key=lambda item: problem.score(item[0]))
    return PlacementResult(tuple(best), problem.score(best), naive_score, greedy_score, moves)


def sensors_for(site: Site, candidates: Sequence[Candidate], *, prefix_by_zone: bool = True) -> list[Sensor]:
    """Sensors (for a site file) at the given positions, ids ``<wing><floor>-S<n>`` per corridor."""
    taken = {p.id for p in site.places}
    counters: dict[str, int] = {}
    out = []
    for c in sorted(candidates, key=lambda c: (c.floor, c.zone_id, c.xy[0], c.xy[1])):
        stem = f"{c.wing or 'Z'}{c.floor}" if prefix_by_zone else "S"
        counters[stem] = counters.get(stem, 0) + 1
        sensor_id = f"{stem}-S{counters[stem]}"
        while sensor_id in taken:
            sensor_id += "x"
        taken.add(sensor_id)
        out.append(sensor_at(site, sensor_id, c.xy, c.floor, c.height_m, c.wing))
    return out


def site_with(site: Site, candidates: Sequence[Candidate], note: str = " (proposed sensors)") -> Site:
    return with_sensors(site, sensors_for(site, candidates), note)
