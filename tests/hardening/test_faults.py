"""Faults between a node and the service, on real sockets and files: nothing lost, nothing twice, said.

The service runs in this process (the HTTP API under uvicorn, the ZeroMQ ingest, the
event worker, SQLite); the node is :class:`sdr.sender.DetectionSender` with its durable
outbox, fed by this test at a steady pace with heartbeats, as ``cellwatch node`` feeds
it. (SIGKILL of the service or the node mid-stream: tests/service/test_serve.py and
tests/sdr/test_delivery.py.)

* **Link cut**: a TCP proxy between node and service is stopped (every connection
  dropped, the port refusing) for a while, then started again on the same port.
* **Outbox disk full**: the node's outbox lives on a 2 MB tmpfs while the service is
  unreachable; the disk fills, then the link comes back.
* **Clock jumps**: the node's clock jumps back an hour, then forward a day, then returns.

After each: every detection the node accepted is stored exactly once (the count, the
seqs of one stream, and each detection's own ``sample_start`` once), those it could not
accept are counted by the node and reported to the service, and the system says what
happened: the sensor goes offline and back online (API, audit log, live state), the
node's delivery health shows the losses, the logs name the fault.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from dsp.records import Detection, Heartbeat
from sdr.sender import DetectionSender
from service.settings import SensorSettings
from tests.service.harness import LiveServer, live_server, make_settings, wait_for

NODE = "A1-S1"


class TcpProxy:
    """127.0.0.1:``port`` forwarded to ``target``; :meth:`cut` drops every connection and closes the
    port (a cable pulled), :meth:`restore` listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.n_connections = 0
        self.restore()

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                down, _ = listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.target, timeout=5.0)
            except OSError:
                down.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    down.close()
                    up.close()
                    return
                self._conns += [down, up]
                self.n_connections += 1
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@dataclass
class Node:
    """A node: its sender, what it produced, and a clock that a test can make jump."""

    sender: DetectionSender
    n_produced: int = 0
    n_accepted: int = 0  # detections the outbox took (a seq each)
    clock_offset_s: float = 0.0

    def now_s(self) -> float:
        return time.time() + self.clock_offset_s

    def produce(self, n: int) -> None:
        t0 = self.now_s()
        dets = [Detection(NODE, t0 + i * 0.0046, 546e-6, 902.4e6, 200e3, -35.0, 14.0, "gsm", gain_db=30.0,
                          sample_start=self.n_produced + i) for i in range(n)]
        self.n_produced += n
        self.n_accepted += len(self.sender.submit(dets))

    def heartbeat(self) -> None:
        self.sender.submit_heartbeat(Heartbeat(NODE, self.now_s(), "running"))

    def run_for(self, seconds: float, per_tick: int = 10, tick_s: float = 0.05,
                during: Callable[[], object] | None = None) -> None:
        """Produce ``per_tick`` detections and a heartbeat every ``tick_s`` for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.produce(per_tick)
            self.heartbeat()
            if during is not None:
                during()
            time.sleep(tick_s)


@contextmanager
def fault_service(tmp_path: Path, offline_after_s: float) -> Iterator[LiveServer]:
    """The service under test: ingest on, a sensor offline after ``offline_after_s`` without heartbeats, user vera."""
    settings = make_settings(tmp_path, ingest=True, sensors=SensorSettings(offline_after_s=offline_after_s))
    with live_server(settings) as s:
        s.add_user("vera", "admin")
        yield s


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LiveServer]:
    with fault_service(tmp_path, offline_after_s=1.0) as s:
        yield s


def _endpoint_address(endpoint: str) -> tuple[str, int]:
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


def _sensor(service: LiveServer, headers: dict[str, str]) -> dict:
    body = httpx.get(f"{service.url}/api/sensors", headers=headers, timeout=10.0).json()
    return next(s for s in body["items"] if s["sensor_id"] == NODE)


def assert_stored_exactly_once(service: LiveServer, node: Node) -> None:
    """Every accepted detection stored once: n rows, seqs 1..n of one stream, sample_start once each."""
    with service.services.store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT stream_id, seq, payload FROM detections WHERE node_id = :n"),
                            {"n": NODE}).all()
    import json

    starts = sorted(json.loads(r.payload)["sample_start"] for r in rows)
    assert len(rows) == node.n_accepted, f"{len(rows)} stored, {node.n_accepted} accepted by the node"
    assert len(set(starts)) == len(starts), "a detection was stored twice under different seqs"
    assert sorted(r.seq for r in rows) == list(range(1, node.n_accepted + 1))
    assert len({r.stream_id for r in rows}) == 1
    assert service.services.store.n_detections == node.n_accepted


def _audit_actions(service: LiveServer) -> list[str]:
    return [r.action for r in reversed(service.services.store.list_audit(limit=1000)[1])]


def test_link_cut_for_a_while_loses_nothing_and_is_reported(service: LiveServer, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    cut_s = 4.0
    proxy = TcpProxy(_endpoint_address(service.services.ingest.endpoint))
    headers = service.login("vera")
    sender = DetectionSender(proxy.endpoint, NODE, tmp_path / "outbox.sqlite", insecure=True, batch_size=100,
                             ack_timeout_s=0.5, max_ack_timeout_s=2.0, reconnect_max_s=0.3).start()
    node = Node(sender)
    try:
        with caplog.at_level(logging.INFO):
            node.run_for(1.5)
            assert _sensor(service, headers)["state"] == "online"
            proxy.cut()
            went_offline: list[float] = []
            node.run_for(cut_s, during=lambda: went_offline or (
                _sensor(service, headers)["state"] == "offline" and went_offline.append(time.monotonic())))
            pending_at_restore = sender.stats().n_pending
            proxy.restore()
            node.run_for(1.5)
            assert sender.flush(30.0), "the node could not deliver after the link came back"
            wait_for(lambda: _sensor(service, headers)["state"] == "online", 5.0, "the sensor back online")
        assert went_offline, "the sensor never showed offline while the link was cut"
        assert_stored_exactly_once(service, node)
        assert node.n_accepted == node.n_produced  # nothing refused either
        stats = sender.stats()
        assert stats.n_connects >= 2 and stats.n_write_failures == 0
        actions = _audit_actions(service)
        assert actions.index("sensor.offline") < len(actions) - 1 - actions[::-1].index("sensor.online")
        assert "disconnected from service" in caplog.text and "connected to service" in caplog.text
        assert "sensor offline sensor=A1-S1" in caplog.text
        print(f"\nlink cut {cut_s:.0f} s: {node.n_produced} detections produced, {pending_at_restore} waited in the "
              f"outbox, all {node.n_accepted} stored once; {stats.n_resent} resent, {stats.n_connects} connections; "
              f"sensor offline then online (audit: {actions.count('sensor.offline')} offline, "
              f"{actions.count('sensor.online')} online)")
    finally:
        sender.close()
        proxy.cut()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (root only; skipped where mounting is not allowed)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)


def test_outbox_disk_full_counts_what_it_could_not_keep_and_delivers_the_rest(
        service: LiveServer, tiny_disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    proxy = TcpProxy(_endpoint_address(service.services.ingest.endpoint))
    headers = service.login("vera")
    proxy.cut()  # the service is unreachable: the outbox fills up
    sender = DetectionSender(proxy.endpoint, NODE, tiny_disk / "outbox.sqlite", insecure=True, batch_size=200,
                             ack_timeout_s=0.5, max_ack_timeout_s=2.0, reconnect_max_s=0.3).start()
    node = Node(sender)
    try:
        with caplog.at_level(logging.INFO):
            deadline = time.monotonic() + 20.0
            while sender.stats().n_write_failures == 0 and time.monotonic() < deadline:
                node.produce(200)
            assert sender.stats().n_write_failures > 0, "the tmpfs never filled"
            node.run_for(0.5, per_tick=50)  # still detecting while full: counted, the node goes on
            n_lost = sender.stats().n_write_failures
            accepted_while_full = node.n_accepted
            proxy.restore()
            assert sender.flush(30.0), "the outbox could not be emptied once the link came back"
            node.run_for(1.0)  # room again: new detections are kept and delivered
            assert sender.flush(30.0)
            sensor = wait_for(lambda: (s := _sensor(service, headers))["delivery"]
                              and s["delivery"]["n_write_failures"] == n_lost and s, 5.0, "the losses reported")
        assert_stored_exactly_once(service, node)
        assert node.n_accepted + n_lost == node.n_produced  # every detection: stored, or counted as lost
        assert node.n_accepted > accepted_while_full
        assert sensor["state"] == "online"
        assert "detections lost: outbox not writable" in caplog.text
        assert "node reports lost detections node=A1-S1" in caplog.text
        print(f"\noutbox disk full (2 MB tmpfs): {node.n_produced} produced, {accepted_while_full} kept before "
              f"the disk filled, {n_lost} lost and counted (reported in the sensor's delivery health), "
              f"{node.n_accepted} stored once after the link came back")
    finally:
        sender.close()
        proxy.cut()


def test_node_clock_jumps_back_and_forward(service: LiveServer, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    headers = service.login("vera")
    sender = DetectionSender(service.services.ingest.endpoint, NODE, tmp_path / "outbox.sqlite", insecure=True,
                             ack_timeout_s=0.5, reconnect_max_s=0.3).start()
    node = Node(sender)
    try:
        with caplog.at_level(logging.INFO):
            node.run_for(0.5)
            node.clock_offset_s = -3600.0  # back an hour
            node.run_for(0.7)
            wait_for(lambda: "node clock off" in caplog.text, 5.0, "a warning about the clock")
            node.clock_offset_s = 86400.0  # forward a day
            node.run_for(0.7)
            node.clock_offset_s = 0.0
            node.run_for(0.7)
            assert sender.flush(20.0)
            wait_for(lambda: "node clock back in step" in caplog.text, 5.0, "the clock back in step")
            worker = service.services.worker
            wait_for(lambda: worker.stats().lag_detections == 0, 10.0, "the engine to catch up")
        assert_stored_exactly_once(service, node)
        assert _sensor(service, headers)["state"] == "online"
        assert worker.alive and worker.stats().n_engine_errors == 0
        metrics = httpx.get(f"{service.url}/metrics", headers=headers, timeout=10.0).text
        n_warnings = next(float(line.split()[1]) for line in metrics.splitlines()
                          if line.startswith("cellwatch_ingest_clock_warnings_total"))
        assert n_warnings > 0
        health = httpx.get(f"{service.url}/healthz", timeout=10.0).json()
        assert health["status"] == "ok"
        print(f"\nclock jumps (-1 h, +1 day, back): {node.n_produced} detections stored once, "
              f"{n_warnings:.0f} heartbeats flagged (cellwatch_ingest_clock_warnings_total), service healthy")
    finally:
        sender.close()
