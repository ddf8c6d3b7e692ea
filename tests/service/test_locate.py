"""The locator: posterior over places from levels and silences, transmit power marginalized."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from calibration.site import load_site
from dsp.errors import InputError
from service.locate import (
    Locator,
    LocatorConfig,
    Observation,
    Survey,
    fast_log_ndtr,
    load_survey,
    parse_survey,
)
from tests.conftest import ANNEX_SITE, DEMO_SITE

THRESHOLD_DBM = -95.0
FREQ_HZ = 902.4e6


@pytest.fixture(scope="module")
def demo():
    return load_site(DEMO_SITE)


@pytest.fixture(scope="module")
def locator(demo):
    return Locator(demo)


def observe(levels_dbm: np.ndarray, n_bursts: int = 50, threshold_dbm: float = THRESHOLD_DBM) -> Observation:
    """What a transmission of ``n_bursts`` bursts at these mean levels tells: heard above the threshold."""
    heard = levels_dbm >= threshold_dbm
    return Observation(
        freq_hz=FREQ_HZ,
        level_db=np.where(heard, levels_dbm, np.nan),
        level_var_db2=np.where(heard, 25.0 / n_bursts, np.nan),
        censor_db=np.where(heard, np.nan, threshold_dbm),
    )


def point_of(locator: Locator, place_index: int, rng: np.random.Generator) -> int:
    return int(rng.choice(np.flatnonzero(locator.place_of_point == place_index)))


def test_exact_model_levels_point_to_their_place(demo, locator) -> None:
    rng = np.random.default_rng(1)
    loss = locator.loss_table_db(FREQ_HZ)
    hits = 0
    for p in range(len(demo.places)):
        j = point_of(locator, p, rng)
        levels = 15.0 - loss[j]
        post = locator.locate(observe(levels, threshold_dbm=-400.0))  # every sensor heard
        assert abs(post.probabilities.sum() - 1.0) < 1e-9
        if post.best == p:
            hits += 1
            assert post.tx_power_dbm == pytest.approx(15.0, abs=3.0)
    # misses: a big zone (a corridor's 70 m2) loses to a small neighbour whose points fit nearly
    # as well, since a place's likelihood is the mean over where in it the phone may be
    assert hits >= 0.95 * len(demo.places)


@settings(max_examples=25, deadline=None)
@given(shift_db=st.floats(-8.0, 8.0), place=st.integers(0, 63))
def test_transmit_power_is_marginalized(locator, shift_db: float, place: int) -> None:
    """The same phone a few dB louder (power control) gives the same posterior, as long as
    both powers are well inside the technology's range."""
    rng = np.random.default_rng(place)
    levels = 12.0 - locator.loss_table_db(FREQ_HZ)[point_of(locator, place, rng)]
    levels = levels + rng.normal(0.0, 4.0, levels.shape)
    base = locator.locate(observe(levels))
    louder = observe(levels + shift_db, threshold_dbm=THRESHOLD_DBM + shift_db)  # same sensors heard
    shifted = locator.locate(louder)
    np.testing.assert_allclose(shifted.probabilities, base.probabilities, atol=2e-3)


def test_sensors_that_heard_nothing_are_information(demo, locator) -> None:
    """A weak phone next to A1-S2 that only A1-S2 hears: the silence of the others (their
    threshold -80 dBm here) is what says it is near A1-S2, and not a louder phone elsewhere."""
    rng = np.random.default_rng(4)
    loss = locator.loss_table_db(FREQ_HZ)
    levels = -20.0 - loss[point_of(locator, demo.place_index("A-1-05"), rng)]
    heard = levels >= -80.0
    assert heard.sum() == 1 and heard[demo.sensor_index("A1-S2")]
    level = np.where(heard, levels, np.nan)
    variance = np.where(heard, 0.5, np.nan)
    heard_only = Observation(FREQ_HZ, level, variance, np.full(len(demo.sensors), np.nan))
    with_silence = Observation(FREQ_HZ, level, variance, np.where(heard, np.nan, -80.0))
    a, b = locator.locate(heard_only), locator.locate(with_silence)

    def entropy(p: np.ndarray) -> float:
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    near = np.array([(p.wing, p.floor) == ("A", 1) for p in demo.places])
    assert entropy(b.probabilities) < entropy(a.probabilities) - 1.0
    assert b.probabilities[near].sum() > 0.9 > a.probabilities[near].sum()
    assert demo.places[b.best].id in ("A-1-05", "A-1-04", "A-1-06", "A-1-13", "A-1-12", "A-1-14", "A-1-corridor")


