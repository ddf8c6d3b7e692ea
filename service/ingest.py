"""ZeroMQ ingest: receives detections and heartbeats from sensor nodes, stores them, acks them.

Transport (STYLE.md "Sharp edges": PUB drops silently): the service *binds* a ROUTER
socket, nodes *connect* DEALER sockets, every detection is numbered by its node, and the
service acknowledges a detection only after the store call returned, i.e. once it is
durably stored. A node resends whatever stays unacknowledged, and the store keeps one
copy of each (node, stream, seq), so delivery is exactly once end to end.

Security: ZeroMQ CURVE (RFC 26/CurveZMQ) encrypts and authenticates every link. The
ZAP handler (``zmq.auth.thread.ThreadAuthenticator``, RFC 27/ZAP) lets in only the public
keys of the allowed list, and tags each connection with the node id the key is
registered under; a message whose ``node_id`` (or detection ``sensor_id``) differs from
that identity is refused, so one node cannot speak for another. ``insecure=True`` turns
all of this off for local development only, with a loud warning.

IQ snippets (``snippets`` messages, :mod:`dsp.snippets`) take the same path: checked
like detections (each snippet's ``sensor_id`` must belong to the node), stored through
the store's ``store_snippets`` (same idempotence per node, stream and seq) and acked only
once stored. A store without ``store_snippets`` (a plain detection log) refuses them for
good with the reason, so nodes do not keep resending evidence nobody keeps.

Robustness: anything a peer sends is validated by :mod:`dsp.wire`; a malformed message
(not JSON, wrong version, missing field, oversized, extra frames) is logged with its
reason, counted and dropped, and the ingest keeps going. Log lines about misbehaving
peers are rate-limited so a flood cannot fill the disk; the counters keep the totals.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from dsp.errors import InputError
from dsp.records import Detection, Heartbeat
from dsp.snippets import IQSnippet
from dsp.wire import (
    MAX_MESSAGE_BYTES,
    Ack,
    CurveKeyPair,
    DetectionBatch,
    ErrorReply,
    HeartbeatMessage,
    RejectedItem,
    SenderStatus,
    SnippetBatch,
    check_node_id,
    decode_message,
    encode_message,
)

log = logging.getLogger(__name__)

DEFAULT_BIND = "tcp://127.0.0.1:5557"
ZAP_DOMAIN = "cellwatch"
HEARTBEAT_IVL_MS = 5_000  # ZMTP pings: a silently dead peer is noticed within HEARTBEAT_TIMEOUT_MS
HEARTBEAT_TIMEOUT_MS = 15_000
_POLL_MS = 100
CLOCK_TOLERANCE_S = 10.0  # a heartbeat's time this far from the service's clock: the node's clock is off
_MAX_MESSAGES_PER_TURN = 256


class DetectionStore(Protocol):
    """Where the ingest puts what it receives. Both calls must be durable when they return."""

    def store_detections(self, node_id: str, stream_id: str, detections: Sequence[Detection]) -> int:
        """Store detections (each with ``seq``) idempotently per (node_id, stream_id, seq).

        Returns how many were new; storing the same batch twice must keep one copy.
        """
        ...

    def store_heartbeat(self, node_id: str, heartbeat: Heartbeat, sender: SenderStatus) -> None: ...


class SnippetStore(Protocol):
    """A store that also keeps IQ snippets (optional: the ingest checks for the method)."""

    def store_snippets(self, node_id: str, stream_id: str, snippets: Sequence[IQSnippet]) -> int:
        """Store snippets (each with ``seq``) idempotently per (node_id, stream_id, seq); returns how many were new."""
        ...


NO_SNIPPET_STORE = "this service keeps no IQ snippets"


@dataclass(frozen=True, slots=True)
class IngestStats:
    """Totals since the ingest started (a snapshot)."""

    n_messages: int = 0  # messages received from authenticated peers
    n_batches: int = 0
    n_detections_received: int = 0
    n_detections_stored: int = 0  # new rows
    n_duplicates: int = 0  # received again, already stored (a resend): acked, not stored twice
    n_rejected_items: int = 0  # detections with a bad field: refused for good, node told why
    n_heartbeats: int = 0
    n_acks_sent: int = 0
    n_replies_undeliverable: int = 0  # peer gone or its queue full; it will resend
    n_malformed: int = 0  # whole messages dropped: not JSON, bad envelope, extra frames
    n_too_large: int = 0
    n_impersonation: int = 0  # node_id / sensor_id not the one the key is registered for
    n_unknown_node: int = 0  # key removed from the allowed list while connected
    n_store_errors: int = 0
    n_auth_denied: int = 0  # CURVE keys not in the allowed list (ZAP said no)
    n_handshake_failures: int = 0  # every failed handshake: denied keys, no CURVE, bad protocol
    n_connections: int = 0
    n_snippet_batches: int = 0
    n_snippets_received: int = 0
    n_snippets_stored: int = 0  # new rows
    n_snippet_duplicates: int = 0
    n_snippets_rejected: int = 0  # bad field, or no snippet store: refused for good, node told why
    n_clock_warnings: int = 0  # heartbeats whose node time is off the service's clock by > CLOCK_TOLERANCE_S


class _RateLimitedLog:
    """At most ``per_minute`` lines per kind; the rest are counted and summarized."""

    def __init__(self, per_minute: int = 20) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int, int]] = {}  # kind -> (start, n_logged, n_suppressed)

    def __call__(self, level: int, kind: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            start, n_logged, n_suppressed = self._windows.get(kind, (now, 0, 0))
            if now - start >= 60.0:
                if n_suppressed:
                    log.warning("suppressed %d log lines kind=%s in the last minute", n_suppressed, kind)
                start, n_logged, n_suppressed = now, 0, 0
            emit = n_logged < self.per_minute
            self._windows[kind] = (start, n_logged + emit, n_suppressed + (not emit))
        if emit:
            log.log(level, msg, *args)


class _AllowedNodes:
    """The ZAP credentials provider: which public keys may connect, and as which node."""

    def __init__(self, allowed: Mapping[str, bytes], on_denied: Any) -> None:
        self.on_denied = on_denied
        self.replace(allowed)

    def replace(self, allowed: Mapping[str, bytes]) -> None:
        by_key: dict[bytes, str] = {}
        for node_id, key in allowed.items():
            check_node_id(node_id)
            if len(key) != 40:
                raise ValueError(f"public key of {node_id} is not a 40-character Z85 key")
            if key in by_key:
                raise ValueError(f"nodes {by_key[key]} and {node_id} share a public key")
            by_key[bytes(key)] = node_id
        self.by_key = by_key  # one assignment: the ZAP thread sees the old or the new map
        self.node_ids = frozenset(by_key.values())

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self.by_key:
            return True
        self.on_denied(key)
        return False


class _NodeAuthenticator(ThreadAuthenticator):
    """ZAP handler whose User-Id is the node id registered for the client's key."""

    nodes: _AllowedNodes

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.nodes.by_key.get(z85.encode(client_public_key), "")


