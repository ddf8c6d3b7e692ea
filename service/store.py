"""The service's storage: detections, sensor health, events, users, sessions, the audit log.

One code path for SQLite (the default: a file, WAL journal) and PostgreSQL (a URL), through
SQLAlchemy 2 Core. Why these choices:

* **Nothing acknowledged is ever lost.** :meth:`Store.store_detections` returns only after
  its transaction committed; SQLite runs with ``synchronous=FULL`` so that commit is on
  disk, and the ingest acknowledges only after the call returned (service.ingest).
  Detections are unique per (node_id, stream_id, seq) and inserted with
  ``ON CONFLICT DO NOTHING``, so a resend after a lost ack stores nothing twice.
* **One writer.** SQLite takes one writer at a time anyway; the store serializes its own
  write transactions with a lock so threads (ingest, event worker, API requests) never
  wait on ``SQLITE_BUSY``. WAL lets readers run while a write commits.
* **Group commit.** :meth:`Store.store_detection_batches` stores every batch the ingest
  received in one turn in one transaction: with hundreds of nodes sending small batches,
  a commit (an fsync) per batch would cap ingest at the disk's fsync rate (~500/s here).
* **The same text on both backends.** Text columns pass their values through
  :func:`clean_text` (NUL and lone surrogates, which PostgreSQL or the drivers refuse,
  become U+FFFD), and free-form values are cut to their column's length (PostgreSQL
  enforces VARCHAR(n), SQLite does not): one odd string from a node or a request is
  stored, not a storage error its sender would retry forever.
* **Real transactions on SQLite.** pysqlite's implicit transactions skip DDL and SELECTs;
  the store turns them off and issues ``BEGIN`` itself (SQLAlchemy's documented recipe),
  so a migration or an audited state change is atomic.
* **Audit log: append-only and tamper-evident.** Every state change writes an audit row in
  the same transaction. Each row stores ``hash = sha256(prev_hash + canonical row)``, so
  editing or deleting a row breaks the chain at that row (:meth:`Store.verify_audit_chain`);
  triggers refuse UPDATE and DELETE on the table. Cutting rows off the *end* of the chain
  cannot be seen from the chain alone: compare the head hash with a copy kept elsewhere
  (``cellwatch audit verify`` prints it).
* **Migrations**: a versioned list applied in order, each in one transaction, recorded in
  ``schema_version``. A database newer than the code is refused rather than misread.
* **IQ snippets in the database** (migration 2, table ``snippets``): the samples are a
  column of their row (BLOB / bytea), not files beside the database. A snippet is small
  (~7.4 kB for a GSM burst, at most 256 kB), so one transaction stores it and its
  metadata durably before the ack, exactly like a detection, with no file that can be
  missing, half-written or orphaned after a crash; backups and PostgreSQL deployments
  (service and database on different machines) get them with no shared folder. A GSM
  call heard by 12 sensors adds ~1.2 snippets a second site-wide at the node defaults,
  ~32 MB a day of continuous calls. Snippets link to events through the detection they
  illustrate (sensor, burst start, frequency): the join is made when read, so a snippet
  that arrives before its detection (they travel in separate queues) still finds it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError

from dsp.errors import InputError
from dsp.records import Detection, Heartbeat
from dsp.snippets import IQSnippet
from dsp.wire import SenderStatus

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
EVENT_STATUSES = ("new", "acknowledged", "escalated", "closed")
OUTCOMES = ("phone_found", "nothing_found", "false_alarm")
ROLES = ("viewer", "operator", "admin")
SYSTEM_ACTOR = "system"

# Workflow: which action moves an event from which statuses to which.
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "acknowledge": (("new",), "acknowledged"),
    "escalate": (("new", "acknowledged"), "escalated"),
    "close": (("new", "acknowledged", "escalated"), "closed"),
}

_WRITE_OPTION = "cellwatch_write"
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: INTEGER PRIMARY KEY = rowid


def clean_text(value: str) -> str:
    """``value`` as both databases store it: NUL and lone surrogates become U+FFFD.

    PostgreSQL refuses NUL in text and neither driver can encode a lone surrogate (a JSON
    ``"\\ud800"`` decodes to one): either would turn one odd string from a node or a
    request into a storage error, retried forever. Valid text is returned unchanged.
    """
    if value.isascii() and "\x00" not in value:
        return value
    value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # pairs of surrogates join into one character, lone ones are replaced
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


class _CleanString(sa.types.TypeDecorator[str]):
    """VARCHAR(n) whose bound values (inserts and comparisons alike) go through :func:`clean_text`.

    Same DDL as ``sa.String``: the frozen migrations are unchanged.
    """

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return clean_text(value) if isinstance(value, str) else value


class _CleanText(_CleanString):
    impl = sa.Text
    cache_ok = True


metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_s", sa.Double, nullable=False),
    sa.Column("description", _CleanString(200), nullable=False),
)

detections = sa.Table(
    "detections", metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("node_id", _CleanString(64), nullable=False),
    sa.Column("stream_id", _CleanString(32), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("sensor_id", _CleanString(64), nullable=False),
    sa.Column("t_start_s", sa.Double, nullable=False),
    sa.Column("duration_s", sa.Double, nullable=False),
    sa.Column("freq_hz", sa.Double, nullable=False),
    sa.Column("bandwidth_hz", sa.Double, nullable=False),
    sa.Column("power_dbfs", sa.Double, nullable=False),
    sa.Column("snr_db", sa.Double, nullable=False),
    sa.Column("rssi_dbm", sa.Double, nullable=True),
    sa.Column("tech", _CleanString(16), nullable=False),
    sa.Column("channel", _CleanString(64), nullable=True),
    sa.Column("received_s", sa.Double, nullable=False),
    sa.Column("payload", _CleanText, nullable=False),  # the wire form, for what the columns leave out
    sa.UniqueConstraint("node_id", "stream_id", "seq", name="uq_detections_node_stream_seq"),
    sa.Index("ix_detections_t_start_s", "t_start_s"),
    sa.Index("ix_detections_sensor_received", "sensor_id", "received_s"),
    sqlite_autoincrement=True,
)

sensor_health = sa.Table(
    "sensor_health", metadata,
    sa.Column("sensor_id", _CleanString(64), primary_key=True),
    sa.Column("node_id", _CleanString(64), nullable=False),
    sa.Column("received_s", sa.Double, nullable=False),  # service clock: drives online/offline
    sa.Column("first_seen_s", sa.Double, nullable=False),
    sa.Column("t_s", sa.Double, nullable=False),  # node clock
    sa.Column("source_state", _CleanString(32), nullable=False),
    sa.Column("n_dropped_samples", sa.BigInteger, nullable=False),
    sa.Column("n_overload_blocks", sa.BigInteger, nullable=False),
    sa.Column("clock_offset_s", sa.Double, nullable=True),
    sa.Column("bands", _CleanText, nullable=False),
    sa.Column("message", _CleanText, nullable=False),
    sa.Column("sender", _CleanText, nullable=False),
    sa.Column("state", _CleanString(16), nullable=True),  # last state announced: online / offline
    sa.Column("state_changed_s", sa.Double, nullable=True),
)

events = sa.Table(
    "events", metadata,
    sa.Column("event_id", _CleanString(64), primary_key=True),
    sa.Column("t_start_s", sa.Double, nullable=False),
    sa.Column("t_end_s", sa.Double, nullable=False),
    sa.Column("tech", _CleanString(16), nullable=False),
    sa.Column("freq_hz", sa.Double, nullable=False),
    sa.Column("n_bursts", sa.Integer, nullable=False),
    sa.Column("wing", _CleanString(64), nullable=True),
    sa.Column("floor", sa.Integer, nullable=True),
    sa.Column("cell", _CleanString(64), nullable=True),
    sa.Column("zone", _CleanString(64), nullable=True),
    sa.Column("place_kind", _CleanString(32), nullable=True),
    sa.Column("priority", _CleanString(32), nullable=False),
    sa.Column("confidence", sa.Double, nullable=True),
    sa.Column("channel", _CleanString(64), nullable=True),
    sa.Column("sensors", _CleanText, nullable=False),
    sa.Column("candidates", _CleanText, nullable=False),
    sa.Column("session_ids", _CleanText, nullable=False),
    sa.Column("payload", _CleanText, nullable=False),  # the engine's record (to_dict), as it last was
    sa.Column("status", _CleanString(16), nullable=False),
    sa.Column("outcome", _CleanString(32), nullable=True),
    sa.Column("note", _CleanText, nullable=True),  # the last note given with an action
    sa.Column("status_by", _CleanString(64), nullable=True),
    sa.Column("status_changed_s", sa.Double, nullable=True),
    sa.Column("created_s", sa.Double, nullable=False),
    sa.Column("updated_s", sa.Double, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Index("ix_events_t_start_s", "t_start_s"),
    sa.Index("ix_events_t_end_s", "t_end_s"),
    sa.Index("ix_events_cell_t", "cell", "t_start_s"),
    sa.Index("ix_events_zone_t", "zone", "t_start_s"),
    sa.Index("ix_events_status", "status"),
)

event_detections = sa.Table(
    "event_detections", metadata,
    sa.Column("event_id", _CleanString(64), sa.ForeignKey("events.event_id"), primary_key=True),
    sa.Column("detection_id", _Id, sa.ForeignKey("detections.id"), primary_key=True),
    sa.Index("ix_event_detections_detection", "detection_id"),
)

event_actions = sa.Table(
    "event_actions", metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("event_id", _CleanString(64), sa.ForeignKey("events.event_id"), nullable=False),
    sa.Column("t_s", sa.Double, nullable=False),
    sa.Column("username", _CleanString(64), nullable=False),
    sa.Column("action", _CleanString(32), nullable=False),
    sa.Column("from_status", _CleanString(16), nullable=False),
    sa.Column("to_status", _CleanString(16), nullable=False),
    sa.Column("outcome", _CleanString(32), nullable=True),
    sa.Column("note", _CleanText, nullable=True),
    sa.Index("ix_event_actions_event", "event_id"),
)

users = sa.Table(
    "users", metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("username", _CleanString(64), nullable=False, unique=True),
    sa.Column("role", _CleanString(16), nullable=False),
    sa.Column("password_hash", _CleanString(255), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("created_s", sa.Double, nullable=False),
    sa.Column("updated_s", sa.Double, nullable=False),
)

sessions = sa.Table(
    "sessions", metadata,
    sa.Column("token_hash", _CleanString(64), primary_key=True),  # sha256 of the token: a DB leak gives no session
    sa.Column("user_id", _Id, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_s", sa.Double, nullable=False),
    sa.Column("expires_s", sa.Double, nullable=False),
    sa.Column("client", _CleanString(64), nullable=True),
    sa.Column("revoked_s", sa.Double, nullable=True),
    sa.Index("ix_sessions_user", "user_id"),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=False),  # given: it is part of the hashed row
    sa.Column("t_s", sa.Double, nullable=False),
    sa.Column("actor", _CleanString(64), nullable=False),
    sa.Column("action", _CleanString(64), nullable=False),
    sa.Column("target", _CleanString(200), nullable=True),
    sa.Column("details", _CleanText, nullable=False),
    sa.Column("prev_hash", _CleanString(64), nullable=False),
    sa.Column("hash", _CleanString(64), nullable=False),
)

service_state = sa.Table(
    "service_state", metadata,
    sa.Column("key", _CleanString(64), primary_key=True),
    sa.Column("value", _CleanText, nullable=False),
)

_V1_TABLES = (detections, sensor_health, events, event_detections, event_actions, users, sessions, audit_log,
              service_state)

_SQLITE_AUDIT_TRIGGERS = (
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
)
_POSTGRES_AUDIT_TRIGGERS = (
    "CREATE OR REPLACE FUNCTION cellwatch_audit_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION cellwatch_audit_append_only()",
)


snippets = sa.Table(
    "snippets", metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("node_id", _CleanString(64), nullable=False),
    sa.Column("stream_id", _CleanString(32), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("sensor_id", _CleanString(64), nullable=False),
    sa.Column("t_start_s", sa.Double, nullable=False),  # UTC of the first sample
    sa.Column("center_freq_hz", sa.BigInteger, nullable=False),
    sa.Column("sample_rate_hz", sa.Double, nullable=False),
    sa.Column("n_samples", sa.Integer, nullable=False),
    sa.Column("datatype", _CleanString(16), nullable=False),
    sa.Column("detection_t_start_s", sa.Double, nullable=False),  # the detection it illustrates
    sa.Column("detection_freq_hz", sa.Double, nullable=False),
    sa.Column("received_s", sa.Double, nullable=False),
    sa.Column("data_sha256", _CleanString(64), nullable=False),
    sa.Column("header", _CleanText, nullable=False),  # the wire form without the samples
    sa.Column("data", sa.LargeBinary, nullable=False),  # the samples as received (cu8)
    sa.UniqueConstraint("node_id", "stream_id", "seq", name="uq_snippets_node_stream_seq"),
    sa.Index("ix_snippets_detection", "sensor_id", "detection_t_start_s"),
    sqlite_autoincrement=True,
)


def _migrate_v1(conn: Connection) -> None:
    # Frozen: a later migration that changes a table must first copy that table's v1
    # definition in here, so that an empty database still goes through every version.
    metadata.create_all(conn, tables=list(_V1_TABLES))
    statements = _SQLITE_AUDIT_TRIGGERS if conn.dialect.name == "sqlite" else _POSTGRES_AUDIT_TRIGGERS
    for statement in statements:
        conn.exec_driver_sql(statement)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _migrate_v2(conn: Connection) -> None:
    # Frozen, as v1: a later change to the snippets table copies this definition first.
    metadata.create_all(conn, tables=[snippets])


MIGRATIONS: tuple[Migration, ...] = (Migration(1, "detections, sensor health, events, users, sessions, audit log",
                                               _migrate_v1),
                                     Migration(2, "IQ snippets (evidence)", _migrate_v2))


# -- rows handed to the rest of the service (storage side; the API has its own schemas) ------


class NotFoundError(LookupError):
    """The event, user or session named does not exist."""


class ConflictError(ValueError):
    """The change is not allowed in the current state (e.g. acknowledging a closed event)."""


def _link(conn: Connection, event_id: str, detection_ids: Sequence[int]) -> None:
    """Link detections to an event inside the caller's transaction (a link made twice stays one)."""
    conn.execute(_insert(conn, event_detections).on_conflict_do_nothing(),
                 [{"event_id": event_id, "detection_id": i} for i in sorted(set(detection_ids))])


