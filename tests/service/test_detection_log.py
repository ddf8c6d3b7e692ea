"""The ingest's SQLite detection log: one row per (node, stream, seq), durable, latest heartbeat kept."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from dsp.records import Detection, Heartbeat
from dsp.wire import SenderStatus
from service.detection_log import DetectionLog

STREAM_A = "a" * 32
STREAM_B = "b" * 32


def dets(seqs: range, sensor: str = "A1-S1") -> list[Detection]:
    return [Detection(sensor, 1.7e9 + s, 546e-6, 902.4e6, 200e3, -33.25, 15.5, "lte", seq=s, rssi_dbm=None,
                      flags=("edge",)) for s in seqs]


def test_storing_twice_keeps_one_copy_and_counts_only_new_rows(tmp_path: Path) -> None:
    with DetectionLog(tmp_path / "log.sqlite") as log:
        assert log.store_detections("A1-S1", STREAM_A, dets(range(1, 11))) == 10
        assert log.store_detections("A1-S1", STREAM_A, dets(range(5, 16))) == 5  # 5..10 already there
        assert log.store_detections("A1-S1", STREAM_B, dets(range(1, 4))) == 3  # a new outbox: new stream
        assert log.store_detections("A1-S2", STREAM_A, dets(range(1, 4), "A1-S2")) == 3  # other node
        assert log.count() == 21 and log.count("A1-S1") == 18


def test_rows_survive_reopening_and_read_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    sent = dets(range(1, 6))
    with DetectionLog(path) as log:
        log.store_detections("A1-S1", STREAM_A, sent)
    with DetectionLog(path) as log:
        stored = log.detections("A1-S1")
    assert [s.detection for s in stored] == sent
    assert {s.stream_id for s in stored} == {STREAM_A}
    other = sqlite3.connect(path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()


def test_a_detection_without_seq_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with DetectionLog(tmp_path / "log.sqlite") as log:
        with pytest.raises(ValueError, match="seq"):
            log.store_detections("A1-S1", STREAM_A, [*dets(range(1, 3)), replace(dets(range(3, 4))[0], seq=None)])
        assert log.count() == 0


def test_latest_heartbeat_per_node_is_kept(tmp_path: Path) -> None:
    with DetectionLog(tmp_path / "log.sqlite") as log:
        assert log.last_heartbeat("A1-S1") is None
        log.store_heartbeat("A1-S1", Heartbeat("A1-S1", 100.0, "running"), SenderStatus(n_pending=3))
        log.store_heartbeat("A1-S1", Heartbeat("A1-S1", 105.0, "retrying"), SenderStatus(n_overflow_dropped=2))
        got = log.last_heartbeat("A1-S1")
    assert got is not None
    assert (got.heartbeat.t_s, got.heartbeat.source_state, got.sender.n_overflow_dropped) == (105.0, "retrying", 2)
