"""Cross-sensor correlation: detections -> bursts (one burst seen by several sensors) -> transmissions.

Three steps, each streaming (the service feeds detections as nodes deliver them;
``cellwatch locate`` feeds a whole file, then flushes):

1. **Bursts** (:class:`BurstGrouper`). Detections of different sensors are the same
   burst when their start times agree within ``burst_time_tolerance_s`` (after each
   sensor's clock correction) and their frequencies within half the wider bandwidth
   plus ``freq_tolerance_hz`` (crystal errors of a few to tens of ppm: 2-45 kHz at
   900 MHz). The default time tolerance, 200 µs, is well under GSM's 577 µs timeslot
   (TS 45.002 §4.3.1): two phones in adjacent timeslots of one carrier stay apart when
   clocks are good. A weak sensor (below 15 dB SNR) that caught only the middle of a
   burst joins by overlap instead; durations (and, at good SNR, bandwidths) must agree
   within a factor 2.5, so a detection that ran two bursts together joins neither.
   The group's reference is its best unclipped view. Clocks that drift are followed:
   every burst heard by several sensors gives each of them a residual against the
   best view, smoothed into a per-sensor offset applied to later detections. A group
   waits ``group_wait_s`` (of detection time) for late sensors before it is handed on;
   detections arriving later still attach to it while it is recent
   (:meth:`BurstGrouper.add` reports them). On closing, a sensor's view that lies
   inside a 25 dB stronger burst the same sensor heard at another frequency is dropped
   as an I/Q image (RTL-SDR image rejection is 25-40 dB).
2. **Transmissions** (:class:`TransmissionTracker`): bursts of one phone's call, SMS
   or data session. GSM-like bursts (narrow and short: a 546 µs normal burst, a
   325 µs access burst) join a transmission on the same carrier and the same TDMA
   timeslot phase, ``t mod 4.615 ms`` (TS 45.002 §4.3.1: a phone in a call sends one
   burst per frame in its timeslot). Other bursts (LTE/NR SC-FDMA, UMTS) join a
   transmission whose frequency span they fall in or next to (an LTE phone's PUSCH and
   PUCCH move over its carrier, TS 36.211 §5.3-5.4). Gaps longer than
   ``transmission_gap_s`` end a transmission. Session ids and channels in the
   detections are used when present (a different session id from the same sensor, or
   a different channel, separates) but never needed.
   A burst must also *look like* the transmission: its levels across sensors, after
   removing the common power-control step, must fit the transmission's pattern (a
   chi-square test on the fading spread), and a sensor that hears it strongly must not
   be one that never heard the transmission. So two phones on one LTE carrier, or on
   one ARFCN in two wings, stay two transmissions.
3. **Sufficient statistics** per transmission and sensor (bursts listened for, heard,
   sum and sum of squares of the levels relative to the transmission's power, the
   detection thresholds of missed bursts), which :class:`service.locate.Observation`
   turns into what the locator needs. Power-control steps are removed burst by burst
   (the median level offset against the transmission's pattern on the sensors both
   heard), so a phone that changes its power every 480 ms still averages cleanly.

A sensor's detection threshold (for the bursts it missed) is its noise density,
learned from its own detections (``rssi_dbm - snr_db - 10·log10(bandwidth_hz)``),
plus the burst's bandwidth and the detector's half-probability SNR (configured, or
read off the low edge of the detections' own SNRs). A sensor is listening when it has
been heard from within ``sensor_alive_s`` (or marked so), the burst is not older than its
first sign of life (a node started later than the others did not miss the bursts sent
before) nor inside a spell it is known deaf (node offline, radio stopped), and its
detections so far cover the burst's frequency. A listening sensor that is not in a burst's group but
detected *something* overlapping it in time and frequency did not miss it: its
detector cut the signal differently (LTE allocations, bursts run together at a strong
sensor); it counts as neither heard nor missed for that burst.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from calibration.gain import CalibrationTable
from calibration.site import Site
from dsp.errors import InputError
from dsp.records import Detection
from service.locate import LocatorConfig, Observation, Posterior

FloatArray = npt.NDArray[np.float64]

GSM_FRAME_S = 0.120 / 26.0  # TS 45.002 §4.3.1: 4.615 ms TDMA frame
_TERM_CAP = 9.0  # a sensor adds at most a 3-sigma residual to the pattern test
_N_CONTRADICTING = 2  # sensors that must contradict a transmission's pattern to split a burst off
_DEFAULT_DETECT_SNR_DB = 6.0  # until enough detections show the detector's own low edge
_MIN_SNR_SAMPLE = 100
_SNR_SAMPLE_SIZE = 4096
_REFRESH_EVERY = 64  # noise estimates folded into the thresholds every this many detections
_FREQ_BUCKET_HZ = 1e6
_RECENT_KEEP = 8192  # detections remembered per sensor (seconds of a busy band)
_LONGEST_S = 0.02  # detections longer than this are not looked for when checking overlaps
_CHANNEL_BUCKET_HZ = 100e3  # GSM-like transmissions indexed by carrier (200 kHz raster)
_WEAK_SNR_DB = 15.0  # below this a sensor's burst edges are uncertain by up to half a burst
_MIN_SHAPE_RATIO = 0.4  # shorter/longer duration (and narrower/wider band) of two views of one burst
_LABEL_RELIABLE_SNR_DB = 6.0  # from here a sensor's gsm/lte label counts fully in its group's vote ...
_WEAK_LABEL_WEIGHT = 0.2  # ... below it, a fifth
_IMAGE_REACH_HZ = 3.2e6  # an I/Q image lies within an RTL-SDR's widest band of its burst


@dataclass(frozen=True)
class CorrelatorConfig:
    """Tolerances of the correlation (see the module notes); none is specific to a site."""

    burst_time_tolerance_s: float = 200e-6
    freq_tolerance_hz: float = 25e3
    group_wait_s: float = 0.5
    late_grace_s: float = 5.0
    transmission_gap_s: float = 3.0
    gsm_slot_tolerance_s: float = 150e-6
    gsm_channel_tolerance_hz: float = 60e3
    gsm_max_bandwidth_hz: float = 350e3
    gsm_max_duration_s: float = 0.75e-3
    carrier_gap_hz: float = 5.0e6
    max_carrier_span_hz: float = 20e6
    pattern_quantile: float = 0.9999
    strong_margin_db: float = 15.0
    image_margin_db: float = 25.0
    image_time_tolerance_s: float = 20e-6
    default_noise_dbm_per_hz: float = -165.0
    noise_smoothing: float = 0.05
    sensor_alive_s: float = 600.0
    coverage_margin_hz: float = 1.2e6
    clock_smoothing: float = 0.05

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InputError(None, f"correlation.{name}", f"expected a finite number, got {value!r}")
        for name in ("burst_time_tolerance_s", "freq_tolerance_hz", "transmission_gap_s", "gsm_slot_tolerance_s",
                     "sensor_alive_s", "gsm_max_bandwidth_hz", "gsm_max_duration_s"):
            if getattr(self, name) <= 0:
                raise InputError(None, f"correlation.{name}", "must be positive")
        for name in ("group_wait_s", "late_grace_s", "carrier_gap_hz", "coverage_margin_hz", "strong_margin_db",
                     "image_margin_db", "image_time_tolerance_s"):
            if getattr(self, name) < 0:
                raise InputError(None, f"correlation.{name}", "must not be negative")
        if self.gsm_slot_tolerance_s >= GSM_FRAME_S / 2:
            raise InputError(None, "correlation.gsm_slot_tolerance_s", "must be below half a TDMA frame (2.3 ms)")
        if not 0.5 < self.pattern_quantile < 1.0 - 1e-12:
            raise InputError(None, "correlation.pattern_quantile", "must lie in (0.5, 1)")
        for name in ("noise_smoothing", "clock_smoothing"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(None, f"correlation.{name}", "must lie in [0, 1]")

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], source: str | None = None) -> CorrelatorConfig:
        known = set(cls.__dataclass_fields__)
        for key in table:
            if key not in known:
                raise InputError(source, f"correlation.{key}", "unknown key")
        try:
            return cls(**dict(table))
        except InputError as exc:
            raise exc.with_source(source) if source else exc from None


# ====================================================================== sensors
class SensorStates:
    """What the correlator knows of each sensor: alive, which band it covers, its noise, its clock.

    Per-sensor scalars live in Python lists (updated once per detection, where numpy's
    per-element overhead would dominate) and become arrays when a burst needs them.
    """

    def __init__(self, site: Site, calibration: CalibrationTable, config: CorrelatorConfig,
                 locator_config: LocatorConfig) -> None:
        n = len(site.sensors)
        self.site = site
        self.calibration = calibration
        self.config = config
        self.fixed_detect_snr_db = locator_config.detect_snr_db
        self._snr_sample: list[float] = []  # a bounded sample of the detections' snr_db
        self._n_snr = 0
        self._snr_rng = np.random.default_rng(0)
        self._snr_edge_db: float | None = None
        self._base_thresholds: FloatArray | None = None
        self._base_at = 0
        self._n_noise_total = 0
        self.last_seen_s = [-math.inf] * n
        self.listening_until_s = [-math.inf] * n
        # the sensor's current stretch of life: from its first sign (a detection, a mark) ...
        self.alive_from_s = [math.inf] * n
        # ... to when it was known deaf (its node offline, its radio stopped)
        self.deaf_from_s = [math.inf] * n
        self.freq_lo_hz = [math.inf] * n
        self.freq_hi_hz = [-math.inf] * n
        self.noise_dbm_per_hz = [math.nan] * n
        self.n_noise = [0] * n
        self.clock_offset_s = [0.0] * n
        self._cal = [calibration.get(s.id) for s in site.sensors]
        self._log_bw: dict[float, float] = {}
        # each sensor's recent detections (start, end, low, high) on the common scales, by start
        self._recent: list[list[tuple[float, float, float, float]]] = [[] for _ in range(n)]
        self._longest_s = 0.0

    def mark_listening(self, index: int, until_s: float, from_s: float = -math.inf) -> None:
        """The sensor listened from ``from_s`` (at the latest) to ``until_s``."""
        self._alive_at(index, from_s)
        self.listening_until_s[index] = max(self.listening_until_s[index], until_s)

    def mark_deaf(self, index: int, from_s: float) -> None:
        """The sensor heard nothing from ``from_s`` on (node offline, radio stopped) until its
        next sign of life: bursts it did not detect there were not missed."""
        if from_s > self.alive_from_s[index]:
            self.deaf_from_s[index] = min(self.deaf_from_s[index], from_s)

    def _alive_at(self, index: int, t_s: float) -> None:
        if t_s >= self.deaf_from_s[index]:  # back to life after a deaf spell: a new stretch
            self.alive_from_s[index] = t_s
            self.deaf_from_s[index] = math.inf
        elif t_s < self.alive_from_s[index]:
            self.alive_from_s[index] = t_s

    def observe(self, index: int, t_s: float, freq_hz: float, detection: Detection, rssi_dbm: float | None) -> None:
        if t_s > self.last_seen_s[index]:
            self.last_seen_s[index] = t_s
        if not self.alive_from_s[index] <= t_s < self.deaf_from_s[index]:
            self._alive_at(index, t_s)
        self._n_snr += 1
        if len(self._snr_sample) < _SNR_SAMPLE_SIZE:
            self._snr_sample.append(detection.snr_db)
        else:  # reservoir sampling: every detection equally likely to be in the sample
            slot = int(self._snr_rng.integers(self._n_snr))
            if slot < _SNR_SAMPLE_SIZE:
                self._snr_sample[slot] = detection.snr_db
        if self._n_snr % 256 == 0:
            self._snr_edge_db = None
        recent = self._recent[index]
        half = detection.bandwidth_hz / 2.0
        entry = (t_s, t_s + detection.duration_s, freq_hz - half, freq_hz + half)
        if not recent or t_s >= recent[-1][0]:
            recent.append(entry)
        else:
            bisect.insort(recent, entry)
        if len(recent) > _RECENT_KEEP:
            del recent[: len(recent) - _RECENT_KEEP // 2]
        self._longest_s = max(self._longest_s, min(detection.duration_s, _LONGEST_S))
        if freq_hz < self.freq_lo_hz[index]:
            self.freq_lo_hz[index] = freq_hz
        if freq_hz > self.freq_hi_hz[index]:
            self.freq_hi_hz[index] = freq_hz
        if rssi_dbm is None or detection.bandwidth_hz <= 0 or "clipped" in detection.flags:
            return
        density = rssi_dbm - detection.snr_db - 10.0 * math.log10(detection.bandwidth_hz)
        count = self.n_noise[index]
        if count == 0:
            self.noise_dbm_per_hz[index] = density
        else:
            alpha = max(self.config.noise_smoothing, 1.0 / (count + 1))
            self.noise_dbm_per_hz[index] += alpha * (density - self.noise_dbm_per_hz[index])
        self.n_noise[index] = count + 1
        self._n_noise_total += 1

    def corrected(self, index: int, detection: Detection) -> tuple[float, float]:
        """(time, frequency) of a detection on the common clock and frequency scale."""
        cal = self._cal[index]
        return cal.true_time_s(detection.t_start_s) - self.clock_offset_s[index], cal.true_freq_hz(detection.freq_hz)

    def busy(self, index: int, t0_s: float, t1_s: float, f0_hz: float, f1_hz: float,
             min_overlap_s: float = 0.0) -> bool:
        """Did this sensor detect something overlapping ``[t0, t1] x [f0, f1]`` (by at least
        ``min_overlap_s``)? Then a burst it is not a member of was not *missed* there: the
        sensor's detector cut or merged it differently (an LTE allocation split, two bursts
        run together at a strong sensor)."""
        recent = self._recent[index]
        i = bisect.bisect_right(recent, (t1_s, math.inf, math.inf, math.inf))
        earliest = t0_s - self._longest_s
        while i > 0:
            i -= 1
            start, end, lo, hi = recent[i]
            if start < earliest:
                break
            if end >= t0_s and hi >= f0_hz and lo <= f1_hz and min(end, t1_s) - max(start, t0_s) >= min_overlap_s:
                return True
        return False

    def listening(self, t_s: float, freq_hz: float) -> npt.NDArray[np.bool_]:
        """Which sensors were listening at ``t_s`` for a burst at ``freq_hz``: alive then (not
        before their first sign of life, e.g. a node that started later than the others, nor
        while known deaf) and covering the frequency."""
        alive_s = self.config.sensor_alive_s
        margin = self.config.coverage_margin_hz
        return np.array([
            start <= t_s < deaf and (seen + alive_s >= t_s or until >= t_s)
            and (lo == math.inf or lo - margin <= freq_hz <= hi + margin)
            for seen, until, start, deaf, lo, hi in zip(self.last_seen_s, self.listening_until_s, self.alive_from_s,
                                                        self.deaf_from_s, self.freq_lo_hz, self.freq_hi_hz,
                                                        strict=True)
        ], dtype=bool)

    def thresholds_dbm(self, bandwidth_hz: float) -> FloatArray:
        """Level (dBm) a burst of ``bandwidth_hz`` needs at each sensor to be detected half of the time."""
        total = self._n_noise_total
        if self._base_thresholds is None or total - self._base_at >= _REFRESH_EVERY:
            noise = np.array(self.noise_dbm_per_hz, dtype=np.float64)
            known = np.isfinite(noise)
            fallback = float(np.median(noise[known])) if np.any(known) else self.config.default_noise_dbm_per_hz
            noise[~known] = fallback
            self._base_thresholds = noise + self.detect_snr_db()
            self._base_at = total
        log_bw = self._log_bw.get(bandwidth_hz)
        if log_bw is None:
            log_bw = self._log_bw[bandwidth_hz] = 10.0 * math.log10(max(bandwidth_hz, 1.0))
            if len(self._log_bw) > 4096:
                self._log_bw.clear()
        return self._base_thresholds + log_bw

    def detect_snr_db(self) -> float:
        """The detector's half-probability SNR in its own snr_db scale: configured, or the
        low edge (5th percentile) of the SNRs of the detections seen so far. Detectors
        define SNR differently (noise in which band, before or after noise subtraction), so
        reading it off the data keeps the censoring levels consistent with the detector."""
        if self.fixed_detect_snr_db is not None:
            return float(self.fixed_detect_snr_db)
        if self._snr_edge_db is None:
            if self._n_snr < _MIN_SNR_SAMPLE:
                return _DEFAULT_DETECT_SNR_DB
            self._snr_edge_db = float(np.percentile(self._snr_sample, 5.0))
        return self._snr_edge_db

    def track_clocks(self, group: BurstGroup) -> None:
        """Nudge the clock offsets of a group's sensors toward agreement with its best member.

        Residuals are taken with the offsets as they are now (a batch of detections may all have
        been corrected with an older estimate), so the estimate converges instead of integrating
        the same error again and again."""
        alpha = self.config.clock_smoothing
        if alpha == 0.0 or len(group.members) < 2:
            return
        offsets = self.clock_offset_s
        best = group.best
        ref = best.t_s + best.offset_s - offsets[best.sensor]
        limit = self.config.burst_time_tolerance_s
        for member in group.members:
            if member.snr_db < 10.0 or member is best:
                continue
            residual = member.t_s + member.offset_s - offsets[member.sensor] - ref
            offsets[member.sensor] += alpha * min(max(residual, -limit), limit)


# ====================================================================== bursts
@dataclass(eq=False)
class Member:
    """One sensor's detection of a burst, on the common clock, with its calibrated level."""

    sensor: int
    t_s: float
    freq_hz: float
    bandwidth_hz: float
    duration_s: float
    snr_db: float
    rssi_dbm: float | None
    clipped: bool
    detection: Detection
    offset_s: float = 0.0  # the clock offset estimate subtracted from its time


