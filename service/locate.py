"""Where is the phone: a posterior over every cell and zone of a site from the RSSI at all sensors.

One transmission (bursts of one phone, grouped by :mod:`service.correlate`) gives,
per sensor, either a mean received level (it heard some bursts) or an upper bound
(it listened and heard none). :class:`Locator` turns that into a probability for
every place of the site (``site.places``: cells, then zones), shared by
``cellwatch locate`` and the service.

**Model.** For a phone at point ``x`` transmitting ``P`` dBm, the mean level at
sensor ``s`` (averaged in dB over the bursts, so fast fading averages out) is::

    r_s = P - L_s(x) + e_s,   e_s ~ N(0, V_s(x) + v_s)

* ``L_s(x)``: the deterministic path loss of
  :meth:`calibration.propagation.PropagationModel.mean_path_loss_db` (multi-wall,
  slabs, the dominant path along corridors), or a survey fingerprint's mean loss
  where the site was surveyed.
* ``V_s``: the static error, the same on every burst: log-normal shadowing plus the
  plan's own error (walls a few dB off). ``sigma_static_db`` (6 dB) covers 4-5 dB
  of shadowing and ~4 dB of model error; a fingerprint's spread replaces it.
* ``v_s = sigma_fading_db**2 / n_s``: what is left of fast fading after averaging
  ``n_s`` bursts (:meth:`Observation.from_sums`).

**Unknown transmit power** (power control: GSM 0-33 dBm, LTE -40-23 dBm) is
marginalized, not assumed. With Gaussian errors in dB and a flat prior on the range of
the transmission's technology (``[P_min, P_max]``, :meth:`LocatorConfig.tx_power_range`),
the integral over ``P`` is analytic: with
``d_s = r_s + L_s(x)``, ``w_s = 1/(V_s + v_s)``, ``W = Σ w_s``, ``P̂ = Σ w_s d_s / W``::

    log p(r | x) = -½ Σ w_s (d_s - P̂)² - ½ Σ log(2π/w_s) + ½ log(2π/W)
                   + log(Φ((P_max - P̂)√W) - Φ((P_min - P̂)√W)) - log(P_max - P_min)

The last line is what makes a street phone (weak and even at every sensor, so
``P̂`` for any cell would be implausibly low) fall on the street zone.

**Sensors that heard nothing** are information: a censored (Tobit) term
``log Φ((u_s - (P̂ - L_s(x))) / σ)`` per listening sensor, with ``u_s`` the level a
burst needs to be detected there (noise floor in the burst's bandwidth plus the
detector's SNR; lowered when many bursts were all missed) and ``P̂`` clipped to the
prior's range (a profile over ``P`` rather than the full integral, which has no
closed form with censoring). A sensor whose bursts all clipped gives the mirror term,
``log Φ(((P̂ - L_s(x)) - f_s) / σ)`` for its clipped level ``f_s``. When no sensor measured a
level at all, the bound terms are averaged over a grid of powers instead.

**Sensors that heard a few bursts far above their threshold** while missing most of
them (``stray_margin_db``) are not fading but someone else's detections grouped in by
mistake; they are left out rather than trusted.

**Position inside a place** is unknown: each place is represented by ``K`` points
(:meth:`calibration.site.Site.sample_points`) and its likelihood is their mean
(log-sum-exp). The prior over places is uniform or proportional to area.

**Speed**: the loss table ``(points, sensors)`` is computed once per frequency band
(``band_step_hz`` wide, wall losses scale with frequency) and cached; a batch of
observations is one vectorized pass over ``(observations, points, sensors)``
(:meth:`Locator.locate_many`).

**Survey** (``--survey F``, JSON or TOML, from the calibration step): fingerprints per
place and sensor replace the model for the surveyed pairs::

    version = 1
    freq_hz = 902.4e6                   # optional: the band the survey was made in
    [places."A-1-03".sensors."A1-S1"]
    loss_db = 63.5                      # mean path loss, transmit dBm minus received dBm
    spread_db = 3.2                     # its standard deviation over the place (positions, bursts)
    n = 40                              # optional: measurements behind it

(JSON: the same nesting, ``{"version": 1, "places": {"A-1-03": {"sensors": {"A1-S1":
{"loss_db": 63.5, "spread_db": 3.2}}}}}``.) A fingerprint made at ``freq_hz`` is moved to
another band by the model's difference between the two bands. Pairs the survey does
not list keep the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special

from calibration.config import read_toml
from calibration.propagation import PropagationModel
from calibration.site import Site
from dsp.errors import InputError
from dsp.records import Detection

FloatArray = npt.NDArray[np.float64]

PRIORS = ("uniform", "area")
TX_POWER_DBM_BY_TECH: dict[str, tuple[float, float]] = {
    "gsm": (0.0, 33.0), "lte": (-40.0, 23.0), "nr": (-40.0, 23.0), "umts": (-50.0, 24.0)}
# log Φ(z) by table and linear interpolation: scipy's log_ndtr costs ~70 ns an element and the
# censored terms need (observations x points x sensors) of them. Error < 1e-5 on the table's
# range; below it the points are 400+ nats down, above it log Φ is 0 to 1e-15.
_LOG_NDTR_Z_MIN = -28.0
_LOG_NDTR_Z_MAX = 8.5
_LOG_NDTR_STEP = 1.0 / 256.0
_LOG_NDTR_TABLE = special.log_ndtr(np.arange(_LOG_NDTR_Z_MIN, _LOG_NDTR_Z_MAX + 2 * _LOG_NDTR_STEP, _LOG_NDTR_STEP))
_LOG_NDTR_SLOPE = np.append(np.diff(_LOG_NDTR_TABLE), 0.0)
_LOG_NDTR_TABLE32 = _LOG_NDTR_TABLE.astype(np.float32)
_LOG_NDTR_SLOPE32 = _LOG_NDTR_SLOPE.astype(np.float32)
_LOG_NDTR_BIG = 1e4  # a level that makes a bound term vanish (log Φ(+big) = 0)
_POWER_GRID = 16  # transmit powers tried when no sensor measured a level (only silences and clipping)
_LOG_2PI = math.log(2.0 * math.pi)
_CHUNK_ELEMENTS = 1 << 17  # observations x points x sensors per pass: keeps the float32 block in cache


# ============================================================== configuration
@dataclass(frozen=True)
class LocatorConfig:
    """Parameters of the localization model (see the module notes).

    None depends on a particular site: they describe radio physics (fading, transmit
    power range), the detector (``detect_snr_db``) and how much to trust the plan.
    """

    sigma_static_db: float = 6.0  # shadowing + plan error, per sensor, static over bursts
    sigma_fading_db: float = 5.0  # per-burst fast fading (Rician/Rayleigh, in dB)
    # SNR (in the detections' own snr_db scale) at which a burst is found about half of the
    # time; None: learned from the detections (the low edge of their snr_db distribution)
    detect_snr_db: float | None = None
    tx_power_min_dbm: float = -40.0  # any phone (technology unknown)
    tx_power_max_dbm: float = 33.0
    # (min, max) by technology: GSM 900/1800 MS power control 33..5 / 30..0 dBm (TS 45.005
    # §4.1.1), LTE and NR -40..23 dBm (TS 36.101 §6.2.2, §6.3.2; TS 38.101-1 §6.2.1, §6.3.1),
    # UMTS -50..24 dBm (TS 25.101 §6.2.1, §6.4.3)
    tx_power_dbm_by_tech: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(TX_POWER_DBM_BY_TECH))
    # prior weight of a place by its kind (default 1): e.g. outside = 4 where passers-by are common
    prior_weight_by_kind: Mapping[str, float] = field(default_factory=dict)
    phone_height_m: float = 1.2
    point_spacing_m: float = 1.0  # sample points inside each place
    point_margin_m: float = 0.3
    max_points_per_place: int = 48  # large zones get a coarser grid
    prior: str = "uniform"  # "uniform" over places, or "area"
    band_step_hz: float = 20e6  # loss tables are cached per band of this width
    n_candidates: int = 5
    full_fraction: float = 0.8  # a sensor that heard this share of bursts: plain mean, no truncation fix
    max_censor_shift_db: float = 6.0  # cap on how far n missed bursts lower the censoring level
    stray_margin_db: float = 20.0  # rarely heard yet this far above threshold: stray detections
    # at most this many bursts heard, and under rare_fraction of those listened for: the sensor
    # counts as having missed them all (a misgrouped burst, as likely as a fading peak)
    rare_max_bursts: int = 2
    rare_fraction: float = 0.02

    def __post_init__(self) -> None:
        positive = ("sigma_static_db", "sigma_fading_db", "point_spacing_m", "band_step_hz")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InputError(None, f"locator.{name}", f"must be a positive number, got {value!r}")
        for name in ("detect_snr_db", "tx_power_min_dbm", "tx_power_max_dbm", "phone_height_m",
                     "point_margin_m", "max_censor_shift_db", "stray_margin_db"):
            value = getattr(self, name)
            if value is None and name == "detect_snr_db":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InputError(None, f"locator.{name}", f"expected a number, got {value!r}")
        if self.tx_power_max_dbm <= self.tx_power_min_dbm:
            raise InputError(None, "locator.tx_power_max_dbm", "must exceed tx_power_min_dbm")
        ranges = {}
        for tech, bounds in dict(self.tx_power_dbm_by_tech).items():
            if (not isinstance(bounds, list | tuple) or len(bounds) != 2
                    or not all(isinstance(b, int | float) and math.isfinite(b) for b in bounds) or bounds[1] <= bounds[0]):
                raise InputError(None, f"locator.tx_power_dbm_by_tech.{tech}", "expected [min, max] in dBm, min < max")
            ranges[str(tech)] = (float(bounds[0]), float(bounds[1]))
        object.__setattr__(self, "tx_power_dbm_by_tech", ranges)
        for kind, weight in dict(self.prior_weight_by_kind).items():
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not (math.isfinite(weight) and weight > 0):
                raise InputError(None, f"locator.prior_weight_by_kind.{kind}", "expected a positive number")
        if self.prior not in PRIORS:
            raise InputError(None, "locator.prior", f"must be one of {', '.join(PRIORS)}, got {self.prior!r}")
        if not (isinstance(self.max_points_per_place, int) and self.max_points_per_place >= 1):
            raise InputError(None, "locator.max_points_per_place", "must be an integer >= 1")
        if not (isinstance(self.rare_max_bursts, int) and self.rare_max_bursts >= 0):
            raise InputError(None, "locator.rare_max_bursts", "must be an integer >= 0")
        if not 0.0 <= self.rare_fraction < 1.0:
            raise InputError(None, "locator.rare_fraction", "must lie in [0, 1)")
        if not (isinstance(self.n_candidates, int) and self.n_candidates >= 1):
            raise InputError(None, "locator.n_candidates", "must be an integer >= 1")
        if not 0.0 < self.full_fraction <= 1.0:
            raise InputError(None, "locator.full_fraction", "must lie in (0, 1]")
        if self.point_margin_m < 0 or self.max_censor_shift_db < 0:
            raise InputError(None, "locator.point_margin_m", "margins must not be negative")

    def tx_power_range(self, tech: str) -> tuple[float, float]:
        """The transmit powers (dBm) a phone of this technology may use; all of them if unknown."""
        return self.tx_power_dbm_by_tech.get(tech, (self.tx_power_min_dbm, self.tx_power_max_dbm))

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], source: str | None = None) -> LocatorConfig:
        """The config with ``table``'s entries (a ``[locator]`` table) over the defaults."""
        known = set(cls.__dataclass_fields__)
        for key in table:
            if key not in known:
                raise InputError(source, f"locator.{key}", "unknown key")
        try:
            return cls(**dict(table))
        except InputError as exc:
            raise exc.with_source(source) if source else exc from None
        except TypeError as exc:
            raise InputError(source, "locator", str(exc)) from None


