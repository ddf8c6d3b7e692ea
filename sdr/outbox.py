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

IQ snippets (:mod:`dsp.snippets`) wait in a second queue of the same file, with the
same guarantees and their own numbering and stream id (``snippet_stream_id``): the
service acknowledges them the same way, and their seqs never mix with the detections'.
An outbox file made before snippets existed gains that queue when it is opened.

Bounded disk use: at most ``max_pending`` detections wait (default 500,000, ~150 MB).
When full, ``when_full="drop_oldest"`` (default) discards the oldest waiting detections:
after a long outage staff need what is happening now, and the old ones are stale for
alerts. ``"drop_newest"`` keeps the history instead. Either way every discarded detection
is counted (``n_overflow_dropped``, persistent, sent with each heartbeat) and logged,
and the seqs it leaves unused show the service exactly where the gap is. Snippets are
capped by ``max_snippets_pending`` (default 2,000, ~20 MB), oldest dropped first.
``max_bytes`` caps the database file itself (SQLite ``max_page_count``; the WAL adds up
to ~4 MB): reaching it, or the disk filling up, raises :class:`OutboxFullError` and
leaves the outbox as it was (the transaction rolls back, no seq is consumed), except
that detections come first: when a detection does not fit, the oldest waiting snippets
are discarded (counted) to make room before giving up.
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
from dsp.snippets import IQSnippet
from dsp.wire import check_node_id

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_MAX_PENDING = 500_000
DEFAULT_MAX_SNIPPETS_PENDING = 2_000
WhenFull = Literal["drop_oldest", "drop_newest"]
_SQL_CHUNK = 500  # parameters per statement, well under SQLite's limit
# A full disk must not stop acknowledgements: deleting acked rows and checkpointing the WAL
# need room too, and an outbox that filled its disk to the last byte could never free it
# (its whole content stuck in a WAL that cannot be copied back). So the WAL is kept small
# and appends stop while less than this is left on the file system (or a quarter of it).
_KEEP_FREE_BYTES = 1 << 20
_WAL_CHECKPOINT_PAGES = 64  # 256 kB of 4 kB pages (SQLite's default is 1000: 4 MB)


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
    oldest_pending_s: float | None  # when the oldest waiting detection (snippet) was submitted (UTC)


@dataclass
class _Queue:
    """One numbered queue of the file: its table, its meta keys, its counters."""

    what: str  # "detections" or "snippets", for messages
    table: str
    prefix: str  # of its meta keys
    max_pending: int
    when_full: WhenFull
    stream_id: str = ""
    next_seq: int = 1
    n_acked: int = 0
    n_overflow: int = 0
    n_rejected: int = 0
    n_pending: int = 0

    def key(self, name: str) -> str:
        return self.prefix + name


def _new_meta(prefix: str) -> dict[str, str]:
    return {f"{prefix}stream_id": uuid.uuid4().hex, f"{prefix}next_seq": "1", f"{prefix}n_acked": "0",
            f"{prefix}n_overflow_dropped": "0", f"{prefix}n_rejected": "0"}


