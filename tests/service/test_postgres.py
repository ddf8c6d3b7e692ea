"""The store and ``cellwatch serve`` on a live PostgreSQL server, through ``database.url``.

The same code as on SQLite (service.store), run against a throwaway server this module
starts: ``initdb`` into a temporary folder owned by the ``postgres`` system user (the
server refuses to run as root), ``pg_ctl`` on a free port of 127.0.0.1 with its socket in
that folder, one fresh database per test. The server is there for the tests only, so it
runs with ``fsync=off``: durability across a *server* crash is PostgreSQL's, not ours.

* the store tests of tests/service/test_store.py that do not reach into the SQLite file
  run here unchanged (imported below, with this module's ``store`` fixture);
* migrations from an empty database (versions 1 and 2 recorded, a newer database refused),
  the audit triggers refusing UPDATE and DELETE, and a tampered row found by the chain;
* IQ snippets (migration 2): bytea round trip, once per (node, stream, seq), and their
  join to an event's detections;
* concurrent writers from two Store objects (two processes' worth of connections): the
  audit chain stays one unbroken chain (the advisory lock), nothing is stored twice;
* ``cellwatch serve`` with ``database.url`` = the server: real nodes over ZeroMQ (CURVE),
  the real engine, the API serving the detections back.

Skipped only when no PostgreSQL binaries are installed (``apt-get install postgresql``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import count
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from dsp.errors import InputError
from dsp.snippets import IQSnippet
from service.store import MIGRATIONS, EventFilter, EventWrite, Store, migrate, open_store
from tests.service.harness import detections
from tests.service.test_evidence import make_v1_database

# The store tests that only use the ``store`` fixture run here as they are, on PostgreSQL.
from tests.service.test_store import (  # noqa: F401 (collected by pytest)
    STREAM_A,
    record,
    test_audit_chain_hashes_each_row_on_the_previous_one,
    test_audit_rows_cannot_be_changed_through_the_store_api,
    test_closed_event_reopens_on_detections_received_after_the_close,
    test_concurrent_writers_keep_counts_and_chain,
    test_detections_are_stored_once_per_node_stream_seq,
    test_event_record_with_odd_values_is_stored_safely,
    test_event_upsert_keeps_workflow_and_links_detections,
    test_heartbeat_keeps_the_latest_per_sensor,
    test_transitions,
    test_users_and_sessions,
)


def _postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    override = os.environ.get("CELLWATCH_PG_BIN")
    if override:
        return Path(override)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


PG_BIN = _postgres_bin()
pytestmark = pytest.mark.skipif(PG_BIN is None or not (PG_BIN / "pg_ctl").exists(),
                                reason="no PostgreSQL binaries (initdb, pg_ctl): apt-get install postgresql")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A running throwaway server; ``new_database()`` gives a fresh, empty database URL."""

    root: Path
    port: int
    user: str | None  # the system user the server runs as (None: this process's user)
    _n: count

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = f"cellwatch_{next(self._n)}"
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
        finally:
            engine.dispose()
        return self.url(name)

    def run(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), user=self.user, capture_output=True, text=True, timeout=timeout_s,
                              cwd=self.root, check=False)