@dataclass(eq=False)
class BurstGroup:
    """One burst as heard by one or more sensors (at most one detection per sensor)."""

    members: list[Member]
    best: Member  # the member with the highest SNR: its time and frequency are the group's
    transmission: Transmission | None = None
    offset_db: float = 0.0  # power-control offset against its transmission's pattern
    closed: bool = False
    missed: npt.NDArray[np.bool_] | None = None  # sensors counted as having missed it
    thresholds_dbm: FloatArray | None = None  # their detection thresholds then

    @property
    def t_ref_s(self) -> float:
        return self.best.t_s

    @property
    def freq_hz(self) -> float:
        return self.best.freq_hz

    @property
    def bandwidth_hz(self) -> float:
        return self.best.bandwidth_hz

    @property
    def duration_s(self) -> float:
        return self.best.duration_s

    def sensors(self) -> set[int]:
        return {m.sensor for m in self.members}

    def remove(self, members: list[Member]) -> None:
        """Drop some views (receiver artefacts); the best of the others takes over."""
        self.members = [m for m in self.members if all(m is not x for x in members)]
        if self.members:
            self.best = max(self.members, key=lambda m: (not m.clipped, m.snr_db))

    def add(self, member: Member) -> None:
        """Add a sensor's view; the best view (highest SNR, unclipped first: clipping smears a
        burst's edges) sets the group's time, frequency and shape."""
        self.members.append(member)
        if (not member.clipped, member.snr_db) > (not self.best.clipped, self.best.snr_db):
            self.best = member


