"""Node -> service delivery over real ZeroMQ sockets (CURVE, 127.0.0.1) and real SQLite files.

Every detection must arrive exactly once: with a steady stream, with the service killed
(SIGKILL) in the middle and restarted on the same port and file, and with the node killed
and restarted on the same outbox. Detections carry ``sample_start = i`` so a detection
replayed under a new seq would show up as a repeated ``i``, not only as a repeated seq.

Run as ``python -m tests.sdr.test_delivery serve|node ...`` this module is also the
service and node processes that the kill tests start.
"""

from __future__ import annotations

import itertools
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pytest
import zmq

from dsp.records import BandHealth, Detection, Heartbeat
from dsp.wire import SenderStatus
from sdr.sender import DetectionSender
from service.detection_log import DetectionLog
from service.ingest import DetectionStore, IngestServer
from service.keys import create_keypair, load_allowed_keys, load_keypair

REPO = Path(__file__).resolve().parents[2]
NODE = "A1-S1"


def make_detections(start: int, stop: int, sensor_id: str = NODE) -> list[Detection]:
    return [Detection(sensor_id, 1.7e9 + i * 0.004615, 546e-6, 890.2e6 + (i % 124) * 0.2e6, 200e3,
                      -40.0 + (i % 13), 12.0 + (i % 5), "gsm", gain_db=30.0, sample_start=i)
            for i in range(start, stop)]


@dataclass(frozen=True)
class Keys:
    server_secret: Path
    server_public: Path
    allowed_dir: Path
    node_secret: Path


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    server_public, server_secret = create_keypair(tmp_path / "service", "service")
    _, node_secret = create_keypair(tmp_path / "nodes", NODE)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / f"{NODE}.key").write_bytes((tmp_path / "nodes" / f"{NODE}.key").read_bytes())
    return Keys(server_secret, server_public, allowed, node_secret)


def start_ingest(keys: Keys, log: DetectionLog, bind: str = "tcp://127.0.0.1:*") -> IngestServer:
    return IngestServer(log, bind=bind, server_keys=load_keypair(keys.server_secret),
                        allowed_keys=load_allowed_keys(keys.allowed_dir)).start()


def new_sender(keys: Keys, endpoint: str, outbox: Path, **options: object) -> DetectionSender:
    settings: dict[str, object] = {"ack_timeout_s": 1.0, "reconnect_max_s": 0.5}
    settings.update(options)
    return DetectionSender(endpoint, NODE, outbox, server_public_key=keys.server_public,
                           client_keys=keys.node_secret, **settings)  # type: ignore[arg-type]


def assert_exactly_once(log_path: Path, n: int) -> None:
    """Every submitted detection stored once: seqs 1..n of one stream, sample_start 0..n-1 once each."""
    log = DetectionLog(log_path)
    try:
        stored = log.detections(NODE)
    finally:
        log.close()
    starts = sorted(s.detection.sample_start for s in stored)  # type: ignore[type-var]
    missing = sorted(set(range(n)) - set(starts))
    assert len(stored) == n, f"{len(stored)} stored, {n} submitted; first missing: {missing[:5]}"
    assert starts == list(range(n)), "a detection was stored twice under different seqs"
    assert sorted(s.detection.seq for s in stored) == list(range(1, n + 1))  # type: ignore[type-var]
    assert len({s.stream_id for s in stored}) == 1


