"""The node's durable outbox: every detection waits in a SQLite file until the service acks it.

A detection is numbered (``seq``) and written in one transaction; the service
acknowledges a seq only once it has stored it, and only then is the row deleted. A
crash, a reboot or a service down for hours therefore loses nothing, and a resend is
harmless because the service stores each (node, stream, seq) once.

Durability choices:

* WAL journal: readers (the sender thread) never block the writer (the DSP thread) and
  a commit is one sequential append.
* ``synchronous=FULL``: every commit is fsynced before :meth:`Outbox.append` returns.
  ``NORMAL`` would survive a process crash but may roll back the last commits on power
  loss, and a rolled-back ``next_seq`` would hand out seqs the service has already
  stored: those new detections would be dropped as duplicates. Nodes commit once per
  DSP block (tens per second at most), so the fsync cost is small.
* Seqs come from ``meta.next_seq`` (not SQLite's rowid, which reuses the largest id once
  its row is deleted), so they never repeat even when the outbox is empty.
* ``stream_id`` (random, made with the file) tells the service that a new outbox file
  counting from 1 again is a new stream, not a replay of the old one.

Bounded disk use: at most ``max_pending`` detections wait (default 500,000, ~150 MB).
When full, ``when_full="drop_oldest"`` (default) discards the oldest waiting detections:
after a long outage staff need what is happening now, and the old ones are stale for
alerts. ``"drop_newest"`` keeps the history instead. Either way every discarded detection
is counted (``n_overflow_dropped``, persistent, sent with each heartbeat) and logged,
and the seqs it leaves unused show the service exactly where the gap is.
``max_bytes`` caps the database file itself (SQLite ``max_page_count``; the WAL adds up
to ~4 MB): reaching it, or the disk filling up, raises :class:`OutboxFullError` and
leaves the outbox as it was (the transaction rolls back, no seq is consumed).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from dsp.errors import InputError
from dsp.records import Detection
from dsp.wire import check_node_id

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_MAX_PENDING = 500_000
WhenFull = Literal["drop_oldest", "drop_newest"]
_SQL_CHUNK = 500  # parameters per statement, well under SQLite's limit


class OutboxError(RuntimeError):
    """The outbox file could not be written (I/O error, corrupt file)."""


class OutboxFullError(OutboxError):
    """The disk, or the outbox's ``max_bytes``, is full (SQLITE_FULL); nothing was written."""


@dataclass(frozen=True, slots=True)
class OutboxStats:
    n_pending: int
    next_seq: int
    n_acked: int  # lifetime of this outbox file
    n_overflow_dropped: int
    n_rejected: int
    oldest_pending_s: float | None  # when the oldest waiting detection was submitted (UTC)


