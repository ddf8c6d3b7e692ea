"""A dongle unplugged and plugged back under a running ``cellwatch node``: nothing lost, nothing twice, said.

The node is the real ``cellwatch node --config node.toml`` process; its source is an
``rtlsdr:SERIAL`` dongle, pyrtlsdr's real code path against the fake librtlsdr
(tests/sdr/fake_librtlsdr), which plays the bundled GSM call (``recordings/gsm_call``,
tiled to a few seconds) in real time at 2.4 MS/s and is unplugged for a second after
1 s of samples, then comes back. The node delivers over real ZeroMQ (insecure) to the
service running in this process (tests/service/harness.py), as in test_faults.py.

Afterwards: every detection the node produced (its own count at exit) is stored exactly
once (the count, the seqs 1..n of one stream, each ``sample_start`` once), with call
bursts before and after the outage; the node logged ``source_lost`` then
``source_resumed`` once and reopened the dongle by serial; the service shows it through
the sensor's health in the API (``source_state`` ``retrying`` with the reason while the
dongle was away, ``running`` after, the outage counted in ``n_dropped_samples``), its audit
log (``sensor.source`` running -> retrying with the node's message, then back) and its log,
while the sensor stays online: the node never stopped reporting.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from bench.service_ingest import cellwatch_exe
from tests.conftest import REPO
from tests.hardening.test_faults import (
    NODE,
    _audit_actions,
    _sensor,
    assert_stored_exactly_once,
    fault_service,
)
from tests.service.harness import LiveServer, wait_for

RECORDING = REPO / "recordings" / "gsm_call" / "A1-S1.sigmf-data"  # a call on 902.4 MHz, 0.4 s at 2.4 MS/s
RATE_HZ = 2_400_000
SERIAL = "00000042"
SPEC = f"rtlsdr:{SERIAL}"
N_TILES = 15  # 6 s of call: the stream must not end (a silent dongle is restarted) before the node is stopped
UNPLUG_AFTER_S = 1.0  # of samples served
ABSENT_S = 2.0  # longer than the service's 1 s sensor check, which announces the change

NODE_TOML = """\
node_id = "{node}"
heartbeat_s = 0.25

[service]
endpoint = "{endpoint}"
insecure = true
outbox = "{outbox}"
flush_timeout_s = 20.0

[[sources]]
spec = "{spec}"
gain_db = 28.0
sample_rate_hz = 2.4e6
center_freq_hz = 902.4e6
options = {{ backoff_s = 0.05, max_backoff_s = 0.25 }}
"""

NO_BUNDLED_LIBRARY = '''\
"""Stands in for pyrtlsdrlib: no bundled librtlsdr, so pyrtlsdr loads $LD_LIBRARY_PATH/librtlsdr.so."""


def load_librtlsdr():
    return None
'''


@dataclass
class Produced:
    """What :func:`assert_stored_exactly_once` needs of a node: the detections it accepted."""

    n_accepted: int


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LiveServer]:
    # heartbeats every 0.25 s: 5 s without one is a node that is gone, not a loaded machine
    with fault_service(tmp_path, offline_after_s=5.0) as s:
        yield s


@pytest.fixture(scope="module")
def fake_dongle(fake_librtlsdr: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the fake ``librtlsdr.so``, a ``pyrtlsdrlib`` that bundles none, and the call to play."""
    folder = tmp_path_factory.mktemp("fake_dongle")
    (folder / "librtlsdr.so").symlink_to(fake_librtlsdr / "librtlsdr.so")
    (folder / "pyrtlsdrlib.py").write_text(NO_BUNDLED_LIBRARY)
    (folder / "call.cu8").write_bytes(RECORDING.read_bytes() * N_TILES)
    return folder


def _stored_times(service: LiveServer) -> np.ndarray:
    with service.services.store.engine.connect() as conn:
        payloads = conn.execute(sa.text("SELECT payload FROM detections WHERE node_id = :n"), {"n": NODE}).scalars()
        return np.sort([json.loads(p)["t_start_s"] for p in payloads])


def _gap(times: np.ndarray) -> tuple[float, int]:
    """The longest silence between stored detections, and how many came after it."""
    if times.size < 2:
        return 0.0, 0
    k = int(np.argmax(np.diff(times)))
    return float(times[k + 1] - times[k]), int(times.size - k - 1)


