"""Fit the propagation model of a site to survey measurements by robust least squares.

The site file's wall losses are a plan: a building deviates from it by a few dB per wall
(the concrete is thicker, a door is steel, a partition holds a duct). A survey walk with a
reference transmitter measures the real loss from many places to every sensor; this
module fits the parameters of :class:`calibration.propagation.PropagationModel` to those
measurements and writes a site file the locator can use (:func:`format_site_toml`).

**Parameters** (each can be left at the plan's value):

* ``path_loss_exponent`` ``n`` of the distance term;
* the slab loss ``L_f`` (the site's ``floor_loss_db``, or its ``[propagation]`` override);
* one loss per wall *group* (the walls sharing a ``material`` label, or, unlabelled, the
  walls the plan gives the same loss), plus optionally a deviation per wall with a
  Gaussian prior of ``wall_prior_db`` (ridge regularization: a wall the survey does not
  see keeps its group's value, one it sees clearly moves);
* a level offset per sensor ``o_s`` (receiver gain error and antenna gain together: what a
  gain calibration would remove; :func:`sensor_offsets_to_calibration` turns it into
  ``gain_offset_db`` updates).

**The model** is the plan's own, evaluated on precomputed geometry: for every (point,
sensor) row the distances, the walls each path crosses and the slabs, for the straight path
and for the corridor route (:func:`calibration.propagation.corridor_waypoints`), are fixed;
the loss is then linear in the parameters on each branch and the mean loss is the smaller
branch, exactly as :meth:`PropagationModel.mean_path_loss_db`. :class:`PathGeometry` checks
that equality at the plan's parameters before any fit, so a change of the model cannot
silently leave this fit behind.

**Observations** are mean losses over a place (the reference carried around inside it) or
at a point: the prediction for a place is the mean in dB of the model's loss over the
place's sample points, the same average the walk measured over its stops (a power average
would not do: a few random stops rarely hit the spot nearest the sensor that dominates the
power average over a dense grid, and log-normal shadowing biases power averages by
``σ²·ln10/20`` dB).

**Fit**: :func:`scipy.optimize.least_squares` with a ``soft_l1`` loss (``f_scale`` of the
order of the shadowing) and an analytic Jacobian; weak Gaussian priors on every parameter
around the plan keep unobserved parameters where they were. The residual sigma reported is
``1.4826 · MAD`` of the data residuals: the building's shadowing that no parameter of a
deterministic model can absorb, what the locator's ``sigma_static_db`` should be.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize

from calibration import propagation
from calibration.propagation import PropagationModel, corridor_waypoints
from calibration.site import Place, Sensor, Site, Wall

FloatArray = npt.NDArray[np.float64]

WALL_MODES = ("none", "material", "wall")
MODEL_AGREEMENT_DB = 0.05  # PathGeometry vs PropagationModel at the plan's parameters


# ============================================================== geometry
class PathGeometry:
    """Parameter-free geometry of rows (point ``tx (R, 3)``, sensor index ``(R,)``, frequency ``(R,)``).

    :meth:`loss_db` gives the model's mean loss for any exponent, wall losses and slab
    loss; the other model constants (reference distance, ``L_c``, frequency scaling of
    walls, corridor turn loss, floor-loss law, antenna gains and patterns) stay the model's.
    """

    def __init__(self, site: Site, model: PropagationModel, tx_xyz: FloatArray, sensors: npt.NDArray[np.intp],
                 freq_hz: FloatArray) -> None:
        self.site, self.model = site, model
        tx = np.asarray(tx_xyz, dtype=np.float64)
        sensors = np.asarray(sensors, dtype=np.intp)
        freq = np.broadcast_to(np.asarray(freq_hz, dtype=np.float64), (tx.shape[0],)).copy()
        rx = site.sensor_xyz()[sensors]
        self.n_rows = tx.shape[0]
        self.sensors = sensors
        self.scale = model.wall_loss_scale(freq)
        self.base_db = model.constant_loss_db + model.free_space_reference_db(freq)
        gains = np.array([s.antenna_gain_dbi for s in site.sensors], dtype=np.float64)
        pattern = propagation.AntennaPattern.of(site, sensors, tx.shape[0])
        self.base_db = self.base_db - gains[sensors]
        self.log_d_st = self._log_distance(site.distance_m(tx, rx))
        self.walls_st = site.walls_crossed(tx, rx).astype(np.float32)
        self.floors_st = site.floors_crossed(tx, rx)
        self.pattern_st = pattern.gain_db(tx, rx) if pattern is not None else np.zeros(self.n_rows)
        self.via = np.zeros(self.n_rows, dtype=bool)
        self.log_d_rt = np.zeros(0)
        self.walls_rt = np.zeros((0, site.n_walls), dtype=np.float32)
        self.floors_rt1 = self.floors_rt2 = np.zeros(0, dtype=np.int64)
        self.pattern_rt = np.zeros(0)
        if model.corridor_paths:
            waypoints = corridor_waypoints(site, tx)
            self.via = np.isfinite(waypoints[:, 0])
            v = self.via
            if np.any(v):
                w = waypoints[v]
                total = site.distance_m(tx[v], w) + site.distance_m(w, rx[v])
                self.log_d_rt = self._log_distance(total)
                self.walls_rt = (site.walls_crossed(tx[v], w).astype(np.float32)
                                 + site.walls_crossed(w, rx[v]).astype(np.float32))
                self.floors_rt1 = site.floors_crossed(tx[v], w)
                self.floors_rt2 = site.floors_crossed(w, rx[v])
                self.pattern_rt = pattern.gain_db(w, rx[v], v) if pattern is not None else np.zeros(int(v.sum()))
        self.floor_terms_st = model.floor_loss(self.floors_st, 1.0)
        self.floor_terms_rt = model.floor_loss(self.floors_rt1, 1.0) + model.floor_loss(self.floors_rt2, 1.0)

    def _log_distance(self, distance_m: FloatArray) -> FloatArray:
        d0 = self.model.reference_distance_m
        return 10.0 * np.log10(np.maximum(distance_m, d0) / d0)

    def branches(self, exponent: float, wall_db: FloatArray, floor_db: float) -> tuple[FloatArray, FloatArray]:
        """Loss of the straight path ``(R,)`` and of the corridor route ``(R_via,)``."""
        wall = np.asarray(wall_db, dtype=np.float32)
        straight = (self.base_db + exponent * self.log_d_st
                    + self.scale * (self.walls_st @ wall + floor_db * self.floor_terms_st) - self.pattern_st)
        v = self.via
        routed = (self.base_db[v] + exponent * self.log_d_rt
                  + self.scale[v] * (self.walls_rt @ wall + floor_db * self.floor_terms_rt)
                  + self.model.corridor_turn_loss_db - self.pattern_rt)
        return straight, routed

    def loss_db(self, exponent: float, wall_db: FloatArray, floor_db: float) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """Mean loss ``(R,)`` and which rows take the corridor route."""
        straight, routed = self.branches(exponent, wall_db, floor_db)
        out = straight.astype(np.float64)
        use_route = np.zeros(self.n_rows, dtype=bool)
        if routed.size:
            better = routed < straight[self.via]
            rows = np.flatnonzero(self.via)
            use_route[rows[better]] = True
            out[rows] = np.minimum(straight[self.via], routed)
        return out, use_route


# ============================================================== observations and parameters
@dataclass(frozen=True)
class FitObservation:
    """A measured mean loss from a place (its points) or a point to one sensor."""

    points_xyz: FloatArray  # (K, 3): the points it averages over
    sensor_index: int
    freq_hz: float
    loss_db: float  # transmit power minus the power-averaged received level
    label: str = ""


def wall_groups(site: Site) -> tuple[list[str], npt.NDArray[np.intp]]:
    """Group names and each wall's group: its material label, else the plan's loss value."""
    names: list[str] = []
    index = np.zeros(site.n_walls, dtype=np.intp)
    for i, wall in enumerate(site.walls):
        name = wall.material if wall.material else f"{wall.loss_db:g} dB walls"
        if name not in names:
            names.append(name)
        index[i] = names.index(name)
    return names, index


@dataclass(frozen=True)
class FitOptions:
    """What to fit and how (see the module notes)."""

    fit_exponent: bool = True
    fit_floor_loss: bool = True
    wall_mode: str = "wall"  # "none": plan's walls; "material": one loss per group; "wall": groups + per-wall deviations
    wall_prior_db: float = 3.0  # how far a single wall may stray from its group (ridge prior)
    group_prior_db: float = 8.0
    exponent_prior: float = 0.5
    floor_prior_db: float = 8.0
    fit_offsets: bool = True
    offset_prior_db: float = 6.0
    f_scale_db: float = 4.0  # soft_l1 transition: residuals beyond this count less than squared
    loss: str = "soft_l1"

    def __post_init__(self) -> None:
        if self.wall_mode not in WALL_MODES:
            raise ValueError(f"wall_mode must be one of {', '.join(WALL_MODES)}")
        for name in ("wall_prior_db", "group_prior_db", "exponent_prior", "floor_prior_db", "offset_prior_db",
                     "f_scale_db"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")


@dataclass(frozen=True)
class FittedValue:
    name: str
    plan: float
    fitted: float
    stderr: float
    unit: str
    n_walls: int = 0


@dataclass
class FitResult:
    """The fitted parameters, the fitted site, and how well the model now explains the survey."""

    site: Site
    exponent: FittedValue
    floor_loss: FittedValue
    groups: list[FittedValue]
    wall_loss_db: FloatArray  # (n_walls,) fitted, per wall
    sensor_offsets: dict[str, FittedValue]
    residuals_db: FloatArray  # data residuals, predicted minus measured loss
    plan_residuals_db: FloatArray  # the same at the plan's parameters (offsets 0)
    n_observations: int
    success: bool
    message: str
    labels: list[tuple[str, str]] = field(default_factory=list)  # (place/stop, sensor id) per observation

    @property
    def residual_sigma_db(self) -> float:
        return _robust_sigma(self.residuals_db)

    @property
    def plan_residual_sigma_db(self) -> float:
        return _robust_sigma(self.plan_residuals_db)

    @property
    def residual_bias_db(self) -> float:
        return float(np.median(self.residuals_db)) if self.residuals_db.size else float("nan")

    @property
    def plan_bias_db(self) -> float:
        return float(np.median(self.plan_residuals_db)) if self.plan_residuals_db.size else float("nan")

    def outliers(self, n_sigma: float = 3.0) -> list[tuple[str, str, float]]:
        """Observations the fit could not explain (beyond ``n_sigma`` robust sigmas), worst first."""
        sigma = self.residual_sigma_db
        bad = np.flatnonzero(np.abs(self.residuals_db) > n_sigma * sigma)
        order = bad[np.argsort(-np.abs(self.residuals_db[bad]))]
        return [(*self.labels[i], float(self.residuals_db[i])) for i in order] if self.labels else []

    def report(self) -> str:
        """A multi-line table of the fitted values for the command line."""
        lines = [f"model fit: {self.n_observations} (place, sensor) losses, "
                 f"residual sigma {self.residual_sigma_db:.2f} dB (plan: {self.plan_residual_sigma_db:.2f} dB), "
                 f"median residual {self.residual_bias_db:+.2f} dB (plan: {self.plan_bias_db:+.2f} dB)"
                 + ("" if self.success else f"  [optimizer: {self.message}]")]
        rows = [self.exponent, self.floor_loss, *self.groups]
        lines.append(f"  {'parameter':<28} {'plan':>8} {'fitted':>8} {'± 1σ':>7}")
        for value in rows:
            extra = f"  ({value.n_walls} walls)" if value.n_walls else ""
            lines.append(f"  {value.name:<28} {value.plan:8.2f} {value.fitted:8.2f} {value.stderr:7.2f} {value.unit}{extra}")
        if self.sensor_offsets:
            lines.append("  sensor level offsets (measured minus model; a gain calibration removes them):")
            for sensor_id, value in self.sensor_offsets.items():
                lines.append(f"    {sensor_id:<26} {value.fitted:+8.2f} {value.stderr:7.2f} dB")
        return "\n".join(lines)


def _robust_sigma(values: FloatArray) -> float:
    if values.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


# ============================================================== the fit
def _plan_floor_loss(site: Site, model: PropagationModel) -> float:
    return float(model.floor_loss_db if model.floor_loss_db is not None else site.floor_loss_db)


def fit_site(site: Site, observations: Sequence[FitObservation], *, model: PropagationModel | None = None,
             options: FitOptions | None = None) -> FitResult:
    """Fit the site's propagation model to ``observations`` (see the module notes)."""
    model = model or PropagationModel.for_site(site)
    opts = options or FitOptions()
    if not observations:
        raise ValueError("no observations to fit")
    counts = np.array([o.points_xyz.shape[0] for o in observations], dtype=np.int64)
    tx = np.vstack([o.points_xyz for o in observations])
    sensors = np.repeat([o.sensor_index for o in observations], counts).astype(np.intp)
    freq = np.repeat([o.freq_hz for o in observations], counts)
    geometry = PathGeometry(site, model, tx, sensors, freq)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    measured = np.array([o.loss_db for o in observations], dtype=np.float64)
    obs_sensor = np.array([o.sensor_index for o in observations], dtype=np.intp)

    plan_walls = np.array([w.loss_db for w in site.walls], dtype=np.float64)
    plan_exponent = model.path_loss_exponent
    plan_floor = _plan_floor_loss(site, model)
    _check_agreement(geometry, tx, sensors, freq, plan_exponent, plan_walls, plan_floor)

    group_names, group_of = wall_groups(site)
    n_groups = len(group_names)
    membership = np.zeros((site.n_walls, n_groups))
    membership[np.arange(site.n_walls), group_of] = 1.0
    group_plan = np.array([plan_walls[group_of == g].mean() for g in range(n_groups)]) if n_groups else np.zeros(0)
    deviation_plan = plan_walls - (group_plan[group_of] if n_groups else 0.0)
    heard_sensors = np.unique(obs_sensor)

    # parameter vector layout: [exponent?, floor?, groups?, deviations?, offsets?]
    blocks: dict[str, slice] = {}
    cursor = 0
    sizes = {
        "exponent": 1 if opts.fit_exponent else 0,
        "floor": 1 if opts.fit_floor_loss else 0,
        "groups": n_groups if opts.wall_mode in ("material", "wall") else 0,
        "deviations": site.n_walls if opts.wall_mode == "wall" else 0,
        "offsets": heard_sensors.size if opts.fit_offsets else 0,
    }
    for name, size in sizes.items():
        blocks[name] = slice(cursor, cursor + size)
        cursor += size
    n_params = cursor
    x0 = np.concatenate([
        [plan_exponent] * sizes["exponent"], [plan_floor] * sizes["floor"],
        group_plan if sizes["groups"] else [], deviation_plan if sizes["deviations"] else [],
        np.zeros(sizes["offsets"]),
    ]).astype(np.float64)
    prior_sigma = np.concatenate([
        [opts.exponent_prior] * sizes["exponent"], [opts.floor_prior_db] * sizes["floor"],
        [opts.group_prior_db] * sizes["groups"], [opts.wall_prior_db] * sizes["deviations"],
        [opts.offset_prior_db] * sizes["offsets"],
    ])
    lower = np.concatenate([[1.0] * sizes["exponent"], [0.0] * sizes["floor"], [0.0] * sizes["groups"],
                            [-40.0] * sizes["deviations"], [-30.0] * sizes["offsets"]])
    upper = np.concatenate([[6.0] * sizes["exponent"], [80.0] * sizes["floor"], [80.0] * sizes["groups"],
                            [40.0] * sizes["deviations"], [30.0] * sizes["offsets"]])
    x0 = np.clip(x0, lower + 1e-9, upper - 1e-9)
    offset_column = np.full(len(site.sensors), -1, dtype=np.intp)
    offset_column[heard_sensors] = np.arange(heard_sensors.size)

    def unpack(x: FloatArray) -> tuple[float, float, FloatArray, FloatArray]:
        exponent = float(x[blocks["exponent"]][0]) if sizes["exponent"] else plan_exponent
        floor_db = float(x[blocks["floor"]][0]) if sizes["floor"] else plan_floor
        if sizes["groups"]:
            walls = x[blocks["groups"]][group_of] + (x[blocks["deviations"]] if sizes["deviations"] else deviation_plan)
        else:
            walls = plan_walls
        offsets = np.zeros(len(site.sensors))
        if sizes["offsets"]:
            offsets[heard_sensors] = x[blocks["offsets"]]
        return exponent, floor_db, np.maximum(walls, 0.0), offsets

    point_weights = 1.0 / np.repeat(counts, counts).astype(np.float64)  # mean in dB over each observation's points

    def predict(x: FloatArray) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
        exponent, floor_db, walls, offsets = unpack(x)
        rows, routed = geometry.loss_db(exponent, walls, floor_db)
        pred = np.add.reduceat(rows * point_weights, starts) + offsets[obs_sensor]
        return pred, point_weights, routed

    def residuals(x: FloatArray) -> FloatArray:
        pred, _, _ = predict(x)
        data = pred - measured
        prior = (x - x0) / prior_sigma * opts.f_scale_db
        return np.concatenate([data, prior])

    def jacobian(x: FloatArray) -> FloatArray:
        _, weights, routed = predict(x)
        rows_j = np.zeros((geometry.n_rows, n_params))
        walls = unpack(x)[2]
        via_rows = np.flatnonzero(geometry.via)
        route_pos = np.full(geometry.n_rows, -1, dtype=np.intp)
        route_pos[via_rows] = np.arange(via_rows.size)
        on_route = routed
        if sizes["exponent"]:
            col = geometry.log_d_st.copy()
            col[on_route] = geometry.log_d_rt[route_pos[on_route]]
            rows_j[:, blocks["exponent"].start] = col
        if sizes["floor"]:
            col = geometry.scale * geometry.floor_terms_st
            col[on_route] = (geometry.scale[on_route] * geometry.floor_terms_rt[route_pos[on_route]])
            rows_j[:, blocks["floor"].start] = col
        if sizes["groups"]:
            crossing = geometry.walls_st.astype(np.float64)
            if np.any(on_route):
                crossing[on_route] = geometry.walls_rt[route_pos[on_route]]
            crossing *= geometry.scale[:, None]
            crossing[:, walls <= 0.0] = 0.0  # clipped walls do not move
            rows_j[:, blocks["groups"]] = crossing @ membership
            if sizes["deviations"]:
                rows_j[:, blocks["deviations"]] = crossing
        obs_j = np.add.reduceat(rows_j * weights[:, None], starts, axis=0)
        if sizes["offsets"]:
            obs_j[np.arange(len(observations)), blocks["offsets"].start + offset_column[obs_sensor]] = 1.0
        prior_j = np.diag(opts.f_scale_db / prior_sigma)
        return np.vstack([obs_j, prior_j])

    solution = optimize.least_squares(residuals, x0, jac=jacobian, bounds=(lower, upper), loss=opts.loss,
                                      f_scale=opts.f_scale_db, x_scale="jac", max_nfev=200, tr_solver="lsmr")
    x = solution.x
    pred, _, _ = predict(x)
    data_residuals = pred - measured
    plan_pred, _, _ = predict(_plan_vector(x0, blocks, sizes))
    plan_residuals = plan_pred - measured
    stderr = _standard_errors(solution.jac, len(observations), _robust_sigma(data_residuals), opts.f_scale_db)

    exponent, floor_db, walls, offsets = unpack(x)
    groups = []
    for g, name in enumerate(group_names):
        members = group_of == g
        fitted = float(walls[members].mean())
        err = float(stderr[blocks["groups"]][g]) if sizes["groups"] else 0.0
        groups.append(FittedValue(f"walls: {name}", float(group_plan[g]), fitted, err, "dB", int(members.sum())))
    offsets_out = {}
    if sizes["offsets"]:
        for k, s in enumerate(heard_sensors):
            offsets_out[site.sensors[int(s)].id] = FittedValue(
                site.sensors[int(s)].id, 0.0, float(offsets[s]), float(stderr[blocks["offsets"]][k]), "dB")
    fitted_site = fitted_site_from(site, model, exponent, floor_db, walls, group_names, group_of)
    return FitResult(
        site=fitted_site,
        exponent=FittedValue("path loss exponent", plan_exponent, exponent,
                             float(stderr[blocks["exponent"]][0]) if sizes["exponent"] else 0.0, ""),
        floor_loss=FittedValue("floor slab loss", plan_floor, floor_db,
                               float(stderr[blocks["floor"]][0]) if sizes["floor"] else 0.0, "dB"),
        groups=groups,
        wall_loss_db=walls,
        sensor_offsets=offsets_out,
        residuals_db=data_residuals,
        plan_residuals_db=plan_residuals,
        n_observations=len(observations),
        success=bool(solution.success),
        message=str(solution.message),
        labels=[(o.label, site.sensors[o.sensor_index].id) for o in observations],
    )


