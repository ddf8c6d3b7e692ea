"""The live feed: ``/api/live``, Server-Sent Events (see service.live for the message types)."""

from __future__ import annotations

import time
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from service.auth import ViewerUser
from service.deps import ServicesDep
from service.schemas import Error

router = APIRouter(prefix="/api/live", tags=["live"], responses={401: {"model": Error}, 403: {"model": Error}})

_DESCRIPTION = """\
A `text/event-stream`. Each message has an `id`, an `event` type and JSON `data`:

* `event.created`, `event.updated`: `{"event": Event}`
* `event.detections`: the bursts of one event that just arrived, per sensor (for the hunt view)
* `sensor.health`: `{"sensor": Sensor}` when a sensor goes online or offline

Reconnecting with `Last-Event-ID` (EventSource does it) replays what was missed, as far
as the service still holds it. The stream ends when the session expires.
"""


@router.get("", response_class=StreamingResponse, summary="Live feed (Server-Sent Events)",
            description=_DESCRIPTION,
            responses={200: {"content": {"text/event-stream": {}}, "description": "the event stream"}})
async def live(
    principal: ViewerUser,
    services: ServicesDep,
    types: Annotated[str | None, Query(max_length=300, description="comma-separated message types to receive")] = None,
    last_event_id_query: Annotated[int | None, Query(alias="last_event_id", ge=0)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    wanted = None if not types else {t.strip() for t in types.split(",") if t.strip()}
    resume = last_event_id_query
    if last_event_id is not None and last_event_id.strip().isdigit():
        resume = int(last_event_id.strip())
    hub = services.hub
    sub = hub.subscribe(wanted, resume)
    token_hash = principal.token_hash

    async def still_allowed() -> bool:
        found = await anyio.to_thread.run_sync(services.store.session_user, token_hash, time.time())
        return found is not None

    return StreamingResponse(hub.stream(sub, still_allowed=still_allowed), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
