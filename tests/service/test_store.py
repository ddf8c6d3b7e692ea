"""The service's storage on a real SQLite file: idempotent durable detections, events and their
workflow, users and sessions, migrations, and the tamper-evident audit log."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from dsp.errors import InputError
from dsp.records import BandHealth, Heartbeat
from dsp.wire import SenderStatus
from service.store import (
    GENESIS_HASH,
    ConflictError,
    EventFilter,
    EventWrite,
    NotFoundError,
    Store,
    audit_hash,
    canonical_audit_row,
    open_store,
)
from tests.service.harness import detections

STREAM_A = "a" * 32
STREAM_B = "b" * 32


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "service.sqlite"


@pytest.fixture
def store(db_path: Path) -> Store:
    s = open_store(f"sqlite:///{db_path}")
    yield s
    s.close()


def record(event_id: str, n_bursts: int = 5, **extra: object) -> dict[str, object]:
    out: dict[str, object] = {"event_id": event_id, "t_start_s": 1.7e9, "t_end_s": 1.7e9 + 2, "tech": "gsm",
                              "freq_hz": 902.4e6, "n_bursts": n_bursts, "cell": "A-1-01", "wing": "A", "floor": 1,
                              "confidence": 0.9, "candidates": [{"place": "A-1-01", "p": 0.9}],
                              "sensors": [{"sensor_id": "A1-S1", "rssi_dbm": -70.0, "n_bursts": n_bursts}],
                              "place_kind": "cell", "priority": "alert", "detection_keys": [("A1-S1", 1.7e9)]}
    out.update(extra)
    return out


# -- detections -------------------------------------------------------------------------------------


def test_detections_are_stored_once_per_node_stream_seq(store: Store) -> None:
    batch = detections(50)
    assert store.store_detections("A1-S1", STREAM_A, batch) == 50
    assert store.store_detections("A1-S1", STREAM_A, batch) == 0  # a resend
    assert store.store_detections("A1-S1", STREAM_A, batch[40:] + detections(10, first_seq=51)) == 10
    assert store.store_detections("A1-S1", STREAM_B, batch[:5]) == 5  # a new outbox: new stream
    assert store.store_detections("A1-S2", STREAM_A, detections(5, sensor_id="A1-S2")) == 5
    assert store.n_detections == 70
    assert store.stream_counts()[("A1-S1", STREAM_A)] == (60, 60)
    rows = store.detections_after(0, 1000)
    assert len(rows) == 70 and [r.id for r in rows] == sorted(r.id for r in rows)
    first = rows[0]
    assert first.detection == batch[0]  # every field back, gain included
    assert store.detections_after(rows[-1].id, 10) == []
    with pytest.raises(ValueError, match="seq"):
        store.store_detections("A1-S1", STREAM_A, [replace(batch[0], seq=None)])


def test_acknowledged_means_on_disk(db_path: Path) -> None:
    """What store_detections returned survives the process (read back by plain sqlite3, WAL on)."""
    s = open_store(f"sqlite:///{db_path}")
    s.store_detections("A1-S1", STREAM_A, detections(20))
    # no close(): another connection sees the commit at once
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM detections").fetchone()[0] == 20
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.close()
    again = open_store(f"sqlite:///{db_path}")
    assert again.n_detections == 20 and again.stream_counts()[("A1-S1", STREAM_A)] == (20, 20)
    assert again.store_detections("A1-S1", STREAM_A, detections(20)) == 0
    again.close()


def test_concurrent_writers_keep_counts_and_chain(store: Store) -> None:
    errors: list[BaseException] = []

    def ingest(node: str) -> None:
        try:
            for k in range(20):
                store.store_detections(node, STREAM_A, detections(25, sensor_id=node, first_seq=1 + 25 * k))
        except BaseException as exc:
            errors.append(exc)

    def audit(actor: str) -> None:
        try:
            for k in range(30):
                store.audit(actor, "test.write", str(k))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ingest, args=(f"N{i}",)) for i in range(3)]
    threads += [threading.Thread(target=audit, args=(f"u{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.n_detections == 3 * 20 * 25
    result = store.verify_audit_chain()
    assert result.ok and result.n_rows == 90


def test_heartbeat_keeps_the_latest_per_sensor(store: Store) -> None:
    store.store_heartbeat("A1-S1", Heartbeat("A1-S1", 10.0, "running", bands=(BandHealth("b8", -40.0),)),
                          SenderStatus(n_pending=2))
    first_seen = store.sensor_health()[0].first_seen_s
    time.sleep(0.01)
    store.store_heartbeat("A1-S1", Heartbeat("A1-S1", 20.0, "retrying", n_dropped_samples=9), SenderStatus())
    rows = store.sensor_health()
    assert len(rows) == 1
    row = rows[0]
    assert row.heartbeat.t_s == 20.0 and row.heartbeat.source_state == "retrying"
    assert row.heartbeat.n_dropped_samples == 9 and row.heartbeat.bands == ()
    assert row.first_seen_s == first_seen and row.received_s > first_seen
    store.set_sensor_state("A1-S1", "offline", reason="test")
    assert store.sensor_health()[0].state == "offline"
    assert store.list_audit(action="sensor.offline")[0] == 1


# -- events -----------------------------------------------------------------------------------------


def test_event_upsert_keeps_workflow_and_links_detections(store: Store) -> None:
    store.store_detections("A1-S1", STREAM_A, detections(6))
    ids = [r.id for r in store.detections_after(0, 10)]
    [w] = store.upsert_events([EventWrite("E1", record("E1", 3), ids[:3])])
    assert w.created and w.row.status == "new" and w.row.revision == 1
    assert "detection_keys" not in w.row.record  # the links are rows, not a JSON blob
    store.transition_event("E1", "acknowledge", "otto", note="looking")
    [w] = store.upsert_events([EventWrite("E1", record("E1", 6, confidence=0.95), ids[3:])])
    assert not w.created and w.row.status == "acknowledged" and w.row.note == "looking"
    assert w.row.n_bursts == 6 and w.row.confidence == 0.95 and w.row.revision == 2
    n, linked = store.event_detections("E1")
    assert n == 6 and [d.id for d in linked] == ids
    assert store.event_for_detections([ids[4]]) == "E1"
    assert store.event_for_detections([10**9]) is None


def test_closed_event_reopens_on_detections_received_after_the_close(store: Store) -> None:
    store.store_detections("A1-S1", STREAM_A, detections(4))
    ids = [r.id for r in store.detections_after(0, 10)]
    store.upsert_events([EventWrite("E1", record("E1"), ids[:2])])
    store.transition_event("E1", "close", "otto", outcome="nothing_found")
    [w] = store.upsert_events([EventWrite("E1", record("E1"), ids[:2])])  # the same detections again
    assert w.row.status == "closed" and not w.reopened
    [w] = store.upsert_events([EventWrite("E1", record("E1", 7), ids[2:])])  # older ones, linked late
    assert w.row.status == "closed" and not w.reopened
    time.sleep(0.01)
    store.store_detections("A1-S1", STREAM_A, detections(2, first_seq=5, t0_s=1.8e9))
    ids = [r.id for r in store.detections_after(ids[-1], 10)]
    [w] = store.upsert_events([EventWrite("E1", record("E1", 9), ids)])
    assert w.reopened and w.row.status == "new" and w.row.outcome is None and w.row.status_by == "system"
    actions = store.event_actions_of("E1")
    assert [(a.action, a.username) for a in actions] == [("close", "otto"), ("reopen", "system")]
    assert store.list_audit(action="event.reopen")[0] == 1


def test_transitions(store: Store) -> None:
    store.upsert_events([EventWrite("E1", record("E1"))])
    with pytest.raises(NotFoundError):
        store.transition_event("nope", "acknowledge", "otto")
    with pytest.raises(ValueError, match="outcome"):
        store.transition_event("E1", "close", "otto")
    with pytest.raises(ValueError, match="only closing"):
        store.transition_event("E1", "acknowledge", "otto", outcome="phone_found")
    assert store.transition_event("E1", "escalate", "otto").status == "escalated"  # straight from new
    with pytest.raises(ConflictError):
        store.transition_event("E1", "acknowledge", "otto")
    row = store.transition_event("E1", "close", "ada", note="n", outcome="false_alarm")
    assert (row.status, row.outcome, row.status_by, row.note) == ("closed", "false_alarm", "ada", "n")
    with pytest.raises(ConflictError):
        store.transition_event("E1", "close", "ada", outcome="phone_found")
    assert store.event_counts() == {"closed": 1}


def test_event_record_with_odd_values_is_stored_safely(store: Store) -> None:
    """Missing extras, NaN confidence, non-string ids: stored with neutral values, JSON stays valid."""
    [w] = store.upsert_events([EventWrite("E1", {"event_id": "E1", "t_start_s": 5.0, "confidence": float("nan"),
                                                 "candidates": [{"place": "yard", "p": float("inf")}],
                                                 "zone": "yard", "floor": "0"})])
    row = w.row
    assert row.confidence is None and row.candidates == [{"place": "yard", "p": None}]
    assert row.priority == "low" and row.place_kind is None and row.floor == 0 and row.t_end_s == 5.0
    total, rows = store.list_events(EventFilter(place="yard"))
    assert total == 1 and rows[0].event_id == "E1"


# -- users and sessions ----------------------------------------------------------------------------


def test_users_and_sessions(store: Store) -> None:
    user = store.create_user("ada", "admin", "hash1", actor="cli:root")
    with pytest.raises(ConflictError):
        store.create_user("ada", "viewer", "hash2", actor="cli:root")
    with pytest.raises(ValueError):
        store.create_user("bob", "root", "h", actor="cli:root")
    now = time.time()
    store.create_session("t" * 64, user, now + 60, "127.0.0.1")
    store.create_session("u" * 64, user, now - 1, "127.0.0.1")  # already expired
    found = store.session_user("t" * 64, now)
    assert found is not None and found[1].username == "ada" and found[1].role == "admin"
    assert store.session_user("u" * 64, now) is None
    assert store.session_user("x" * 64, now) is None
    assert store.session_user("t" * 64, now + 61) is None
    store.update_user("ada", actor="ada", password_hash="hash3")  # a new password ends the sessions
    assert store.session_user("t" * 64, now) is None
    store.create_session("v" * 64, user, now + 60, None)
    store.update_user("ada", actor="root", disabled=True)
    assert store.session_user("v" * 64, now) is None
    assert store.revoke_session("v" * 64, "ada") is False  # already ended
    with pytest.raises(NotFoundError):
        store.update_user("ghost", actor="root", role="viewer")
    details = [r.details for r in store.list_audit(action="user.update")[1]]
    assert {"password_changed": True} in details and {"disabled": True} in details
    assert all("hash" not in str(d) for d in details)  # no password hash in the audit log


# -- migrations ----------------------------------------------------------------------------------------


def test_migrations_are_recorded_and_a_newer_database_is_refused(db_path: Path) -> None:
    open_store(f"sqlite:///{db_path}").close()
    open_store(f"sqlite:///{db_path}").close()  # nothing to do the second time
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,), (2,)]  # 2: IQ snippets
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"detections", "events", "event_detections", "users", "sessions", "audit_log"} <= tables
        conn.execute("INSERT INTO schema_version VALUES (99, 0, 'from the future')")
    with pytest.raises(InputError, match="newer than this cellwatch"):
        open_store(f"sqlite:///{db_path}")


def test_database_urls(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unsupported database"):
        open_store("mysql://u@h/db")
    with pytest.raises(InputError, match="in-memory"):
        open_store("sqlite://")
    with pytest.raises(InputError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path}/missing/dir/x.sqlite")
    with pytest.raises(InputError, match="database"):
        open_store("not a url")
    (tmp_path / "garbage.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(InputError, match=r"garbage\.sqlite"):
        open_store(f"sqlite:///{tmp_path}/garbage.sqlite")


def test_postgresql_url_takes_the_same_code_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The PostgreSQL URL builds the same tables (compiled for its dialect) with the same store code."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    from service import store as store_module

    ddl = str(CreateTable(store_module.detections).compile(dialect=postgresql.dialect()))
    assert "BIGSERIAL" in ddl and "UNIQUE (node_id, stream_id, seq)" in ddl
    insert = store_module._insert
    assert insert.__name__ == "_insert"
    try:
        engine = store_module._make_engine("postgresql+psycopg://cellwatch@127.0.0.1:1/cellwatch")
    except InputError as exc:  # no driver installed: a clear message, not a traceback
        assert "driver" in str(exc)
    else:
        assert engine.dialect.name == "postgresql"
        engine.dispose()


# -- the audit log ---------------------------------------------------------------------------------


def test_audit_chain_hashes_each_row_on_the_previous_one(store: Store) -> None:
    for i in range(5):
        store.audit("ada", "test.step", f"t{i}", {"i": i, "note": "é"})
    _, rows = store.list_audit(limit=10)
    rows = sorted(rows, key=lambda r: r.id)
    prev = GENESIS_HASH
    for r in rows:
        assert r.prev_hash == prev
        import json

        details = json.dumps(r.details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert r.hash == audit_hash(prev, canonical_audit_row(r.id, r.t_s, r.actor, r.action, r.target, details))
        prev = r.hash
    result = store.verify_audit_chain(chunk=2)  # across chunk boundaries
    assert result.ok and result.n_rows == 5 and result.head_hash == prev


@pytest.mark.parametrize("tamper", ["edit", "delete", "retime", "insert"])
def test_audit_tampering_is_detected(store: Store, db_path: Path, tamper: str) -> None:
    for i in range(6):
        store.audit("ada", "test.step", f"t{i}", {"i": i})
    with sqlite3.connect(db_path) as conn:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit_log SET actor = 'eve' WHERE id = 3")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit_log WHERE id = 3")
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("DROP TRIGGER audit_log_no_delete")
        if tamper == "edit":
            conn.execute("UPDATE audit_log SET actor = 'eve' WHERE id = 3")
        elif tamper == "delete":
            conn.execute("DELETE FROM audit_log WHERE id = 3")
        elif tamper == "retime":
            conn.execute("UPDATE audit_log SET t_s = t_s + 1000 WHERE id = 3")
        else:  # a forged copy of row 3 slipped in after it (the later rows renumbered)
            conn.execute("UPDATE audit_log SET id = id + 100 WHERE id >= 4")
            conn.execute("UPDATE audit_log SET id = id - 99 WHERE id >= 104")
            conn.execute("INSERT INTO audit_log SELECT 4, t_s, 'eve', action, target, details, prev_hash, hash "
                         "FROM audit_log WHERE id = 3")
    result = store.verify_audit_chain()
    assert not result.ok
    assert result.first_bad_id in (3, 4, 5)
    assert result.n_rows == result.first_bad_id - 1  # everything before it checks out


def test_audit_rows_cannot_be_changed_through_the_store_api(store: Store) -> None:
    store.audit("ada", "test.step")
    with store.engine.begin() as conn, pytest.raises(sa.exc.DatabaseError, match="append-only"):
        conn.execute(sa.text("DELETE FROM audit_log"))
    assert store.verify_audit_chain().n_rows == 1


def test_batches_of_any_size_use_few_statement_shapes() -> None:
    """Many-row inserts go in power-of-two chunks: the driver caches one prepared statement
    per shape per connection, and batches of every size made the service grow by 100s of MB."""
    from service.store import _fixed_chunks

    rows = [{"i": i} for i in range(1300)]
    chunks = list(_fixed_chunks(rows))
    assert [len(c) for c in chunks] == [512, 512, 256, 16, 4]
    assert [r for c in chunks for r in c] == rows  # every row once, in order
    shapes = {len(c) for n in range(1, len(rows) + 1) for c in _fixed_chunks(rows[:n])}
    assert shapes <= {1 << k for k in range(10)}
    assert list(_fixed_chunks([])) == []