def _fixed_chunks(rows: list[dict[str, Any]], largest: int = 512) -> Iterator[list[dict[str, Any]]]:
    """``rows`` in chunks of power-of-two sizes (``largest`` at most).

    A many-row INSERT ... RETURNING becomes one SQL statement per number of rows, and the
    database driver keeps the prepared statements of each connection (SQLite: 128 of them,
    up to ~1 MB each for hundreds of rows): batches of every size from 1 to thousands made
    the service's memory grow by hundreds of MB under load. Ten sizes keep it flat.
    """
    start = 0
    while start < len(rows):
        size = min(largest, 1 << ((len(rows) - start).bit_length() - 1))
        yield rows[start : start + size]
        start += size


@dataclass(frozen=True, slots=True)
class StoredDetection:
    id: int
    node_id: str
    stream_id: str
    received_s: float
    detection: Detection


@dataclass(frozen=True, slots=True)
class SnippetRef:
    """A stored IQ snippet of an event (without its samples) and the detection it illustrates."""

    id: int
    sensor_id: str
    t_start_s: float
    detection_id: int
    detection_power_dbfs: float
    detection_snr_db: float


@dataclass(frozen=True, slots=True)
class StoredSnippet:
    id: int
    node_id: str
    stream_id: str
    seq: int
    received_s: float
    data_sha256: str
    snippet: IQSnippet
    ref: SnippetRef