def test_a_street_phone_stays_on_the_street(demo, locator) -> None:
    """Weak and even at every sensor: the street, never a cell, whatever shadowing does."""
    rng = np.random.default_rng(7)
    street = demo.place_index("street")
    loss = locator.loss_table_db(FREQ_HZ)
    cells = np.array([p.is_cell for p in demo.places])
    for _ in range(20):
        levels = 33.0 - loss[point_of(locator, street, rng)] + rng.normal(0.0, 4.0, loss.shape[1])
        obs = observe(levels, threshold_dbm=-120.0)  # a sensitive receiver: some sensors hear it
        assert np.isfinite(obs.level_db).sum() >= 2
        post = locator.locate(replace(obs, tx_power_range_dbm=LocatorConfig().tx_power_range("gsm")))
        assert not demo.places[post.best].is_cell
        assert post.probabilities[cells].sum() < 0.2


def test_a_clipped_sensor_is_a_lower_bound(demo, locator) -> None:
    """A sensor whose bursts all clipped only says "at least this loud": places far from it lose."""
    n = len(demo.sensors)
    s = demo.sensor_index("B1-S2")
    levels = np.full(n, np.nan)
    lower = np.full(n, np.nan)
    lower[s] = -45.0
    obs = Observation(FREQ_HZ, levels, levels.copy(), np.where(np.arange(n) == s, np.nan, -95.0), lower)
    post = locator.locate(obs)
    best = demo.places[post.best]
    assert (best.wing, best.floor) == ("B", 1)
    sensor_xy = demo.sensors[s].position
    assert np.linalg.norm(best.centroid - sensor_xy) < 6.0


def test_batch_and_single_agree(demo, locator) -> None:
    rng = np.random.default_rng(3)
    loss = locator.loss_table_db(FREQ_HZ)
    observations = [observe(12.0 - loss[point_of(locator, p, rng)] + rng.normal(0, 4, loss.shape[1]))
                    for p in rng.integers(0, len(demo.places), 40)]
    many = locator.locate_many(observations)
    for obs, post in zip(observations, many, strict=True):
        np.testing.assert_allclose(locator.locate(obs).probabilities, post.probabilities, atol=1e-9)


def test_thousands_of_transmissions_per_second(demo, locator) -> None:
    rng = np.random.default_rng(5)
    loss = locator.loss_table_db(FREQ_HZ)
    observations = [observe(12.0 - loss[point_of(locator, p, rng)] + rng.normal(0, 4, loss.shape[1]))
                    for p in rng.integers(0, len(demo.places), 2000)]
    locator.locate_many(observations[:20])
    best = np.inf
    for _ in range(3):
        started = time.process_time()
        locator.locate_many(observations)
        best = min(best, time.process_time() - started)
    rate = len(observations) / best
    print(f"locator: {rate:.0f} transmissions/s ({locator.n_points} points x {len(demo.sensors)} sensors)")
    assert rate > 1000.0


