"""The envelope of the messages between sensor nodes and the service (ZeroMQ, node -> service).

Pure: bytes in, typed messages out, and back. No sockets, no clock, no I/O, so the
node's sender (``sdr``) and the service's ingest (``service``) share one definition.

Every message is one UTF-8 JSON object (one ZeroMQ frame) with a version and a type::

    node -> service
      {"v": 1, "type": "detections", "node_id": "A1-S1", "stream_id": "<32 hex>",
       "items": [<Detection wire form with "seq">, ...]}
      {"v": 1, "type": "heartbeat", "node_id": "A1-S1",
       "heartbeat": <Heartbeat wire form>, "sender": {"n_pending": 0, ...}}
      {"v": 1, "type": "snippets", "node_id": "A1-S1", "stream_id": "<32 hex>",
       "items": [<IQSnippet wire form with "seq">, ...]}
    service -> node
      {"v": 1, "type": "ack", "stream_id": "...", "seqs": [[first, last], ...],
       "rejected": [{"seq": 7, "reason": "..."}]}
      {"v": 1, "type": "error", "reason": "..."}

Why these fields:

* ``seq`` numbers a detection within its node's outbox: 1, 2, 3 ... never reused, even
  across restarts. The service stores each (node, stream, seq) once and acknowledges it
  only once it is durably stored, so a resend after a lost ack is harmless.
* ``stream_id`` is a random id created with the node's outbox file. If that file is lost
  (SD card replaced) the new outbox counts from 1 again; a new stream id keeps those new
  detections from being taken for duplicates of the old ones.
* An ack lists the seqs the service now holds (stored now or earlier) as ``[first, last]``
  ranges, and the items it will never accept with the reason (a detection with a bad
  field cannot get better by being resent, so the node may forget it).
* ``snippets`` carry IQ snippets (:mod:`dsp.snippets`: a burst's cu8 samples in base64)
  exactly as ``detections`` carry detections: numbered in their own sequence, with their
  own stream id (the outbox keeps a second queue), acknowledged with the same ``ack``
  after the service stored them. Their seqs never mix with the detections', so a gap in
  either sequence still means something was lost. A service that does not know this
  type answers ``error`` and the node keeps its snippets (bounded) for a newer service.
* An ``error`` reply tells a node why a whole message was refused (malformed, or a node id
  that is not the one its key was registered under); the node keeps its detections.

Decoding validates everything and raises :class:`~dsp.errors.InputError` naming the
offending field, so a receiver can log a reason and drop the message instead of crashing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass, field, fields
from typing import Any

from dsp.errors import InputError
from dsp.records import INT64_MAX, Detection, Heartbeat
from dsp.snippets import IQSnippet

ENVELOPE_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20  # 1 MiB: a full batch is ~300 kB; anything larger is refused unread
MAX_BATCH_ITEMS = 1000
MAX_DETECTION_BYTES = 1000  # one detection's JSON (~250 bytes usually): a full batch fits a message
MAX_SNIPPET_BATCH_ITEMS = 64  # and at most MAX_MESSAGE_BYTES in all: a full snippet is ~350 kB
MAX_ACK_SEQS = 100_000  # an ack cannot make a node loop over more seqs than this
MAX_REASON_CHARS = 300

_NODE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_STREAM_ID_RE = re.compile(r"[0-9a-f]{32}")


def check_node_id(node_id: Any, field: str = "node_id") -> str:
    """A node id: 1-64 characters of ``A-Z a-z 0-9 . _ -``, not starting with a punctuation mark.

    The same rule names key files (``<node_id>.key``), so it excludes path separators.
    """
    if not isinstance(node_id, str) or not _NODE_ID_RE.fullmatch(node_id):
        raise InputError(None, field, f"must be 1-64 characters of A-Z a-z 0-9 . _ - (got {node_id!r:.80})")
    return node_id


def check_stream_id(stream_id: Any, field: str = "stream_id") -> str:
    if not isinstance(stream_id, str) or not _STREAM_ID_RE.fullmatch(stream_id):
        raise InputError(None, field, f"must be 32 lowercase hex digits (got {stream_id!r:.80})")
    return stream_id


def _check_seq(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INT64_MAX:
        raise InputError(None, field, f"must be a positive 64-bit integer (got {value!r:.40})")
    return value


def _check_count(obj: dict[str, Any], name: str, field: str) -> int:
    value = obj.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(None, f"{field}.{name}", "must be a non-negative integer")
    return value


def _short(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "..."


@dataclass(frozen=True, slots=True)
class CurveKeyPair:
    """A Z85-encoded CURVE key pair (40 ASCII bytes each, RFC 32); the secret never shows in repr."""

    public: bytes
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class RejectedItem:
    """A detection the service will never accept, and why (the node may forget it)."""

    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class DetectionBatch:
    """Detections from one node's outbox, each with its ``seq`` set.

    ``rejected`` is filled only by :func:`decode_message`: items whose envelope was sound
    (they carry a valid seq) but whose detection fields were not.
    """

    node_id: str
    stream_id: str
    detections: tuple[Detection, ...]
    rejected: tuple[RejectedItem, ...] = ()

    @property
    def seqs(self) -> tuple[int, ...]:
        return tuple(d.seq for d in self.detections if d.seq is not None)


@dataclass(frozen=True, slots=True)
class SnippetBatch:
    """IQ snippets from one node's outbox (its snippet stream), each with its ``seq`` set.

    ``rejected``, as for :class:`DetectionBatch`: items with a sound seq but bad fields.
    """

    node_id: str
    stream_id: str
    snippets: tuple[IQSnippet, ...]
    rejected: tuple[RejectedItem, ...] = ()

    @property
    def seqs(self) -> tuple[int, ...]:
        return tuple(s.seq for s in self.snippets if s.seq is not None)


@dataclass(frozen=True, slots=True)
class SenderStatus:
    """The node's delivery health, carried with every heartbeat (not part of the Heartbeat record)."""

    n_pending: int = 0  # detections in the outbox awaiting an ack
    n_overflow_dropped: int = 0  # detections discarded because the outbox was at its limit
    n_write_failures: int = 0  # detections lost because the outbox could not be written (disk full)
    n_rejected: int = 0  # detections the service refused for good (bad field)
    n_invalid: int = 0  # detections refused at submit (non-finite power, ...)

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, obj: Any) -> SenderStatus:
        if not isinstance(obj, dict):
            raise InputError(None, "sender", "must be an object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise InputError(None, f"sender.{unknown[0]}", "unknown field")
        return cls(**{name: _check_count(obj, name, "sender") for name in known})


@dataclass(frozen=True, slots=True)
class HeartbeatMessage:
    node_id: str
    heartbeat: Heartbeat
    sender: SenderStatus = SenderStatus()


@dataclass(frozen=True, slots=True)
class Ack:
    """What the service durably holds (``seqs``) and what it refuses for good (``rejected``)."""

    stream_id: str
    seqs: tuple[int, ...]
    rejected: tuple[RejectedItem, ...] = ()


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A whole message was refused; the node keeps (and later resends) what it carried."""

    reason: str


Message = DetectionBatch | SnippetBatch | HeartbeatMessage | Ack | ErrorReply


def seq_ranges(seqs: Iterable[int]) -> list[list[int]]:
    """Sorted, merged ``[first, last]`` ranges covering ``seqs`` (duplicates ignored)."""
    out: list[list[int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def expand_ranges(ranges: Any, field: str = "seqs", limit: int = MAX_ACK_SEQS) -> tuple[int, ...]:
    """The seqs of ``[first, last]`` ranges, validated (ordered, positive, at most ``limit``)."""
    if not isinstance(ranges, list):
        raise InputError(None, field, "must be a list of [first, last] ranges")
    out: list[int] = []
    for i, pair in enumerate(ranges):
        if not isinstance(pair, list) or len(pair) != 2:
            raise InputError(None, f"{field}[{i}]", "must be [first, last]")
        first = _check_seq(pair[0], f"{field}[{i}]")
        last = _check_seq(pair[1], f"{field}[{i}]")
        if last < first:
            raise InputError(None, f"{field}[{i}]", "last is before first")
        if len(out) + (last - first + 1) > limit:
            raise InputError(None, field, f"covers more than {limit} seqs")
        out.extend(range(first, last + 1))
    return tuple(out)


def _rejected_to_wire(items: Sequence[RejectedItem]) -> list[dict[str, Any]]:
    return [{"seq": r.seq, "reason": _short(r.reason)} for r in items]


def _rejected_from_wire(raw: Any) -> tuple[RejectedItem, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_ACK_SEQS:
        raise InputError(None, "rejected", "must be a list")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("reason"), str):
            raise InputError(None, f"rejected[{i}]", "must be {seq, reason}")
        out.append(RejectedItem(_check_seq(item.get("seq"), f"rejected[{i}].seq"), _short(item["reason"])))
    return tuple(out)


def encode_message(message: Message) -> bytes:
    """One message as compact UTF-8 JSON (one ZeroMQ frame). Non-finite numbers are refused."""
    body: dict[str, Any] = {"v": ENVELOPE_VERSION}
    if isinstance(message, DetectionBatch):
        items = []
        for d in message.detections:
            if d.seq is None:
                raise ValueError("every detection in a batch needs its seq")
            items.append(d.to_dict())
        body |= {"type": "detections", "node_id": message.node_id, "stream_id": message.stream_id, "items": items}
    elif isinstance(message, SnippetBatch):
        if any(s.seq is None for s in message.snippets):
            raise ValueError("every snippet in a batch needs its seq")
        body |= {"type": "snippets", "node_id": message.node_id, "stream_id": message.stream_id,
                 "items": [s.to_dict() for s in message.snippets]}
    elif isinstance(message, HeartbeatMessage):
        body |= {"type": "heartbeat", "node_id": message.node_id,
                 "heartbeat": message.heartbeat.to_dict(), "sender": message.sender.to_dict()}
    elif isinstance(message, Ack):
        body |= {"type": "ack", "stream_id": message.stream_id, "seqs": seq_ranges(message.seqs)}
        if message.rejected:
            body["rejected"] = _rejected_to_wire(message.rejected)
    elif isinstance(message, ErrorReply):
        body |= {"type": "error", "reason": _short(message.reason)}
    else:
        raise TypeError(f"not a message: {type(message).__name__}")
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")


def encode_detection_items(node_id: str, stream_id: str, items_json: Sequence[str]) -> bytes:
    """A ``detections`` message from detections already in wire form (``Detection.to_json()``, seq set).

    The node's outbox stores each detection's JSON once, validated when it was submitted;
    splicing it into the envelope spares parsing and re-encoding every detection on every
    (re)send. Same bytes on the wire as :func:`encode_message` of the parsed batch.
    """
    check_node_id(node_id)
    check_stream_id(stream_id)
    if not items_json or len(items_json) > MAX_BATCH_ITEMS:
        raise ValueError(f"a batch holds 1..{MAX_BATCH_ITEMS} detections, got {len(items_json)}")
    head = json.dumps({"v": ENVELOPE_VERSION, "type": "detections", "node_id": node_id, "stream_id": stream_id},
                      separators=(",", ":"))
    return (head[:-1] + ',"items":[' + ",".join(items_json) + "]}").encode("utf-8")


def encode_snippet_items(node_id: str, stream_id: str, items_json: Sequence[str]) -> bytes:
    """A ``snippets`` message from snippets already in wire form (``IQSnippet.to_json()``, seq set).

    As :func:`encode_detection_items`: the outbox stores each snippet's JSON once. The
    caller keeps the message under :data:`MAX_MESSAGE_BYTES` (a ValueError says when not).
    """
    check_node_id(node_id)
    check_stream_id(stream_id)
    if not items_json or len(items_json) > MAX_SNIPPET_BATCH_ITEMS:
        raise ValueError(f"a batch holds 1..{MAX_SNIPPET_BATCH_ITEMS} snippets, got {len(items_json)}")
    head = json.dumps({"v": ENVELOPE_VERSION, "type": "snippets", "node_id": node_id, "stream_id": stream_id},
                      separators=(",", ":"))
    data = (head[:-1] + ',"items":[' + ",".join(items_json) + "]}").encode("utf-8")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"{len(items_json)} snippets make a {len(data)}-byte message, over {MAX_MESSAGE_BYTES}")
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _fields(obj: dict[str, Any], required: Set[str], optional: Set[str] = frozenset()) -> None:
    missing = sorted(set(required) - set(obj))
    if missing:
        raise InputError(None, missing[0], "missing")
    unknown = sorted(set(obj) - set(required) - set(optional) - {"v", "type"})
    if unknown:
        raise InputError(None, unknown[0], "unknown field")


def _decode_items(obj: dict[str, Any], parse: Any, max_items: int, what: str) -> tuple[str, str, list[Any],
                                                                                    list[RejectedItem]]:
    """The envelope of a batch message (node, stream, items) and its items parsed one by one:
    a bad item is refused on its own, a bad envelope or seq makes the whole message malformed."""
    _fields(obj, {"node_id", "stream_id", "items"})
    node_id = check_node_id(obj["node_id"])
    stream_id = check_stream_id(obj["stream_id"])
    items = obj["items"]
    if not isinstance(items, list) or not items:
        raise InputError(None, "items", "must be a non-empty list")
    if len(items) > max_items:
        raise InputError(None, "items", f"holds {len(items)} {what}, at most {max_items} allowed")
    good: list[Any] = []
    bad: list[RejectedItem] = []
    seen: set[int] = set()
    for i, item in enumerate(items):
        # The seq is the envelope's business: without a usable one the item cannot be
        # acknowledged or refused individually, so the whole message is malformed.
        if not isinstance(item, dict):
            raise InputError(None, f"items[{i}]", "must be an object")
        seq = _check_seq(item.get("seq"), f"items[{i}].seq")
        if seq in seen:
            raise InputError(None, f"items[{i}].seq", f"seq {seq} appears twice")
        seen.add(seq)
        try:
            good.append(parse(item))
        except InputError as exc:
            bad.append(RejectedItem(seq, _short(str(exc))))
    return node_id, stream_id, good, bad


def _decode_batch(obj: dict[str, Any]) -> DetectionBatch:
    node_id, stream_id, good, bad = _decode_items(obj, Detection.from_dict, MAX_BATCH_ITEMS, "detections")
    return DetectionBatch(node_id, stream_id, tuple(good), tuple(bad))


def _decode_snippets(obj: dict[str, Any]) -> SnippetBatch:
    node_id, stream_id, good, bad = _decode_items(obj, IQSnippet.from_dict, MAX_SNIPPET_BATCH_ITEMS, "snippets")
    return SnippetBatch(node_id, stream_id, tuple(good), tuple(bad))


def _decode_heartbeat(obj: dict[str, Any]) -> HeartbeatMessage:
    _fields(obj, {"node_id", "heartbeat"}, {"sender"})
    node_id = check_node_id(obj["node_id"])
    try:
        heartbeat = Heartbeat.from_dict(obj["heartbeat"])
    except InputError as exc:
        raise InputError(None, f"heartbeat.{exc.field}" if exc.field else "heartbeat", exc.problem) from None
    sender = SenderStatus.from_dict(obj.get("sender") or {})
    return HeartbeatMessage(node_id, heartbeat, sender)


def _decode_ack(obj: dict[str, Any]) -> Ack:
    _fields(obj, {"stream_id", "seqs"}, {"rejected"})
    return Ack(check_stream_id(obj["stream_id"]), expand_ranges(obj["seqs"]), _rejected_from_wire(obj.get("rejected")))


def _decode_error(obj: dict[str, Any]) -> ErrorReply:
    _fields(obj, {"reason"})
    if not isinstance(obj["reason"], str):
        raise InputError(None, "reason", "must be a string")
    return ErrorReply(_short(obj["reason"]))


_DECODERS: dict[str, Callable[[dict[str, Any]], Message]] = {"detections": _decode_batch, "snippets": _decode_snippets, "heartbeat": _decode_heartbeat, "ack": _decode_ack, "error": _decode_error}


def decode_message(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Parse and validate one message; raises InputError naming what is wrong.

    Item-level problems in a detection or snippet batch are not errors: those items come
    back in ``DetectionBatch.rejected`` (``SnippetBatch.rejected``) so the rest of the
    batch can still be stored.
    """
    if len(data) > max_bytes:
        raise InputError(None, None, f"message of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    try:
        obj = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(None, None, f"not JSON ({str(exc)[:80]})") from None
    except RecursionError:
        raise InputError(None, None, "not JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise InputError(None, None, f"message must be a JSON object, got {type(obj).__name__}")
    version = obj.get("v")
    if version != ENVELOPE_VERSION or isinstance(version, bool):
        raise InputError(None, "v", f"unsupported envelope version {version!r:.20} (this build speaks {ENVELOPE_VERSION})")
    kind = obj.get("type")
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise InputError(None, "type", f"unknown message type {kind!r:.40}")
    return decoder(obj)