def test_dongle_unplugged_and_plugged_back_loses_no_detection_and_is_reported(
        service: LiveServer, fake_dongle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    headers = service.login("vera")
    config = tmp_path / "node.toml"
    config.write_text(NODE_TOML.format(node=NODE, endpoint=service.services.ingest.endpoint,
                                       outbox=tmp_path / "outbox.sqlite", spec=SPEC))
    calls_path, log_path = tmp_path / "fake_calls.log", tmp_path / "node.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(fake_dongle), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "LD_LIBRARY_PATH": str(fake_dongle), "FAKE_RTLSDR_FILE": str(fake_dongle / "call.cu8"),
           "FAKE_RTLSDR_SERIAL": SERIAL, "FAKE_RTLSDR_LOG": str(calls_path), "FAKE_RTLSDR_REALTIME": "1",
           "FAKE_RTLSDR_UNPLUG_AFTER": str(int(UNPLUG_AFTER_S * RATE_HZ) * 2), "FAKE_RTLSDR_UNPLUG_RC": "0",
           "FAKE_RTLSDR_ABSENT_S": str(ABSENT_S)}
    seen: list[dict] = []  # the sensor's health each time its source_state changed, as the API showed it
    offline_seen = False

    def node_log() -> str:
        return log_path.read_text(errors="replace") if log_path.exists() else ""

    def resumed_and_detecting() -> bool:
        nonlocal offline_seen
        sensor = _sensor(service, headers)  # a site sensor: listed (source_state null) before it reports
        offline_seen |= sensor["last_heartbeat_s"] is not None and sensor["state"] == "offline"
        if not seen or sensor["source_state"] != seen[-1]["source_state"]:
            seen.append(sensor)
        if proc.poll() is not None:
            raise AssertionError(f"the node exited ({proc.returncode}):\n{node_log()[-3000:]}")
        states = [s["source_state"] for s in seen]
        if "source_resumed" not in node_log() or "retrying" not in states or states[-1] != "running":
            return False
        gap_s, n_after = _gap(_stored_times(service))
        return gap_s > ABSENT_S and n_after >= 100  # ~0.5 s of the call after the outage

    t0 = time.monotonic()
    caplog.set_level(logging.INFO, logger="service.sensor_monitor")
    with log_path.open("w") as log_file:
        proc = subprocess.Popen([cellwatch_exe(), "node", "--config", str(config)], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=log_file)
        try:
            wait_for(resumed_and_detecting, 40.0, "detections after the dongle came back")
            proc.send_signal(signal.SIGTERM)
            proc.wait(30.0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10.0)
    runtime_s = time.monotonic() - t0
    text = node_log()
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text

    # everything the node produced is stored once, before and after the outage
    final = re.search(rf"node {NODE}: (\d+) detections, .* (\d+) detections left in the outbox", text)
    assert final is not None, text[-3000:]
    n_produced, n_left = int(final[1]), int(final[2])
    assert n_left == 0 and "delivered_all=True" in text
    wait_for(lambda: service.services.store.n_detections == n_produced, 10.0, "every detection stored")
    assert_stored_exactly_once(service, Produced(n_produced))  # type: ignore[arg-type]
    times = _stored_times(service)
    gap_s, n_after = _gap(times)
    n_before = times.size - n_after
    assert n_before >= 100 and n_after >= 100  # the call was heard on both sides of the outage

    # the node said what happened: one outage, the dongle reopened by its serial
    assert text.count("source_lost") == 1 and text.count("source_resumed") == 1
    assert text.index("source_lost") < text.index("source_resumed")
    assert f"source_lost source={SPEC} reason={SPEC}: the dongle stopped streaming (unplugged?)" in text
    assert re.search(r"heartbeat node=A1-S1 state=retrying .*retrying_\(", text)
    assert text.count(f"rtlsdr_open source={SPEC} serial={SERIAL}") == 2
    calls = [line.split()[0] for line in calls_path.read_text().splitlines()]
    assert calls.count("open") == 2 and calls.count("unplug") == 1  # the fake dongle, not a bundled library

    # the service showed it: the sensor's source retrying (with the reason), then running, the outage counted
    sensor = _sensor(service, headers)
    seen.append(sensor)
    states = [s["source_state"] for s in seen if s["source_state"] is not None]  # null: not heard yet
    assert states == ["running", "retrying", "running", "stopped"], states  # stopped: its last heartbeat
    assert f"{SPEC}=retrying (" in next(s["message"] for s in seen if s["source_state"] == "retrying")
    dropped_s = sensor["n_dropped_samples"] / RATE_HZ
    assert ABSENT_S <= dropped_s < ABSENT_S + 2.0  # the outage, in samples lost
    assert ABSENT_S <= gap_s <= dropped_s + 0.1  # the silence in the stored detections is the outage
    # a dongle outage is not a node outage: heartbeats went on, the sensor never went offline
    assert not offline_seen and "sensor.offline" not in _audit_actions(service)
    changes = [(r.details["from"], r.details["to"], r.details["message"])
               for r in reversed(service.services.store.list_audit(limit=1000, action="sensor.source")[1])]
    assert [(a, b) for a, b, _ in changes] == [("running", "retrying"), ("retrying", "running")], changes
    assert f"{SPEC}=retrying (" in changes[0][2]
    assert "sensor radio retrying sensor=A1-S1" in caplog.text and "sensor radio running sensor=A1-S1" in caplog.text
    print(f"\ndongle unplugged {ABSENT_S:.0f} s (cellwatch node, fake librtlsdr, {runtime_s:.1f} s): "
          f"{n_produced} detections produced ({n_before} before, {n_after} after the outage), all "
          f"{times.size} stored once; gap {gap_s:.2f} s in the detections, {sensor['n_dropped_samples']} samples "
          f"({dropped_s:.2f} s) dropped; API source_state {' -> '.join(states)}")
