"""Gain calibration: each sensor's offset from dBFS to dBm at its antenna connector, and its drift.

Reference plane: **dBm at the antenna connector** (:mod:`calibration.gain`), where the
propagation model's path loss ends. The relation the service applies is::

    power_dbm = power_dbfs - gain_db - gain_offset_db + dbfs_at_0db_gain_dbm

and this module measures ``gain_offset_db`` (the unit's deviation from the nominal
gain) at a given band and gain step, two ways:

**Reference transmitter** (preferred): a carrier of known power at a known place. The
level a sensor reads (dBFS, measured in its recording as the tone's power, or as the mean
power of a reference phone's detections) is compared with what should reach its antenna::

    expected_dbm = tx_power_dbm - L      gain_offset_db = level_dbfs - (expected_dbm + gain_db - dbfs_at_0db)

``L`` is either given (``path_loss_db``: a cable and attenuators straight into the antenna
port, a conducted measurement good to a few tenths of a dB) or the propagation model's
mean loss from the reference to the sensor. A radiated reference carries the
building's shadowing (4-8 dB indoors, ITU-R P.1238 §4): one position gives the offset
only to that, so the uncertainty reported is ``shadowing_sigma_db / sqrt(n)`` for ``n``
reference positions a sensor heard, and several positions (or the survey fit's per-sensor
offsets, :mod:`calibration.fit`) are needed for a dB.

**Noise floor** (fallback, no equipment): with the dongle's noise figure ``F`` known, the
thermal floor ``kTB·F`` (``-174 dBm/Hz + F + 10·log10(B)``) is a reference of known power
at the antenna. The measured floor (dBFS over the sampled band, :func:`measure_noise_floor_dbfs`)
also holds the RTL2832U's own gain-independent noise (8-bit quantization, ``LSB²/6`` per
complex sample, plus about 0.4 LSB rms per rail of ADC noise: :data:`RTL_FIXED_FLOOR_DBFS`
= -45.2 dBFS), which is subtracted in power. It needs a high gain step, where the
thermal part stands at least :data:`MIN_THERMAL_MARGIN_DB` above that (above ~44 dB on
an R820T); the result is only as good as the noise figure (an R820T2's varies by a dB or
two with the gain step and from unit to unit).

**Drift** (:func:`check_noise_floor`, :func:`check_level`): the same measurements made
later, compared with what the stored calibration predicts; a sensor whose floor or beacon
reading moved by more than a tolerance is flagged (a failing LNA, a loose antenna cable,
a dongle swapped, a gain step not applied).

The calibration file (:func:`update_calibration_file`) is the TOML that
:class:`calibration.gain.CalibrationTable` reads, written with a comment line per
measurement under each sensor so the file tells its own history.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from calibration.config import read_toml
from calibration.gain import DEFAULT_DBFS_AT_0DB_GAIN_DBM, CalibrationTable, band_of
from calibration.propagation import PropagationModel
from calibration.site import Site
from dsp.errors import InputError

FloatArray = npt.NDArray[np.float64]

THERMAL_NOISE_DBM_PER_HZ = 10.0 * math.log10(1.380649e-23 * 290.0 * 1e3)  # kT at 290 K: -173.98 dBm/Hz
_LSB = 1.0 / 127.5
# An RTL2832U's floor that no tuner gain moves: quantization (LSB²/12 a rail) plus ~0.4 LSB rms of
# ADC noise a rail (the figures sdr.receiver models), as a fraction of full scale: -45.2 dBFS.
RTL_FIXED_FLOOR_DBFS = 10.0 * math.log10(2.0 * (_LSB**2 / 12.0 + (0.4 * _LSB) ** 2))
MIN_THERMAL_MARGIN_DB = 1.0
DEFAULT_NOISE_FIGURE_DB = 6.5  # R820T2 near 900 MHz at high gain (the simulator's default)
CONDUCTED_UNCERTAINTY_DB = 0.3
MIN_REFERENCE_SNR_DB = 10.0
MAX_REFERENCE_DBFS = -3.0  # closer to full scale the 8-bit ADC clips the tone's peaks

_NOISE_FFT = 1024
_NOISE_GROUP = 8  # frames averaged before the median: Gamma(8) cells, a tight median
_TONE_FFT = 8192
_TONE_HALF_WIDTH_BINS = 3  # Hann main lobe ±2 bins, one more for a tone between bins


def thermal_noise_dbm(noise_figure_db: float, bandwidth_hz: float) -> float:
    """kTB·F at 290 K referred to the antenna, in dBm."""
    return THERMAL_NOISE_DBM_PER_HZ + noise_figure_db + 10.0 * math.log10(bandwidth_hz)


# ============================================================== measurements on IQ
def _power_frames(samples: npt.ArrayLike, n_fft: int) -> tuple[FloatArray, float]:
    """Hann-windowed power spectra ``(n_frames, n_fft)`` (fftshifted, in units of the per-sample
    variance of white noise: a bin of white noise of variance σ² has mean σ²) and the window's
    noise bandwidth in bins."""
    x = np.asarray(samples, dtype=np.complex64)
    n_frames = x.shape[0] // n_fft
    if n_frames < 1:
        raise ValueError(f"need at least {n_fft} samples")
    window = np.hanning(n_fft).astype(np.float32)
    sum_w2 = float(np.sum(window.astype(np.float64) ** 2))
    out = np.empty((n_frames, n_fft), dtype=np.float64)
    step = max(1, (1 << 18) // n_fft)
    for start in range(0, n_frames, step):  # a loop over blocks of frames, not samples
        stop = min(start + step, n_frames)
        frames = x[start * n_fft:stop * n_fft].reshape(stop - start, n_fft) * window
        spectrum = np.fft.fftshift(np.fft.fft(frames, axis=1), axes=1)
        out[start:stop] = (spectrum.real.astype(np.float64) ** 2 + spectrum.imag.astype(np.float64) ** 2) / sum_w2
    enbw_bins = n_fft * sum_w2 / float(np.sum(window.astype(np.float64))) ** 2
    return out, enbw_bins


def measure_noise_floor_dbfs(samples: npt.ArrayLike, sample_rate_hz: float, *, dc_exclude_hz: float = 30e3,
                             band_fraction: float = 0.8) -> float:
    """Noise power of ``samples`` over the whole sampled band (dBFS: variance per complex sample).

    Robust to signals: frames of 1024 bins are averaged 8 at a time and the median over
    those cells (central ``band_fraction`` of the band, the DC spike's ±``dc_exclude_hz``
    left out) is turned into a mean by the Gamma(8) median's exact bias. Bursts and carriers
    covering less than half of the cells do not move it.
    """
    power, _ = _power_frames(samples, _NOISE_FFT)
    n_groups = power.shape[0] // _NOISE_GROUP
    if n_groups < 1:
        raise ValueError(f"need at least {_NOISE_FFT * _NOISE_GROUP} samples")
    cells = power[:n_groups * _NOISE_GROUP].reshape(n_groups, _NOISE_GROUP, _NOISE_FFT).mean(axis=1)
    freqs = np.fft.fftshift(np.fft.fftfreq(_NOISE_FFT, d=1.0 / sample_rate_hz))
    keep = (np.abs(freqs) <= band_fraction * sample_rate_hz / 2.0) & (np.abs(freqs) >= dc_exclude_hz)
    median = float(np.median(cells[:, keep]))
    bias = float(stats.gamma.median(_NOISE_GROUP)) / _NOISE_GROUP  # median / mean of a Gamma(8)/8 cell
    return 10.0 * math.log10(max(median / bias, 1e-30))


@dataclass(frozen=True)
class ToneLevel:
    """A steady carrier measured in a recording."""

    power_dbfs: float  # the carrier's power (dBFS), noise removed
    offset_hz: float  # where it showed, relative to the tuning
    snr_db: float  # over the noise in its measurement bandwidth
    peak_dbfs: float  # the largest |sample| of the recording, dBFS (clipping check)


def measure_tone_power_dbfs(samples: npt.ArrayLike, sample_rate_hz: float, offset_hz: float,
                            search_hz: float) -> ToneLevel:
    """Power of the steady carrier nearest ``offset_hz`` (within ``± search_hz``) in ``samples``.

    The power spectra of 8192-sample Hann frames are averaged in linear units, the carrier's
    power is the sum over ±3 bins of the strongest bin in the search range, minus the noise
    in those bins (the median bin of a ±100 kHz neighbourhood), corrected for the window's
    noise bandwidth. Raises ValueError when the search range lies outside the band.
    """
    power, _ = _power_frames(samples, _TONE_FFT)
    mean = power.mean(axis=0)
    freqs = np.fft.fftshift(np.fft.fftfreq(_TONE_FFT, d=1.0 / sample_rate_hz))
    search = np.flatnonzero(np.abs(freqs - offset_hz) <= search_hz)
    if search.size == 0:
        raise ValueError("the search range lies outside the recording's band")
    best = int(search[np.argmax(mean[search])])
    w = _TONE_HALF_WIDTH_BINS
    lo, hi = max(best - w, 0), min(best + w + 1, _TONE_FFT)
    around = np.flatnonzero(np.abs(freqs - freqs[best]) <= 100e3)
    noise_per_bin = float(np.median(mean[around])) / (1.0 - 1.0 / (2.0 * power.shape[0] * 4.5))  # mean ≈ median here
    tone = float(np.sum(mean[lo:hi])) - noise_per_bin * (hi - lo)
    # Parseval: the bins of a tone of power A² sum to n_fft·A² in these units (white noise: σ² a bin)
    tone_power = max(tone, 1e-30) / _TONE_FFT
    x = np.asarray(samples)
    peak = float(np.max(np.maximum(np.abs(x.real), np.abs(x.imag)))) if x.size else 0.0
    return ToneLevel(
        power_dbfs=10.0 * math.log10(tone_power),
        offset_hz=float(freqs[best]),
        snr_db=10.0 * math.log10(max(tone, 1e-30) / max(noise_per_bin * (hi - lo), 1e-30)),
        peak_dbfs=20.0 * math.log10(max(peak, 1e-12)),
    )


# ============================================================== offsets
def gain_offset_from_level(level_dbfs: float, gain_db: float, expected_dbm: float,
                           dbfs_at_0db_gain_dbm: float = DEFAULT_DBFS_AT_0DB_GAIN_DBM) -> float:
    """``gain_offset_db`` that makes a level read at ``gain_db`` equal the power expected at the antenna."""
    return level_dbfs - (expected_dbm + gain_db - dbfs_at_0db_gain_dbm)


def gain_offset_from_noise(floor_dbfs: float, gain_db: float, sample_rate_hz: float, noise_figure_db: float, *,
                           fixed_floor_dbfs: float = RTL_FIXED_FLOOR_DBFS,
                           dbfs_at_0db_gain_dbm: float = DEFAULT_DBFS_AT_0DB_GAIN_DBM,
                           source: str | None = None) -> tuple[float, float]:
    """``(gain_offset_db, thermal margin dB)`` from a measured floor; see the module notes.

    Raises :class:`InputError` when the thermal part is not :data:`MIN_THERMAL_MARGIN_DB`
    above the fixed floor (the gain step is too low for this method).
    """
    excess = 10.0 ** (floor_dbfs / 10.0) - 10.0 ** (fixed_floor_dbfs / 10.0)
    margin = 10.0 * math.log10(max(excess, 1e-30)) - fixed_floor_dbfs
    if margin < MIN_THERMAL_MARGIN_DB:
        raise InputError(source, "gain_db",
                         f"noise floor {floor_dbfs:.1f} dBFS at {gain_db:g} dB of gain is not {MIN_THERMAL_MARGIN_DB:g} dB "
                         f"above the ADC's own {fixed_floor_dbfs:.1f} dBFS: record at a higher gain (>= 44 dB) "
                         "for the noise method, or use a reference transmitter")
    thermal_dbfs = 10.0 * math.log10(excess)
    expected_dbm = thermal_noise_dbm(noise_figure_db, sample_rate_hz)
    return gain_offset_from_level(thermal_dbfs, gain_db, expected_dbm, dbfs_at_0db_gain_dbm), margin


def expected_noise_floor_dbfs(gain_db: float, sample_rate_hz: float, noise_figure_db: float, gain_offset_db: float,
                              *, fixed_floor_dbfs: float = RTL_FIXED_FLOOR_DBFS,
                              dbfs_at_0db_gain_dbm: float = DEFAULT_DBFS_AT_0DB_GAIN_DBM) -> float:
    """The floor (dBFS over the band) a calibrated sensor should show: thermal through its gain + fixed part."""
    thermal = thermal_noise_dbm(noise_figure_db, sample_rate_hz) + gain_db + gain_offset_db - dbfs_at_0db_gain_dbm
    return 10.0 * math.log10(10.0 ** (thermal / 10.0) + 10.0 ** (fixed_floor_dbfs / 10.0))


# ============================================================== reference transmitters
_REFERENCE_KEYS = {"id", "freq_hz", "tx_power_dbm", "place", "position", "floor", "height_m", "path_loss_db",
                   "sensors", "start_utc", "end_utc", "note"}


@dataclass(frozen=True)
class ReferenceTransmitter:
    """A carrier of known power at a known place (or with a known loss to the sensors it serves)."""

    id: str
    freq_hz: float
    tx_power_dbm: float
    place: str | None = None
    position: tuple[float, float] | None = None
    floor: int | None = None
    height_m: float = 1.5
    path_loss_db: float | None = None  # known loss (conducted: cable + attenuators); None: the model's
    sensors: tuple[str, ...] = ()  # the sensors it is for (empty: every sensor that hears it)
    start_s: float | None = None  # UTC window when it was on (detections and recordings outside are ignored)
    end_s: float | None = None
    note: str = ""

    def serves(self, sensor_id: str) -> bool:
        return not self.sensors or sensor_id in self.sensors

    def expected_rx_dbm(self, site: Site | None, model: PropagationModel | None, sensor_id: str) -> float:
        """Power that should reach ``sensor_id``'s antenna connector: ``tx - L`` (given L, or the model's)."""
        if self.path_loss_db is not None:
            return self.tx_power_dbm - self.path_loss_db
        if site is None or model is None:
            raise InputError(None, f"references.{self.id}", "needs --site (or a path_loss_db) to know its path loss")
        sensor = site.sensor_index(sensor_id)
        points = self.points_xyz(site)
        loss = model.mean_path_loss_db(site, points, np.full(points.shape[0], sensor), self.freq_hz)
        # a place: the power averaged over where in it the transmitter may stand
        return self.tx_power_dbm + 10.0 * math.log10(float(np.mean(10.0 ** (-loss / 10.0))))

    def points_xyz(self, site: Site) -> FloatArray:
        if self.position is not None:
            assert self.floor is not None
            return np.array([[self.position[0], self.position[1], float(site.z_m(self.floor, self.height_m))]])
        assert self.place is not None
        index = site.place_index(self.place)
        xy = site.sample_points(index, spacing_m=0.5)
        z = float(site.z_m(site.places[index].floor, self.height_m))
        return np.column_stack([xy, np.full(xy.shape[0], z)])


def _number(value: Any, source: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(source, field, f"expected a number, got {value!r}")
    return float(value)


def parse_utc_value(value: Any, source: str, field: str) -> float:
    """A UTC time as epoch seconds, an ISO 8601 string or a TOML date-time."""
    import datetime

    if isinstance(value, datetime.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)
        return moment.timestamp()
    if isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(source, field, f"not an ISO 8601 time: {value!r} (e.g. 2026-01-05T21:30:00Z)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return moment.timestamp()
    return _number(value, source, field)


def parse_references(doc: Mapping[str, Any], site: Site | None, source: str = "references") -> list[ReferenceTransmitter]:
    """Validate a reference file (``[[references]]`` tables; see ``docs/installing.md``)."""
    if not isinstance(doc, Mapping):
        raise InputError(source, None, "expected a table at the top level")
    for key in doc:
        if key != "references":
            raise InputError(source, key, "unknown key (expected [[references]] tables)")
    items = doc.get("references")
    if not isinstance(items, list) or not items:
        raise InputError(source, "references", "expected at least one [[references]] table")
    out: list[ReferenceTransmitter] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        path = f"references[{i}]"
        if not isinstance(item, Mapping):
            raise InputError(source, path, "expected a table")
        for key in item:
            if key not in _REFERENCE_KEYS:
                raise InputError(source, f"{path}.{key}", f"unknown key (expected one of: {', '.join(sorted(_REFERENCE_KEYS))})")
        ref_id = item.get("id", f"ref{i}")
        if not isinstance(ref_id, str) or not ref_id:
            raise InputError(source, f"{path}.id", "expected a non-empty string")
        if ref_id in seen:
            raise InputError(source, f"{path}.id", f"duplicate id {ref_id!r}")
        seen.add(ref_id)
        for key in ("freq_hz", "tx_power_dbm"):
            if key not in item:
                raise InputError(source, f"{path}.{key}", "missing")
        freq = _number(item["freq_hz"], source, f"{path}.freq_hz")
        if not 24e6 <= freq <= 6e9:
            raise InputError(source, f"{path}.freq_hz", f"must lie in 24 MHz .. 6 GHz, got {freq:g}")
        tx = _number(item["tx_power_dbm"], source, f"{path}.tx_power_dbm")
        loss = None if item.get("path_loss_db") is None else _number(item["path_loss_db"], source, f"{path}.path_loss_db")
        place = item.get("place")
        position = item.get("position")
        floor = item.get("floor")
        if loss is None and (place is None) == (position is None):
            raise InputError(source, path, "give exactly one of place or position (or a known path_loss_db)")
        if place is not None:
            if not isinstance(place, str):
                raise InputError(source, f"{path}.place", "expected a cell or zone id")
            if site is not None:
                try:
                    site.place_index(place)
                except KeyError:
                    raise InputError(source, f"{path}.place", f"no cell or zone {place!r} in site {site.name!r}") from None
        pos: tuple[float, float] | None = None
        if position is not None:
            if not isinstance(position, list) or len(position) != 2:
                raise InputError(source, f"{path}.position", "expected [x, y] in metres")
            pos = (_number(position[0], source, f"{path}.position"), _number(position[1], source, f"{path}.position"))
            if isinstance(floor, bool) or not isinstance(floor, int):
                raise InputError(source, f"{path}.floor", "a position needs an integer floor")
        height = _number(item.get("height_m", 1.5), source, f"{path}.height_m")
        sensors = item.get("sensors", [])
        if not isinstance(sensors, list) or not all(isinstance(s, str) for s in sensors):
            raise InputError(source, f"{path}.sensors", "expected a list of sensor ids")
        if site is not None:
            for j, sensor_id in enumerate(sensors):
                if sensor_id not in {s.id for s in site.sensors}:
                    raise InputError(source, f"{path}.sensors[{j}]", f"no sensor {sensor_id!r} in site {site.name!r}")
        start = None if item.get("start_utc") is None else parse_utc_value(item["start_utc"], source, f"{path}.start_utc")
        end = None if item.get("end_utc") is None else parse_utc_value(item["end_utc"], source, f"{path}.end_utc")
        if start is not None and end is not None and end <= start:
            raise InputError(source, f"{path}.end_utc", "must be after start_utc")
        note = item.get("note", "")
        if not isinstance(note, str):
            raise InputError(source, f"{path}.note", "expected a string")
        out.append(ReferenceTransmitter(
            id=ref_id, freq_hz=freq, tx_power_dbm=tx, place=place, position=pos,
            floor=None if floor is None else int(floor), height_m=height, path_loss_db=loss,
            sensors=tuple(sensors), start_s=start, end_s=end, note=note))
    return out


def load_references(path: str | Path, site: Site | None) -> list[ReferenceTransmitter]:
    return parse_references(read_toml(path), site, str(path))


# ============================================================== results
@dataclass(frozen=True)
class GainMeasurement:
    """One measurement of one sensor's gain offset at one band and gain step."""

    sensor_id: str
    method: str  # "reference" or "noise"
    gain_db: float
    center_freq_hz: float
    gain_offset_db: float
    uncertainty_db: float
    detail: str  # one line for the report and the file's comment