def _mostly_inside(a: Member, b: Member, short_s: float) -> bool:
    """Do two views overlap by at least half the shorter one (``short_s``)?"""
    overlap = min(a.t_s + a.duration_s, b.t_s + b.duration_s) - max(a.t_s, b.t_s)
    return overlap > 0 and overlap >= 0.5 * short_s


class BurstGrouper:
    """Streaming grouping of detections into bursts (step 1 of the module notes)."""

    def __init__(self, config: CorrelatorConfig) -> None:
        self.config = config
        self._bucket_s = max(config.burst_time_tolerance_s, 0.5e-3)  # ±1 bucket covers an overlapping member
        self._buckets: dict[tuple[int, int], list[BurstGroup]] = {}
        self._widest_hz = 0.0
        self._open: list[tuple[float, int, BurstGroup]] = []  # sorted by time; closes in order
        self._counter = 0
        self.watermark_s = -math.inf
        self.n_images = 0  # detections dropped as I/Q images
        self._longest_s = 0.0

    def image_members(self, group: BurstGroup) -> list[Member]:
        """The members of a group that are receiver artefacts of another burst: a sensor's I/Q
        image (or spur) of a much stronger burst it heard at another frequency, within that
        burst's time span. An RTL-SDR's image sits 25-40 dB below the burst, mirrored about
        the tuning frequency (which detections do not carry)."""
        cfg = self.config
        tk = int(math.floor(group.t_ref_s / self._bucket_s))
        f_lo = int(math.floor((group.freq_hz - _IMAGE_REACH_HZ) / _FREQ_BUCKET_HZ))
        f_hi = int(math.floor((group.freq_hz + _IMAGE_REACH_HZ) / _FREQ_BUCKET_HZ))
        reach = int(math.ceil(self._longest_s / self._bucket_s)) + 1
        mine = {m.sensor: m for m in group.members if m.rssi_dbm is not None}
        out: dict[int, Member] = {}
        for t in range(tk - reach, tk + 2):
            for f in range(f_lo, f_hi + 1):
                for other in self._buckets.get((t, f), ()):
                    if other is group:
                        continue
                    for o in other.members:
                        m = mine.get(o.sensor)
                        if (m is None or o.rssi_dbm is None or m.sensor in out
                                or o.rssi_dbm - m.rssi_dbm < cfg.image_margin_db  # type: ignore[operator]
                                or abs(o.freq_hz - m.freq_hz) <= max(o.bandwidth_hz, m.bandwidth_hz) / 2.0
                                or o.t_s - cfg.image_time_tolerance_s > m.t_s
                                or m.t_s + m.duration_s > o.t_s + o.duration_s + cfg.image_time_tolerance_s):
                            continue
                        out[m.sensor] = m
        return list(out.values())

    def _compatible(self, group: BurstGroup, m: Member) -> float | None:
        """Distance of a member to a group (smaller is better), None if it cannot belong."""
        cfg = self.config
        best = group.best
        df = abs(m.freq_hz - best.freq_hz)
        half = (m.bandwidth_hz if m.bandwidth_hz > best.bandwidth_hz else best.bandwidth_hz) / 2.0
        reach = half + cfg.freq_tolerance_hz
        if df > reach:
            return None
        # one burst looks alike at every sensor: similar length (a weak sensor may catch only
        # its middle) and, where both measured it well, similar width; a detector that merged
        # several bursts into one long detection does not make them one burst
        # (a weak sensor that caught only the middle of a burst: shorter, and inside it)
        short = m if m.duration_s <= best.duration_s else best
        if short.duration_s < _MIN_SHAPE_RATIO * (m.duration_s + best.duration_s - short.duration_s):
            if short.snr_db >= _WEAK_SNR_DB or not _mostly_inside(m, best, short.duration_s):
                return None
        if min(m.snr_db, best.snr_db) >= 10.0:
            narrow, wide = sorted((m.bandwidth_hz, best.bandwidth_hz))
            if narrow < _MIN_SHAPE_RATIO * wide:
                return None
        dt = abs(m.t_s - best.t_s)
        tolerance = cfg.burst_time_tolerance_s
        if dt > tolerance:
            # a weak view's edges move, the overlap stays (two strong views measure their
            # edges well: their starts must agree)
            if min(m.snr_db, best.snr_db) >= _WEAK_SNR_DB or not _mostly_inside(m, best, short.duration_s):
                return None
            dt = tolerance
        for x in group.members:
            if x.sensor == m.sensor:
                return None
        return dt / tolerance + df / reach

    def _keys(self, t_s: float, freq_hz: float, reach_hz: float) -> list[tuple[int, int]]:
        """Buckets (time, frequency) that may hold a group within reach of a point."""
        tk = int(math.floor(t_s / self._bucket_s))
        lo = int(math.floor((freq_hz - reach_hz) / _FREQ_BUCKET_HZ))
        hi = int(math.floor((freq_hz + reach_hz) / _FREQ_BUCKET_HZ))
        return [(t, f) for t in (tk - 1, tk, tk + 1) for f in range(lo, hi + 1)]

    def _find(self, m: Member) -> BurstGroup | None:
        reach = max(m.bandwidth_hz, self._widest_hz) / 2.0 + self.config.freq_tolerance_hz
        tk = int(math.floor(m.t_s / self._bucket_s))
        f_lo = int(math.floor((m.freq_hz - reach) / _FREQ_BUCKET_HZ))
        f_hi = int(math.floor((m.freq_hz + reach) / _FREQ_BUCKET_HZ))
        buckets = self._buckets
        best: BurstGroup | None = None
        best_score = math.inf
        for t in (tk, tk - 1, tk + 1):
            for f in range(f_lo, f_hi + 1):
                groups = buckets.get((t, f))
                if not groups:
                    continue
                for group in groups:
                    score = self._compatible(group, m)
                    if score is not None and score < best_score:
                        best, best_score = group, score
        return best

    def add(self, m: Member) -> tuple[BurstGroup, bool]:
        """Put a detection in its burst: (the group, whether the group was already closed)."""
        self._widest_hz = max(self._widest_hz, m.bandwidth_hz)
        self._longest_s = max(self._longest_s, min(m.duration_s, _LONGEST_S))
        group = self._find(m)
        if group is not None:
            group.add(m)
            return group, group.closed
        group = BurstGroup(members=[m], best=m)
        key = (int(math.floor(m.t_s / self._bucket_s)), int(math.floor(m.freq_hz / _FREQ_BUCKET_HZ)))
        self._buckets.setdefault(key, []).append(group)
        self._counter += 1
        bisect.insort(self._open, (m.t_s, self._counter, group), key=lambda item: (item[0], item[1]))
        self.watermark_s = max(self.watermark_s, m.t_s)
        return group, False

    def advance(self, t_s: float) -> None:
        self.watermark_s = max(self.watermark_s, t_s)

    def close(self, before_s: float) -> list[BurstGroup]:
        """Close, in time order, the open groups that started before ``before_s``; forget old ones."""
        n = bisect.bisect_left(self._open, before_s, key=lambda item: item[0])
        closed = [item[2] for item in self._open[:n]]
        del self._open[:n]
        for group in closed:
            group.closed = True
        kept = []
        for group in closed:
            images = self.image_members(group)
            if images:
                self.n_images += len(images)
                group.remove(images)
                if not group.members:
                    continue
            kept.append(group)
        closed = kept
        if math.isinf(before_s):
            if before_s > 0:
                self._buckets.clear()
            return closed
        forget = int(math.floor((before_s - self.config.late_grace_s) / self._bucket_s)) - 1
        for key in [k for k in self._buckets if k[0] < forget]:
            del self._buckets[key]
        return closed

    @property
    def n_open(self) -> int:
        return len(self._open)


