"""The ZeroMQ ingest on real sockets (127.0.0.1): who gets in, what is refused, what is acked.

Raw DEALER sockets play misbehaving nodes; :class:`sdr.sender.DetectionSender` plays a
good one. Everything is checked in the store (a real SQLite file), not only in counters.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import zmq

from dsp.errors import InputError
from dsp.records import Detection, Heartbeat
from dsp.wire import (
    Ack,
    CurveKeyPair,
    DetectionBatch,
    ErrorReply,
    SenderStatus,
    decode_message,
    encode_message,
)
from sdr.sender import DetectionSender
from service.detection_log import DetectionLog
from service.ingest import IngestServer
from service.keys import create_keypair, load_allowed_keys, load_keypair

STREAM = "00112233445566778899aabbccddeeff"


def make_detections(start: int, stop: int, sensor_id: str = "A1-S1") -> list[Detection]:
    return [Detection(sensor_id, 1.7e9 + i * 0.01, 546e-6, 902.4e6, 200e3, -35.0, 14.0, "gsm", sample_start=i)
            for i in range(start, stop)]


@dataclass
class Site:
    server: CurveKeyPair
    nodes: dict[str, CurveKeyPair]  # every node with keys, listed or not
    allowed_dir: Path
    log: DetectionLog
    tmp: Path


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    _, server_secret = create_keypair(tmp_path / "service", "service")
    allowed = tmp_path / "allowed"
    nodes = {}
    for name in ("A1-S1", "A1-S2", "intruder"):
        public, secret = create_keypair(tmp_path / "nodes", name)
        nodes[name] = load_keypair(secret)
        if name != "intruder":  # the intruder's key is never listed
            allowed.mkdir(exist_ok=True)
            (allowed / public.name).write_bytes(public.read_bytes())
    log = DetectionLog(tmp_path / "service.sqlite")
    yield Site(load_keypair(server_secret), nodes, allowed, log, tmp_path)
    log.close()


@pytest.fixture
def ingest(site: Site) -> Iterator[IngestServer]:
    server = IngestServer(site.log, bind="tcp://127.0.0.1:*", server_keys=site.server,
                          allowed_keys=load_allowed_keys(site.allowed_dir), max_message_bytes=64 * 1024).start()
    yield server
    server.stop()


def sender_for(site: Site, endpoint: str, key_name: str, node_id: str | None = None, **options: object) -> DetectionSender:
    return DetectionSender(endpoint, node_id or key_name, site.tmp / f"outbox-{key_name}-{node_id}.sqlite",
                           server_public_key=site.server.public, client_keys=site.nodes[key_name],
                           ack_timeout_s=0.3, **options)  # type: ignore[arg-type]


@pytest.fixture
def raw(site: Site, ingest: IngestServer) -> Iterator[zmq.Socket[bytes]]:
    """A DEALER holding A1-S2's valid key: authenticated, but it sends whatever the test wants."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.CURVE_SERVERKEY, site.server.public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, site.nodes["A1-S2"].public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, site.nodes["A1-S2"].secret)
    sock.connect(ingest.endpoint)
    yield sock
    sock.close()
    ctx.term()


def exchange(sock: zmq.Socket[bytes], *frames: bytes, timeout_s: float = 5.0) -> object:
    sock.send_multipart(list(frames))
    if not sock.poll(int(timeout_s * 1000)):
        pytest.fail("no reply from the ingest")
    return decode_message(sock.recv())