def combine(measurements: Sequence[GainMeasurement]) -> tuple[float, float]:
    """Inverse-variance mean of one sensor's offsets and its standard error."""
    weights = np.array([1.0 / max(m.uncertainty_db, 0.05) ** 2 for m in measurements])
    values = np.array([m.gain_offset_db for m in measurements])
    mean = float(np.sum(weights * values) / np.sum(weights))
    return mean, float(1.0 / math.sqrt(float(np.sum(weights))))


def reference_measurement(sensor_id: str, reference: ReferenceTransmitter, level_dbfs: float, gain_db: float,
                          center_freq_hz: float, site: Site | None, model: PropagationModel | None,
                          dbfs_at_0db_gain_dbm: float = DEFAULT_DBFS_AT_0DB_GAIN_DBM) -> GainMeasurement:
    """A sensor's offset from the level it read of ``reference``."""
    expected = reference.expected_rx_dbm(site, model, sensor_id)
    offset = gain_offset_from_level(level_dbfs, gain_db, expected, dbfs_at_0db_gain_dbm)
    if reference.path_loss_db is not None:
        uncertainty, how = CONDUCTED_UNCERTAINTY_DB, f"known loss {reference.path_loss_db:.1f} dB"
    else:
        sigma = model.shadowing_sigma_db if model is not None else 4.0
        uncertainty, how = sigma, f"model loss {reference.tx_power_dbm - expected:.1f} dB"
    detail = (f"reference {reference.id} ({reference.freq_hz / 1e6:.3f} MHz, {reference.tx_power_dbm:g} dBm, {how}): "
              f"read {level_dbfs:.2f} dBFS at {gain_db:g} dB, expected {expected:.2f} dBm")
    return GainMeasurement(sensor_id, "reference", gain_db, center_freq_hz, offset, uncertainty, detail)