@dataclass(frozen=True, slots=True)
class SensorHealthRow:
    sensor_id: str
    node_id: str
    received_s: float
    first_seen_s: float
    heartbeat: Heartbeat
    sender: SenderStatus
    state: str | None
    state_changed_s: float | None


@dataclass(frozen=True, slots=True)
class SourceChange:
    """A sensor's radio source state as two consecutive heartbeats reported it."""

    sensor_id: str
    node_id: str
    before: str
    after: str
    message: str
    n_dropped_samples: int


@dataclass(frozen=True, slots=True)
class EventRow:
    event_id: str
    t_start_s: float
    t_end_s: float
    tech: str
    freq_hz: float
    n_bursts: int
    wing: str | None
    floor: int | None
    cell: str | None
    zone: str | None
    place_kind: str | None
    priority: str
    confidence: float | None
    channel: str | None
    sensors: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    session_ids: list[str]
    record: dict[str, Any]
    status: str
    outcome: str | None
    note: str | None
    status_by: str | None
    status_changed_s: float | None
    created_s: float
    updated_s: float
    revision: int


@dataclass(frozen=True, slots=True)
class EventActionRow:
    id: int
    event_id: str
    t_s: float
    username: str
    action: str
    from_status: str
    to_status: str
    outcome: str | None
    note: str | None


@dataclass(frozen=True, slots=True)
class EventWrite:
    """One event as the engine reported it, and the detections newly found to belong to it."""

    event_id: str
    record: Mapping[str, Any]  # Event.to_dict()
    detection_ids: Sequence[int] = ()


@dataclass(frozen=True, slots=True)
class EventWritten:
    row: EventRow
    created: bool
    reopened: bool = False


@dataclass(frozen=True, slots=True)
class EventFilter:
    since_s: float | None = None  # events still active at or after this time
    until_s: float | None = None  # events started at or before this time
    wing: str | None = None
    floor: int | None = None
    cell: str | None = None
    zone: str | None = None
    place: str | None = None  # cell or zone
    tech: Sequence[str] = ()
    status: Sequence[str] = ()
    priority: Sequence[str] = ()
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True, slots=True)
class PlaceActivity:
    place: str
    n_events: int
    n_open: int
    last_t_s: float
    max_confidence: float | None


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    username: str
    role: str
    password_hash: str
    disabled: bool
    created_s: float
    updated_s: float


@dataclass(frozen=True, slots=True)
class SessionRow:
    token_hash: str
    user_id: int
    created_s: float
    expires_s: float
    client: str | None


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    t_s: float
    actor: str
    action: str
    target: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditVerification:
    ok: bool
    n_rows: int
    head_hash: str
    first_bad_id: int | None = None
    problem: str | None = None


@dataclass
class _StreamStats:
    n_stored: int = 0
    max_seq: int = 0


@dataclass
class _Caches:
    n_detections: int = 0
    max_detection_id: int = 0
    last_detection_s: dict[str, float] = field(default_factory=dict)  # sensor -> received_s


# -- helpers ---------------------------------------------------------------------------------


