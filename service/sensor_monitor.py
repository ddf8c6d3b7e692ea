"""Periodic checks run in the event worker's thread: sensors going offline, node keys changing.

A sensor is online while its last heartbeat is younger than ``offline_after_s``. A change
either way is stored (so a restart does not announce it again), written to the audit log
as the system's, logged, and published on the live feed: an offline sensor is a blind
spot staff must know about. So is an online sensor whose radio stopped: a node that
reports its dongle unplugged (source state ``retrying``, ``lost``...) is alive but deaf.
A change of its source state away from ``running`` and back is audited
(``sensor.source``, with the node's message), logged and published too: every change two
consecutive stored heartbeats show, however short.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from calibration.site import Site
from dsp.errors import InputError
from service.live import LiveHub
from service.schemas import sensor_views
from service.store import SYSTEM_ACTOR, Store

log = logging.getLogger(__name__)


class SensorMonitor:
    """Runs in the event worker's thread (the engine is not thread-safe)."""

    def __init__(self, site: Site, store: Store, hub: LiveHub, offline_after_s: float, engine: Any = None) -> None:
        self.site = site
        self.store = store
        self.hub = hub
        self.offline_after_s = offline_after_s
        self.mark_listening = getattr(engine, "mark_listening", None)
        self.mark_deaf = getattr(engine, "mark_deaf", None)

    def __call__(self) -> None:
        rows = self.store.sensor_health()
        views = {v.sensor_id: v for v in sensor_views(self.site, rows, self.store.last_detection_by_sensor(),
                                                      time.time(), self.offline_after_s)}
        self._announce_source_changes(views)
        for row in rows:
            view = views[row.sensor_id]
            if self.mark_listening is not None and view.state == "online" and view.source_state == "running":
                # A running sensor that hears nothing is evidence too: the phone is not near it.
                # Until the next heartbeat is due, on the node's clock (the bursts' clock).
                self.mark_listening([row.sensor_id], row.heartbeat.t_s + self.offline_after_s, row.heartbeat.t_s)
            elif self.mark_deaf is not None:
                # offline, or its radio stopped: its silence from then on says nothing
                self.mark_deaf([row.sensor_id], row.heartbeat.t_s)
            if view.state == row.state:
                continue
            age = view.heartbeat_age_s or 0.0
            reason = (f"no heartbeat for {age:.0f} s (limit {self.offline_after_s:g} s)" if view.state == "offline"
                      else "heartbeats resumed" if row.state == "offline" else "first heartbeat")
            self.store.set_sensor_state(row.sensor_id, view.state, reason=reason)
            level = logging.WARNING if view.state == "offline" else logging.INFO
            log.log(level, "sensor %s sensor=%s node=%s reason=%r", view.state, row.sensor_id, row.node_id, reason)
            self.hub.publish("sensor.health", {"sensor": view.model_dump(mode="json")})

    def _announce_source_changes(self, views: dict[str, Any]) -> None:
        """Announce each radio source that stopped running or ran again, in the order the
        heartbeats said it (the store keeps them, so an outage shorter than this check's period
        is announced too); not a clean stop of the node, which its heartbeats then stop saying."""
        for change in self.store.take_source_changes():
            if "running" not in (change.before, change.after) or change.after == "stopped":
                continue
            message = change.message[:300]
            details = {"from": change.before, "to": change.after, "message": message,
                       "n_dropped_samples": change.n_dropped_samples}
            try:
                self.store.audit(SYSTEM_ACTOR, "sensor.source", change.sensor_id, details)
            except Exception as exc:  # the next change is announced anyway; the log says this one
                log.error("sensor source change not audited sensor=%s error=%s", change.sensor_id, exc)
            level = logging.INFO if change.after == "running" else logging.WARNING
            log.log(level, "sensor radio %s sensor=%s node=%s message=%r", change.after, change.sensor_id,
                    change.node_id, message)
            view = views.get(change.sensor_id)
            if view is not None:
                self.hub.publish("sensor.health", {"sensor": view.model_dump(mode="json")})


class AllowedKeysReloader:
    """Reload the ingest's allowed node keys when the folder's ``*.key`` files change."""

    def __init__(self, directory: Path, apply: Callable[[dict[str, bytes]], None],
                 load: Callable[[Path], dict[str, bytes]]) -> None:
        self.directory = directory
        self.apply = apply
        self.load = load
        self._signature = self._scan()

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        try:
            entries = [(e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(self.directory)
                       if e.name.endswith(".key")]
        except OSError:
            return ()
        return tuple(sorted(entries))

    def __call__(self) -> None:
        signature = self._scan()
        if signature == self._signature:
            return
        try:
            allowed = self.load(self.directory)
        except InputError as exc:
            log.error("allowed node keys not reloaded, keeping the previous list: %s", exc)
            self._signature = signature  # say it once, not every few seconds
            return
        self._signature = signature
        self.apply(allowed)