# ============================================================== observations
@dataclass(frozen=True, eq=False)
class Observation:
    """What one transmission tells about where it came from, per sensor of the site.

    Levels are in dB relative to the transmission's reference power (the burst-to-burst
    power-control steps already removed by the correlator), so only differences between
    sensors and against the censoring levels matter.

    ``level_db (S,)``: mean received level of a sensor that heard the transmission, NaN
    otherwise. ``level_var_db2 (S,)``: the variance of that mean from fast fading.
    ``censor_db (S,)``: for a listening sensor that heard nothing, the level its mean
    lies below (half-probability point); NaN for sensors that heard it or were not
    listening (those carry no information).
    """

    freq_hz: float
    level_db: FloatArray
    level_var_db2: FloatArray
    censor_db: FloatArray

    lower_db: FloatArray | None = None  # (S,) level a sensor is at least at (its bursts clipped); NaN: none
    tx_power_range_dbm: tuple[float, float] | None = None  # the phone's possible powers (by technology)

    @classmethod
    def from_sums(
        cls,
        freq_hz: float,
        n_heard: npt.ArrayLike,
        sum_db: npt.ArrayLike,
        sum_sq_db2: npt.ArrayLike,
        n_missed: npt.ArrayLike,
        missed_threshold_sum_db: npt.ArrayLike,
        n_clipped: npt.ArrayLike,
        clipped_sum_db: npt.ArrayLike,
        config: LocatorConfig,
        tech: str = "unknown",
    ) -> Observation:
        """Per-sensor sufficient statistics of a transmission's bursts to an observation.

        Per sensor ``(S,)``: bursts heard, the sum and sum of squares of their levels,
        bursts missed while listening and the sum of their detection thresholds, bursts
        heard but clipped and the sum of their levels (all in the transmission's relative
        dB). A sensor that heard only a few of the bursts it listened for saw the fading
        peaks: its plain mean is biased up, so its level is the maximum of the
        truncated-Gaussian (Tobit) likelihood instead. A sensor that missed all ``n``
        bursts lies below its threshold by about the largest fade up among ``n`` draws,
        capped at ``max_censor_shift_db``. A sensor whose every level was clipped gives a
        lower bound. ``tech`` picks the range of transmit powers (:meth:`LocatorConfig.tx_power_range`).
        """
        k = np.asarray(n_heard, dtype=np.float64)
        s1 = np.asarray(sum_db, dtype=np.float64)
        s2 = np.asarray(sum_sq_db2, dtype=np.float64)
        missed = np.asarray(n_missed, dtype=np.float64)
        u_sum = np.asarray(missed_threshold_sum_db, dtype=np.float64)
        n_clip = np.asarray(n_clipped, dtype=np.float64)
        clip_sum = np.asarray(clipped_sum_db, dtype=np.float64)
        sigma = config.sigma_fading_db
        with np.errstate(invalid="ignore", divide="ignore"):
            u = np.where(missed > 0, u_sum / np.maximum(missed, 1.0), np.nan)
            heard = k > 0
            level = np.where(heard, s1 / np.maximum(k, 1.0), np.nan)
            partial = heard & (missed > 0) & (k < config.full_fraction * (k + missed))
            # a sensor that heard a few bursts far above its threshold but missed most of them
            # is not fading: those are someone else's detections mixed in (a misgrouped or
            # misclassified burst); it says nothing reliable about this transmission
            stray = partial & (k < 0.5 * (k + missed)) & (level - u > config.stray_margin_db)
            clip_level = np.where(n_clip > 0, clip_sum / np.maximum(n_clip, 1.0), np.nan)
            stray |= (~heard & (n_clip > 0) & (n_clip < 0.5 * (n_clip + missed))
                      & (clip_level - u > config.stray_margin_db))
            # a burst or two among hundreds missed: near the threshold, as likely another phone's
            # burst grouped in by the correlator as a fading peak of this one; only "missed" is sure
            # (measured against the transmission's length: the sensor that heard or listened for most)
            n_bursts = float(np.max(k + missed)) if k.size else 0.0
            rare = heard & (k <= config.rare_max_bursts) & (k < config.rare_fraction * n_bursts) & ~stray
            heard = heard & ~stray & ~rare
            level[stray | rare] = np.nan
            partial = partial & ~stray & ~rare
            # counted as missed, never as heard (no threshold known, u NaN: no information at all)
            missed = np.where(rare, missed + k, missed)
            if np.any(partial):
                level[partial] = _tobit_mean(k[partial], s1[partial], s2[partial], missed[partial], u[partial], sigma)
            var = np.where(heard, sigma**2 / np.maximum(k, 1.0), np.nan)
            censored = (~heard) & (n_clip == 0) & (missed > 0) & ~stray
            quantile = np.where(censored, 0.5 ** (1.0 / np.maximum(missed, 1.0)), 0.5)
            shift = np.minimum(sigma * special.ndtri(quantile), config.max_censor_shift_db)
            censor = np.where(censored, u - shift, np.nan)
            lower = np.where((~heard) & (n_clip > 0) & ~stray, clip_sum / np.maximum(n_clip, 1.0), np.nan)
        return cls(float(freq_hz), level, var, censor, lower, config.tx_power_range(tech))