def noise_measurement(sensor_id: str, floor_dbfs: float, gain_db: float, sample_rate_hz: float, center_freq_hz: float,
                      noise_figure_db: float, *, source: str | None = None,
                      dbfs_at_0db_gain_dbm: float = DEFAULT_DBFS_AT_0DB_GAIN_DBM) -> GainMeasurement:
    """A sensor's offset from its noise floor with a known noise figure."""
    offset, margin = gain_offset_from_noise(floor_dbfs, gain_db, sample_rate_hz, noise_figure_db,
                                            dbfs_at_0db_gain_dbm=dbfs_at_0db_gain_dbm, source=source)
    # a dB of noise-figure error is a dB of offset; the fixed floor's share adds a little when the margin is small
    uncertainty = 1.0 + 10.0 ** (-margin / 10.0)
    detail = (f"noise floor {floor_dbfs:.2f} dBFS at {gain_db:g} dB over {sample_rate_hz / 1e6:.2f} MHz, "
              f"NF {noise_figure_db:g} dB, thermal {margin:.1f} dB above the ADC floor")
    return GainMeasurement(sensor_id, "noise", gain_db, center_freq_hz, offset, uncertainty, detail)


# ============================================================== drift
@dataclass(frozen=True)
class DriftCheck:
    """One check of one sensor against its stored calibration."""

    sensor_id: str
    what: str  # "noise floor", "reference <id>", "ppm"
    measured: float
    expected: float
    tolerance: float
    unit: str

    @property
    def delta(self) -> float:
        return self.measured - self.expected

    @property
    def drifted(self) -> bool:
        return abs(self.delta) > self.tolerance


