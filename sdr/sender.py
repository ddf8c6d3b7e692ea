"""Node side of delivery: detections go from the durable outbox to the service over ZeroMQ.

:meth:`DetectionSender.submit` writes detections to the outbox (fsynced) and returns;
the I/O side sends them in batches on a DEALER socket connected to the service's
ROUTER, and deletes each detection only when the service acknowledges it, which it does
only after storing it. Whatever is not acknowledged within ``ack_timeout_s`` is sent again
(the timeout doubles per attempt up to ``max_ack_timeout_s``, and is reset on reconnection):
the service keeps one copy of each (node, stream, seq), so resending is always safe.

Transport settings, and why:

* ``IMMEDIATE``: messages are queued only on a live connection; while the service is
  down nothing piles up in ZeroMQ (the outbox is the queue), and a send that would
  block is simply retried later.
* ``RECONNECT_IVL`` 0.1 s doubling to ``RECONNECT_IVL_MAX`` (10 s by default): ZeroMQ
  reconnects by itself with exponential backoff; a socket monitor tells the sender when
  a CURVE handshake succeeded, so unacknowledged batches go out again at once.
* ZMTP heartbeats (5 s ping, 15 s timeout) notice a dead link that TCP would not.
* ``LINGER`` 0: nothing is lost on close, since everything unacknowledged stays in the outbox.

Threading: the node runtime does DSP in its main thread and calls :meth:`submit` and
:meth:`submit_heartbeat` from there; :meth:`start` runs the socket I/O in a background
thread. Without :meth:`start`, call :meth:`pump` to drive the I/O (tests, single-threaded
tools). Heartbeats are not stored: the latest one waits for a connection and replaces any
older unsent one.

IQ snippets (:meth:`DetectionSender.submit_snippets`) take the same path in a second
*lane*: their own outbox queue and stream id, ``snippets`` messages, the same acks,
resends and backoff. Detections go first: each round sends what detections are due
before any snippet, and snippets have fewer batches in flight (``snippet_max_in_flight``),
so evidence never delays an alert. A snippet batch stays under the message size limit
(a full snippet is ~350 kB; a usual one ~10 kB).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.utils.monitor import parse_monitor_message

from dsp.errors import InputError
from dsp.records import Detection, Heartbeat
from dsp.snippets import MAX_SNIPPET_JSON_BYTES, IQSnippet
from dsp.wire import (
    MAX_BATCH_ITEMS,
    MAX_DETECTION_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_SNIPPET_BATCH_ITEMS,
    Ack,
    CurveKeyPair,
    ErrorReply,
    HeartbeatMessage,
    SenderStatus,
    check_node_id,
    decode_message,
    encode_detection_items,
    encode_message,
    encode_snippet_items,
)
from sdr.outbox import (
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_SNIPPETS_PENDING,
    Outbox,
    OutboxError,
    WhenFull,
)

log = logging.getLogger(__name__)

_MONITOR_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                   | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
_IDLE_POLL_S = 0.25
_MAX_BATCH_BYTES = MAX_MESSAGE_BYTES - 4096  # the envelope around the items


@dataclass(frozen=True, slots=True)
class SenderStats:
    """Counts of this sender's session (outbox totals are in :meth:`DetectionSender.outbox_stats`)."""

    connected: bool
    n_pending: int  # in the outbox, not yet acknowledged
    n_in_flight: int  # sent, awaiting an ack
    n_submitted: int
    n_sent: int  # detections sent for the first time
    n_resent: int  # detections sent again (ack late or lost, reconnection)
    n_acked: int  # detections the service confirmed and the outbox forgot
    n_rejected: int  # detections the service refused for good (bad field)
    n_invalid: int  # detections refused at submit (non-finite value, oversized)
    n_write_failures: int  # detections lost because the outbox could not be written
    n_heartbeats_sent: int
    n_connects: int  # successful (CURVE) handshakes
    n_auth_failures: int  # handshakes the service refused: our key is not on its list
    n_service_errors: int  # messages the service refused as a whole (it said why)
    n_snippets_pending: int = 0  # IQ snippets in the outbox, not yet acknowledged
    n_snippets_in_flight: int = 0
    n_snippets_submitted: int = 0
    n_snippets_sent: int = 0
    n_snippets_resent: int = 0
    n_snippets_acked: int = 0
    n_snippets_rejected: int = 0
    n_snippets_invalid: int = 0
    n_snippet_write_failures: int = 0


