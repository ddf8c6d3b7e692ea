"""The site model: wings, floors, cells, zones, walls and sensors of one prison.

A site file (TOML, DESIGN.md "Site file") is read once with :func:`load_site`,
validated completely, and becomes a :class:`Site`: immutable places, walls and
sensors plus the vectorized geometry the simulator and the locator share
(which place a point is in, which walls and slabs a radio path crosses). Every
mistake a user can make in the file raises :class:`~dsp.errors.InputError`
naming the file and the field, e.g. ``demo.toml: cells[3].polygon: needs at
least 3 points``.

3-D coordinates are ``(x_m, y_m, z_m)`` with ``z_m = (floor - min(floors)) *
floor_height_m + height above that floor``. A wall is a vertical polyline
standing on its floor, from that floor's z up to the next floor's (half-open);
floors are separated by slabs of ``floor_loss_db`` each.

Optional extras beyond DESIGN.md's contract (documented in
``calibration/sites/demo_prison.toml``):

* ``[wings]`` entries may carry a display ``name``.
* ``[materials.<label>] loss_db = ...``: a wall naming that ``material`` and no
  ``loss_db`` takes the material's loss; an explicit ``loss_db`` wins.
* ``[[sensors]] antenna_gain_dbi`` (default 0.0): the antenna's gain toward the
  cell block, for the propagation model.
* ``[[sensors]] antenna_azimuth_deg`` (default: none, an omnidirectional antenna):
  where a directional antenna points, degrees counter-clockwise from +x (0 = east,
  90 = north), with ``antenna_beamwidth_deg`` (half-power, default 65) and
  ``antenna_front_to_back_db`` (default 20): a door antenna aimed into its cell.
* ``[propagation]``: kept as a raw dict for the propagation model, not checked here.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from calibration import geometry
from dsp.errors import InputError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_FLOOR_HEIGHT_M = 3.0
DEFAULT_FLOOR_LOSS_DB = 18.0
DEFAULT_ANTENNA_GAIN_DBI = 0.0
DEFAULT_ANTENNA_BEAMWIDTH_DEG = 65.0  # a patch/sector antenna (3GPP TR 38.901 Table 7.3-1)
DEFAULT_ANTENNA_FRONT_TO_BACK_DB = 20.0

_TOP_KEYS = {
    "name", "floor_height_m", "floor_loss_db", "wings", "cells", "zones", "walls", "sensors",
    "materials", "propagation",
}  # fmt: skip
_WING_KEYS = {"id", "name"}
_CELL_KEYS = {"id", "wing", "floor", "polygon"}
_ZONE_KEYS = {"id", "kind", "wing", "floor", "polygon"}
_WALL_KEYS = {"floor", "points", "loss_db", "material"}
_SENSOR_KEYS = {"id", "wing", "floor", "position", "height_m", "antenna_gain_dbi", "antenna_azimuth_deg",
                "antenna_beamwidth_deg", "antenna_front_to_back_db"}
_MATERIAL_KEYS = {"loss_db"}
_KIND_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


def _frozen(values: Any) -> FloatArray:
    array = np.array(values, dtype=np.float64)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Place:
    """A cell or a zone: a polygon on one floor. ``kind`` is ``"cell"`` for cells."""

    id: str
    kind: str
    wing: str | None
    floor: int
    polygon: FloatArray  # (k, 2) metres, read-only, not closed (last != first)

    @property
    def is_cell(self) -> bool:
        return self.kind == "cell"

    @property
    def area_m2(self) -> float:
        return abs(geometry.signed_area_m2(self.polygon))

    @property
    def centroid(self) -> FloatArray:
        """Area centroid ``(2,)`` in metres (may lie outside a non-convex polygon)."""
        return geometry.polygon_centroid(self.polygon)


@dataclass(frozen=True, eq=False)
class Wall:
    """A vertical wall on ``floor`` along the polyline ``points (k, 2)``; ``loss_db`` at 900 MHz."""

    floor: int
    points: FloatArray
    loss_db: float
    material: str | None = None


@dataclass(frozen=True, eq=False)
class Sensor:
    """A sensor node's antenna: where it is and which place it is in (found at load time)."""

    id: str
    wing: str | None
    floor: int
    position: FloatArray  # (2,) metres
    height_m: float  # above its floor
    place_id: str
    antenna_gain_dbi: float = DEFAULT_ANTENNA_GAIN_DBI
    antenna_azimuth_deg: float | None = None  # None: omnidirectional
    antenna_beamwidth_deg: float = DEFAULT_ANTENNA_BEAMWIDTH_DEG
    antenna_front_to_back_db: float = DEFAULT_ANTENNA_FRONT_TO_BACK_DB


