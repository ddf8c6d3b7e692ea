"""``cellwatch demo`` as a user runs it: the service and simulated sensor nodes as real processes,
the dashboard URL and login printed, phones located through the API, Ctrl-C and ``--duration``
ending everything with nothing left behind.

A light scenario keeps it quick: one phone calling from cell A-1-03, heard by the six sensors of
wing A (the scenario's ``sensors``), so six node processes instead of twelve.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.service_ingest import cellwatch_exe
from service.cli import main
from service.commands.demo import summarize_lag

WING_A = ["A1-S1", "A1-S2", "A1-S3", "A2-S1", "A2-S2", "A2-S3"]
LIGHT_SCENARIO = f"""
name = "demo_test"
description = "one GSM call from A-1-03"
duration_s = 60.0
sensors = {json.dumps(WING_A)}
[receiver]
center_freq_hz = 902.4e6
[[phones]]
id = "call"
cell = "A-1-03"
tech = "gsm"
activity = "call"
established = true
arfcn = 57
timeslot = 3
tx_power_dbm = 15.0
start_s = 1.0
duration_s = 55.0
"""
IDLE_SCENARIO = """
name = "demo_idle"
duration_s = 30.0
sensors = ["A1-S1"]
[receiver]
center_freq_hz = 902.4e6
"""
DASHBOARD_RE = re.compile(r"^cellwatch demo: dashboard (http://127\.0\.0\.1:\d+/)$", re.MULTILINE)
LOGIN_RE = re.compile(r"^cellwatch demo: login (\S+) / (\S+)$", re.MULTILINE)


def _start(tmp_path: Path, scenario_text: str, *extra: str, workdir: bool = True) -> tuple[subprocess.Popen[bytes], Path]:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(scenario_text, encoding="utf-8")
    info = tmp_path / "info.json"
    args = [cellwatch_exe(), "demo", "--port", "0", "--scenario", str(scenario), "--info-json", str(info), *extra]
    if workdir:
        args += ["--workdir", str(tmp_path / "work")]
    # its own session, as a terminal's foreground job: a SIGINT to the group is a Ctrl-C
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    return proc, info


def _read_until(proc: subprocess.Popen[bytes], pattern: re.Pattern[str], timeout_s: float) -> str:
    """Stdout read straight from the pipe (no buffered reader, whose buffer select() cannot see)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    data = b""
    deadline = time.monotonic() + timeout_s
    try:
        while pattern.search(data.decode("utf-8", "replace")) is None:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(f"no {pattern.pattern!r} on stdout within {timeout_s:g} s; got {data!r}")
            if selector.select(0.2):
                data += os.read(fd, 65536)
    finally:
        selector.close()
    return data.decode("utf-8", "replace")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie: exited


def _pids(info: dict[str, Any]) -> list[int]:
    return [info["service_pid"], *(n["pid"] for n in info["nodes"].values())]


def _in_a_1_03(event: dict[str, Any]) -> bool:
    """Located in A-1-03: the reported cell, or (the facing cell across the corridor differs by only
    1-4 dB at corridor sensors, README) wing A, floor 1 with A-1-03 among the candidates."""
    places = [c["place"] for c in event.get("candidates") or []]
    return event["cell"] == "A-1-03" or (event["wing"] == "A" and event["floor"] == 1 and "A-1-03" in places)