def check_noise_floor(sensor_id: str, floor_dbfs: float, gain_db: float, sample_rate_hz: float,
                      calibration: CalibrationTable, noise_figure_db: float, tolerance_db: float) -> DriftCheck:
    """Is the floor where the stored gain offset and the noise figure put it?"""
    cal = calibration.get(sensor_id)
    expected = expected_noise_floor_dbfs(gain_db, sample_rate_hz, noise_figure_db, cal.gain_offset_db,
                                         dbfs_at_0db_gain_dbm=cal.dbfs_at_0db_gain_dbm)
    return DriftCheck(sensor_id, "noise floor", floor_dbfs, expected, tolerance_db, "dBFS")


def check_level(sensor_id: str, reference: ReferenceTransmitter, level_dbfs: float, gain_db: float,
                calibration: CalibrationTable, site: Site | None, model: PropagationModel | None,
                tolerance_db: float) -> DriftCheck:
    """Does the reference read, through the stored calibration, the power expected at the antenna?"""
    cal = calibration.get(sensor_id)
    measured_dbm = cal.rssi_dbm(level_dbfs, gain_db)
    expected_dbm = reference.expected_rx_dbm(site, model, sensor_id)
    return DriftCheck(sensor_id, f"reference {reference.id}", measured_dbm, expected_dbm, tolerance_db, "dBm")


