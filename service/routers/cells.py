"""Activity per cell (and zone): ``/api/cells`` for the heat map, ``/api/cells/{id}/history``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from service.auth import ViewerUser
from service.deps import ServicesDep
from service.schemas import CellHistory, Error, PlaceActivityList, event_out, place_activity_out
from service.store import EventFilter

router = APIRouter(prefix="/api/cells", tags=["cells"], responses={401: {"model": Error}, 403: {"model": Error}})

Since = Annotated[float | None, Query(allow_inf_nan=False, description="UTC seconds")]
Until = Annotated[float | None, Query(allow_inf_nan=False, description="UTC seconds")]


@router.get("", response_model=PlaceActivityList, summary="Events per cell or zone over a period")
def activity(_: ViewerUser, services: ServicesDep, since: Since = None, until: Until = None) -> PlaceActivityList:
    rows = services.store.place_activity(since, until)
    items = sorted((place_activity_out(services.site, a) for a in rows),
                   key=lambda a: (-a.n_open, -a.n_events, -a.last_t_s, a.place))
    return PlaceActivityList(since_s=since, until_s=until, items=items)


@router.get("/{cell_id}/history", response_model=CellHistory, responses={404: {"model": Error}},
            summary="The events located in one cell (or zone), newest first")
def history(
    cell_id: Annotated[str, Path(min_length=1, max_length=64)],
    _: ViewerUser,
    services: ServicesDep,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> CellHistory:
    site = services.site
    try:
        place = site.places[site.place_index(cell_id)]
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no cell or zone {cell_id!r} in the site plan") from None
    total, rows = services.store.list_events(EventFilter(since_s=since, until_s=until, place=cell_id, limit=limit,
                                                         offset=offset))
    return CellHistory(place=place.id, kind=place.kind, wing=place.wing, floor=place.floor, total=total,
                       items=[event_out(r) for r in rows])
