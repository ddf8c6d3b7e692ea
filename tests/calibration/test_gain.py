"""Sensor level calibration: the dBFS <-> dBm relation, calibration files, calibrated RSSI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from calibration import gain
from calibration.gain import CalibrationTable, SensorCalibration, dbfs_to_dbm, dbm_to_dbfs
from dsp.errors import InputError
from dsp.records import Detection

finite = st.floats(-150.0, 50.0, allow_nan=False)


@given(power_dbm=finite, gain_db=st.floats(0.0, 49.6), offset_db=st.floats(-5.0, 5.0), full_scale=st.floats(-30.0, 0.0))
def test_dbm_and_dbfs_are_inverse(power_dbm: float, gain_db: float, offset_db: float, full_scale: float) -> None:
    level = dbm_to_dbfs(power_dbm, gain_db, offset_db, full_scale)
    assert dbfs_to_dbm(level, gain_db, offset_db, full_scale) == pytest.approx(power_dbm, abs=1e-9)


def test_the_relation_of_the_receiver_model() -> None:
    # -15 dBm reaches full scale at 0 dB of gain; each dB of gain (or of unit offset) adds a dB
    assert dbm_to_dbfs(-15.0, 0.0) == pytest.approx(0.0)
    assert dbm_to_dbfs(-60.0, 28.0) == pytest.approx(-60.0 + 28.0 + 15.0)
    assert dbm_to_dbfs(-60.0, 28.0, 1.5) - dbm_to_dbfs(-60.0, 28.0) == pytest.approx(1.5)
    levels = dbm_to_dbfs(np.array([-80.0, -70.0]), 20.0)
    assert isinstance(levels, np.ndarray) and np.allclose(np.diff(levels), 10.0)


def test_the_receiver_uses_these_very_functions() -> None:
    from sdr import receiver

    assert receiver.dbm_to_dbfs is gain.dbm_to_dbfs
    assert receiver.dbfs_to_dbm is gain.dbfs_to_dbm
    assert receiver.DEFAULT_DBFS_AT_0DB_GAIN_DBM == gain.DEFAULT_DBFS_AT_0DB_GAIN_DBM


def _detection(**overrides: object) -> Detection:
    fields = {"sensor_id": "A1-S1", "t_start_s": 1.0, "duration_s": 5e-4, "freq_hz": 902.4e6, "bandwidth_hz": 2e5,
              "power_dbfs": -30.0, "snr_db": 20.0, "gain_db": 28.0}
    fields.update(overrides)
    return Detection(**fields)  # type: ignore[arg-type]


def test_calibration_file_and_rssi(tmp_path: Path) -> None:
    path = tmp_path / "cal.toml"
    path.write_text('[sensors.A1-S1]\ngain_offset_db = -1.5\ndbfs_at_0db_gain_dbm = -17.0\nppm_error = 2.0\n'
                    'clock_offset_s = 0.001\n')
    table = CalibrationTable.from_file(path)
    cal = table.get("A1-S1")
    assert cal == SensorCalibration("A1-S1", -1.5, -17.0, 2.0, 0.001)
    # dBm = dBFS - gain - offset + full scale
    assert table.rssi_dbm(_detection()) == pytest.approx(-30.0 - 28.0 + 1.5 - 17.0)
    # an unknown sensor gets the defaults of a generic dongle
    assert table.get("B2-S3") == SensorCalibration("B2-S3")
    assert table.rssi_dbm(_detection(sensor_id="B2-S3")) == pytest.approx(-30.0 - 28.0 - 15.0)
    # a detection that already carries rssi_dbm keeps it; one without gain cannot be calibrated
    assert table.rssi_dbm(_detection(rssi_dbm=-71.25)) == -71.25
    assert table.rssi_dbm(_detection(gain_db=None)) is None
    # a crystal 2 ppm fast shows signals low; the clock runs 1 ms ahead
    assert cal.true_freq_hz(900e6) == pytest.approx(900e6 + 1800.0)
    assert cal.true_time_s(10.001) == pytest.approx(10.0)


@pytest.mark.parametrize(("text", "field"), [
    ("[sensors.A1-S1]\ngain_ofset_db = 1.0\n", "sensors.A1-S1.gain_ofset_db"),
    ("[sensors.A1-S1]\ngain_offset_db = 'x'\n", "sensors.A1-S1.gain_offset_db"),
    ("[sensors.A1-S1]\nppm_error = 1000.0\n", "sensors.A1-S1.ppm_error"),
    ("[sensor.A1-S1]\ngain_offset_db = 1.0\n", "sensor"),
    ("sensors = 3\n", "sensors"),
])
def test_bad_calibration_files_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "cal.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        CalibrationTable.from_file(path)
    assert info.value.field == field and str(path) in str(info.value)


def test_missing_calibration_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        CalibrationTable.from_file(tmp_path / "nope.toml")
