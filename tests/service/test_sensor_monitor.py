"""The sensor monitor on a real SQLite store: a sensor's radio stopping and running again is
announced (audited, logged, published) for every change its heartbeats reported, however
short the outage was next to the monitor's period."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from calibration.site import load_site
from dsp.records import Heartbeat
from dsp.wire import SenderStatus
from service.live import LiveHub
from service.sensor_monitor import SensorMonitor
from service.store import Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = open_store(f"sqlite:///{tmp_path / 'service.sqlite'}")
    yield s
    s.close()


def _beat(store: Store, t_s: float, state: str, message: str = "", dropped: int = 0) -> None:
    store.store_heartbeat("A1-S1", Heartbeat("A1-S1", t_s, state, n_dropped_samples=dropped, message=message),
                          SenderStatus())


def _changes(store: Store) -> list[tuple[str, str, str]]:
    rows = reversed(store.list_audit(limit=100, action="sensor.source")[1])
    return [(r.details["from"], r.details["to"], r.details["message"]) for r in rows]


def test_an_outage_between_two_checks_is_announced(store: Store, demo_site_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    hub = LiveHub()
    monitor = SensorMonitor(load_site(demo_site_path), store, hub, offline_after_s=30.0)
    _beat(store, 10.0, "running")
    monitor()
    assert _changes(store) == []  # the first state heard is not a change

    # unplugged and back before the monitor looks again: the monitor only ever sees "running"
    caplog.set_level(logging.INFO, logger="service.sensor_monitor")
    _beat(store, 11.0, "retrying", "rtlsdr:0=retrying (usb gone)", dropped=4800)
    _beat(store, 12.0, "running", "rtlsdr:0=running", dropped=4800)
    monitor()
    assert _changes(store) == [("running", "retrying", "rtlsdr:0=retrying (usb gone)"),
                               ("retrying", "running", "rtlsdr:0=running")]
    assert "sensor radio retrying sensor=A1-S1" in caplog.text and "sensor radio running sensor=A1-S1" in caplog.text
    assert [m.type for m in hub.recent()].count("sensor.health") >= 2

    monitor()  # nothing new: nothing announced twice
    assert len(_changes(store)) == 2


def test_a_clean_stop_and_unchanged_states_are_not_announced(store: Store, demo_site_path: Path) -> None:
    monitor = SensorMonitor(load_site(demo_site_path), store, LiveHub(), offline_after_s=30.0)
    for t_s in range(5):
        _beat(store, float(t_s), "running")
    _beat(store, 6.0, "stopped")  # the node shut down cleanly
    monitor()
    assert _changes(store) == []


def test_the_engine_hears_when_a_sensor_listened(store: Store, demo_site_path: Path) -> None:
    """What the monitor tells the event engine: a running radio listened from its heartbeat on
    (not before: a node that started late did not miss the bursts sent earlier); a stopped one
    is deaf from its heartbeat until it is heard again (its silence is not evidence)."""
    from service.events import EventEngine

    site = load_site(demo_site_path)
    engine = EventEngine(site)
    monitor = SensorMonitor(site, store, LiveHub(), offline_after_s=30.0, engine=engine)
    index = site.sensor_index("A1-S1")
    freq_hz = 902.4e6

    def listening(t_s: float) -> bool:
        return bool(engine.sensors.listening(t_s, freq_hz)[index])

    _beat(store, 100.0, "running")
    monitor()
    assert listening(100.5) and listening(129.0) and not listening(99.0)
    _beat(store, 110.0, "retrying", "rtlsdr:0=retrying (usb gone)")
    monitor()
    assert listening(105.0) and not listening(110.5) and not listening(200.0)
    _beat(store, 120.0, "running", "rtlsdr:0=running")
    monitor()
    assert listening(120.5) and not listening(115.0)  # the deaf spell stays out