def _json(value: Any) -> str:
    """Compact JSON with non-finite floats as null (strict JSON readers choke on NaN)."""
    return json.dumps(_finite(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _finite(value: Any) -> Any:
    """``value`` made storable as JSON text: non-finite floats as null, strings cleaned (clean_text)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {clean_text(str(k)): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def canonical_audit_row(id_: int, t_s: float, actor: str, action: str, target: str | None, details: str) -> str:
    """The exact text hashed for one audit row (``details`` as stored, already canonical JSON)."""
    return json.dumps([id_, t_s, actor, action, target, details], separators=(",", ":"), ensure_ascii=False)


def audit_hash(prev_hash: str, canonical_row: str) -> str:
    return hashlib.sha256((prev_hash + canonical_row).encode("utf-8")).hexdigest()


def _float_or_none(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _str_or_none(value: Any, max_len: int = 64) -> str | None:
    return None if value is None else str(value)[:max_len]


def _redact_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable database URL>"


def _make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InputError(None, "database.url", f"not a database URL: {_redact_url(url)}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            raise InputError(None, "database.path", "an in-memory SQLite database cannot be shared; give a file")
        parent = Path(database).expanduser().resolve().parent
        if not parent.is_dir():
            raise InputError(database, "database.path", f"folder {parent} does not exist")
        engine = sa.create_engine(parsed, connect_args={"timeout": 30.0, "check_same_thread": False})

        @sa_event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # no implicit BEGIN/COMMIT: SQLAlchemy's own, below
            cursor = dbapi_connection.cursor()
            mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("sqlite journal not WAL path=%s mode=%s", database, mode)
            cursor.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the ack
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @sa_event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # A writer takes the lock up front: a deferred transaction that read first could
            # not upgrade once another process (cellwatch users ...) had committed meanwhile.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE_OPTION) else "BEGIN")

        return engine
    if backend == "postgresql":
        try:
            return sa.create_engine(parsed, pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            raise InputError(None, "database.url", f"the PostgreSQL driver is not installed ({exc.name})") from None
    raise InputError(None, "database.url", f"unsupported database {backend!r}: use sqlite or postgresql")


def _insert(conn: Connection, table: sa.Table) -> Any:
    """A dialect INSERT that supports ON CONFLICT (SQLite and PostgreSQL share the syntax)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return sqlite.insert(table) if conn.dialect.name == "sqlite" else postgresql.insert(table)


def _event_row(r: Any) -> EventRow:
    return EventRow(
        event_id=r.event_id, t_start_s=r.t_start_s, t_end_s=r.t_end_s, tech=r.tech, freq_hz=r.freq_hz,
        n_bursts=r.n_bursts, wing=r.wing, floor=r.floor, cell=r.cell, zone=r.zone, place_kind=r.place_kind,
        priority=r.priority, confidence=r.confidence, channel=r.channel, sensors=json.loads(r.sensors),
        candidates=json.loads(r.candidates), session_ids=json.loads(r.session_ids), record=json.loads(r.payload),
        status=r.status, outcome=r.outcome, note=r.note, status_by=r.status_by, status_changed_s=r.status_changed_s,
        created_s=r.created_s, updated_s=r.updated_s, revision=r.revision)


def _snippet_header(snippet: IQSnippet) -> str:
    header = snippet.to_dict()
    del header["data_b64"]
    header.pop("seq", None)
    return _json(header)


def _stored_snippet(r: Any, ref: SnippetRef) -> StoredSnippet:
    obj = json.loads(r.header)
    obj["data_b64"] = base64.b64encode(bytes(r.data)).decode("ascii")
    return StoredSnippet(id=r.id, node_id=r.node_id, stream_id=r.stream_id, seq=r.seq, received_s=r.received_s,
                         data_sha256=r.data_sha256, snippet=IQSnippet.from_dict(obj), ref=ref)


def _user_row(r: Any) -> UserRow:
    return UserRow(r.id, r.username, r.role, r.password_hash, bool(r.disabled), r.created_s, r.updated_s)


def _event_columns(record: Mapping[str, Any]) -> dict[str, Any]:
    """Columns of an event from the engine's record; extras it lacks get neutral values."""
    cell = _str_or_none(record.get("cell"))
    place_kind = _str_or_none(record.get("place_kind"), 32) or ("cell" if cell else None)
    priority = _str_or_none(record.get("priority"), 32) or ("alert" if cell else "low")
    payload = {k: v for k, v in record.items() if k != "detection_keys"}
    return {
        "t_start_s": _float_or_none(record.get("t_start_s")) or 0.0,
        "t_end_s": _float_or_none(record.get("t_end_s")) or _float_or_none(record.get("t_start_s")) or 0.0,
        "tech": _str_or_none(record.get("tech"), 16) or "unknown",
        "freq_hz": _float_or_none(record.get("freq_hz")) or 0.0,
        "n_bursts": _int_or_none(record.get("n_bursts")) or 0,
        "wing": _str_or_none(record.get("wing")),
        "floor": _int_or_none(record.get("floor")),
        "cell": cell,
        "zone": _str_or_none(record.get("zone")),
        "place_kind": place_kind,
        "priority": priority,
        "confidence": _float_or_none(record.get("confidence")),
        "channel": _str_or_none(record.get("channel")),
        "sensors": _json(list(record.get("sensors") or [])),
        "candidates": _json(list(record.get("candidates") or [])),
        "session_ids": _json([str(s) for s in record.get("session_ids") or []]),
        "payload": _json(payload),
    }


# -- the store -------------------------------------------------------------------------------


class Store:
    """All the service's persistent state; safe to share between threads.

    Implements :class:`service.ingest.DetectionStore`. Open it with :func:`open_store`.
    """

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name
        self._write_lock = threading.RLock()
        self._listeners: list[Callable[[int], None]] = []
        self._caches = _Caches()
        self._streams: dict[tuple[str, str], _StreamStats] = {}
        # Heartbeats whose source state differs from the sensor's previous one, until taken: a
        # dongle out for less than the monitor's period is still announced.
        self._source_changes: deque[SourceChange] = deque(maxlen=10_000)
        self._load_caches()

    # -- plumbing ----------------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """One write transaction at a time; commits on exit, rolls back on error."""
        with self._write_lock, self.engine.connect() as conn:
            conn.execution_options(**{_WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load_caches(self) -> None:
        with self._reading() as conn:
            n, max_id = conn.execute(sa.select(sa.func.count(), sa.func.max(detections.c.id))).one()
            self._caches.n_detections = int(n or 0)
            self._caches.max_detection_id = int(max_id or 0)
            for sensor_id, last in conn.execute(
                    sa.select(detections.c.sensor_id, sa.func.max(detections.c.received_s))
                    .group_by(detections.c.sensor_id)):
                self._caches.last_detection_s[sensor_id] = float(last)
            for node_id, stream_id, n_rows, max_seq in conn.execute(
                    sa.select(detections.c.node_id, detections.c.stream_id, sa.func.count(),
                              sa.func.max(detections.c.seq)).group_by(detections.c.node_id, detections.c.stream_id)):
                self._streams[(node_id, stream_id)] = _StreamStats(int(n_rows), int(max_seq))

    def add_detection_listener(self, callback: Callable[[int], None]) -> None:
        """``callback(max_detection_id)`` after each commit that stored new detections (keep it quick)."""
        self._listeners.append(callback)

    # -- detections and heartbeats (the ingest's DetectionStore) ------------------------------

    def store_detections(self, node_id: str, stream_id: str, detections_: Sequence[Detection]) -> int:
        """Durably store detections (each with ``seq``); returns how many were new."""
        return self.store_detection_batches([(node_id, stream_id, detections_)])[0]

    def store_detection_batches(self, batches: Sequence[tuple[str, str, Sequence[Detection]]]) -> list[int]:
        """Durably store several nodes' batches in one transaction; how many were new in each.

        Group commit: the ingest hands over every batch that arrived in one turn, so a commit
        (one fsync) serves many small batches from many nodes. All or nothing: if it raises,
        none is stored (the caller may store them one by one to isolate a bad one).
        """
        now = time.time()
        rows = []
        for node_id, stream_id, detections_ in batches:
            for d in detections_:
                if d.seq is None:
                    raise ValueError("a stored detection needs its seq")
                rows.append({
                    "node_id": node_id, "stream_id": stream_id, "seq": d.seq, "sensor_id": d.sensor_id[:64],
                    "t_start_s": d.t_start_s, "duration_s": d.duration_s, "freq_hz": d.freq_hz,
                    "bandwidth_hz": d.bandwidth_hz, "power_dbfs": d.power_dbfs, "snr_db": d.snr_db,
                    "rssi_dbm": d.rssi_dbm, "tech": d.tech, "channel": _str_or_none(d.channel), "received_s": now,
                    "payload": d.to_json()})
        if not rows:
            return [0] * len(batches)
        with self._writing() as conn:
            statement = (_insert(conn, detections).on_conflict_do_nothing(
                index_elements=["node_id", "stream_id", "seq"])
                .returning(detections.c.id, detections.c.node_id, detections.c.stream_id, detections.c.seq))
            inserted = {}
            for chunk in _fixed_chunks(rows):
                inserted.update({(str(n), str(st), int(q)): int(i) for i, n, st, q in conn.execute(statement, chunk)})
        n_inserted, max_id = len(inserted), max(inserted.values(), default=0)
        out = []
        for node_id, stream_id, detections_ in batches:  # a seq in two batches of one turn is new in the first only
            new_ids = [inserted.pop(key) for d in detections_ if (key := (node_id, stream_id, d.seq or 0)) in inserted]
            out.append(len(new_ids))
            if not new_ids:
                continue
            stats = self._streams.setdefault((node_id, stream_id), _StreamStats())
            stats.n_stored += len(new_ids)
            stats.max_seq = max(stats.max_seq, max(d.seq or 0 for d in detections_))
            for d in detections_:
                self._caches.last_detection_s[d.sensor_id] = now
        if n_inserted:
            self._caches.n_detections += n_inserted
            self._caches.max_detection_id = max(self._caches.max_detection_id, max_id)
            for callback in self._listeners:
                callback(self._caches.max_detection_id)
        return out

    def store_heartbeat(self, node_id: str, heartbeat: Heartbeat, sender: SenderStatus) -> None:
        """Keep the latest heartbeat of each sensor (its health, not a history)."""
        now = time.time()
        values = {
            "sensor_id": heartbeat.sensor_id[:64], "node_id": node_id, "received_s": now, "first_seen_s": now,
            "t_s": heartbeat.t_s, "source_state": heartbeat.source_state[:32],
            "n_dropped_samples": heartbeat.n_dropped_samples, "n_overload_blocks": heartbeat.n_overload_blocks,
            "clock_offset_s": heartbeat.clock_offset_s,
            "bands": _json([{"band": b.band, "noise_floor_dbfs": b.noise_floor_dbfs,
                             "watched_fraction": b.watched_fraction, "revisit_s": b.revisit_s}
                            for b in heartbeat.bands]),
            "message": heartbeat.message[:1000], "sender": _json(sender.to_dict()),
        }
        with self._writing() as conn:
            before = conn.execute(sa.select(sensor_health.c.source_state)
                                  .where(sensor_health.c.sensor_id == values["sensor_id"])).scalar()
            statement = _insert(conn, sensor_health)
            update = {k: statement.excluded[k] for k in values if k not in ("sensor_id", "first_seen_s")}
            conn.execute(statement.on_conflict_do_update(index_elements=["sensor_id"], set_=update), values)
        after = heartbeat.source_state[:32]
        if before is not None and before != after:
            self._source_changes.append(SourceChange(heartbeat.sensor_id[:64], node_id, str(before), after,
                                                     heartbeat.message[:1000], heartbeat.n_dropped_samples))

    def take_source_changes(self) -> list[SourceChange]:
        """The source state changes stored since the last call, oldest first."""
        out = []
        while self._source_changes:
            out.append(self._source_changes.popleft())
        return out

    # -- IQ snippets (evidence) ----------------------------------------------------------------

    def store_snippets(self, node_id: str, stream_id: str, snippets_: Sequence[IQSnippet]) -> int:
        """Durably store IQ snippets (each with ``seq``), once per (node, stream, seq); returns how many were new."""
        if not snippets_:
            return 0
        now = time.time()
        rows = []
        for s in snippets_:
            if s.seq is None:
                raise ValueError("a stored snippet needs its seq")
            rows.append({
                "node_id": node_id, "stream_id": stream_id, "seq": s.seq, "sensor_id": s.sensor_id,
                "t_start_s": s.t_start_s, "center_freq_hz": s.center_freq_hz, "sample_rate_hz": s.sample_rate_hz,
                "n_samples": s.n_samples, "datatype": s.datatype, "detection_t_start_s": s.detection_t_start_s,
                "detection_freq_hz": s.detection_freq_hz, "received_s": now,
                "data_sha256": hashlib.sha256(s.data).hexdigest(), "header": _snippet_header(s), "data": s.data})
        with self._writing() as conn:
            statement = (_insert(conn, snippets).on_conflict_do_nothing(
                index_elements=["node_id", "stream_id", "seq"]).returning(snippets.c.id))
            return sum(len(conn.execute(statement, chunk).all()) for chunk in _fixed_chunks(rows))

    def event_snippet_refs(self, event_id: str, *, sensor_id: str | None = None) -> list[SnippetRef]:
        """What snippets illustrate the event's detections (without their samples), by sensor then time.

        A detection stored twice (a resend under a new stream) links to its lowest id.
        """
        d, s = detections.c, snippets.c
        query = (sa.select(s.id, s.sensor_id, s.t_start_s, d.id.label("detection_id"), d.power_dbfs, d.snr_db)
                 .join(detections, sa.and_(d.sensor_id == s.sensor_id, d.t_start_s == s.detection_t_start_s,
                                           d.freq_hz == s.detection_freq_hz))
                 .join(event_detections, event_detections.c.detection_id == d.id)
                 .where(event_detections.c.event_id == event_id))
        if sensor_id is not None:
            query = query.where(s.sensor_id == sensor_id)
        refs: dict[int, SnippetRef] = {}
        with self._reading() as conn:
            for r in conn.execute(query.order_by(d.id)):
                if r.id not in refs:
                    refs[r.id] = SnippetRef(int(r.id), str(r.sensor_id), float(r.t_start_s), int(r.detection_id),
                                            float(r.power_dbfs), float(r.snr_db))
        return sorted(refs.values(), key=lambda ref: (ref.sensor_id, ref.t_start_s, ref.id))

    def get_snippets(self, refs: Sequence[SnippetRef]) -> list[StoredSnippet]:
        """The snippets ``refs`` name, with their samples, in the same order (those still stored)."""
        rows: dict[int, Any] = {}
        ids = [ref.id for ref in refs]
        with self._reading() as conn:
            for k in range(0, len(ids), 200):
                rows.update((r.id, r) for r in conn.execute(sa.select(snippets).where(snippets.c.id.in_(ids[k:k + 200]))))
        return [_stored_snippet(rows[ref.id], ref) for ref in refs if ref.id in rows]

    def event_snippets(self, event_id: str, *, sensor_id: str | None = None, limit: int = 1000) -> list[StoredSnippet]:
        """The first ``limit`` snippets of the event's detections (by sensor, then time), with their samples."""
        return self.get_snippets(self.event_snippet_refs(event_id, sensor_id=sensor_id)[:limit])

    @property
    def n_detections(self) -> int:
        return self._caches.n_detections

    @property
    def max_detection_id(self) -> int:
        return self._caches.max_detection_id

    def last_detection_by_sensor(self) -> dict[str, float]:
        """Service time each sensor's latest detection was stored."""
        return dict(self._caches.last_detection_s)

    def stream_counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(node_id, stream_id) -> (detections stored, highest seq): a gap means lost detections."""
        return {k: (v.n_stored, v.max_seq) for k, v in self._streams.items()}

    def detections_after(self, after_id: int, limit: int) -> list[StoredDetection]:
        """Stored detections with ``id > after_id``, in storage order."""
        with self._reading() as conn:
            rows = conn.execute(
                sa.select(detections.c.id, detections.c.node_id, detections.c.stream_id, detections.c.received_s,
                          detections.c.payload).where(detections.c.id > after_id)
                .order_by(detections.c.id).limit(limit)).all()
        return [StoredDetection(r.id, r.node_id, r.stream_id, r.received_s, Detection.from_json(r.payload))
                for r in rows]

    def first_detection_id_since(self, t_start_s: float) -> int | None:
        """Smallest id of a detection whose burst started at or after ``t_start_s``."""
        with self._reading() as conn:
            value = conn.execute(sa.select(sa.func.min(detections.c.id))
                                 .where(detections.c.t_start_s >= t_start_s)).scalar()
        return None if value is None else int(value)

    def latest_detection_time(self) -> float | None:
        with self._reading() as conn:
            value = conn.execute(sa.select(sa.func.max(detections.c.t_start_s))).scalar()
        return None if value is None else float(value)

    def event_detections(self, event_id: str, limit: int = 500) -> tuple[int, list[StoredDetection]]:
        """(how many detections contributed to the event, the first ``limit`` of them in time order)."""
        with self._reading() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(event_detections)
                                 .where(event_detections.c.event_id == event_id)).scalar() or 0
            rows = conn.execute(
                sa.select(detections.c.id, detections.c.node_id, detections.c.stream_id, detections.c.received_s,
                          detections.c.payload)
                .join(event_detections, event_detections.c.detection_id == detections.c.id)
                .where(event_detections.c.event_id == event_id)
                .order_by(detections.c.t_start_s, detections.c.id).limit(limit)).all()
        return int(total), [StoredDetection(r.id, r.node_id, r.stream_id, r.received_s,
                                            Detection.from_json(r.payload)) for r in rows]

    def sensor_health(self) -> list[SensorHealthRow]:
        with self._reading() as conn:
            rows = conn.execute(sa.select(sensor_health).order_by(sensor_health.c.sensor_id)).all()
        out = []
        for r in rows:
            heartbeat = Heartbeat.from_dict({
                "sensor_id": r.sensor_id, "t_s": r.t_s, "source_state": r.source_state,
                "n_dropped_samples": r.n_dropped_samples, "n_overload_blocks": r.n_overload_blocks,
                "clock_offset_s": r.clock_offset_s, "bands": json.loads(r.bands), "message": r.message})
            out.append(SensorHealthRow(r.sensor_id, r.node_id, r.received_s, r.first_seen_s, heartbeat,
                                       SenderStatus.from_dict(json.loads(r.sender)), r.state, r.state_changed_s))
        return out

    def set_sensor_state(self, sensor_id: str, state: str, *, reason: str) -> None:
        """Record an online/offline change of a sensor that has reported (audited as the system's)."""
        now = time.time()
        with self._writing() as conn:
            conn.execute(sa.update(sensor_health).where(sensor_health.c.sensor_id == sensor_id)
                         .values(state=state, state_changed_s=now))
            self._append_audit(conn, SYSTEM_ACTOR, f"sensor.{state}", sensor_id, {"reason": reason}, now)

    # -- events -------------------------------------------------------------------------------

    def event_for_detections(self, detection_ids: Iterable[int]) -> str | None:
        """The stored event any of these detections already belongs to (restart: same event, same id)."""
        ids = list(detection_ids)[:500]
        if not ids:
            return None
        with self._reading() as conn:
            return conn.execute(sa.select(event_detections.c.event_id)
                                .where(event_detections.c.detection_id.in_(ids)).limit(1)).scalar()

    def event_exists(self, event_id: str) -> bool:
        with self._reading() as conn:
            return conn.execute(sa.select(events.c.event_id).where(events.c.event_id == event_id)).first() is not None

    def link_detections(self, event_id: str, detection_ids: Sequence[int]) -> None:
        """Link detections to a stored event without touching its record (idempotent): the
        event worker rebuilding after a restart links what the previous run had not."""
        if not detection_ids:
            return
        with self._writing() as conn:
            _link(conn, event_id, detection_ids)

    def upsert_events(self, writes: Sequence[EventWrite]) -> list[EventWritten]:
        """Create or update events (by event_id) and link their new detections, in one transaction.

        The workflow fields (status, outcome, notes) belong to staff and are kept; a closed
        event that gains detections received after it was closed is reopened (status ``new``),
        audited as the system's.
        """
        if not writes:
            return []
        now = time.time()
        out: list[EventWritten] = []
        with self._writing() as conn:
            for w in writes:
                columns = _event_columns(w.record)
                old = conn.execute(sa.select(events.c.status, events.c.n_bursts, events.c.revision,
                                             events.c.status_changed_s)
                                   .where(events.c.event_id == w.event_id)).first()
                created = old is None
                if created:
                    conn.execute(sa.insert(events).values(event_id=w.event_id, status="new", created_s=now,
                                                          updated_s=now, revision=1, **columns))
                if w.detection_ids:
                    _link(conn, w.event_id, w.detection_ids)
                reopened = False
                if old is not None:
                    extra: dict[str, Any] = {}
                    n_after_close = 0
                    if old.status == "closed" and w.detection_ids:
                        ids = sorted(set(w.detection_ids))
                        for k in range(0, len(ids), 500):
                            n_after_close += int(conn.execute(
                                sa.select(sa.func.count()).select_from(detections)
                                .where(detections.c.id.in_(ids[k:k + 500]),
                                       detections.c.received_s > (old.status_changed_s or 0.0))).scalar() or 0)
                    if n_after_close > 0:
                        reopened = True
                        extra = {"status": "new", "outcome": None, "status_by": SYSTEM_ACTOR,
                                 "status_changed_s": now}
                        conn.execute(sa.insert(event_actions).values(
                            event_id=w.event_id, t_s=now, username=SYSTEM_ACTOR, action="reopen",
                            from_status="closed", to_status="new", outcome=None,
                            note="new bursts after the event was closed"))
                        self._append_audit(conn, SYSTEM_ACTOR, "event.reopen", w.event_id,
                                           {"n_new_detections": n_after_close, "n_bursts": columns["n_bursts"]}, now)
                    conn.execute(sa.update(events).where(events.c.event_id == w.event_id)
                                 .values(updated_s=now, revision=old.revision + 1, **columns, **extra))
                row = conn.execute(sa.select(events).where(events.c.event_id == w.event_id)).one()
                out.append(EventWritten(_event_row(row), created, reopened))
        return out

    def get_event(self, event_id: str) -> EventRow | None:
        with self._reading() as conn:
            row = conn.execute(sa.select(events).where(events.c.event_id == event_id)).first()
        return None if row is None else _event_row(row)

    def _event_conditions(self, f: EventFilter) -> list[Any]:
        c = events.c
        where: list[Any] = []
        if f.since_s is not None:
            where.append(c.t_end_s >= f.since_s)
        if f.until_s is not None:
            where.append(c.t_start_s <= f.until_s)
        for column, value in ((c.wing, f.wing), (c.floor, f.floor), (c.cell, f.cell), (c.zone, f.zone)):
            if value is not None:
                where.append(column == value)
        if f.place is not None:
            where.append(sa.or_(c.cell == f.place, c.zone == f.place))
        for column, values in ((c.tech, f.tech), (c.status, f.status), (c.priority, f.priority)):
            if values:
                where.append(column.in_(list(values)))
        return where

    def list_events(self, f: EventFilter) -> tuple[int, list[EventRow]]:
        """(how many events match, the page ``offset .. offset + limit`` of them, newest first)."""
        where = self._event_conditions(f)
        with self._reading() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(events).where(*where)).scalar() or 0
            rows = conn.execute(sa.select(events).where(*where)
                                .order_by(events.c.t_start_s.desc(), events.c.event_id)
                                .limit(f.limit).offset(f.offset)).all()
        return int(total), [_event_row(r) for r in rows]

    def place_activity(self, since_s: float | None = None, until_s: float | None = None) -> list[PlaceActivity]:
        """Per cell or zone: events, open events, latest activity (heat map, cells to search next)."""
        c = events.c
        place = sa.func.coalesce(c.cell, c.zone)
        where: list[Any] = [place.is_not(None)]
        if since_s is not None:
            where.append(c.t_end_s >= since_s)
        if until_s is not None:
            where.append(c.t_start_s <= until_s)
        n_open = sa.func.sum(sa.case((c.status != "closed", 1), else_=0))
        with self._reading() as conn:
            rows = conn.execute(sa.select(place.label("place"), sa.func.count().label("n"), n_open.label("n_open"),
                                          sa.func.max(c.t_end_s).label("last"),
                                          sa.func.max(c.confidence).label("conf"))
                                .where(*where).group_by(place).order_by(place)).all()
        return [PlaceActivity(r.place, int(r.n), int(r.n_open or 0), float(r.last), r.conf) for r in rows]

    def event_actions_of(self, event_id: str) -> list[EventActionRow]:
        with self._reading() as conn:
            rows = conn.execute(sa.select(event_actions).where(event_actions.c.event_id == event_id)
                                .order_by(event_actions.c.id)).all()
        return [EventActionRow(r.id, r.event_id, r.t_s, r.username, r.action, r.from_status, r.to_status,
                               r.outcome, r.note) for r in rows]

    def transition_event(self, event_id: str, action: str, username: str, *, note: str | None = None,
                         outcome: str | None = None) -> EventRow:
        """Acknowledge, escalate or close an event on behalf of ``username`` (audited).

        Raises NotFoundError for an unknown event and ConflictError when the event's status
        does not allow the action (e.g. acknowledging an escalated or closed event).
        """
        if action not in TRANSITIONS:
            raise ValueError(f"unknown action {action!r}")
        allowed_from, to_status = TRANSITIONS[action]
        if action == "close" and outcome not in OUTCOMES:
            raise ValueError(f"closing needs an outcome: one of {', '.join(OUTCOMES)}")
        if action != "close" and outcome is not None:
            raise ValueError("only closing takes an outcome")
        now = time.time()
        with self._writing() as conn:
            row = conn.execute(sa.select(events.c.status).where(events.c.event_id == event_id)).first()
            if row is None:
                raise NotFoundError(f"no event {event_id!r}")
            if row.status not in allowed_from:
                raise ConflictError(f"cannot {action} an event that is {row.status}")
            conn.execute(sa.update(events).where(events.c.event_id == event_id).values(
                status=to_status, outcome=outcome, note=note, status_by=username, status_changed_s=now))
            conn.execute(sa.insert(event_actions).values(event_id=event_id, t_s=now, username=username,
                                                         action=action, from_status=row.status,
                                                         to_status=to_status, outcome=outcome, note=note))
            self._append_audit(conn, username, f"event.{action}", event_id,
                               {"from": row.status, "to": to_status, "outcome": outcome, "note": note}, now)
            updated = conn.execute(sa.select(events).where(events.c.event_id == event_id)).one()
        return _event_row(updated)

    def event_counts(self) -> dict[str, int]:
        """Events by status."""
        with self._reading() as conn:
            rows = conn.execute(sa.select(events.c.status, sa.func.count()).group_by(events.c.status)).all()
        return {str(status): int(n) for status, n in rows}

    # -- users and sessions -------------------------------------------------------------------

    def count_users(self) -> int:
        with self._reading() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(users)).scalar() or 0)

    def create_user(self, username: str, role: str, password_hash: str, *, actor: str) -> UserRow:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        now = time.time()
        try:
            with self._writing() as conn:
                conn.execute(sa.insert(users).values(username=username, role=role, password_hash=password_hash,
                                                     disabled=False, created_s=now, updated_s=now))
                self._append_audit(conn, actor, "user.create", username, {"role": role}, now)
                row = conn.execute(sa.select(users).where(users.c.username == username)).one()
        except IntegrityError:
            raise ConflictError(f"user {username!r} already exists") from None
        return _user_row(row)

    def get_user(self, username: str) -> UserRow | None:
        with self._reading() as conn:
            row = conn.execute(sa.select(users).where(users.c.username == username)).first()
        return None if row is None else _user_row(row)

    def list_users(self) -> list[UserRow]:
        with self._reading() as conn:
            return [_user_row(r) for r in conn.execute(sa.select(users).order_by(users.c.username))]

    def update_user(self, username: str, *, actor: str, role: str | None = None, password_hash: str | None = None,
                    disabled: bool | None = None) -> UserRow:
        """Change a user's role, password or disabled flag (audited; a password change or
        disabling ends the user's sessions)."""
        if role is not None and role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        now = time.time()
        changes: dict[str, Any] = {}
        if role is not None:
            changes["role"] = role
        if password_hash is not None:
            changes["password_hash"] = password_hash
        if disabled is not None:
            changes["disabled"] = disabled
        with self._writing() as conn:
            row = conn.execute(sa.select(users).where(users.c.username == username)).first()
            if row is None:
                raise NotFoundError(f"no user {username!r}")
            if not changes:
                return _user_row(row)
            conn.execute(sa.update(users).where(users.c.id == row.id).values(updated_s=now, **changes))
            if password_hash is not None or disabled:
                conn.execute(sa.update(sessions).where(sessions.c.user_id == row.id, sessions.c.revoked_s.is_(None))
                             .values(revoked_s=now))
            details = {k: v for k, v in changes.items() if k != "password_hash"}
            if password_hash is not None:
                details["password_changed"] = True
            self._append_audit(conn, actor, "user.update", username, details, now)
            updated = conn.execute(sa.select(users).where(users.c.id == row.id)).one()
        return _user_row(updated)

    def create_session(self, token_hash: str, user: UserRow, expires_s: float, client: str | None) -> SessionRow:
        now = time.time()
        with self._writing() as conn:
            conn.execute(sa.insert(sessions).values(token_hash=token_hash, user_id=user.id, created_s=now,
                                                    expires_s=expires_s, client=client))
            conn.execute(sa.delete(sessions).where(sessions.c.expires_s < now - 86400.0))  # housekeeping
            self._append_audit(conn, user.username, "session.login", user.username, {"client": client}, now)
        return SessionRow(token_hash, user.id, now, expires_s, client)

    def session_user(self, token_hash: str, now_s: float) -> tuple[SessionRow, UserRow] | None:
        """The live (unexpired, unrevoked) session with this token hash, and its enabled user."""
        with self._reading() as conn:
            row = conn.execute(
                sa.select(sessions, users.c.username, users.c.role, users.c.password_hash, users.c.disabled,
                          users.c.created_s.label("user_created_s"), users.c.updated_s.label("user_updated_s"))
                .join(users, users.c.id == sessions.c.user_id)
                .where(sessions.c.token_hash == token_hash)).first()
        if row is None or row.revoked_s is not None or row.expires_s <= now_s or row.disabled:
            return None
        session = SessionRow(row.token_hash, row.user_id, row.created_s, row.expires_s, row.client)
        user = UserRow(row.user_id, row.username, row.role, row.password_hash, bool(row.disabled),
                       row.user_created_s, row.user_updated_s)
        return session, user

    def revoke_session(self, token_hash: str, actor: str) -> bool:
        now = time.time()
        with self._writing() as conn:
            result = conn.execute(sa.update(sessions).where(sessions.c.token_hash == token_hash,
                                                            sessions.c.revoked_s.is_(None)).values(revoked_s=now))
            if result.rowcount:
                self._append_audit(conn, actor, "session.logout", actor, {}, now)
        return bool(result.rowcount)

    # -- audit log ----------------------------------------------------------------------------

    def _append_audit(self, conn: Connection, actor: str, action: str, target: str | None,
                      details: Mapping[str, Any], t_s: float) -> None:
        """Append one chained row inside the caller's write transaction."""
        if conn.dialect.name == "postgresql":  # other processes (cellwatch users ...) append too
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7240531)")
        last = conn.execute(sa.select(audit_log.c.id, audit_log.c.hash).order_by(audit_log.c.id.desc())
                            .limit(1)).first()
        prev_id, prev_hash = (int(last.id), str(last.hash)) if last else (0, GENESIS_HASH)
        details_text = json.dumps(_finite(dict(details)), sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False, allow_nan=False)
        # hash exactly what the columns will hold (cleaned, cut to their lengths)
        actor, action = clean_text(actor)[:64], clean_text(action)[:64]
        target = None if target is None else clean_text(target)[:200]
        row_id = prev_id + 1
        digest = audit_hash(prev_hash, canonical_audit_row(row_id, t_s, actor, action, target, details_text))
        conn.execute(sa.insert(audit_log).values(id=row_id, t_s=t_s, actor=actor, action=action, target=target,
                                                 details=details_text, prev_hash=prev_hash, hash=digest))

    def audit(self, actor: str, action: str, target: str | None = None,
              details: Mapping[str, Any] | None = None) -> None:
        """Append one audit row on its own (for changes made outside the store's own methods)."""
        with self._writing() as conn:
            self._append_audit(conn, actor, action, target, details or {}, time.time())

    def list_audit(self, *, limit: int = 100, offset: int = 0, actor: str | None = None,
                   action: str | None = None, since_s: float | None = None) -> tuple[int, list[AuditRow]]:
        where: list[Any] = []
        if actor is not None:
            where.append(audit_log.c.actor == actor)
        if action is not None:
            where.append(audit_log.c.action == action)
        if since_s is not None:
            where.append(audit_log.c.t_s >= since_s)
        with self._reading() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(audit_log).where(*where)).scalar() or 0
            rows = conn.execute(sa.select(audit_log).where(*where).order_by(audit_log.c.id.desc())
                                .limit(limit).offset(offset)).all()
        return int(total), [AuditRow(r.id, r.t_s, r.actor, r.action, r.target, json.loads(r.details),
                                     r.prev_hash, r.hash) for r in rows]

    def verify_audit_chain(self, chunk: int = 5000) -> AuditVerification:
        """Recompute the hash chain from the first row; the first broken row and why, if any."""
        prev_id, prev_hash, n = 0, GENESIS_HASH, 0
        with self._reading() as conn:
            while True:
                rows = conn.execute(sa.select(audit_log).where(audit_log.c.id > prev_id)
                                    .order_by(audit_log.c.id).limit(chunk)).all()
                if not rows:
                    return AuditVerification(True, n, prev_hash)
                for r in rows:
                    if r.id != prev_id + 1:
                        missing = f"row {prev_id + 1}" if r.id == prev_id + 2 else f"rows {prev_id + 1}..{r.id - 1}"
                        return AuditVerification(False, n, prev_hash, prev_id + 1, f"{missing} missing")
                    if r.prev_hash != prev_hash:
                        return AuditVerification(False, n, prev_hash, r.id, "prev_hash does not match the row before")
                    expected = audit_hash(prev_hash, canonical_audit_row(r.id, r.t_s, r.actor, r.action, r.target,
                                                                         r.details))
                    if r.hash != expected:
                        return AuditVerification(False, n, prev_hash, r.id, "row content does not match its hash")
                    prev_id, prev_hash, n = r.id, r.hash, n + 1

    # -- small persistent state (the event worker's cursor) ----------------------------------

    def get_state(self, key: str) -> str | None:
        with self._reading() as conn:
            return conn.execute(sa.select(service_state.c.value).where(service_state.c.key == key)).scalar()

    def set_state(self, key: str, value: str) -> None:
        with self._writing() as conn:
            statement = _insert(conn, service_state)
            conn.execute(statement.on_conflict_do_update(index_elements=["key"],
                                                         set_={"value": statement.excluded.value}),
                         {"key": key, "value": value})


