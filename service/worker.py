"""The event worker: feeds stored detections to the event engine, stores and announces its events.

It runs in its own thread, decoupled from the ingest by the database: the ingest stores
and acknowledges; the store wakes the worker; the worker reads every detection stored
after its cursor, in storage order, and hands them to :class:`service.events.EventEngine`
(``add``), then persists the events it returns (upsert by event id, links to their
detections) and publishes them on the live feed. Every ``flush_interval_s`` it asks the
engine to close idle transmissions (``flush``) on the *stream clock*: the time of the
latest burst plus the wall time since it arrived, so a replay of old recordings ages
the same way as live data.

Restart: the cursor is saved in the database. On start the worker re-feeds the
detections of the last ``rebuild_window_s`` (and everything after the saved cursor) so
the engine's state is rebuilt; an event it reports again is recognized by its
detections and keeps its stored id (and its status), whatever id the engine gives it.

A detection the engine cannot digest is logged and skipped, never retried forever; a
database failure while persisting is retried until it works, so no event is lost.

Memory stays flat however long the service runs and however many detections arrive: an
event names each detection once (the engine reports the detections gained since its
previous revision), and the worker remembers a fed detection (a small tuple, not the
record) only until an event names it, at most ``key_window_s`` of stream time and
``_MAX_KEYS`` of them. Detections of sensors the engine does not know are not remembered.
"""

from __future__ import annotations

import logging
import math
import secrets
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from dsp.records import Detection
from service.live import LiveHub
from service.schemas import event_out
from service.store import EventWrite, EventWritten, Store

log = logging.getLogger(__name__)

CURSOR_KEY = "event_worker.cursor"
MAX_AHEAD_S = 5.0  # the stream clock may run this far ahead of the wall clock, no further
_MAX_KEYS = 500_000  # detections fed but not yet named by an event, at most
_MAX_EVENTS = 20_000  # engine event ids remembered


class EventLike(Protocol):
    @property
    def event_id(self) -> str: ...

    @property
    def detection_keys(self) -> Sequence[Any]:
        """The detections the event gained since its previous revision: (sensor id, start
        time) as fed, or stored ids when the engine was given ids."""
        ...

    def to_dict(self) -> dict[str, Any]: ...


class EngineLike(Protocol):
    """What the worker needs of :class:`service.events.EventEngine`."""

    def add(self, detections: Sequence[Detection]) -> Sequence[EventLike]: ...

    def flush(self, now_s: float | None = None) -> Sequence[EventLike]: ...


class _Fed(NamedTuple):
    """What the worker keeps of a fed detection until an event names it (the live feed's
    per-sensor bars and the latency figures need no more)."""

    id: int
    received_s: float
    sensor_id: str
    t_start_s: float
    power_dbfs: float
    snr_db: float
    rssi_dbm: float | None


@dataclass(frozen=True, slots=True)
class WorkerStats:
    cursor: int
    n_detections_fed: int
    n_events_created: int
    n_events_updated: int
    n_engine_errors: int
    n_store_errors: int
    n_unmatched_keys: int
    lag_detections: int  # stored but not yet fed to the engine
    latency_p50_s: float | None  # detection stored -> published as part of its event
    latency_p95_s: float | None
    rebuilding: bool


