"""The HTTP API through real HTTP on 127.0.0.1: every endpoint, sessions, roles, errors, the live feed.

The event engine is a stand-in (tests/service/harness.py) so that what is checked here
is the service: storage, workflow, permissions, audit, feed. Detections reach it the way
the ingest stores them (``store_detections``); the worker turns them into events.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.service_ingest import SseReader
from dsp.records import BandHealth, Heartbeat
from dsp.wire import SenderStatus
from service.settings import HttpSettings, SensorSettings
from service.store import EventWrite
from tests.service.harness import (
    PASSWORD,
    LiveServer,
    StandInEngine,
    detections,
    live_server,
    make_settings,
    wait_for,
)

STREAM = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("api")
    token_file = tmp / "metrics.token"
    token_file.write_text("scraper-token-0123456789abcdef\n")
    settings = make_settings(tmp, sensors=SensorSettings(offline_after_s=5.0),
                             http=HttpSettings(metrics_token_file=token_file))
    engine = StandInEngine(cells={round(902.4e6 / 200e3): "A-1-03", round(880.2e6 / 200e3): "A-1-staff"})
    with live_server(settings, engine) as s:
        for name, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin")):
            s.add_user(name, role)
        yield s


@pytest.fixture(scope="module")
def viewer(server: LiveServer) -> dict[str, str]:
    return server.login("vera")


@pytest.fixture(scope="module")
def operator(server: LiveServer) -> dict[str, str]:
    return server.login("otto")


@pytest.fixture(scope="module")
def admin(server: LiveServer) -> dict[str, str]:
    return server.login("ada")


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def make_event(server: LiveServer, event_id: str, **record: object) -> None:
    base = {"event_id": event_id, "t_start_s": 1.7e9, "t_end_s": 1.7e9 + 10, "tech": "gsm", "freq_hz": 902.4e6,
            "n_bursts": 20, "sensors": [{"sensor_id": "A1-S1", "rssi_dbm": -60.0, "n_bursts": 20}], "wing": "A",
            "floor": 1, "cell": "A-1-05", "zone": None, "confidence": 0.8,
            "candidates": [{"place": "A-1-05", "p": 0.8}, {"place": "A-1-06", "p": 0.1}], "place_kind": "cell",
            "priority": "alert"}
    base.update(record)
    server.services.store.upsert_events([EventWrite(event_id, base)])


# -- sessions and roles ---------------------------------------------------------------------------


def test_healthz_needs_no_session_and_carries_security_headers(http: httpx.Client) -> None:
    r = http.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["database"] == "ok" and r.json()["engine"] == "running"
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_every_route_but_healthz_needs_a_session(server: LiveServer, http: httpx.Client) -> None:
    routes = [(method.upper(), path) for path, ops in server.app.openapi()["paths"].items() for method in ops]
    routes.append(("GET", "/api/openapi.json"))
    checked = 0
    for method, path in routes:
        if path in ("/healthz", "/api/auth/login"):
            continue
        url = path.replace("{event_id}", "x").replace("{cell_id}", "A-1-01").replace("{username}", "vera")
        r = http.request(method, url, json={} if method in ("POST", "PATCH") else None)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.json()["detail"]
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "content-security-policy" in r.headers
        checked += 1
    assert checked >= 20


def test_bad_or_foreign_tokens_are_refused(http: httpx.Client) -> None:
    assert http.get("/api/me", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    assert http.get("/api/me", headers={"Authorization": "Basic dmVyYTp4"}).status_code == 401
    with httpx.Client(base_url=str(http.base_url), cookies={"cellwatch_session": "forged"}) as forged:
        assert forged.get("/api/me").status_code == 401


def test_login_with_cookie_then_logout_ends_the_session(server: LiveServer) -> None:
    with server.client() as c:
        r = c.post("/api/auth/login", json={"username": "vera", "password": PASSWORD})
        assert r.status_code == 200
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        token = r.json()["token"]
        me = c.get("/api/me")  # the cookie alone
        assert me.status_code == 200 and me.json()["username"] == "vera" and me.json()["role"] == "viewer"
        assert me.json()["session_expires_s"] > time.time() + 3600
        assert c.post("/api/auth/logout").status_code == 204
        c.cookies.clear()
        assert c.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_wrong_password_and_unknown_user_look_the_same(http: httpx.Client) -> None:
    a = http.post("/api/auth/login", json={"username": "vera", "password": "wrong password!"})
    b = http.post("/api/auth/login", json={"username": "nobody", "password": "wrong password!"})
    assert a.status_code == b.status_code == 401
    assert a.json() == b.json()


def test_roles_viewer_reads_operator_works_admin_manages(http: httpx.Client, server: LiveServer,
                                                          viewer: dict[str, str], operator: dict[str, str],
                                                          admin: dict[str, str]) -> None:
    make_event(server, "R1")
    assert http.get("/api/events", headers=viewer).status_code == 200
    r = http.post("/api/events/R1/acknowledge", headers=viewer, json={})
    assert r.status_code == 403 and "operator" in r.json()["detail"]
    assert http.get("/api/audit", headers=viewer).status_code == 403
    assert http.get("/api/audit", headers=operator).status_code == 403
    assert http.get("/api/users", headers=operator).status_code == 403
    assert http.post("/api/users", headers=operator, json={"username": "x", "role": "admin",
                                                           "password": PASSWORD}).status_code == 403
    assert http.post("/api/events/R1/acknowledge", headers=operator, json={}).status_code == 200
    assert http.get("/api/audit", headers=admin).status_code == 200
    assert http.post("/api/events/R1/escalate", headers=admin, json={}).status_code == 200  # admin >= operator


# login rate limiting: tests/hardening/test_security.py


# -- events and their workflow -----------------------------------------------------------------


def test_detections_become_an_event_with_its_detections(server: LiveServer, http: httpx.Client,
                                                         viewer: dict[str, str]) -> None:
    t0 = time.time()
    n = server.services.store.store_detections("A1-S1", STREAM, detections(6, t0_s=t0, freq_hz=902.4e6)
                                               + detections(6, sensor_id="A1-S1", t0_s=t0 + 0.05,
                                                            freq_hz=902.4e6, first_seq=7))
    assert n == 12
    found = wait_for(lambda: http.get("/api/events", headers=viewer, params={"since": t0 - 1}).json()["items"],
                     what="the event")
    event = found[0]
    assert event["cell"] == "A-1-03" and event["wing"] == "A" and event["floor"] == 1
    assert event["status"] == "new" and event["priority"] == "alert"
    detail = wait_for(lambda: (d := http.get(f"/api/events/{event['event_id']}", headers=viewer).json())
                      ["n_detections"] == 12 and d)
    assert detail["n_bursts"] == 12
    times = [d["t_start_s"] for d in detail["detections"]]
    assert times == sorted(times) and len(times) == 12
    assert {d["sensor_id"] for d in detail["detections"]} == {"A1-S1"}
    assert detail["actions"] == []
    limited = http.get(f"/api/events/{event['event_id']}", headers=viewer, params={"detections_limit": 5}).json()
    assert len(limited["detections"]) == 5 and limited["n_detections"] == 12


def test_event_filters(server: LiveServer, http: httpx.Client, viewer: dict[str, str],
                       operator: dict[str, str]) -> None:
    make_event(server, "F1", t_start_s=1.0e9, t_end_s=1.0e9 + 5, cell="B-2-07", wing="B", floor=2, tech="lte",
               candidates=[{"place": "B-2-07", "p": 0.7}])
    make_event(server, "F2", t_start_s=1.0e9 + 100, t_end_s=1.0e9 + 105, cell="B-2-08", wing="B", floor=2)
    make_event(server, "F3", t_start_s=1.0e9 + 200, t_end_s=1.0e9 + 205, cell=None, zone="B-2-staff", wing="B",
               floor=2, place_kind="staff", priority="staff")
    window = {"since": 1.0e9 - 1, "until": 1.0e9 + 1000}

    def ids(**params: object) -> list[str]:
        r = http.get("/api/events", headers=viewer, params={**window, **params})
        assert r.status_code == 200, r.text
        return [e["event_id"] for e in r.json()["items"]]

    assert ids() == ["F3", "F2", "F1"]  # newest first
    assert ids(cell="B-2-07") == ["F1"]
    assert ids(zone="B-2-staff") == ["F3"]
    assert ids(tech="lte") == ["F1"]
    assert ids(tech=["lte", "gsm"]) == ["F3", "F2", "F1"]
    assert ids(priority="alert") == ["F2", "F1"]
    assert ids(wing="B", floor=2) == ["F3", "F2", "F1"]
    assert ids(floor=1) == []
    assert ids(since=1.0e9 + 103) == ["F3", "F2"]
    assert ids(until=1.0e9 + 50) == ["F1"]
    page = http.get("/api/events", headers=viewer, params={**window, "limit": 1, "offset": 1}).json()
    assert page["total"] == 3 and [e["event_id"] for e in page["items"]] == ["F2"]
    http.post("/api/events/F2/acknowledge", headers=operator, json={})
    assert ids(status="acknowledged") == ["F2"]
    assert ids(status=["new", "acknowledged"]) == ["F3", "F2", "F1"]


def test_workflow_records_operator_note_and_audit(server: LiveServer, http: httpx.Client,
                                                   operator: dict[str, str], admin: dict[str, str]) -> None:
    make_event(server, "W1")
    r = http.post("/api/events/W1/acknowledge", headers=operator, json={"note": "  camera checked  "})
    assert r.status_code == 200
    assert r.json()["status"] == "acknowledged" and r.json()["status_by"] == "otto"
    assert r.json()["note"] == "camera checked"
    assert http.post("/api/events/W1/acknowledge", headers=operator, json={}).status_code == 409
    assert http.post("/api/events/W1/escalate", headers=operator, json={"note": "fouille 14h"}).json()["status"] \
        == "escalated"
    assert http.post("/api/events/W1/close", headers=operator, json={"note": "found"}).status_code == 422
    closed = http.post("/api/events/W1/close", headers=operator,
                       json={"outcome": "phone_found", "note": "under the mattress"}).json()
    assert closed["status"] == "closed" and closed["outcome"] == "phone_found"
    r = http.post("/api/events/W1/escalate", headers=operator, json={})
    assert r.status_code == 409 and "closed" in r.json()["detail"]
    detail = http.get("/api/events/W1", headers=operator).json()
    assert [(a["action"], a["username"], a["to_status"]) for a in detail["actions"]] == [
        ("acknowledge", "otto", "acknowledged"), ("escalate", "otto", "escalated"), ("close", "otto", "closed")]
    assert detail["actions"][2]["note"] == "under the mattress"
    audit = http.get("/api/audit", headers=admin, params={"actor": "otto"}).json()
    entries = [(a["action"], a["target"]) for a in audit["items"] if a["target"] == "W1"]
    assert entries == [("event.close", "W1"), ("event.escalate", "W1"), ("event.acknowledge", "W1")]
    closing = next(a for a in audit["items"] if a["action"] == "event.close" and a["target"] == "W1")
    assert closing["details"]["outcome"] == "phone_found" and closing["details"]["from"] == "escalated"


def test_workflow_bad_input_is_a_clear_4xx(http: httpx.Client, server: LiveServer,
                                           operator: dict[str, str]) -> None:
    make_event(server, "B1")
    r = http.post("/api/events/nope/acknowledge", headers=operator, json={})
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    r = http.post("/api/events/B1/close", headers=operator, json={"outcome": "lost"})
    assert r.status_code == 422 and r.json()["detail"].startswith("body.outcome")
    r = http.post("/api/events/B1/acknowledge", headers=operator, json={"note": "x", "sneaky": 1})
    assert r.status_code == 422 and "sneaky" in r.json()["detail"]
    r = http.post("/api/events/B1/acknowledge", headers=operator, json={"note": "x" * 5000})
    assert r.status_code == 422
    r = http.post("/api/events/B1/acknowledge", headers={**operator, "content-type": "application/json"},
                  content=b"{not json")
    assert r.status_code == 422
    r = http.post("/api/events/B1/acknowledge", headers={**operator, "content-type": "text/plain"},
                  content=b'{"note": "x"}')
    assert r.status_code == 422  # JSON only: a cross-site form post cannot be one
    r = http.post("/api/events/B1/acknowledge", headers={**operator, "content-type": "application/json"},
                  content=b"[" * 70_000)
    assert r.status_code == 413
    for params in ({"limit": 0}, {"limit": 10**9}, {"since": "yesterday"}, {"since": "nan"}, {"floor": "x"},
                   {"status": "lost"}, {"offset": -1}):
        r = http.get("/api/events", headers=operator, params=params)
        assert r.status_code == 422, params
        assert r.json()["detail"].startswith("query.")
    assert http.get("/api/events/" + "x" * 100, headers=operator).status_code in (404, 422)
    assert http.get("/api/nothing-here", headers=operator).status_code == 404
    assert http.get("/api/nothing-here").json() == {"detail": "Not Found"}


# -- cells, sensors, site --------------------------------------------------------------------------


def test_cell_history_and_activity(server: LiveServer, http: httpx.Client, viewer: dict[str, str]) -> None:
    make_event(server, "C1", t_start_s=1.2e9, t_end_s=1.2e9 + 1, cell="B-1-11", wing="B", floor=1)
    make_event(server, "C2", t_start_s=1.2e9 + 50, t_end_s=1.2e9 + 51, cell="B-1-11", wing="B", floor=1)
    make_event(server, "C3", t_start_s=1.2e9 + 60, t_end_s=1.2e9 + 61, cell="B-1-12", wing="B", floor=1)
    r = http.get("/api/cells/B-1-11/history", headers=viewer)
    assert r.status_code == 200
    body = r.json()
    assert body["kind"] == "cell" and body["wing"] == "B" and body["floor"] == 1
    assert [e["event_id"] for e in body["items"]] == ["C2", "C1"] and body["total"] == 2
    assert http.get("/api/cells/B-1-11/history", headers=viewer, params={"since": 1.2e9 + 10}).json()["total"] == 1
    assert http.get("/api/cells/Z-9-99/history", headers=viewer).status_code == 404
    activity = http.get("/api/cells", headers=viewer, params={"since": 1.2e9 - 1, "until": 1.2e9 + 100}).json()
    by_place = {a["place"]: a for a in activity["items"]}
    assert by_place["B-1-11"]["n_events"] == 2 and by_place["B-1-11"]["n_open"] == 2
    assert by_place["B-1-12"]["n_events"] == 1
    assert activity["items"][0]["place"] == "B-1-11"  # most open events first


def test_sensor_health_online_offline_noise_floor(server: LiveServer, http: httpx.Client,
                                                  viewer: dict[str, str]) -> None:
    store = server.services.store
    store.store_heartbeat("A1-S2", Heartbeat("A1-S2", time.time(), "running", n_dropped_samples=4096,
                                             bands=(BandHealth("gsm900", -42.5, 0.5, 0.2),)),
                          SenderStatus(n_pending=7, n_overflow_dropped=3))
    store.store_heartbeat("rogue-1", Heartbeat("rogue-1", time.time(), "retrying"), SenderStatus())
    body = http.get("/api/sensors", headers=viewer).json()
    by_id = {s["sensor_id"]: s for s in body["items"]}
    s2 = by_id["A1-S2"]
    assert s2["state"] == "online" and s2["in_site"] and s2["wing"] == "A"
    assert s2["bands"] == [{"band": "gsm900", "noise_floor_dbfs": -42.5, "watched_fraction": 0.5, "revisit_s": 0.2}]
    assert s2["n_dropped_samples"] == 4096
    assert s2["delivery"]["n_pending"] == 7 and s2["delivery"]["n_overflow_dropped"] == 3
    assert by_id["B2-S3"]["state"] == "offline" and by_id["B2-S3"]["last_heartbeat_s"] is None
    assert by_id["rogue-1"]["in_site"] is False
    assert body["n_online"] + body["n_offline"] == len(body["items"]) == 13
    # going offline is noticed by the monitor: stored, audited, announced on the feed
    with server.services.store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE sensor_health SET received_s = received_s - 60 WHERE sensor_id = 'A1-S2'")
    states = {s["sensor_id"]: s["state"] for s in http.get("/api/sensors", headers=viewer).json()["items"]}
    assert states["A1-S2"] == "offline"
    wait_for(lambda: store.list_audit(action="sensor.offline")[0] >= 1, what="the offline audit entry")
    _, rows = store.list_audit(action="sensor.offline")
    assert {r.target for r in rows} >= {"A1-S2"}


def test_site_plan_for_drawing(server: LiveServer, http: httpx.Client, viewer: dict[str, str]) -> None:
    body = http.get("/api/site", headers=viewer).json()
    site = server.services.site
    assert body["name"] == site.name
    assert len(body["places"]) == len(site.places) and len(body["walls"]) == len(site.walls)
    cell = next(p for p in body["places"] if p["id"] == "A-1-01")
    assert cell["kind"] == "cell" and cell["polygon"] == [[0.0, 0.0], [3.0, 0.0], [3.0, 4.0], [0.0, 4.0]]
    assert cell["centroid"] == pytest.approx([1.5, 2.0]) and cell["area_m2"] == pytest.approx(12.0)
    assert {s["id"] for s in body["sensors"]} == {s.id for s in site.sensors}
    assert body["bounds"]["min_x_m"] <= 0.0 <= body["bounds"]["max_x_m"]
    assert {w["id"] for w in body["wings"]} == {"A", "B"}


# -- users, password, audit, metrics, openapi -------------------------------------------------------


def test_user_management(server: LiveServer, http: httpx.Client, admin: dict[str, str]) -> None:
    r = http.post("/api/users", headers=admin, json={"username": "nina", "role": "operator", "password": PASSWORD})
    assert r.status_code == 201 and r.json()["role"] == "operator"
    assert http.post("/api/users", headers=admin, json={"username": "nina", "role": "viewer",
                                                        "password": PASSWORD}).status_code == 409
    r = http.post("/api/users", headers=admin, json={"username": "weak", "role": "viewer", "password": "short"})
    assert r.status_code == 400 and "at least" in r.json()["detail"]
    r = http.post("/api/users", headers=admin, json={"username": "../x", "role": "viewer", "password": PASSWORD})
    assert r.status_code == 400
    assert http.post("/api/users", headers=admin, json={"username": "y", "role": "root",
                                                        "password": PASSWORD}).status_code == 422
    nina = server.login("nina")
    assert http.get("/api/me", headers=nina).json()["role"] == "operator"
    assert http.patch("/api/users/nina", headers=admin, json={"role": "viewer"}).json()["role"] == "viewer"
    assert http.post("/api/events/x/acknowledge", headers=nina, json={}).status_code == 403  # the role now
    assert http.patch("/api/users/nina", headers=admin, json={"disabled": True}).json()["disabled"] is True
    assert http.get("/api/me", headers=nina).status_code == 401  # disabling ends the sessions
    assert http.post("/api/auth/login", json={"username": "nina", "password": PASSWORD}).status_code == 401
    assert http.patch("/api/users/ghost", headers=admin, json={"role": "viewer"}).status_code == 404
    r = http.patch("/api/users/ada", headers=admin, json={"role": "viewer"})
    assert r.status_code == 409 and "last enabled admin" in r.json()["detail"]
    names = {u["username"] for u in http.get("/api/users", headers=admin).json()["items"]}
    assert {"vera", "otto", "ada", "nina"} <= names
    actions = [(a["action"], a["target"]) for a in http.get("/api/audit", headers=admin,
                                                            params={"actor": "ada"}).json()["items"]]
    assert ("user.create", "nina") in actions and ("user.update", "nina") in actions


def test_change_own_password(server: LiveServer, http: httpx.Client) -> None:
    server.add_user("pat", "viewer")
    pat = server.login("pat")
    r = http.post("/api/me/password", headers=pat, json={"current_password": "wrong", "new_password": "n" * 12})
    assert r.status_code == 400
    r = http.post("/api/me/password", headers=pat, json={"current_password": PASSWORD, "new_password": "short"})
    assert r.status_code == 400
    r = http.post("/api/me/password", headers=pat, json={"current_password": PASSWORD,
                                                         "new_password": "a much better pass"})
    assert r.status_code == 204
    assert http.get("/api/me", headers=pat).status_code == 401
    assert server.login("pat", "a much better pass")


def test_audit_chain_verifies_and_detects_tampering(tmp_path: Path) -> None:
    with live_server(make_settings(tmp_path)) as s, s.client() as c:
        s.add_user("ada", "admin")
        admin = s.login("ada")
        make_event(s, "A1")
        c.post("/api/events/A1/acknowledge", headers=admin, json={"note": "ok"})
        c.post("/api/events/A1/close", headers=admin, json={"outcome": "false_alarm"})
        ok = c.get("/api/audit/verify", headers=admin).json()
        assert ok["ok"] is True and ok["n_rows"] >= 4 and ok["first_bad_id"] is None
        listed = c.get("/api/audit", headers=admin, params={"limit": 2}).json()
        assert listed["total"] == ok["n_rows"] and len(listed["items"]) == 2
        assert listed["items"][0]["hash"] == ok["head_hash"]  # newest first
        row = next(a for a in c.get("/api/audit", headers=admin).json()["items"] if a["action"] == "event.close")
        engine = s.services.store.engine
        with engine.begin() as conn, pytest.raises(Exception, match="append-only"):
            conn.exec_driver_sql("UPDATE audit_log SET actor = 'someone' WHERE id = ?", (row["id"],))
        with engine.begin() as conn:  # an attacker with the file drops the trigger first
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
            conn.exec_driver_sql("UPDATE audit_log SET details = replace(details, 'false_alarm', 'phone_found') "
                                 "WHERE id = ?", (row["id"],))
        bad = c.get("/api/audit/verify", headers=admin).json()
        assert bad["ok"] is False and bad["first_bad_id"] == row["id"]
        assert "hash" in bad["problem"]


def test_metrics(server: LiveServer, http: httpx.Client, viewer: dict[str, str]) -> None:
    r = http.get("/metrics", headers=viewer)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["cellwatch_detections_stored"] == server.services.store.n_detections
    assert values['cellwatch_sensors{state="online"}'] + values['cellwatch_sensors{state="offline"}'] >= 12
    assert "cellwatch_engine_detections_total" in values and "cellwatch_live_subscribers" in values
    assert "# TYPE cellwatch_events gauge" in text
    scraper = {"Authorization": "Bearer scraper-token-0123456789abcdef"}
    assert http.get("/metrics", headers=scraper).status_code == 200
    assert http.get("/api/events", headers=scraper).status_code == 401  # that token opens /metrics only
    assert http.get("/metrics").status_code == 401


def test_openapi_schema_for_logged_in_users(http: httpx.Client, viewer: dict[str, str]) -> None:
    assert http.get("/api/openapi.json").status_code == 401
    schema = http.get("/api/openapi.json", headers=viewer).json()
    paths = schema["paths"]
    for path in ("/api/auth/login", "/api/events", "/api/events/{event_id}", "/api/events/{event_id}/close",
                 "/api/cells/{cell_id}/history", "/api/sensors", "/api/site", "/api/live", "/api/audit",
                 "/healthz", "/metrics", "/api/users"):
        assert path in paths, path
    assert "EventOut" in schema["components"]["schemas"]
    assert http.get("/docs").status_code == 404  # no page pulling scripts from a CDN


# -- live feed ------------------------------------------------------------------------------------


def test_live_feed_delivers_created_updated_and_detections(server: LiveServer, viewer: dict[str, str],
                                                           operator: dict[str, str]) -> None:
    reader = SseReader(f"{server.url}/api/live", viewer)
    try:
        assert reader.status_code == 200
        t0 = time.time()
        server.services.store.store_detections("B1-S1", "1" * 32, detections(3, sensor_id="B1-S1", t0_s=t0,
                                                                              freq_hz=880.2e6))
        created = reader.next("event.created")
        event = created.data["event"]
        assert event["zone"] == "A-1-staff" and event["priority"] == "staff" and event["cell"] is None
        hunt = reader.next("event.detections")
        assert hunt.data["event_id"] == event["event_id"]
        assert hunt.data["sensors"][0]["sensor_id"] == "B1-S1" and hunt.data["sensors"][0]["n_bursts"] == 3
        with httpx.Client(base_url=server.url) as c:
            c.post(f"/api/events/{event['event_id']}/acknowledge", headers=operator, json={"note": "seen"})
        updated = reader.next("event.updated")
        assert updated.data["event"]["status"] == "acknowledged" and updated.data["event"]["status_by"] == "otto"
        assert updated.id > created.id
    finally:
        reader.close()


def test_live_feed_type_filter_and_replay(server: LiveServer, viewer: dict[str, str]) -> None:
    hub = server.services.hub
    first = hub.publish("sensor.health", {"sensor": {"sensor_id": "X"}})
    hub.publish("event.updated", {"event": {"event_id": "replayed"}})
    reader = SseReader(f"{server.url}/api/live", {**viewer, "Last-Event-ID": str(first.id - 1)},
                       params={"types": "event.updated"})
    try:
        message = reader.next()
        assert message.type == "event.updated" and message.data["event"]["event_id"] == "replayed"
        hub.publish("sensor.health", {"sensor": {"sensor_id": "Y"}})
        hub.publish("event.updated", {"event": {"event_id": "live"}})
        assert reader.next().data["event"]["event_id"] == "live"  # the sensor message was filtered out
    finally:
        reader.close()


def test_live_feed_ends_when_the_session_does(tmp_path: Path) -> None:
    with live_server(make_settings(tmp_path)) as s:
        s.services.hub.keepalive_s = 0.2
        s.add_user("vera", "viewer")
        headers = s.login("vera")
        reader = SseReader(f"{s.url}/api/live", headers)
        try:
            assert reader.status_code == 200
            with s.client() as c:
                assert c.post("/api/auth/logout", headers=headers).status_code == 204
            assert reader.ended.wait(5.0)
        finally:
            reader.close()