# ====================================================================== transmissions
@dataclass(eq=False)
class Transmission:
    """Bursts of one phone's call, message or session, with per-sensor statistics."""

    number: int
    n_sensors: int
    gsm_like: bool
    t_first_s: float
    t_last_s: float
    t_end_s: float
    freq_lo_hz: float
    freq_hi_hz: float
    first: Detection | None = None  # the first burst's best detection (names the event); bursts are not kept
    # sufficient statistics per sensor, levels relative to the transmission's power
    n_listened: FloatArray = field(default_factory=lambda: np.zeros(0))
    n_heard: FloatArray = field(default_factory=lambda: np.zeros(0))
    sum_db: FloatArray = field(default_factory=lambda: np.zeros(0))
    sum_sq_db2: FloatArray = field(default_factory=lambda: np.zeros(0))
    missed_threshold_sum_db: FloatArray = field(default_factory=lambda: np.zeros(0))
    n_missed: FloatArray = field(default_factory=lambda: np.zeros(0))
    n_clipped: FloatArray = field(default_factory=lambda: np.zeros(0))
    clipped_sum_db: FloatArray = field(default_factory=lambda: np.zeros(0))
    rssi_sum_dbm: FloatArray = field(default_factory=lambda: np.zeros(0))  # absolute, for reports
    n_rssi: FloatArray = field(default_factory=lambda: np.zeros(0))
    pattern: FloatArray = field(default_factory=lambda: np.zeros(0))  # mean relative level, NaN: never heard
    last_offset_db: float = 0.0
    techs: Counter[str] = field(default_factory=Counter)
    channels: Counter[str] = field(default_factory=Counter)
    sessions: dict[int, str] = field(default_factory=dict)  # last session id seen per sensor
    freq_sum_hz: float = 0.0
    bandwidths_hz: list[float] = field(default_factory=list)
    n_bursts: int = 0
    closed: bool = False
    n_at_last_locate: int = 0
    t_at_last_locate: float = -math.inf
    posterior: Posterior | None = None  # the locator's latest answer
    index_key: int = 0  # where the tracker files it (GSM-like: by carrier)
    keys: list[tuple[str, float]] = field(default_factory=list)  # contributing detections not yet reported

    def __post_init__(self) -> None:
        for name in ("n_listened", "n_heard", "sum_db", "sum_sq_db2", "missed_threshold_sum_db", "n_missed", "n_clipped",
                     "clipped_sum_db", "rssi_sum_dbm", "n_rssi"):
            setattr(self, name, np.zeros(self.n_sensors))
        self.pattern = np.full(self.n_sensors, np.nan)

    @property
    def freq_hz(self) -> float:
        """Centre of the transmission: a GSM carrier's mean, a wider signal's span centre."""
        if self.gsm_like:
            return self.freq_sum_hz / max(self.n_bursts, 1)
        return 0.5 * (self.freq_lo_hz + self.freq_hi_hz)

    @property
    def bandwidth_hz(self) -> float:
        return float(np.median(self.bandwidths_hz)) if self.bandwidths_hz else 0.0

    @property
    def slot_phase_s(self) -> float:
        return self.t_last_s % GSM_FRAME_S

    def pattern_db(self) -> FloatArray:
        """Mean relative level per sensor (NaN where never heard)."""
        return self.pattern

    def tech(self) -> str:
        known = [(n, t) for t, n in self.techs.items() if t != "unknown"]
        return max(known)[1] if known else "unknown"

    def channel(self) -> str | None:
        return self.channels.most_common(1)[0][0] if self.channels else None

    def observation(self, config: LocatorConfig) -> Observation:
        """What this transmission tells the locator (see :meth:`Observation.from_sums`)."""
        tech = self.tech()
        if tech == "unknown" and self.gsm_like and self.n_bursts >= 8:
            tech = "gsm"  # narrow, short and on one TDMA timeslot for 8 frames: GSM's power range
        return Observation.from_sums(self.freq_hz, self.n_heard, self.sum_db, self.sum_sq_db2, self.n_missed,
                                     self.missed_threshold_sum_db, self.n_clipped, self.clipped_sum_db, config, tech)

    def take_keys(self) -> list[tuple[str, float]]:
        """(sensor id, start time as the sensor reported it) of the detections that contributed
        since the last call, which forgets them: an hour-long call must not keep an hour of
        keys, and its event reports each detection once."""
        keys, self.keys = self.keys, []
        return keys


