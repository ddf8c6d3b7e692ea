"""Events shown to staff: located transmissions, merged per phone and place, with an alert priority.

:class:`EventEngine` is the one pipeline behind ``cellwatch locate`` (a file of
detections, then :meth:`EventEngine.flush`) and the service (detections as nodes
deliver them, :meth:`EventEngine.flush` with the stream clock now and then):

    detections ─▶ bursts ─▶ transmissions ─▶ posterior over places ─▶ events
                 (service.correlate)          (service.locate)

**Events.** A transmission is located when it ends (and, live, while it grows: after
its first few bursts, then each time its burst count has grown by half or
``relocate_interval_s`` of it has passed). It joins an open event of the same place
(the event's last burst within ``event_gap_s``), so a phone that sends an SMS and then
calls, or a GSM call's access bursts, set-up and traffic, is one event; a small
transmission (a few access bursts) also joins an event its posterior finds plausible
on the same wing and floor. Phones in different places are different events, also
when they share a channel. An event reports the posterior of its largest
transmission; an updated event keeps its ``event_id``.

**Alert policy** (``alerts``: place kind -> priority, configurable from a service's
``[alerts]`` table): a phone in a cell is an ``alert``; in a staff office it is
``staff`` (logged, not an alert, so staff phones do not flood the dashboard); yard,
outside and patrol path are ``low``; corridor and stairwell ``medium`` (a detainee's
phone can be carried there, a guard's too). Kinds the table does not name get
``default_priority``. A street phone is located on the street zone (the locator's
transmit-power prior makes "weak and even at every sensor" a street, not a cell), so
it is ``low`` and never blamed on a cell.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from calibration.gain import CalibrationTable
from calibration.site import Site
from dsp.errors import InputError
from dsp.records import Detection
from service.correlate import (
    BurstGrouper,
    CorrelatorConfig,
    PatternTest,
    SensorStates,
    Transmission,
    TransmissionTracker,
    member_from,
    sensor_report,
)
from service.locate import Locator, LocatorConfig, Observation, Posterior, Survey, load_survey

log = logging.getLogger(__name__)

DEFAULT_ALERTS: dict[str, str] = {
    "cell": "alert",
    "staff": "staff",
    "corridor": "medium",
    "stairwell": "medium",
    "yard": "low",
    "outside": "low",
    "patrol": "low",
}


_LATENESS_MEMORY_S = 30.0  # a sensor silent this long no longer sets the wait
_LATENESS_MARGIN_S = 0.25
_LATENESS_DECAY = 0.05  # per batch from that sensor


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine can be told; each part validates itself (errors name ``<part>.<key>``).

    ``correlation`` and ``locator`` accept their dataclass or a mapping of its fields;
    ``alerts`` maps place kinds to priorities over :data:`DEFAULT_ALERTS`.
    """

    correlation: CorrelatorConfig = field(default_factory=CorrelatorConfig)
    locator: LocatorConfig = field(default_factory=LocatorConfig)
    alerts: Mapping[str, str] = field(default_factory=dict)
    default_priority: str = "medium"
    event_gap_s: float = 60.0
    live_updates: bool = True
    min_event_bursts: int = 3
    relocate_growth: float = 1.5
    relocate_interval_s: float = 2.0
    # live, nodes deliver late by different amounts (batching, links, a slow node): a burst
    # waits for the slowest sensor's usual lateness (fast rise, slow decay), up to this
    # (at most correlation.late_grace_s), so its group is complete when it is handed on
    max_group_wait_s: float = 4.0
    merge_min_probability: float = 0.1
    merge_pattern_sigma_db: float = 2.0
    merge_pattern_quantile: float = 0.99
    # empirical Bayes: the static sigma (shadowing + plan error) with the most evidence over
    # the site's own finished transmissions, from this grid; the locator's sigma until then
    learn_sigma: bool = True
    sigma_grid_db: tuple[float, ...] = (3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
    sigma_min_transmissions: int = 20
    sigma_sample_every: int = 2
    sigma_memory: int = 2000  # transmissions: older evidence fades with this time constant

    def __post_init__(self) -> None:
        if isinstance(self.correlation, Mapping):
            object.__setattr__(self, "correlation", CorrelatorConfig.from_dict(self.correlation))
        if isinstance(self.locator, Mapping):
            object.__setattr__(self, "locator", LocatorConfig.from_dict(self.locator))
        if not isinstance(self.correlation, CorrelatorConfig):
            raise InputError(None, "correlation", "expected a table")
        if not isinstance(self.locator, LocatorConfig):
            raise InputError(None, "locator", "expected a table")
        if not isinstance(self.alerts, Mapping):
            raise InputError(None, "alerts", "expected a table of place kind = priority")
        for kind, priority in self.alerts.items():
            if not isinstance(kind, str) or not kind or not isinstance(priority, str) or not priority:
                raise InputError(None, f"alerts.{kind}", "expected a non-empty priority string")
        object.__setattr__(self, "alerts", {**DEFAULT_ALERTS, **dict(self.alerts)})
        if not isinstance(self.default_priority, str) or not self.default_priority:
            raise InputError(None, "default_priority", "expected a non-empty string")
        if not (isinstance(self.max_group_wait_s, int | float) and 0.0 <= self.max_group_wait_s
                <= self.correlation.late_grace_s):
            raise InputError(None, "max_group_wait_s", "must lie in [0, correlation.late_grace_s]")
        for name in ("event_gap_s", "relocate_interval_s", "merge_pattern_sigma_db"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise InputError(None, name, "expected a non-negative number")
        if not (isinstance(self.relocate_growth, int | float) and self.relocate_growth > 1.0):
            raise InputError(None, "relocate_growth", "must be a number above 1")
        for name in ("min_event_bursts",):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(None, name, "must be an integer >= 1")
        if not 0.5 < self.merge_pattern_quantile < 1.0:
            raise InputError(None, "merge_pattern_quantile", "must lie in (0.5, 1)")
        if not 0.0 <= self.merge_min_probability <= 1.0:
            raise InputError(None, "merge_min_probability", "must lie in [0, 1]")
        if not isinstance(self.live_updates, bool):
            raise InputError(None, "live_updates", "expected true or false")
        if not isinstance(self.learn_sigma, bool):
            raise InputError(None, "learn_sigma", "expected true or false")
        grid = tuple(self.sigma_grid_db)
        if not grid or not all(isinstance(x, int | float) and 0.5 <= x <= 30.0 for x in grid):
            raise InputError(None, "sigma_grid_db", "expected a list of sigmas in [0.5, 30] dB")
        object.__setattr__(self, "sigma_grid_db", tuple(float(x) for x in grid))
        for name in ("sigma_min_transmissions", "sigma_sample_every", "sigma_memory"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(None, name, "must be an integer >= 1")

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], source: str | None = None) -> EngineConfig:
        """From a parsed table (``[correlation]``, ``[locator]``, ``[alerts]`` and the scalars)."""
        known = {f.name for f in fields(cls)}
        for key in table:
            if key not in known:
                raise InputError(source, key, "unknown key")
        try:
            return cls(**dict(table))
        except InputError as exc:
            raise exc.with_source(source) if source else exc from None

    def priority(self, place_kind: str) -> str:
        return self.alerts.get(place_kind, self.default_priority)


@dataclass
class Event:
    """DESIGN.md's event record plus what the service shows beside it."""

    event_id: str
    t_start_s: float
    t_end_s: float
    tech: str
    freq_hz: float
    n_bursts: int
    sensors: list[dict[str, Any]]
    wing: str | None
    floor: int | None
    cell: str | None
    zone: str | None
    confidence: float
    candidates: list[dict[str, Any]]
    place_kind: str
    priority: str
    channel: str | None
    session_ids: list[str]
    detection_keys: list[tuple[str, float]]  # detections gained since the event's previous revision
    n_detections: int = 0  # detections of every revision
    tx_power_dbm: float | None = None
    wing_floor_confidence: float | None = None
    transmissions: list[dict[str, Any]] = field(default_factory=list)
    revision: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON Lines form: DESIGN.md's fields, then the extras (no detection keys: see
        :attr:`detection_keys` for which detections contributed)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "detection_keys"}


