"""A durable, idempotent log of received detections (SQLite, WAL): the ingest's first store.

Each detection is keyed by (node_id, stream_id, seq) with a UNIQUE constraint and
inserted with ``INSERT OR IGNORE``: storing a batch twice stores it once, which is what
makes "resend until acknowledged" deliver exactly once. ``synchronous=FULL`` makes a
commit durable before :meth:`DetectionLog.store_detections` returns, and the ingest acks
only after that, so an acknowledged detection survives a power cut of the service.

It implements :class:`service.ingest.DetectionStore`; the full storage layer (events,
correlation) can read from this table or implement the protocol itself.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dsp.errors import InputError
from dsp.records import Detection, Heartbeat
from dsp.wire import SenderStatus

_SCHEMA = """
CREATE TABLE IF NOT EXISTS detections (
    node_id TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sensor_id TEXT NOT NULL,
    t_start_s REAL NOT NULL,
    freq_hz REAL NOT NULL,
    tech TEXT NOT NULL,
    received_s REAL NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (node_id, stream_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS detections_by_time ON detections (t_start_s);
CREATE TABLE IF NOT EXISTS node_heartbeats (
    node_id TEXT PRIMARY KEY,
    received_s REAL NOT NULL,
    heartbeat TEXT NOT NULL,
    sender TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class StoredDetection:
    node_id: str
    stream_id: str
    received_s: float
    detection: Detection  # its ``seq`` is set


@dataclass(frozen=True, slots=True)
class NodeHeartbeat:
    node_id: str
    received_s: float
    heartbeat: Heartbeat
    sender: SenderStatus


class DetectionLog:
    """SQLite file of detections, unique per (node, stream, seq); safe to share between threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise InputError(str(self.path), None, f"cannot use WAL journal (got {mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise InputError(str(self.path), None, f"cannot open detection log: {exc}") from None

    def store_detections(self, node_id: str, stream_id: str, detections: Sequence[Detection]) -> int:
        """Durably store ``detections`` (each with its seq); returns how many were new."""
        now = time.time()
        rows = []
        for d in detections:
            if d.seq is None:
                raise ValueError("a stored detection needs its seq")
            rows.append((node_id, stream_id, d.seq, d.sensor_id, d.t_start_s, d.freq_hz, d.tech, now,
                         json.dumps(d.to_dict(), separators=(",", ":"))))
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO detections (node_id, stream_id, seq, sensor_id, t_start_s, freq_hz,"
                    " tech, received_s, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return self._db.total_changes - before

    def store_heartbeat(self, node_id: str, heartbeat: Heartbeat, sender: SenderStatus) -> None:
        """Keep the latest heartbeat of each node (health, not history)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO node_heartbeats (node_id, received_s, heartbeat, sender) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (node_id) DO UPDATE SET received_s = excluded.received_s,"
                " heartbeat = excluded.heartbeat, sender = excluded.sender",
                (node_id, time.time(), json.dumps(heartbeat.to_dict()), json.dumps(sender.to_dict())))

    def count(self, node_id: str | None = None) -> int:
        with self._lock:
            if node_id is None:
                return int(self._db.execute("SELECT COUNT(*) FROM detections").fetchone()[0])
            return int(self._db.execute("SELECT COUNT(*) FROM detections WHERE node_id = ?", (node_id,)).fetchone()[0])

    def detections(self, node_id: str | None = None) -> list[StoredDetection]:
        """Stored detections in (node, stream, seq) order."""
        query = "SELECT node_id, stream_id, received_s, payload FROM detections"
        args: tuple[str, ...] = ()
        if node_id is not None:
            query += " WHERE node_id = ?"
            args = (node_id,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY node_id, stream_id, seq", args).fetchall()
        return [StoredDetection(n, s, r, Detection.from_json(p)) for n, s, r, p in rows]

    def last_heartbeat(self, node_id: str) -> NodeHeartbeat | None:
        with self._lock:
            row = self._db.execute("SELECT received_s, heartbeat, sender FROM node_heartbeats WHERE node_id = ?",
                                   (node_id,)).fetchone()
        if row is None:
            return None
        return NodeHeartbeat(node_id, float(row[0]), Heartbeat.from_dict(json.loads(row[1])),
                             SenderStatus.from_dict(json.loads(row[2])))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> DetectionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