class IngestServer:
    """The service end of node delivery: a bound ROUTER socket served by one thread.

    ``server_keys`` is the service's CURVE pair, ``allowed_keys`` maps node id -> public
    key (see :func:`service.keys.load_allowed_keys`). ``sensors_by_node`` lists, per node,
    the sensor ids its detections and heartbeats may carry (default: only its own node id);
    a message naming another sensor is refused whole and stays in the node's outbox, so a
    configuration mistake delays detections instead of losing them.
    """

    def __init__(
        self,
        store: DetectionStore,
        *,
        bind: str = DEFAULT_BIND,
        server_keys: CurveKeyPair | None = None,
        allowed_keys: Mapping[str, bytes] | None = None,
        insecure: bool = False,
        sensors_by_node: Mapping[str, Collection[str]] | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        if insecure and (server_keys is not None or allowed_keys is not None):
            raise ValueError("insecure mode takes no keys: drop insecure=True to use CURVE")
        if not insecure and (server_keys is None or allowed_keys is None):
            raise ValueError("CURVE needs server_keys and allowed_keys (or insecure=True for local development)")
        self.store = store
        self.bind = bind
        self.insecure = insecure
        self.max_message_bytes = max_message_bytes
        self._server_keys = server_keys
        self._sensors_by_node = {k: frozenset(v) for k, v in (sensors_by_node or {}).items()}
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._limited = _RateLimitedLog()
        self._clock_off: set[str] = set()  # sensors whose last heartbeat time was off the service's clock
        self._pending: list[tuple[bytes, DetectionBatch]] = []  # checked batches of this turn, to store together
        self._nodes = _AllowedNodes(allowed_keys or {}, self._on_denied)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._auth: _NodeAuthenticator | None = None
        self._socket: zmq.Socket[bytes] | None = None
        self._monitor: zmq.Socket[bytes] | None = None
        self.endpoint: str = ""

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> IngestServer:
        """Bind and serve in a background thread; bind errors are raised here."""
        if self._thread is not None:
            raise RuntimeError("ingest already started")
        self._context = zmq.Context()
        try:
            sock = self._open_socket(self._context)
        except BaseException:
            self._shutdown_transport()
            raise
        self._socket = sock
        self._monitor = sock.get_monitor_socket(
            zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cellwatch-ingest", daemon=True)
        self._thread.start()
        log.info("ingest listening endpoint=%s curve=%s allowed_nodes=%d", self.endpoint,
                 not self.insecure, len(self._nodes.node_ids))
        return self

    def _open_socket(self, context: zmq.Context[zmq.Socket[bytes]]) -> zmq.Socket[bytes]:
        if self.insecure:
            log.warning(
                "INSECURE MODE: ZeroMQ ingest on %s without CURVE: no encryption, no authentication, "
                "anyone who can reach it can inject detections. For local development only.", self.bind)
        else:
            assert self._server_keys is not None
            auth = _NodeAuthenticator(context=context, log=logging.getLogger(__name__ + ".zap"))
            auth.nodes = self._nodes
            auth.start()
            auth.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=self._nodes)
            self._auth = auth
        sock = context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)  # unsent acks die with us: the nodes resend
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unroutable ack raises (counted) instead of vanishing
        sock.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_message_bytes + 4096)  # hard cap: peer is disconnected
        sock.setsockopt(zmq.RCVHWM, 1000)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.HANDSHAKE_IVL, 10_000)
        if not self.insecure:
            assert self._server_keys is not None
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self._server_keys.secret)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self._server_keys.public)
            sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        try:
            sock.bind(self.bind)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise InputError(None, "bind", f"cannot listen on {self.bind}: {exc}") from None
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return sock

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving and release the port (in-flight acks are dropped: nodes resend)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("ingest thread did not stop within %.1f s", timeout_s)
                return
            self._thread = None
        self._shutdown_transport()

    def _shutdown_transport(self) -> None:
        for sock in (self._monitor, self._socket):
            if sock is not None:
                sock.close(linger=0)
        self._monitor = self._socket = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._context is not None:
            self._context.term()
            self._context = None

    def __enter__(self) -> IngestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_allowed_keys(self, allowed_keys: Mapping[str, bytes]) -> None:
        """Replace the allowed list (e.g. after a key file was added or deleted).

        New connections are checked against it at once; messages from connections of a
        node no longer listed are refused from now on.
        """
        self._nodes.replace(allowed_keys)
        log.info("allowed node keys reloaded n=%d", len(self._nodes.node_ids))

    def stats(self) -> IngestStats:
        with self._counts_lock:
            return IngestStats(**{f.name: self._counts[f.name] for f in fields(IngestStats)})

    # -- serving ---------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._counts_lock:
            self._counts[name] += n

    def _on_denied(self, key: bytes) -> None:
        # Called in the ZAP thread for a key that is not on the list.
        self._count("n_auth_denied")
        self._limited(logging.WARNING, "auth", "refused connection: unknown CURVE key key=%s...",
                      key[:8].decode("ascii", "replace"))

    def _run(self) -> None:
        sock, monitor = self._socket, self._monitor
        assert sock is not None and monitor is not None
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        while not self._stop.is_set():
            try:
                ready = dict(poller.poll(_POLL_MS))
                if monitor in ready:
                    self._drain_monitor(monitor)
                if sock in ready:
                    for _ in range(_MAX_MESSAGES_PER_TURN):
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._handle(sock, frames)
                    self._store_batches(sock)  # what this turn brought, in one commit
            except zmq.ContextTerminated:
                return
            except Exception:  # a bug must not stop the ingest: log it and keep serving
                log.exception("ingest loop error (continuing)")
                time.sleep(0.05)

    def _drain_monitor(self, monitor: zmq.Socket[bytes]) -> None:
        while True:
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            kind = event["event"]
            if kind == zmq.EVENT_ACCEPTED:
                self._count("n_connections")
            elif kind in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                          zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                self._count("n_handshake_failures")
                self._limited(logging.WARNING, "handshake", "handshake failed event=%s value=%s endpoint=%s",
                              zmq.Event(kind).name, event["value"], event["endpoint"].decode("utf-8", "replace"))

    def _reply(self, sock: zmq.Socket[bytes], peer: bytes, message: Ack | ErrorReply) -> None:
        try:
            sock.send_multipart([peer, encode_message(message)], zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError) as exc:
            self._count("n_replies_undeliverable")
            log.debug("reply undeliverable reason=%s", exc)
            return
        if isinstance(message, Ack):
            self._count("n_acks_sent")

    def _refuse(self, sock: zmq.Socket[bytes], peer: bytes, counter: str, node: str, reason: str) -> None:
        self._count(counter)
        self._limited(logging.WARNING, counter, "message dropped node=%s kind=%s reason=%s",
                      node, counter.removeprefix("n_"), reason)
        self._reply(sock, peer, ErrorReply(reason))

    def _handle(self, sock: zmq.Socket[bytes], frames: list[zmq.Frame]) -> None:
        peer = frames[0].bytes
        auth_node = ""
        if not self.insecure and len(frames) > 1:
            try:
                auth_node = str(frames[1].get("User-Id"))
            except zmq.ZMQError:
                auth_node = ""
        who = auth_node or "?"
        self._count("n_messages")
        if len(frames) != 2:
            self._refuse(sock, peer, "n_malformed", who, f"expected one frame per message, got {len(frames) - 1}")
            return
        data = frames[1].bytes
        if len(data) > self.max_message_bytes:
            self._refuse(sock, peer, "n_too_large", who,
                         f"message of {len(data)} bytes exceeds the {self.max_message_bytes}-byte limit")
            return
        try:
            message = decode_message(data, max_bytes=self.max_message_bytes)
        except InputError as exc:
            self._refuse(sock, peer, "n_malformed", who, str(exc))
            return
        if not isinstance(message, DetectionBatch | SnippetBatch | HeartbeatMessage):
            self._refuse(sock, peer, "n_malformed", who, f"a node may not send {type(message).__name__}")
            return
        if not self.insecure and auth_node not in self._nodes.node_ids:
            self._refuse(sock, peer, "n_unknown_node", who, "this key is no longer on the allowed list")
            return
        node_id = message.node_id
        if not self.insecure and node_id != auth_node:
            self._refuse(sock, peer, "n_impersonation", who,
                         f"node_id {node_id!r} does not match the key, which is registered to {auth_node!r}")
            return
        allowed_sensors = self._sensors_by_node.get(node_id, frozenset((node_id,)))
        if isinstance(message, HeartbeatMessage):
            self._handle_heartbeat(sock, peer, message, allowed_sensors)
        elif isinstance(message, SnippetBatch):
            self._handle_snippets(sock, peer, message, allowed_sensors)
        else:
            self._handle_batch(sock, peer, message, allowed_sensors)

    def _handle_heartbeat(self, sock: zmq.Socket[bytes], peer: bytes, message: HeartbeatMessage,
                          allowed_sensors: frozenset[str]) -> None:
        if message.heartbeat.sensor_id not in allowed_sensors:
            self._refuse(sock, peer, "n_impersonation", message.node_id,
                         f"sensor_id {message.heartbeat.sensor_id!r} does not belong to node {message.node_id!r}")
            return
        try:
            self.store.store_heartbeat(message.node_id, message.heartbeat, message.sender)
        except Exception as exc:
            self._count("n_store_errors")
            self._limited(logging.ERROR, "store", "heartbeat not stored node=%s error=%s: %s",
                          message.node_id, type(exc).__name__, exc)
            return
        self._count("n_heartbeats")
        self._check_clock(message)
        s = message.sender
        if s.n_overflow_dropped or s.n_write_failures or s.n_invalid:
            self._limited(logging.WARNING, f"losses:{message.node_id}",
                          "node reports lost detections node=%s overflow_dropped=%d write_failures=%d invalid=%d "
                          "pending=%d", message.node_id, s.n_overflow_dropped, s.n_write_failures, s.n_invalid,
                          s.n_pending)

    def _check_clock(self, message: HeartbeatMessage) -> None:
        """Say when a node's clock jumps away from the service's, and when it is back in step.

        Its detections are stored anyway (with the times it gave): nothing is lost, but their
        times no longer line up with the other sensors', so staff must know. A heartbeat that
        waited out a link cut is at most one heartbeat period old, well inside the tolerance.
        """
        sensor_id = message.heartbeat.sensor_id
        offset_s = message.heartbeat.t_s - time.time()
        if abs(offset_s) > CLOCK_TOLERANCE_S:
            self._count("n_clock_warnings")
            if sensor_id not in self._clock_off:
                self._clock_off.add(sensor_id)
                log.warning("node clock off node=%s sensor=%s offset_s=%.1f tolerance_s=%g: its detection times "
                            "do not match the other sensors'", message.node_id, sensor_id, offset_s, CLOCK_TOLERANCE_S)
        elif sensor_id in self._clock_off:
            self._clock_off.discard(sensor_id)
            log.info("node clock back in step node=%s sensor=%s offset_s=%.3f", message.node_id, sensor_id, offset_s)

    def _handle_batch(self, sock: zmq.Socket[bytes], peer: bytes, batch: DetectionBatch,
                      allowed_sensors: frozenset[str]) -> None:
        foreign = sorted({d.sensor_id for d in batch.detections} - allowed_sensors)
        if foreign:
            self._refuse(sock, peer, "n_impersonation", batch.node_id,
                         f"sensor_id {foreign[0]!r} does not belong to node {batch.node_id!r}")
            return
        self._pending.append((peer, batch))  # stored (and acked) at the end of the turn: _store_batches

    def _store_batches(self, sock: zmq.Socket[bytes]) -> None:
        """Store the turn's detection batches, then ack each.

        Group commit: with many nodes each sending small batches, one commit (one fsync) per
        message would cap the ingest at the disk's fsync rate; a store that offers
        ``store_detection_batches`` takes all of the turn's batches in one transaction. If
        that fails, each batch is stored on its own, so a bad one is refused alone.
        """
        pending, self._pending = self._pending, []
        with_rows = [k for k, (_, b) in enumerate(pending) if b.detections]
        counts: dict[int, int] = {}
        group = getattr(self.store, "store_detection_batches", None)
        if group is not None and len(with_rows) > 1:
            try:
                stored = group([(pending[k][1].node_id, pending[k][1].stream_id, pending[k][1].detections)
                                for k in with_rows])
                counts = {k: int(n) for k, n in zip(with_rows, stored, strict=True)}
            except Exception as exc:
                log.debug("group commit failed, storing batches one by one error=%s: %s", type(exc).__name__, exc)
        for k, (peer, batch) in enumerate(pending):
            n_new = counts.get(k, 0)
            if batch.detections and k not in counts:
                try:
                    n_new = int(self.store.store_detections(batch.node_id, batch.stream_id, batch.detections))
                except Exception as exc:  # storage trouble: no ack, the node keeps and resends
                    self._count("n_store_errors")
                    self._limited(logging.ERROR, "store", "batch not stored node=%s n=%d error=%s: %s",
                                  batch.node_id, len(batch.detections), type(exc).__name__, exc)
                    self._reply(sock, peer, ErrorReply("the service could not store this batch; it will be resent"))
                    continue
            self._ack_batch(sock, peer, batch, n_new)

    def _ack_batch(self, sock: zmq.Socket[bytes], peer: bytes, batch: DetectionBatch, n_new: int) -> None:
        self._count("n_batches")
        self._count("n_detections_received", len(batch.detections) + len(batch.rejected))
        self._count("n_detections_stored", n_new)
        self._count("n_duplicates", len(batch.detections) - n_new)
        if batch.rejected:
            self._count("n_rejected_items", len(batch.rejected))
            first = batch.rejected[0]
            self._limited(logging.WARNING, "rejected", "detections refused node=%s n=%d first_seq=%d reason=%s",
                          batch.node_id, len(batch.rejected), first.seq, first.reason)
        self._reply(sock, peer, Ack(batch.stream_id, batch.seqs, batch.rejected))

    def _handle_snippets(self, sock: zmq.Socket[bytes], peer: bytes, batch: SnippetBatch,
                         allowed_sensors: frozenset[str]) -> None:
        foreign = sorted({s.sensor_id for s in batch.snippets} - allowed_sensors)
        if foreign:
            self._refuse(sock, peer, "n_impersonation", batch.node_id,
                         f"sensor_id {foreign[0]!r} does not belong to node {batch.node_id!r}")
            return
        rejected = list(batch.rejected)
        snippets = batch.snippets
        store_snippets = getattr(self.store, "store_snippets", None)
        if store_snippets is None:
            rejected += [RejectedItem(seq, NO_SNIPPET_STORE) for seq in batch.seqs]
            snippets = ()
        n_new = 0
        if snippets and store_snippets is not None:
            try:
                n_new = int(store_snippets(batch.node_id, batch.stream_id, snippets))
            except Exception as exc:  # storage trouble: no ack, the node keeps and resends
                self._count("n_store_errors")
                self._limited(logging.ERROR, "store", "snippets not stored node=%s n=%d error=%s: %s",
                              batch.node_id, len(snippets), type(exc).__name__, exc)
                self._reply(sock, peer, ErrorReply("the service could not store these snippets; they will be resent"))
                return
        self._count("n_snippet_batches")
        self._count("n_snippets_received", len(batch.snippets) + len(batch.rejected))
        self._count("n_snippets_stored", n_new)
        self._count("n_snippet_duplicates", len(snippets) - n_new)
        if rejected:
            self._count("n_snippets_rejected", len(rejected))
            first = rejected[0]
            self._limited(logging.WARNING, "rejected-snippets", "snippets refused node=%s n=%d first_seq=%d reason=%s",
                          batch.node_id, len(rejected), first.seq, first.reason)
        self._reply(sock, peer, Ack(batch.stream_id, tuple(s.seq for s in snippets if s.seq is not None),
                                    tuple(rejected)))