class _Lru(OrderedDict[Any, Any]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class EventWorker:
    """One thread between the store and the engine. ``start`` / ``stop``; ``notify`` wakes it."""

    def __init__(
        self,
        store: Store,
        engine: EngineLike,
        hub: LiveHub,
        *,
        flush_interval_s: float = 0.25,
        rebuild_window_s: float = 120.0,
        max_batch: int = 5000,
        key_window_s: float = 300.0,
        rssi_dbm: Callable[[Detection], float | None] | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.hub = hub
        self.flush_interval_s = flush_interval_s
        self.rebuild_window_s = rebuild_window_s
        self.max_batch = max_batch
        self.key_window_s = key_window_s
        self.rssi_dbm = rssi_dbm or (lambda d: d.rssi_dbm)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._periodic: list[tuple[float, Callable[[], None], list[float]]] = []
        self._cursor = 0
        self._saved_cursor = 0
        self._cursor_saved_at = 0.0
        self._resume_after = 0  # detections up to this id were processed by an earlier run
        self._last_t_s: float | None = None  # stream clock: latest burst end fed
        self._last_t_mono = 0.0
        self._fed: OrderedDict[tuple[str, float], _Fed] = OrderedDict()  # not yet named, oldest fed first
        self._alias: _Lru = _Lru(_MAX_EVENTS)  # engine event id -> stored event id
        self._latencies: deque[float] = deque(maxlen=5000)
        self._counts = dict.fromkeys(("n_detections_fed", "n_events_created", "n_events_updated",
                                      "n_engine_errors", "n_store_errors", "n_unmatched_keys"), 0)
        self._rebuilding = False
        self.ready = threading.Event()  # set once the rebuild is done

    # -- life cycle ------------------------------------------------------------------------

    def every(self, interval_s: float, task: Callable[[], None]) -> None:
        """Also run ``task`` every ``interval_s`` in the worker thread (sensor health, key reloads)."""
        self._periodic.append((interval_s, task, [0.0]))

    def notify(self, _max_id: int = 0) -> None:
        self._wake.set()

    def start(self) -> EventWorker:
        if self._thread is not None:
            raise RuntimeError("worker already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cellwatch-events", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("event worker did not stop within %.1f s", timeout_s)
            self._thread = None
        self._save_cursor(force=True)

    def stats(self) -> WorkerStats:
        latencies = list(self._latencies)
        return WorkerStats(cursor=self._cursor, lag_detections=max(0, self.store.max_detection_id - self._cursor),
                           latency_p50_s=_percentile(latencies, 0.5), latency_p95_s=_percentile(latencies, 0.95),
                           rebuilding=self._rebuilding, **self._counts)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._rebuild()
        except Exception:
            log.exception("event worker rebuild failed; continuing from the saved cursor")
        finally:
            self._rebuilding = False
            self.ready.set()
        next_flush = time.monotonic() + self.flush_interval_s
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                deadlines = [next_flush] + [last[0] + interval for interval, _, last in self._periodic]
                self._wake.wait(max(0.0, min(deadlines) - now))
                self._wake.clear()
                while not self._stop.is_set() and self._process_new():
                    pass
                now = time.monotonic()
                if now >= next_flush:
                    next_flush = now + self.flush_interval_s
                    self._flush()
                for interval, task, last in self._periodic:
                    if now >= last[0] + interval:
                        last[0] = now
                        try:
                            task()
                        except Exception:
                            log.exception("periodic task failed task=%s", getattr(task, "__name__", task))
                self._save_cursor()
            except Exception:  # a bug must not stop event processing
                self._counts["n_store_errors"] += 1
                log.exception("event worker loop error (continuing)")
                self._stop.wait(0.5)

    def _rebuild(self) -> None:
        saved = self.store.get_state(CURSOR_KEY)
        self._resume_after = int(saved) if saved and saved.isdigit() else 0
        start = self._resume_after
        latest = self.store.latest_detection_time()
        if latest is not None and self.rebuild_window_s > 0:
            first = self.store.first_detection_id_since(latest - self.rebuild_window_s)
            if first is not None:
                start = min(start, first - 1)
        self._cursor = self._saved_cursor = max(0, start)
        if self._resume_after > self._cursor:
            self._rebuilding = True
            log.info("event worker rebuilding from_id=%d saved_cursor=%d window_s=%.0f", self._cursor,
                     self._resume_after, self.rebuild_window_s)
        while not self._stop.is_set() and self._process_new():
            pass
        if self._rebuilding:
            log.info("event worker rebuilt cursor=%d", self._cursor)

    def _save_cursor(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._cursor == self._saved_cursor or (not force and now - self._cursor_saved_at < 1.0):
            return
        try:
            self.store.set_state(CURSOR_KEY, str(self._cursor))
            self._saved_cursor = self._cursor
            self._cursor_saved_at = now
        except Exception as exc:
            log.warning("event worker cursor not saved error=%s", exc)

    def stream_now_s(self) -> float:
        """The engine's clock: latest burst time plus the wall time elapsed since it arrived.

        Never more than ``MAX_AHEAD_S`` ahead of the wall clock: one node whose clock jumped
        forward must not make the engine close everyone else's transmissions early.
        """
        wall_s = time.time()
        if self._last_t_s is None:
            return wall_s
        return min(self._last_t_s + (time.monotonic() - self._last_t_mono), wall_s + MAX_AHEAD_S)

    # -- processing ---------------------------------------------------------------------------

    def _process_new(self) -> bool:
        """Feed one chunk of new detections; True if there may be more."""
        rows = self.store.detections_after(self._cursor, self.max_batch)
        if not rows:
            self._rebuilding = False
            return False
        rows.sort(key=lambda r: (r.detection.t_start_s, r.id))
        self._remember(rows)
        try:
            found = list(self.engine.add([r.detection for r in rows]))
        except Exception:
            self._counts["n_engine_errors"] += 1
            log.exception("event engine failed on %d detections (ids %d..%d): skipped", len(rows),
                          min(r.id for r in rows), max(r.id for r in rows))
            found = []
        end_t = max(r.detection.t_start_s + r.detection.duration_s for r in rows)
        if self._last_t_s is None or end_t > self._last_t_s:
            self._last_t_s = end_t
            self._last_t_mono = time.monotonic()
        self._counts["n_detections_fed"] += len(rows)
        self._persist(found)
        self._cursor = max(self._cursor, max(r.id for r in rows))
        if self._cursor >= self._resume_after:
            self._rebuilding = False
        return len(rows) >= self.max_batch

    def _remember(self, rows: Sequence[Any]) -> None:
        """Keep what the live feed needs of each fed detection until an event names it."""
        knows = getattr(self.engine, "knows_sensor", None)
        fed = self._fed
        for r in rows:
            d = r.detection
            if knows is not None and not knows(d.sensor_id):
                continue  # never named: the engine ignores sensors that are not in the site
            sensor_id = sys.intern(d.sensor_id)
            fed[(sensor_id, d.t_start_s)] = _Fed(r.id, r.received_s, sensor_id, d.t_start_s, d.power_dbfs, d.snr_db,
                                                 self.rssi_dbm(d))
        if not fed:
            return
        oldest_s = (self._last_t_s if self._last_t_s is not None else -math.inf) - self.key_window_s
        while fed and (len(fed) > _MAX_KEYS or next(iter(fed.values())).t_start_s < oldest_s):
            fed.popitem(last=False)

    def _flush(self) -> None:
        try:
            found = list(self.engine.flush(self.stream_now_s()))
        except Exception:
            self._counts["n_engine_errors"] += 1
            log.exception("event engine flush failed")
            return
        self._persist(found)

    def _contributors(self, event: EventLike) -> dict[int, _Fed | None]:
        """The stored detections an event names (by key, or by id when the engine was given ids)."""
        found: dict[int, _Fed | None] = {}
        for key in getattr(event, "detection_keys", None) or ():
            if isinstance(key, int) and not isinstance(key, bool):
                found.setdefault(key, None)
                continue
            try:
                sensor_id, t_start_s = key
                stored = self._fed.pop((str(sensor_id), float(t_start_s)), None)
            except (TypeError, ValueError):
                stored = None
            if stored is None:
                self._counts["n_unmatched_keys"] += 1
            else:
                found[stored.id] = stored
        return found

    def _stored_id(self, engine_id: str, detection_ids: list[int]) -> tuple[str, bool]:
        """The stored event this engine event is, and whether an earlier run stored it.

        Same id as the engine's, or, after a restart, the event its detections already
        belong to (the engine may number its events afresh).
        """
        known = self._alias.get(engine_id)
        if known is not None:
            self._alias.move_to_end(engine_id)
            return known
        existing = self.store.event_for_detections(detection_ids)
        if existing is not None:
            found = (existing, True)
        elif self.store.event_exists(engine_id):  # an old event with the same id: not this one
            found = (f"{engine_id}-{secrets.token_hex(4)}", False)
        else:
            found = (engine_id, False)
        self._alias.put(engine_id, found)
        return found

    def _persist(self, found: Sequence[EventLike]) -> None:
        if not found:
            return
        writes: list[EventWrite] = []
        fresh: dict[str, list[_Fed]] = {}  # event id -> detections it gained now
        for event in found:
            try:
                record = dict(event.to_dict())
                contributors = self._contributors(event)
                event_id, from_earlier_run = self._stored_id(str(event.event_id), list(contributors))
            except Exception:
                self._counts["n_engine_errors"] += 1
                log.exception("unusable event from the engine dropped event_id=%s", getattr(event, "event_id", "?"))
                continue
            if from_earlier_run and max(contributors, default=0) <= self._resume_after:
                # rebuilding what is already stored: the stored event stays as it was, and the
                # detections the previous run fed but had not yet linked are linked now
                self._link(event_id, list(contributors))
                continue
            new_ids = list(contributors)  # each detection is named once (linking twice is harmless)
            record["event_id"] = event_id
            fresh[event_id] = [d for i in new_ids if (d := contributors[i]) is not None]
            writes.append(EventWrite(event_id, record, new_ids))
        written = self._write(writes)
        now = time.time()
        for w in written:
            summary = event_out(w.row).model_dump(mode="json")
            self.hub.publish("event.created" if w.created else "event.updated", {"event": summary})
            self._counts["n_events_created" if w.created else "n_events_updated"] += 1
            gained = [d for d in fresh.get(w.row.event_id, ()) if d.id > self._resume_after]
            if gained:
                self.hub.publish("event.detections", self._detections_summary(w, gained))
                self._latencies.extend(now - d.received_s for d in gained)

    def _link(self, event_id: str, detection_ids: list[int]) -> None:
        self._retrying(lambda: self.store.link_detections(event_id, detection_ids), f"links of {event_id}", None)

    def _write(self, writes: list[EventWrite]) -> list[EventWritten]:
        return self._retrying(lambda: self.store.upsert_events(writes), f"{len(writes)} events", [])

    def _retrying(self, write: Callable[[], Any], what: str, on_stop: Any) -> Any:
        """``write()`` until it works (the database is away: keep the data, try again)."""
        delay_s = 0.1
        while True:
            try:
                return write()
            except Exception as exc:
                self._counts["n_store_errors"] += 1
                log.error("not stored, retrying in %.1f s what=%s error=%s: %s", delay_s, what,
                          type(exc).__name__, exc)
                if self._stop.wait(delay_s):
                    log.error("stopping with %s not stored", what)
                    return on_stop
                delay_s = min(delay_s * 2, 5.0)

    def _detections_summary(self, written: EventWritten, fresh: Sequence[_Fed]) -> dict[str, Any]:
        """The event's bursts that just arrived, per sensor: what the 'hunt' view draws as bars."""
        per_sensor: dict[str, list[_Fed]] = {}
        for d in fresh:
            per_sensor.setdefault(d.sensor_id, []).append(d)
        sensors = []
        for sensor_id, dets in sorted(per_sensor.items()):
            rssi = [v for v in (d.rssi_dbm for d in dets) if v is not None and math.isfinite(v)]
            power = 10.0 * math.log10(sum(10.0 ** (d.power_dbfs / 10.0) for d in dets) / len(dets))
            rssi_mean = (10.0 * math.log10(sum(10.0 ** (v / 10.0) for v in rssi) / len(rssi))) if rssi else None
            sensors.append({"sensor_id": sensor_id, "rssi_dbm": rssi_mean, "power_dbfs": power,
                            "snr_db": max(d.snr_db for d in dets), "n_bursts": len(dets)})
        row = written.row
        return {"event_id": row.event_id, "channel": row.channel, "freq_hz": row.freq_hz, "tech": row.tech,
                "cell": row.cell, "zone": row.zone, "t_s": max(d.t_start_s for d in fresh),
                "sensors": sensors}