def _plan_vector(x0: FloatArray, blocks: Mapping[str, slice], sizes: Mapping[str, int]) -> FloatArray:
    """The parameter vector of the plan itself: x0 with the sensor offsets at 0 (they already are)."""
    out = x0.copy()
    if sizes["offsets"]:
        out[blocks["offsets"]] = 0.0
    return out


def _standard_errors(jac: FloatArray, n_data: int, sigma_db: float, f_scale_db: float) -> FloatArray:
    """1-sigma errors of the parameters from the Gauss-Newton curvature (data rows at ``sigma_db``)."""
    j = np.asarray(jac, dtype=np.float64)
    data, prior = j[:n_data], j[n_data:]
    scale = max(sigma_db, 1e-3)
    # priors were written in units of f_scale: a prior row's variance is f_scale²
    information = data.T @ data / scale**2 + prior.T @ prior / f_scale_db**2
    try:
        covariance = np.linalg.pinv(information)
    except np.linalg.LinAlgError:
        return np.full(j.shape[1], np.nan)
    return np.sqrt(np.maximum(np.diag(covariance), 0.0))


def _check_agreement(geometry: PathGeometry, tx: FloatArray, sensors: npt.NDArray[np.intp], freq: FloatArray,
                     exponent: float, walls: FloatArray, floor_db: float) -> None:
    """The precomputed geometry reproduces the model at the plan's parameters (else this fit is stale)."""
    mine, _ = geometry.loss_db(exponent, walls, floor_db)
    theirs = geometry.model.mean_path_loss_db(geometry.site, tx, sensors, freq)
    worst = float(np.max(np.abs(mine - theirs))) if mine.size else 0.0
    if worst > MODEL_AGREEMENT_DB:
        raise RuntimeError(f"calibration.fit's path geometry differs from PropagationModel by {worst:.2f} dB: "
                           "the model changed, update PathGeometry")


