"""Level, frequency and clock calibration of each sensor: dBFS at a gain setting to dBm at the antenna.

Reference plane: **dBm at the antenna connector** of the sensor's dongle (what the
propagation model's path loss ends at, the sensor's antenna gain included).

Nodes report each burst's power in dBFS together with the tuner gain in force
(DESIGN.md); the service turns it into dBm here, so that a sensor can be
recalibrated without touching the node. The relation is the receiver model's
(:mod:`sdr.receiver`, step 3)::

    power_dbfs = power_dbm + gain_db + gain_offset_db - dbfs_at_0db_gain_dbm

* ``gain_db``: the R820T gain step the node set (carried by every detection).
* ``gain_offset_db``: this unit's deviation from the nominal gain (dongles of one
  model differ by a dB or two; a signal-generator or survey calibration measures it).
* ``dbfs_at_0db_gain_dbm``: the antenna power that reaches 0 dBFS at 0 dB of gain,
  -15 dBm for a generic RTL-SDR v3 (see :mod:`sdr.receiver` for the measurement it
  rests on).

A calibration file (TOML) holds one table per sensor; every key is optional::

    [sensors.A1-S1]
    gain_offset_db = -1.2          # measured gain minus nominal, dB
    dbfs_at_0db_gain_dbm = -15.0   # antenna dBm at 0 dBFS with 0 dB of gain
    ppm_error = 1.8                # crystal error, ppm (positive: runs fast)
    clock_offset_s = 0.0           # sensor clock minus true UTC, seconds

A dongle's gain error depends on the band and on the gain step, so a sensor may also
list offsets measured per band and gain step (``cellwatch calibrate gain`` writes them);
a detection takes the entry of its band at its gain step, else its band's entry at the
nearest step, else ``gain_offset_db``::

    [[sensors.A1-S1.offsets]]      # B8 (880-915 MHz) at gain 28.0 dB
    freq_min_hz = 880e6
    freq_max_hz = 915e6
    gain_db = 28.0                 # optional: the entry then holds for every step
    gain_offset_db = -0.9

Sensors the file does not name get the defaults. Unknown keys are an
:class:`~dsp.errors.InputError` naming ``sensors.<id>.<key>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from calibration.config import read_toml
from dsp.errors import InputError
from dsp.records import Detection

DEFAULT_DBFS_AT_0DB_GAIN_DBM = -15.0

_SENSOR_KEYS = ("gain_offset_db", "dbfs_at_0db_gain_dbm", "ppm_error", "clock_offset_s", "offsets")
_OFFSET_KEYS = ("freq_min_hz", "freq_max_hz", "gain_db", "gain_offset_db")
# the uplink bands a node scans (DESIGN.md): a measurement at a centre frequency holds for its band
UPLINK_BANDS_HZ = {"B28": (703e6, 733e6), "B20": (832e6, 862e6), "B8": (880e6, 915e6), "B3": (1710e6, 1785e6)}
_GAIN_MATCH_DB = 0.05
_LIMITS = {
    "gain_offset_db": (-30.0, 30.0),
    "dbfs_at_0db_gain_dbm": (-60.0, 30.0),
    "ppm_error": (-500.0, 500.0),
    "clock_offset_s": (-3600.0, 3600.0),
}


def dbm_to_dbfs(
    power_dbm: npt.ArrayLike,
    gain_db: float,
    gain_offset_db: float = 0.0,
    dbfs_at_0db_gain_dbm: float = DEFAULT_DBFS_AT_0DB_GAIN_DBM,
) -> npt.NDArray[np.float64] | float:
    """Digital level (dBFS) of a power at the antenna connector (dBm) at a gain setting."""
    out = np.asarray(power_dbm, dtype=np.float64) + gain_db + gain_offset_db - dbfs_at_0db_gain_dbm
    return float(out) if out.ndim == 0 else out


def dbfs_to_dbm(
    power_dbfs: npt.ArrayLike,
    gain_db: float,
    gain_offset_db: float = 0.0,
    dbfs_at_0db_gain_dbm: float = DEFAULT_DBFS_AT_0DB_GAIN_DBM,
) -> npt.NDArray[np.float64] | float:
    """Power at the antenna connector (dBm) of a level read in dBFS: the service's calibration.

    Nodes report dBFS with their gain setting (DESIGN.md); the service applies the
    sensor's ``gain_offset_db`` and ``dbfs_at_0db_gain_dbm``, so a sensor can be
    recalibrated without touching the node.
    """
    out = np.asarray(power_dbfs, dtype=np.float64) - gain_db - gain_offset_db + dbfs_at_0db_gain_dbm
    return float(out) if out.ndim == 0 else out


def band_of(freq_hz: float, span_hz: float = 2.4e6) -> tuple[str, float, float]:
    """The uplink band holding ``freq_hz`` (name, low, high), or the ``span_hz`` around it."""
    for name, (low, high) in UPLINK_BANDS_HZ.items():
        if low <= freq_hz <= high:
            return name, low, high
    return f"{freq_hz / 1e6:.1f} MHz", freq_hz - span_hz / 2.0, freq_hz + span_hz / 2.0


@dataclass(frozen=True)
class BandGainOffset:
    """A gain offset measured in one frequency range, at one gain step (``None``: any step)."""

    freq_min_hz: float
    freq_max_hz: float
    gain_db: float | None
    gain_offset_db: float


@dataclass(frozen=True)
class SensorCalibration:
    """One sensor's corrections; the defaults are an uncalibrated generic RTL-SDR."""

    sensor_id: str
    gain_offset_db: float = 0.0
    dbfs_at_0db_gain_dbm: float = DEFAULT_DBFS_AT_0DB_GAIN_DBM
    ppm_error: float = 0.0
    clock_offset_s: float = 0.0
    offsets: tuple[BandGainOffset, ...] = ()

    def gain_offset_for(self, freq_hz: float | None, gain_db: float) -> float:
        """The offset for a burst at ``freq_hz`` read at ``gain_db``: the band's entry at that
        step, else the band's entry for any step, else its entry at the nearest step, else
        ``gain_offset_db``."""
        if freq_hz is None or not self.offsets:
            return self.gain_offset_db
        inside = [o for o in self.offsets if o.freq_min_hz <= freq_hz <= o.freq_max_hz]
        if not inside:
            return self.gain_offset_db
        exact = [o for o in inside if o.gain_db is not None and abs(o.gain_db - gain_db) <= _GAIN_MATCH_DB]
        if exact:
            return exact[-1].gain_offset_db
        any_step = [o for o in inside if o.gain_db is None]
        if any_step:
            return any_step[-1].gain_offset_db
        return min(inside, key=lambda o: abs(float(o.gain_db or 0.0) - gain_db)).gain_offset_db

    def rssi_dbm(self, power_dbfs: float, gain_db: float, freq_hz: float | None = None) -> float:
        offset_db = self.gain_offset_for(freq_hz, gain_db)
        return float(dbfs_to_dbm(power_dbfs, gain_db, offset_db, self.dbfs_at_0db_gain_dbm))

    def true_freq_hz(self, measured_freq_hz: float) -> float:
        """The frequency a burst really had, from where a crystal ``ppm_error`` fast showed it.

        A fast crystal shows a signal ``f * ppm * 1e-6`` low (:func:`sdr.receiver.frequency_error_hz`
        gives it relative to the tuning; to first order it is the same relative to the signal).
        """
        return measured_freq_hz * (1.0 + self.ppm_error * 1e-6)

    def true_time_s(self, measured_time_s: float) -> float:
        return measured_time_s - self.clock_offset_s


