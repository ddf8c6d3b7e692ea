"""The node <-> service envelope: round trips, and every malformed message refused with a reason."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsp.errors import InputError
from dsp.records import BandHealth, Detection, Heartbeat
from dsp.wire import (
    MAX_BATCH_ITEMS,
    Ack,
    DetectionBatch,
    ErrorReply,
    HeartbeatMessage,
    RejectedItem,
    SenderStatus,
    check_node_id,
    decode_message,
    encode_detection_items,
    encode_message,
    expand_ranges,
    seq_ranges,
)

STREAM = "0123456789abcdef0123456789abcdef"


def detection(seq: int, **over: object) -> Detection:
    fields = {"sensor_id": "A1-S1", "t_start_s": 1.7e9 + seq * 0.004615, "duration_s": 546e-6,
              "freq_hz": 902.4e6, "bandwidth_hz": 200e3, "power_dbfs": -31.5, "snr_db": 18.25,
              "tech": "gsm", "seq": seq, "gain_db": 30.0}
    fields.update(over)
    return Detection(**fields)  # type: ignore[arg-type]


def batch_json(items: list[object], **over: object) -> bytes:
    body = {"v": 1, "type": "detections", "node_id": "A1-S1", "stream_id": STREAM, "items": items}
    body.update(over)
    return json.dumps(body).encode()


def test_detection_batch_round_trips_exactly() -> None:
    batch = DetectionBatch("A1-S1", STREAM, tuple(detection(s) for s in (1, 2, 5)))
    decoded = decode_message(encode_message(batch))
    assert decoded == batch
    assert isinstance(decoded, DetectionBatch) and decoded.seqs == (1, 2, 5)


def test_spliced_items_give_the_same_bytes_as_encoding_the_batch() -> None:
    batch = DetectionBatch("A1-S1", STREAM, tuple(detection(s, channel="ARFCN 12", flags=("dc",)) for s in (3, 4)))
    spliced = encode_detection_items("A1-S1", STREAM, [d.to_json() for d in batch.detections])
    assert spliced == encode_message(batch)
    with pytest.raises(InputError):
        encode_detection_items("../x", STREAM, [batch.detections[0].to_json()])
    with pytest.raises(ValueError):
        encode_detection_items("A1-S1", STREAM, [])


def test_heartbeat_message_round_trips() -> None:
    hb = Heartbeat("A1-S1", 1.7e9, "running", n_dropped_samples=3,
                   bands=(BandHealth("B20", -52.5, 0.25, 1.2),))
    msg = HeartbeatMessage("A1-S1", hb, SenderStatus(n_pending=7, n_overflow_dropped=2, n_write_failures=1))
    assert decode_message(encode_message(msg)) == msg


def test_ack_and_error_round_trip_with_ranges() -> None:
    ack = Ack(STREAM, (1, 2, 3, 7, 9, 10), (RejectedItem(4, "detection: tech: bad"),))
    wire = json.loads(encode_message(ack))
    assert wire["seqs"] == [[1, 3], [7, 7], [9, 10]]  # compact: ranges, not every seq
    assert decode_message(encode_message(ack)) == ack
    assert decode_message(encode_message(ErrorReply("nope"))) == ErrorReply("nope")


@given(st.sets(st.integers(1, 10_000), max_size=300))
def test_seq_ranges_cover_exactly_the_seqs(seqs: set[int]) -> None:
    ranges = seq_ranges(seqs)
    assert expand_ranges(ranges) == tuple(sorted(seqs))
    # ranges are disjoint and not adjacent (merged as far as possible)
    assert all(b[0] > a[1] + 1 for a, b in itertools.pairwise(ranges))


def test_bad_detection_fields_are_rejected_per_item_not_per_message() -> None:
    good = detection(1).to_dict()
    bad_tech = detection(2).to_dict() | {"tech": "wifi"}
    no_power = {k: v for k, v in detection(3).to_dict().items() if k != "power_dbfs"}
    msg = decode_message(batch_json([good, bad_tech, no_power]))
    assert isinstance(msg, DetectionBatch)
    assert msg.seqs == (1,)
    assert [r.seq for r in msg.rejected] == [2, 3]
    assert "tech" in msg.rejected[0].reason and "power_dbfs" in msg.rejected[1].reason


@pytest.mark.parametrize(
    ("data", "field_or_text"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"v": 2, "type": "detections"}', "v"),
        (b'{"v": true, "type": "detections"}', "v"),
        (b'{"v": 1, "type": "launch"}', "type"),
        (b'{"v": 1, "type": "detections", "node_id": "A1-S1", "items": []}', "stream_id"),
        (batch_json([]), "items"),
        (batch_json([{"seq": 1}], node_id="../etc/passwd"), "node_id"),
        (batch_json([{"seq": 1}], stream_id="xyz"), "stream_id"),
        (batch_json([{"seq": 1}], extra=1), "extra"),
        (batch_json([detection(1).to_dict() | {"seq": 0}]), "items[0].seq"),
        (batch_json([detection(1).to_dict() | {"seq": "1"}]), "items[0].seq"),
        (batch_json([detection(1).to_dict(), detection(1).to_dict()]), "items[1].seq"),
        (batch_json(["a string"]), "items[0]"),
        (batch_json([detection(1).to_dict() | {"power_dbfs": float("nan")}]), "NaN"),
        (batch_json([detection(i + 1).to_dict() for i in range(MAX_BATCH_ITEMS + 1)]), "items"),
        (b'{"v": 1, "type": "heartbeat", "node_id": "A1-S1", "heartbeat": {"sensor_id": "A1-S1"}}', "heartbeat.t_s"),
        (b'{"v": 1, "type": "ack", "stream_id": "' + STREAM.encode() + b'", "seqs": [[5, 1]]}', "seqs[0]"),
        (b'{"v": 1, "type": "ack", "stream_id": "' + STREAM.encode() + b'", "seqs": [[1, 999999999]]}', "seqs"),
        (b"[" * 100_000, "JSON"),
    ],
)
def test_malformed_messages_raise_input_error_naming_the_problem(data: bytes, field_or_text: str) -> None:
    with pytest.raises(InputError) as info:
        decode_message(data)
    assert field_or_text in str(info.value)


def test_oversized_message_is_refused_before_parsing() -> None:
    with pytest.raises(InputError, match="exceeds"):
        decode_message(b" " * 101, max_bytes=100)


def test_encode_refuses_a_batch_item_without_seq_and_non_finite_numbers() -> None:
    with pytest.raises(ValueError, match="seq"):
        encode_message(DetectionBatch("A1-S1", STREAM, (replace(detection(1), seq=None),)))
    with pytest.raises(ValueError):
        encode_message(DetectionBatch("A1-S1", STREAM, (detection(1, power_dbfs=float("-inf")),)))


def test_node_ids_cannot_be_paths_or_empty() -> None:
    assert check_node_id("A1-S1") == "A1-S1"
    for bad in ("", "a/b", ".hidden", "x" * 65, "A1 S1", None):
        with pytest.raises(InputError):
            check_node_id(bad)
