"""The propagation model: multi-wall mean path loss, static shadowing field, fast fading."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibration.propagation import PropagationModel, ShadowingField, corridor_waypoints, fading_db
from calibration.site import Site, load_site, parse_site
from dsp.errors import InputError

F900 = 900e6


def corridor(floor: int, wing: str = "A") -> dict:
    return {
        "id": f"{wing}-{floor}-corridor",
        "kind": "corridor",
        "wing": wing,
        "floor": floor,
        "polygon": [[0.0, 0.0], [60.0, 0.0], [60.0, 4.0], [0.0, 4.0]],
    }


def line_site(propagation: dict | None = None) -> Site:
    """A 60 m corridor on floors 1-3, two walls (7 and 5 dB) across it on floor 1, one sensor a floor."""
    doc = {
        "name": "line",
        "floor_height_m": 3.0,
        "floor_loss_db": 18.0,
        "wings": [{"id": "A"}],
        "zones": [corridor(1), corridor(2), corridor(3)],
        "walls": [
            {"floor": 1, "points": [[10.0, -1.0], [10.0, 5.0]], "loss_db": 7.0},
            {"floor": 1, "points": [[20.0, -1.0], [20.0, 5.0]], "loss_db": 5.0},
        ],
        "sensors": [
            {"id": "S1", "wing": "A", "floor": 1, "position": [2.0, 2.0], "height_m": 1.0},
            {"id": "S2", "wing": "A", "floor": 2, "position": [2.0, 2.0], "height_m": 1.0},
            {
                "id": "S3",
                "wing": "A",
                "floor": 3,
                "position": [2.0, 2.0],
                "height_m": 1.0,
                "antenna_gain_dbi": 2.0,
            },
        ],
    }
    if propagation is not None:
        doc["propagation"] = propagation
    return parse_site(doc, source="line.toml")


@pytest.fixture(scope="module")
def site() -> Site:
    return line_site()


def on_floor(site: Site, x, floor: int = 1, y: float = 2.0, height_m: float = 1.0) -> np.ndarray:
    x = np.atleast_1d(np.asarray(x, dtype=float))
    return np.column_stack(
        [x, np.full_like(x, y), np.full_like(x, float(site.z_m(floor, height_m)))]
    )


def fspl_db(d_m, freq_hz) -> np.ndarray:
    return 20.0 * np.log10(d_m) + 20.0 * np.log10(freq_hz / 1e6) - 27.55


# ----------------------------------------------------------------- mean path loss
def test_loss_in_the_open_is_free_space_and_grows_with_distance(site):
    model = PropagationModel()
    tx = on_floor(site, np.linspace(3.5, 9.9, 50))  # before the first wall
    rx = site.sensor_xyz()[0]
    loss = model.mean_path_loss_db(site, tx, rx, F900)
    assert np.all(np.diff(loss) > 0)
    np.testing.assert_allclose(loss, fspl_db(tx[:, 0] - 2.0, F900), atol=1e-9)
    # Inside the reference distance the loss stays at FSPL(d0).
    near = model.mean_path_loss_db(site, on_floor(site, [2.2, 2.6]), rx, F900)
    np.testing.assert_allclose(near, fspl_db(1.0, F900), atol=1e-9)


def test_two_walls_add_exactly_their_losses_at_900_mhz(site):
    model = PropagationModel()
    rx = site.sensor_xyz()[0]
    tx = on_floor(site, [15.0, 25.0])  # behind the 7 dB wall; behind both
    excess = model.mean_path_loss_db(site, tx, rx, F900) - fspl_db(tx[:, 0] - 2.0, F900)
    np.testing.assert_allclose(excess, [7.0, 12.0], atol=1e-9)
    # At 1800 MHz the walls weigh (1800/900)**alpha more.
    excess_1800 = model.mean_path_loss_db(site, tx, rx, 1.8e9) - fspl_db(tx[:, 0] - 2.0, 1.8e9)
    np.testing.assert_allclose(excess_1800, np.array([7.0, 12.0]) * 2.0**0.5, atol=1e-9)


def test_frequency_can_vary_per_row(site):
    model = PropagationModel()
    tx = on_floor(site, [25.0, 25.0])
    rows = model.mean_path_loss_db(site, tx, site.sensor_xyz()[0], np.array([F900, 1.8e9]))
    singles = [
        model.mean_path_loss_db(site, tx[i], site.sensor_xyz()[0], f)[0]
        for i, f in enumerate((F900, 1.8e9))
    ]
    np.testing.assert_allclose(rows, singles)


def test_floors_add_the_cost231_floor_loss(site):
    model = PropagationModel()
    tx = on_floor(site, [2.0])  # right below the sensors of floors 2 and 3
    d = np.array([3.0, 6.0])
    loss = np.concatenate(
        [
            model.mean_path_loss_db(site, tx, np.array([1]), F900),
            model.mean_path_loss_db(site, tx, site.sensor_xyz()[2], F900),
        ]
    )
    excess = loss - fspl_db(d, F900)
    two_slabs = 18.0 * 2.0 ** ((2 + 2) / (2 + 1) - 0.46)
    np.testing.assert_allclose(excess, [18.0, two_slabs], atol=1e-9)
    assert 18.0 < two_slabs < 36.0  # several slabs cost less than their sum
    linear = PropagationModel(floor_loss_model="linear", floor_loss_db=10.0)
    excess_linear = linear.mean_path_loss_db(site, tx, site.sensor_xyz()[2], F900) - fspl_db(
        6.0, F900
    )
    np.testing.assert_allclose(excess_linear, [20.0], atol=1e-9)


def test_sensor_indices_include_the_antenna_gain(site):
    model = PropagationModel()
    tx = on_floor(site, [30.0, 40.0], floor=3)
    by_index = model.mean_path_loss_db(site, tx, np.array([2, 2]), F900)
    by_point = model.mean_path_loss_db(site, tx, site.sensor_xyz()[2], F900)
    np.testing.assert_allclose(by_point - by_index, 2.0)
    with pytest.raises(IndexError):
        model.mean_path_loss_db(site, tx, np.array([0, 3]), F900)


def test_a_directional_antenna_follows_the_3gpp_sector_pattern():
    """A(phi) = -min(12 (phi/phi_3dB)^2, A_m) (TR 38.901 Table 7.3-1), on the arriving path."""
    base = {"name": "room", "floor_height_m": 3.0, "floor_loss_db": 18.0, "wings": [{"id": "A"}],
            "zones": [{"id": "hall", "kind": "hall", "wing": "A", "floor": 1,
                       "polygon": [[-30.0, -30.0], [30.0, -30.0], [30.0, 30.0], [-30.0, 30.0]]}]}
    omni = parse_site({**base, "sensors": [{"id": "S", "wing": "A", "floor": 1, "position": [0.0, 0.0],
                                            "height_m": 1.0}]}, "omni.toml")
    patch = parse_site({**base, "sensors": [{"id": "S", "wing": "A", "floor": 1, "position": [0.0, 0.0],
                                             "height_m": 1.0, "antenna_azimuth_deg": 90.0,
                                             "antenna_beamwidth_deg": 60.0, "antenna_front_to_back_db": 15.0}]},
                       "patch.toml")
    angles_deg = np.array([90.0, 120.0, 60.0, 150.0, 0.0, -90.0])  # boresight north
    xy = 10.0 * np.column_stack([np.cos(np.radians(angles_deg)), np.sin(np.radians(angles_deg))])
    tx = np.column_stack([xy, np.full(len(xy), 1.0)])
    model = PropagationModel(corridor_paths=False)
    sensors = np.zeros(len(xy), dtype=int)
    extra = model.mean_path_loss_db(patch, tx, sensors, F900) - model.mean_path_loss_db(omni, tx, sensors, F900)
    np.testing.assert_allclose(extra, [0.0, 3.0, 3.0, 12.0, 15.0, 15.0], atol=1e-9)


def test_demo_prison_losses_are_plausible(demo_site_path):
    demo = load_site(demo_site_path)
    model = PropagationModel.for_site(demo)
    sensor = demo.sensor_index("A1-S1")
    own_wing = [p for p in demo.cells if p.wing == "A" and p.floor == 1]
    other_wing = [p for p in demo.cells if p.wing == "B" and p.floor == 2]
    near = min(
        model.mean_path_loss_db(demo, [*c.centroid, float(demo.z_m(c.floor, 1.2))], sensor, F900)[0]
        for c in own_wing
    )
    far = min(
        model.mean_path_loss_db(demo, [*c.centroid, float(demo.z_m(c.floor, 1.2))], sensor, F900)[0]
        for c in other_wing
    )
    assert 40.0 < near < 60.0  # a cell across one cell-front wall from the corridor sensor
    assert far > near + 40.0  # another building, a floor up: facades, yard and a slab


# ----------------------------------------------------------------- shadowing
def scattered_points(site: Site, n: int, rng: np.random.Generator, floor: int = 1) -> np.ndarray:
    xy = rng.uniform(-150.0, 150.0, size=(n, 2))
    return np.column_stack([xy, np.full(n, float(site.z_m(floor, 1.0)))])


def test_shadowing_has_the_configured_spread(site):
    field = ShadowingField(site, PropagationModel(shadowing_sigma_db=4.0), seed=5)
    points = scattered_points(site, 20_000, np.random.default_rng(0))
    values = np.concatenate([field.sample(s, points) for s in range(3)])
    assert np.std(values) == pytest.approx(4.0, rel=0.10)
    assert abs(np.mean(values)) < 0.5
    quiet = ShadowingField(site, seed=5, sigma_db=0.0)
    assert np.all(quiet.sample(0, points[:10]) == 0.0)


def test_shadowing_is_static_and_independent_of_batching(site):
    points = scattered_points(site, 3000, np.random.default_rng(1))
    sensors = np.random.default_rng(2).integers(0, 3, size=3000)
    field = ShadowingField(site, seed=9)
    whole = field.sample(sensors, points)
    np.testing.assert_array_equal(field.sample(sensors, points), whole)
    fresh = ShadowingField(site, seed=9)  # another object, fields built in another order
    order = np.random.default_rng(3).permutation(3000)
    pieces = np.empty(3000)
    for chunk in np.array_split(order, 7):
        pieces[chunk] = fresh.sample(sensors[chunk], points[chunk])
    np.testing.assert_array_equal(pieces, whole)
    singles = [fresh.sample(int(sensors[i]), points[i])[0] for i in range(5)]
    np.testing.assert_array_equal(singles, whole[:5])
    assert not np.allclose(ShadowingField(site, seed=10).sample(sensors, points), whole)


def test_shadowing_is_correlated_nearby_and_not_far_away(site):
    rng = np.random.default_rng(4)
    points = scattered_points(site, 5000, rng)
    correlations = {}
    for distance_m in (0.2, 20.0):
        angle = rng.uniform(0, 2 * np.pi, size=points.shape[0])
        moved = points + distance_m * np.column_stack(
            [np.cos(angle), np.sin(angle), np.zeros_like(angle)]
        )
        a, b = [], []
        for seed in range(4):
            field = ShadowingField(site, seed=seed, sigma_db=4.0, decorrelation_m=1.5)
            for sensor in range(3):
                a.append(field.sample(sensor, points))
                b.append(field.sample(sensor, moved))
        correlations[distance_m] = np.corrcoef(np.concatenate(a), np.concatenate(b))[0, 1]
    assert correlations[0.2] > 0.75  # exp(-0.2 / 1.5) = 0.875
    assert abs(correlations[20.0]) < 0.1  # exp(-20 / 1.5) ~ 0


def test_each_sensor_and_floor_has_its_own_field(site):
    field = ShadowingField(site, seed=3)
    points = scattered_points(site, 2000, np.random.default_rng(5))
    upstairs = scattered_points(site, 2000, np.random.default_rng(5), floor=2)
    s0, s1 = field.sample(0, points), field.sample(1, points)
    assert abs(np.corrcoef(s0, s1)[0, 1]) < 0.15
    assert abs(np.corrcoef(s0, field.sample(0, upstairs))[0, 1]) < 0.15


# ----------------------------------------------------------------- fading
@pytest.mark.parametrize("k_factor_db", [-math.inf, 0.0, 3.0, 10.0])
def test_fading_has_unit_mean_power(k_factor_db):
    gains_db = fading_db(np.random.default_rng(6), 200_000, k_factor_db)
    assert np.mean(10.0 ** (gains_db / 10.0)) == pytest.approx(1.0, abs=0.015)


def test_rayleigh_fading_spreads_5_6_db_and_line_of_sight_less():
    rayleigh = fading_db(np.random.default_rng(7), 200_000, -math.inf)
    assert np.std(rayleigh) == pytest.approx(5.57, abs=0.1)
    assert np.mean(rayleigh) == pytest.approx(-2.51, abs=0.05)  # Euler's gamma in dB
    rician = fading_db(np.random.default_rng(7), 200_000, 10.0)
    assert np.std(rician) < 2.5


def test_wide_bursts_fade_less_than_narrow_ones():
    narrow = fading_db(np.random.default_rng(8), 50_000, -math.inf, bandwidth_hz=200e3)
    wide = fading_db(np.random.default_rng(8), 50_000, -math.inf, bandwidth_hz=10e6)
    assert np.std(narrow) == pytest.approx(5.57, abs=0.15)  # flat: one look
    assert np.std(wide) < 0.7 * np.std(narrow)  # three looks averaged


def test_fading_is_reproducible_from_its_generator():
    a = fading_db(np.random.default_rng(1), 10, 3.0)
    b = fading_db(np.random.default_rng(1), 10, 3.0)
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------- whole channel
def test_received_power_adds_the_parts(site):
    model = PropagationModel()
    tx = on_floor(site, [5.0, 15.0, 25.0])
    sensors = np.array([0, 0, 1])
    mean = model.received_power_dbm(site, 20.0, tx, sensors, F900)
    np.testing.assert_allclose(mean, 20.0 - model.mean_path_loss_db(site, tx, sensors, F900))
    field = ShadowingField(site, model, seed=2)
    shadowed = model.received_power_dbm(site, 20.0, tx, sensors, F900, shadowing=field)
    np.testing.assert_allclose(mean - shadowed, field.sample(sensors, tx))
    faded = model.received_power_dbm(
        site, 20.0, tx, sensors, F900, shadowing=field, rng=np.random.default_rng(3)
    )
    np.testing.assert_allclose(
        faded - shadowed, fading_db(np.random.default_rng(3), 3, model.rician_k_db)
    )


# ----------------------------------------------------------------- configuration
def test_defaults_are_in_plausible_ranges():
    model = PropagationModel()
    assert model.path_loss_exponent == 2.0  # walls are explicit: free-space slope
    assert model.free_space_reference_db(F900) == pytest.approx(31.53, abs=0.01)
    assert 0.3 <= model.wall_loss_freq_exponent <= 1.0
    assert 3.0 <= model.shadowing_sigma_db <= 6.0
    assert 1.0 <= model.shadowing_decorrelation_m <= 2.0
    assert 0.0 <= model.rician_k_db <= 6.0
    assert model.floor_loss_b == 0.46


def test_site_table_overrides_defaults():
    site = line_site(
        {"path_loss_exponent": 3.0, "rician_k_db": -math.inf, "floor_loss_model": "linear"}
    )
    model = PropagationModel.for_site(site)
    assert model.path_loss_exponent == 3.0 and model.rician_k_db == -math.inf
    tx = on_floor(site, [7.0])
    excess = model.mean_path_loss_db(site, tx, np.array([0]), F900) - fspl_db(1.0, F900)
    np.testing.assert_allclose(excess, 30.0 * math.log10(5.0))


@pytest.mark.parametrize(
    ("table", "field", "problem"),
    [
        ({"pathloss_exponent": 3.0}, "propagation.pathloss_exponent", "unknown key"),
        ({"shadowing_sigma_db": "4"}, "propagation.shadowing_sigma_db", "expected a number"),
        ({"shadowing_sigma_db": True}, "propagation.shadowing_sigma_db", "expected a number"),
        ({"path_loss_exponent": 9.0}, "propagation.path_loss_exponent", "must lie in"),
        (
            {"shadowing_decorrelation_m": 0.0},
            "propagation.shadowing_decorrelation_m",
            "must lie in",
        ),
        ({"constant_loss_db": math.inf}, "propagation.constant_loss_db", "must be finite"),
        ({"floor_loss_model": "itu"}, "propagation.floor_loss_model", "must be one of"),
    ],
)
def test_bad_propagation_table_names_the_key(table, field, problem):
    with pytest.raises(InputError) as caught:
        PropagationModel.from_dict(table, source="site.toml")
    assert caught.value.source == "site.toml"
    assert caught.value.field == field
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"site.toml: {field}: ")


def _centroid_xyz(site: Site, place_id: str, height_m: float = 1.2) -> np.ndarray:
    place = site.places[site.place_index(place_id)]
    return np.array([*place.centroid, float(site.z_m(place.floor, height_m))])


def test_corridor_route_replaces_a_row_of_partitions(demo_site_path):
    # A cell 18 m down the corridor from a sensor: the straight line crosses six 12 dB
    # partitions; the dominant path leaves through the 10 dB cell front and runs along
    # the corridor. The model must take the route, with its walls and the bend loss.
    demo = load_site(demo_site_path)
    tx = _centroid_xyz(demo, "A-1-10")
    sensor = demo.sensor_index("A1-S3")
    straight = PropagationModel(corridor_paths=False).mean_path_loss_db(demo, tx, sensor, 900e6)[0]
    routed = PropagationModel().mean_path_loss_db(demo, tx, sensor, 900e6)[0]
    assert straight - routed > 40.0
    rx = demo.sensor_xyz()[sensor]
    route_m = np.linalg.norm(rx - tx)  # the route is a little longer than the straight line
    assert routed >= fspl_db(route_m, 900e6) + 10.0 + 3.0 - 0.01  # front wall + bend at least
    assert routed <= fspl_db(route_m * 1.3, 900e6) + 10.0 + 3.0 + 12.0  # at most one more wall


def test_corridor_route_never_adds_loss_and_is_absent_without_corridors(demo_site_path):
    demo = load_site(demo_site_path)
    rng = np.random.default_rng(4)
    cells = [c.id for c in demo.cells]
    tx = np.array([_centroid_xyz(demo, cells[i]) for i in rng.integers(len(cells), size=200)])
    sensors = rng.integers(len(demo.sensors), size=200)
    routed = PropagationModel().mean_path_loss_db(demo, tx, sensors, 900e6)
    straight = PropagationModel(corridor_paths=False).mean_path_loss_db(demo, tx, sensors, 900e6)
    assert np.all(routed <= straight + 1e-9)
    assert np.any(routed < straight - 10.0)
    doc_zones = [dict(corridor(1), kind="hall")]  # the same geometry, but no zone of kind corridor
    plain = parse_site({"name": "hall", "wings": [{"id": "A"}], "zones": doc_zones,
                        "walls": [{"floor": 1, "points": [[10.0, -1.0], [10.0, 5.0]], "loss_db": 7.0}],
                        "sensors": [{"id": "S1", "wing": "A", "floor": 1, "position": [2.0, 2.0], "height_m": 1.0}]}, source="hall.toml")
    a = on_floor(plain, [1.0, 4.0, 9.0], y=8.0)  # outside the hall: a corridor would offer a route
    b = on_floor(plain, [30.0, 30.0, 30.0])
    assert np.all(np.isnan(corridor_waypoints(plain, a)))
    assert np.allclose(PropagationModel().mean_path_loss_db(plain, a, b, 900e6),
                       PropagationModel(corridor_paths=False).mean_path_loss_db(plain, a, b, 900e6))