@dataclass(frozen=True)
class CalibrationTable:
    """Calibrations by sensor id; :meth:`get` falls back to the defaults for unknown sensors."""

    sensors: Mapping[str, SensorCalibration] = field(default_factory=dict)
    source: str = "calibration"

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "calibration") -> CalibrationTable:
        """Validate a parsed calibration document (``{"sensors": {id: {key: value}}}``)."""
        if not isinstance(doc, Mapping):
            raise InputError(source, None, "expected a table at the top level")
        for key in doc:
            if key != "sensors":
                raise InputError(source, key, "unknown key (expected [sensors.<id>] tables)")
        table = doc.get("sensors", {})
        if not isinstance(table, Mapping):
            raise InputError(source, "sensors", "expected a table of [sensors.<id>] tables")
        out: dict[str, SensorCalibration] = {}
        for sensor_id, entry in table.items():
            path = f"sensors.{sensor_id}"
            if not isinstance(entry, Mapping):
                raise InputError(source, path, "expected a table")
            values: dict[str, Any] = {}
            for key, value in entry.items():
                if key == "offsets":
                    values["offsets"] = _parse_offsets(value, source, f"{path}.offsets")
                    continue
                if key not in _SENSOR_KEYS:
                    raise InputError(source, f"{path}.{key}", f"unknown key (expected one of: {', '.join(_SENSOR_KEYS)})")
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise InputError(source, f"{path}.{key}", "expected a finite number")
                low, high = _LIMITS[key]
                if not low <= value <= high:
                    raise InputError(source, f"{path}.{key}", f"must lie in [{low:g}, {high:g}], got {value:g}")
                values[key] = float(value)
            out[str(sensor_id)] = SensorCalibration(sensor_id=str(sensor_id), **values)
        return cls(sensors=out, source=source)

    @classmethod
    def from_file(cls, path: str | Path) -> CalibrationTable:
        """Read and validate a calibration TOML file (see the module notes for its form)."""
        return cls.from_dict(read_toml(path), source=str(path))

    def get(self, sensor_id: str) -> SensorCalibration:
        found = self.sensors.get(sensor_id)
        return found if found is not None else SensorCalibration(sensor_id=sensor_id)

    def rssi_dbm(self, detection: Detection) -> float | None:
        """Calibrated power at the antenna (dBm): the detection's own ``rssi_dbm`` when it
        carries one, else its ``power_dbfs`` through this sensor's calibration; ``None``
        when neither is possible (no ``rssi_dbm`` and no ``gain_db``)."""
        if detection.rssi_dbm is not None:
            return float(detection.rssi_dbm)
        if detection.gain_db is None:
            return None
        return self.get(detection.sensor_id).rssi_dbm(detection.power_dbfs, detection.gain_db, detection.freq_hz)