# ============================================================== fitted site and its file
def fitted_site_from(site: Site, model: PropagationModel, exponent: float, floor_db: float, walls_db: FloatArray,
                     group_names: Sequence[str], group_of: npt.NDArray[np.intp]) -> Site:
    """The site with fitted wall losses, slab loss and exponent (in its ``[propagation]`` table)."""
    walls = tuple(Wall(floor=w.floor, points=w.points, loss_db=round(float(loss), 2), material=w.material)
                  for w, loss in zip(site.walls, walls_db, strict=True))
    materials = dict(site.materials)
    for g, name in enumerate(group_names):
        if name in materials:
            materials[name] = round(float(np.mean(walls_db[group_of == g])), 2)
    prop = dict(site.propagation)
    if exponent != model.path_loss_exponent or "path_loss_exponent" in prop:
        prop["path_loss_exponent"] = round(float(exponent), 3)
    floor_loss_site = site.floor_loss_db
    if "floor_loss_db" in prop:
        prop["floor_loss_db"] = round(float(floor_db), 2)
    else:
        floor_loss_site = round(float(floor_db), 2)
    return Site(name=site.name, source=f"{site.source} (fitted)", floor_height_m=site.floor_height_m,
                floor_loss_db=floor_loss_site, wings=site.wings, cells=site.cells, zones=site.zones, walls=walls,
                sensors=site.sensors, propagation=prop, materials=materials, wing_names=site.wing_names)


