"""The event engine: detections to located events, live updates, merging, alert policy.

Detections here are the simulator's true received powers (no IQ rendered: fast); the
chain through the real detector is in test_locate_cli.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from calibration.site import load_site
from dsp.errors import InputError
from dsp.records import Detection
from sdr.scenario import Scenario
from sdr.simulate import Simulation
from service.events import DEFAULT_ALERTS, EngineConfig, Event, EventEngine
from service.locate import detections_from_truth
from tests.conftest import DEMO_SITE

DESIGN_FIELDS = ("event_id", "t_start_s", "t_end_s", "tech", "freq_hz", "n_bursts", "sensors", "wing", "floor",
                 "cell", "zone", "confidence", "candidates")


@pytest.fixture(scope="module")
def demo():
    return load_site(DEMO_SITE)


def simulate(site, phones: list[dict[str, Any]], *, seed: int = 1, duration_s: float = 1.0, gain_db: float = 28.0,
             sigma_db: float = 4.0) -> tuple[list[dict[str, Any]], list[Detection]]:
    spec = {"name": "t", "duration_s": duration_s, "receiver": {"gain_db": gain_db},
            "propagation": {"shadowing_sigma_db": sigma_db}, "phones": phones}
    truth = Simulation(site, Scenario.model_validate(spec), seed=seed).truth_records()
    return truth, detections_from_truth(truth)


def gsm(phone_id: str, arfcn: int, timeslot: int, tx_dbm: float = 10.0, **where: Any) -> dict[str, Any]:
    return {"id": phone_id, "tech": "gsm", "activity": "call", "established": True, "arfcn": arfcn,
            "timeslot": timeslot, "tx_power_dbm": tx_dbm, **where}


def run(site, detections: list[Detection], config: EngineConfig | None = None) -> list[Event]:
    engine = EventEngine(site, config=config)
    engine.mark_listening([s.id for s in site.sensors])
    events = {e.event_id: e for e in engine.add(detections)}
    events.update({e.event_id: e for e in engine.flush()})
    return sorted(events.values(), key=lambda e: e.t_start_s)


def test_two_simultaneous_phones_on_one_carrier_are_two_events_in_their_cells(demo) -> None:
    """ARFCN 62, timeslots 3 and 4: bursts 577 µs apart, one phone in each wing.

    The cell itself is right about half of the time with 4 dB of shadowing on this site (each
    of these cells has a twin across the corridor that the corridor sensors hear alike; see
    bench/localization.py): this seed is one where both are; the next test checks what holds
    for every seed."""
    truth, detections = simulate(demo, [gsm("a", 62, 3, cell="A-1-05"), gsm("b", 62, 4, cell="B-2-13")], seed=2)
    events = run(demo, detections)
    assert len(events) == 2
    by_cell = {e.cell: e for e in events}
    assert set(by_cell) == {"A-1-05", "B-2-13"}
    for e in events:
        assert e.priority == "alert" and e.place_kind == "cell" and e.zone is None
        assert e.n_bursts == sum(1 for r in truth if r["cell"] == e.cell)
        assert {s["sensor_id"][0] for s in e.sensors} == {e.cell[0]}  # heard by its own wing only
        assert e.tech == "gsm" and e.freq_hz == pytest.approx(902.4e6)


@pytest.mark.parametrize("seed", [0, 4, 5])
def test_two_phones_stay_two_events_in_their_wing_and_floor(demo, seed: int) -> None:
    truth, detections = simulate(demo, [gsm("a", 62, 3, cell="A-1-05"), gsm("b", 62, 4, cell="B-2-13")], seed=seed)
    events = run(demo, detections)
    assert sorted((e.wing, e.floor) for e in events) == [("A", 1), ("B", 2)]
    for e in events:
        assert e.n_bursts == sum(1 for r in truth if r["wing"] == e.wing)


def test_the_same_phone_texting_then_calling_is_one_event(demo) -> None:
    """An SMS, then ten seconds later a call, from the same spot: one event, not two."""
    spot = {"position": (10.4, 2.1), "floor": 2}
    phones = [{**gsm("sms", 60, 5, tx_dbm=15.0, **spot), "activity": "sms", "established": False},
              {**gsm("call", 60, 5, tx_dbm=15.0, **spot), "start_s": 10.0, "duration_s": 3.0}]
    truth, detections = simulate(demo, phones, duration_s=13.0, seed=2)
    events = run(demo, detections)
    assert len(events) == 1
    (event,) = events
    assert event.n_bursts >= 0.99 * len(truth)  # a stray access burst or two may be left out
    assert len(event.transmissions) >= 2 and (event.wing, event.floor) == ("A", 2)
    assert event.t_end_s - event.t_start_s > 10.0


def test_a_passer_by_is_never_blamed_on_a_cell(demo) -> None:
    for seed in range(3):
        _, detections = simulate(demo, [gsm("street", 62, 6, tx_dbm=33.0, zone="street")], seed=seed,
                                     gain_db=40.0, duration_s=0.5)
        events = run(demo, detections)
        assert events, "the street phone is audible at 40 dB of gain"
        for e in events:
            assert e.cell is None and e.zone in ("street", "patrol-path")
            assert e.priority == "low"


def test_live_events_come_early_and_keep_their_id(demo) -> None:
    _, detections = simulate(demo, [gsm("a", 62, 3, cell="A-2-10")], duration_s=3.0, seed=5)
    engine = EventEngine(demo)
    engine.mark_listening([s.id for s in demo.sensors])
    seen: dict[str, list[Event]] = {}
    chunks = np.array_split(np.arange(len(detections)), 30)  # 0.1 s of detections at a time
    first_at = None
    for chunk in chunks:
        for event in engine.add([detections[i] for i in chunk]):
            seen.setdefault(event.event_id, []).append(event)
            first_at = first_at if first_at is not None else detections[chunk[-1]].t_start_s
    assert len(seen) == 1, "one phone, one event, updated in place"
    (updates,) = seen.values()
    assert first_at is not None and first_at - detections[0].t_start_s < 1.0  # reported within a second
    assert [u.revision for u in updates] == sorted(u.revision for u in updates)
    assert updates[-1].n_bursts > updates[0].n_bursts
    final = engine.flush()
    assert [e.event_id for e in final] == list(seen)
    assert engine.flush() == []  # nothing left to report


@pytest.mark.parametrize("max_lag_s", [1.0, 3.0])
def test_nodes_that_deliver_late_by_different_amounts_still_give_one_event(demo, max_lag_s: float) -> None:
    """Live, each node delivers its detections in batches and some lag behind the others: a
    burst handed on before the slow sensors reported looked like another phone (one call
    became dozens of parallel events). The engine waits for its sensors' usual lateness."""
    _, detections = simulate(demo, [gsm("a", 62, 3, tx_dbm=8.0, cell="A-1-05")], duration_s=8.0, seed=3)
    rng = np.random.default_rng(0)
    sensors = sorted({d.sensor_id for d in detections})
    lag_s = dict(zip(sensors, rng.uniform(0.0, max_lag_s, len(sensors)), strict=True))
    t0 = detections[0].t_start_s
    batch_s = 0.5  # a node's send interval
    arrival = np.array([t0 + (np.floor((d.t_start_s - t0) / batch_s) + 1) * batch_s + lag_s[d.sensor_id]
                        for d in detections])
    order = np.argsort(arrival, kind="stable")
    engine = EventEngine(demo)
    engine.mark_listening([s.id for s in demo.sensors])
    events: dict[str, Event] = {}
    newest_s, newest_at = -np.inf, 0.0
    for tick in np.arange(arrival.min(), arrival.max() + 0.25, 0.25):  # the worker's loop
        batch = [detections[i] for i in order if tick - 0.25 < arrival[i] <= tick]
        if batch:
            events.update({e.event_id: e for e in engine.add(batch)})
            if max(d.t_start_s for d in batch) > newest_s:
                newest_s, newest_at = max(d.t_start_s for d in batch), tick
        if np.isfinite(newest_s):  # the stream clock: newest burst + wall time since it arrived
            events.update({e.event_id: e for e in engine.flush(newest_s + tick - newest_at)})
    events.update({e.event_id: e for e in engine.flush()})
    assert len(events) == 1, sorted((round(e.t_start_s - t0, 1), e.n_bursts, e.cell) for e in events.values())
    (event,) = events.values()
    assert event.cell == "A-1-05" and event.n_bursts > 0.9 * len({d.t_start_s for d in detections if d.sensor_id == "A1-S2"})
    assert engine.group_wait_s > 0.5  # it learned to wait for the slow nodes


