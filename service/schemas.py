"""The API's public shapes (requests and responses), kept apart from the storage rows.

Storage may gain columns or change them; these models are the contract the dashboard
and outside tools read (they are what the OpenAPI schema documents). Each ``*_out``
function turns a storage row into its public form.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from calibration.site import Site
from service.store import (
    AuditRow,
    EventActionRow,
    EventRow,
    PlaceActivity,
    SensorHealthRow,
    StoredDetection,
    UserRow,
)

RoleName = Literal["viewer", "operator", "admin"]
Status = Literal["new", "acknowledged", "escalated", "closed"]
Outcome = Literal["phone_found", "nothing_found", "false_alarm"]
MAX_NOTE_CHARS = 2000


class In(BaseModel):
    """Request bodies: unknown fields are errors (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


class Error(BaseModel):
    detail: str = Field(description="what went wrong, in one sentence")


# -- auth and users ---------------------------------------------------------------------------


class LoginIn(In):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    username: str
    role: RoleName
    disabled: bool
    created_s: float


class LoginOut(BaseModel):
    token: str = Field(description="send as 'Authorization: Bearer <token>' (browsers use the cookie instead)")
    token_type: Literal["bearer"] = "bearer"
    expires_s: float = Field(description="UTC seconds when the session ends")
    user: UserOut


class MeOut(UserOut):
    session_expires_s: float


class PasswordChangeIn(In):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class UserCreateIn(In):
    username: str = Field(min_length=1, max_length=64)
    role: RoleName
    password: str = Field(min_length=1, max_length=1024)


class UserUpdateIn(In):
    role: RoleName | None = None
    password: str | None = Field(None, min_length=1, max_length=1024)
    disabled: bool | None = None


class UserList(BaseModel):
    items: list[UserOut]


def user_out(user: UserRow) -> UserOut:
    return UserOut(username=user.username, role=user.role, disabled=user.disabled,  # type: ignore[arg-type]
                   created_s=user.created_s)


# -- events -----------------------------------------------------------------------------------


class SensorLevel(BaseModel):
    sensor_id: str
    rssi_dbm: float | None = None
    n_bursts: int | None = None


class Candidate(BaseModel):
    place: str
    p: float


class EventOut(BaseModel):
    event_id: str
    t_start_s: float
    t_end_s: float
    tech: str
    freq_hz: float
    channel: str | None
    n_bursts: int
    wing: str | None
    floor: int | None
    cell: str | None
    zone: str | None
    place_kind: str | None
    priority: str = Field(description="alert policy: 'alert' for a cell; e.g. 'staff' or 'low' for zones")
    confidence: float | None
    candidates: list[Candidate]
    sensors: list[SensorLevel]
    session_ids: list[str]
    status: Status
    outcome: Outcome | None
    note: str | None = Field(description="the note given with the last action")
    status_by: str | None = Field(description="who made the last status change ('system' for automatic ones)")
    status_changed_s: float | None
    created_s: float
    updated_s: float
    revision: int = Field(description="increases with every update of the event")


class EventList(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[EventOut]


class DetectionOut(BaseModel):
    id: int
    node_id: str
    sensor_id: str
    t_start_s: float
    duration_s: float
    freq_hz: float
    bandwidth_hz: float
    power_dbfs: float
    rssi_dbm: float | None
    snr_db: float
    tech: str
    channel: str | None
    received_s: float


class EventActionOut(BaseModel):
    t_s: float
    username: str
    action: str
    from_status: Status
    to_status: Status
    outcome: Outcome | None
    note: str | None


class EventDetail(EventOut):
    n_detections: int
    detections: list[DetectionOut] = Field(description="the contributing detections, in time order (first ones)")
    actions: list[EventActionOut]


class ActionIn(In):
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS)

    @field_validator("note")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else value.strip()


class CloseIn(ActionIn):
    outcome: Outcome


def _finite_or_none(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def event_out(row: EventRow) -> EventOut:
    sensors = []
    for s in row.sensors:
        if isinstance(s, dict) and s.get("sensor_id") is not None:
            n = s.get("n_bursts")
            sensors.append(SensorLevel(sensor_id=str(s["sensor_id"]), rssi_dbm=_finite_or_none(s.get("rssi_dbm")),
                                       n_bursts=int(n) if isinstance(n, int | float) and math.isfinite(n) else None))
    candidates = [Candidate(place=str(c["place"]), p=_finite_or_none(c.get("p")) or 0.0)
                  for c in row.candidates if isinstance(c, dict) and c.get("place") is not None]
    return EventOut(
        event_id=row.event_id, t_start_s=row.t_start_s, t_end_s=row.t_end_s, tech=row.tech, freq_hz=row.freq_hz,
        channel=row.channel, n_bursts=row.n_bursts, wing=row.wing, floor=row.floor, cell=row.cell, zone=row.zone,
        place_kind=row.place_kind, priority=row.priority, confidence=row.confidence, candidates=candidates,
        sensors=sensors, session_ids=row.session_ids, status=row.status,  # type: ignore[arg-type]
        outcome=row.outcome, note=row.note, status_by=row.status_by,  # type: ignore[arg-type]
        status_changed_s=row.status_changed_s, created_s=row.created_s, updated_s=row.updated_s,
        revision=row.revision)


def detection_out(stored: StoredDetection) -> DetectionOut:
    d = stored.detection
    return DetectionOut(id=stored.id, node_id=stored.node_id, sensor_id=d.sensor_id, t_start_s=d.t_start_s,
                        duration_s=d.duration_s, freq_hz=d.freq_hz, bandwidth_hz=d.bandwidth_hz,
                        power_dbfs=d.power_dbfs, rssi_dbm=d.rssi_dbm, snr_db=d.snr_db, tech=d.tech,
                        channel=d.channel, received_s=stored.received_s)


def action_out(a: EventActionRow) -> EventActionOut:
    return EventActionOut(t_s=a.t_s, username=a.username, action=a.action, from_status=a.from_status,  # type: ignore[arg-type]
                          to_status=a.to_status, outcome=a.outcome, note=a.note)  # type: ignore[arg-type]


# -- places, cells --------------------------------------------------------------------------


class PlaceActivityOut(BaseModel):
    place: str
    kind: str | None
    wing: str | None
    floor: int | None
    n_events: int
    n_open: int
    last_t_s: float
    max_confidence: float | None


class PlaceActivityList(BaseModel):
    since_s: float | None
    until_s: float | None
    items: list[PlaceActivityOut] = Field(description="places with events, most open events first")


class CellHistory(BaseModel):
    place: str
    kind: str
    wing: str | None
    floor: int
    total: int
    items: list[EventOut]


def place_activity_out(site: Site, a: PlaceActivity) -> PlaceActivityOut:
    try:
        place = site.places[site.place_index(a.place)]
        kind, wing, floor = place.kind, place.wing, place.floor
    except KeyError:
        kind, wing, floor = None, None, None
    return PlaceActivityOut(place=a.place, kind=kind, wing=wing, floor=floor, n_events=a.n_events, n_open=a.n_open,
                            last_t_s=a.last_t_s, max_confidence=a.max_confidence)


# -- sensors --------------------------------------------------------------------------------


class BandOut(BaseModel):
    band: str
    noise_floor_dbfs: float
    watched_fraction: float
    revisit_s: float


class DeliveryOut(BaseModel):
    n_pending: int = Field(description="detections waiting in the node's outbox")
    n_overflow_dropped: int = Field(description="detections the node discarded because its outbox was full")
    n_write_failures: int = Field(description="detections lost because the node could not write its outbox")
    n_rejected: int
    n_invalid: int


class SensorOut(BaseModel):
    sensor_id: str
    in_site: bool = Field(description="false for a sensor that reports but is not in the site plan")
    wing: str | None
    floor: int | None
    place_id: str | None
    position: list[float] | None
    state: Literal["online", "offline"] = Field(description="online while its last heartbeat is recent enough")
    node_id: str | None
    last_heartbeat_s: float | None = Field(description="service time of the last heartbeat (null: never heard)")
    heartbeat_age_s: float | None
    last_detection_s: float | None
    source_state: str | None = Field(description="the radio source's state as the node reports it")
    bands: list[BandOut] = Field(description="noise floor per band")
    n_dropped_samples: int | None
    n_overload_blocks: int | None
    clock_offset_s: float | None
    message: str | None
    delivery: DeliveryOut | None


class SensorList(BaseModel):
    offline_after_s: float
    n_online: int
    n_offline: int
    items: list[SensorOut]


def sensor_views(site: Site, rows: list[SensorHealthRow], last_detection: dict[str, float], now_s: float,
                 offline_after_s: float) -> list[SensorOut]:
    """Every site sensor (heard or not) and every reporting sensor, with its health."""
    by_id = {r.sensor_id: r for r in rows}
    out: list[SensorOut] = []
    ids = [s.id for s in site.sensors] + sorted(set(by_id) - {s.id for s in site.sensors})
    site_sensors = {s.id: s for s in site.sensors}
    for sensor_id in ids:
        s = site_sensors.get(sensor_id)
        r = by_id.get(sensor_id)
        age = None if r is None else max(0.0, now_s - r.received_s)
        online = age is not None and age < offline_after_s
        hb = None if r is None else r.heartbeat
        out.append(SensorOut(
            sensor_id=sensor_id, in_site=s is not None, wing=None if s is None else s.wing,
            floor=None if s is None else s.floor, place_id=None if s is None else s.place_id,
            position=None if s is None else [float(v) for v in s.position],
            state="online" if online else "offline", node_id=None if r is None else r.node_id,
            last_heartbeat_s=None if r is None else r.received_s, heartbeat_age_s=age,
            last_detection_s=last_detection.get(sensor_id),
            source_state=None if hb is None else hb.source_state,
            bands=[] if hb is None else [BandOut(band=b.band, noise_floor_dbfs=b.noise_floor_dbfs,
                                                 watched_fraction=b.watched_fraction, revisit_s=b.revisit_s)
                                         for b in hb.bands],
            n_dropped_samples=None if hb is None else hb.n_dropped_samples,
            n_overload_blocks=None if hb is None else hb.n_overload_blocks,
            clock_offset_s=None if hb is None else hb.clock_offset_s,
            message=None if hb is None else (hb.message or None),
            delivery=None if r is None else DeliveryOut(**r.sender.to_dict())))
    return out


# -- site plan --------------------------------------------------------------------------------


class WingOut(BaseModel):
    id: str
    name: str | None


class PlaceOut(BaseModel):
    id: str
    kind: str = Field(description="'cell', or the zone's kind (corridor, staff, stairwell, yard, outside, ...)")
    wing: str | None
    floor: int
    polygon: list[list[float]] = Field(description="corners [x_m, y_m], not closed")
    centroid: list[float]
    area_m2: float


class WallOut(BaseModel):
    floor: int
    points: list[list[float]]
    loss_db: float
    material: str | None


class SiteSensorOut(BaseModel):
    id: str
    wing: str | None
    floor: int
    position: list[float]
    height_m: float
    place_id: str


class Bounds(BaseModel):
    min_x_m: float
    min_y_m: float
    max_x_m: float
    max_y_m: float


class SiteOut(BaseModel):
    name: str
    floor_height_m: float
    floors: list[int]
    wings: list[WingOut]
    places: list[PlaceOut]
    walls: list[WallOut]
    sensors: list[SiteSensorOut]
    bounds: Bounds


def site_out(site: Site) -> SiteOut:
    points = [p.polygon for p in site.places] + [w.points for w in site.walls]
    xs = [float(v) for arr in points for v in arr[:, 0]] or [0.0]
    ys = [float(v) for arr in points for v in arr[:, 1]] or [0.0]
    return SiteOut(
        name=site.name, floor_height_m=site.floor_height_m, floors=list(site.floors),
        wings=[WingOut(id=w, name=site.wing_names.get(w)) for w in site.wings],
        places=[PlaceOut(id=p.id, kind=p.kind, wing=p.wing, floor=p.floor, polygon=p.polygon.tolist(),
                         centroid=[float(v) for v in p.centroid], area_m2=p.area_m2) for p in site.places],
        walls=[WallOut(floor=w.floor, points=w.points.tolist(), loss_db=w.loss_db, material=w.material)
               for w in site.walls],
        sensors=[SiteSensorOut(id=s.id, wing=s.wing, floor=s.floor, position=[float(v) for v in s.position],
                               height_m=s.height_m, place_id=s.place_id) for s in site.sensors],
        bounds=Bounds(min_x_m=min(xs), min_y_m=min(ys), max_x_m=max(xs), max_y_m=max(ys)))


# -- audit, health ------------------------------------------------------------------------------


class AuditOut(BaseModel):
    id: int
    t_s: float
    actor: str
    action: str
    target: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditList(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[AuditOut] = Field(description="newest first")


class AuditVerifyOut(BaseModel):
    ok: bool
    n_rows: int
    head_hash: str = Field(description="hash of the last good row: keep a copy elsewhere to detect truncation")
    first_bad_id: int | None
    problem: str | None


def audit_out(r: AuditRow) -> AuditOut:
    return AuditOut(id=r.id, t_s=r.t_s, actor=r.actor, action=r.action, target=r.target, details=r.details,
                    prev_hash=r.prev_hash, hash=r.hash)


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "error"]
    ingest: Literal["running", "disabled"]
    engine: Literal["running", "stopped"]
    uptime_s: float


# -- cells to search next (dashboard history) -------------------------------------------------------


RankingPeriod = Literal["24h", "7d", "30d"]


class LastSearchOut(BaseModel):
    t_s: float = Field(description="when the latest closed event of the cell was closed")
    outcome: Outcome | None
    by: str | None


class RankedCellOut(BaseModel):
    rank: int = Field(description="1 is the cell to search first")
    place: str
    wing: str | None
    floor: int | None
    score: float = Field(description="sum over the cell's events of confidence x recency x workflow weight")
    n_events: int
    n_open: int = Field(description="events not closed yet")
    n_phone_found: int
    n_nothing_found: int
    n_false_alarm: int
    n_bursts: int
    first_seen_s: float
    last_seen_s: float
    max_confidence: float | None
    mean_confidence: float | None
    techs: list[str]
    last_search: LastSearchOut | None
    event_ids: list[str] = Field(description="the cell's events that weigh most in the score, heaviest first")
    activity: list[int] = Field(description="events per time bin over the period, oldest bin first")


class CellRankingOut(BaseModel):
    period: RankingPeriod
    since_s: float
    until_s: float
    half_life_s: float = Field(description="an event this old weighs half as much as one happening now")
    bin_s: float
    n_bins: int
    n_events_considered: int
    truncated: bool = Field(description="true when the period held more events than the ranking reads")
    items: list[RankedCellOut]


# -- evidence: spectrogram and export (service.evidence) ------------------------------------------


class SpectrogramBurst(BaseModel):
    t_start_s: float = Field(description="UTC start of the burst (the detection's)")
    duration_s: float
    freq_hz: float = Field(description="the burst's centre")
    bandwidth_hz: float


class SpectrogramOut(BaseModel):
    sensor_id: str
    center_freq_hz: int = Field(description="the receiver's tuning when the snippet was taken")
    sample_rate_hz: float
    t_s: list[float] = Field(description="UTC seconds: the centre of each row of power_db")
    freq_hz: list[float] = Field(description="absolute Hz: the centre of each column of power_db")
    power_db: list[list[float]] = Field(description="power per cell, dBFS per FFT bin; one row per t_s, "
                                                    "one column per freq_hz")
    t_start_s: float = Field(description="UTC of the snippet's first sample")
    burst: SpectrogramBurst
    sensors: list[str] = Field(description="the sensors with snippets of this event (choose one with ?sensor_id=)")


class EvidenceFileOut(BaseModel):
    name: str = Field(description="path inside the zip")
    sha256: str
    bytes: int


class EvidenceManifestOut(BaseModel):
    files: list[EvidenceFileOut] = Field(description="every file of the zip, SHA256SUMS included")
    zip_sha256: str = Field(description="SHA-256 of the zip GET /api/events/{id}/evidence returns now")