def test_live_demo_locates_the_phone_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    started = time.monotonic()
    proc, info_path = _start(tmp_path, LIGHT_SCENARIO, "--duration", "55", "--offline-after", "10")
    try:
        out = _read_until(proc, LOGIN_RE, 40.0)
        url = DASHBOARD_RE.search(out).group(1)  # type: ignore[union-attr]
        username, password = LOGIN_RE.search(out).groups()  # type: ignore[union-attr]
        info = json.loads(info_path.read_text(encoding="utf-8"))
        assert info["url"] == url and info["username"] == username == "demo" and info["password"] == password
        assert sorted(info["nodes"]) == sorted(WING_A)
        assert all(n["sensors"] == [node_id] for node_id, n in info["nodes"].items())
        assert info["workdir"] == str((tmp_path / "work").resolve()) and info["start_utc"] > time.time() - 60
        assert all(not _gone(pid) for pid in _pids(info))

        assert httpx.get(url + "healthz", timeout=5).status_code == 200
        assert httpx.get(url, timeout=5).status_code < 500  # the dashboard's address answers
        login = httpx.post(url + "api/auth/login", json={"username": username, "password": password}, timeout=10)
        assert login.status_code == 200
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        me = httpx.get(url + "api/me", headers=headers, timeout=5).json()
        assert me["username"] == "demo" and me["role"] == "admin"
        assert httpx.post(url + "api/auth/login", json={"username": "demo", "password": password + "x"},
                          timeout=10).status_code == 401

        located: list[dict[str, Any]] = []
        online: set[str] = set()
        while not located or online != set(WING_A):
            assert time.monotonic() - started < 50, f"events {located}, sensors online {sorted(online)}"
            events = httpx.get(url + "api/events", headers=headers, params={"limit": 50}, timeout=5).json()["items"]
            located = [e for e in events if e["priority"] == "alert" and _in_a_1_03(e)]
            sensors = httpx.get(url + "api/sensors", headers=headers, timeout=5).json()["items"]
            online = {s["sensor_id"] for s in sensors if s["state"] == "online"}
            time.sleep(1.0)
        misplaced = [e for e in events if e["priority"] == "alert" and not (e["wing"] == "A" and e["floor"] == 1)]
        assert not misplaced, misplaced
        assert {s["sensor_id"] for s in sensors} >= set(WING_A)

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        stderr = proc.communicate(timeout=40)[1].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "SIGINT" in stderr
    assert all(_gone(pid) for pid in _pids(info))
    logs = tmp_path / "work" / "logs"
    for node_id in WING_A:  # each node ran the cheap live renderer and stopped cleanly, not killed
        text = (logs / f"node-{node_id}.log").read_text()
        assert "render=fast" in text and f"node_stop node_id={node_id}" in text


def test_duration_stops_by_itself_and_leaves_nothing(tmp_path: Path) -> None:
    proc, info_path = _start(tmp_path, IDLE_SCENARIO, "--duration", "6", workdir=False)
    try:
        out_bytes, err_bytes = proc.communicate(timeout=40)
        out, stderr = out_bytes.decode(), err_bytes.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert DASHBOARD_RE.search(out) and LOGIN_RE.search(out) and out.rstrip().endswith("cellwatch demo: stopped")
    assert "Traceback" not in stderr
    info = json.loads(info_path.read_text(encoding="utf-8"))
    assert all(_gone(pid) for pid in _pids(info))
    assert not Path(info["workdir"]).exists()  # the temporary work folder is removed


@pytest.mark.parametrize(("make_args", "field"), [
    (lambda tmp: ["--scenario", str(tmp / "missing.toml")], "--scenario"),
    (lambda tmp: ["--duration", "-3"], "--duration"),
    (lambda tmp: ["--workdir", str(tmp)], "service.toml"),
])
def test_bad_options_are_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               make_args: Any, field: str) -> None:
    (tmp_path / "service.toml").write_text("")  # a previous demo's folder
    assert main(["demo", "--port", "0", *make_args(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cellwatch demo:") and field in err and "\n" not in err


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert main(["demo", "--port", str(port), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "--port" in err and str(port) in err
    assert not (tmp_path / "w").exists()


def test_offline_mode_keeps_the_previous_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(LIGHT_SCENARIO.replace('start_s = 1.0', 'start_s = 0.2'), encoding="utf-8")
    assert main(["demo", "--offline", "--duration", "1", "--scenario", str(scenario), "--out",
                 str(tmp_path / "out"), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "3/3 scoring" in out
    score = json.loads((tmp_path / "out" / "score.json").read_text())
    assert score  # scored against the simulator's truth
    assert sorted(p.name for p in (tmp_path / "out").glob("*.sigmf-meta")) == [f"{s}.sigmf-meta" for s in WING_A]


def test_lag_reports_are_summed_up_per_node(tmp_path: Path) -> None:
    log = tmp_path / "node-A1-S1.log"
    log.write_text(
        "x INFO sdr.sources.sim: sim_lag source=sim:a:b:A1-S1 lag_s_mean=0.010 lag_s_max=0.050 render_cpu=0.012 "
        "dropped=0 render=fast\n"
        "x INFO sdr.sources.sim: sim_lag source=sim:a:b:A1-S1 lag_s_mean=0.030 lag_s_max=2.500 render_cpu=0.014 "
        "dropped=4800000 render=fast\n", encoding="utf-8")
    summary = summarize_lag([log, tmp_path / "node-missing.log"])
    assert list(summary) == ["A1-S1"]
    assert summary["A1-S1"]["lag_s_max"] == 2.5 and summary["A1-S1"]["dropped_samples"] == 4_800_000
    assert summary["A1-S1"]["lag_s_mean"] == pytest.approx(0.02) and summary["A1-S1"]["n_reports"] == 2
