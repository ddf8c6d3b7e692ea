"""Fitting the propagation model to survey losses: exact geometry, recovery, robustness, the site file."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from calibration import fit
from calibration.config import read_toml
from calibration.propagation import PropagationModel
from calibration.site import Site, Wall, load_site, parse_site
from tests.conftest import ANNEX_SITE, DEMO_SITE

FREQ = 902.4e6


def _place_points(site: Site, spacing_m: float = 1.0, max_points: int = 12) -> list[np.ndarray]:
    out = []
    for i, place in enumerate(site.places):
        xy = site.sample_points(i, spacing_m=spacing_m)
        if xy.shape[0] > max_points:
            xy = xy[np.linspace(0, xy.shape[0] - 1, max_points).round().astype(int)]
        out.append(np.column_stack([xy, np.full(xy.shape[0], float(site.z_m(place.floor, 1.2)))]))
    return out


def _observations(truth: Site, offsets: np.ndarray, rng: np.random.Generator, noise_db: float = 0.0,
                  max_loss_db: float = 125.0) -> list[fit.FitObservation]:
    """What a survey of every place would measure if ``truth`` were the building (mean in dB over the points)."""
    model = PropagationModel.for_site(truth)
    out = []
    for i, points in enumerate(_place_points(truth)):
        for s in range(len(truth.sensors)):
            loss = model.mean_path_loss_db(truth, points, np.full(points.shape[0], s), FREQ)
            mean = float(np.mean(loss))
            if mean < max_loss_db:  # heard by the survey receiver
                out.append(fit.FitObservation(points, s, FREQ, mean + offsets[s] + noise_db * rng.standard_normal(),
                                              truth.places[i].id))
    return out


def _with_walls(site: Site, change: dict[str, float], floor_loss_db: float | None = None,
                propagation: dict | None = None) -> Site:
    walls = tuple(Wall(w.floor, w.points, w.loss_db + change.get(w.material or "", 0.0), w.material) for w in site.walls)
    return Site(name=site.name, source=site.source, floor_height_m=site.floor_height_m,
                floor_loss_db=site.floor_loss_db if floor_loss_db is None else floor_loss_db, wings=site.wings,
                cells=site.cells, zones=site.zones, walls=walls, sensors=site.sensors,
                propagation=site.propagation if propagation is None else propagation, materials=site.materials,
                wing_names=site.wing_names)


@pytest.fixture(scope="module")
def demo() -> Site:
    return load_site(DEMO_SITE)


@pytest.mark.parametrize("path", [DEMO_SITE, ANNEX_SITE])
def test_path_geometry_reproduces_the_model(path) -> None:
    site = load_site(path)
    if path == ANNEX_SITE:  # a directional antenna too (the model's pattern must be followed)
        doc = read_toml(path)
        doc["sensors"][0]["antenna_azimuth_deg"] = 90.0
        site = parse_site(doc, str(path))
    model = PropagationModel.for_site(site)
    points = np.vstack(_place_points(site, 1.0, 40))
    n_sensors = len(site.sensors)
    tx = np.repeat(points, n_sensors, axis=0)
    rx = np.tile(np.arange(n_sensors), points.shape[0])
    geometry = fit.PathGeometry(site, model, tx, rx, np.full(tx.shape[0], FREQ))
    walls = np.array([w.loss_db for w in site.walls])
    mine, routed = geometry.loss_db(model.path_loss_exponent, walls, site.floor_loss_db)
    assert np.max(np.abs(mine - model.mean_path_loss_db(site, tx, rx, FREQ))) < 1e-9
    assert routed.any() and not routed.all()  # both branches are exercised
    # and for other parameters: the model with the same walls changed
    changed = _with_walls(site, {"door_wall": 4.0, "partition": -3.0, "cell_front": 2.0}, floor_loss_db=11.0)
    new_walls = np.array([w.loss_db for w in changed.walls])
    expected = PropagationModel.for_site(changed).mean_path_loss_db(changed, tx, rx, FREQ)
    assert np.max(np.abs(geometry.loss_db(model.path_loss_exponent, new_walls, 11.0)[0] - expected)) < 1e-9


def test_fit_recovers_material_losses_slab_exponent_and_offsets(demo) -> None:
    rng = np.random.default_rng(1)
    truth = demo
    offsets = rng.uniform(-3.0, 3.0, len(demo.sensors))
    observations = _observations(truth, offsets, rng, noise_db=0.3)
    plan = _with_walls(demo, {"partition": 5.0, "cell_front": -3.0, "facade": 4.0}, floor_loss_db=23.0,
                       propagation={"path_loss_exponent": 2.4})
    result = fit.fit_site(plan, observations, options=fit.FitOptions(wall_mode="material"))
    groups = {g.name: g for g in result.groups}
    assert groups["walls: partition"].fitted == pytest.approx(12.0, abs=0.5)
    assert groups["walls: cell_front"].fitted == pytest.approx(10.0, abs=0.5)
    assert groups["walls: facade"].fitted == pytest.approx(20.0, abs=1.0)
    assert result.floor_loss.fitted == pytest.approx(18.0, abs=0.5)
    assert result.exponent.fitted == pytest.approx(2.0, abs=0.05)
    fitted_offsets = np.array([result.sensor_offsets[s.id].fitted for s in demo.sensors])
    assert np.max(np.abs(fitted_offsets - offsets)) < 0.3
    assert result.residual_sigma_db < 0.5 < result.plan_residual_sigma_db
    assert result.site.propagation["path_loss_exponent"] == pytest.approx(2.0, abs=0.05)
    assert result.site.materials["partition"] == pytest.approx(12.0, abs=0.5)


def test_per_wall_deviations_follow_the_walls_the_survey_sees(demo) -> None:
    rng = np.random.default_rng(2)
    observations = _observations(demo, np.zeros(len(demo.sensors)), rng, noise_db=0.3)
    # the plan has the A-1 north cell front 6 dB too thin; every other wall is right
    target = next(i for i, w in enumerate(demo.walls)
                  if w.floor == 1 and w.material == "cell_front" and w.points[0, 1] == 6.5 and w.points[0, 0] == 0.0)
    walls = tuple(Wall(w.floor, w.points, w.loss_db - 6.0 if i == target else w.loss_db, w.material)
                  for i, w in enumerate(demo.walls))
    plan = Site(name=demo.name, source="plan", floor_height_m=demo.floor_height_m, floor_loss_db=demo.floor_loss_db,
                wings=demo.wings, cells=demo.cells, zones=demo.zones, walls=walls, sensors=demo.sensors,
                materials=demo.materials)
    per_wall = fit.fit_site(plan, observations, options=fit.FitOptions(wall_mode="wall", fit_offsets=False))
    per_material = fit.fit_site(plan, observations, options=fit.FitOptions(wall_mode="material", fit_offsets=False))
    assert per_wall.wall_loss_db[target] == pytest.approx(10.0, abs=1.0)
    assert per_wall.residual_sigma_db < per_material.residual_sigma_db


def test_a_few_gross_outliers_do_not_move_the_robust_fit(demo) -> None:
    rng = np.random.default_rng(3)
    observations = _observations(demo, np.zeros(len(demo.sensors)), rng, noise_db=0.5)
    bad = rng.choice(len(observations), len(observations) // 20, replace=False)
    for i in bad:  # a misassigned stop, a sensor behind a steel door for a minute: 25 dB off
        o = observations[i]
        observations[i] = fit.FitObservation(o.points_xyz, o.sensor_index, o.freq_hz, o.loss_db + 25.0, o.label)
    plan = _with_walls(demo, {"partition": 4.0})
    options = dict(wall_mode="material", fit_offsets=False, fit_exponent=False, fit_floor_loss=False)
    robust = fit.fit_site(plan, observations, options=fit.FitOptions(**options))
    plain = fit.fit_site(plan, observations, options=fit.FitOptions(loss="linear", **options))
    truth = {"walls: facade": 20.0, "walls: cell_front": 10.0, "walls: partition": 12.0}

    def worst(result: fit.FitResult) -> float:
        return max(abs(g.fitted - truth[g.name]) for g in result.groups if g.name in truth)

    assert worst(robust) < 0.5 < worst(plain)  # least squares is dragged by 1+ dB, soft-L1 is not
    flagged = {(p, s) for p, s, _ in robust.outliers()}
    truly_bad = {(observations[i].label, demo.sensors[observations[i].sensor_index].id) for i in bad}
    assert len(flagged & truly_bad) >= 0.8 * len(truly_bad)


def test_the_fitted_site_file_round_trips(demo, tmp_path) -> None:
    walls = np.array([w.loss_db for w in demo.walls]) + np.linspace(-2.0, 2.0, demo.n_walls)
    names, group_of = fit.wall_groups(demo)
    fitted = fit.fitted_site_from(demo, PropagationModel.for_site(demo), 2.2, 16.5, walls, names, group_of)
    text = fit.format_site_toml(fitted, "a test header\nsecond line")
    path = tmp_path / "fitted.toml"
    path.write_text(text)
    again = load_site(path)
    assert text.startswith("# a test header\n# second line")
    assert [p.id for p in again.places] == [p.id for p in demo.places]
    assert all(np.allclose(a.polygon, b.polygon) for a, b in zip(again.places, demo.places, strict=True))
    assert np.allclose([w.loss_db for w in again.walls], np.round(walls, 2))
    assert again.floor_loss_db == 16.5 and again.propagation == {"path_loss_exponent": 2.2}
    assert [(s.id, s.place_id, s.height_m) for s in again.sensors] == [(s.id, s.place_id, s.height_m) for s in demo.sensors]
    assert tomllib.loads(text)["wings"][0] == {"id": "A", "name": "Batiment A"}
    model = PropagationModel.for_site(again)
    point = np.array([7.5, 2.0, float(again.z_m(1, 1.2))])
    assert model.mean_path_loss_db(again, point, 0, FREQ)[0] == pytest.approx(
        PropagationModel.for_site(fitted).mean_path_loss_db(fitted, point, 0, FREQ)[0], abs=0.05)


def test_offsets_move_into_the_gain_calibration_with_the_right_sign() -> None:
    value = fit.FittedValue("A1-S1", 0.0, 2.5, 0.3, "dB")  # measured loss 2.5 dB above the model: reads 2.5 dB low
    assert fit.sensor_offsets_to_calibration({"A1-S1": value}, {"A1-S1": 1.0}) == {"A1-S1": -1.5}