class TransmissionTracker:
    """Streaming grouping of bursts into transmissions (step 2 of the module notes)."""

    def __init__(self, sensors: SensorStates, config: CorrelatorConfig, locator_config: LocatorConfig) -> None:
        self.sensors = sensors
        self.config = config
        self.sigma_fading_db = locator_config.sigma_fading_db
        self.n_sensors = len(sensors.site.sensors)
        self.open: list[Transmission] = []
        self._by_channel: dict[int, list[Transmission]] = {}
        self._wide: list[Transmission] = []
        self._earliest_last_s = math.inf
        self._counter = 0
        self._chi2 = stats.chi2.ppf(config.pattern_quantile, np.arange(1, self.n_sensors + 2))

    # ------------------------------------------------------------ classification
    def is_gsm_like(self, group: BurstGroup) -> bool:
        """GSM by the detections' own label when they carry one, else by shape (narrow and short)."""
        n_gsm = n_other = 0.0
        for m in group.members:
            tech = m.detection.tech
            # a label read near the noise is a guess (a PUCCH slot 0-3 dB up looks GSM-sized):
            # one clear view outvotes several of them
            weight = 1.0 if m.snr_db >= _LABEL_RELIABLE_SNR_DB else _WEAK_LABEL_WEIGHT
            if tech == "gsm":
                n_gsm += weight
            elif tech != "unknown":
                n_other += weight
        if n_gsm or n_other:
            return n_gsm >= n_other
        cfg = self.config
        return group.bandwidth_hz <= cfg.gsm_max_bandwidth_hz and group.duration_s <= cfg.gsm_max_duration_s

    def _frequency_fits(self, tr: Transmission, group: BurstGroup, gsm_like: bool) -> bool:
        cfg = self.config
        if gsm_like != tr.gsm_like:
            return False
        if gsm_like:
            if abs(group.freq_hz - tr.freq_hz) > cfg.gsm_channel_tolerance_hz + cfg.freq_tolerance_hz:
                return False
            delta = (group.t_ref_s - tr.t_last_s) % GSM_FRAME_S
            return min(delta, GSM_FRAME_S - delta) <= cfg.gsm_slot_tolerance_s
        lo = group.freq_hz - group.bandwidth_hz / 2.0
        hi = group.freq_hz + group.bandwidth_hz / 2.0
        if hi < tr.freq_lo_hz - cfg.carrier_gap_hz or lo > tr.freq_hi_hz + cfg.carrier_gap_hz:
            return False
        return max(hi, tr.freq_hi_hz) - min(lo, tr.freq_lo_hz) <= cfg.max_carrier_span_hz

    def _labels_fit(self, tr: Transmission, group: BurstGroup) -> float | None:
        """What the sensors' own session ids say: None if most of them tell this burst from
        the transmission, 0.5 if some agree (a bonus on the pattern score), 1 if they are silent.
        Session ids are local to each sensor's classifier, so only one sensor's ids are compared."""
        agree = disagree = 0
        for m in group.members:
            session = m.detection.session_id
            known = tr.sessions.get(m.sensor)
            if session is None or known is None:
                continue
            if session == known:
                agree += 1
            else:
                disagree += 1
        if disagree > agree and tr.gsm_like:
            return None  # an LTE phone's allocations hop over its carrier: each sensor's classifier
            # may open a session per place, so for LTE only agreement is evidence
        return 0.5 if agree else 1.0

    def offset_and_mismatch(self, tr: Transmission, group: BurstGroup, levels: dict[int, float],
                            listening: npt.NDArray[np.bool_], thresholds: FloatArray) -> tuple[float, float, float]:
        """Power offset of a burst against a transmission, how badly its levels fit (a
        chi-square statistic over its quantile: below 1 fits; ``inf``: sensors contradict),
        and the cost of the burst under the transmission, to choose among those it fits.
        ``levels``: the burst's unclipped calibrated levels by sensor index.

        The cost is minus twice the log-likelihood of the burst's levels (constants dropped)
        minus twice the log of the transmission's burst count (its prior share of bursts):
        every level counts, a sensor the transmission never heard as a capped residual.
        The fit statistic alone cannot choose: a young transmission's pattern is uncertain,
        so every burst fits it loosely, and a 3-burst fragment would keep taking the bursts
        of the call beside it (measured on door antennas: fragments of 25-100 bursts)."""
        cfg = self.config
        pattern = tr.pattern
        common = [(s, level - pattern[s]) for s, level in levels.items() if tr.n_heard[s] > 0]
        if common:
            residual = sorted(r for _, r in common)
            mid = len(residual) // 2
            offset = residual[mid] if len(residual) % 2 else 0.5 * (residual[mid - 1] + residual[mid])
        else:
            offset = tr.last_offset_db
        if tr.n_bursts == 0:
            return offset, 0.0, 0.0
        score = 0.0
        cost = _TERM_CAP * (len(levels) - len(common)) - 2.0 * math.log(tr.n_bursts)
        if len(common) >= 2:
            sigma2 = self.sigma_fading_db**2
            chi2 = 0.0
            for s, r in common:
                # deep fades (Rayleigh's long lower tail) must not split a transmission: each
                # sensor's term is capped, so only a pattern off at several sensors fails
                inflation = 1.0 + 1.0 / tr.n_heard[s]  # the pattern's own uncertainty
                term = min((r - offset) ** 2 / (sigma2 * inflation), _TERM_CAP)
                chi2 += term
                cost += term + math.log(inflation)
            score = chi2 / float(self._chi2[len(common) - 2])
        # sensors hearing this burst far above their threshold, where the transmission was never heard
        n_loud = 0
        for s, level in levels.items():
            if tr.n_heard[s] == 0 and tr.n_missed[s] >= 1:
                if level - offset > tr.missed_threshold_sum_db[s] / tr.n_missed[s] + cfg.strong_margin_db:
                    n_loud += 1
        if n_loud >= _N_CONTRADICTING:
            return offset, math.inf, math.inf
        # sensors that always heard the transmission well above their threshold, but not this burst
        if tr.n_bursts >= 1:
            always = (tr.n_heard >= 1) & (tr.n_heard >= 0.9 * tr.n_listened) & listening
            if np.any(always):
                for m in group.members:
                    always[m.sensor] = False
                expected = pattern[always] + offset
                silent = np.flatnonzero(always)[expected > thresholds[always] + cfg.strong_margin_db]
                if silent.size >= _N_CONTRADICTING:
                    # not those whose own detection covers most of this burst (cut or merged
                    # differently there: their views went to another group)
                    box = self._overlap_box(group, 0.0)
                    n_silent = sum(1 for s in silent.tolist()
                                   if not self.sensors.busy(s, *box, min_overlap_s=0.5 * group.duration_s))
                    if n_silent >= _N_CONTRADICTING:
                        return offset, math.inf, math.inf
        return offset, score, cost

    def _overlap_box(self, group: BurstGroup, tolerance_s: float) -> tuple[float, float, float, float]:
        """(t0, t1, f0, f1): the burst's span widened by ``tolerance_s``, in which a sensor's own
        detection means it heard the burst, cut differently."""
        half_hz = group.bandwidth_hz / 2.0
        return (group.t_ref_s - tolerance_s, group.t_ref_s + group.duration_s + tolerance_s,
                group.freq_hz - half_hz, group.freq_hz + half_hz)

    # ------------------------------------------------------------ assignment
    def expire(self, before_s: float) -> list[Transmission]:
        """Close the transmissions whose last burst is older than ``before_s - transmission_gap_s``."""
        limit = before_s - self.config.transmission_gap_s
        if limit <= self._earliest_last_s:
            return []
        done = [tr for tr in self.open if tr.t_last_s < limit]
        if done:
            self.open = [tr for tr in self.open if tr.t_last_s >= limit]
            for tr in done:
                tr.closed = True
                bucket = self._by_channel.get(tr.index_key) if tr.gsm_like else self._wide
                if bucket is not None and tr in bucket:
                    bucket.remove(tr)
        self._earliest_last_s = min((tr.t_last_s for tr in self.open), default=math.inf)
        return done

    @staticmethod
    def _channel_key(freq_hz: float) -> int:
        return int(round(freq_hz / _CHANNEL_BUCKET_HZ))

    def _candidates(self, group: BurstGroup, gsm_like: bool) -> list[Transmission]:
        if not gsm_like:
            return self._wide
        key = self._channel_key(group.freq_hz)
        out: list[Transmission] = []
        for k in (key - 1, key, key + 1):
            out.extend(self._by_channel.get(k, ()))
        return out

    def assign(self, group: BurstGroup) -> Transmission:
        """Put a closed burst group into its transmission (a new one if none fits)."""
        cfg = self.config
        gsm_like = self.is_gsm_like(group)
        listening = self.sensors.listening(group.t_ref_s, group.freq_hz)
        thresholds = self.sensors.thresholds_dbm(group.bandwidth_hz)
        levels = {m.sensor: m.rssi_dbm for m in group.members if m.rssi_dbm is not None and not m.clipped}
        best: Transmission | None = None
        best_cost = math.inf
        best_offset = 0.0
        for tr in self._candidates(group, gsm_like):
            if group.t_ref_s - tr.t_last_s > cfg.transmission_gap_s:
                continue
            if not self._frequency_fits(tr, group, gsm_like):
                continue
            weight = self._labels_fit(tr, group)
            if weight is None:
                continue
            offset, score, cost = self.offset_and_mismatch(tr, group, levels, listening, thresholds)
            if score * weight > 1.0:
                continue
            cost += 2.0 * math.log(weight)  # session ids that agree are evidence too
            if cost < best_cost:
                best, best_cost, best_offset = tr, cost, offset
        if best is None:
            self._counter += 1
            best = Transmission(number=self._counter, n_sensors=self.n_sensors, gsm_like=gsm_like,
                                t_first_s=group.t_ref_s, t_last_s=group.t_ref_s, t_end_s=group.t_ref_s,
                                freq_lo_hz=group.freq_hz - group.bandwidth_hz / 2.0,
                                freq_hi_hz=group.freq_hz + group.bandwidth_hz / 2.0)
            self.open.append(best)
            self._earliest_last_s = min(self._earliest_last_s, best.t_last_s)
            if gsm_like:
                best.index_key = self._channel_key(group.freq_hz)
                self._by_channel.setdefault(best.index_key, []).append(best)
            else:
                self._wide.append(best)
            best_offset = 0.0
        self._add(best, group, best_offset, listening, thresholds)
        return best

    def _add(self, tr: Transmission, group: BurstGroup, offset: float,
             listening: npt.NDArray[np.bool_], thresholds: FloatArray) -> None:
        missed = listening.copy()
        for m in group.members:
            s = m.sensor
            missed[s] = False
            tr.n_listened[s] += 0.0 if listening[s] else 1.0
            d = m.detection
            tr.keys.append((d.sensor_id, d.t_start_s))
            if d.tech:
                tr.techs[d.tech] += 1
            if d.channel is not None:
                tr.channels[d.channel] += 1
            if d.session_id is not None:
                tr.sessions[s] = d.session_id
            if m.rssi_dbm is None:
                continue
            tr.rssi_sum_dbm[s] += m.rssi_dbm
            tr.n_rssi[s] += 1
            relative = m.rssi_dbm - offset
            if m.clipped:
                tr.n_clipped[s] += 1
                tr.clipped_sum_db[s] += relative
                continue
            k = tr.n_heard[s] + 1
            tr.n_heard[s] = k
            tr.sum_db[s] += relative
            tr.sum_sq_db2[s] += relative * relative
            tr.pattern[s] = tr.sum_db[s] / k
        if np.any(missed):
            box = self._overlap_box(group, self.config.burst_time_tolerance_s)
            for index in np.flatnonzero(missed):
                if self.sensors.busy(int(index), *box):
                    missed[index] = False  # cut differently there: neither heard nor missed
        tr.n_listened += listening
        tr.missed_threshold_sum_db += np.where(missed, thresholds - offset, 0.0)
        tr.n_missed += missed
        if tr.first is None:
            tr.first = group.best.detection
        group.transmission = tr
        group.offset_db = offset
        group.missed = missed
        group.thresholds_dbm = thresholds
        tr.last_offset_db = offset
        tr.n_bursts += 1
        t_ref = group.t_ref_s
        if t_ref < tr.t_first_s:
            tr.t_first_s = t_ref
        if t_ref > tr.t_last_s:
            tr.t_last_s = t_ref
        tr.t_end_s = max(tr.t_end_s, t_ref + group.duration_s)
        half = group.bandwidth_hz / 2.0
        tr.freq_lo_hz = min(tr.freq_lo_hz, group.freq_hz - half)
        tr.freq_hi_hz = max(tr.freq_hi_hz, group.freq_hz + half)
        tr.freq_sum_hz += group.freq_hz
        if len(tr.bandwidths_hz) < 256:
            tr.bandwidths_hz.append(group.bandwidth_hz)

    def add_late(self, group: BurstGroup, member: Member) -> Transmission | None:
        """A detection that arrived after its burst was handed on: move that sensor from
        'missed' to 'heard' in the burst's transmission."""
        tr = group.transmission
        if tr is None:
            return None
        s = member.sensor
        tr.keys.append((member.detection.sensor_id, member.detection.t_start_s))
        missed, thresholds = group.missed, group.thresholds_dbm
        if missed is not None and thresholds is not None and missed[s]:
            tr.missed_threshold_sum_db[s] -= thresholds[s] - group.offset_db
            tr.n_missed[s] -= 1
            missed[s] = False
        else:
            tr.n_listened[s] += 1
        if member.rssi_dbm is not None:
            tr.rssi_sum_dbm[s] += member.rssi_dbm
            tr.n_rssi[s] += 1
            if member.clipped:
                tr.n_clipped[s] += 1
                tr.clipped_sum_db[s] += member.rssi_dbm - group.offset_db
            else:
                relative = member.rssi_dbm - group.offset_db
                tr.n_heard[s] += 1
                tr.sum_db[s] += relative
                tr.sum_sq_db2[s] += relative * relative
                tr.pattern[s] = tr.sum_db[s] / tr.n_heard[s]
        return tr