def fast_log_ndtr(z: npt.ArrayLike) -> FloatArray:
    """``log Φ(z)`` (the standard normal's log CDF) by table lookup, for large arrays."""
    t = np.array(z, dtype=np.float32)
    return _log_ndtr_inplace(t).astype(np.float64)


def _log_ndtr_inplace(t: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``log Φ`` of a float32 array, overwriting it (no large temporaries: they cost page faults)."""
    np.clip(t, _LOG_NDTR_Z_MIN, _LOG_NDTR_Z_MAX, out=t)
    t -= np.float32(_LOG_NDTR_Z_MIN)
    t *= np.float32(1.0 / _LOG_NDTR_STEP)
    index = t.astype(np.int32)
    t -= index
    t *= _LOG_NDTR_SLOPE32[index]
    t += _LOG_NDTR_TABLE32[index]
    return t


def _tobit_mean(k: FloatArray, s1: FloatArray, s2: FloatArray, n_missed: FloatArray, u: FloatArray,
                sigma: float) -> FloatArray:
    """Maximum-likelihood mean of Gaussian draws of which ``k`` were seen and ``n_missed``
    fell below ``u`` (censored), from sufficient statistics; a 0.25 dB grid search."""
    mean = s1 / k
    offsets = np.arange(-20.0, 10.01, 0.25)
    grid = np.minimum(mean, u)[:, None] + offsets[None, :]  # (m, G)
    loglik = -(s2[:, None] - 2.0 * grid * s1[:, None] + k[:, None] * grid**2) / (2.0 * sigma**2)
    loglik = loglik + n_missed[:, None] * special.log_ndtr((u[:, None] - grid) / sigma)
    return np.asarray(grid[np.arange(grid.shape[0]), np.argmax(loglik, axis=1)], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Posterior:
    """The answer for one observation: a probability for every place of the site."""

    probabilities: FloatArray  # (n_places,), sums to 1
    best: int  # place index of the most probable place
    tx_power_dbm: float  # the transmit power that best explains the levels at the best point
    log_evidence: float  # log p(observation), up to a constant shared by all observations

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.best])

    def top(self, n: int) -> list[tuple[int, float]]:
        """The ``n`` most probable places, best first, as (place index, probability)."""
        order = np.argsort(-self.probabilities, kind="stable")[:n]
        return [(int(i), float(self.probabilities[i])) for i in order]


# ============================================================== survey
@dataclass(frozen=True, eq=False)
class Survey:
    """Fingerprints: the measured mean loss and its spread per (place, sensor) of a site."""

    loss_db: FloatArray  # (n_places, n_sensors), NaN where not surveyed
    spread_db: FloatArray  # (n_places, n_sensors), NaN where not surveyed
    freq_hz: float | None = None
    source: str = "survey"

    @property
    def n_surveyed(self) -> int:
        return int(np.count_nonzero(np.isfinite(self.loss_db)))


def parse_survey(doc: Any, site: Site, source: str = "survey") -> Survey:
    """Validate a parsed survey document against ``site`` (see the module notes for its form)."""
    if not isinstance(doc, Mapping):
        raise InputError(source, None, "expected a table (TOML) or an object (JSON) at the top level")
    for key in doc:
        if key not in ("version", "site", "freq_hz", "places"):
            raise InputError(source, key, "unknown key (expected version, site, freq_hz, places)")
    version = doc.get("version", 1)
    if version != 1:
        raise InputError(source, "version", f"unsupported survey version {version!r} (this build reads 1)")
    freq = doc.get("freq_hz")
    if freq is not None and (isinstance(freq, bool) or not isinstance(freq, int | float) or not freq > 0):
        raise InputError(source, "freq_hz", "expected a positive number")
    places = doc.get("places", {})
    if not isinstance(places, Mapping):
        raise InputError(source, "places", "expected a table of places")
    shape = (len(site.places), len(site.sensors))
    loss = np.full(shape, np.nan)
    spread = np.full(shape, np.nan)
    for place_id, entry in places.items():
        path = f"places.{place_id}"
        try:
            p = site.place_index(str(place_id))
        except KeyError:
            raise InputError(source, path, f"no cell or zone {place_id!r} in site {site.name!r}") from None
        if not isinstance(entry, Mapping) or set(entry) - {"sensors"}:
            raise InputError(source, path, "expected a table with only a 'sensors' table")
        sensors = entry.get("sensors", {})
        if not isinstance(sensors, Mapping):
            raise InputError(source, f"{path}.sensors", "expected a table of sensors")
        for sensor_id, fp in sensors.items():
            spath = f"{path}.sensors.{sensor_id}"
            try:
                s = site.sensor_index(str(sensor_id))
            except KeyError:
                raise InputError(source, spath, f"no sensor {sensor_id!r} in site {site.name!r}") from None
            if not isinstance(fp, Mapping):
                raise InputError(source, spath, "expected a table with loss_db and spread_db")
            for key in fp:
                if key not in ("loss_db", "spread_db", "n"):
                    raise InputError(source, f"{spath}.{key}", "unknown key (expected loss_db, spread_db, n)")
            for key in ("loss_db", "spread_db"):
                value = fp.get(key)
                if value is None:
                    raise InputError(source, f"{spath}.{key}", "missing")
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise InputError(source, f"{spath}.{key}", "expected a finite number")
            if not 0.0 < fp["spread_db"] <= 30.0:
                raise InputError(source, f"{spath}.spread_db", "must lie in (0, 30] dB")
            loss[p, s] = float(fp["loss_db"])
            spread[p, s] = float(fp["spread_db"])
    return Survey(loss_db=loss, spread_db=spread, freq_hz=None if freq is None else float(freq), source=source)


def load_survey(path: str | Path, site: Site) -> Survey:
    """Read a survey file: ``.json`` as JSON, anything else as TOML."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(str(path), None, "no such file") from None
        except OSError as exc:
            raise InputError(str(path), None, f"cannot read: {exc.strerror}") from None
        except ValueError as exc:
            raise InputError(str(path), None, f"not valid JSON ({exc})") from None
    else:
        doc = read_toml(path)
    return parse_survey(doc, site, str(path))


# ============================================================== the locator
@dataclass
class _Band:
    loss_db: FloatArray  # (J, S) mean loss from every point to every sensor
    static_var_db2: FloatArray  # (J, S)
    uniform_var: bool  # static_var is the same everywhere (no survey): a cheaper pass
    log_norm: FloatArray = field(default_factory=lambda: np.zeros(0))  # (J, S) -½ log(2π V): survey only
    sigma_db: float = 6.0  # the static sigma of the model's pairs
    loss32: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    inv_sigma32: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    def __post_init__(self) -> None:
        self.loss32 = self.loss_db.astype(np.float32)
        self.inv_sigma32 = (1.0 / np.sqrt(self.static_var_db2)).astype(np.float32)


class Locator:
    """Posterior over places for transmissions on one site. Build once, call many times.

    ``model`` defaults to the site's own propagation model (its ``[propagation]`` table);
    pass another to locate with a different belief about the building (the benchmarks
    do, to measure what wrong wall losses cost).
    """

    def __init__(self, site: Site, config: LocatorConfig | None = None, *, survey: Survey | None = None,
                 model: PropagationModel | None = None) -> None:
        self.site = site
        self.config = config or LocatorConfig()
        self.model = model or PropagationModel.for_site(site)
        self.survey = survey
        cfg = self.config
        points: list[FloatArray] = []
        owners: list[int] = []
        for index, place in enumerate(site.places):
            spacing = max(cfg.point_spacing_m, math.sqrt(place.area_m2 / cfg.max_points_per_place))
            xy = site.sample_points(index, spacing_m=spacing, margin_m=cfg.point_margin_m)
            while xy.shape[0] > cfg.max_points_per_place:
                spacing *= 1.15
                xy = site.sample_points(index, spacing_m=spacing, margin_m=cfg.point_margin_m)
            z = np.full(xy.shape[0], float(site.z_m(place.floor, cfg.phone_height_m)))
            points.append(np.column_stack([xy, z]))
            owners.append(xy.shape[0])
        self.points_xyz: FloatArray = np.vstack(points)
        counts = np.asarray(owners, dtype=np.int64)
        self.place_of_point = np.repeat(np.arange(len(site.places)), counts)
        self._ends = np.cumsum(counts).astype(np.int64)
        self._starts = self._ends - counts
        if cfg.prior == "area":
            weights = np.array([p.area_m2 for p in site.places])
        else:
            weights = np.ones(len(site.places))
        weights = weights * np.array([float(cfg.prior_weight_by_kind.get(p.kind, 1.0)) for p in site.places])
        # log prior of a place minus log K: each point's share of its place's prior mass
        self._log_point_prior = (np.log(weights / weights.sum()) - np.log(counts))[self.place_of_point]
        self._bands: dict[tuple[int, float], _Band] = {}
        self._tables: dict[int, tuple[FloatArray, FloatArray]] = {}

    @property
    def n_points(self) -> int:
        return int(self.points_xyz.shape[0])

    # ---------------------------------------------------------- tables
    def _band_key(self, freq_hz: float) -> int:
        return int(round(freq_hz / self.config.band_step_hz))

    def loss_table_db(self, freq_hz: float) -> FloatArray:
        """Mean loss ``(n_points, n_sensors)`` used at ``freq_hz`` (model, or survey where surveyed)."""
        return self._band(freq_hz).loss_db

    def _model_table(self, freq_hz: float) -> FloatArray:
        j, s = self.n_points, len(self.site.sensors)
        tx = np.repeat(self.points_xyz, s, axis=0)
        rx = np.tile(np.arange(s), j)
        return self.model.mean_path_loss_db(self.site, tx, rx, freq_hz).reshape(j, s)

    def _band(self, freq_hz: float, sigma_static_db: float | None = None) -> _Band:
        """The tables of a band for a static sigma (the config's by default); cached."""
        key = self._band_key(freq_hz)
        sigma = self.config.sigma_static_db if sigma_static_db is None else float(sigma_static_db)
        band = self._bands.get((key, sigma))
        if band is not None:
            return band
        tables = self._tables.get(key)
        if tables is None:
            loss = self._model_table(key * self.config.band_step_hz)
            survey_var = np.full(loss.shape, np.nan)  # NaN: the model's pair, sigma applies
            if self.survey is not None and self.survey.n_surveyed:
                fp_loss = self.survey.loss_db[self.place_of_point]  # (J, S)
                have = np.isfinite(fp_loss)
                if self.survey.freq_hz is not None and self._band_key(self.survey.freq_hz) != key:
                    survey_band_hz = self._band_key(self.survey.freq_hz) * self.config.band_step_hz
                    fp_loss = fp_loss + loss - self._model_table(survey_band_hz)
                loss = np.where(have, fp_loss, loss)
                survey_var = np.where(have, self.survey.spread_db[self.place_of_point] ** 2, np.nan)
            tables = self._tables[key] = (loss, survey_var)
        loss, survey_var = tables
        uniform = not np.any(np.isfinite(survey_var))
        var = np.where(np.isfinite(survey_var), survey_var, sigma**2)
        log_norm = np.zeros(0) if uniform else -0.5 * (_LOG_2PI + np.log(var))
        band = _Band(loss_db=loss, static_var_db2=var, uniform_var=uniform, log_norm=log_norm, sigma_db=sigma)
        self._bands[(key, sigma)] = band
        return band

    # ---------------------------------------------------------- inference
    def locate(self, observation: Observation) -> Posterior:
        return self.locate_many([observation])[0]

    def locate_many(self, observations: Sequence[Observation], sigma_static_db: float | None = None) -> list[Posterior]:
        """Posteriors of many observations; those in one band share one vectorized pass.

        ``sigma_static_db`` overrides the configured static sigma (for the model's pairs;
        surveyed pairs keep their spread): :class:`service.events.EventEngine` compares the
        evidence of a few values to learn the building's own scatter."""
        out: list[Posterior | None] = [None] * len(observations)
        by_band: dict[int, list[int]] = {}
        for i, obs in enumerate(observations):
            by_band.setdefault(self._band_key(obs.freq_hz), []).append(i)
        n_sensors = len(self.site.sensors)
        chunk = max(1, _CHUNK_ELEMENTS // max(1, self.n_points * n_sensors))
        for indices in by_band.values():
            band = self._band(observations[indices[0]].freq_hz, sigma_static_db)
            for start in range(0, len(indices), chunk):
                part = indices[start:start + chunk]
                posts = self._solve(band, [observations[i] for i in part])
                for i, post in zip(part, posts, strict=True):
                    out[i] = post
        return [p for p in out if p is not None]

    def point_log_likelihood(self, observations: Sequence[Observation]) -> tuple[FloatArray, FloatArray]:
        """``(B, n_points)`` log-likelihoods and ML transmit powers (one band; for tests and tools)."""
        band = self._band(observations[0].freq_hz)
        return self._point_loglik(band, observations)

    def _point_loglik(self, band: _Band, observations: Sequence[Observation]) -> tuple[FloatArray, FloatArray]:
        n_sensors = len(self.site.sensors)
        level = np.vstack([o.level_db for o in observations]).reshape(-1, n_sensors)
        meas_var = np.vstack([o.level_var_db2 for o in observations]).reshape(-1, n_sensors)
        censor = np.vstack([o.censor_db for o in observations]).reshape(-1, n_sensors)
        heard = np.isfinite(level)
        m = np.where(heard, level, 0.0)
        vm = np.where(heard, meas_var, 0.0)
        loss = band.loss_db  # (J, S)
        if band.uniform_var:
            sigma2 = band.sigma_db**2
            w = np.where(heard, 1.0 / (sigma2 + vm), 0.0)  # (B, S)
            big_w = w.sum(axis=1)[:, None]  # (B, 1)
            # Σ w (m + L) and Σ w (m + L)^2 through matrix products: (B, J)
            a = (w * m).sum(axis=1)[:, None] + w @ loss.T
            q = (w * m * m).sum(axis=1)[:, None] + 2.0 * (w * m) @ loss.T + w @ (loss * loss).T
            log_norm = (-0.5 * np.where(heard, _LOG_2PI + np.log(sigma2 + vm), 0.0)).sum(axis=1)[:, None]
        else:
            w = np.where(heard[:, None, :], 1.0 / (band.static_var_db2[None] + vm[:, None, :]), 0.0)  # (B, J, S)
            d = m[:, None, :] + loss[None]
            big_w = w.sum(axis=2)
            a = (w * d).sum(axis=2)
            q = (w * d * d).sum(axis=2)
            log_norm = (-0.5 * np.where(heard[:, None, :], _LOG_2PI + np.log(band.static_var_db2[None] + vm[:, None, :]), 0.0)).sum(axis=2)
        lo = np.array([[self._power_range(o)[0]] for o in observations])  # (B, 1)
        hi = np.array([[self._power_range(o)[1]] for o in observations])
        safe_w = np.maximum(big_w, 1e-12)
        p_hat = a / safe_w
        resid = np.maximum(q - a * p_hat, 0.0)
        sqrt_w = np.sqrt(safe_w)
        mass = special.ndtr((hi - p_hat) * sqrt_w) - special.ndtr((lo - p_hat) * sqrt_w)
        loglik = (-0.5 * resid + log_norm + 0.5 * (_LOG_2PI - np.log(safe_w)) + np.log(np.maximum(mass, 1e-300))
                  - np.log(hi - lo))
        p_used = np.clip(p_hat, lo, hi)
        # the censored and clipped sensors' terms, at the transmit power the levels ask for
        censor_cols, censor_level, lower_cols, lower_level = self._bounds(observations, censor)
        loglik += self._all_bound_terms(band, censor_cols, censor_level, lower_cols, lower_level, p_used)
        deaf = ~heard.any(axis=1)
        if np.any(deaf):
            # nobody heard a level: no analytic power, so integrate the bound terms over a grid of powers
            rows = np.flatnonzero(deaf)
            grid = lo[rows] + (hi[rows] - lo[rows]) * (np.arange(_POWER_GRID) + 0.5) / _POWER_GRID  # (R, G)
            terms = np.stack([
                self._all_bound_terms(band, censor_cols, censor_level[rows], lower_cols, lower_level[rows],
                                      np.repeat(grid[:, g:g + 1], loss.shape[0], axis=1))
                for g in range(_POWER_GRID)])  # (G, R, J)
            top = terms.max(axis=0)
            loglik[rows] = top + np.log(np.mean(np.exp(terms - top), axis=0))
            best_g = np.argmax(terms, axis=0)
            p_used[rows] = np.take_along_axis(grid, best_g, axis=1)
        return loglik, p_used

    def _power_range(self, observation: Observation) -> tuple[float, float]:
        if observation.tx_power_range_dbm is not None:
            return observation.tx_power_range_dbm
        return self.config.tx_power_min_dbm, self.config.tx_power_max_dbm

    @staticmethod
    def _bounds(observations: Sequence[Observation], censor: FloatArray) -> tuple[
            npt.NDArray[np.intp], FloatArray, npt.NDArray[np.intp], FloatArray]:
        """Columns and levels of the censored (below) and clipped (above) terms; a level of
        ``±_LOG_NDTR_BIG`` in a row makes that row's term vanish."""
        cens = np.isfinite(censor)
        censor_cols = np.flatnonzero(cens.any(axis=0))
        censor_level = np.where(cens[:, censor_cols], censor[:, censor_cols], _LOG_NDTR_BIG)
        lowers = [o.lower_db for o in observations]
        if any(x is not None and np.any(np.isfinite(x)) for x in lowers):
            lower = np.vstack([np.full(censor.shape[1], np.nan) if x is None else x for x in lowers])
            lower_cols = np.flatnonzero(np.isfinite(lower).any(axis=0))
            lower_level = np.where(np.isfinite(lower[:, lower_cols]), lower[:, lower_cols], -_LOG_NDTR_BIG)
        else:
            lower_cols = np.zeros(0, dtype=np.intp)
            lower_level = np.zeros((censor.shape[0], 0))
        return censor_cols, censor_level, lower_cols, lower_level

    def _all_bound_terms(self, band: _Band, censor_cols: npt.NDArray[np.intp], censor_level: FloatArray,
                         lower_cols: npt.NDArray[np.intp], lower_level: FloatArray, p_used: FloatArray) -> FloatArray:
        out = np.zeros(p_used.shape)
        if censor_cols.size:  # log Φ((u - (P - L)) / σ): below the censoring level u
            out += self._bound_terms(band, censor_cols, censor_level, p_used, sign=1.0)
        if lower_cols.size:  # log Φ(((P - L) - f) / σ): above the floor f of a clipped level
            out += self._bound_terms(band, lower_cols, lower_level, p_used, sign=-1.0)
        return out

    @staticmethod
    def _bound_terms(band: _Band, columns: npt.NDArray[np.intp], level: FloatArray, p_used: FloatArray,
                     sign: float) -> FloatArray:
        """Σ over ``columns`` of ``log Φ(sign · (level - (P - L)) / σ)``, ``(B, J)``, in float32."""
        inv_sigma = band.inv_sigma32[:, columns]  # (J, C)
        z = np.subtract(level.astype(np.float32)[:, None, :], p_used.astype(np.float32)[:, :, None])
        z += band.loss32[None, :, columns]
        z *= inv_sigma[None] if sign > 0 else -inv_sigma[None]
        return _log_ndtr_inplace(z).sum(axis=2, dtype=np.float64)

    def _solve(self, band: _Band, observations: Sequence[Observation]) -> list[Posterior]:
        loglik, p_used = self._point_loglik(band, observations)
        logpost = loglik + self._log_point_prior[None, :]
        top = logpost.max(axis=1, keepdims=True)
        weights = np.exp(logpost - top)  # (B, J)
        place_mass = np.add.reduceat(weights, self._starts, axis=1)  # (B, n_places)
        total = place_mass.sum(axis=1, keepdims=True)
        probs = place_mass / total
        evidence = (np.log(total) + top)[:, 0]
        out = []
        for b in range(probs.shape[0]):
            best = int(np.argmax(probs[b]))
            lo, hi = self._starts[best], self._ends[best]
            point = lo + int(np.argmax(logpost[b, lo:hi]))
            out.append(Posterior(probabilities=probs[b], best=best, tx_power_dbm=float(p_used[b, point]),
                                 log_evidence=float(evidence[b])))
        return out


# ============================================================== oracle feed
ORACLE_DETECT_SNR_DB = 6.0  # a simulated burst counts as heard from this true SNR (about the detector's Pd 0.9)


def detections_from_truth(truth: Sequence[Mapping[str, Any]],
                          detect_snr_db: float = ORACLE_DETECT_SNR_DB) -> list[Detection]:
    """Detections made from a simulation's truth: each burst at each sensor whose true SNR
    reaches ``detect_snr_db``, with the true received power as ``rssi_dbm``.

    This feeds the locator the simulator's own received powers (fading and shadowing
    included, no detector errors): the *oracle* the benchmarks and tests compare
    ``cellwatch locate`` with. Truth records without per-sensor ``rx_power_dbm`` are skipped.
    """
    out = []
    for record in truth:
        powers = record.get("rx_power_dbm")
        snrs = record.get("snr_db")
        if not isinstance(powers, Mapping) or not isinstance(snrs, Mapping):
            continue
        for sensor_id, power in powers.items():
            snr = snrs.get(sensor_id)
            if snr is None or snr < detect_snr_db:
                continue
            out.append(Detection(
                sensor_id=str(sensor_id), t_start_s=float(record["t_start_s"]), duration_s=float(record["duration_s"]),
                freq_hz=float(record["freq_hz"]), bandwidth_hz=float(record["bandwidth_hz"]),
                power_dbfs=float(power) - _NOMINAL_FULL_SCALE_DBM, snr_db=float(snr),
                tech=str(record.get("tech", "unknown")), rssi_dbm=float(power),
            ))
    out.sort(key=lambda d: (d.t_start_s, d.sensor_id))
    return out


_NOMINAL_FULL_SCALE_DBM = -15.0  # only to fill power_dbfs; rssi_dbm is what the locator reads
