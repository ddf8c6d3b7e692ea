"""Gain calibration: simulated dongles with known gain offsets, the calibration file, drift (issue 8).

Acceptance: on simulated sensors with known gains, each gain offset is recovered within
1 dB. Measured on the 12 demo sensors (offsets spread 2 dB): noise-floor method at
49.6 dB of gain within 0.05 dB; reference carriers at known positions (no shadowing,
as a conducted or line-of-sight measurement) within 0.05 dB. With the building's 4 dB
shadowing, a radiated reference at one or two positions is off by up to ~5 dB: hence
the uncertainty reported and the advice to use several positions or the survey's fit.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from calibration import gaincal
from calibration.gain import CalibrationTable
from calibration.site import load_site
from dsp.errors import InputError
from sdr.scenario import Scenario
from sdr.simulate import Simulation
from tests.conftest import DEMO_SITE

RATE = 2.4e6
CENTRE = 902.4e6
# reference carriers, one per corridor, off each other's mirror (I/Q imbalance) and 2nd/3rd harmonic
# (8-bit quantization) frequencies around the tuning: a strong beacon's harmonic would read as a weak one
BEACONS = [(-610e3, "A-1-corridor"), (-237e3, "A-2-corridor"), (353e3, "B-1-corridor"), (811e3, "B-2-corridor")]


@pytest.fixture(scope="module")
def demo():
    return load_site(DEMO_SITE)


def _record(sim: Simulation, sensor_id: str, **kwargs) -> np.ndarray:
    return np.concatenate([block.samples for block in sim.stream(sensor_id, **kwargs)])


def test_tone_level_follows_the_amplitude_and_ignores_noise() -> None:
    rng = np.random.default_rng(0)
    n = 2 ** 17
    noise = ((rng.standard_normal(n) + 1j * rng.standard_normal(n)) * 10 ** (-50 / 20) / np.sqrt(2)).astype(np.complex64)
    k = np.arange(n)
    tone = np.exp(2j * np.pi * 123.4e3 / RATE * k)
    a = gaincal.measure_tone_power_dbfs((0.01 * tone + noise).astype(np.complex64), RATE, 123e3, 5e3)
    b = gaincal.measure_tone_power_dbfs((0.02 * tone + noise).astype(np.complex64), RATE, 123e3, 5e3)
    assert a.power_dbfs == pytest.approx(-40.0, abs=0.05)
    assert b.power_dbfs - a.power_dbfs == pytest.approx(6.02, abs=0.05)  # doubling amplitude: +6.02 dB
    assert gaincal.measure_noise_floor_dbfs(noise, RATE) == pytest.approx(-50.0, abs=0.1)
    # a strong carrier in a few bins does not move the floor
    assert gaincal.measure_noise_floor_dbfs((tone + noise).astype(np.complex64), RATE) == pytest.approx(-50.0, abs=0.15)


def test_noise_method_recovers_each_simulated_gain_offset(demo) -> None:
    spec = {"name": "quiet", "duration_s": 0.15,
            "receiver": {"center_freq_hz": 925.0e6, "gain_db": 49.6, "gain_spread_db": 2.0}}
    sim = Simulation(demo, Scenario.model_validate(spec), seed=3)
    errors = []
    for position, sensor_id in enumerate(sim.sensor_ids):
        floor = gaincal.measure_noise_floor_dbfs(_record(sim, sensor_id), RATE)
        m = gaincal.noise_measurement(sensor_id, floor, 49.6, RATE, 925.0e6, noise_figure_db=6.5)
        errors.append(m.gain_offset_db - sim.receiver_configs[position].gain_offset_db)
    assert max(abs(e) for e in errors) < 1.0
    assert max(abs(e) for e in errors) < 0.2  # the simulator's noise figure is exactly known
    assert np.std([c.gain_offset_db for c in sim.receiver_configs]) > 0.8


def test_noise_method_refuses_a_gain_too_low() -> None:
    floor = gaincal.expected_noise_floor_dbfs(14.4, RATE, 6.5, 0.0)
    with pytest.raises(InputError, match="higher gain"):
        gaincal.gain_offset_from_noise(floor, 14.4, RATE, 6.5)


def test_reference_method_recovers_each_simulated_gain_offset(demo) -> None:
    spec = {"name": "beacons", "duration_s": 0.1,
            "receiver": {"center_freq_hz": CENTRE, "gain_db": 28.0, "gain_spread_db": 2.0},
            "propagation": {"shadowing_sigma_db": 0.0},
            "downlink": [{"id": f"b{i}", "kind": "cw", "freq_hz": CENTRE + f, "power_dbm": -25.0, "zone": zone,
                          "height_m": 2.0} for i, (f, zone) in enumerate(BEACONS)]}
    sim = Simulation(demo, Scenario.model_validate(spec), seed=5)
    doc = {"references": [{"id": f"b{i}", "freq_hz": CENTRE + f, "tx_power_dbm": -25.0,
                           "position": list(sim.interferers[i][1].position), "floor": sim.interferers[i][1].floor,
                           "height_m": 2.0} for i, (f, _) in enumerate(BEACONS)]}
    references = gaincal.parse_references(doc, demo)
    errors = []
    for position, sensor_id in enumerate(sim.sensor_ids):
        x = _record(sim, sensor_id)
        found = []
        for ref in references:
            level = gaincal.measure_tone_power_dbfs(x, RATE, ref.freq_hz - CENTRE, 10e3)
            # 28 dB of gain: full scale near -43 dBm; a beacon next to the antenna would clip
            if level.snr_db >= gaincal.MIN_REFERENCE_SNR_DB and level.peak_dbfs < gaincal.MAX_REFERENCE_DBFS:
                found.append(gaincal.reference_measurement(sensor_id, ref, level.power_dbfs, 28.0, CENTRE, demo,
                                                           sim.model))
        assert found, sensor_id
        offset, _ = gaincal.combine(found)
        errors.append(offset - sim.receiver_configs[position].gain_offset_db)
    assert max(abs(e) for e in errors) < 1.0


def test_conducted_reference_needs_no_site() -> None:
    ref = gaincal.parse_references({"references": [{"freq_hz": 903e6, "tx_power_dbm": -20.0, "path_loss_db": 40.0}]},
                                   None)[0]
    m = gaincal.reference_measurement("S1", ref, level_dbfs=-31.5, gain_db=28.0, center_freq_hz=CENTRE,
                                      site=None, model=None)
    # -60 dBm at the connector reads -60 + 28 + 15 = -17 dBFS nominally: this unit is 14.5 dB short
    assert m.gain_offset_db == pytest.approx(-14.5)
    assert m.uncertainty_db == gaincal.CONDUCTED_UNCERTAINTY_DB


@pytest.mark.parametrize(("doc", "field"), [
    ({"references": [{"tx_power_dbm": 0.0, "place": "A-1-01"}]}, "references[0].freq_hz"),
    ({"references": [{"freq_hz": 9e8, "tx_power_dbm": 0.0, "place": "Z-9"}]}, "references[0].place"),
    ({"references": [{"freq_hz": 9e8, "tx_power_dbm": 0.0}]}, "references[0]"),
    ({"references": [{"freq_hz": 9e8, "tx_power_dbm": 0.0, "place": "A-1-01", "power": 1}]}, "references[0].power"),
    ({"references": [{"freq_hz": 9e8, "tx_power_dbm": 0.0, "position": [1, 2]}]}, "references[0].floor"),
    ({"references": [{"freq_hz": 9e8, "tx_power_dbm": 0.0, "place": "A-1-01", "sensors": ["nope"]}]},
     "references[0].sensors[0]"),
    ({"refs": []}, "refs"),
])
def test_reference_file_errors_name_the_field(demo, doc, field) -> None:
    with pytest.raises(InputError) as info:
        gaincal.parse_references(doc, demo, "beacon.toml")
    assert info.value.source == "beacon.toml"
    assert info.value.field == field


def test_calibration_file_is_updated_commented_and_readable(tmp_path: Path) -> None:
    path = tmp_path / "cal.toml"
    path.write_text('[sensors.A1-S1]\n# installed 2026-01-02\ngain_offset_db = 1.5\nppm_error = 3.0\n\n'
                    '[sensors."odd id"]\ndbfs_at_0db_gain_dbm = -14.0\n')
    table = gaincal.update_calibration_file(path, {"A1-S1": {"gain_offset_db": -0.75}, "B1-S1": {"ppm_error": -2.5}},
                                            {"A1-S1": ["2026-01-05 gain (noise): offset -0.75"]})
    text = path.read_text()
    assert "# installed 2026-01-02" in text and "# 2026-01-05 gain (noise): offset -0.75" in text
    assert text.index("installed") < text.index("2026-01-05")  # history in order
    assert "power_dbm = power_dbfs - gain_db - gain_offset_db + dbfs_at_0db_gain_dbm" in text
    reread = CalibrationTable.from_file(path)
    assert reread.get("A1-S1").gain_offset_db == -0.75 and reread.get("A1-S1").ppm_error == 3.0
    assert reread.get("odd id").dbfs_at_0db_gain_dbm == -14.0
    assert reread.get("B1-S1").ppm_error == -2.5 and table.get("B1-S1").ppm_error == -2.5
    assert tomllib.loads(text)["sensors"]["A1-S1"] == {"gain_offset_db": -0.75, "ppm_error": 3.0}


def test_drift_is_flagged_when_a_gain_changes(demo) -> None:
    base = {"name": "quiet", "duration_s": 0.1, "sensors": ["A1-S1", "A1-S2"],
            "receiver": {"center_freq_hz": 925.0e6, "gain_db": 49.6, "sensors": {"A1-S1": {"gain_offset_db": 0.4},
                                                                                 "A1-S2": {"gain_offset_db": -1.1}}}}
    calibration = CalibrationTable.from_dict({"sensors": {"A1-S1": {"gain_offset_db": 0.4},
                                                          "A1-S2": {"gain_offset_db": -1.1}}})
    later = dict(base, receiver=dict(base["receiver"], sensors={"A1-S1": {"gain_offset_db": 0.4},
                                                                "A1-S2": {"gain_offset_db": -4.6}}))  # LNA failing
    results = {}
    for name, spec in (("now", base), ("later", later)):
        sim = Simulation(demo, Scenario.model_validate(spec), seed=2)
        for sensor_id in sim.sensor_ids:
            floor = gaincal.measure_noise_floor_dbfs(_record(sim, sensor_id), RATE)
            results[name, sensor_id] = gaincal.check_noise_floor(sensor_id, floor, 49.6, RATE, calibration, 6.5, 2.0)
    assert not any(results["now", s].drifted for s in ("A1-S1", "A1-S2"))
    assert not results["later", "A1-S1"].drifted
    assert results["later", "A1-S2"].drifted and results["later", "A1-S2"].delta < -2.0
    level = gaincal.check_level("A1-S1", gaincal.parse_references(
        {"references": [{"freq_hz": 9e8, "tx_power_dbm": 0.0, "path_loss_db": 70.0}]}, None)[0],
        level_dbfs=-70.0 + 28.0 + 0.4 + 15.0 - 3.0, gain_db=28.0, calibration=calibration, site=None, model=None,
        tolerance_db=2.0)
    assert level.drifted and level.delta == pytest.approx(-3.0)
    assert math.isfinite(level.expected)


def test_offsets_per_band_and_gain_step_are_stored_and_applied(tmp_path: Path) -> None:
    """A dongle's gain error depends on band and step: the file keeps one entry per pair measured,
    a detection takes its own band's entry at its step (else the nearest step, else the default)."""
    from dsp.records import Detection

    cal = tmp_path / "cal.toml"
    b8 = {"freq_min_hz": 880e6, "freq_max_hz": 915e6}
    gaincal.update_calibration_file(cal, {"A1-S1": {"gain_offset_db": 0.5, "offsets": [
        {**b8, "gain_db": 28.0, "gain_offset_db": -0.9}, {**b8, "gain_db": 40.2, "gain_offset_db": 1.4}]}})
    # a later run at one of the steps replaces that entry only, and keeps the history of the others
    table = gaincal.update_calibration_file(cal, {"A1-S1": {"offsets": [{**b8, "gain_db": 28.0, "gain_offset_db": -1.1}]}},
                                            notes={"A1-S1": ["remeasured at 28 dB"]})
    text = cal.read_text()
    assert text.count("[[sensors.A1-S1.offsets]]") == 2 and "# B8, gain 28 dB" in text and "remeasured" in text
    assert tomllib.loads(text)["sensors"]["A1-S1"]["gain_offset_db"] == 0.5
    sensor = table.get("A1-S1")
    assert sensor.gain_offset_for(902.4e6, 28.0) == -1.1
    assert sensor.gain_offset_for(902.4e6, 38.6) == 1.4  # nearest step measured in that band
    assert sensor.gain_offset_for(1747.5e6, 28.0) == 0.5  # B3 never measured: the default
    detection = Detection(sensor_id="A1-S1", t_start_s=1.0, duration_s=5e-4, freq_hz=902.4e6, bandwidth_hz=2e5,
                          power_dbfs=-30.0, snr_db=20.0, gain_db=28.0)
    assert table.rssi_dbm(detection) == pytest.approx(-30.0 - 28.0 + 1.1 - 15.0)
    with pytest.raises(InputError) as bad:
        CalibrationTable.from_dict({"sensors": {"A1-S1": {"offsets": [{**b8, "gain_offset": 1.0}]}}}, "c.toml")
    assert bad.value.field == "sensors.A1-S1.offsets[0].gain_offset"