@dataclass(eq=False)
class _EventState:
    event_id: str
    transmissions: list[Transmission]
    revision: int = 0
    n_detections: int = 0  # keys reported so far

    @property
    def t_end_s(self) -> float:
        return max((tr.t_end_s for tr in self.transmissions), default=-math.inf)

    def dominant(self) -> Transmission:
        located = [tr for tr in self.transmissions if tr.posterior is not None]
        return max(located or self.transmissions, key=lambda tr: (tr.n_bursts, -tr.number))

    def place(self) -> int | None:
        post = self.dominant().posterior
        return None if post is None else post.best


def _event_id(tr: Transmission) -> str:
    first = tr.first
    assert first is not None, "a transmission has at least one burst"
    digest = hashlib.sha1(f"{first.sensor_id}|{first.t_start_s:.7f}|{first.freq_hz:.1f}".encode()).hexdigest()
    return f"ev-{digest[:16]}"


class EventEngine:
    """Detections in, events out; see the module notes. Not thread-safe: one feeder at a time."""

    def __init__(self, site: Site, *, calibration: CalibrationTable | None = None,
                 survey: Survey | str | Path | None = None, config: EngineConfig | None = None) -> None:
        self.site = site
        self.config = config or EngineConfig()
        if isinstance(survey, str | Path):
            survey = load_survey(survey, site)
        self.locator = Locator(site, self.config.locator, survey=survey)
        self.calibration = calibration or CalibrationTable()
        self.sensors = SensorStates(site, self.calibration, self.config.correlation, self.config.locator)
        self.grouper = BurstGrouper(self.config.correlation)
        self.tracker = TransmissionTracker(self.sensors, self.config.correlation, self.config.locator)
        self._open_events: list[_EventState] = []
        self._event_of: dict[int, _EventState] = {}
        self.counts: Counter[str] = Counter()
        self._sensor_of = {s.id: i for i, s in enumerate(site.sensors)}
        self.sigma_static_db = self.config.locator.sigma_static_db  # learnt when learn_sigma
        self._sigma_evidence = np.zeros(len(self.config.sigma_grid_db))
        self._n_sigma_samples = 0
        self._n_finished = 0
        self._pattern = PatternTest(self.config.locator.sigma_fading_db, self.config.merge_pattern_sigma_db,
                                    self.config.correlation.strong_margin_db, self.config.merge_pattern_quantile,
                                    len(site.sensors))
        self._unknown_sensors: set[str] = set()
        self._lateness_s = np.zeros(len(site.sensors))  # per sensor: its usual lateness (stream time)
        self._last_seen_s = np.full(len(site.sensors), -math.inf)

    # ------------------------------------------------------------------ inputs
    def mark_listening(self, sensor_ids: Iterable[str], until_s: float = math.inf,
                       from_s: float = -math.inf) -> None:
        """Declare sensors listening from ``from_s`` up to ``until_s`` even while they detect
        nothing (their silence then counts against places near them). ``cellwatch locate``
        marks every sensor of its input; the service marks sensors whose heartbeats say they
        are running."""
        for index in self._indices(sensor_ids):
            self.sensors.mark_listening(index, until_s, from_s)

    def mark_deaf(self, sensor_ids: Iterable[str], from_s: float) -> None:
        """Declare sensors deaf from ``from_s`` until their next detection or listening mark
        (the service: a node gone offline, a radio that stopped), so their silence is not
        taken for a phone far from them."""
        for index in self._indices(sensor_ids):
            self.sensors.mark_deaf(index, from_s)

    def _indices(self, sensor_ids: Iterable[str]) -> list[int]:
        """The site's indices of those sensors it has (others are ignored)."""
        return [i for i in map(self._sensor_of.get, sensor_ids) if i is not None]

    def knows_sensor(self, sensor_id: str) -> bool:
        """Whether the site has this sensor (detections of others are counted and ignored)."""
        return sensor_id in self._sensor_of

    def add(self, detections: Sequence[Detection]) -> list[Event]:
        """Feed detections (any order within a batch); returns the events created or updated."""
        touched: set[Transmission] = set()
        watermark_s = self.grouper.watermark_s
        batch_late_s: dict[int, float] = {}
        for detection in detections:
            index = self._sensor_of.get(detection.sensor_id)
            if index is None:
                self.counts["unknown_sensor"] += 1
                if detection.sensor_id not in self._unknown_sensors:
                    self._unknown_sensors.add(detection.sensor_id)
                    log.warning("detections of a sensor not in the site ignored sensor_id=%s site=%s",
                                detection.sensor_id, self.site.name)
                continue
            member = member_from(detection, self.sensors, index)
            if math.isfinite(watermark_s):
                batch_late_s[index] = max(batch_late_s.get(index, 0.0), watermark_s - member.t_s)
            self.sensors.observe(index, member.t_s, member.freq_hz, detection, member.rssi_dbm)
            group, late = self.grouper.add(member)
            self.counts["detections"] += 1
            if late:
                self.counts["late_detections"] += 1
                tr = self.tracker.add_late(group, member)
                if tr is not None:
                    touched.add(tr)
        self._track_lateness(batch_late_s)
        horizon = self.grouper.watermark_s - self.group_wait_s
        return self._advance(horizon, touched)

    def flush(self, now_s: float | None = None) -> list[Event]:
        """Hand on every burst older than ``now_s - group_wait_s`` and close the transmissions
        idle since ``now_s - transmission_gap_s``; everything when ``now_s`` is None."""
        horizon = math.inf if now_s is None else now_s - self.group_wait_s
        return self._advance(horizon, set())

    @property
    def group_wait_s(self) -> float:
        """How long (stream time) a burst waits for other sensors' detections of it."""
        base = self.config.correlation.group_wait_s
        active = self._last_seen_s >= self.grouper.watermark_s - _LATENESS_MEMORY_S
        usual = float(self._lateness_s[active].max()) + _LATENESS_MARGIN_S if np.any(active) else 0.0
        return min(max(base, usual), max(base, self.config.max_group_wait_s))

    def _track_lateness(self, batch_late_s: Mapping[int, float]) -> None:
        """Per sensor, how far behind the newest detection its detections arrive: up at once,
        down slowly, so a node that batches or lags is waited for, not split off."""
        for index, late_s in batch_late_s.items():
            late_s = max(late_s, 0.0)
            usual = self._lateness_s[index]
            self._lateness_s[index] = late_s if late_s > usual else usual + (late_s - usual) * _LATENESS_DECAY
            self._last_seen_s[index] = self.grouper.watermark_s

    # ------------------------------------------------------------------ machinery
    def _advance(self, horizon_s: float, touched: set[Transmission]) -> list[Event]:
        finished: list[Transmission] = []
        for group in self.grouper.close(horizon_s):
            finished.extend(self.tracker.expire(group.t_ref_s))
            self.sensors.track_clocks(group)
            touched.add(self.tracker.assign(group))
            self.counts["bursts"] += 1
        finished.extend(self.tracker.expire(horizon_s))
        self.counts["transmissions_closed"] += len(finished)
        self.counts["images_dropped"] = self.grouper.n_images
        to_locate = list(dict.fromkeys(finished))
        cfg = self.config
        for tr in touched:
            if tr.closed:
                if tr not in to_locate:
                    to_locate.append(tr)
                continue
            if not cfg.live_updates or tr.n_bursts < cfg.min_event_bursts:
                continue
            grown = tr.n_bursts >= cfg.relocate_growth * tr.n_at_last_locate
            stale = tr.t_last_s - tr.t_at_last_locate >= cfg.relocate_interval_s and tr.n_bursts > tr.n_at_last_locate
            if tr.posterior is None or grown or stale:
                to_locate.append(tr)
        changed: dict[str, _EventState] = {}
        if to_locate:
            observations = [tr.observation(cfg.locator) for tr in to_locate]
            if cfg.learn_sigma:
                self._learn_sigma([obs for tr, obs in zip(to_locate, observations, strict=True) if tr.closed])
            posts = self.locator.locate_many(observations, self.sigma_static_db)
            self.counts["localizations"] += len(posts)
            for tr, post in sorted(zip(to_locate, posts, strict=True), key=lambda item: item[0].t_first_s):
                tr.posterior = post
                tr.n_at_last_locate = tr.n_bursts
                tr.t_at_last_locate = tr.t_last_s
                state = self._attach(tr, post)
                if state is None:
                    self.counts["small_transmissions_dropped"] += 1
                    continue
                state.revision += 1
                changed[state.event_id] = state
        self._expire_events(horizon_s)
        return [self._build(state) for state in changed.values()]

    def _learn_sigma(self, finished: list[Observation]) -> None:
        """Empirical Bayes for the static sigma: add the log evidence of (every
        ``sigma_sample_every``-th) finished transmission under each sigma of the grid, fading
        old evidence, and use the best once ``sigma_min_transmissions`` were seen. The plan's
        walls off by a few dB, or a building with more shadowing, widen it by themselves."""
        cfg = self.config
        sample = []
        for obs in finished:
            self._n_finished += 1
            if self._n_finished % cfg.sigma_sample_every == 0 and np.count_nonzero(np.isfinite(obs.level_db)) >= 2:
                sample.append(obs)
        if not sample:
            return
        evidence = np.array([[p.log_evidence for p in self.locator.locate_many(sample, sigma)]
                             for sigma in cfg.sigma_grid_db])  # (n_sigmas, n_sample)
        fade = math.exp(-len(sample) / cfg.sigma_memory)
        self._sigma_evidence = fade * self._sigma_evidence + evidence.sum(axis=1)
        self._n_sigma_samples += len(sample)
        if self._n_sigma_samples >= cfg.sigma_min_transmissions:
            self.sigma_static_db = cfg.sigma_grid_db[int(np.argmax(self._sigma_evidence))]

    def _attach(self, tr: Transmission, post: Posterior) -> _EventState | None:
        """The event a located transmission belongs to (found, or created when the transmission
        has ``min_event_bursts``: one or two stray bursts join an event or are dropped).

        A transmission that joined an event early (live, on its first bursts) and no longer
        fits the event's largest transmission once it has grown moves to an event of its own."""
        state = self._event_of.get(tr.number)
        if state is not None:
            dominant = state.dominant()
            if dominant is tr or self._pattern.mismatch(tr, dominant) <= 1.0:
                return state
            state.transmissions.remove(tr)
            self.counts["transmissions_moved"] += 1
        state = self._matching_event(tr, post)
        if state is None:
            if tr.n_bursts < self.config.min_event_bursts:
                self._event_of.pop(tr.number, None)
                return None
            state = _EventState(event_id=_event_id(tr), transmissions=[])
            self._open_events.append(state)
            self.counts["events"] += 1
        state.transmissions.append(tr)
        self._event_of[tr.number] = state
        return state

    def _matching_event(self, tr: Transmission, post: Posterior) -> _EventState | None:
        """The open event whose phone this transmission most likely is: its levels across the
        sensors fit the event's largest transmission (:class:`service.correlate.PatternTest`)
        and each finds the other's place plausible (``merge_min_probability``)."""
        cfg = self.config
        found: _EventState | None = None
        found_score = math.inf
        for state in self._open_events:
            if not state.transmissions or state.t_end_s < tr.t_first_s - cfg.event_gap_s:
                continue
            dominant = state.dominant()
            if dominant is tr:
                continue
            place = state.place()
            if place is None:
                continue
            score = self._pattern.mismatch(tr, dominant)
            if score > 1.0:
                continue
            # the places must overlap too: a pattern seen by few sensors fits many phones
            other = dominant.posterior
            if (place != post.best and post.probabilities[place] < cfg.merge_min_probability
                    and (other is None or other.probabilities[post.best] < cfg.merge_min_probability)):
                continue
            if score < found_score:
                found, found_score = state, score
        return found

    def _expire_events(self, horizon_s: float) -> None:
        limit = horizon_s - self.config.event_gap_s
        keep = []
        for state in self._open_events:
            if all(tr.closed for tr in state.transmissions) and state.t_end_s < limit:
                for tr in state.transmissions:
                    self._event_of.pop(tr.number, None)
                continue
            keep.append(state)
        self._open_events = keep

    def _build(self, state: _EventState) -> Event:
        cfg = self.config
        dominant = state.dominant()
        post = dominant.posterior
        assert post is not None
        place = self.site.places[post.best]
        techs: Counter[str] = Counter()
        sessions: set[str] = set()
        keys: list[tuple[str, float]] = []
        for tr in state.transmissions:
            techs.update({t: n for t, n in tr.techs.items() if t != "unknown"})
            sessions.update(tr.sessions.values())
            keys.extend(tr.take_keys())
        state.n_detections += len(keys)
        same_wf = np.array([(p.wing, p.floor) == (place.wing, place.floor) for p in self.site.places])
        transmissions = [{
            "t_start_s": round(tr.t_first_s, 6), "t_end_s": round(tr.t_end_s, 6), "freq_hz": round(tr.freq_hz, 1),
            "freq_lo_hz": round(tr.freq_lo_hz, 1), "freq_hi_hz": round(tr.freq_hi_hz, 1),
            "n_bursts": tr.n_bursts, "gsm_like": tr.gsm_like,
            "slot_phase_s": round(tr.slot_phase_s, 6) if tr.gsm_like else None,
        } for tr in sorted(state.transmissions, key=lambda t: t.t_first_s)]
        return Event(
            event_id=state.event_id,
            t_start_s=round(min(tr.t_first_s for tr in state.transmissions), 6),
            t_end_s=round(state.t_end_s, 6),
            tech=techs.most_common(1)[0][0] if techs else "unknown",
            freq_hz=round(dominant.freq_hz, 1),
            n_bursts=sum(tr.n_bursts for tr in state.transmissions),
            sensors=sensor_report(state.transmissions, self.site),
            wing=place.wing,
            floor=place.floor,
            cell=place.id if place.is_cell else None,
            zone=None if place.is_cell else place.id,
            confidence=round(post.confidence, 4),
            candidates=[{"place": self.site.places[i].id, "p": round(p, 4)} for i, p in post.top(cfg.locator.n_candidates)],
            place_kind=place.kind,
            priority=cfg.priority(place.kind),
            channel=dominant.channel(),
            session_ids=sorted(sessions),
            detection_keys=keys,
            n_detections=state.n_detections,
            tx_power_dbm=round(post.tx_power_dbm, 1),
            wing_floor_confidence=round(float(post.probabilities[same_wf].sum()), 4),
            transmissions=transmissions,
            revision=state.revision,
        )