def _parse_offsets(value: Any, source: str, path: str) -> tuple[BandGainOffset, ...]:
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise InputError(source, path, "expected an array of tables ([[sensors.<id>.offsets]])")
    out = []
    for i, entry in enumerate(value):
        where = f"{path}[{i}]"
        numbers: dict[str, float] = {}
        for key, item in entry.items():
            if key not in _OFFSET_KEYS:
                raise InputError(source, f"{where}.{key}", f"unknown key (expected one of: {', '.join(_OFFSET_KEYS)})")
            if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
                raise InputError(source, f"{where}.{key}", "expected a finite number")
            numbers[key] = float(item)
        for key in ("freq_min_hz", "freq_max_hz", "gain_offset_db"):
            if key not in numbers:
                raise InputError(source, f"{where}.{key}", "missing")
        if not 0.0 < numbers["freq_min_hz"] <= numbers["freq_max_hz"]:
            raise InputError(source, f"{where}.freq_max_hz", "must be at least freq_min_hz (> 0)")
        low, high = _LIMITS["gain_offset_db"]
        if not low <= numbers["gain_offset_db"] <= high:
            raise InputError(source, f"{where}.gain_offset_db", f"must lie in [{low:g}, {high:g}]")
        if "gain_db" in numbers and not 0.0 <= numbers["gain_db"] <= 60.0:
            raise InputError(source, f"{where}.gain_db", "must lie in [0, 60] dB")
        out.append(BandGainOffset(numbers["freq_min_hz"], numbers["freq_max_hz"], numbers.get("gain_db"),
                                  numbers["gain_offset_db"]))
    return tuple(out)