# -- processes for the kill tests ------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.sdr.test_delivery", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read_lines(proc: subprocess.Popen[str], timeout_s: float) -> Iterator[str]:
    """Lines the process prints, failing the test if it stays silent for ``timeout_s``."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            if not sel.select(timeout_s):
                proc.kill()
                pytest.fail(f"process silent for {timeout_s} s; stderr: {proc.stderr.read() if proc.stderr else ''}")
            line = proc.stdout.readline()
            if not line:
                return
            yield line.strip()


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM the process; returns the rest of its standard output."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


class GatedStore:
    """A DetectionLog that, once it has stored seq ``gate_seq``, does not return (so never acks).

    This pins the worst moment for a crash: detections stored, ack not yet sent. Their
    resend after the crash must be recognised as duplicates.
    """

    def __init__(self, log: DetectionLog, gate_seq: int, on_gate: Callable[[], None]) -> None:
        self.log, self.gate_seq, self.on_gate = log, gate_seq, on_gate
        self.release = threading.Event()

    def store_detections(self, node_id: str, stream_id: str, detections: Sequence[Detection]) -> int:
        n_new = self.log.store_detections(node_id, stream_id, detections)
        if not self.release.is_set() and max(d.seq or 0 for d in detections) >= self.gate_seq:
            self.on_gate()
            self.release.wait(30)
        return n_new

    def store_heartbeat(self, node_id: str, heartbeat: Heartbeat, sender: SenderStatus) -> None:
        self.log.store_heartbeat(node_id, heartbeat, sender)


def _serve_main(bind: str, log_path: str, server_secret: str, allowed_dir: str, gate_seq: str) -> None:
    log = DetectionLog(log_path)
    store: DetectionStore = log
    if int(gate_seq):
        store = GatedStore(log, int(gate_seq), lambda: print("gated", flush=True))
    ingest = IngestServer(store, bind=bind, server_keys=load_keypair(server_secret),
                          allowed_keys=load_allowed_keys(allowed_dir)).start()
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    print(ingest.endpoint, flush=True)
    while not stopping:
        time.sleep(0.05)
    ingest.stop()
    print(json.dumps(asdict(ingest.stats())), flush=True)


def _node_main(endpoint: str, outbox: str, server_public: str, node_secret: str, total: str, chunk: str,
               pause_s: str) -> None:
    """Submit detections ``outbox.last_seq .. total-1`` (resuming after a crash), then wait for the acks."""
    sender = DetectionSender(endpoint, NODE, outbox, server_public_key=Path(server_public),
                             client_keys=Path(node_secret), ack_timeout_s=1.0, reconnect_max_s=0.5).start()
    i = sender.outbox.last_seq  # seq k holds sample_start k-1: this many were durably submitted
    print(f"resume {i}", flush=True)
    while i < int(total):
        stop = min(i + int(chunk), int(total))
        sender.submit(make_detections(i, stop))
        i = stop
        print(f"submitted {i}", flush=True)
        time.sleep(float(pause_s))
    ok = sender.flush(60.0)
    print(f"flushed {ok} {sender.stats()}", flush=True)
    sender.close()
    sys.exit(0 if ok else 1)


# -- tests -----------------------------------------------------------------------------------


def test_5000_detections_are_stored_exactly_once(tmp_path: Path, keys: Keys) -> None:
    log = DetectionLog(tmp_path / "service.sqlite")
    ingest = start_ingest(keys, log)
    sender = new_sender(keys, ingest.endpoint, tmp_path / "outbox.sqlite").start()
    try:
        for i in range(0, 5000, 250):
            assert len(sender.submit(make_detections(i, i + 250))) == 250
        assert sender.flush(15.0), sender.stats()
        stats, served = sender.stats(), ingest.stats()
    finally:
        sender.close()
        ingest.stop()
        log.close()
    assert (stats.n_submitted, stats.n_acked, stats.n_pending, stats.n_in_flight) == (5000, 5000, 0, 0)
    assert served.n_detections_stored == 5000
    assert served.n_malformed == served.n_store_errors == 0
    assert_exactly_once(tmp_path / "service.sqlite", 5000)


def test_service_killed_mid_stream_and_restarted_loses_and_duplicates_nothing(tmp_path: Path, keys: Keys) -> None:
    log_path = tmp_path / "service.sqlite"
    args = (str(log_path), str(keys.server_secret), str(keys.allowed_dir))
    service = _spawn("serve", "tcp://127.0.0.1:*", *args, "1000")  # hangs after storing seq 1000
    lines = _read_lines(service, 15)
    endpoint = next(lines)
    sender = new_sender(keys, endpoint, tmp_path / "outbox.sqlite").start()
    total = 3000
    try:
        for i in range(0, 1500, 50):
            sender.submit(make_detections(i, i + 50))
        assert next(lines) == "gated"  # seq 1000 stored, its ack never sent
        service.kill()  # SIGKILL
        service.wait()
        in_flight_at_kill = sender.stats().n_in_flight
        for i in range(1500, total, 50):  # the node keeps detecting while the service is down
            sender.submit(make_detections(i, i + 50))
        time.sleep(0.3)
        service = _spawn("serve", endpoint, *args, "0")  # same port, same database file
        assert next(_read_lines(service, 15)) == endpoint
        assert sender.flush(15.0), sender.stats()
        stats = sender.stats()
    finally:
        sender.close()
        out = _stop(service)
    restarted = json.loads(out.splitlines()[-1])
    assert in_flight_at_kill > 0 and stats.n_resent > 0 and stats.n_connects >= 2
    assert restarted["n_duplicates"] > 0  # the stored-but-unacked batch came again and was dropped
    assert stats.n_acked == total
    assert_exactly_once(log_path, total)


def test_node_killed_mid_stream_and_restarted_loses_and_duplicates_nothing(tmp_path: Path, keys: Keys) -> None:
    log_path = tmp_path / "service.sqlite"
    log = DetectionLog(log_path)
    gated = threading.Event()
    store = GatedStore(log, 1000, gated.set)  # stores seq 1000, then holds its ack until the node is dead
    ingest = IngestServer(store, bind="tcp://127.0.0.1:*", server_keys=load_keypair(keys.server_secret),
                          allowed_keys=load_allowed_keys(keys.allowed_dir)).start()
    outbox = tmp_path / "outbox.sqlite"
    total = 3000
    node_args = (ingest.endpoint, str(outbox), str(keys.server_public), str(keys.node_secret), str(total), "50", "0.01")
    try:
        node = _spawn("node", *node_args)
        assert gated.wait(15)
        node.kill()  # SIGKILL: no clean-up, mid-submit and mid-send
        node.wait()
        store.release.set()
        node = _spawn("node", *node_args)
        lines = list(_read_lines(node, 30))
        assert node.wait(15) == 0, lines
        resumed_at = int(lines[0].split()[1])
        served = ingest.stats()
    finally:
        store.release.set()
        ingest.stop()
        log.close()
    assert 1000 <= resumed_at < total
    assert served.n_duplicates > 0  # the restarted node resent what was stored but not acked
    assert_exactly_once(log_path, total)


def test_heartbeats_reach_the_service_with_the_nodes_delivery_health(tmp_path: Path, keys: Keys) -> None:
    log = DetectionLog(tmp_path / "service.sqlite")
    ingest = start_ingest(keys, log)
    sender = new_sender(keys, ingest.endpoint, tmp_path / "outbox.sqlite", max_outbox_bytes=48 * 1024)
    try:
        bad = make_detections(0, 1)[0]
        assert sender.submit([replace(bad, power_dbfs=float("-inf"))]) == []
        lost = 0
        for i in range(0, 4000, 200):  # fills the capped outbox: SQLITE_FULL, reported, never raised
            lost += 200 - len(sender.submit(make_detections(i, i + 200)))
        assert lost > 0
        sender.submit_heartbeat(Heartbeat(NODE, 1.7e9, "running", bands=(BandHealth("GSM-900", -55.0),)))
        sender.submit_heartbeat(Heartbeat(NODE, 1.7e9 + 5, "retrying"))  # latest wins
        deadline = time.monotonic() + 10
        while log.last_heartbeat(NODE) is None and time.monotonic() < deadline:
            sender.pump(0.1)
        got = log.last_heartbeat(NODE)
        stats = sender.stats()
    finally:
        sender.close()
        ingest.stop()
        log.close()
    assert got is not None and got.heartbeat.source_state == "retrying"
    assert got.sender.n_invalid == 1 == stats.n_invalid
    assert got.sender.n_write_failures == lost == stats.n_write_failures
    assert stats.n_heartbeats_sent == 1


def test_detections_wait_in_the_outbox_while_the_service_is_down(tmp_path: Path, keys: Keys) -> None:
    log = DetectionLog(tmp_path / "service.sqlite")
    ingest = start_ingest(keys, log)
    endpoint = ingest.endpoint
    ingest.stop()  # nobody listens yet
    sender = new_sender(keys, endpoint, tmp_path / "outbox.sqlite")
    try:
        sender.submit(make_detections(0, 300))
        sender.pump(0.5)
        assert sender.stats().n_pending == 300 and sender.stats().n_sent == 0  # nothing queued in ZeroMQ
        ingest = start_ingest(keys, log, bind=endpoint)
        assert sender.flush(10.0), sender.stats()
        assert sender.stats().n_resent == 0  # IMMEDIATE: no stale copies were queued while down
    finally:
        sender.close()
        ingest.stop()
        log.close()
    assert_exactly_once(tmp_path / "service.sqlite", 300)


def test_unacknowledged_batches_are_resent_with_backoff(tmp_path: Path) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    silent = ctx.socket(zmq.ROUTER)  # receives, never acknowledges
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    arrivals: list[float] = []
    try:
        with DetectionSender(f"tcp://127.0.0.1:{port}", NODE, tmp_path / "o.sqlite", insecure=True,
                             ack_timeout_s=0.1, max_ack_timeout_s=10.0) as sender:
            sender.submit(make_detections(0, 10))
            end = time.monotonic() + 1.6
            while time.monotonic() < end:
                sender.pump(0.02)
                while silent.poll(0):
                    _, payload = silent.recv_multipart()
                    arrivals.append(time.monotonic())
                    assert json.loads(payload)["items"][0]["seq"] == 1  # the same batch each time
            stats = sender.stats()
    finally:
        silent.close(linger=0)
        ctx.term()
    # sends at about 0, 0.1, 0.3, 0.7, 1.5 s: the gaps double (16 sends without backoff)
    assert 4 <= len(arrivals) <= 6, arrivals
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(later > 1.5 * earlier for earlier, later in itertools.pairwise(gaps)), gaps
    assert stats.n_sent == 10 and stats.n_resent == 10 * (len(arrivals) - 1) and stats.n_pending == 10


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    role, *rest = sys.argv[1:]
    if role == "serve":
        _serve_main(*rest)
    elif role == "node":
        _node_main(*rest)
    else:
        sys.exit(f"unknown role {role!r}")