def _start_server(root: Path) -> PostgresServer:
    assert PG_BIN is not None
    user = "postgres" if os.geteuid() == 0 else None  # root: initdb and postgres refuse to run as root
    if user is not None:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' system user to run the server as")
        os.chown(root, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(root, _free_port(), user, count(1))
    data = root / "data"
    init = server.run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                      "--no-locale", "--no-sync")
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed: {init.stderr.strip()}")
    options = (f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
    start = server.run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options,
                       "-w", "-t", "30", "start")
    if start.returncode != 0:
        log = (root / "server.log").read_text(errors="replace") if (root / "server.log").exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {start.stderr.strip()} {log[-2000:]}")
    return server


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    root = Path(tempfile.mkdtemp(prefix="cellwatch-pg-"))  # under /tmp: the postgres user can reach it
    server = None
    try:
        server = _start_server(root)
        yield server
    finally:
        if server is not None:
            assert PG_BIN is not None
            server.run(str(PG_BIN / "pg_ctl"), "-D", str(root / "data"), "-m", "fast", "-w", "-t", "20", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(postgres: PostgresServer) -> str:
    return postgres.new_database()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = open_store(database_url)
    yield s
    s.close()


# -- migrations and the audit log on PostgreSQL ------------------------------------------------------


def test_migrations_from_empty_and_a_newer_database_is_refused(database_url: str) -> None:
    open_store(database_url).close()
    open_store(database_url).close()  # nothing to do the second time
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT version FROM schema_version ORDER BY version")).all() == [(1,), (2,)]
            tables = set(sa.inspect(conn).get_table_names())
            assert {"detections", "events", "event_detections", "users", "sessions", "audit_log", "snippets"} <= tables
            kinds = {c["name"]: str(c["type"]) for c in sa.inspect(conn).get_columns("detections")}
            assert kinds["id"] == "BIGINT" and kinds["t_start_s"] == "DOUBLE PRECISION"
            conn.execute(sa.text("INSERT INTO schema_version VALUES (99, 0, 'from the future')"))
    finally:
        engine.dispose()
    with pytest.raises(InputError, match="newer than this cellwatch") as info:
        open_store(database_url)
    assert "postgresql+psycopg://postgres@127.0.0.1" in str(info.value)


def test_two_processes_migrating_at_once_apply_each_version_once(postgres: PostgresServer) -> None:
    url = postgres.new_database()
    engines = [sa.create_engine(url) for _ in range(4)]
    versions: list[int] = []
    errors: list[BaseException] = []

    def run(engine: sa.Engine) -> None:
        try:
            versions.append(migrate(engine))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors and versions == [MIGRATIONS[-1].version] * 4
        with engines[0].connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM schema_version")).scalar() == len(MIGRATIONS)
    finally:
        for e in engines:
            e.dispose()


def test_unreachable_server_is_one_clear_error(postgres: PostgresServer) -> None:
    with pytest.raises(InputError, match="cannot open the database") as info:
        open_store(f"postgresql+psycopg://postgres:s3cret@127.0.0.1:{_free_port()}/nothing")
    assert "s3cret" not in str(info.value)  # the password is redacted
    with pytest.raises(InputError, match="cannot open the database"):
        open_store(postgres.url("no_such_database"))


@pytest.mark.parametrize("tamper", ["edit", "delete", "retime"])
def test_audit_tampering_is_detected(store: Store, tamper: str) -> None:
    for i in range(6):
        store.audit("ada", "test.step", f"t{i}", {"i": i})
    with store.engine.begin() as conn, pytest.raises(sa.exc.DatabaseError, match="append-only"):
        conn.execute(sa.text("UPDATE audit_log SET actor = 'eve' WHERE id = 3"))
    with store.engine.begin() as conn:  # an intruder with the owner's rights drops the trigger first
        conn.execute(sa.text("DROP TRIGGER audit_log_append_only ON audit_log"))
        if tamper == "edit":
            conn.execute(sa.text("UPDATE audit_log SET actor = 'eve' WHERE id = 3"))
        elif tamper == "delete":
            conn.execute(sa.text("DELETE FROM audit_log WHERE id = 3"))
        else:
            conn.execute(sa.text("UPDATE audit_log SET t_s = t_s + 1000 WHERE id = 3"))
    result = store.verify_audit_chain()
    assert not result.ok and result.first_bad_id == 3 and result.n_rows == 2


def test_odd_text_is_stored_as_on_sqlite(store: Store) -> None:
    """PostgreSQL enforces VARCHAR lengths and refuses NUL in text where SQLite takes anything, and
    no driver encodes a lone surrogate: the store keeps the backends alike, an odd string from a
    node or a request is stored (cleaned, cut to its column), never a storage error."""
    odd = [replace(d, sensor_id="S" * 100, channel="c\x00h\ud800" * 40, session_id="s\x00\udfff")
           for d in detections(3)]
    assert store.store_detections("A1-S1", STREAM_A, odd) == 3
    assert store.store_detections("A1-S1", STREAM_A, odd) == 0  # still idempotent
    rows = store.detections_after(0, 10)
    assert len(rows) == 3 and rows[0].detection == odd[0]  # the wire form keeps every field as sent
    ids = [r.id for r in rows]
    [w] = store.upsert_events([EventWrite("E\x001", record("E\x001", cell="C" * 100, channel="x\x00" * 100,
                                                           session_ids=["\ud800"]), ids)])
    assert w.row.event_id == "E\ufffd1" and w.row.cell == "C" * 64 and w.row.session_ids == ["\ufffd"]
    assert store.get_event("E\x001") is not None  # a lookup cleans its value the same way
    assert store.get_user("ada\x00") is None and store.get_event("\ud800" * 70) is None
    row = store.transition_event("E\x001", "acknowledge", "otto\x00", note="n\x00\ud800")
    assert row.note == "n\ufffd\ufffd" and row.status_by == "otto\ufffd"
    store.audit("a" * 100, "x" * 100, "t\x00" * 300, {"nul": "a\x00b", "\ud800": 1})
    assert store.verify_audit_chain().ok
    total, _ = store.list_events(EventFilter(cell="\x00", wing="\ud800"))
    assert total == 0


# -- IQ snippets (migration 2) ------------------------------------------------------------------------


def _snippet(i: int, sensor_id: str = "A1-S1") -> IQSnippet:
    data = bytes((i * 7 + k) % 256 for k in range(2 * 3700))
    return IQSnippet(sensor_id, 1.7e9 + i, 902_400_000, 2.4e6, data, 1.7e9 + i * 0.1 + 5e-4, 902.4e6, 1200, 1300,
                     200e3, 14.4, tech="gsm", sample_index=1000 * i, seq=i + 1)


def test_snippets_are_stored_once_and_join_their_event(store: Store) -> None:
    snippets = [_snippet(i) for i in range(4)]
    assert store.store_snippets("A1-S1", STREAM_A, snippets) == 4
    assert store.store_snippets("A1-S1", STREAM_A, snippets) == 0  # once per (node, stream, seq)
    # the detections they illustrate: same sensor, burst start and frequency
    dets = [replace(d, t_start_s=s.detection_t_start_s, freq_hz=s.detection_freq_hz)
            for d, s in zip(detections(4), snippets, strict=True)]
    store.store_detections("A1-S1", STREAM_A, dets)
    ids = [r.id for r in store.detections_after(0, 10)]
    store.upsert_events([EventWrite("E1", record("E1"), ids[:3])])
    got = store.event_snippets("E1")
    assert [s.seq for s in got] == [1, 2, 3]
    assert [s.snippet.data for s in got] == [s.data for s in snippets[:3]]  # bytea back byte for byte
    assert got[0].snippet.center_freq_hz == 902_400_000 and got[0].ref.detection_id == ids[0]
    assert store.event_snippet_refs("E1", sensor_id="B1-S1") == []


def test_a_database_from_before_snippets_gains_the_table(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    make_v1_database(engine)
    assert migrate(engine) == 2
    engine.dispose()
    with open_store(database_url) as store:
        assert store.store_snippets("A1-S1", STREAM_A, [_snippet(0)]) == 1


# -- two stores on one database: what two processes (serve, cellwatch users) do -----------------------


def test_two_stores_write_at_once_without_breaking_the_chain(database_url: str) -> None:
    first, second = open_store(database_url), open_store(database_url)
    errors: list[BaseException] = []

    def work(s: Store, node: str) -> None:
        try:
            for k in range(10):
                s.store_detections(node, STREAM_A, detections(20, sensor_id=node, first_seq=1 + 20 * k))
                s.store_detections("shared", STREAM_A, detections(20, sensor_id="shared", first_seq=1 + 20 * k))
                s.audit(node, "test.write", str(k))
                s.set_state("cursor", f"{node}:{k}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s, f"N{i}")) for i, s in enumerate((first, second, first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        with first.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM detections")).scalar() == 4 * 200 + 200
        result = second.verify_audit_chain()
        assert result.ok and result.n_rows == 40
    finally:
        first.close()
        second.close()


# -- cellwatch serve on PostgreSQL ----------------------------------------------------------------------


def test_serve_on_postgresql_stores_and_serves_the_nodes_detections(postgres: PostgresServer,
                                                                   tmp_path: Path) -> None:
    from bench.service_ingest import (
        add_user,
        login,
        make_sender,
        start_service,
        synth_call,
        write_service_config,
    )
    from calibration.site import load_site
    from tests.conftest import DEMO_SITE

    url = postgres.new_database()
    sensors = ["A1-S1", "A1-S2", "A1-S3", "A2-S1", "B1-S1"]
    config = write_service_config(tmp_path, sensors, extra="[engine.correlation]\ntransmission_gap_s = 0.5\n")
    text = config.read_text()
    assert 'path = "cellwatch.sqlite"' in text
    config.write_text(text.replace('path = "cellwatch.sqlite"', f'url = "{url}"'))
    add_user(config)  # `cellwatch users` on the same server
    svc = start_service(config, sensors)
    senders = []
    try:
        headers = login(svc.url)
        call = synth_call(load_site(DEMO_SITE), "A-1-03", time.time() - 5.0, 1.0, seed=1)
        heard = {s: d for s, d in call.items() if d and s in sensors}
        assert len(heard) >= 2
        for sensor_id, dets in heard.items():
            sender = make_sender(svc, sensor_id, tmp_path, batch_size=100).start()
            senders.append(sender)
            sender.submit(dets)
        assert all(s.flush(20.0) for s in senders)
        n_sent = sum(len(d) for d in heard.values())

        def located() -> dict | None:
            body = httpx.get(f"{svc.url}/api/events", headers=headers, timeout=10.0).json()
            if body["total"] != 1:
                return None
            detail = httpx.get(f"{svc.url}/api/events/{body['items'][0]['event_id']}", headers=headers,
                               params={"detections_limit": 10_000}, timeout=10.0).json()
            return detail if detail["n_detections"] == n_sent else None

        deadline = time.monotonic() + 20.0
        detail = located()
        while detail is None and time.monotonic() < deadline:
            time.sleep(0.2)
            detail = located()
        assert detail is not None, "the call's event never held every detection"
        assert detail["cell"] is not None and detail["cell"].startswith("A-1-")
        assert {d["node_id"] for d in detail["detections"]} == set(heard)
        assert len({(d["node_id"], d["t_start_s"]) for d in detail["detections"]}) == n_sent  # none twice
        health = httpx.get(f"{svc.url}/healthz", timeout=10.0).json()
        assert health["status"] == "ok" and health["database"] == "ok"
        audit = httpx.get(f"{svc.url}/api/audit/verify", headers=headers, timeout=10.0).json()
        assert audit["ok"] is True
    finally:
        for s in senders:
            s.close()
        status = svc.stop(signal.SIGTERM)
    assert status in (0, -signal.SIGTERM)
    log = svc.log_text()
    assert "Traceback" not in log and "database=postgresql+psycopg://postgres@127.0.0.1" in log
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM detections")).scalar() == n_sent
            assert conn.execute(sa.text("SELECT COUNT(*) FROM (SELECT 1 FROM detections GROUP BY node_id, "
                                        "stream_id, seq HAVING COUNT(*) > 1) d")).scalar() == 0
    finally:
        engine.dispose()