def test_observation_from_burst_statistics() -> None:
    config = LocatorConfig(sigma_fading_db=5.0, max_censor_shift_db=6.0)
    # sensor 0: heard every burst at -60 +- noise; 1: 3 of 20 heard just above its threshold
    # (the fading peaks); 2: 0 of 200; 3: 0 of 1; 4: only clipped bursts
    k = np.array([20.0, 3.0, 0.0, 0.0, 0.0])
    s1 = np.array([20 * -60.0, 3 * -88.0, 0.0, 0.0, 0.0])
    s2 = np.array([20 * 3600.0 + 20 * 4.0, 3 * 88.0**2, 0.0, 0.0, 0.0])
    missed = np.array([0.0, 17.0, 200.0, 1.0, 0.0])
    missed_sum = np.array([0.0, 17 * -90.0, 200 * -90.0, -90.0, 0.0])
    clipped = np.array([0.0, 0.0, 0.0, 0.0, 10.0])
    clipped_sum = np.array([0.0, 0.0, 0.0, 0.0, 10 * -30.0])
    obs = Observation.from_sums(900e6, k, s1, s2, missed, missed_sum, clipped, clipped_sum, config)
    assert obs.level_db[0] == pytest.approx(-60.0)
    assert obs.level_var_db2[0] == pytest.approx(25.0 / 20)
    assert obs.level_db[1] < -88.0 - 2.0  # the Tobit estimate sits below the mean of the peaks
    assert np.isnan(obs.censor_db[:2]).all() and np.isnan(obs.level_db[2:]).all()
    assert obs.censor_db[2] == pytest.approx(-90.0 - 6.0)  # 200 misses: capped shift
    assert obs.censor_db[3] == pytest.approx(-90.0)  # one miss: the threshold itself
    assert obs.lower_db is not None and obs.lower_db[4] == pytest.approx(-30.0) and np.isnan(obs.censor_db[4])


def test_fast_log_ndtr_matches_scipy() -> None:
    z = np.linspace(-27.0, 8.0, 100001)
    np.testing.assert_allclose(fast_log_ndtr(z), special.log_ndtr(z), atol=2e-4, rtol=1e-5)
    assert fast_log_ndtr(np.array([40.0]))[0] == pytest.approx(0.0, abs=1e-12)