class PatternTest:
    """Do two transmissions come from one phone? Their level patterns across sensors, after
    removing the power difference, must agree within fading and ``extra_sigma_db`` (what
    static fading on different carriers, or a phone moved a little, leaves), and no sensor
    may hear one loudly where the other was never heard."""

    def __init__(self, sigma_fading_db: float, extra_sigma_db: float, margin_db: float, quantile: float,
                 n_sensors: int) -> None:
        self.sigma_fading_db = sigma_fading_db
        self.extra_sigma_db = extra_sigma_db
        self.margin_db = margin_db
        self._chi2 = stats.chi2.ppf(quantile, np.arange(1, n_sensors + 2))

    def mismatch(self, a: Transmission, b: Transmission) -> float:
        """A chi-square statistic over its quantile (<= 1 agrees), ``inf`` on a contradiction."""
        pa, pb = a.pattern_db(), b.pattern_db()
        common = np.isfinite(pa) & np.isfinite(pb)
        n_common = int(np.count_nonzero(common))
        if n_common == 0:
            return 0.0 if (a.n_heard.sum() == 0 or b.n_heard.sum() == 0) else math.inf
        diff = sorted((pa[common] - pb[common]).tolist())
        mid = n_common // 2
        offset = diff[mid] if n_common % 2 else 0.5 * (diff[mid - 1] + diff[mid])
        score = 0.0
        if n_common >= 2:
            var = (self.sigma_fading_db**2 * (1.0 / a.n_heard[common] + 1.0 / b.n_heard[common])
                   + self.extra_sigma_db**2)
            terms = (pa[common] - pb[common] - offset) ** 2 / var
            score = float(terms.sum()) / float(self._chi2[n_common - 2])
        for x, y, shift in ((a, b, -offset), (b, a, offset)):
            loud = (x.n_heard >= 3) & (y.n_heard == 0) & (y.n_missed >= 5)
            if np.any(loud):
                level = x.pattern_db()[loud] + shift  # in y's reference
                floor = y.missed_threshold_sum_db[loud] / y.n_missed[loud]
                if np.any(level > floor + self.margin_db):
                    return math.inf
        return score


def member_from(detection: Detection, sensors: SensorStates, index: int) -> Member:
    """A detection on the common clock and frequency scale, with its calibrated level."""
    t_s, freq_hz = sensors.corrected(index, detection)
    return Member(sensor=index, t_s=t_s, freq_hz=freq_hz, bandwidth_hz=detection.bandwidth_hz,
                  duration_s=detection.duration_s, snr_db=detection.snr_db,
                  rssi_dbm=sensors.calibration.rssi_dbm(detection), clipped="clipped" in detection.flags,
                  detection=detection, offset_s=sensors.clock_offset_s[index])


def sensor_report(tr_list: Sequence[Transmission], site: Site) -> list[dict[str, Any]]:
    """The event record's ``sensors`` list: mean calibrated level and burst count per sensor that heard."""
    n = len(site.sensors)
    total = np.zeros(n)
    count = np.zeros(n)
    for tr in tr_list:
        total += tr.rssi_sum_dbm
        count += tr.n_rssi
    out = []
    for s in np.flatnonzero(count > 0):
        out.append({"sensor_id": site.sensors[s].id, "rssi_dbm": round(float(total[s] / count[s]), 2),
                    "n_bursts": int(count[s])})
    return out
