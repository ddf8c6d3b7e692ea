"""Activity per cell (and zone): ``/api/cells`` for the heat map, ``/api/cells/{id}/history``,
and ``/api/cells/ranking``: the cells to search next, with the evidence behind each rank.

Why a ranking: a search ("fouille") takes a team and an hour, and staff can run only a
few a day. The ranking weighs each event of a cell by how sure the locator was
(confidence), how recent it is (halving every quarter of the period) and what the
workflow already learnt: an event closed with a phone found or as a false alarm no
longer calls for a search, one closed with nothing found still counts half (a phone
may be well hidden). The numbers behind the score go out with it, so an officer can
see why a cell is first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from service.auth import ViewerUser
from service.deps import ServicesDep
from service.schemas import (
    CellHistory,
    CellRankingOut,
    Error,
    LastSearchOut,
    PlaceActivityList,
    RankedCellOut,
    RankingPeriod,
    event_out,
    place_activity_out,
)
from service.store import EventFilter, EventRow

router = APIRouter(prefix="/api/cells", tags=["cells"], responses={401: {"model": Error}, 403: {"model": Error}})

Since = Annotated[float | None, Query(allow_inf_nan=False, description="UTC seconds")]
Until = Annotated[float | None, Query(allow_inf_nan=False, description="UTC seconds")]

PERIOD_S: dict[str, float] = {"24h": 86_400.0, "7d": 7 * 86_400.0, "30d": 30 * 86_400.0}
BIN_S: dict[str, float] = {"24h": 3_600.0, "7d": 6 * 3_600.0, "30d": 86_400.0}  # 24, 28 and 30 bins
OPEN_WEIGHT = 1.0
OUTCOME_WEIGHT = {"nothing_found": 0.5, "phone_found": 0.0, "false_alarm": 0.0}
UNKNOWN_CONFIDENCE = 0.5  # an event the locator gave no confidence for
MAX_RANKED_EVENTS = 20_000
PAGE_EVENTS = 2_000
N_EVIDENCE_EVENTS = 10


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


@dataclass
class _CellTally:
    """What one cell's events add up to over the period."""

    place: str
    wing: str | None
    floor: int | None
    score: float = 0.0
    n_events: int = 0
    n_open: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    n_bursts: int = 0
    first_seen_s: float = math.inf
    last_seen_s: float = -math.inf
    confidences: list[float] = field(default_factory=list)
    techs: set[str] = field(default_factory=set)
    last_search: tuple[float, str | None, str | None] | None = None
    weighted: list[tuple[float, float, str]] = field(default_factory=list)  # (weight, t_end_s, event_id)
    activity: list[int] = field(default_factory=list)


def event_weight(row: EventRow, until_s: float, half_life_s: float) -> float:
    """Confidence x recency x workflow weight of one event (see the module's docstring)."""
    confidence = row.confidence if row.confidence is not None and math.isfinite(row.confidence) else UNKNOWN_CONFIDENCE
    confidence = min(max(confidence, 0.0), 1.0)
    age_s = max(0.0, until_s - row.t_end_s)
    recency = 0.5 ** (age_s / half_life_s)
    workflow = OPEN_WEIGHT if row.status != "closed" else OUTCOME_WEIGHT.get(row.outcome or "", OPEN_WEIGHT)
    return confidence * recency * workflow


def rank_cells(rows: Iterable[EventRow], since_s: float, until_s: float, period: str) -> list[RankedCellOut]:
    """The cells of these events, most worth searching first (score, then latest activity)."""
    period_s = until_s - since_s
    half_life_s = period_s / 4.0
    bin_s = BIN_S[period]
    n_bins = max(1, round(period_s / bin_s))
    cells: dict[str, _CellTally] = {}
    for row in rows:
        if row.cell is None:
            continue
        tally = cells.get(row.cell)
        if tally is None:
            tally = cells[row.cell] = _CellTally(row.cell, row.wing, row.floor, activity=[0] * n_bins)
        weight = event_weight(row, until_s, half_life_s)
        tally.score += weight
        tally.n_events += 1
        if row.status != "closed":
            tally.n_open += 1
        elif row.outcome is not None:
            tally.outcomes[row.outcome] = tally.outcomes.get(row.outcome, 0) + 1
            closed_s = row.status_changed_s if row.status_changed_s is not None else row.updated_s
            if tally.last_search is None or closed_s > tally.last_search[0]:
                tally.last_search = (closed_s, row.outcome, row.status_by)
        tally.n_bursts += row.n_bursts
        tally.first_seen_s = min(tally.first_seen_s, row.t_start_s)
        tally.last_seen_s = max(tally.last_seen_s, row.t_end_s)
        if row.confidence is not None and math.isfinite(row.confidence):
            tally.confidences.append(row.confidence)
        tally.techs.add(row.tech)
        tally.weighted.append((weight, row.t_end_s, row.event_id))
        index = min(n_bins - 1, max(0, math.floor((row.t_start_s - since_s) / bin_s)))
        tally.activity[index] += 1
    ordered = sorted(cells.values(), key=lambda c: (-c.score, -c.last_seen_s, c.place))
    out = []
    for rank, c in enumerate(ordered, start=1):
        heaviest = sorted(c.weighted, key=lambda w: (-w[0], -w[1], w[2]))[:N_EVIDENCE_EVENTS]
        search = None if c.last_search is None else LastSearchOut(
            t_s=c.last_search[0], outcome=c.last_search[1], by=c.last_search[2])  # type: ignore[arg-type]
        out.append(RankedCellOut(
            rank=rank, place=c.place, wing=c.wing, floor=c.floor, score=round(c.score, 6), n_events=c.n_events,
            n_open=c.n_open, n_phone_found=c.outcomes.get("phone_found", 0),
            n_nothing_found=c.outcomes.get("nothing_found", 0), n_false_alarm=c.outcomes.get("false_alarm", 0),
            n_bursts=c.n_bursts, first_seen_s=c.first_seen_s, last_seen_s=c.last_seen_s,
            max_confidence=max(c.confidences) if c.confidences else None,
            mean_confidence=sum(c.confidences) / len(c.confidences) if c.confidences else None,
            techs=sorted(c.techs), last_search=search, event_ids=[w[2] for w in heaviest], activity=c.activity))
    return out


@router.get("/ranking", response_model=CellRankingOut,
            summary="The cells to search next over a period, with the evidence behind each rank")
def ranking(
    _: ViewerUser,
    services: ServicesDep,
    period: RankingPeriod = "24h",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> CellRankingOut:
    until_s = time.time()
    since_s = until_s - PERIOD_S[period]
    rows: dict[str, EventRow] = {}
    total = 0
    while len(rows) < MAX_RANKED_EVENTS:
        total, page = services.store.list_events(EventFilter(since_s=since_s, limit=PAGE_EVENTS, offset=len(rows)))
        for row in page:
            rows.setdefault(row.event_id, row)
        if len(page) < PAGE_EVENTS:
            break
    items = rank_cells(rows.values(), since_s, until_s, period)[:limit]
    return CellRankingOut(period=period, since_s=since_s, until_s=until_s, half_life_s=PERIOD_S[period] / 4.0,
                          bin_s=BIN_S[period], n_bins=max(1, round(PERIOD_S[period] / BIN_S[period])),
                          n_events_considered=len(rows), truncated=total > len(rows), items=items)