def sensor_offsets_to_calibration(offsets: Mapping[str, FittedValue], current: Mapping[str, float]) -> dict[str, float]:
    """New ``gain_offset_db`` per sensor that removes a fitted level offset.

    A sensor reading ``o`` dB low (its measured loss ``o`` above the model's) has a gain
    ``o`` dB below what the calibration assumes: ``gain_offset_db`` drops by ``o``.
    """
    return {sensor_id: float(current.get(sensor_id, 0.0)) - value.fitted for sensor_id, value in offsets.items()}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(round(v, 6))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple | np.ndarray):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _points(array: FloatArray) -> str:
    return "[" + ", ".join(f"[{_toml_value(float(x))}, {_toml_value(float(y))}]" for x, y in array) + "]"


def _place_line(place: Place) -> str:
    parts = [f"id = {_toml_value(place.id)}"]
    if not place.is_cell:
        parts.append(f"kind = {_toml_value(place.kind)}")
    if place.wing is not None:
        parts.append(f"wing = {_toml_value(place.wing)}")
    parts.append(f"floor = {place.floor}")
    parts.append(f"polygon = {_points(place.polygon)}")
    return "  { " + ", ".join(parts) + " },"


def format_site_toml(site: Site, header: str = "") -> str:
    """A complete site file for ``site`` (DESIGN.md's contract plus the optional extras it uses).

    Every wall gets an explicit ``loss_db`` (fitted walls differ from their material);
    sensor fields are written when they differ from their defaults, so files stay short.
    """
    out: list[str] = []
    if header:
        out.extend("# " + line if line else "#" for line in header.splitlines())
        out.append("")
    out.append(f"name = {_toml_value(site.name)}")
    out.append(f"floor_height_m = {_toml_value(site.floor_height_m)}")
    out.append(f"floor_loss_db = {_toml_value(site.floor_loss_db)}")
    out.append("")
    for label, loss in site.materials.items():
        out.append(f"materials.{json.dumps(label)} = {{ loss_db = {_toml_value(loss)} }}")
    if site.materials:
        out.append("")
    out.append("wings = [")
    for wing in site.wings:
        name = site.wing_names.get(wing)
        extra = f", name = {_toml_value(name)}" if name else ""
        out.append(f"  {{ id = {_toml_value(wing)}{extra} }},")
    out.append("]")
    out.append("")
    out.append("cells = [")
    out.extend(_place_line(c) for c in site.cells)
    out.append("]")
    out.append("")
    out.append("zones = [")
    out.extend(_place_line(z) for z in site.zones)
    out.append("]")
    out.append("")
    out.append("walls = [")
    for wall in site.walls:
        material = f", material = {_toml_value(wall.material)}" if wall.material else ""
        out.append(f"  {{ floor = {wall.floor}, points = {_points(wall.points)}, "
                   f"loss_db = {_toml_value(wall.loss_db)}{material} }},")
    out.append("]")
    if site.propagation:  # tables after every top-level key: a key below a [table] header belongs to it
        out.append("")
        out.append("[propagation]")
        out.extend(f"{key} = {_toml_value(value)}" for key, value in site.propagation.items())
    for sensor in site.sensors:
        out.append("")
        out.append("[[sensors]]")
        out.extend(_sensor_lines(sensor))
    return "\n".join(out) + "\n"