class Site:
    """A validated site; build it with :func:`load_site` or :func:`parse_site`.

    ``places`` is ``cells + zones``; an index into it is a *place index*, the unit
    every per-place array (locator scores, fingerprints) is indexed by.
    """

    def __init__(
        self,
        *,
        name: str,
        source: str,
        floor_height_m: float,
        floor_loss_db: float,
        wings: tuple[str, ...],
        cells: tuple[Place, ...],
        zones: tuple[Place, ...],
        walls: tuple[Wall, ...],
        sensors: tuple[Sensor, ...],
        propagation: dict[str, Any] | None = None,
        materials: Mapping[str, float] | None = None,
        wing_names: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.floor_height_m = float(floor_height_m)
        self.floor_loss_db = float(floor_loss_db)
        self.wings = wings
        self.wing_names: dict[str, str] = dict(wing_names or {})
        self.materials: dict[str, float] = dict(materials or {})
        self.cells = cells
        self.zones = zones
        self.places: tuple[Place, ...] = cells + zones
        self.walls = walls
        self.sensors = sensors
        self.propagation: dict[str, Any] = dict(propagation or {})
        used = (
            {p.floor for p in self.places} | {w.floor for w in walls} | {s.floor for s in sensors}
        )
        self.floors: tuple[int, ...] = tuple(sorted(used))
        self._place_by_id = {p.id: i for i, p in enumerate(self.places)}
        self._sensor_by_id = {s.id: i for i, s in enumerate(sensors)}
        self._min_floor = self.floors[0] if self.floors else 0
        self._place_floors = np.array([p.floor for p in self.places], dtype=np.int64)

        # Walls flattened to segments; seg_wall maps each segment to its wall.
        starts = [w.points[:-1] for w in walls]
        ends = [w.points[1:] for w in walls]
        self._seg_start = np.vstack(starts) if walls else np.zeros((0, 2))
        self._seg_end = np.vstack(ends) if walls else np.zeros((0, 2))
        self._seg_wall = np.repeat(np.arange(len(walls)), [len(s) for s in starts]).astype(np.intp)
        wall_z0 = np.array([self.z_m(w.floor, 0.0) for w in walls], dtype=np.float64)
        self._seg_z0 = wall_z0[self._seg_wall] if walls else np.zeros(0)
        self._wall_loss_db = np.array([w.loss_db for w in walls], dtype=np.float64)
        # Slab z of every floor above the lowest, up to the highest (gaps included).
        top = self.floors[-1] if self.floors else 0
        self._slab_z = (
            np.arange(self._min_floor + 1, top + 1) - self._min_floor
        ) * self.floor_height_m

    def __repr__(self) -> str:
        return (
            f"Site(name={self.name!r}, n_cells={len(self.cells)}, n_zones={len(self.zones)}, "
            f"n_walls={len(self.walls)}, n_sensors={len(self.sensors)})"
        )

    # ----------------------------------------------------------------- lookups
    @property
    def n_walls(self) -> int:
        return len(self.walls)

    def place_index(self, place_id: str) -> int:
        """Index of a cell or zone in :attr:`places`; ``KeyError`` if there is none."""
        try:
            return self._place_by_id[place_id]
        except KeyError:
            raise KeyError(f"{self.source}: no cell or zone {place_id!r}") from None

    def sensor_index(self, sensor_id: str) -> int:
        """Index of a sensor in :attr:`sensors`; ``KeyError`` if there is none."""
        try:
            return self._sensor_by_id[sensor_id]
        except KeyError:
            raise KeyError(f"{self.source}: no sensor {sensor_id!r}") from None

    # -------------------------------------------------------------- 3-D frame
    def z_m(self, floor: int | npt.ArrayLike, height_m: float | npt.ArrayLike = 1.0) -> FloatArray:
        """Height above the lowest floor of a point ``height_m`` above ``floor``."""
        floors = np.asarray(floor, dtype=np.float64)
        return (floors - self._min_floor) * self.floor_height_m + np.asarray(
            height_m, dtype=np.float64
        )

    def floor_of_z(self, z_m: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Floor whose storey ``[z0, z0 + floor_height_m)`` holds each height (not clipped)."""
        z = np.asarray(z_m, dtype=np.float64)
        return self._min_floor + np.floor(z / self.floor_height_m).astype(np.int64)

    def sensor_xyz(self) -> FloatArray:
        """Antenna positions ``(n_sensors, 3)`` in metres."""
        if not self.sensors:
            return np.zeros((0, 3))
        xy = np.array([s.position for s in self.sensors])
        z = self.z_m([s.floor for s in self.sensors], [s.height_m for s in self.sensors])
        return np.column_stack([xy, z])

    # ---------------------------------------------------------------- geometry
    def locate(self, xy: npt.ArrayLike, floor: int | npt.ArrayLike) -> IntArray:
        """Place index ``(N,)`` of each point ``xy (N, 2)`` on ``floor`` (int or ``(N,)``); -1 if none.

        Points on an edge shared by two places belong to exactly one of them.
        """
        points = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"xy must have shape (N, 2), got {points.shape}")
        floors = np.broadcast_to(np.asarray(floor), (points.shape[0],))
        if not np.issubdtype(floors.dtype, np.integer):
            if not np.all(floors == np.round(floors)):
                raise ValueError("floor must hold whole numbers")
        floors = floors.astype(np.int64)
        return geometry.locate_points(
            points, floors, [p.polygon for p in self.places], list(self._place_floors)
        )

    @staticmethod
    def _paths(a_xyz: npt.ArrayLike, b_xyz: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        a = np.atleast_2d(np.asarray(a_xyz, dtype=np.float64))
        b = np.atleast_2d(np.asarray(b_xyz, dtype=np.float64))
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != 3 or b.shape[1] != 3:
            raise ValueError(f"points must have shape (N, 3), got {a.shape} and {b.shape}")
        a, b = np.broadcast_arrays(a, b)
        return a, b

    def distance_m(self, a_xyz: npt.ArrayLike, b_xyz: npt.ArrayLike) -> FloatArray:
        """3-D distance ``(N,)`` between rows of ``a`` and ``b`` (``(N, 3)``, or one of them ``(3,)``)."""
        a, b = self._paths(a_xyz, b_xyz)
        d = b - a
        return np.sqrt(np.einsum("ij,ij->i", d, d))

    def _wall_hits(self, a: FloatArray, b: FloatArray) -> BoolArray:
        """``(N, n_walls)``: the straight path crosses the wall within the wall's storey."""
        crossed = np.zeros((a.shape[0], self.n_walls), dtype=bool)
        path_idx, seg_idx, t = geometry.segment_crossings(
            a[:, :2], b[:, :2], self._seg_start, self._seg_end
        )
        z = a[path_idx, 2] + t * (b[path_idx, 2] - a[path_idx, 2])
        z0 = self._seg_z0[seg_idx]
        within = (z >= z0) & (z < z0 + self.floor_height_m)
        # Scattering into (path, wall) counts a polyline once however many segments it crosses.
        crossed[path_idx[within], self._seg_wall[seg_idx[within]]] = True
        return crossed

    def walls_crossed(self, a_xyz: npt.ArrayLike, b_xyz: npt.ArrayLike) -> BoolArray:
        """Which walls ``(N, n_walls)`` the straight 3-D path from ``a`` to ``b`` passes through.

        The path's plan view is intersected with every wall segment (touching counts,
        running along a wall does not); a crossing counts when the path's height there
        lies in the wall's storey ``[z0, z0 + floor_height_m)``. A polyline wall counts
        once even where the path crosses two of its segments at a corner.
        """
        a, b = self._paths(a_xyz, b_xyz)
        return self._wall_hits(a, b)

    def wall_loss_db(
        self, a_xyz: npt.ArrayLike, b_xyz: npt.ArrayLike, loss_scale: npt.ArrayLike | None = None
    ) -> FloatArray:
        """Sum ``(N,)`` of ``loss_db`` of the walls each path crosses.

        ``loss_scale`` ``(n_walls,)`` multiplies each wall's loss (e.g. its frequency
        dependence relative to the 900 MHz figure in the file).
        """
        a, b = self._paths(a_xyz, b_xyz)
        losses = self._wall_loss_db
        if loss_scale is not None:
            scale = np.asarray(loss_scale, dtype=np.float64)
            if scale.shape != (self.n_walls,):
                raise ValueError(f"loss_scale must have shape ({self.n_walls},), got {scale.shape}")
            losses = losses * scale
        path_idx, wall_idx = np.nonzero(self._wall_hits(a, b))
        total = np.bincount(path_idx, weights=losses[wall_idx], minlength=a.shape[0])
        return total.astype(np.float64, copy=False)

    def floors_crossed(self, a_xyz: npt.ArrayLike, b_xyz: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Number ``(N,)`` of floor slabs strictly between the heights of ``a`` and ``b``."""
        a, b = self._paths(a_xyz, b_xyz)
        low = np.minimum(a[:, 2], b[:, 2])
        high = np.maximum(a[:, 2], b[:, 2])
        below_high = np.searchsorted(self._slab_z, high, side="left")
        up_to_low = np.searchsorted(self._slab_z, low, side="right")
        return np.maximum(below_high - up_to_low, 0).astype(np.int64)

    def sample_points(
        self, place_index: int, spacing_m: float = 0.5, margin_m: float = 0.3
    ) -> FloatArray:
        """A grid ``(K, 2)``, K >= 1, of points inside a place, ``margin_m`` from its walls.

        Used by locators to average over where in a room a phone may be. A place too
        small for the grid yields one point: its centroid when that lies inside,
        else the deepest point of a fine grid (a non-convex place's centroid may not).
        """
        if spacing_m <= 0 or margin_m < 0:
            raise ValueError("spacing_m must be > 0 and margin_m >= 0")
        polygon = self.places[place_index].polygon
        points = geometry.grid_in_polygon(polygon, spacing_m, margin_m)
        if points.shape[0]:
            return points
        centroid = geometry.polygon_centroid(polygon)
        if geometry.points_in_polygon(centroid[None, :], polygon)[0]:
            return centroid[None, :].copy()
        span = float(np.min(polygon.max(axis=0) - polygon.min(axis=0)))
        fine = geometry.grid_in_polygon(polygon, span / 20.0, 0.0)
        depth = geometry.distance_to_boundary(fine, polygon)
        return fine[np.argmax(depth)][None, :].copy()

    # ---------------------------------------------------------------- report
    def summary_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-able data (``cellwatch info SITE --json``)."""
        return {
            "name": self.name,
            "source": self.source,
            "floor_height_m": self.floor_height_m,
            "floor_loss_db": self.floor_loss_db,
            "floors": list(self.floors),
            "wings": [
                {
                    "id": wing,
                    "name": self.wing_names.get(wing),
                    "n_cells": sum(1 for c in self.cells if c.wing == wing),
                    "cell_floors": sorted({c.floor for c in self.cells if c.wing == wing}),
                }
                for wing in self.wings
            ],
            "n_cells": len(self.cells),
            "cells_area_m2": round(sum(c.area_m2 for c in self.cells), 3),
            "zones": [
                {"id": z.id, "kind": z.kind, "wing": z.wing, "floor": z.floor} for z in self.zones
            ],
            "n_walls": len(self.walls),
            "n_wall_segments": int(self._seg_start.shape[0]),
            "sensors": [
                {
                    "id": s.id,
                    "wing": s.wing,
                    "floor": s.floor,
                    "position": [float(s.position[0]), float(s.position[1])],
                    "height_m": s.height_m,
                    "place": s.place_id,
                }
                for s in self.sensors
            ],
        }

    def summary(self) -> str:
        """A multi-line human summary (what ``cellwatch info SITE`` prints)."""
        lines = [
            f"site {self.name!r} from {self.source}",
            f"  floors {', '.join(map(str, self.floors))}; floor height {self.floor_height_m:g} m, "
            f"slab loss {self.floor_loss_db:g} dB",
        ]
        for wing in self.wings:
            label = f" ({self.wing_names[wing]})" if wing in self.wing_names else ""
            per_floor = []
            for floor in self.floors:
                n = sum(1 for c in self.cells if c.wing == wing and c.floor == floor)
                if n:
                    per_floor.append(f"floor {floor}: {n}")
            cells_text = "; ".join(per_floor) if per_floor else "none"
            lines.append(f"  wing {wing}{label}: cells {cells_text}")
        unwinged = sum(1 for c in self.cells if c.wing is None)
        if unwinged:
            lines.append(f"  cells without a wing: {unwinged}")
        lines.append(f"  {len(self.cells)} cells, {sum(c.area_m2 for c in self.cells):.0f} m2")
        kinds: dict[str, int] = {}
        for zone in self.zones:
            kinds[zone.kind] = kinds.get(zone.kind, 0) + 1
        zones_text = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"
        lines.append(f"  {len(self.zones)} zones: {zones_text}")
        by_loss: dict[tuple[str, float], int] = {}
        for wall in self.walls:
            key = (wall.material or "unlabelled", wall.loss_db)
            by_loss[key] = by_loss.get(key, 0) + 1
        walls_text = ", ".join(f"{n} {m} {loss:g} dB" for (m, loss), n in sorted(by_loss.items()))
        lines.append(
            f"  {len(self.walls)} walls ({self._seg_start.shape[0]} segments): {walls_text or 'none'}"
        )
        lines.append(f"  {len(self.sensors)} sensors")
        for s in self.sensors:
            lines.append(
                f"    {s.id}: floor {s.floor} ({s.position[0]:.2f}, {s.position[1]:.2f}) m, "
                f"{s.height_m:g} m high, in {s.place_id}"
            )
        return "\n".join(lines)


# ====================================================================== parsing
class _Fields:
    """Typed field access that raises :class:`InputError` naming the file and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, field: str | None, problem: str) -> InputError:
        return InputError(self.source, field, problem)

    def check_keys(self, table: Mapping[str, Any], allowed: set[str], path: str) -> None:
        for key in table:
            if key not in allowed:
                shown = key if key else '""'  # an empty key must still show in the message
                field = f"{path}.{shown}" if path else shown
                raise self.error(
                    field, f"unknown key (expected one of: {', '.join(sorted(allowed))})"
                )

    def table_list(self, doc: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
        value = doc.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(key, f"expected an array of tables ([[{key}]])")
        return value

    def string(
        self, table: Mapping[str, Any], key: str, path: str, *, required: bool = True
    ) -> str | None:
        field = f"{path}.{key}" if path else key
        if key not in table:
            if required:
                raise self.error(field, "missing")
            return None
        value = table[key]
        if not isinstance(value, str):
            raise self.error(field, f"expected a string, got {_type_name(value)}")
        if not value.strip():
            raise self.error(field, "must not be empty")
        return value

    def number(
        self, table: Mapping[str, Any], key: str, path: str, default: float | None = None
    ) -> float:
        field = f"{path}.{key}" if path else key
        if key not in table:
            if default is None:
                raise self.error(field, "missing")
            return default
        return self.finite(table[key], field)

    def finite(self, value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(field, f"expected a number, got {_type_name(value)}")
        if not math.isfinite(value):
            raise self.error(field, "must be finite")
        return float(value)

    def integer(self, table: Mapping[str, Any], key: str, path: str) -> int:
        field = f"{path}.{key}"
        if key not in table:
            raise self.error(field, "missing")
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(field, f"expected an integer, got {_type_name(value)}")
        return value

    def points(self, table: Mapping[str, Any], key: str, path: str) -> FloatArray:
        field = f"{path}.{key}"
        if key not in table:
            raise self.error(field, "missing")
        value = table[key]
        if not isinstance(value, list):
            raise self.error(field, f"expected a list of [x, y] points, got {_type_name(value)}")
        for i, point in enumerate(value):
            if not isinstance(point, list) or len(point) != 2:
                raise self.error(f"{field}[{i}]", "expected [x, y] (two numbers in metres)")
            for v in point:
                self.finite(v, f"{field}[{i}]")
        return np.array(value, dtype=np.float64).reshape(-1, 2)

    def point(self, table: Mapping[str, Any], key: str, path: str) -> FloatArray:
        field = f"{path}.{key}"
        if key not in table:
            raise self.error(field, "missing")
        value = table[key]
        if not isinstance(value, list) or len(value) != 2:
            raise self.error(field, "expected [x, y] (two numbers in metres)")
        return np.array([self.finite(v, field) for v in value], dtype=np.float64)


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean", str: "a string", int: "an integer", float: "a number",
        list: "an array", dict: "a table",
    }.get(type(value), type(value).__name__)  # fmt: skip


def _polygon(f: _Fields, table: Mapping[str, Any], path: str) -> FloatArray:
    """A validated simple polygon; a repeated closing point is dropped."""
    field = f"{path}.polygon"
    points = f.points(table, "polygon", path)
    if points.shape[0] >= 2 and np.allclose(points[0], points[-1], rtol=0.0, atol=geometry.TOL_M):
        points = points[:-1]
    if points.shape[0] < 3:
        raise f.error(field, "needs at least 3 points")
    step = np.hypot(*(np.roll(points, -1, axis=0) - points).T)
    repeated = np.flatnonzero(step <= geometry.TOL_M)
    if repeated.size:
        i = int(repeated[0])
        raise f.error(field, f"points {i} and {(i + 1) % points.shape[0]} coincide")
    crossing = geometry.self_crossing(points)
    if crossing is not None:
        raise f.error(field, f"crosses itself (edges {crossing[0]} and {crossing[1]})")
    if abs(geometry.signed_area_m2(points)) <= geometry.TOL_M:
        raise f.error(field, "has zero area")
    return _frozen(points)


def _place(
    f: _Fields, table: Mapping[str, Any], path: str, kind: str | None, wings: set[str]
) -> Place:
    f.check_keys(table, _ZONE_KEYS if kind is None else _CELL_KEYS, path)
    place_id = f.string(table, "id", path)
    if kind is None:
        kind = f.string(table, "kind", path)
        assert kind is not None
        if not _KIND_RE.match(kind):
            raise f.error(
                f"{path}.kind", f"{kind!r} is not a lower-case label (e.g. corridor, yard)"
            )
        if kind == "cell":
            raise f.error(f"{path}.kind", "cells go in [[cells]], not [[zones]]")
    wing = f.string(table, "wing", path, required=False)
    if wing is not None and wing not in wings:
        raise f.error(f"{path}.wing", f"unknown wing {wing!r}")
    floor = f.integer(table, "floor", path)
    polygon = _polygon(f, table, path)
    assert place_id is not None
    return Place(id=place_id, kind=kind, wing=wing, floor=floor, polygon=polygon)


def parse_site(doc: Mapping[str, Any], source: str = "site") -> Site:
    """Validate an already-parsed site TOML document and build the :class:`Site`.

    ``source`` names the file in error messages. Raises :class:`InputError`.
    """
    f = _Fields(source)
    if not isinstance(doc, Mapping):
        raise f.error(None, "expected a TOML table at the top level")
    f.check_keys(doc, _TOP_KEYS, "")
    name = f.string(doc, "name", "")
    assert name is not None
    floor_height_m = f.number(doc, "floor_height_m", "", DEFAULT_FLOOR_HEIGHT_M)
    if floor_height_m <= 0:
        raise f.error("floor_height_m", f"must be > 0, got {floor_height_m:g}")
    floor_loss_db = f.number(doc, "floor_loss_db", "", DEFAULT_FLOOR_LOSS_DB)
    if floor_loss_db < 0:
        raise f.error("floor_loss_db", f"must be >= 0, got {floor_loss_db:g}")

    propagation = doc.get("propagation", {})
    if not isinstance(propagation, dict):
        raise f.error("propagation", "expected a table")

    materials_doc = doc.get("materials", {})
    if not isinstance(materials_doc, dict):
        raise f.error("materials", "expected a table of [materials.<label>] tables")
    materials: dict[str, float] = {}
    for label, entry in materials_doc.items():
        path = f"materials.{label}"
        if not isinstance(entry, dict):
            raise f.error(path, "expected a table with loss_db")
        f.check_keys(entry, _MATERIAL_KEYS, path)
        loss = f.number(entry, "loss_db", path)
        if loss < 0:
            raise f.error(f"{path}.loss_db", f"must be >= 0, got {loss:g}")
        materials[label] = loss

    wing_ids: list[str] = []
    wing_names: dict[str, str] = {}
    for i, table in enumerate(f.table_list(doc, "wings")):
        path = f"wings[{i}]"
        f.check_keys(table, _WING_KEYS, path)
        wing_id = f.string(table, "id", path)
        assert wing_id is not None
        if wing_id in wing_ids:
            raise f.error(f"{path}.id", f"duplicate wing {wing_id!r}")
        wing_ids.append(wing_id)
        label = f.string(table, "name", path, required=False)
        if label is not None:
            wing_names[wing_id] = label
    wings = set(wing_ids)

    # Ids share one namespace across cells, zones and sensors: an event or a
    # detection names any of them by id alone.
    first_use: dict[str, str] = {}

    def claim(item_id: str, path: str) -> None:
        if item_id in first_use:
            raise f.error(
                f"{path}.id", f"duplicate id {item_id!r} (first used by {first_use[item_id]})"
            )
        first_use[item_id] = path

    cells: list[Place] = []
    place_paths: list[str] = []
    for i, table in enumerate(f.table_list(doc, "cells")):
        path = f"cells[{i}]"
        cell = _place(f, table, path, "cell", wings)
        claim(cell.id, path)
        cells.append(cell)
        place_paths.append(path)
    zones: list[Place] = []
    for i, table in enumerate(f.table_list(doc, "zones")):
        path = f"zones[{i}]"
        zone = _place(f, table, path, None, wings)
        claim(zone.id, path)
        zones.append(zone)
        place_paths.append(path)
    places = cells + zones
    if not places:
        raise f.error("cells", "the site has no cells and no zones")
    _check_overlaps(f, places, place_paths)

    walls: list[Wall] = []
    for i, table in enumerate(f.table_list(doc, "walls")):
        walls.append(_wall(f, table, f"walls[{i}]", materials))

    place_polygons = [p.polygon for p in places]
    place_floors = [p.floor for p in places]
    sensors: list[Sensor] = []
    for i, table in enumerate(f.table_list(doc, "sensors")):
        path = f"sensors[{i}]"
        f.check_keys(table, _SENSOR_KEYS, path)
        sensor_id = f.string(table, "id", path)
        assert sensor_id is not None
        wing = f.string(table, "wing", path, required=False)
        if wing is not None and wing not in wings:
            raise f.error(f"{path}.wing", f"unknown wing {wing!r}")
        floor = f.integer(table, "floor", path)
        position = f.point(table, "position", path)
        height_m = f.number(table, "height_m", path)
        if not 0.0 <= height_m < floor_height_m:
            raise f.error(
                f"{path}.height_m",
                f"must be in [0, floor_height_m = {floor_height_m:g}), got {height_m:g}",
            )
        gain_dbi = f.number(table, "antenna_gain_dbi", path, DEFAULT_ANTENNA_GAIN_DBI)
        azimuth_deg = (f.number(table, "antenna_azimuth_deg", path) if "antenna_azimuth_deg" in table else None)
        if azimuth_deg is not None and not -360.0 <= azimuth_deg <= 360.0:
            raise f.error(f"{path}.antenna_azimuth_deg", f"must be in [-360, 360] degrees, got {azimuth_deg:g}")
        beamwidth_deg = f.number(table, "antenna_beamwidth_deg", path, DEFAULT_ANTENNA_BEAMWIDTH_DEG)
        if not 10.0 <= beamwidth_deg <= 360.0:
            raise f.error(f"{path}.antenna_beamwidth_deg", f"must be in [10, 360] degrees, got {beamwidth_deg:g}")
        front_to_back_db = f.number(table, "antenna_front_to_back_db", path, DEFAULT_ANTENNA_FRONT_TO_BACK_DB)
        if not 0.0 <= front_to_back_db <= 40.0:
            raise f.error(f"{path}.antenna_front_to_back_db", f"must be in [0, 40] dB, got {front_to_back_db:g}")
        claim(sensor_id, path)
        where = geometry.locate_points(
            position[None, :], np.array([floor]), place_polygons, place_floors
        )[0]
        if where < 0:
            raise f.error(f"{path}.position", f"lies in no cell or zone on floor {floor}")
        sensors.append(
            Sensor(
                id=sensor_id,
                wing=wing,
                floor=floor,
                position=_frozen(position),
                height_m=height_m,
                place_id=places[where].id,
                antenna_gain_dbi=gain_dbi,
                antenna_azimuth_deg=azimuth_deg,
                antenna_beamwidth_deg=beamwidth_deg,
                antenna_front_to_back_db=front_to_back_db,
            )
        )

    return Site(
        name=name,
        source=source,
        floor_height_m=floor_height_m,
        floor_loss_db=floor_loss_db,
        wings=tuple(wing_ids),
        cells=tuple(cells),
        zones=tuple(zones),
        walls=tuple(walls),
        sensors=tuple(sensors),
        propagation=propagation,
        materials=materials,
        wing_names=wing_names,
    )


def _wall(f: _Fields, table: Mapping[str, Any], path: str, materials: Mapping[str, float]) -> Wall:
    f.check_keys(table, _WALL_KEYS, path)
    floor = f.integer(table, "floor", path)
    points = f.points(table, "points", path)
    if points.shape[0] < 2:
        raise f.error(f"{path}.points", "needs at least 2 points")
    step = np.hypot(*np.diff(points, axis=0).T)
    repeated = np.flatnonzero(step <= geometry.TOL_M)
    if repeated.size:
        i = int(repeated[0])
        raise f.error(f"{path}.points", f"points {i} and {i + 1} coincide")
    material = f.string(table, "material", path, required=False)
    if "loss_db" in table:
        loss_db = f.number(table, "loss_db", path)
    elif material is not None and material in materials:
        loss_db = materials[material]
    elif material is not None:
        raise f.error(
            f"{path}.loss_db",
            f"missing, and material {material!r} has no [materials.{material}] entry",
        )
    else:
        raise f.error(f"{path}.loss_db", "missing")
    if loss_db < 0:
        raise f.error(f"{path}.loss_db", f"must be >= 0, got {loss_db:g}")
    return Wall(floor=floor, points=_frozen(points), loss_db=loss_db, material=material)


def _check_overlaps(f: _Fields, places: list[Place], paths: list[str]) -> None:
    """Reject two places of one floor sharing a positive area (shared edges are fine)."""
    boxes = np.array(
        [np.concatenate([p.polygon.min(axis=0), p.polygon.max(axis=0)]) for p in places]
    )
    floors = np.array([p.floor for p in places])
    tol = geometry.TOL_M
    for i, place in enumerate(places):
        # Only later places on the same floor whose bounding boxes overlap by more than tol.
        later = np.arange(i + 1, len(places))
        box = boxes[i]
        near = later[
            (floors[later] == place.floor)
            & (boxes[later, 0] < box[2] - tol)
            & (boxes[later, 2] > box[0] + tol)
            & (boxes[later, 1] < box[3] - tol)
            & (boxes[later, 3] > box[1] + tol)
        ]
        for j in near:
            other = places[j]
            if geometry.polygons_overlap(place.polygon, other.polygon):
                raise f.error(f"{paths[i]}.polygon", f"overlaps {paths[j]} ({other.id!r})")


_TOML_LINE_RE = re.compile(
    r"^(?P<problem>.*?)\s*\(at line (?P<line>\d+), column (?P<column>\d+)\)$"
)


def load_site(path: str | Path) -> Site:
    """Read, validate and build the site in the TOML file ``path``. Raises :class:`InputError`."""
    source = str(path)
    if "\x00" in source:
        raise InputError(source.replace("\x00", "\\0"), None, "not a usable file name (it holds a NUL byte)")
    try:
        with open(path, "rb") as stream:
            doc = tomllib.load(stream)
    except FileNotFoundError:
        raise InputError(source, None, "no such file") from None
    except IsADirectoryError:
        raise InputError(source, None, "is a directory, not a site file") from None
    except OSError as exc:
        raise InputError(source, None, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(source, None, f"not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        text = str(exc)
        match = _TOML_LINE_RE.match(text)
        if match:
            problem = match.group("problem")
            raise InputError(
                source, f"line {match.group('line')}", problem[:1].lower() + problem[1:]
            ) from None
        raise InputError(source, None, f"invalid TOML: {text}") from None
    return parse_site(doc, source)