def test_a_survey_replaces_the_model_where_it_exists(demo, locator, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    truth = demo.place_index("A-1-03")
    levels = 10.0 - locator.loss_table_db(FREQ_HZ)[point_of(locator, truth, rng)]
    assert locator.locate(observe(levels)).best == truth
    # a survey saying that this very pattern is what one hears from A-2-10
    target = demo.place_index("A-2-10")
    heard = levels >= THRESHOLD_DBM
    fingerprints = {s.id: {"loss_db": float(10.0 - levels[i]), "spread_db": 1.0}
                    for i, s in enumerate(demo.sensors) if heard[i]}
    doc = {"version": 1, "freq_hz": FREQ_HZ, "places": {"A-2-10": {"sensors": fingerprints}}}
    path = tmp_path / "survey.json"
    path.write_text(json.dumps(doc))
    survey = load_survey(path, demo)
    assert survey.n_surveyed == int(heard.sum())
    surveyed = Locator(demo, survey=survey)
    assert surveyed.locate(observe(levels)).best == target
    # the same survey in TOML
    toml = tmp_path / "survey.toml"
    toml.write_text("version = 1\n" + "".join(
        f'[places."A-2-10".sensors."{sid}"]\nloss_db = {v["loss_db"]}\nspread_db = 1.0\n'
        for sid, v in fingerprints.items()))
    again = load_survey(toml, demo)
    np.testing.assert_allclose(np.nan_to_num(again.loss_db), np.nan_to_num(survey.loss_db))


@pytest.mark.parametrize(("doc", "field"), [
    ({"places": {"X-9-99": {"sensors": {}}}}, "places.X-9-99"),
    ({"places": {"A-1-01": {"sensors": {"Z9": {"loss_db": 60, "spread_db": 3}}}}}, "places.A-1-01.sensors.Z9"),
    ({"places": {"A-1-01": {"sensors": {"A1-S1": {"loss_db": 60}}}}}, "places.A-1-01.sensors.A1-S1.spread_db"),
    ({"places": {"A-1-01": {"sensors": {"A1-S1": {"loss_db": 60, "spread_db": 3, "x": 1}}}}},
     "places.A-1-01.sensors.A1-S1.x"),
    ({"version": 2}, "version"),
    ({"places": {}, "extra": 1}, "extra"),
])
def test_bad_surveys_name_the_field(demo, doc: dict, field: str) -> None:
    with pytest.raises(InputError) as info:
        parse_survey(doc, demo, "s.json")
    assert info.value.field == field


def test_config_is_validated() -> None:
    with pytest.raises(InputError, match=r"locator\.prior"):
        LocatorConfig(prior="flat")
    with pytest.raises(InputError, match=r"locator\.sigma_static_db"):
        LocatorConfig.from_dict({"sigma_static_db": -1.0})
    with pytest.raises(InputError, match=r"locator\.sigma_static"):
        LocatorConfig.from_dict({"sigma_static": 5.0})
    assert LocatorConfig.from_dict({"prior": "area"}).prior == "area"


def test_another_site_and_an_area_prior() -> None:
    annex = load_site(ANNEX_SITE)
    uniform = Locator(annex)
    by_area = Locator(annex, LocatorConfig(prior="area", prior_weight_by_kind={"outside": 3.0}))
    rng = np.random.default_rng(2)
    loss = uniform.loss_table_db(1747.5e6)
    hits = 0
    for p in range(len(annex.places)):
        levels = 10.0 - loss[point_of(uniform, p, rng)]
        obs = Observation(1747.5e6, levels, np.full(levels.shape, 0.5), np.full(levels.shape, np.nan))
        post = uniform.locate(obs)
        hits += post.best == p
        weighted = by_area.locate(obs)
        big = np.array([q.kind != "cell" for q in annex.places])  # corridors and the car park
        assert weighted.probabilities[big].sum() >= post.probabilities[big].sum() - 1e-9
    assert hits >= 0.75 * len(annex.places)  # four sensors, one per floor and one at the gate
    empty = Survey(np.full((len(annex.places), len(annex.sensors)), np.nan),
                   np.full((len(annex.places), len(annex.sensors)), np.nan))
    assert empty.n_surveyed == 0


def test_a_burst_or_two_among_hundreds_missed_count_as_missed() -> None:
    """Another phone's burst grouped in by mistake must not pull the place: only "missed" is sure."""
    config = LocatorConfig()
    obs = Observation.from_sums(902.4e6, n_heard=[300, 1, 40], sum_db=[300 * -50.0, -80.0, 40 * -80.0],
                                sum_sq_db2=[300 * 2500.0, 6400.0, 40 * 6400.0], n_missed=[0, 299, 260],
                                missed_threshold_sum_db=[0.0, 299 * -85.0, 260 * -85.0], n_clipped=[0, 0, 0],
                                clipped_sum_db=[0.0, 0.0, 0.0], config=config)
    assert np.isfinite(obs.level_db[0]) and np.isnan(obs.censor_db[0])
    assert np.isnan(obs.level_db[1]) and obs.censor_db[1] < -85.0  # rare: a bound, not a level
    assert np.isfinite(obs.level_db[2]) and obs.level_db[2] < -85.0  # 40 of 300: a fading tail, a level
    strict = Observation.from_sums(902.4e6, [300, 1, 40], [300 * -50.0, -80.0, 40 * -80.0],
                                   [300 * 2500.0, 6400.0, 40 * 6400.0], [0, 299, 260], [0.0, 299 * -85.0, 260 * -85.0],
                                   [0, 0, 0], [0.0, 0.0, 0.0], config=replace(config, rare_max_bursts=0))
    assert np.isfinite(strict.level_db[1])