_SENSOR_ALWAYS = ("id", "wing", "floor", "position", "height_m")


def _sensor_lines(sensor: Sensor) -> list[str]:
    lines = []
    defaults = {f.name: f.default for f in fields(Sensor)}
    for f in fields(Sensor):
        if f.name == "place_id":
            continue
        value = getattr(sensor, f.name)
        if value is None:
            continue
        if f.name not in _SENSOR_ALWAYS and isinstance(defaults.get(f.name), int | float) and value == defaults[f.name]:
            continue
        if f.name == "position":
            value = [float(v) for v in value]
        lines.append(f"{f.name} = {_toml_value(value)}")
    return lines


def sensor_at(site: Site, sensor_id: str, xy: Sequence[float], floor: int, height_m: float, wing: str | None) -> Sensor:
    """A new sensor of ``site`` at ``xy`` (its place found as the site loader would)."""
    index = int(site.locate(np.asarray([xy], dtype=np.float64), floor)[0])
    if index < 0:
        raise ValueError(f"{sensor_id}: ({xy[0]:.2f}, {xy[1]:.2f}) on floor {floor} lies in no cell or zone")
    return Sensor(id=sensor_id, wing=wing, floor=int(floor), position=np.asarray(xy, dtype=np.float64),
                  height_m=float(height_m), place_id=site.places[index].id)


def with_sensors(site: Site, sensors: Sequence[Sensor], source_note: str = "") -> Site:
    """The same site with another set of sensors."""
    return Site(name=site.name, source=f"{site.source}{source_note}", floor_height_m=site.floor_height_m,
                floor_loss_db=site.floor_loss_db, wings=site.wings, cells=site.cells, zones=site.zones,
                walls=site.walls, sensors=tuple(sensors), propagation=site.propagation, materials=site.materials,
                wing_names=site.wing_names)


__all__ = [
    "FitObservation", "FitOptions", "FitResult", "FittedValue", "PathGeometry", "fit_site", "fitted_site_from",
    "format_site_toml", "sensor_at", "sensor_offsets_to_calibration", "wall_groups", "with_sensors",
]