def _feed_live(engine: EventEngine, detections: list[Detection], chunk_s: float = 0.1) -> dict[str, Event]:
    """Detections in stream order, a tenth of a second at a time, as the service's worker does."""
    events: dict[str, Event] = {}
    t0 = detections[0].t_start_s
    slots = np.floor((np.array([d.t_start_s for d in detections]) - t0) / chunk_s)
    order = np.argsort(slots, kind="stable")  # each chunk keeps the detections' own order
    for chunk in np.split(order, np.flatnonzero(np.diff(slots[order])) + 1):
        events.update({e.event_id: e for e in engine.add([detections[i] for i in chunk])})
    events.update({e.event_id: e for e in engine.flush()})
    return events


@pytest.mark.parametrize("seed", [1, 3])
def test_sensors_that_start_late_did_not_miss_the_bursts_sent_before(demo, seed: int) -> None:
    """The nodes of a wing's first floor start 1.5 s after the others (a slow start, a restart):
    the bursts before were heard by the floor above only. Counting the floor below as having
    missed them placed the phone on another floor or wing (seen in the live demo)."""
    _, detections = simulate(demo, [gsm("a", 57, 3, tx_dbm=15.0, cell="A-1-03")], duration_s=4.0, seed=seed)
    t0 = detections[0].t_start_s
    late = {"A1-S1", "A1-S2", "A1-S3"}
    detections = [d for d in detections if d.sensor_id not in late or d.t_start_s >= t0 + 1.5]
    engine = EventEngine(demo)
    engine.mark_listening([s.id for s in demo.sensors if s.id not in late], from_s=t0)  # their heartbeats
    engine.mark_listening(late, from_s=t0 + 1.5)
    events = _feed_live(engine, detections)
    assert len(events) == 1, sorted((e.cell or e.zone, e.n_bursts) for e in events.values())  # was 2: the
    (event,) = events.values()  # bursts before the late start made a second event, on floor 2 or a staff office
    assert (event.wing, event.floor, event.priority) == ("A", 1, "alert")


