"""Site survey: a walk with a reference transmitter turned into fingerprints and model observations.

A survey is the best calibration a site can get: static shadowing (4-8 dB indoors) is what
limits a locator that knows only the plan, and only a measurement in each place removes it.
The installer carries a transmitter of known power (a test phone locked to one channel and
its maximum power, or a signal generator keyed like a phone) through the cells, staying a
while in each and moving around inside it, while the sensors run as usual. A **survey
plan** says where the transmitter was when; the sensors' detections say what each heard.

**Plan file** (TOML; commented example in ``docs/installing.md``)::

    start_utc = "2026-01-05T21:30:00Z"   # optional: stop times are then seconds after it
    tx_power_dbm = 30.0                  # the transmitter (EIRP), default for every stop
    freq_hz = 902.4e6                    # optional: only detections within freq_tolerance_hz
    freq_tolerance_hz = 150e3
    height_m = 1.2                       # transmitter height above its floor

    [[stops]]
    place = "A-1-03"                     # a cell or zone id (or position = [x, y] with floor)
    start = 0.0                          # seconds after start_utc, or an ISO 8601 UTC time
    end = 20.0
    # tx_power_dbm, height_m, note: per stop

or **CSV** (operator notes; ``#`` starts a comment; times ISO 8601 or epoch seconds, or
seconds after ``--start-utc``)::

    place,start,end,tx_power_dbm,note
    A-1-03,2026-01-05T21:30:00Z,2026-01-05T21:30:20Z,30,by the window

**Per stop and sensor** the detections inside the stop's window (and band) give the number
of bursts heard and their power-averaged level (dBm, through the calibration given). A
stop's burst count is that of the sensor that heard most; a sensor that heard less than
``min_heard_fraction`` of them heard only the fades up (the rest fell under its threshold),
so its mean is biased high and the pair is left out.

**Fingerprints** (:func:`fingerprints`, the :mod:`service.locate` survey format) per place
and sensor: the mean in dB over the place's stops of the loss ``tx - level``, and its
spread over them (each stop is another position in the place), shrunk toward the survey's
median spread when a place has few stops, never below ``min_spread_db``. Bursts are
power-averaged within a stop (fast fading has unit mean power) and stops averaged in dB
(shadowing is Gaussian in dB; a power average over a few positions is biased).

**Model observations** (:func:`fit_observations`) for :mod:`calibration.fit`: one per place
(or point stop) and sensor, averaged over the place's sample points.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from calibration.config import read_toml
from calibration.fit import FitObservation
from calibration.gain import CalibrationTable
from calibration.gaincal import parse_utc_value
from calibration.site import Site
from dsp.errors import InputError
from dsp.records import Detection

FloatArray = npt.NDArray[np.float64]

DEFAULT_TX_POWER_DBM = 30.0
DEFAULT_HEIGHT_M = 1.2
DEFAULT_FREQ_TOLERANCE_HZ = 150e3
MIN_HEARD_FRACTION = 0.7
MIN_SPREAD_DB = 1.5
DEFAULT_SPREAD_DB = 3.0  # a place's spread when no place has two stops
SPREAD_PRIOR_STOPS = 3.0  # shrinkage weight of the survey's median spread, in stops
_PLAN_KEYS = {"start_utc", "tx_power_dbm", "freq_hz", "freq_tolerance_hz", "height_m", "site", "stops"}
_STOP_KEYS = {"place", "position", "floor", "start", "end", "tx_power_dbm", "height_m", "note"}


# ============================================================== the plan
@dataclass(frozen=True)
class SurveyStop:
    """Where the reference transmitter was from ``t_start_s`` to ``t_end_s`` (UTC)."""

    place_index: int  # the place it was in (from the position when one is given)
    position: tuple[float, float] | None  # a known point, or None: somewhere in the place
    floor: int
    height_m: float
    t_start_s: float
    t_end_s: float
    tx_power_dbm: float
    note: str = ""


@dataclass(frozen=True)
class SurveyPlan:
    stops: tuple[SurveyStop, ...]
    freq_hz: float | None
    freq_tolerance_hz: float
    source: str


def _number(value: Any, source: str, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(source, field_name, f"expected a number, got {value!r}")
    return float(value)


def _time(value: Any, start_utc: float | None, source: str, field_name: str) -> float:
    """Seconds after ``start_utc`` (a number, when a start is set) or an absolute UTC time."""
    if isinstance(value, int | float) and not isinstance(value, bool) and start_utc is not None:
        return start_utc + _number(value, source, field_name)
    if isinstance(value, str) and start_utc is not None:
        try:
            return start_utc + float(value)
        except ValueError:
            pass
    return parse_utc_value(value, source, field_name)


def _stop(site: Site, item: Mapping[str, Any], path: str, source: str, start_utc: float | None,
          defaults: Mapping[str, float]) -> SurveyStop:
    for key in item:
        if key not in _STOP_KEYS:
            raise InputError(source, f"{path}.{key}", f"unknown key (expected one of: {', '.join(sorted(_STOP_KEYS))})")
    place_id = item.get("place")
    position = item.get("position")
    if place_id in ("", None) and position is None:
        raise InputError(source, f"{path}.place", "missing (give a cell or zone id, or position and floor)")
    index = -1
    pos: tuple[float, float] | None = None
    floor: int | None = None
    if place_id not in ("", None):
        if not isinstance(place_id, str):
            raise InputError(source, f"{path}.place", "expected a cell or zone id")
        try:
            index = site.place_index(place_id)
        except KeyError:
            raise InputError(source, f"{path}.place", f"no cell or zone {place_id!r} in site {site.name!r}") from None
        floor = site.places[index].floor
    if position is not None:
        if not isinstance(position, list | tuple) or len(position) != 2:
            raise InputError(source, f"{path}.position", "expected [x, y] in metres")
        pos = (_number(position[0], source, f"{path}.position"), _number(position[1], source, f"{path}.position"))
        raw_floor = item.get("floor", floor)
        if isinstance(raw_floor, bool) or not isinstance(raw_floor, int):
            raise InputError(source, f"{path}.floor", "a position needs an integer floor")
        where = int(site.locate(np.asarray([pos]), raw_floor)[0])
        if where < 0:
            raise InputError(source, f"{path}.position", f"({pos[0]:g}, {pos[1]:g}) on floor {raw_floor} is in no cell or zone")
        if index >= 0 and where != index:
            raise InputError(source, f"{path}.position", f"lies in {site.places[where].id!r}, not in {place_id!r}")
        index, floor = where, raw_floor
    assert floor is not None
    for key in ("start", "end"):
        if key not in item:
            raise InputError(source, f"{path}.{key}", "missing")
    t0 = _time(item["start"], start_utc, source, f"{path}.start")
    t1 = _time(item["end"], start_utc, source, f"{path}.end")
    if t1 <= t0:
        raise InputError(source, f"{path}.end", "must be after start")
    tx = _number(item.get("tx_power_dbm", defaults["tx_power_dbm"]), source, f"{path}.tx_power_dbm")
    if not -30.0 <= tx <= 50.0:
        raise InputError(source, f"{path}.tx_power_dbm", f"must lie in [-30, 50] dBm, got {tx:g}")
    height = _number(item.get("height_m", defaults["height_m"]), source, f"{path}.height_m")
    if not 0.0 <= height < site.floor_height_m:
        raise InputError(source, f"{path}.height_m", f"must lie in [0, {site.floor_height_m:g}) m, got {height:g}")
    note = item.get("note", "")
    if not isinstance(note, str):
        raise InputError(source, f"{path}.note", "expected a string")
    return SurveyStop(index, pos, int(floor), height, t0, t1, tx, note)


def parse_plan(doc: Mapping[str, Any], site: Site, source: str = "plan") -> SurveyPlan:
    """Validate a parsed TOML plan against ``site`` (see the module notes)."""
    if not isinstance(doc, Mapping):
        raise InputError(source, None, "expected a table at the top level")
    for key in doc:
        if key not in _PLAN_KEYS:
            raise InputError(source, key, f"unknown key (expected one of: {', '.join(sorted(_PLAN_KEYS))})")
    start = None if doc.get("start_utc") is None else parse_utc_value(doc["start_utc"], source, "start_utc")
    defaults = {
        "tx_power_dbm": _number(doc.get("tx_power_dbm", DEFAULT_TX_POWER_DBM), source, "tx_power_dbm"),
        "height_m": _number(doc.get("height_m", DEFAULT_HEIGHT_M), source, "height_m"),
    }
    freq = None if doc.get("freq_hz") is None else _number(doc["freq_hz"], source, "freq_hz")
    if freq is not None and freq <= 0:
        raise InputError(source, "freq_hz", "must be positive")
    tolerance = _number(doc.get("freq_tolerance_hz", DEFAULT_FREQ_TOLERANCE_HZ), source, "freq_tolerance_hz")
    if tolerance <= 0:
        raise InputError(source, "freq_tolerance_hz", "must be positive")
    items = doc.get("stops")
    if not isinstance(items, list) or not items:
        raise InputError(source, "stops", "expected at least one [[stops]] table")
    stops = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InputError(source, f"stops[{i}]", "expected a table")
        stops.append(_stop(site, item, f"stops[{i}]", source, start, defaults))
    return SurveyPlan(tuple(stops), freq, tolerance, source)


def parse_plan_csv(text: str, site: Site, source: str = "plan.csv", *, start_utc: float | None = None,
                   tx_power_dbm: float = DEFAULT_TX_POWER_DBM, freq_hz: float | None = None,
                   freq_tolerance_hz: float = DEFAULT_FREQ_TOLERANCE_HZ) -> SurveyPlan:
    """A CSV plan: columns ``place,start,end`` and optionally ``tx_power_dbm,x,y,floor,height_m,note``."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise InputError(source, None, "no header line (expected place,start,end,...)")
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    allowed = {"place", "start", "end", "tx_power_dbm", "x", "y", "floor", "height_m", "note"}
    for column in columns:
        if column not in allowed:
            raise InputError(source, f"column {column!r}", f"unknown (expected some of: {', '.join(sorted(allowed))})")
    for column in ("start", "end"):
        if column not in columns:
            raise InputError(source, f"column {column!r}", "missing from the header")
    if "place" not in columns and not {"x", "y", "floor"} <= set(columns):
        raise InputError(source, "column 'place'", "missing from the header (or give x, y and floor)")
    stops = []
    defaults = {"tx_power_dbm": tx_power_dbm, "height_m": DEFAULT_HEIGHT_M}
    for number, row in enumerate(reader, start=1):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        path = f"row {number}"
        item: dict[str, Any] = {"start": _csv_time(row["start"]), "end": _csv_time(row["end"])}
        if row.get("place"):
            item["place"] = row["place"]
        for key in ("tx_power_dbm", "height_m"):
            if row.get(key):
                item[key] = _csv_number(row[key], source, f"{path}.{key}")
        if row.get("x") or row.get("y"):
            item["position"] = [_csv_number(row.get("x", ""), source, f"{path}.x"),
                                _csv_number(row.get("y", ""), source, f"{path}.y")]
            item["floor"] = int(_csv_number(row.get("floor", ""), source, f"{path}.floor"))
        if row.get("note"):
            item["note"] = row["note"]
        stops.append(_stop(site, item, path, source, start_utc, defaults))
    if not stops:
        raise InputError(source, None, "no stops after the header")
    return SurveyPlan(tuple(stops), freq_hz, freq_tolerance_hz, source)