# ============================================================== the calibration file
_SECTION_RE = re.compile(r'^\s*\[\s*sensors\s*\.\s*(?:"(?P<quoted>[^"]+)"|(?P<bare>[A-Za-z0-9_-]+))\s*\]\s*(#.*)?$')
_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_KEY_ORDER = ("gain_offset_db", "dbfs_at_0db_gain_dbm", "ppm_error", "clock_offset_s")
MAX_HISTORY_LINES = 24

CALIBRATION_HEADER = """\
# cellwatch sensor calibration, written by `cellwatch calibrate` (read by `cellwatch locate
# --calibration` and by the service). Reference plane: dBm at each sensor's antenna connector:
#     power_dbm = power_dbfs - gain_db - gain_offset_db + dbfs_at_0db_gain_dbm
# gain_offset_db: the unit's gain minus the nominal R820T step (dB); dbfs_at_0db_gain_dbm: the
# antenna power reaching 0 dBFS at 0 dB of gain; ppm_error: crystal error (ppm, positive: runs
# fast; what rtl_sdr -p corrects); clock_offset_s: sensor clock minus UTC. Comment lines under a
# sensor are its measurement history, newest last. Sensors not listed get the defaults.
"""


def _toml_key(sensor_id: str) -> str:
    return sensor_id if _BARE_KEY_RE.match(sensor_id) else '"' + sensor_id.replace('"', '\\"') + '"'