def migrate(engine: Engine, source: str = "database") -> int:
    """Bring the schema up to the latest version; returns the version the database is at.

    One write transaction for the whole run (SQLite: BEGIN IMMEDIATE; PostgreSQL: an
    advisory lock), so two processes starting together cannot both apply a migration.
    """
    latest = MIGRATIONS[-1].version
    with engine.connect() as conn, conn.execution_options(**{_WRITE_OPTION: True}).begin():
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7240530)")
        metadata.create_all(conn, tables=[schema_version])
        current = int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)
        if current > latest:
            raise InputError(source, None, f"database schema version {current} is newer than this cellwatch "
                                           f"(which knows up to {latest}): upgrade cellwatch")
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            migration.apply(conn)
            conn.execute(sa.insert(schema_version).values(version=migration.version, applied_s=time.time(),
                                                          description=migration.description))
            log.info("database migrated version=%d description=%r", migration.version, migration.description)
    return latest


def open_store(url: str) -> Store:
    """Connect, migrate and return the store; an unusable database is an InputError naming it."""
    engine = _make_engine(url)
    shown = _redact_url(url)
    try:
        migrate(engine, shown)
        return Store(engine, url)
    except OperationalError as exc:
        engine.dispose()
        raise InputError(shown, None, f"cannot open the database: {exc.orig}") from None
    except SQLAlchemyError as exc:
        engine.dispose()
        raise InputError(shown, None, f"database error: {type(exc).__name__}: {exc}") from None
    except BaseException:
        engine.dispose()
        raise