def test_a_sensor_gone_deaf_does_not_push_the_phone_away(demo) -> None:
    """The node nearest the phone stops (unplugged, crashed) half a second into the call: its
    silence afterwards says nothing about where the phone is."""
    _, detections = simulate(demo, [gsm("a", 57, 3, tx_dbm=15.0, cell="A-1-03")], duration_s=4.0, seed=1)
    t0 = detections[0].t_start_s
    nearest = max({d.sensor_id for d in detections}, key=lambda sid: np.median(
        [d.rssi_dbm for d in detections if d.sensor_id == sid]))
    detections = [d for d in detections if d.sensor_id != nearest or d.t_start_s < t0 + 0.5]

    def place(deaf: bool) -> tuple[str | None, float]:
        engine = EventEngine(demo)
        engine.mark_listening([s.id for s in demo.sensors], until_s=t0 + 0.6, from_s=t0)
        engine.mark_listening([s.id for s in demo.sensors if s.id != nearest], from_s=t0)
        if deaf:  # the service's sensor monitor: no heartbeat since
            engine.mark_deaf([nearest], t0 + 0.5)
        events = [e for e in _feed_live(engine, detections).values() if e.priority == "alert"]
        best = max(events, key=lambda e: e.n_bursts)
        return best.cell, dict((c["place"], c["p"]) for c in best.candidates).get("A-1-03", 0.0)

    cell, p_true = place(deaf=True)
    assert cell == "A-1-03" or p_true > 0.1
    _, p_listening = place(deaf=False)  # taken for listening: evidence against its own cell
    assert p_true > p_listening