def _history(path: Path) -> dict[str, list[str]]:
    """Comment lines under each ``[sensors.<id>]`` of an existing file (its history)."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _SECTION_RE.match(line)
        if match:
            current = match.group("quoted") or match.group("bare")
            out.setdefault(current, [])
        elif current is not None and line.strip().startswith("#"):
            out[current].append(line.strip())
    return out


def update_calibration_file(path: str | Path, updates: Mapping[str, Mapping[str, Any]],
                            notes: Mapping[str, Sequence[str]] | None = None) -> CalibrationTable:
    """Write ``path`` with ``updates`` merged over what it already holds; returns the new table.

    ``updates``: ``{sensor_id: {key: value}}`` with keys of :class:`calibration.gain.SensorCalibration`;
    ``"offsets"`` is a list of ``{freq_min_hz, freq_max_hz, gain_db, gain_offset_db}`` tables that
    replace the stored entries of the same band and gain step and keep the others.
    ``notes``: comment lines to append under each sensor (its measurement history; the last
    :data:`MAX_HISTORY_LINES` are kept). Values and history of other sensors are kept. The
    result is validated by :class:`CalibrationTable` before the file is replaced.
    """
    path = Path(path)
    existing: dict[str, dict[str, float]] = {}
    offsets: dict[str, dict[tuple[float, float, float | None], dict[str, float]]] = {}
    history: dict[str, list[str]] = {}

    def merge_offsets(sensor_id: str, entries: Sequence[Mapping[str, Any]]) -> None:
        table = offsets.setdefault(sensor_id, {})
        for entry in entries:
            gain = entry.get("gain_db")
            key = (float(entry["freq_min_hz"]), float(entry["freq_max_hz"]), None if gain is None else float(gain))
            table[key] = {k: float(v) for k, v in entry.items() if v is not None}

    if path.exists():
        CalibrationTable.from_file(path)  # a broken file is reported, not overwritten
        doc = read_toml(path).get("sensors", {})
        for sid, entry in doc.items():
            existing[sid] = {k: float(v) for k, v in entry.items() if k != "offsets"}
            merge_offsets(sid, entry.get("offsets", []))
        history = _history(path)
    for sensor_id, values in updates.items():
        existing.setdefault(sensor_id, {}).update({k: float(v) for k, v in values.items() if k != "offsets"})
        merge_offsets(sensor_id, values.get("offsets", []))
    for sensor_id, lines in (notes or {}).items():
        existing.setdefault(sensor_id, {})
        history.setdefault(sensor_id, []).extend("# " + line.lstrip("# ") for line in lines)
    parts = [CALIBRATION_HEADER]
    for sensor_id in sorted(set(existing) | set(offsets)):
        parts.append(f"\n[sensors.{_toml_key(sensor_id)}]\n")
        for line in history.get(sensor_id, [])[-MAX_HISTORY_LINES:]:
            parts.append(line + "\n")
        values = existing.get(sensor_id, {})
        for key in sorted(values, key=lambda k: _KEY_ORDER.index(k) if k in _KEY_ORDER else len(_KEY_ORDER)):
            parts.append(f"{key} = {_format_number(values[key])}\n")
        for (low, high, gain), entry in sorted(offsets.get(sensor_id, {}).items(),
                                               key=lambda item: (item[0][0], item[0][2] or -1.0)):
            band = band_of((low + high) / 2.0)[0]
            step = "any gain step" if gain is None else f"gain {gain:g} dB"
            parts.append(f"[[sensors.{_toml_key(sensor_id)}.offsets]]   # {band}, {step}\n")
            for key in ("freq_min_hz", "freq_max_hz", "gain_db", "gain_offset_db"):
                if key in entry:
                    value = entry[key]
                    text = f"{value:.6g}" if key.startswith("freq") else _format_number(value)
                    parts.append(f"{key} = {text}\n")
    text = "".join(parts)
    import tomllib

    validated = CalibrationTable.from_dict(tomllib.loads(text), source=str(path))
    tmp = path.with_name(path.name + ".part")
    try:
        if path.exists() and not path.is_file():  # /dev/null, a pipe: a rename would replace the device
            path.write_text(text, encoding="utf-8")
        else:
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
    except OSError as exc:
        raise InputError(str(path), None, f"cannot write: {exc.strerror}") from None
    return validated


def _format_number(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.1f}"


@dataclass
class SensorReport:
    """What ``cellwatch calibrate gain`` found for one sensor."""

    sensor_id: str
    measurements: list[GainMeasurement] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def offset_db(self) -> float | None:
        return combine(self.measurements)[0] if self.measurements else None

    @property
    def uncertainty_db(self) -> float | None:
        return combine(self.measurements)[1] if self.measurements else None

    @property
    def spread_over_gain_steps_db(self) -> float:
        """How much the offsets measured at different gain steps disagree (0 for one step)."""
        by_gain: dict[float, list[float]] = {}
        for m in self.measurements:
            by_gain.setdefault(m.gain_db, []).append(m.gain_offset_db)
        means = [float(np.mean(v)) for v in by_gain.values()]
        return max(means) - min(means) if len(means) > 1 else 0.0