def wait_for(condition: object, timeout_s: float = 5.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < end:  # type: ignore[operator]
        time.sleep(0.02)


def test_a_node_with_an_unlisted_key_gets_nothing_through(site: Site, ingest: IngestServer,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    # the intruder even claims a listed node's id: the key decides, and it is unknown
    with sender_for(site, ingest.endpoint, "intruder", node_id="A1-S1") as sender:
        sender.submit(make_detections(0, 50))
        sender.pump(1.5)
        stats = sender.stats()
    assert site.log.count() == 0
    assert stats.n_auth_failures >= 1 and stats.n_acked == 0 and stats.n_sent == 0 and not stats.connected
    served = ingest.stats()
    assert served.n_auth_denied >= 1 and served.n_messages == 0
    assert "unknown CURVE key" in caplog.text and "service refused this node's key" in caplog.text


def test_clients_without_curve_or_with_the_wrong_server_key_are_refused(site: Site, ingest: IngestServer) -> None:
    with DetectionSender(ingest.endpoint, "A1-S1", site.tmp / "plain.sqlite", insecure=True) as plain:
        plain.submit(make_detections(0, 10))
        plain.pump(1.0)
        assert plain.stats().n_sent == 0
    impostor_server = CurveKeyPair(*zmq.curve_keypair())
    with DetectionSender(ingest.endpoint, "A1-S1", site.tmp / "wrong.sqlite",
                         server_public_key=impostor_server.public, client_keys=site.nodes["A1-S1"]) as wrong:
        wrong.submit(make_detections(0, 10))
        wrong.pump(1.0)
        assert wrong.stats().n_sent == 0
    assert site.log.count() == 0
    assert ingest.stats().n_handshake_failures >= 2


def test_a_node_cannot_speak_for_another(site: Site, ingest: IngestServer) -> None:
    # A1-S2's (listed) key, but the messages say node A1-S1
    with sender_for(site, ingest.endpoint, "A1-S2", node_id="A1-S1") as sender:
        sender.submit(make_detections(0, 20))
        sender.pump(1.0)
        stats = sender.stats()
    assert site.log.count() == 0
    assert stats.n_service_errors >= 1 and stats.n_pending == 20  # refused, kept on the node
    # right node id, but detections that claim another sensor
    with sender_for(site, ingest.endpoint, "A1-S2") as sender:
        sender.submit(make_detections(0, 20, sensor_id="A1-S1"))
        sender.submit_heartbeat(Heartbeat("A1-S1", 1.7e9, "running"))
        sender.pump(1.0)
    assert site.log.count() == 0 and site.log.last_heartbeat("A1-S2") is None
    assert ingest.stats().n_impersonation >= 3


def test_sensors_listed_for_a_node_are_accepted(site: Site) -> None:
    server = IngestServer(site.log, bind="tcp://127.0.0.1:*", server_keys=site.server,
                          allowed_keys=load_allowed_keys(site.allowed_dir),
                          sensors_by_node={"A1-S2": ["A1-S2a", "A1-S2b"]}).start()
    try:
        with sender_for(site, server.endpoint, "A1-S2") as sender:
            sender.submit(make_detections(0, 5, "A1-S2a") + make_detections(5, 10, "A1-S2b"))
            assert sender.flush(5.0)
    finally:
        server.stop()
    assert {s.detection.sensor_id for s in site.log.detections("A1-S2")} == {"A1-S2a", "A1-S2b"}


def _batch(items: list[dict[str, object]], node_id: str = "A1-S2") -> bytes:
    return json.dumps({"v": 1, "type": "detections", "node_id": node_id, "stream_id": STREAM,
                       "items": items}).encode()


def test_malformed_messages_are_logged_dropped_and_the_ingest_keeps_working(
        site: Site, ingest: IngestServer, raw: zmq.Socket[bytes], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="service.ingest")
    good_item = make_detections(0, 1, "A1-S2")[0].to_dict() | {"seq": 1}
    garbage = [
        (b"\x00\x01garbage", "not JSON"),
        (b'{"v": 99, "type": "detections"}', "unsupported envelope version"),
        (b'{"v": 1, "type": "detections", "node_id": "A1-S2"}', "items: missing"),
        (_batch([{"sensor_id": "A1-S2"}]), "items[0].seq"),
        (json.dumps({"v": 1, "type": "ack", "stream_id": STREAM, "seqs": []}).encode(), "may not send Ack"),
        (b"{" + b" " * (70 * 1024) + b"}", "exceeds the 65536-byte limit"),
    ]
    for data, reason in garbage:
        reply = exchange(raw, data)
        assert isinstance(reply, ErrorReply) and reason in reply.reason, (reason, reply)
        assert reason in caplog.text
    reply = exchange(raw, b"two", b"frames")
    assert isinstance(reply, ErrorReply) and "one frame" in reply.reason

    # one bad detection in a batch: refused with its reason, the good one stored and acked
    bad_item = good_item | {"seq": 2, "tech": "wifi"}
    reply = exchange(raw, _batch([good_item, bad_item]))
    assert isinstance(reply, Ack) and reply.seqs == (1,) and [r.seq for r in reply.rejected] == [2]
    assert "tech" in reply.rejected[0].reason

    stats = ingest.stats()
    assert (stats.n_malformed, stats.n_too_large, stats.n_rejected_items) == (6, 1, 1)
    assert site.log.count() == 1
    # still serving a well-behaved node
    with sender_for(site, ingest.endpoint, "A1-S1") as sender:
        sender.submit(make_detections(0, 100))
        assert sender.flush(5.0)
    assert site.log.count("A1-S1") == 100


def test_a_resent_batch_is_acked_again_but_stored_once(site: Site, ingest: IngestServer,
                                                       raw: zmq.Socket[bytes]) -> None:
    items = tuple(replace(d, seq=i + 1) for i, d in enumerate(make_detections(0, 10, "A1-S2")))
    batch = encode_message(DetectionBatch("A1-S2", STREAM, items))
    first, second = exchange(raw, batch), exchange(raw, batch)
    assert isinstance(first, Ack) and isinstance(second, Ack)
    assert first.seqs == second.seqs == tuple(range(1, 11))
    assert site.log.count() == 10
    wait_for(lambda: ingest.stats().n_acks_sent == 2)  # counted just after the send returns
    stats = ingest.stats()
    assert (stats.n_detections_stored, stats.n_duplicates, stats.n_acks_sent) == (10, 10, 2)


class FlakyStore:
    """Fails the first ``n_failures`` store calls, like a full disk or a locked database."""

    def __init__(self, log: DetectionLog, n_failures: int) -> None:
        self.log, self.n_failures = log, n_failures

    def store_detections(self, node_id: str, stream_id: str, detections: Sequence[Detection]) -> int:
        if self.n_failures > 0:
            self.n_failures -= 1
            raise OSError("database or disk is full")
        return self.log.store_detections(node_id, stream_id, detections)

    def store_heartbeat(self, node_id: str, heartbeat: Heartbeat, sender: SenderStatus) -> None:
        self.log.store_heartbeat(node_id, heartbeat, sender)


def test_nothing_is_acked_unless_stored_and_the_node_resends(site: Site) -> None:
    store = FlakyStore(site.log, n_failures=3)
    server = IngestServer(store, bind="tcp://127.0.0.1:*", server_keys=site.server,
                          allowed_keys=load_allowed_keys(site.allowed_dir)).start()
    try:
        with sender_for(site, server.endpoint, "A1-S1", batch_size=50) as sender:
            sender.submit(make_detections(0, 200))
            assert sender.flush(10.0), sender.stats()
            stats = sender.stats()
    finally:
        server.stop()
    assert server.stats().n_store_errors == 3
    assert stats.n_service_errors == 3 and stats.n_resent >= 50 and stats.n_acked == 200
    assert sorted(s.detection.sample_start for s in site.log.detections()) == list(range(200))  # type: ignore[type-var]


def test_a_revoked_key_is_refused_at_once(site: Site, ingest: IngestServer) -> None:
    with sender_for(site, ingest.endpoint, "A1-S1") as sender:
        sender.submit(make_detections(0, 10))
        assert sender.flush(5.0)
        (site.allowed_dir / "A1-S1.key").unlink()
        ingest.set_allowed_keys(load_allowed_keys(site.allowed_dir))
        sender.submit(make_detections(10, 20))  # same, still open connection
        sender.pump(1.0)
        assert sender.stats().n_pending == 10
    assert site.log.count("A1-S1") == 10 and ingest.stats().n_unknown_node >= 1


def test_insecure_mode_works_only_when_asked_and_says_so_loudly(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match="CURVE needs"):
        IngestServer(site.log, bind="tcp://127.0.0.1:*")
    with pytest.raises(ValueError, match="CURVE needs"):
        DetectionSender("tcp://127.0.0.1:1", "A1-S1", site.tmp / "o.sqlite")
    server = IngestServer(site.log, bind="tcp://127.0.0.1:*", insecure=True).start()
    try:
        with DetectionSender(server.endpoint, "A1-S1", site.tmp / "o.sqlite", insecure=True) as sender:
            sender.submit(make_detections(0, 10))
            assert sender.flush(5.0)
    finally:
        server.stop()
    assert site.log.count() == 10
    assert caplog.text.count("INSECURE MODE") == 2


def test_binding_a_busy_port_is_a_clear_error(site: Site, ingest: IngestServer) -> None:
    with pytest.raises(InputError, match="bind: cannot listen on"):
        IngestServer(site.log, bind=ingest.endpoint, server_keys=site.server, allowed_keys={}).start()
