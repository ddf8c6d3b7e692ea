"""Band plan and scanning schedule: which 2.4 MHz slice each dongle watches, when.

One RTL-SDR sees 2.4 MHz; the uplink bands a French phone uses span 176 MHz. A node
therefore hops: each band is cut into *channels* of at most ``usable_width_hz`` (2.0 MHz
of the 2.4 MS/s by default: the outer 200 kHz on each side sit in the dongle's
anti-alias roll-off), and a dongle visits its channels in turn, spending ``settle_s``
while the tuner settles (the source discards those samples) and ``dwell_s`` watching.
A node with several dongles splits the channels between them (contiguous frequency
ranges of balanced cycle time); a dongle can also be pinned to bands, or to one fixed
frequency (no scanning).

**Aligned to UTC.** A schedule is a function of UTC time: visit ``i`` of a dongle
occupies ``[k·cycle_s + offset_i, k·cycle_s + offset_i + settle_s + dwell_s)`` for every
integer ``k``. Every node of a site with the same plan and number of dongles therefore
watches the same channel at the same moment (given NTP), which is what lets the service
compare one burst's power across sensors to place the phone.

**Per band**, :func:`band_coverage` gives the *revisit time* (the cycle of the dongle
watching it: how long a channel waits between two looks) and the *watched fraction*
(the share of band × time watched: a frequency of the band is watched that fraction of
the time). :func:`first_detection` estimates, for a phone activity of
:data:`ACTIVITIES`, the probability that the node sees at least one of its bursts and
the time from the activity's start to the end of the first burst watched, averaged over
a uniformly random start time (an exact grid over the cycle, no random draws).

**Defaults and why** (:data:`DEFAULT_BANDS`, ``DEFAULT_DWELL_S`` 0.05 s,
``DEFAULT_SETTLE_S`` 0.02 s). What a dwell must catch:

* a GSM call sends one normal burst per TDMA frame (4.615 ms, 25 of the 26 frames of
  the traffic multiframe, TS 45.002 §7 table 1): any dwell catches it, so its
  detection time is about half a revisit;
* an SMS from a 2G phone (the "mini phones" sold to detainees are GSM-only) travels on
  an SDCCH/8 sub-channel for 2-3 s: 4 bursts in consecutive frames once per
  51-multiframe (235.4 ms, TS 45.002 §6.4.1 and annex table 4). A visit sure to hold
  one burst lasts 235.4 - 3·4.615 + 0.577 = 222 ms: hence GSM-900's weight 4.6
  (0.23 s), the one long dwell of the plan; the same setup signalling precedes a call;
* LTE in RRC-connected mode (data, VoLTE, SMS over LTE) transmits at least every
  20 ms (periodic CQI on PUCCH, TS 36.213 §7.2.2, besides data and SRS) and stays
  connected for the ~10 s of the network's inactivity timer after the last packet:
  two periods, 0.05 s, suffice; the three LTE bands B20, B28 (800/700 MHz, the
  coverage layers that reach indoors) and B3 (also DCS-1800 GSM) get the short dwell.

With one dongle, 76 channels give an 8.56 s cycle: a GSM call is seen after 4.2 s on
average (8.6 s at worst); an LTE session in any band after 4.2 s (probability 1); a 2.5 s
GSM-900 SMS with probability 0.30 only (it is over before most channels come round).
Two dongles halve the cycles (4.35 and 4.21 s: calls after 2.1 s, SMS 0.61); four give
2.0-2.25 s (calls after 1.0 s, and two dongles on GSM-900 alone catch every SMS).
Restricting GSM-900 to the ARFCNs the operators still run as 2G cuts its share of the
cycle most. ``cellwatch node --check`` prints these figures for any config. (At start a
node first visits each channel once for as long as its detector needs to learn the
noise floor, ~0.3 s: see :mod:`sdr.node`.)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dsp.errors import InputError

DEFAULT_USABLE_WIDTH_HZ = 2_000_000  # of 2.4 MS/s: keep the anti-alias roll-off out
DEFAULT_DWELL_S = 0.05
DEFAULT_SETTLE_S = 0.02  # R820T PLL lock and the USB command; rtl_tcp sources settle 0.05 s themselves
MIN_CENTER_FREQ_HZ = 24_000_000  # R820T/R828D tuning range
MAX_CENTER_FREQ_HZ = 1_766_000_000

GSM_FRAME_S = 120e-3 / 26  # TS 45.002 §4.3.1: 4.615 ms
GSM_51_MULTIFRAME_S = 51 * GSM_FRAME_S  # 235.4 ms
GSM_SLOT_S = 15.0 / 26.0 * 1e-3  # 577 µs
SDCCH_CATCH_DWELL_S = GSM_51_MULTIFRAME_S - 3 * GSM_FRAME_S + GSM_SLOT_S  # 222 ms


@dataclass(frozen=True, slots=True)
class Band:
    """An uplink band (or the part of it a node should watch) and the dwell per visit of its channels."""

    name: str
    low_hz: int
    high_hz: int
    dwell_s: float = DEFAULT_DWELL_S

    @property
    def width_hz(self) -> int:
        return self.high_hz - self.low_hz

    def contains(self, freq_hz: float) -> bool:
        return self.low_hz <= freq_hz < self.high_hz


# Weights over DEFAULT_DWELL_S: GSM-900 long enough to be sure of one SDCCH burst per visit.
DEFAULT_BAND_WEIGHTS: dict[str, float] = {"B28": 1.0, "B20": 1.0, "GSM-900": 4.6, "B3": 1.0}
DEFAULT_BANDS: tuple[Band, ...] = (
    Band("B28", 703_000_000, 733_000_000, DEFAULT_DWELL_S * DEFAULT_BAND_WEIGHTS["B28"]),
    Band("B20", 832_000_000, 862_000_000, DEFAULT_DWELL_S * DEFAULT_BAND_WEIGHTS["B20"]),
    Band("GSM-900", 880_000_000, 915_000_000, DEFAULT_DWELL_S * DEFAULT_BAND_WEIGHTS["GSM-900"]),
    Band("B3", 1_710_000_000, 1_766_000_000, DEFAULT_DWELL_S * DEFAULT_BAND_WEIGHTS["B3"]),  # DCS-1800 to the R820T's limit
)


@dataclass(frozen=True, slots=True)
class Channel:
    """One tuning: ``center_freq_hz`` (integer Hz, what the tuner is asked for) and the slice it covers."""

    band: str
    index: int  # within its band, from the low edge
    center_freq_hz: int
    low_hz: float
    high_hz: float
    dwell_s: float

    @property
    def width_hz(self) -> float:
        return self.high_hz - self.low_hz


def channelize(band: Band, usable_width_hz: float = DEFAULT_USABLE_WIDTH_HZ) -> list[Channel]:
    """Cut ``band`` into the fewest equal channels no wider than ``usable_width_hz``."""
    if usable_width_hz <= 0:
        raise ValueError("usable_width_hz must be positive")
    n = max(1, math.ceil(band.width_hz / usable_width_hz - 1e-9))
    width = band.width_hz / n
    out = []
    for k in range(n):
        low = band.low_hz + k * width
        out.append(Channel(band.name, k, int(round(low + width / 2.0)), low, low + width, band.dwell_s))
    return out


@dataclass(frozen=True, slots=True)
class Visit:
    """One stop of a schedule: tune at ``offset_s`` into the cycle, settle, then watch ``channel``."""

    channel: Channel
    offset_s: float
    settle_s: float

    @property
    def dwell_s(self) -> float:
        return self.channel.dwell_s

    @property
    def slot_s(self) -> float:
        return self.settle_s + self.channel.dwell_s

    @property
    def watch_start_s(self) -> float:
        return self.offset_s + self.settle_s

    @property
    def end_s(self) -> float:
        return self.offset_s + self.slot_s


@dataclass(frozen=True)
class ScanSchedule:
    """A dongle's cycle through its channels, aligned to UTC (see the module docstring).

    A schedule of one channel is a *fixed tuning*: it never retunes (``cycle_s`` is 0 and
    the channel is watched all the time).
    """

    visits: tuple[Visit, ...]
    cycle_s: float
    _offsets: list[float] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def scanning(cls, channels: Sequence[Channel], settle_s: float = DEFAULT_SETTLE_S) -> ScanSchedule:
        if not channels:
            raise ValueError("a schedule needs at least one channel")
        if len(channels) == 1:
            return cls.fixed(channels[0])
        visits, t = [], 0.0
        for channel in channels:
            visits.append(Visit(channel, t, settle_s))
            t += settle_s + channel.dwell_s
        return cls(tuple(visits), t, [v.offset_s for v in visits])

    @classmethod
    def fixed(cls, channel: Channel) -> ScanSchedule:
        return cls((Visit(channel, 0.0, 0.0),), 0.0, [0.0])

    @property
    def is_fixed(self) -> bool:
        return len(self.visits) == 1

    @property
    def channels(self) -> list[Channel]:
        return [v.channel for v in self.visits]

    def visit_at(self, t_s: float) -> tuple[int, float]:
        """``(visit index, UTC time the visit's slot ends)`` for UTC time ``t_s``."""
        if self.is_fixed:
            return 0, math.inf
        position = t_s % self.cycle_s
        i = max(0, bisect.bisect_right(self._offsets, position) - 1)
        return i, t_s + max(self.visits[i].end_s - position, 0.0)

    def visit_to_tune(self, t_s: float, current_freq_hz: int | None) -> tuple[int, float]:
        """``(visit index, UTC slot end)`` a dongle on ``current_freq_hz`` should be on at ``t_s``.

        The slot at ``t_s``, unless reaching it needs a retune whose settling outlasts the
        slot (a late hop, or the end of the warm-up pass): then the next slot, so that
        every channel is only ever watched inside its UTC windows, when the other
        sensors of the site watch it too.
        """
        index, end_s = self.visit_at(t_s)
        visit = self.visits[index]
        if visit.channel.center_freq_hz != current_freq_hz and t_s + visit.settle_s >= end_s:
            index = (index + 1) % len(self.visits)
            end_s += self.visits[index].slot_s
        return index, end_s

    def watch_windows(self, channel: Channel) -> list[tuple[float, float]]:
        """``[(start, end)]`` within ``[0, cycle_s)`` when ``channel`` is watched (settled)."""
        return [(v.watch_start_s, v.end_s) for v in self.visits if v.channel == channel]

    @property
    def duty(self) -> float:
        """Fraction of the cycle spent watching (the rest settles)."""
        if self.is_fixed:
            return 1.0
        return sum(v.dwell_s for v in self.visits) / self.cycle_s


def split_channels(channels: Sequence[Channel], n_parts: int, settle_s: float = DEFAULT_SETTLE_S) -> list[list[Channel]]:
    """Cut ``channels`` (in order) into ``n_parts`` contiguous runs minimizing the longest cycle.

    Contiguous runs keep each dongle in a few neighbouring bands; the exact optimum is a
    small dynamic programme (channels x parts).
    """
    m = len(channels)
    if n_parts < 1:
        raise ValueError("n_parts must be >= 1")
    if n_parts > m:
        raise ValueError(f"{n_parts} dongles for {m} channels: give some dongles a fixed frequency or fewer bands")
    cost = np.concatenate(([0.0], np.cumsum([settle_s + c.dwell_s for c in channels])))
    best = np.full((n_parts + 1, m + 1), np.inf)
    cut = np.zeros((n_parts + 1, m + 1), dtype=int)
    best[0, 0] = 0.0
    for p in range(1, n_parts + 1):
        for j in range(p, m - (n_parts - p) + 1):
            starts = np.arange(p - 1, j)
            candidates = np.maximum(best[p - 1, starts], cost[j] - cost[starts])
            k = int(np.argmin(candidates))
            best[p, j], cut[p, j] = candidates[k], starts[k]
    parts: list[list[Channel]] = []
    j = m
    for p in range(n_parts, 0, -1):
        i = int(cut[p, j])
        parts.append(list(channels[i:j]))
        j = i
    return parts[::-1]


@dataclass(frozen=True, slots=True)
class BandCoverage:
    """How well a node's schedules watch one band."""

    band: str
    n_channels: int  # channels of the band that some dongle visits
    watched_fraction: float  # share of band x time watched
    revisit_s: float  # longest wait between two looks at one of its channels (0: always watched)


def band_coverage(band: Band, schedules: Iterable[ScanSchedule]) -> BandCoverage:
    """Watched fraction and revisit time of ``band`` under ``schedules`` (one per dongle).

    A channel watched ``dwell_s`` per ``cycle_s`` over ``w`` Hz of the band contributes
    ``w·dwell_s / (cycle_s·W)``; a fixed tuning contributes ``w/W`` (clipped to the band).
    """
    watched, revisit, n = 0.0, 0.0, 0
    for schedule in schedules:
        for visit in schedule.visits:
            c = visit.channel
            overlap = max(0.0, min(c.high_hz, band.high_hz) - max(c.low_hz, band.low_hz))
            if overlap <= 0:
                continue
            n += 1
            share = 1.0 if schedule.is_fixed else visit.dwell_s / schedule.cycle_s
            watched += overlap * share / band.width_hz
            revisit = max(revisit, 0.0 if schedule.is_fixed else schedule.cycle_s)
    return BandCoverage(band.name, n, min(watched, 1.0), revisit)


# ---------------------------------------------------------------------------------------------
# expected time to first detection


@dataclass(frozen=True, slots=True)
class Activity:
    """What a phone sends, as a periodic pattern of bursts over ``duration_s``.

    Bursts start at ``k·period_s + offsets_s[j]`` (``k = 0, 1, ...``) and last ``burst_s``.
    """

    name: str
    period_s: float
    offsets_s: tuple[float, ...]
    burst_s: float
    duration_s: float
    note: str

    def burst_starts_s(self, horizon_s: float) -> np.ndarray:
        end = min(self.duration_s, horizon_s)
        k = np.arange(int(math.ceil(end / self.period_s)) + 1)
        starts = (k[:, None] * self.period_s + np.asarray(self.offsets_s)[None, :]).ravel()
        return np.sort(starts[starts + self.burst_s <= end])


ACTIVITIES: dict[str, Activity] = {
    "gsm_call": Activity(
        "gsm_call", 26 * GSM_FRAME_S, tuple(i * GSM_FRAME_S for i in range(25)), GSM_SLOT_S, 60.0,
        "TCH/F: a normal burst in 25 of the 26 frames of the traffic multiframe (TS 45.002 §7 table 1)"),
    "gsm_sms": Activity(
        "gsm_sms", GSM_51_MULTIFRAME_S, tuple(i * GSM_FRAME_S for i in range(4)), GSM_SLOT_S, 2.5,
        "SDCCH/8: 4 bursts in consecutive frames per 51-multiframe, for the 2-3 s an SMS takes"),
    "lte_data": Activity(
        "lte_data", 0.020, (0.0,), 1e-3, 10.0,
        "RRC connected: a 1 ms subframe at least every 20 ms (periodic CQI, TS 36.213 §7.2.2) "
        "for the ~10 s inactivity timer"),
}


@dataclass(frozen=True, slots=True)
class DetectionEstimate:
    """Chance that some burst of an activity is watched, and when the first one ends."""

    activity: str
    p_detect: float
    mean_s: float | None  # mean time from the activity's start to the end of the first burst watched
    p90_s: float | None  # 90th percentile of that time (among activities detected)


def first_detection(schedule: ScanSchedule, channel: Channel, activity: Activity,
                    n_phases: int = 1000) -> DetectionEstimate:
    """Estimate for an ``activity`` on ``channel`` when the phone starts at a uniformly random time.

    A burst counts as watched when it lies wholly inside one of the channel's watch
    windows. Exact on a grid of ``n_phases`` start times over the cycle (vectorized over
    bursts); detection latency of the node itself (up to a dwell plus 1 s) is not
    included.
    """
    if schedule.is_fixed:
        first = activity.burst_starts_s(activity.duration_s)
        t = float(first[0] + activity.burst_s) if first.size else None
        return DetectionEstimate(activity.name, 1.0 if first.size else 0.0, t, t)
    cycle = schedule.cycle_s
    windows = schedule.watch_windows(channel)
    if not windows:
        return DetectionEstimate(activity.name, 0.0, None, None)
    starts = activity.burst_starts_s(min(activity.duration_s, 3.0 * cycle + 1.0))
    if starts.size == 0:
        return DetectionEstimate(activity.name, 0.0, None, None)
    phases = (np.arange(n_phases) + 0.5) / n_phases * cycle
    first_end = np.full(n_phases, np.inf)
    chunk = max(1, 2_000_000 // starts.size)
    for lo in range(0, n_phases, chunk):
        t = np.mod(phases[lo:lo + chunk, None] + starts[None, :], cycle)  # (phases, bursts)
        seen = np.zeros(t.shape, dtype=bool)
        for w0, w1 in windows:
            seen |= (t >= w0) & (t + activity.burst_s <= w1)
        any_seen = seen.any(axis=1)
        idx = np.argmax(seen, axis=1)
        first_end[lo:lo + chunk] = np.where(any_seen, starts[idx] + activity.burst_s, np.inf)
    detected = np.isfinite(first_end)
    if not detected.any():
        return DetectionEstimate(activity.name, 0.0, None, None)
    times = first_end[detected]
    return DetectionEstimate(activity.name, float(detected.mean()), float(times.mean()),
                             float(np.quantile(times, 0.9)))


# ---------------------------------------------------------------------------------------------
# a node's plan


@dataclass(frozen=True)
class BandPlan:
    """Bands to watch and how to hop across them; :meth:`schedules` assigns them to dongles."""

    bands: tuple[Band, ...] = DEFAULT_BANDS
    usable_width_hz: float = DEFAULT_USABLE_WIDTH_HZ
    settle_s: float = DEFAULT_SETTLE_S

    def __post_init__(self) -> None:
        names = [b.name for b in self.bands]
        for i, band in enumerate(self.bands):
            if names.index(band.name) != i:
                raise InputError(None, f"bands[{i}].name", f"duplicate band {band.name!r}")
            if band.high_hz <= band.low_hz:
                raise InputError(None, f"bands[{i}].high_mhz", "must be above low_mhz")
            if band.dwell_s <= 0:
                raise InputError(None, f"bands[{i}].weight", "the dwell must be positive")
            for c in channelize(band, self.usable_width_hz):
                if not MIN_CENTER_FREQ_HZ <= c.center_freq_hz <= MAX_CENTER_FREQ_HZ:
                    raise InputError(None, f"bands[{i}]", f"channel at {c.center_freq_hz / 1e6:.3f} MHz is outside "
                                     f"the RTL-SDR tuner's {MIN_CENTER_FREQ_HZ / 1e6:.0f}-{MAX_CENTER_FREQ_HZ / 1e6:.0f} MHz")
        if self.usable_width_hz <= 0:
            raise InputError(None, "scan.usable_width_hz", "must be positive")
        if self.settle_s < 0:
            raise InputError(None, "scan.settle_s", "must not be negative")

    def band(self, name: str) -> Band:
        for band in self.bands:
            if band.name == name:
                return band
        raise KeyError(name)

    def channels(self, names: Iterable[str] | None = None) -> list[Channel]:
        wanted = None if names is None else set(names)
        return [c for b in self.bands if wanted is None or b.name in wanted for c in channelize(b, self.usable_width_hz)]

    def band_of(self, freq_hz: float) -> Band | None:
        for band in self.bands:
            if band.contains(freq_hz):
                return band
        return None

    def fixed_channel(self, center_freq_hz: int, sample_rate_hz: float) -> Channel:
        """The slice a dongle fixed at ``center_freq_hz`` watches, named after the band holding it."""
        width = min(self.usable_width_hz, sample_rate_hz)
        band = self.band_of(center_freq_hz)
        name = band.name if band is not None else f"{center_freq_hz / 1e6:.3f}MHz"
        return Channel(name, 0, int(center_freq_hz), center_freq_hz - width / 2, center_freq_hz + width / 2, math.inf)

    def schedules(self, n_scanning: int, pinned: Sequence[Sequence[str]] = ()) -> tuple[list[ScanSchedule], list[ScanSchedule]]:
        """Schedules for ``pinned`` dongles (each its own bands) and ``n_scanning`` others sharing the rest."""
        pinned_schedules = [ScanSchedule.scanning(self.channels(names), self.settle_s) for names in pinned]
        taken = {name for names in pinned for name in names}
        rest = [c for c in self.channels() if c.band not in taken]
        shared: list[ScanSchedule] = []
        if n_scanning and rest:
            shared = [ScanSchedule.scanning(part, self.settle_s) for part in split_channels(rest, n_scanning, self.settle_s)]
        return pinned_schedules, shared

    def coverage(self, schedules: Sequence[ScanSchedule]) -> list[BandCoverage]:
        """Coverage of every band of the plan, plus the bands of fixed tunings outside it."""
        out = [band_coverage(b, schedules) for b in self.bands]
        known = {b.name for b in self.bands}
        for schedule in schedules:
            if schedule.is_fixed and schedule.channels[0].band not in known:
                c = schedule.channels[0]
                out.append(BandCoverage(c.band, 1, 1.0, 0.0))
        return out


def describe(plan: BandPlan, schedules: Sequence[ScanSchedule], activities: Sequence[str] = tuple(ACTIVITIES)) -> str:
    """A table of the plan: per dongle its cycle; per band channels, dwell, revisit, watched
    fraction and the expected first detection of each activity (for ``cellwatch node --check``)."""
    lines = []
    for i, s in enumerate(schedules):
        if s.is_fixed:
            c = s.channels[0]
            lines.append(f"source {i}: fixed at {c.center_freq_hz / 1e6:.3f} MHz ({c.band})")
        else:
            bands = sorted({c.band for c in s.channels}, key=[c.band for c in s.channels].index)
            lines.append(f"source {i}: {len(s.visits)} channels ({', '.join(bands)}), cycle {s.cycle_s:.2f} s, "
                         f"watching {100 * s.duty:.0f} % of it")
    header = f"{'band':<10} {'MHz':>11} {'ch':>3} {'dwell s':>7} {'revisit s':>9} {'watched':>7}"
    for name in activities:
        header += f" {name + ' P / mean s':>22}"
    lines.append(header)
    for cov in plan.coverage(schedules):
        try:
            band = plan.band(cov.band)
            span = f"{band.low_hz / 1e6:.0f}-{band.high_hz / 1e6:.0f}"
            dwell = f"{band.dwell_s:7.3f}"
        except KeyError:
            span, dwell = "fixed", "      -"
        row = f"{cov.band:<10} {span:>11} {cov.n_channels:>3} {dwell} {cov.revisit_s:9.2f} {100 * cov.watched_fraction:6.1f}%"
        for name in activities:
            estimate = band_estimate(plan, cov.band, schedules, ACTIVITIES[name])
            if estimate is None or estimate.mean_s is None:
                row += f" {'-':>22}"
            else:
                row += f" {estimate.p_detect:>13.2f} / {estimate.mean_s:5.1f}"
        lines.append(row)
    return "\n".join(lines)


def band_estimate(plan: BandPlan, band: str, schedules: Sequence[ScanSchedule], activity: Activity) -> DetectionEstimate | None:
    """The estimate for a phone anywhere in ``band`` (uniformly in frequency), None if no dongle watches it.

    Averaged over the dongles watching parts of the band, each weighted by the width it
    watches over the band's width (a phone outside every channel is never seen); channels
    of one band share dwell and cycle, so one channel per dongle stands for the others.
    """
    parts = []
    for schedule in schedules:
        channels = [c for c in schedule.channels if c.band == band]
        if channels:
            parts.append((sum(c.width_hz for c in channels), first_detection(schedule, channels[0], activity)))
    if not parts:
        return None
    try:
        band_width = float(plan.band(band).width_hz)
    except KeyError:  # a fixed tuning outside the plan's bands is its own band
        band_width = sum(w for w, _ in parts)
    p = min(1.0, sum(min(w, band_width) * e.p_detect for w, e in parts) / band_width)
    seen = [(w * e.p_detect, e) for w, e in parts if e.mean_s is not None and e.p_detect > 0]
    if not seen:
        return DetectionEstimate(activity.name, p, None, None)
    weight = sum(w for w, _ in seen)
    mean = sum(w * e.mean_s for w, e in seen if e.mean_s is not None) / weight
    p90 = max(e.p90_s for _, e in seen if e.p90_s is not None)
    return DetectionEstimate(activity.name, p, mean, p90)