def test_event_record_has_design_fields(demo) -> None:
    _, detections = simulate(demo, [gsm("a", 62, 3, cell="B-1-10")], duration_s=5.0)
    engine = EventEngine(demo)
    engine.mark_listening([s.id for s in demo.sensors])
    t0 = min(d.t_start_s for d in detections)
    revisions = []
    for second in range(5):  # fed as a live service does: a second at a time, the clock moving on
        revisions += engine.add([d for d in detections if second <= d.t_start_s - t0 < second + 1])
        revisions += engine.flush(t0 + second + 1)
    revisions += engine.flush()
    assert len({e.event_id for e in revisions}) == 1 and len(revisions) >= 2
    event = revisions[-1]
    record = event.to_dict()
    for key in DESIGN_FIELDS:
        assert key in record
    assert "detection_keys" not in record and record["n_detections"] == len(detections)
    # each revision names the detections gained since the one before: every detection once
    named = [key for e in revisions for key in e.detection_keys]
    assert sorted(named) == sorted((d.sensor_id, d.t_start_s) for d in detections)
    probabilities = [c["p"] for c in record["candidates"]]
    assert probabilities == sorted(probabilities, reverse=True) and record["confidence"] == probabilities[0]
    assert record["candidates"][0]["place"] == (record["cell"] or record["zone"])
    assert all(s["n_bursts"] > 0 and s["rssi_dbm"] < -20 for s in record["sensors"])
    assert 0.0 < record["confidence"] <= record["wing_floor_confidence"] <= 1.0


def test_alert_policy_is_configurable() -> None:
    config = EngineConfig()
    assert config.priority("cell") == "alert" and config.priority("staff") == "staff"
    assert config.priority("yard") == config.priority("outside") == config.priority("patrol") == "low"
    assert config.priority("corridor") == config.priority("stairwell") == "medium"
    assert config.priority("chapel") == "medium"  # a kind the policy does not name
    custom = EngineConfig(alerts={"corridor": "alert", "chapel": "low"}, default_priority="info")
    assert custom.priority("corridor") == "alert" and custom.priority("chapel") == "low"
    assert custom.priority("cell") == DEFAULT_ALERTS["cell"] and custom.priority("gym") == "info"


def test_engine_config_from_tables() -> None:
    # the service passes its [engine] options as keyword arguments, nested tables as dicts
    config = EngineConfig(**{"locator": {"sigma_static_db": 5.0}, "correlation": {"group_wait_s": 0.3},
                             "alerts": {"staff": "low"}, "event_gap_s": 30.0})
    assert config.locator.sigma_static_db == 5.0 and config.correlation.group_wait_s == 0.3
    assert config.priority("staff") == "low" and config.event_gap_s == 30.0
    with pytest.raises(InputError) as info:
        EngineConfig.from_dict({"event_gap": 3}, source="service.toml")
    assert info.value.field == "event_gap" and info.value.source == "service.toml"
    with pytest.raises(InputError, match=r"locator\.prior"):
        EngineConfig.from_dict({"locator": {"prior": "flat"}})
    with pytest.raises(InputError, match="alerts"):
        EngineConfig(alerts={"cell": ""})


def test_detections_of_unknown_sensors_are_counted_not_fatal(demo) -> None:
    engine = EventEngine(demo)
    stray = Detection(sensor_id="C9-S9", t_start_s=1.0, duration_s=5e-4, freq_hz=902.4e6, bandwidth_hz=2e5,
                      power_dbfs=-30.0, snr_db=20.0, rssi_dbm=-60.0)
    assert engine.add([stray]) == [] and engine.flush() == []
    assert engine.counts["unknown_sensor"] == 1