@dataclass(slots=True)
class _Batch:
    items: dict[int, str]  # seq -> wire-form JSON, those still unacknowledged
    deadline_s: float  # monotonic time after which it is sent again
    n_attempts: int = 1  # sends since the last (re)connection: drives the backoff


@dataclass(slots=True)
class _Lane:
    """One numbered queue of the outbox on its way to the service (detections, or snippets)."""

    what: str  # for log lines
    counter: str  # counter names are n_{counter}sent, n_{counter}acked ...
    stream_id: str
    read: Callable[[int, int], list[tuple[int, str]]]  # (limit, after_seq) -> [(seq, json)]
    last_seq: Callable[[], int]
    forget: Callable[..., int]
    encode: Callable[[str, str, list[str]], bytes]
    batch_size: int
    max_in_flight: int
    in_flight: dict[int, _Batch] = field(default_factory=dict)  # first seq of the batch -> batch
    batch_of: dict[int, int] = field(default_factory=dict)  # seq -> first seq of its batch
    cursor: int = 0  # highest seq taken from the outbox this session


class _Throttle:
    """Log a repeating problem once per ``interval_s`` per kind, with the count in between."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, tuple[float, int]] = {}

    def __call__(self, level: int, kind: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        last, n_skipped = self._last.get(kind, (-1e18, 0))
        if now - last < self.interval_s:
            self._last[kind] = (last, n_skipped + 1)
            return
        self._last[kind] = (now, 0)
        suffix = f" (and {n_skipped} more since last logged)" if n_skipped else ""
        log.log(level, msg + suffix, *args)


def _load_key_file(path: str | os.PathLike[str], secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret_key = zmq.auth.load_certificate(Path(path))
    except (OSError, ValueError) as exc:
        raise InputError(str(path), None, f"cannot read a ZeroMQ key file: {exc}") from None
    if secret and secret_key is None:
        raise InputError(str(path), "secret-key", "missing: give the node's .key_secret file")
    return public, secret_key


def _server_key(value: bytes | str | os.PathLike[str]) -> bytes:
    key = value if isinstance(value, bytes) else _load_key_file(value, secret=False)[0]
    if len(key) != 40:
        raise InputError(None, "server_public_key", "not a 40-character Z85 CURVE key")
    return key


def _client_keys(value: CurveKeyPair | str | os.PathLike[str]) -> CurveKeyPair:
    if isinstance(value, CurveKeyPair):
        pair = value
    else:
        public, secret = _load_key_file(value, secret=True)
        assert secret is not None
        pair = CurveKeyPair(public, secret)
    if len(pair.public) != 40 or len(pair.secret) != 40 or zmq.curve_public(pair.secret) != pair.public:
        raise InputError(None, "client_keys", "not a matching Z85 CURVE key pair")
    return pair


class DetectionSender:
    """Delivers a node's detections exactly once to the service's ingest.

    ``server_public_key``: the service's public key (40-byte Z85, or a ``.key`` file);
    ``client_keys``: this node's pair (:class:`~dsp.wire.CurveKeyPair` or its
    ``.key_secret`` file). ``insecure=True`` (no CURVE) is for local development only.
    """

    def __init__(
        self,
        endpoint: str,
        node_id: str,
        outbox_path: str | os.PathLike[str],
        *,
        server_public_key: bytes | str | os.PathLike[str] | None = None,
        client_keys: CurveKeyPair | str | os.PathLike[str] | None = None,
        insecure: bool = False,
        batch_size: int = 200,
        max_in_flight: int = 4,
        ack_timeout_s: float = 5.0,
        max_ack_timeout_s: float = 60.0,
        reconnect_s: float = 0.1,
        reconnect_max_s: float = 10.0,
        max_pending: int = DEFAULT_MAX_PENDING,
        when_full: WhenFull = "drop_oldest",
        max_outbox_bytes: int | None = None,
        snippet_batch_size: int = 16,
        snippet_max_in_flight: int = 2,
        max_snippets_pending: int = DEFAULT_MAX_SNIPPETS_PENDING,
    ) -> None:
        self.node_id = check_node_id(node_id)
        if not 1 <= batch_size <= MAX_BATCH_ITEMS:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_ITEMS}")
        if max_in_flight < 1 or ack_timeout_s <= 0 or max_ack_timeout_s < ack_timeout_s:
            raise ValueError("need max_in_flight >= 1 and 0 < ack_timeout_s <= max_ack_timeout_s")
        if not 1 <= snippet_batch_size <= MAX_SNIPPET_BATCH_ITEMS or snippet_max_in_flight < 1:
            raise ValueError(f"snippet_batch_size must be 1..{MAX_SNIPPET_BATCH_ITEMS}, snippet_max_in_flight >= 1")
        if insecure and (server_public_key is not None or client_keys is not None):
            raise ValueError("insecure mode takes no keys: drop insecure=True to use CURVE")
        if not insecure and (server_public_key is None or client_keys is None):
            raise ValueError("CURVE needs server_public_key and client_keys (or insecure=True for local development)")
        self.endpoint = endpoint
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.ack_timeout_s = ack_timeout_s
        self.max_ack_timeout_s = max_ack_timeout_s
        server_key = None if server_public_key is None else _server_key(server_public_key)
        keys = None if client_keys is None else _client_keys(client_keys)
        self.outbox = Outbox(outbox_path, node_id, max_pending=max_pending, when_full=when_full,
                             max_bytes=max_outbox_bytes, max_snippets_pending=max_snippets_pending)
        self._counts = dict.fromkeys(
            ("n_submitted", "n_sent", "n_resent", "n_acked", "n_rejected", "n_invalid", "n_write_failures",
             "n_heartbeats_sent", "n_connects", "n_auth_failures", "n_service_errors", "n_snippets_submitted",
             "n_snippets_sent", "n_snippets_resent", "n_snippets_acked", "n_snippets_rejected",
             "n_snippets_invalid", "n_snippet_write_failures"), 0)
        self._counts_lock = threading.Lock()
        box = self.outbox
        self._detections = _Lane("detections", "", box.stream_id, box.pending_json, lambda: box.last_seq,
                                 box.forget, encode_detection_items, batch_size, max_in_flight)
        self._snippets = _Lane("snippets", "snippets_", box.snippet_stream_id, box.pending_snippets_json,
                               lambda: box.last_snippet_seq, box.forget_snippets, encode_snippet_items,
                               snippet_batch_size, snippet_max_in_flight)
        self._lanes = (self._detections, self._snippets)  # detections first, always
        self._connected = False
        self._blocked = False  # the last send would have blocked
        self._heartbeat: Heartbeat | None = None
        self._heartbeat_lock = threading.Lock()
        self._throttle = _Throttle()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, max(1, int(reconnect_s * 1000)))
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, max(1, int(reconnect_max_s * 1000)))
        sock.setsockopt(zmq.CONNECT_TIMEOUT, 5_000)
        sock.setsockopt(zmq.HANDSHAKE_IVL, 10_000)
        sock.setsockopt(zmq.HEARTBEAT_IVL, 5_000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 15_000)
        sock.setsockopt(zmq.HEARTBEAT_TTL, 15_000)
        sock.setsockopt(zmq.SNDHWM, max_in_flight + snippet_max_in_flight + 8)
        sock.setsockopt(zmq.RCVHWM, 1000)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        if insecure:
            log.warning("INSECURE MODE: sending detections to %s without CURVE (no encryption, no "
                        "authentication). For local development only.", endpoint)
        else:
            assert server_key is not None and keys is not None
            sock.setsockopt(zmq.CURVE_SERVERKEY, server_key)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
        self._monitor = sock.get_monitor_socket(_MONITOR_EVENTS)
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            self._monitor.close(linger=0)
            self._context.term()
            self.outbox.close()
            raise InputError(None, "endpoint", f"cannot connect to {endpoint!r}: {exc}") from None
        self._socket = sock
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._poller.register(self._wake_r, zmq.POLLIN)

    # -- called by the node runtime (any thread) -------------------------------------------

    def submit(self, detections: Iterable[Detection]) -> list[int]:
        """Durably queue ``detections``; returns their seqs (empty if the outbox could not be written).

        Never raises for a bad detection or a full disk: the node must keep detecting.
        Those losses are counted, logged and reported to the service with each heartbeat.
        """
        good: list[Detection] = []
        for d in detections:
            try:
                Detection.from_dict(d.to_dict())  # what the service would refuse, refuse now
                if len(d.to_json()) > MAX_DETECTION_BYTES:
                    raise InputError(None, None, f"detection larger than {MAX_DETECTION_BYTES} bytes")
            except (InputError, ValueError) as exc:
                self._count("n_invalid")
                self._throttle(logging.ERROR, "invalid", "invalid detection not queued reason=%s", exc)
                continue
            good.append(d)
        if not good:
            return []
        try:
            seqs = self.outbox.append(good)
        except OutboxError as exc:
            self._count("n_write_failures", len(good))
            self._throttle(logging.ERROR, "write", "detections lost: outbox not writable n=%d error=%s",
                           len(good), exc)
            return []
        self._count("n_submitted", len(seqs))
        self._wake()
        return seqs

    def submit_snippets(self, snippets: Iterable[IQSnippet]) -> list[int]:
        """Durably queue IQ snippets; returns their seqs. Never raises, as :meth:`submit`."""
        good: list[IQSnippet] = []
        for s in snippets:
            try:
                IQSnippet.from_dict(s.to_dict())  # what the service would refuse, refuse now
                if len(s.to_json()) > MAX_SNIPPET_JSON_BYTES:
                    raise InputError(None, None, f"snippet larger than {MAX_SNIPPET_JSON_BYTES} bytes")
            except (InputError, ValueError) as exc:
                self._count("n_snippets_invalid")
                self._throttle(logging.ERROR, "invalid-snippet", "invalid snippet not queued reason=%s", exc)
                continue
            good.append(s)
        if not good:
            return []
        try:
            seqs = self.outbox.append_snippets(good)
        except OutboxError as exc:
            self._count("n_snippet_write_failures", len(good))
            self._throttle(logging.ERROR, "write-snippet", "snippets lost: outbox not writable n=%d error=%s",
                           len(good), exc)
            return []
        self._count("n_snippets_submitted", len(seqs))
        self._wake()
        return seqs

    def submit_heartbeat(self, heartbeat: Heartbeat) -> None:
        """Send ``heartbeat`` when connected; a newer one replaces it if it is still waiting."""
        with self._heartbeat_lock:
            self._heartbeat = heartbeat
        self._wake()

    def stats(self) -> SenderStats:
        with self._counts_lock:
            counts = dict(self._counts)
        return SenderStats(connected=self._connected, n_pending=self.outbox.n_pending,
                           n_in_flight=len(self._detections.batch_of),
                           n_snippets_pending=self.outbox.n_snippets_pending,
                           n_snippets_in_flight=len(self._snippets.batch_of), **counts)

    def sender_status(self) -> SenderStatus:
        """What each heartbeat tells the service about this node's delivery."""
        o = self.outbox.stats()
        with self._counts_lock:
            return SenderStatus(n_pending=o.n_pending, n_overflow_dropped=o.n_overflow_dropped,
                                n_write_failures=self._counts["n_write_failures"], n_rejected=o.n_rejected,
                                n_invalid=self._counts["n_invalid"])

    # -- driving the I/O -------------------------------------------------------------------

    def start(self) -> DetectionSender:
        """Run the socket I/O in a background thread (then do not call :meth:`pump`)."""
        if self._thread is not None or self._closed:
            raise RuntimeError("sender already started or closed")
        self._thread = threading.Thread(target=self._run, name=f"cellwatch-sender-{self.node_id}", daemon=True)
        self._thread.start()
        return self

    def pump(self, timeout_s: float) -> None:
        """Drive the I/O for ``timeout_s`` seconds in the calling thread (no background thread)."""
        if self._thread is not None:
            raise RuntimeError("the background thread drives this sender; pump() is for unthreaded use")
        end = time.monotonic() + timeout_s
        while True:
            remaining = end - time.monotonic()
            self._step(max(0.0, remaining))
            if remaining <= 0:
                return

    def flush(self, timeout_s: float) -> bool:
        """Wait until the service acknowledged everything in the outbox (snippets too); False on timeout."""
        end = time.monotonic() + timeout_s
        while self.outbox.n_pending > 0 or self.outbox.n_snippets_pending > 0:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return False
            if self._thread is None:
                self.pump(min(remaining, 0.05))
            else:
                time.sleep(min(remaining, 0.02))
        return True

    def close(self) -> None:
        """Stop the I/O and close the outbox; unacknowledged detections stay for next time."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(10.0)
        self._socket.close(linger=0)
        self._monitor.close(linger=0)
        self._context.term()
        self.outbox.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> DetectionSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals (I/O thread only) -------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._counts_lock:
            self._counts[name] += n

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake-up is already pending) or closed

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step(_IDLE_POLL_S)
            except zmq.ContextTerminated:
                return
            except Exception:  # a bug must not silently stop delivery
                log.exception("sender loop error (continuing)")
                time.sleep(0.1)

    def _step(self, max_wait_s: float) -> None:
        """One round: read events and acks, send what is due, then wait for something to happen."""
        self._drain_monitor()
        self._drain_replies()
        now = time.monotonic()
        if self._connected:
            for lane in self._lanes:
                self._resend_due(lane, now)
                self._send_new(lane, now)
            self._send_heartbeat()
        wait_s = max_wait_s
        deadlines = [b.deadline_s for lane in self._lanes for b in lane.in_flight.values()]
        if self._connected and deadlines:
            wait_s = min(wait_s, max(0.0, min(deadlines) - now))
        if self._connected and not self._blocked and any(
                len(lane.in_flight) < lane.max_in_flight and lane.last_seq() > lane.cursor for lane in self._lanes):
            wait_s = 0.0  # more to send now
        ready = dict(self._poller.poll(int(wait_s * 1000)))
        if self._wake_r in ready:
            try:
                os.read(self._wake_r, 4096)
            except BlockingIOError:
                pass

    def _drain_monitor(self) -> None:
        while True:
            try:
                event = parse_monitor_message(self._monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            kind = event["event"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected = True
                self._count("n_connects")
                now = time.monotonic()
                for lane in self._lanes:
                    for batch in lane.in_flight.values():  # whatever was in flight died with the old link
                        batch.deadline_s = now
                        batch.n_attempts = 0
                log.info("connected to service endpoint=%s in_flight=%d pending=%d snippets_pending=%d",
                         self.endpoint, len(self._detections.batch_of), self.outbox.n_pending,
                         self.outbox.n_snippets_pending)
            elif kind == zmq.EVENT_DISCONNECTED:
                if self._connected:
                    log.warning("disconnected from service endpoint=%s pending=%d", self.endpoint,
                                self.outbox.n_pending)
                self._connected = False
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._count("n_auth_failures")
                self._throttle(logging.ERROR, "auth", "service refused this node's key endpoint=%s node=%s "
                               "(is its .key file in the service's allowed list?)", self.endpoint, self.node_id)
            else:
                self._throttle(logging.ERROR, "handshake", "handshake with service failed endpoint=%s event=%s "
                               "(CURVE on one side only, or wrong server key?)", self.endpoint,
                               zmq.Event(kind).name)

    def _drain_replies(self) -> None:
        while True:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                if len(frames) != 1:
                    raise InputError(None, None, f"expected one frame, got {len(frames)}")
                reply = decode_message(frames[0])
            except InputError as exc:
                self._throttle(logging.ERROR, "reply", "unreadable reply from service dropped reason=%s", exc)
                continue
            if isinstance(reply, Ack):
                self._on_ack(reply)
            elif isinstance(reply, ErrorReply):
                self._count("n_service_errors")
                self._throttle(logging.ERROR, "service-error", "service refused a message reason=%s", reply.reason)
            else:
                self._throttle(logging.ERROR, "reply", "unexpected reply from service type=%s", type(reply).__name__)

    def _on_ack(self, ack: Ack) -> None:
        lane = next((lane for lane in self._lanes if lane.stream_id == ack.stream_id), None)
        if lane is None:
            log.debug("ack for another outbox stream ignored stream=%s", ack.stream_id)
            return
        rejected = {r.seq: r.reason for r in ack.rejected}
        stored = [s for s in ack.seqs if s not in rejected]
        try:
            n_acked = lane.forget(stored)
            n_rejected = lane.forget(rejected, rejected=True)
        except OutboxError as exc:  # keep them: the next resend brings the ack again
            self._throttle(logging.ERROR, "forget", "cannot record an ack in the outbox error=%s", exc)
            return
        self._count(f"n_{lane.counter}acked", n_acked)
        if n_rejected:
            self._count(f"n_{lane.counter}rejected", n_rejected)
            first = ack.rejected[0]
            log.error("service refused %s for good n=%d first_seq=%d reason=%s",
                      lane.what, n_rejected, first.seq, first.reason)
        for seq in (*stored, *rejected):
            key = lane.batch_of.pop(seq, None)
            if key is None:
                continue
            batch = lane.in_flight[key]
            batch.items.pop(seq, None)
            if not batch.items:
                del lane.in_flight[key]

    def _send(self, lane: _Lane, items_json: list[str]) -> bool:
        payload = lane.encode(self.node_id, lane.stream_id, items_json)
        try:
            self._socket.send(payload, zmq.NOBLOCK)
        except zmq.Again:  # link just lost, or its queue is full: retry next round, without spinning
            self._blocked = True
            return False
        self._blocked = False
        return True

    def _timeout_s(self, n_attempts: int) -> float:
        return min(self.ack_timeout_s * 2.0 ** max(0, n_attempts - 1), self.max_ack_timeout_s)

    def _resend_due(self, lane: _Lane, now: float) -> None:
        for batch in lane.in_flight.values():
            if batch.deadline_s > now:
                continue
            if not self._send(lane, list(batch.items.values())):
                return
            batch.n_attempts += 1
            batch.deadline_s = now + self._timeout_s(batch.n_attempts)
            self._count(f"n_{lane.counter}resent", len(batch.items))

    def _send_new(self, lane: _Lane, now: float) -> None:
        while len(lane.in_flight) < lane.max_in_flight and lane.last_seq() > lane.cursor:
            rows = lane.read(lane.batch_size, lane.cursor)
            if not rows:
                lane.cursor = lane.last_seq()
                return
            n_bytes = len(rows[0][1])
            n_rows = 1
            while n_rows < len(rows) and n_bytes + len(rows[n_rows][1]) + 1 <= _MAX_BATCH_BYTES:
                n_bytes += len(rows[n_rows][1]) + 1
                n_rows += 1
            rows = rows[:n_rows]
            if not self._send(lane, [payload for _, payload in rows]):
                return
            seqs = [seq for seq, _ in rows]
            key = seqs[0]
            lane.in_flight[key] = _Batch(dict(rows), now + self._timeout_s(1))
            for s in seqs:
                lane.batch_of[s] = key
            lane.cursor = seqs[-1]
            self._count(f"n_{lane.counter}sent", len(seqs))

    def _send_heartbeat(self) -> None:
        with self._heartbeat_lock:
            heartbeat = self._heartbeat
        if heartbeat is None:
            return
        payload = encode_message(HeartbeatMessage(self.node_id, heartbeat, self.sender_status()))
        try:
            self._socket.send(payload, zmq.NOBLOCK)
        except zmq.Again:
            return
        with self._heartbeat_lock:
            if self._heartbeat is heartbeat:
                self._heartbeat = None
        self._count("n_heartbeats_sent")
