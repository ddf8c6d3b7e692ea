"""The site model: loading and validating site files, and the 3-D geometry on a site."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from calibration import geometry
from calibration.propagation import PropagationModel
from calibration.site import Site, load_site, parse_site
from dsp.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "calibration" / "sites" / "demo_prison.toml"
ANNEX = ROOT / "tests" / "data" / "sites" / "annex.toml"


@pytest.fixture(scope="module")
def demo() -> Site:
    return load_site(DEMO)


@pytest.fixture(scope="module")
def annex() -> Site:
    return load_site(ANNEX)


def wall_index(site: Site, floor: int, points) -> int:
    """Index of the wall on ``floor`` whose polyline is exactly ``points``."""
    target = np.asarray(points, dtype=float)
    found = [
        i
        for i, w in enumerate(site.walls)
        if w.floor == floor and w.points.shape == target.shape and np.allclose(w.points, target)
    ]
    assert len(found) == 1, f"no single wall {points} on floor {floor}"
    return found[0]


def xyz(site: Site, x: float, y: float, floor: int, height_m: float = 1.0) -> np.ndarray:
    return np.array([x, y, float(site.z_m(floor, height_m))])


def crossed_set(site: Site, a: np.ndarray, b: np.ndarray) -> set[int]:
    return set(np.flatnonzero(site.walls_crossed(a, b)[0]).tolist())


# ===================================================================== demo
def test_demo_has_the_block_the_brief_describes(demo):
    assert demo.name == "Demo maison d'arret"
    assert len(demo.cells) == 64
    assert demo.wings == ("A", "B")
    assert sorted({c.floor for c in demo.cells}) == [1, 2]
    assert demo.floors == (0, 1, 2)
    assert len(demo.sensors) == 12
    for wing in demo.wings:
        for floor in (1, 2):
            ids = sorted(c.id for c in demo.cells if c.wing == wing and c.floor == floor)
            assert ids == [f"{wing}-{floor}-{n:02d}" for n in range(1, 17)]
    areas = np.array([c.area_m2 for c in demo.cells])
    np.testing.assert_allclose(areas, 12.0)
    kinds = {z.kind for z in demo.zones}
    assert {"corridor", "staff", "stairwell", "yard", "outside"} <= kinds
    assert all(z.floor == 0 and z.wing is None for z in demo.zones if z.kind in ("yard", "outside"))
    assert {w.material for w in demo.walls} >= {"partition", "cell_front", "facade", "perimeter"}


def test_demo_sensors_sit_in_corridors_off_the_centre_line_alternating(demo):
    for sensor in demo.sensors:
        assert re.fullmatch(r"[AB][12]-S[123]", sensor.id)
        place = demo.places[demo.place_index(sensor.place_id)]
        assert place.kind == "corridor"
        assert (place.wing, place.floor) == (sensor.wing, sensor.floor)
        assert sensor.height_m == pytest.approx(2.6)
    for wing in demo.wings:
        for floor in (1, 2):
            corridor = demo.places[demo.place_index(f"{wing}-{floor}-corridor")]
            centre_y = corridor.centroid[1]
            offsets = [
                s.position[1] - centre_y for s in demo.sensors if (s.wing, s.floor) == (wing, floor)
            ]
            assert len(offsets) == 3
            assert min(abs(o) for o in offsets) > 0.5  # not on the centre line
            signs = np.sign(offsets)
            assert signs[0] == -signs[1] == signs[2]  # alternating walls
            xs = [s.position[0] for s in demo.sensors if (s.wing, s.floor) == (wing, floor)]
            assert max(xs) - min(xs) > 15.0  # spread along the corridor


def test_demo_wings_are_apart(demo):
    def footprint(wing):
        points = np.vstack([c.polygon for c in demo.cells if c.wing == wing])
        return points.min(axis=0), points.max(axis=0)

    (a_lo, a_hi), (b_lo, b_hi) = footprint("A"), footprint("B")
    gap = max(b_lo[1] - a_hi[1], a_lo[1] - b_hi[1], b_lo[0] - a_hi[0], a_lo[0] - b_hi[0])
    assert gap >= 10.0


def test_demo_walls_between_neighbouring_cells(demo):
    a = xyz(demo, 1.5, 2.0, 1)  # centre of A-1-01
    b = xyz(demo, 7.5, 2.0, 1)  # centre of A-1-03
    expected = {wall_index(demo, 1, [[3, 0], [3, 4]]), wall_index(demo, 1, [[6, 0], [6, 4]])}
    assert crossed_set(demo, a, b) == expected
    assert demo.wall_loss_db(a, b)[0] == pytest.approx(24.0)
    # The same plan path one floor up crosses that floor's walls instead.
    a2, b2 = xyz(demo, 1.5, 2.0, 2), xyz(demo, 7.5, 2.0, 2)
    assert crossed_set(demo, a2, b2) == {
        wall_index(demo, 2, [[3, 0], [3, 4]]),
        wall_index(demo, 2, [[6, 0], [6, 4]]),
    }
    assert demo.floors_crossed(a2, b2)[0] == 0


def test_demo_cell_to_sensor_through_the_door_wall(demo):
    sensor = demo.sensor_xyz()[demo.sensor_index("A1-S2")]
    cell = xyz(demo, 13.5, 2.0, 1)  # A-1-05, below A1-S2's wall
    assert crossed_set(demo, cell, sensor) == {wall_index(demo, 1, [[0, 4], [28, 4]])}
    assert demo.floors_crossed(cell, sensor)[0] == 0
    # From the cell above, the path goes down through the slab and meets the wall
    # at z = 5.78 m: floor 1's wall, not floor 2's.
    above = xyz(demo, 13.5, 2.0, 2)
    assert crossed_set(demo, above, sensor) == {wall_index(demo, 1, [[0, 4], [28, 4]])}
    assert demo.floors_crossed(above, sensor)[0] == 1


def test_demo_street_to_sensor(demo):
    street = xyz(demo, 13.5, -11.0, 0)
    assert demo.places[demo.locate(street[None, :2], 0)[0]].kind == "outside"
    sensor = demo.sensor_xyz()[demo.sensor_index("A1-S2")]
    # z rises 1.0 -> 5.6 m: perimeter wall crossed at 2.5 m (floor 0), facade at 4.3 m
    # and cell front at 5.5 m (floor 1).
    expected = {
        wall_index(demo, 0, [[-6, -6], [34, -6]]),
        wall_index(demo, 1, [[0, 0], [28, 0]]),
        wall_index(demo, 1, [[0, 4], [28, 4]]),
    }
    assert crossed_set(demo, street, sensor) == expected
    assert demo.wall_loss_db(street, sensor)[0] == pytest.approx(22.0 + 20.0 + 10.0)
    assert demo.floors_crossed(street, sensor)[0] == 1


def test_walls_crossed_is_symmetric_and_loss_adds_up(demo):
    rng = np.random.default_rng(5)
    n = 3000
    places = rng.integers(len(demo.places), size=n)
    a = np.array([xyz(demo, *demo.sample_points(i)[0], demo.places[i].floor) for i in places])
    b = demo.sensor_xyz()[rng.integers(len(demo.sensors), size=n)]
    forward = demo.walls_crossed(a, b)
    np.testing.assert_array_equal(forward, demo.walls_crossed(b, a))
    losses = np.array([w.loss_db for w in demo.walls])
    np.testing.assert_allclose(demo.wall_loss_db(a, b), forward @ losses)
    scale = rng.uniform(0.5, 2.0, demo.n_walls)
    np.testing.assert_allclose(
        demo.wall_loss_db(a, b, loss_scale=scale), forward @ (losses * scale)
    )


def test_one_sensor_broadcasts_against_many_points(demo):
    sensor = demo.sensor_xyz()[0]
    points = np.array([xyz(demo, 1.5, 2.0, 1), xyz(demo, 7.5, 2.0, 2)])
    crossed = demo.walls_crossed(points, sensor)
    assert crossed.shape == (2, demo.n_walls)
    np.testing.assert_array_equal(crossed, demo.walls_crossed(points, np.tile(sensor, (2, 1))))
    np.testing.assert_allclose(
        demo.distance_m(points, sensor), np.linalg.norm(points - sensor, axis=1)
    )


def test_locate_cells_zones_and_nowhere(demo):
    xy = np.array(
        [
            [1.5, 2.0],
            [1.5, 2.0],
            [10.0, 5.0],
            [10.0, 15.0],
            [10.0, 15.0],
            [100.0, 100.0],
            [26.0, 8.0],
        ]
    )
    floors = np.array([1, 2, 1, 0, 1, 1, 2])
    found = demo.locate(xy, floors)
    names = [demo.places[i].id if i >= 0 else None for i in found]
    assert names == ["A-1-01", "A-2-01", "A-1-corridor", "yard", None, None, "A-2-stairs"]
    # A point on the wall between two cells belongs to exactly one of them.
    on_edge = demo.locate(np.array([[3.0, 2.0]]), 1)[0]
    assert demo.places[on_edge].id in ("A-1-01", "A-1-02")


def test_sample_points_stay_in_their_place(demo, annex):
    for site in (demo, annex):
        for index, place in enumerate(site.places):
            points = site.sample_points(index)
            assert points.shape[0] >= 1
            assert np.all(site.locate(points, place.floor) == index)
            assert geometry.distance_to_boundary(points, place.polygon).min() >= 0.3 - 1e-9
    cell = demo.place_index("A-1-01")
    assert demo.sample_points(cell, spacing_m=0.5, margin_m=0.3).shape == (35, 2)
    # Too small for the margin: the centroid.
    np.testing.assert_allclose(demo.sample_points(cell, spacing_m=0.5, margin_m=2.5), [[1.5, 2.0]])


def test_sample_points_of_a_non_convex_place_too_small_for_its_grid(annex):
    corridor = annex.place_index("N-1-corridor")
    point = annex.sample_points(corridor, spacing_m=0.5, margin_m=5.0)
    assert point.shape == (1, 2)
    assert annex.locate(point, 1)[0] == corridor  # the L's centroid would be outside it


# ==================================================================== annex
def test_annex_loads_with_its_own_shape(annex):
    assert annex.name == "Test annex"
    assert annex.wings == ("N",)
    assert annex.floors == (1, 2, 3)
    assert len(annex.cells) == 24
    assert annex.floor_height_m == pytest.approx(2.8)
    assert annex.floor_loss_db == pytest.approx(15.0)
    assert [s.id for s in annex.sensors] == ["N1-S1", "N2-S1", "N3-S1", "gate"]
    assert [s.place_id for s in annex.sensors] == [
        "N-1-corridor",
        "N-2-corridor",
        "N-3-corridor",
        "car-park",
    ]
    assert annex.sensors[1].antenna_gain_dbi == pytest.approx(2.0)
    assert annex.sensors[0].antenna_gain_dbi == 0.0
    assert annex.propagation == {"path_loss_exponent": 3.1}
    PropagationModel.for_site(annex)  # the raw table is one the propagation model accepts
    np.testing.assert_allclose(annex.cells[0].polygon, [[0, 0], [2.5, 0], [2.5, 3.5], [0, 3.5]])
    corridor = annex.places[annex.place_index("N-2-corridor")]
    assert corridor.area_m2 == pytest.approx(14.5 * 2 + 2 * 9.5)


def test_z_frame_starts_at_the_lowest_floor(annex):
    assert float(annex.z_m(1, 1.0)) == pytest.approx(1.0)
    assert float(annex.z_m(3, 0.5)) == pytest.approx(2 * 2.8 + 0.5)
    floors = np.array([1, 1, 2, 3, 3])
    heights = np.array([0.0, 2.79, 1.0, 0.0, 2.7])
    np.testing.assert_array_equal(annex.floor_of_z(annex.z_m(floors, heights)), floors)
    sensors = annex.sensor_xyz()
    np.testing.assert_allclose(sensors[2], [13.8, 12.0, 2 * 2.8 + 2.2])


def test_floors_crossed_counts_slabs_strictly_between(annex):
    def count(z_a: float, z_b: float) -> int:
        return int(annex.floors_crossed(np.array([[0, 0, z_a]]), np.array([[0, 0, z_b]]))[0])

    assert count(1.0, float(annex.z_m(3, 1.0))) == 2
    assert count(float(annex.z_m(3, 1.0)), 1.0) == 2
    assert count(1.0, 2.0) == 0
    assert count(2.8, 1.0) == 0  # standing on the slab is not crossing it
    assert count(2.7, 2.9) == 1
    assert count(0.5, 100.0) == 2  # no slab above the top floor


def test_a_polyline_wall_counts_once_at_its_corner(annex):
    inner = wall_index(annex, 1, [[0, 5.5], [12.5, 5.5], [12.5, 15.0]])
    # Through both legs of the L-shaped wall, and exactly through its corner.
    for a_xy, b_xy in (((11.0, 4.5), (13.5, 6.5)), ((11.0, 4.0), (14.0, 7.0))):
        a, b = xyz(annex, *a_xy, 1), xyz(annex, *b_xy, 1)
        assert crossed_set(annex, a, b) == {inner}
        assert annex.wall_loss_db(a, b)[0] == pytest.approx(9.0)


def test_walls_crossed_matches_a_brute_force_reference(annex):
    rng = np.random.default_rng(8)
    n = 400
    a = np.column_stack([rng.uniform(-2, 16, (n, 2)), rng.uniform(0, 3 * 2.8, n)])
    b = np.column_stack([rng.uniform(-2, 16, (n, 2)), rng.uniform(0, 3 * 2.8, n)])
    got = annex.walls_crossed(a, b)
    expected = np.zeros_like(got)
    for p in range(n):
        for w, wall in enumerate(annex.walls):
            z0 = float(annex.z_m(wall.floor, 0.0))
            for c, d in zip(wall.points[:-1], wall.points[1:], strict=True):
                r = b[p, :2] - a[p, :2]
                s = d - c
                denom = r[0] * s[1] - r[1] * s[0]
                if denom == 0:
                    continue
                q = c - a[p, :2]
                t = (q[0] * s[1] - q[1] * s[0]) / denom
                u = (q[0] * r[1] - q[1] * r[0]) / denom
                if 0 <= t <= 1 and 0 <= u <= 1:
                    z = a[p, 2] + t * (b[p, 2] - a[p, 2])
                    expected[p, w] |= z0 <= z < z0 + 2.8
    np.testing.assert_array_equal(got, expected)
    assert got.any(axis=1).mean() > 0.3  # the comparison is not vacuous


# =============================================================== validation
def minimal_doc() -> dict:
    return {
        "name": "mini",
        "wings": [{"id": "A"}],
        "cells": [
            {"id": "A-1-01", "wing": "A", "floor": 1, "polygon": [[0, 0], [3, 0], [3, 4], [0, 4]]},
            {"id": "A-1-02", "wing": "A", "floor": 1, "polygon": [[3, 0], [6, 0], [6, 4], [3, 4]]},
        ],
        "zones": [
            {
                "id": "A-1-corridor",
                "kind": "corridor",
                "wing": "A",
                "floor": 1,
                "polygon": [[0, 4], [6, 4], [6, 6], [0, 6]],
            }
        ],
        "walls": [{"floor": 1, "points": [[0, 4], [6, 4]], "loss_db": 10.0}],
        "sensors": [
            {"id": "A1-S1", "wing": "A", "floor": 1, "position": [3.0, 5.0], "height_m": 2.6}
        ],
    }


def test_minimal_doc_is_valid_and_not_mutated():
    doc = minimal_doc()
    before = copy.deepcopy(doc)
    site = parse_site(doc, "mini.toml")
    assert doc == before
    assert site.floor_height_m == 3.0 and site.floor_loss_db == 18.0
    assert site.sensors[0].place_id == "A-1-corridor"
    assert site.propagation == {} and site.materials == {}


def _set(path: str, value):
    """A mutation of minimal_doc that sets ``path`` (e.g. ``cells.1.wing``) to ``value``."""

    def mutate(doc: dict) -> None:
        *parents, last = path.split(".")
        target = doc
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


def _delete(path: str):
    def mutate(doc: dict) -> None:
        *parents, last = path.split(".")
        target = doc
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        del target[last]

    return mutate


BOW_TIE = [[0, 0], [3, 4], [3, 0], [0, 4]]
NAN = float("nan")

INVALID = [
    # (mutation, field, words in the problem)
    (_set("cells.1.polygon", [[3, 0], [6, 0]]), "cells[1].polygon", "needs at least 3 points"),
    (_set("walls.0.lossdb", 3.0), "walls[0].lossdb", "unknown key"),
    (_set("flor_height_m", 3.0), "flor_height_m", "unknown key"),
    (_set("sensors.0.gain", 3.0), "sensors[0].gain", "unknown key"),
    (_set("zones.0.colour", "red"), "zones[0].colour", "unknown key"),
    (_set("wings.0.floors", 2), "wings[0].floors", "unknown key"),
    (_set("cells.1.wing", "C"), "cells[1].wing", "unknown wing 'C'"),
    (_set("zones.0.wing", "C"), "zones[0].wing", "unknown wing 'C'"),
    (_set("sensors.0.wing", "C"), "sensors[0].wing", "unknown wing 'C'"),
    (_set("wings", [{"id": "A"}, {"id": "A"}]), "wings[1].id", "duplicate wing 'A'"),
    (_set("cells.1.id", "A-1-01"), "cells[1].id", "duplicate id 'A-1-01'"),
    (_set("zones.0.id", "A-1-02"), "zones[0].id", "duplicate id 'A-1-02' (first used by cells[1])"),
    (_set("sensors.0.id", "A-1-corridor"), "sensors[0].id", "duplicate id 'A-1-corridor'"),
    (_set("sensors.0.position", [10.0, 10.0]), "sensors[0].position", "lies in no cell or zone"),
    (_set("sensors.0.floor", 2), "sensors[0].position", "lies in no cell or zone on floor 2"),
    (
        _set("cells.1.polygon", [[2.5, 0], [6, 0], [6, 4], [2.5, 4]]),
        "cells[0].polygon",
        "overlaps cells[1] ('A-1-02')",
    ),
    (
        _set("zones.0.polygon", [[0, 3.5], [6, 3.5], [6, 6], [0, 6]]),
        "cells[0].polygon",
        "overlaps zones[0] ('A-1-corridor')",
    ),
    (
        _set("cells.1.polygon", [[0, 0], [3, 0], [3, 4], [0, 4]]),
        "cells[0].polygon",
        "overlaps cells[1]",
    ),
    (_set("cells.0.polygon", BOW_TIE), "cells[0].polygon", "crosses itself"),
    (
        _set("cells.0.polygon", [[0, 0], [3, 0], [3, 0], [0, 4]]),
        "cells[0].polygon",
        "points 1 and 2 coincide",
    ),
    (_set("cells.0.polygon", [[0, 0], [1, 1], [2, 2]]), "cells[0].polygon", "has zero area"),
    (_set("cells.0.polygon", [[0, 0], [3], [3, 4]]), "cells[0].polygon[1]", "expected [x, y]"),
    (_set("cells.0.polygon", "square"), "cells[0].polygon", "expected a list"),
    (_set("cells.0.floor", 1.0), "cells[0].floor", "expected an integer"),
    (_set("walls.0.floor", "1"), "walls[0].floor", "expected an integer"),
    (_set("sensors.0.floor", True), "sensors[0].floor", "expected an integer, got a boolean"),
    (_delete("zones.0.floor"), "zones[0].floor", "missing"),
    (_set("floor_height_m", float("inf")), "floor_height_m", "must be finite"),
    (
        _set("cells.0.polygon", [[0, 0], [3, NAN], [3, 4], [0, 4]]),
        "cells[0].polygon[1]",
        "must be finite",
    ),
    (_set("walls.0.loss_db", NAN), "walls[0].loss_db", "must be finite"),
    (_set("sensors.0.position", [3.0, NAN]), "sensors[0].position", "must be finite"),
    (_set("sensors.0.height_m", float("-inf")), "sensors[0].height_m", "must be finite"),
    (_set("walls.0.loss_db", -1.0), "walls[0].loss_db", "must be >= 0"),
    (_set("floor_loss_db", -1.0), "floor_loss_db", "must be >= 0"),
    (_set("floor_height_m", 0.0), "floor_height_m", "must be > 0"),
    (_set("floor_height_m", -3.0), "floor_height_m", "must be > 0"),
    (_set("floor_height_m", "3"), "floor_height_m", "expected a number"),
    (_set("floor_loss_db", True), "floor_loss_db", "expected a number"),
    (_delete("name"), "name", "missing"),
    (_set("name", ""), "name", "must not be empty"),
    (_delete("cells.0.id"), "cells[0].id", "missing"),
    (_set("cells.0.id", 7), "cells[0].id", "expected a string"),
    (_delete("zones.0.kind"), "zones[0].kind", "missing"),
    (_set("zones.0.kind", "Corridor Area"), "zones[0].kind", "lower-case label"),
    (_set("zones.0.kind", "cell"), "zones[0].kind", "[[cells]]"),
    (_set("walls.0.points", [[0, 4]]), "walls[0].points", "needs at least 2 points"),
    (
        _set("walls.0.points", [[0, 4], [0, 4], [6, 4]]),
        "walls[0].points",
        "points 0 and 1 coincide",
    ),
    (_delete("walls.0.loss_db"), "walls[0].loss_db", "missing"),
    (
        _set("walls.0", {"floor": 1, "points": [[0, 4], [6, 4]], "material": "brick"}),
        "walls[0].loss_db",
        "material 'brick' has no [materials.brick]",
    ),
    (_set("materials", {"brick": {"loss": 5.0}}), "materials.brick.loss", "unknown key"),
    (_set("materials", {"brick": {"loss_db": -5.0}}), "materials.brick.loss_db", "must be >= 0"),
    (_set("materials", {"brick": 5.0}), "materials.brick", "expected a table"),
    (_set("sensors.0.height_m", 3.0), "sensors[0].height_m", "must be in [0, floor_height_m = 3)"),
    (_set("sensors.0.height_m", -0.1), "sensors[0].height_m", "must be in [0"),
    (_delete("sensors.0.height_m"), "sensors[0].height_m", "missing"),
    (_set("sensors.0.position", [3.0, 5.0, 1.0]), "sensors[0].position", "expected [x, y]"),
    (
        _set("sensors.0.antenna_gain_dbi", "high"),
        "sensors[0].antenna_gain_dbi",
        "expected a number",
    ),
    (_set("sensors.0.antenna_azimuth_deg", 400.0), "sensors[0].antenna_azimuth_deg", "must be in [-360, 360]"),
    (_set("sensors.0.antenna_beamwidth_deg", 5.0), "sensors[0].antenna_beamwidth_deg", "must be in [10, 360]"),
    (_set("sensors.0.antenna_front_to_back_db", -3.0), "sensors[0].antenna_front_to_back_db", "must be in [0, 40]"),
    (_set("sensors.0.antenna_azimuth_deg", "north"), "sensors[0].antenna_azimuth_deg", "expected a number"),
    (_set("cells", {"id": "A-1-01"}), "cells", "expected an array of tables"),
    (_set("propagation", 3), "propagation", "expected a table"),
]


@pytest.mark.parametrize(("mutate", "field", "problem"), INVALID)
def test_invalid_site_names_the_file_and_the_field(mutate, field, problem):
    doc = minimal_doc()
    mutate(doc)
    with pytest.raises(InputError) as caught:
        parse_site(doc, "mini.toml")
    error = caught.value
    assert error.source == "mini.toml"
    assert error.field == field
    assert problem in error.problem
    assert str(error).startswith(f"mini.toml: {field}: ")


def test_a_site_needs_places():
    doc = minimal_doc()
    doc["cells"] = []
    doc["zones"] = []
    doc["sensors"] = []
    with pytest.raises(InputError, match=r"^mini.toml: cells: the site has no cells and no zones$"):
        parse_site(doc, "mini.toml")


def test_same_polygon_on_other_floors_and_shared_edges_are_fine():
    doc = minimal_doc()
    doc["cells"].append(
        {"id": "A-2-01", "wing": "A", "floor": 2, "polygon": [[0, 0], [3, 0], [3, 4], [0, 4]]}
    )
    # A closing point equal to the first is accepted and dropped.
    doc["cells"][1]["polygon"] = [[3, 0], [6, 0], [6, 4], [3, 4], [3, 0]]
    site = parse_site(doc, "mini.toml")
    assert site.floors == (1, 2)
    assert site.cells[1].polygon.shape == (4, 2)


def test_materials_give_walls_their_loss_and_an_explicit_loss_wins():
    doc = minimal_doc()
    doc["materials"] = {"concrete": {"loss_db": 12.0}}
    doc["walls"] = [
        {"floor": 1, "points": [[3, 0], [3, 4]], "material": "concrete"},
        {"floor": 1, "points": [[0, 4], [6, 4]], "material": "concrete", "loss_db": 7.5},
    ]
    site = parse_site(doc, "mini.toml")
    assert [w.loss_db for w in site.walls] == [12.0, 7.5]
    assert [w.material for w in site.walls] == ["concrete", "concrete"]
    assert site.materials == {"concrete": 12.0}


def test_site_objects_are_read_only_and_lookups_fail_clearly(demo):
    with pytest.raises(ValueError, match="read-only"):
        demo.cells[0].polygon[0, 0] = 99.0
    with pytest.raises(ValueError, match="read-only"):
        demo.sensors[0].position[0] = 99.0
    with pytest.raises(KeyError, match="no cell or zone 'X-9-99'"):
        demo.place_index("X-9-99")
    with pytest.raises(KeyError, match="no sensor 'nope'"):
        demo.sensor_index("nope")
    assert demo.places[demo.place_index("A-1-05")].id == "A-1-05"
    assert demo.place_index("yard") >= len(demo.cells)  # zones come after cells


# ==================================================================== files
def test_bad_toml_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "demo.toml"
    path.write_text('name = "x"\nfloor_height_m = 3.0\nfloor_loss_db 18.0\n')
    with pytest.raises(InputError) as caught:
        load_site(path)
    assert caught.value.field == "line 3"
    assert str(caught.value).startswith(f"{path}: line 3: ")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match=r"nope\.toml: no such file$"):
        load_site(tmp_path / "nope.toml")
    with pytest.raises(InputError, match="is a directory"):
        load_site(tmp_path)


def test_file_errors_carry_the_file_name(tmp_path):
    text = DEMO.read_text().replace(
        'material = "partition" }', 'material = "partition", lossdb = 3.0 }', 1
    )
    path = tmp_path / "copy.toml"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        load_site(path)
    assert caught.value.source == str(path)
    assert re.fullmatch(r"walls\[\d+\]\.lossdb", caught.value.field)


def test_summaries(demo):
    text = demo.summary()
    assert "64 cells" in text and "12 sensors" in text and "A1-S1" in text
    data = demo.summary_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["n_cells"] == 64
    assert [w["cell_floors"] for w in data["wings"]] == [[1, 2], [1, 2]]
    assert {s["place"] for s in data["sensors"]} == {
        f"{w}-{f}-corridor" for w in "AB" for f in (1, 2)
    }


def test_door_installation_aims_every_antenna_into_its_own_cell(demo_site_path):
    """demo_prison_doors.toml: one directional sensor per cell, in the corridor, pointing at the cell."""
    doors = load_site(demo_site_path.parent / "demo_prison_doors.toml")
    assert len(doors.sensors) == len(doors.cells) == 64
    for sensor, cell in zip(doors.sensors, doors.cells, strict=True):
        assert sensor.place_id.endswith("corridor") and sensor.floor == cell.floor
        assert sensor.antenna_azimuth_deg is not None
        centre = np.asarray(cell.polygon).mean(axis=0)
        towards = np.degrees(np.arctan2(*(centre - sensor.position)[::-1]))
        assert abs((towards - sensor.antenna_azimuth_deg + 180.0) % 360.0 - 180.0) < 1.0
