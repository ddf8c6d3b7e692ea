"""Events and their workflow: ``/api/events``.

Operators acknowledge an alert (someone is on it), escalate it (a search, "fouille", is
requested) and close it with an outcome; each step records who and when, with a note,
in the event's history and in the audit log, and goes out on the live feed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from service.auth import OperatorUser, ViewerUser
from service.deps import Services, ServicesDep
from service.schemas import (
    ActionIn,
    CloseIn,
    Error,
    EventDetail,
    EventList,
    EventOut,
    Outcome,
    Status,
    action_out,
    detection_out,
    event_out,
)
from service.store import ConflictError, EventFilter, NotFoundError

router = APIRouter(prefix="/api/events", tags=["events"],
                   responses={401: {"model": Error}, 403: {"model": Error}})

EventId = Annotated[str, Path(min_length=1, max_length=64, description="the event's id")]
Since = Annotated[float | None, Query(allow_inf_nan=False, description="UTC seconds: events still active then or later")]
Until = Annotated[float | None, Query(allow_inf_nan=False, description="UTC seconds: events started then or earlier")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


@router.get("", response_model=EventList, summary="Events, newest first, filtered")
def list_events(
    _: ViewerUser,
    services: ServicesDep,
    since: Since = None,
    until: Until = None,
    wing: Annotated[str | None, Query(max_length=64)] = None,
    floor: Annotated[int | None, Query(ge=-1000, le=1000)] = None,
    cell: Annotated[str | None, Query(max_length=64)] = None,
    zone: Annotated[str | None, Query(max_length=64)] = None,
    tech: Annotated[list[str] | None, Query(max_length=16, description="repeat for several")] = None,
    status_: Annotated[list[Status] | None, Query(alias="status", description="repeat for several")] = None,
    priority: Annotated[list[str] | None, Query(max_length=32, description="repeat for several")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> EventList:
    f = EventFilter(since_s=since, until_s=until, wing=wing, floor=floor, cell=cell, zone=zone, tech=tech or (),
                    status=status_ or (), priority=priority or (), limit=limit, offset=offset)
    total, rows = services.store.list_events(f)
    return EventList(total=total, limit=limit, offset=offset, items=[event_out(r) for r in rows])


@router.get("/{event_id}", response_model=EventDetail, responses={404: {"model": Error}},
            summary="One event with its contributing detections and its history")
def get_event(
    event_id: EventId,
    _: ViewerUser,
    services: ServicesDep,
    detections_limit: Annotated[int, Query(ge=0, le=10_000)] = 500,
) -> EventDetail:
    row = services.store.get_event(event_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no event {event_id!r}")
    n, dets = services.store.event_detections(event_id, detections_limit)
    return EventDetail(**event_out(row).model_dump(), n_detections=n, detections=[detection_out(d) for d in dets],
                       actions=[action_out(a) for a in services.store.event_actions_of(event_id)])


def _transition(services: Services, event_id: str, action: str, username: str, note: str | None,
                outcome: Outcome | None = None) -> EventOut:
    try:
        row = services.store.transition_event(event_id, action, username, note=note, outcome=outcome)
    except NotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no event {event_id!r}") from None
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    out = event_out(row)
    services.hub.publish("event.updated", {"event": out.model_dump(mode="json")})
    return out


_WORKFLOW_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": Error}, 409: {"model": Error, "description": "not allowed in the event's current status"}}


@router.post("/{event_id}/acknowledge", response_model=EventOut, responses=_WORKFLOW_ERRORS,
             summary="Acknowledge a new event (operator)")
def acknowledge(event_id: EventId, principal: OperatorUser, services: ServicesDep,
                body: ActionIn | None = None) -> EventOut:
    return _transition(services, event_id, "acknowledge", principal.username, body.note if body else None)


@router.post("/{event_id}/escalate", response_model=EventOut, responses=_WORKFLOW_ERRORS,
             summary="Escalate to a search request (operator)")
def escalate(event_id: EventId, principal: OperatorUser, services: ServicesDep,
             body: ActionIn | None = None) -> EventOut:
    return _transition(services, event_id, "escalate", principal.username, body.note if body else None)


@router.post("/{event_id}/close", response_model=EventOut, responses=_WORKFLOW_ERRORS,
             summary="Close with an outcome: phone_found, nothing_found or false_alarm (operator)")
def close(event_id: EventId, body: CloseIn, principal: OperatorUser, services: ServicesDep) -> EventOut:
    return _transition(services, event_id, "close", principal.username, body.note, body.outcome)
