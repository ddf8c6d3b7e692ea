"""``cellwatch serve`` as an operator runs it: a real process with CURVE keys, real nodes over ZeroMQ,
the real event engine, the HTTP API and the live feed; killed and restarted; its sibling commands
``cellwatch users`` and ``cellwatch audit``.

The figures printed (ingest rate, live-feed latency) are reported, not asserted, except the
issue's own bar: a replayed call shows on the live feed within 2 s of its first burst.
"""

from __future__ import annotations

import io
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.service_ingest import (
    PASSWORD,
    add_user,
    cellwatch_exe,
    login,
    make_sender,
    measure_latency,
    measure_throughput,
    node_detections,
    start_service,
    write_service_config,
)

SENSORS = ["A1-S1", "A1-S2", "A1-S3", "A2-S1", "A2-S2", "A2-S3", "B1-S1", "B1-S2", "B1-S3", "B2-S1", "B2-S2", "B2-S3"]


def cellwatch(*args: object, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real command, in its own process."""
    return subprocess.run([cellwatch_exe(), *map(str, args)], input=stdin, capture_output=True, text=True,
                          timeout=60)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """The command line in this process (same entry point, no interpreter start-up per call)."""
    from service.cli import main

    def run(*args: object, stdin: str = "") -> Ran:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)

    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_end_to_end_nodes_to_live_feed(tmp_path: Path) -> None:
    config = write_service_config(tmp_path, SENSORS, extra="[engine.correlation]\ntransmission_gap_s = 1.0\n")
    add_user(config)
    svc = start_service(config, SENSORS)
    try:
        headers = login(svc.url)
        r = httpx.get(f"{svc.url}/api/sensors", headers=headers)
        assert r.status_code == 200 and len(r.json()["items"]) == 12
        assert httpx.get(f"{svc.url}/api/events").status_code == 401

        latency = measure_latency(svc, "A-1-05", 2.0, tmp_path, headers, seed=3)
        print(f"\nlive feed: first event {latency['first_event_after_first_burst_s']:.2f} s after the first burst, "
              f"newest burst -> feed p50 {latency['update_latency_p50_s']:.2f} s "
              f"p95 {latency['update_latency_p95_s']:.2f} s, every burst p50 {latency['burst_latency_p50_s']:.2f} s "
              f"p95 {latency['burst_latency_p95_s']:.2f} s; located {latency['first_cell']} -> "
              f"{latency['final_cell']} (true A-1-05)")
        assert latency["n_events_created"] == 1
        assert latency["first_event_after_first_burst_s"] < 2.0  # issue 6: within 2 s of its burst times
        assert latency["final_n_bursts"] == latency["n_bursts"]
        assert latency["final_cell"] is not None and latency["final_cell"].startswith("A-1-")

        events = httpx.get(f"{svc.url}/api/events", headers=headers).json()
        assert events["total"] == 1
        detail = httpx.get(f"{svc.url}/api/events/{events['items'][0]['event_id']}", headers=headers).json()
        assert detail["n_detections"] > 0.9 * latency["n_detections"]
        assert {d["node_id"] for d in detail["detections"]} <= set(SENSORS)

        throughput = measure_throughput(svc, SENSORS[6:9], 1000, tmp_path / "load")
        print(f"ingest: {throughput['detections_per_s']:.0f} detections/s stored and acknowledged "
              f"({throughput['n_detections']} from {throughput['n_nodes']} nodes)")
        assert throughput["all_acked"]
        metrics = httpx.get(f"{svc.url}/metrics", headers=headers).text
        stored = next(float(line.split()[1]) for line in metrics.splitlines()
                      if line.startswith("cellwatch_detections_stored "))
        assert stored == latency["n_detections"] + throughput["n_detections"]
    finally:
        status = svc.stop(signal.SIGTERM)
    assert status in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its graceful shutdown
    log = svc.log_text()
    assert "service stopped" in log and "Traceback" not in log
    assert "level=INFO logger=service.app service ready" in log
    assert PASSWORD not in log  # secrets never logged
    with sqlite3.connect(tmp_path / "cellwatch.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM detections").fetchone()[0] == stored
        assert db.execute("SELECT COUNT(*) FROM (SELECT node_id, stream_id, seq FROM detections "
                          "GROUP BY node_id, stream_id, seq HAVING COUNT(*) > 1)").fetchone()[0] == 0


def test_serve_killed_during_ingest_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL mid-stream, restart on the same ports: every detection ends up stored once."""
    port = free_port()
    config = write_service_config(tmp_path, ["A1-S1"], ingest_bind=f"tcp://127.0.0.1:{port}")
    svc = start_service(config, ["A1-S1"])
    sender = make_sender(svc, "A1-S1", tmp_path, batch_size=100, max_in_flight=2,
                         reconnect_max_s=0.5).start()
    try:
        dets = node_detections("A1-S1", 3000, time.time() - 30.0, 0)
        for i in range(0, len(dets), 100):
            sender.submit(dets[i:i + 100])
        deadline = time.monotonic() + 20.0
        while sender.stats().n_acked < 500 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert sender.stats().n_acked >= 500
        svc.proc.send_signal(signal.SIGKILL)
        svc.proc.wait(10.0)
        n_acked_before = sender.stats().n_acked
        with sqlite3.connect(tmp_path / "cellwatch.sqlite") as db:
            stored_before = db.execute("SELECT COUNT(*) FROM detections").fetchone()[0]
        assert stored_before >= n_acked_before  # acked => committed
        svc.stop()
        svc = start_service(config, ["A1-S1"])
        assert sender.flush(60.0), "the node could not deliver after the restart"
        with sqlite3.connect(tmp_path / "cellwatch.sqlite") as db:
            assert db.execute("SELECT COUNT(*) FROM detections").fetchone()[0] == 3000
            assert db.execute("SELECT COUNT(DISTINCT seq) FROM detections").fetchone()[0] == 3000
        assert httpx.get(f"{svc.url}/healthz").json()["status"] == "ok"
        print(f"\nkill -9 after {n_acked_before} acked, {stored_before} stored; after restart 3000 stored once, "
              f"{sender.stats().n_resent} resent")
    finally:
        sender.close()
        svc.stop()


@pytest.mark.parametrize(("edit", "field"), [
    (lambda c: c.replace('site = "', 'site = "/nonexistent/'), "no such file"),
    (lambda c: c + "[bogus]\nx = 1\n", "bogus: unknown key"),
    (lambda c: c.replace("port = 0", 'port = "eighty"'), "http.port"),
    (lambda c: c.replace('server_key = "keys/service.key_secret"', 'server_key = "keys/missing.key_secret"'),
     "missing.key_secret"),
    (lambda c: c + "[engine]\nevent_gap_s = -5\n", "engine.event_gap_s"),
    (lambda c: c + "[engine.correlation]\nnot_a_key = 1\n", "engine.correlation.not_a_key"),
    (lambda c: c + '[alerts]\ncell = ""\n', "alerts: alerts map a place kind to a non-empty priority"),
])
def test_serve_config_errors_are_one_line_exit_2(tmp_path: Path, edit: object, field: str,
                                                  cli: Callable[..., Ran]) -> None:
    config = write_service_config(tmp_path, ["A1-S1"])
    config.write_text(edit(config.read_text()))  # type: ignore[operator]
    result = cli("serve", "--config", config)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cellwatch serve: ") and field in lines[0], lines
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cellwatch.sqlite").exists()  # nothing written on a configuration error


def test_serve_port_in_use_is_exit_2(tmp_path: Path, cli: Callable[..., Ran]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_service_config(tmp_path, ["A1-S1"])
        config.write_text(config.read_text().replace("port = 0", f"port = {port}"))
        result = cli("serve", "--config", config)
    assert result.returncode == 2
    assert "http.port" in result.stderr and str(port) in result.stderr


def test_users_and_audit_commands(tmp_path: Path, cli: Callable[..., Ran]) -> None:
    from service.passwords import Passwords
    from service.settings import load_settings
    from service.store import open_store

    config = write_service_config(tmp_path, ["A1-S1"])
    assert cli("users", "--config", config, "add", "ada", "--role", "admin", "--password-stdin",
               stdin="a long enough password\n").returncode == 0
    weak = cli("users", "--config", config, "add", "bob", "--role", "viewer", "--password-stdin", stdin="short\n")
    assert weak.returncode == 2 and "at least 10 characters" in weak.stderr
    again = cli("users", "--config", config, "add", "ada", "--role", "viewer", "--password-stdin",
                stdin="another long password\n")
    assert again.returncode == 2 and "already exists" in again.stderr
    no_tty = cli("users", "--config", config, "add", "carl", "--role", "viewer")
    assert no_tty.returncode == 2 and "--password-stdin" in no_tty.stderr
    assert cli("users", "--config", config, "add", "otto", "--role", "operator", "--password-stdin",
               stdin="operator password 1\n").returncode == 0
    assert cli("users", "--config", config, "set-role", "otto", "viewer").returncode == 0
    assert cli("users", "--config", config, "passwd", "otto", "--password-stdin",
               stdin="new operator password\n").returncode == 0
    assert cli("users", "--config", config, "disable", "ghost").returncode == 2
    assert cli("users", "--config", config, "list").stdout.splitlines() == ["ada\tadmin\tenabled",
                                                                            "otto\tviewer\tenabled"]
    settings = load_settings(config)
    store = open_store(settings.database_url)
    try:
        passwords = Passwords(settings.security.password_hash_time_cost, settings.security.password_hash_memory_kib)
        ada, otto = store.get_user("ada"), store.get_user("otto")
        assert ada is not None and otto is not None
        assert ada.password_hash.startswith("$argon2id$")
        assert passwords.verify(ada.password_hash, "a long enough password")
        assert passwords.verify(otto.password_hash, "new operator password")
        assert not passwords.verify(otto.password_hash, "operator password 1")
        assert store.count_users() == 2  # no default account
        actors = {r.actor for r in store.list_audit()[1]}
        assert len(actors) == 1 and actors.pop().startswith("cli:")
    finally:
        store.close()

    verify = cli("audit", "--config", config, "verify")
    assert verify.returncode == 0 and "audit log intact: 4 rows" in verify.stdout
    tail = cli("audit", "--config", config, "tail", "-n", "2").stdout.splitlines()
    assert len(tail) == 2 and '"action": "user.update"' in tail[-1] and '"target": "otto"' in tail[-1]
    with sqlite3.connect(tmp_path / "cellwatch.sqlite") as db:
        db.execute("DROP TRIGGER audit_log_no_update")
        db.execute("UPDATE audit_log SET details = '{\"role\":\"viewer\"}' WHERE id = 1")
    broken = cli("audit", "--config", config, "verify")
    assert broken.returncode == 2
    assert "audit_log row 1" in broken.stderr and "does not match its hash" in broken.stderr


def test_the_service_does_not_load_the_detectors_compiler() -> None:
    """The service converts no IQ: numba and LLVM (~80 MB resident, bench/results/load.json's
    start) stay out of it; detection records and the wire format import without them."""
    probe = ("import sys; import service.app, service.worker, service.evidence, service.commands.serve, dsp.wire; "
             "print('numba' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