class Outbox:
    """A SQLite-backed queue of numbered detections (and one of IQ snippets); thread-safe
    (one connection, one lock)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        node_id: str,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        when_full: WhenFull = "drop_oldest",
        max_bytes: int | None = None,
        max_snippets_pending: int = DEFAULT_MAX_SNIPPETS_PENDING,
    ) -> None:
        self.path = Path(path)
        self.node_id = check_node_id(node_id)
        if max_pending < 1 or max_snippets_pending < 1:
            raise ValueError("max_pending and max_snippets_pending must be at least 1")
        if when_full not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"when_full must be 'drop_oldest' or 'drop_newest', got {when_full!r}")
        self.max_pending = max_pending
        self.when_full = when_full
        self._detections = _Queue("detections", "pending", "", max_pending, when_full)
        self._snippets = _Queue("snippets", "snippets_pending", "snippet_", max_snippets_pending, "drop_oldest")
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
        db.execute(f"PRAGMA wal_autocheckpoint={_WAL_CHECKPOINT_PAGES}")
        if max_bytes is not None:
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
            db.execute(f"PRAGMA max_page_count={max(int(max_bytes) // int(page_size), 8)}")
        with self._transaction():
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            for q in (self._detections, self._snippets):
                db.execute(f"CREATE TABLE IF NOT EXISTS {q.table} ("
                           " seq INTEGER PRIMARY KEY, submitted_s REAL NOT NULL, payload TEXT NOT NULL)")
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                meta = {"schema": str(SCHEMA_VERSION), "node_id": self.node_id, **_new_meta("")}
                db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
            if meta.get("schema") == str(SCHEMA_VERSION) and meta.get("node_id") == self.node_id \
                    and self._snippets.key("stream_id") not in meta:  # a file from before snippets
                added = _new_meta(self._snippets.prefix)
                db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", added.items())
                meta.update(added)
        if meta.get("schema") != str(SCHEMA_VERSION):
            raise InputError(str(self.path), "schema", f"outbox schema {meta.get('schema')!r}, this build uses {SCHEMA_VERSION}")
        if meta["node_id"] != self.node_id:
            raise InputError(str(self.path), "node_id",
                             f"outbox belongs to node {meta['node_id']!r}, not {self.node_id!r}: one outbox per node")
        for q in (self._detections, self._snippets):
            q.stream_id = meta[q.key("stream_id")]
            q.next_seq = int(meta[q.key("next_seq")])
            q.n_acked = int(meta[q.key("n_acked")])
            q.n_overflow = int(meta[q.key("n_overflow_dropped")])
            q.n_rejected = int(meta[q.key("n_rejected")])
            q.n_pending = int(db.execute(f"SELECT COUNT(*) FROM {q.table}").fetchone()[0])
        self.stream_id: str = self._detections.stream_id
        self.snippet_stream_id: str = self._snippets.stream_id

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

    # -- the queues, generically (call with the lock held) -------------------------------------

    def _check_room(self, q: _Queue, n_bytes: int, n_rows: int) -> None:
        """Refuse an append that would leave the file system with less than it keeps free for acks."""
        try:
            fs = os.statvfs(self.path.parent)
        except OSError:
            return
        keep = min(_KEEP_FREE_BYTES, fs.f_blocks * fs.f_frsize // 4)
        free = fs.f_bavail * fs.f_frsize
        page_size, n_free_pages = (self._db.execute(f"PRAGMA {name}").fetchone()[0]
                                   for name in ("page_size", "freelist_count"))
        if free + int(page_size) * int(n_free_pages) - n_bytes < keep:
            raise OutboxFullError(f"{self.path}: outbox full (disk: {free} bytes free, {keep} kept for "
                                  f"acknowledgements) while adding {n_rows} {q.what}")

    def _append(self, q: _Queue, payloads: Sequence[str], now: float) -> list[int]:
        self._check_room(q, 2 * sum(map(len, payloads)) + 8192, len(payloads))  # rows, index and WAL copies
        first = q.next_seq
        rows = [(first + i, now, p) for i, p in enumerate(payloads)]
        next_seq = first + len(rows)
        n_pending = q.n_pending + len(rows)
        excess = max(0, n_pending - q.max_pending)
        try:
            with self._transaction() as db:
                db.executemany(f"INSERT INTO {q.table} (seq, submitted_s, payload) VALUES (?, ?, ?)", rows)
                db.execute("UPDATE meta SET value = ? WHERE key = ?", (str(next_seq), q.key("next_seq")))
                if excess:
                    order = "ASC" if q.when_full == "drop_oldest" else "DESC"
                    db.execute(f"DELETE FROM {q.table} WHERE seq IN "
                               f"(SELECT seq FROM {q.table} ORDER BY seq {order} LIMIT ?)", (excess,))
                    db.execute("UPDATE meta SET value = ? WHERE key = ?",
                               (str(q.n_overflow + excess), q.key("n_overflow_dropped")))
        except sqlite3.Error as exc:
            self._raise_write_error(exc, f"adding {len(rows)} {q.what}")
        q.next_seq = next_seq
        q.n_pending = n_pending - excess
        if excess:
            q.n_overflow += excess
            log.error("outbox full, discarded %s n=%d policy=%s total_discarded=%d path=%s",
                      q.what, excess, q.when_full, q.n_overflow, self.path)
        return [r[0] for r in rows]

    def _drop_oldest(self, q: _Queue, n: int, why: str) -> int:
        """Discard the ``n`` oldest waiting items of ``q`` (counted as overflow)."""
        try:
            with self._transaction() as db:
                cur = db.execute(f"DELETE FROM {q.table} WHERE seq IN "
                                 f"(SELECT seq FROM {q.table} ORDER BY seq ASC LIMIT ?)", (n,))
                removed = max(0, cur.rowcount)
                db.execute("UPDATE meta SET value = ? WHERE key = ?",
                           (str(q.n_overflow + removed), q.key("n_overflow_dropped")))
        except sqlite3.Error as exc:
            self._raise_write_error(exc, f"discarding {n} {q.what}")
        q.n_pending -= removed
        q.n_overflow += removed
        log.error("outbox discarded %s n=%d reason=%s total_discarded=%d path=%s", q.what, removed, why,
                  q.n_overflow, self.path)
        return removed

    def _pending_json(self, q: _Queue, limit: int, after_seq: int) -> list[tuple[int, str]]:
        with self._lock:
            return self._db.execute(
                f"SELECT seq, payload FROM {q.table} WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
            ).fetchall()

    def _forget(self, q: _Queue, seqs: Iterable[int], rejected: bool) -> int:
        wanted = sorted(set(seqs))
        if not wanted:
            return 0
        counter = q.key("n_rejected" if rejected else "n_acked")
        with self._lock:
            removed = 0
            try:
                with self._transaction() as db:
                    for i in range(0, len(wanted), _SQL_CHUNK):
                        chunk = wanted[i : i + _SQL_CHUNK]
                        cur = db.execute(f"DELETE FROM {q.table} WHERE seq IN ({','.join('?' * len(chunk))})", chunk)
                        removed += cur.rowcount
                    total = (q.n_rejected if rejected else q.n_acked) + removed
                    if removed:
                        db.execute("UPDATE meta SET value = ? WHERE key = ?", (str(total), counter))
            except sqlite3.Error as exc:
                self._raise_write_error(exc, f"forgetting {len(wanted)} acknowledged {q.what}")
            q.n_pending -= removed
            if rejected:
                q.n_rejected += removed
            else:
                q.n_acked += removed
        return removed

    def _stats(self, q: _Queue) -> OutboxStats:
        with self._lock:
            row = self._db.execute(f"SELECT submitted_s FROM {q.table} ORDER BY seq LIMIT 1").fetchone()
            return OutboxStats(q.n_pending, q.next_seq, q.n_acked, q.n_overflow, q.n_rejected,
                               None if row is None else float(row[0]))

    # -- node side: add -------------------------------------------------------------------

    def append(self, detections: Sequence[Detection]) -> list[int]:
        """Number and durably store ``detections``; returns their seqs (already committed).

        Each detection is stored with its ``seq`` field set to the outbox's number (any seq
        it carried is replaced). Raises :class:`OutboxFullError` if the disk is full (after
        discarding waiting snippets to make room, if there were any).
        """
        if not detections:
            return []
        now = time.time()
        q = self._detections
        with self._lock:
            first = q.next_seq
            payloads = [json.dumps(replace(d, seq=first + i).to_dict(), separators=(",", ":"), allow_nan=False)
                        for i, d in enumerate(detections)]
            while True:
                try:
                    return self._append(q, payloads, now)
                except OutboxFullError:
                    s = self._snippets
                    if s.n_pending == 0:
                        raise
                    self._drop_oldest(s, max(16, s.n_pending // 2), "room for detections")

    def append_snippets(self, snippets: Sequence[IQSnippet]) -> list[int]:
        """Number and durably store IQ snippets (their own seqs); raises :class:`OutboxFullError`."""
        if not snippets:
            return []
        now = time.time()
        q = self._snippets
        with self._lock:
            first = q.next_seq
            payloads = [replace(s, seq=first + i).to_json() for i, s in enumerate(snippets)]
            return self._append(q, payloads, now)

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
        return self._pending_json(self._detections, limit, after_seq)

    def pending_snippets(self, limit: int, after_seq: int = 0) -> list[IQSnippet]:
        """Up to ``limit`` waiting snippets with ``seq > after_seq``, oldest first (parsed)."""
        out: list[IQSnippet] = []
        for seq, payload in self.pending_snippets_json(limit, after_seq):
            try:
                out.append(IQSnippet.from_json(payload))
            except InputError as exc:
                log.error("unreadable outbox snippet dropped seq=%d reason=%s path=%s", seq, exc, self.path)
                self.forget_snippets([seq], rejected=True)
        return out

    def pending_snippets_json(self, limit: int, after_seq: int = 0) -> list[tuple[int, str]]:
        """``(seq, wire-form JSON)`` of up to ``limit`` waiting snippets after ``after_seq``, oldest first."""
        return self._pending_json(self._snippets, limit, after_seq)

    def forget(self, seqs: Iterable[int], *, rejected: bool = False) -> int:
        """Delete ``seqs`` (acked by the service, or refused for good); returns how many were waiting."""
        return self._forget(self._detections, seqs, rejected)

    def forget_snippets(self, seqs: Iterable[int], *, rejected: bool = False) -> int:
        """Delete snippet ``seqs`` (acked, or refused for good); returns how many were waiting."""
        return self._forget(self._snippets, seqs, rejected)

    # -- state ----------------------------------------------------------------------------

    @property
    def n_pending(self) -> int:
        return self._detections.n_pending

    @property
    def n_snippets_pending(self) -> int:
        return self._snippets.n_pending

    @property
    def last_seq(self) -> int:
        """The seq of the last detection ever added (0 for a new outbox)."""
        return self._detections.next_seq - 1

    @property
    def last_snippet_seq(self) -> int:
        """The seq of the last snippet ever added (0 when none was)."""
        return self._snippets.next_seq - 1

    def stats(self) -> OutboxStats:
        return self._stats(self._detections)

    def snippet_stats(self) -> OutboxStats:
        return self._stats(self._snippets)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