class Outbox:
    """A SQLite-backed queue of numbered detections; thread-safe (one connection, one lock)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        node_id: str,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        when_full: WhenFull = "drop_oldest",
        max_bytes: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.node_id = check_node_id(node_id)
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        if when_full not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"when_full must be 'drop_oldest' or 'drop_newest', got {when_full!r}")
        self.max_pending = max_pending
        self.when_full = when_full
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        except sqlite3.Error as exc:
            raise InputError(str(self.path), None, f"cannot open outbox: {exc}") from None
        try:
            self._setup(max_bytes)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise InputError(str(self.path), None, f"not a usable outbox database: {exc}") from None
        except InputError:
            self._db.close()
            raise

    def _setup(self, max_bytes: int | None) -> None:
        db = self._db
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise InputError(str(self.path), None, f"cannot use WAL journal (got {mode}); is it on a network file system?")
        db.execute("PRAGMA synchronous=FULL")
        if max_bytes is not None:
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
            db.execute(f"PRAGMA max_page_count={max(int(max_bytes) // int(page_size), 8)}")
        with self._transaction():
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS pending ("
                " seq INTEGER PRIMARY KEY, submitted_s REAL NOT NULL, payload TEXT NOT NULL)"
            )
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                meta = {"schema": str(SCHEMA_VERSION), "node_id": self.node_id, "stream_id": uuid.uuid4().hex,
                        "next_seq": "1", "n_acked": "0", "n_overflow_dropped": "0", "n_rejected": "0"}
                db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
        if meta.get("schema") != str(SCHEMA_VERSION):
            raise InputError(str(self.path), "schema", f"outbox schema {meta.get('schema')!r}, this build uses {SCHEMA_VERSION}")
        if meta["node_id"] != self.node_id:
            raise InputError(str(self.path), "node_id",
                             f"outbox belongs to node {meta['node_id']!r}, not {self.node_id!r}: one outbox per node")
        self.stream_id: str = meta["stream_id"]
        self._next_seq = int(meta["next_seq"])
        self._n_acked = int(meta["n_acked"])
        self._n_overflow = int(meta["n_overflow_dropped"])
        self._n_rejected = int(meta["n_rejected"])
        self._n_pending = int(db.execute("SELECT COUNT(*) FROM pending").fetchone()[0])

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, kind: object, exc: object, tb: object) -> None:
            if kind is None:
                self.db.execute("COMMIT")
            elif self.db.in_transaction:
                self.db.execute("ROLLBACK")

    def _transaction(self) -> Outbox._Tx:
        return Outbox._Tx(self._db)

    def _raise_write_error(self, exc: sqlite3.Error, what: str) -> None:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            raise OutboxFullError(f"{self.path}: outbox full (disk or max_bytes) while {what}") from exc
        raise OutboxError(f"{self.path}: cannot write outbox while {what}: {exc}") from exc

    # -- node side: add -------------------------------------------------------------------

    def append(self, detections: Sequence[Detection]) -> list[int]:
        """Number and durably store ``detections``; returns their seqs (already committed).

        Each detection is stored with its ``seq`` field set to the outbox's number (any seq
        it carried is replaced). Raises :class:`OutboxFullError` if the disk is full.
        """
        if not detections:
            return []
        now = time.time()
        with self._lock:
            first = self._next_seq
            rows = [(first + i, now, json.dumps(replace(d, seq=first + i).to_dict(), separators=(",", ":"),
                                                  allow_nan=False))
                    for i, d in enumerate(detections)]
            next_seq = first + len(rows)
            n_pending = self._n_pending + len(rows)
            excess = max(0, n_pending - self.max_pending)
            try:
                with self._transaction() as db:
                    db.executemany("INSERT INTO pending (seq, submitted_s, payload) VALUES (?, ?, ?)", rows)
                    db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(next_seq),))
                    if excess:
                        order = "ASC" if self.when_full == "drop_oldest" else "DESC"
                        db.execute(f"DELETE FROM pending WHERE seq IN (SELECT seq FROM pending ORDER BY seq {order} LIMIT ?)",
                                   (excess,))
                        db.execute("UPDATE meta SET value = ? WHERE key = 'n_overflow_dropped'",
                                   (str(self._n_overflow + excess),))
            except sqlite3.Error as exc:
                self._raise_write_error(exc, f"adding {len(rows)} detections")
            self._next_seq = next_seq
            self._n_pending = n_pending - excess
            if excess:
                self._n_overflow += excess
                log.error("outbox full, discarded detections n=%d policy=%s total_discarded=%d path=%s",
                          excess, self.when_full, self._n_overflow, self.path)
        return [r[0] for r in rows]

    # -- sender side: read and forget -----------------------------------------------------

    def pending(self, limit: int, after_seq: int = 0) -> list[Detection]:
        """Up to ``limit`` waiting detections with ``seq > after_seq``, oldest first (parsed)."""
        out: list[Detection] = []
        unreadable: list[int] = []
        for seq, payload in self.pending_json(limit, after_seq):
            try:
                out.append(Detection.from_json(payload))
            except InputError as exc:
                log.error("unreadable outbox row dropped seq=%d reason=%s path=%s", seq, exc, self.path)
                unreadable.append(seq)
        if unreadable:
            self.forget(unreadable, rejected=True)
        return out

    def pending_json(self, limit: int, after_seq: int = 0) -> list[tuple[int, str]]:
        """``(seq, wire-form JSON)`` of up to ``limit`` waiting detections after ``after_seq``, oldest first.

        What the sender splices into messages as is; a row the service cannot read comes
        back as a rejected item and is forgotten then.
        """
        with self._lock:
            return self._db.execute(
                "SELECT seq, payload FROM pending WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
            ).fetchall()

    def forget(self, seqs: Iterable[int], *, rejected: bool = False) -> int:
        """Delete ``seqs`` (acked by the service, or refused for good); returns how many were waiting."""
        wanted = sorted(set(seqs))
        if not wanted:
            return 0
        counter = "n_rejected" if rejected else "n_acked"
        with self._lock:
            removed = 0
            try:
                with self._transaction() as db:
                    for i in range(0, len(wanted), _SQL_CHUNK):
                        chunk = wanted[i : i + _SQL_CHUNK]
                        cur = db.execute(f"DELETE FROM pending WHERE seq IN ({','.join('?' * len(chunk))})", chunk)
                        removed += cur.rowcount
                    total = (self._n_rejected if rejected else self._n_acked) + removed
                    if removed:
                        db.execute("UPDATE meta SET value = ? WHERE key = ?", (str(total), counter))
            except sqlite3.Error as exc:
                self._raise_write_error(exc, f"forgetting {len(wanted)} acknowledged detections")
            self._n_pending -= removed
            if rejected:
                self._n_rejected += removed
            else:
                self._n_acked += removed
        return removed

    # -- state ----------------------------------------------------------------------------

    @property
    def n_pending(self) -> int:
        return self._n_pending

    @property
    def last_seq(self) -> int:
        """The seq of the last detection ever added (0 for a new outbox)."""
        return self._next_seq - 1

    def stats(self) -> OutboxStats:
        with self._lock:
            row = self._db.execute("SELECT submitted_s FROM pending ORDER BY seq LIMIT 1").fetchone()
            return OutboxStats(self._n_pending, self._next_seq, self._n_acked, self._n_overflow,
                               self._n_rejected, None if row is None else float(row[0]))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
