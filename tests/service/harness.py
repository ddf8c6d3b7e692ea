"""Test helpers for the service: a stand-in event engine and a live server on 127.0.0.1.

The live-feed reader and the synthesized GSM call are ``bench.service_ingest``'s, which
measures the same things at full size.

The stand-in engine keeps the agreed interface of ``service.events.EventEngine``
(``add(detections) -> events``, ``flush(now_s) -> events``; events with ``event_id``,
``detection_keys`` and ``to_dict()``) with trivial rules, so the API, store and worker
tests do not depend on the localization's results: one event per channel (frequency
rounded to 200 kHz) until the channel is quiet for ``gap_s``; its place comes from a
table given by the test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from dsp.records import Detection
from service.app import build_services, create_app
from service.commands.serve import bind_http
from service.settings import DatabaseSettings, IngestSettings, SecuritySettings, ServiceSettings
from tests.conftest import DEMO_SITE

PASSWORD = "correct horse battery staple"


@dataclass
class StandInEvent:
    event_id: str
    cell: str | None
    zone: str | None
    detections: list[Detection] = field(default_factory=list)
    n_reported: int = 0  # detections named by earlier revisions

    @property
    def detection_keys(self) -> list[tuple[str, float]]:
        """The detections gained since the previous revision (the engine's contract)."""
        return [(d.sensor_id, d.t_start_s) for d in self.detections[self.n_reported:]]

    def reported(self) -> StandInEvent:
        """A revision as handed to the worker: its keys, and later ones only name newer detections."""
        revision = StandInEvent(self.event_id, self.cell, self.zone, list(self.detections), self.n_reported)
        self.n_reported = len(self.detections)
        return revision

    def to_dict(self) -> dict[str, Any]:
        first, last = self.detections[0], self.detections[-1]
        per_sensor: dict[str, list[Detection]] = {}
        for d in self.detections:
            per_sensor.setdefault(d.sensor_id, []).append(d)
        place = self.cell or self.zone or ""
        parts = place.split("-")
        wing, floor = (parts[0], int(parts[1])) if len(parts) == 3 else (None, 0)
        return {
            "event_id": self.event_id, "t_start_s": first.t_start_s, "t_end_s": last.t_start_s + last.duration_s,
            "tech": first.tech, "freq_hz": first.freq_hz, "n_bursts": len(self.detections),
            "sensors": [{"sensor_id": s, "rssi_dbm": max(d.power_dbfs for d in ds) - 60.0, "n_bursts": len(ds)}
                        for s, ds in sorted(per_sensor.items())],
            "wing": wing, "floor": floor, "cell": self.cell, "zone": self.zone, "confidence": 0.9,
            "candidates": [{"place": place, "p": 0.9}], "place_kind": "cell" if self.cell else "staff",
            "priority": "alert" if self.cell else "staff", "channel": first.channel, "session_ids": [],
        }


class StandInEngine:
    """One event per 200 kHz channel until it is quiet for ``gap_s``; places from ``cells``."""

    def __init__(self, cells: dict[int, str] | None = None, gap_s: float = 5.0, fail_on_freq_hz: float | None = None):
        self.cells = cells or {}
        self.gap_s = gap_s
        self.fail_on_freq_hz = fail_on_freq_hz
        self.open: dict[int, StandInEvent] = {}
        self.n_events = 0
        self.n_added = 0
        self.flushed_at: list[float | None] = []

    def add(self, detections: Sequence[Detection]) -> list[StandInEvent]:
        touched: dict[str, StandInEvent] = {}
        for d in detections:
            if self.fail_on_freq_hz is not None and d.freq_hz == self.fail_on_freq_hz:
                raise RuntimeError("stand-in engine told to fail")
            channel = round(d.freq_hz / 200e3)
            event = self.open.get(channel)
            if event is None or d.t_start_s > event.detections[-1].t_start_s + self.gap_s:
                self.n_events += 1
                place = self.cells.get(channel, "A-1-01")
                is_cell = place.split("-")[-1].isdigit()
                event = StandInEvent(f"T{self.n_events}", place if is_cell else None, None if is_cell else place)
                self.open[channel] = event
            event.detections.append(d)
            touched[event.event_id] = event
            self.n_added += 1
        return [e.reported() for e in touched.values()]

    def flush(self, now_s: float | None = None) -> list[StandInEvent]:
        self.flushed_at.append(now_s)
        closed = [c for c, e in self.open.items() if now_s is not None and now_s > e.detections[-1].t_start_s + self.gap_s]
        return [self.open.pop(c).reported() for c in closed]


def make_settings(tmp: Path, *, ingest: bool = False, **overrides: Any) -> ServiceSettings:
    """Settings for a test service: its own SQLite file, cheap password hashing, ingest on a free port."""
    values: dict[str, Any] = {
        "site": DEMO_SITE,
        "database": DatabaseSettings(path=tmp / "cellwatch.sqlite"),
        "ingest": IngestSettings(insecure=True, bind="tcp://127.0.0.1:*") if ingest else IngestSettings(enabled=False),
        "security": SecuritySettings(password_hash_time_cost=1, password_hash_memory_kib=8192,
                                     login_max_failures=1000),
    }
    values.update(overrides)
    return ServiceSettings(**values)


@dataclass
class LiveServer:
    url: str
    app: Any
    services: Any

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, **kwargs)

    def add_user(self, username: str, role: str, password: str = PASSWORD) -> None:
        self.services.store.create_user(username, role, self.services.passwords.hash(password), actor="test")

    def login(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        with self.client() as c:
            r = c.post("/api/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}


@contextmanager
def live_server(settings: ServiceSettings, engine: Any = None) -> Iterator[LiveServer]:
    """The app under uvicorn in a thread, on a free port of 127.0.0.1 (real HTTP)."""
    engine = engine if engine is not None else StandInEngine()
    services = build_services(settings, engine_factory=lambda site, s, cal: engine)
    sock = bind_http("127.0.0.1", 0)
    app = create_app(settings, services=services)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10.0
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    port = sock.getsockname()[1]
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app, services)
    finally:
        services.hub.close()
        server.should_exit = True
        thread.join(10.0)
        sock.close()


def detections(n: int, *, sensor_id: str = "A1-S1", t0_s: float = 1.7e9, step_s: float = 0.1,
               freq_hz: float = 902.4e6, first_seq: int = 1, power_dbfs: float = -30.0) -> list[Detection]:
    return [Detection(sensor_id, t0_s + i * step_s, 546e-6, freq_hz, 200e3, power_dbfs, 15.0, "gsm",
                      seq=first_seq + i, gain_db=30.0) for i in range(n)]


def wait_for(predicate: Any, timeout_s: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)