def _csv_number(text: str, source: str, field_name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(source, field_name, f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise InputError(source, field_name, "must be finite")
    return value


def _csv_time(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def load_plan(path: str | Path, site: Site, **csv_options: Any) -> SurveyPlan:
    """Read a plan: ``.csv`` as operator notes, anything else as TOML."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(str(path), None, "no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(str(path), None, f"cannot read: {exc}") from None
        return parse_plan_csv(text, site, str(path), **csv_options)
    return parse_plan(read_toml(path), site, str(path))


# ============================================================== measurements
@dataclass
class SurveyData:
    """What each sensor heard at each stop: burst counts and power-averaged levels."""

    plan: SurveyPlan
    sensor_ids: tuple[str, ...]
    n_heard: npt.NDArray[np.int64]  # (n_stops, n_sensors)
    mean_linear_mw: FloatArray  # (n_stops, n_sensors) power average of the levels, mW (0 where unheard)
    freq_hz: FloatArray  # (n_stops,) median frequency of the stop's detections (NaN: nothing heard)
    n_unmatched: int = 0  # detections outside every stop
    n_uncalibrated: int = 0  # detections with no rssi_dbm and no gain_db
    warnings: list[str] = field(default_factory=list)

    @property
    def n_bursts(self) -> npt.NDArray[np.int64]:
        """Bursts sent at each stop: as many as its best-hearing sensor heard."""
        return self.n_heard.max(axis=1) if self.n_heard.size else np.zeros(0, dtype=np.int64)

    def level_dbm(self) -> FloatArray:
        with np.errstate(divide="ignore"):
            return np.where(self.n_heard > 0, 10.0 * np.log10(np.maximum(self.mean_linear_mw, 1e-300)), np.nan)

    def usable(self, min_heard_fraction: float = MIN_HEARD_FRACTION) -> npt.NDArray[np.bool_]:
        """(stop, sensor) pairs heard often enough that their mean is not just the fades up."""
        bursts = self.n_bursts[:, None]
        return (self.n_heard > 0) & (self.n_heard >= min_heard_fraction * np.maximum(bursts, 1))


def collect(plan: SurveyPlan, detections: Iterable[Detection], site: Site,
            calibration: CalibrationTable | None = None) -> SurveyData:
    """Sort ``detections`` into the plan's stops and average their levels per stop and sensor."""
    calibration = calibration or CalibrationTable()
    n_stops, n_sensors = len(plan.stops), len(site.sensors)
    starts = np.array([s.t_start_s for s in plan.stops])
    ends = np.array([s.t_end_s for s in plan.stops])
    order = np.argsort(starts)
    n_heard = np.zeros((n_stops, n_sensors), dtype=np.int64)
    sums = np.zeros((n_stops, n_sensors))
    freqs: list[list[float]] = [[] for _ in range(n_stops)]
    unmatched = uncalibrated = unknown_sensor = 0
    for det in detections:  # one pass over the detections; stops found by bisection
        if plan.freq_hz is not None and abs(det.freq_hz - plan.freq_hz) > plan.freq_tolerance_hz:
            unmatched += 1
            continue
        pos = int(np.searchsorted(starts[order], det.t_start_s, side="right")) - 1
        stop = int(order[pos]) if pos >= 0 else -1
        if stop < 0 or det.t_start_s >= ends[stop]:
            unmatched += 1
            continue
        try:
            sensor = site.sensor_index(det.sensor_id)
        except KeyError:
            unknown_sensor += 1
            continue
        level = calibration.rssi_dbm(det)
        if level is None:
            uncalibrated += 1
            continue
        n_heard[stop, sensor] += 1
        sums[stop, sensor] += 10.0 ** (level / 10.0)
        freqs[stop].append(det.freq_hz)
    warnings = []
    if unknown_sensor:
        warnings.append(f"{unknown_sensor} detections from sensors not in site {site.name!r} were ignored")
    if uncalibrated:
        warnings.append(f"{uncalibrated} detections had neither rssi_dbm nor gain_db and were ignored")
    silent = [plan.stops[i] for i in np.flatnonzero(n_heard.sum(axis=1) == 0)]
    if silent:
        names = ", ".join(sorted({site.places[s.place_index].id for s in silent})[:8])
        warnings.append(f"{len(silent)} stops heard by no sensor (wrong times or band?): {names}")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_heard > 0, sums / np.maximum(n_heard, 1), 0.0)
    freq = np.array([float(np.median(f)) if f else np.nan for f in freqs])
    return SurveyData(plan, tuple(s.id for s in site.sensors), n_heard, mean, freq, unmatched, uncalibrated, warnings)


def stop_losses_db(data: SurveyData, min_heard_fraction: float = MIN_HEARD_FRACTION) -> FloatArray:
    """Measured loss ``(n_stops, n_sensors)`` per stop and sensor (transmit minus level), NaN where unusable."""
    tx = np.array([s.tx_power_dbm for s in data.plan.stops])[:, None]
    loss = tx - data.level_dbm()
    return np.where(data.usable(min_heard_fraction), loss, np.nan)


# ============================================================== fingerprints
@dataclass(frozen=True)
class Fingerprints:
    """Per place and sensor: mean loss, its spread and the stops behind it (NaN: not surveyed)."""

    loss_db: FloatArray  # (n_places, n_sensors)
    spread_db: FloatArray
    n_stops: npt.NDArray[np.int64]
    freq_hz: float | None
    site_name: str

    @property
    def n_surveyed(self) -> int:
        return int(np.count_nonzero(np.isfinite(self.loss_db)))

    def document(self, site: Site) -> dict[str, Any]:
        """The survey document :func:`service.locate.parse_survey` reads."""
        places: dict[str, Any] = {}
        for p, place in enumerate(site.places):
            sensors = {}
            for s, sensor in enumerate(site.sensors):
                if np.isfinite(self.loss_db[p, s]):
                    sensors[sensor.id] = {"loss_db": round(float(self.loss_db[p, s]), 2),
                                          "spread_db": round(float(self.spread_db[p, s]), 2),
                                          "n": int(self.n_stops[p, s])}
            if sensors:
                places[place.id] = {"sensors": sensors}
        doc: dict[str, Any] = {"version": 1, "site": site.name}
        if self.freq_hz is not None:
            doc["freq_hz"] = float(self.freq_hz)
        doc["places"] = places
        return doc


def fingerprints(data: SurveyData, site: Site, *, min_heard_fraction: float = MIN_HEARD_FRACTION,
                 min_spread_db: float = MIN_SPREAD_DB, level_offsets_db: Mapping[str, float] | None = None) -> Fingerprints:
    """Fingerprints from the stops (see the module notes).

    ``level_offsets_db``: per sensor, dB to *add* to its levels first (the fitted offsets a
    new gain calibration removes), so the fingerprints match the calibration in force.
    """
    loss = stop_losses_db(data, min_heard_fraction)
    if level_offsets_db:
        for s, sensor in enumerate(site.sensors):
            loss[:, s] -= float(level_offsets_db.get(sensor.id, 0.0))
    place_of_stop = np.array([s.place_index for s in data.plan.stops])
    n_places, n_sensors = len(site.places), len(site.sensors)
    out_loss = np.full((n_places, n_sensors), np.nan)
    raw_spread = np.full((n_places, n_sensors), np.nan)
    n_stops = np.zeros((n_places, n_sensors), dtype=np.int64)
    for p in np.unique(place_of_stop):  # a loop over surveyed places
        rows = loss[place_of_stop == p]  # (k, S)
        have = np.isfinite(rows)
        n = have.sum(axis=0)
        n_stops[p] = n
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(have, rows, 0.0).sum(axis=0) / np.maximum(n, 1)
            out_loss[p] = np.where(n > 0, mean, np.nan)
            if rows.shape[0] >= 2:
                centred = np.where(have, rows - mean, 0.0)
                variance = (centred**2).sum(axis=0) / np.maximum(n - 1, 1)
                raw_spread[p] = np.where(n >= 2, np.sqrt(variance), np.nan)
    finite = raw_spread[np.isfinite(raw_spread)]
    typical = float(np.median(finite)) if finite.size else DEFAULT_SPREAD_DB
    k0 = SPREAD_PRIOR_STOPS
    with np.errstate(invalid="ignore"):
        shrunk = np.sqrt(((n_stops - 1) * np.nan_to_num(raw_spread) ** 2 + k0 * typical**2) / np.maximum(n_stops - 1 + k0, 1e-9))
    spread = np.where(np.isfinite(out_loss), np.maximum(shrunk, min_spread_db), np.nan)
    freqs = data.freq_hz[np.isfinite(data.freq_hz)]
    freq = float(np.median(freqs)) if freqs.size else data.plan.freq_hz
    return Fingerprints(out_loss, spread, n_stops, freq, site.name)


def fit_observations(data: SurveyData, site: Site, *, min_heard_fraction: float = MIN_HEARD_FRACTION,
                     spacing_m: float = 1.0, max_points: int = 16) -> list[FitObservation]:
    """One :class:`FitObservation` per (place, sensor), or per (point stop, sensor)."""
    loss = stop_losses_db(data, min_heard_fraction)
    stops = data.plan.stops
    observations: list[FitObservation] = []
    point_cache: dict[tuple[int, float], FloatArray] = {}

    def place_points(index: int, height_m: float) -> FloatArray:
        key = (index, height_m)
        if key not in point_cache:
            xy = site.sample_points(index, spacing_m=spacing_m)
            if xy.shape[0] > max_points:  # an even subset of a big zone's grid
                xy = xy[np.linspace(0, xy.shape[0] - 1, max_points).round().astype(int)]
            z = float(site.z_m(site.places[index].floor, height_m))
            point_cache[key] = np.column_stack([xy, np.full(xy.shape[0], z)])
        return point_cache[key]

    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, stop in enumerate(stops):
        key = ("point", i) if stop.position is not None else ("place", stop.place_index, stop.height_m)
        groups.setdefault(key, []).append(i)
    for key, members in groups.items():  # a loop over places and point stops
        rows = loss[members]
        freq = data.freq_hz[members]
        freq_hz = float(np.nanmedian(freq)) if np.any(np.isfinite(freq)) else float(data.plan.freq_hz or 900e6)
        first = stops[members[0]]
        if key[0] == "point":
            assert first.position is not None
            points = np.array([[first.position[0], first.position[1], float(site.z_m(first.floor, first.height_m))]])
            label = f"stop at ({first.position[0]:g}, {first.position[1]:g}) floor {first.floor}"
        else:
            points = place_points(first.place_index, first.height_m)
            label = site.places[first.place_index].id
        for s in range(len(site.sensors)):
            values = rows[:, s]
            values = values[np.isfinite(values)]
            if values.size == 0:
                continue
            observations.append(FitObservation(points, s, freq_hz, float(np.mean(values)), label))
    return observations


# ============================================================== files
def format_survey_toml(fps: Fingerprints, site: Site, header: str = "") -> str:
    """The fingerprints as a commented TOML survey file (what ``cellwatch locate --survey`` reads)."""
    doc = fps.document(site)
    out: list[str] = []
    if header:
        out.extend("# " + line if line else "#" for line in header.splitlines())
    out.append("# Per place and sensor: loss_db = mean path loss (transmit dBm minus received dBm, mean in dB over")
    out.append("# the stops in the place), spread_db = its standard deviation over them (shrunk toward the")
    out.append("# survey's median for places with few stops), n = stops behind it. Pairs not listed keep the model.")
    out.append("version = 1")
    out.append(f"site = {json.dumps(site.name, ensure_ascii=False)}")
    if "freq_hz" in doc:
        out.append(f"freq_hz = {doc['freq_hz']!r}")
    for place_id, entry in doc["places"].items():
        for sensor_id, fp in entry["sensors"].items():
            out.append("")
            out.append(f"[places.{json.dumps(place_id, ensure_ascii=False)}.sensors.{json.dumps(sensor_id, ensure_ascii=False)}]")
            out.append(f"loss_db = {fp['loss_db']!r}")
            out.append(f"spread_db = {fp['spread_db']!r}")
            out.append(f"n = {fp['n']}")
    return "\n".join(out) + "\n"


def format_survey_json(fps: Fingerprints, site: Site) -> str:
    return json.dumps(fps.document(site), indent=1) + "\n"


# ============================================================== rehearsal on the simulator
def walk(site: Site, *, places: Sequence[str] | None = None, points_per_place: int = 3, dwell_s: float = 0.25,
         gap_s: float = 0.05, tx_power_dbm: float = DEFAULT_TX_POWER_DBM, arfcn: int = 62, timeslot: int = 2,
         start_utc: str = "2026-01-05T08:00:00Z") -> tuple[dict[str, Any], dict[str, Any]]:
    """A survey walk to rehearse on the simulator: ``(plan document, scenario document)``.

    The reference is a GSM phone in a call on ``arfcn``/``timeslot`` at a fixed
    ``tx_power_dbm``, visiting ``points_per_place`` random points of each place (each point a
    scenario phone the simulator places at random inside the place, as a walker would
    stand anywhere in it), ``dwell_s`` at each, ``gap_s`` between. The plan gives only the
    place and the times, as an installer's notes would.
    """
    from dsp.gsm import uplink_freq_hz

    chosen = list(places) if places is not None else [p.id for p in site.places]
    freq = float(uplink_freq_hz(arfcn))
    phones, stops = [], []
    t = 0.0
    for place_id in chosen:
        index = site.place_index(place_id)
        key = "cell" if site.places[index].is_cell else "zone"
        for k in range(points_per_place):
            phones.append({"id": f"survey-{place_id}-{k}", key: place_id, "tech": "gsm", "activity": "call",
                           "established": True, "arfcn": arfcn, "timeslot": timeslot,
                           "tx_power_dbm": tx_power_dbm, "start_s": round(t, 6), "duration_s": dwell_s})
            stops.append({"place": place_id, "start": round(t, 6), "end": round(t + dwell_s, 6)})
            t += dwell_s + gap_s
    plan = {"start_utc": start_utc, "tx_power_dbm": tx_power_dbm, "freq_hz": freq, "freq_tolerance_hz": 100e3,
            "height_m": DEFAULT_HEIGHT_M, "stops": stops}
    scenario = {"name": "survey-walk", "description": f"a survey walk through {len(chosen)} places of {site.name}",
                "start_utc": start_utc, "duration_s": round(t + 0.1, 6), "receiver": {"center_freq_hz": freq},
                "phones": phones}
    return plan, scenario


def format_plan_toml(plan: Mapping[str, Any], header: str = "") -> str:
    """A plan document (as :func:`walk` makes) as a commented TOML file."""
    out: list[str] = []
    if header:
        out.extend("# " + line if line else "#" for line in header.splitlines())
    out.append("# Survey plan: where the reference transmitter was, when (cellwatch calibrate survey --plan).")
    for key, comment in (("start_utc", "stop times below are seconds after this"),
                         ("tx_power_dbm", "the reference transmitter's power (EIRP)"),
                         ("freq_hz", "its channel: only detections within freq_tolerance_hz count"),
                         ("freq_tolerance_hz", ""), ("height_m", "transmitter height above its floor")):
        if key in plan:
            value = plan[key]
            text = json.dumps(value) if isinstance(value, str) else repr(float(value))
            out.append(f"{key} = {text}" + (f"   # {comment}" if comment else ""))
    for stop in plan["stops"]:
        out.append("")
        out.append("[[stops]]")
        for key, value in stop.items():
            out.append(f"{key} = {json.dumps(value) if isinstance(value, str) else repr(value)}")
    return "\n".join(out) + "\n"
