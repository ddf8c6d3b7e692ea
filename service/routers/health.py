"""``/healthz`` (no session: for load balancers and supervisors) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import hmac
import time
from dataclasses import fields
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from service.auth import Principal, current_principal, request_token
from service.deps import Services, ServicesDep
from service.passwords import token_hash
from service.schemas import Error, HealthOut, sensor_views

router = APIRouter(tags=["health"])

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/healthz", response_model=HealthOut, responses={503: {"model": HealthOut}},
            summary="Is the service working (no session needed)")
def healthz(services: ServicesDep) -> JSONResponse:
    database: Literal["ok", "error"]
    try:
        with services.store.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        database = "ok"
    except Exception:
        database = "error"
    engine: Literal["running", "stopped"] = "running" if services.worker.alive else "stopped"
    body = HealthOut(status="ok" if database == "ok" and engine == "running" else "degraded", database=database,
                     ingest="running" if services.ingest is not None else "disabled", engine=engine,
                     uptime_s=time.time() - services.started_s)
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ok" else 503)


def metrics_access(request: Request, services: ServicesDep) -> Principal | None:
    """A session, or the scraper's token from ``http.metrics_token_file``."""
    expected = services.metrics_token_hash
    token = request_token(request)
    if expected is not None and token is not None and hmac.compare_digest(token_hash(token), expected):
        return None
    return current_principal(request, services)


def _metric(lines: list[str], name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
    lines.append(f"# HELP {name} {help_}")
    lines.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        lines.append(f"{name}{labels} {value:.17g}")


def render_metrics(services: Services) -> str:
    lines: list[str] = []
    store = services.store
    _metric(lines, "cellwatch_detections_stored", "gauge", "Detections held in the database.",
            [("", store.n_detections)])
    if services.ingest is not None:
        stats = services.ingest.stats()
        for f in fields(stats):
            name = f.name.removeprefix("n_")
            kind = "gauge" if name == "connections" else "counter"
            suffix = "" if kind == "gauge" else "_total"
            _metric(lines, f"cellwatch_ingest_{name}{suffix}", kind, f"ZeroMQ ingest: {name.replace('_', ' ')}.",
                    [("", getattr(stats, f.name))])
    counts = store.event_counts()
    _metric(lines, "cellwatch_events", "gauge", "Events by workflow status.",
            [(f'{{status="{s}"}}', counts.get(s, 0)) for s in ("new", "acknowledged", "escalated", "closed")])
    now = time.time()
    views = sensor_views(services.site, store.sensor_health(), {}, now, services.settings.sensors.offline_after_s)
    n_online = sum(1 for v in views if v.state == "online")
    _metric(lines, "cellwatch_sensors", "gauge", "Sensors by state.",
            [('{state="online"}', n_online), ('{state="offline"}', len(views) - n_online)])
    w = services.worker.stats()
    _metric(lines, "cellwatch_engine_detections_total", "counter", "Detections fed to the event engine.",
            [("", w.n_detections_fed)])
    _metric(lines, "cellwatch_engine_events_created_total", "counter", "Events created.", [("", w.n_events_created)])
    _metric(lines, "cellwatch_engine_events_updated_total", "counter", "Event updates.", [("", w.n_events_updated)])
    _metric(lines, "cellwatch_engine_errors_total", "counter", "Engine failures (detections skipped).",
            [("", w.n_engine_errors)])
    _metric(lines, "cellwatch_engine_store_errors_total", "counter", "Failed event writes (retried).",
            [("", w.n_store_errors)])
    _metric(lines, "cellwatch_engine_lag_detections", "gauge", "Detections stored but not yet processed.",
            [("", w.lag_detections)])
    latency = [(f'{{quantile="{q}"}}', v) for q, v in (("0.5", w.latency_p50_s), ("0.95", w.latency_p95_s))
               if v is not None]
    _metric(lines, "cellwatch_event_latency_seconds", "gauge",
            "Detection stored -> its event on the live feed, over the last 5000 detections.", latency)
    hub = services.hub
    _metric(lines, "cellwatch_live_subscribers", "gauge", "Open live feed streams.", [("", hub.n_subscribers)])
    _metric(lines, "cellwatch_live_messages_total", "counter", "Live feed messages published.",
            [("", hub.n_published)])
    _metric(lines, "cellwatch_live_dropped_subscribers_total", "counter", "Streams cut for being too slow.",
            [("", hub.n_dropped_subscribers)])
    _metric(lines, "cellwatch_login_refused_total", "counter", "Logins refused by the rate limit.",
            [("", services.limiter.n_refused)])
    _metric(lines, "cellwatch_uptime_seconds", "gauge", "Seconds since the service started.",
            [("", now - services.started_s)])
    return "\n".join(lines) + "\n"


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics (text format 0.0.4)",
            responses={200: {"content": {PROMETHEUS_TEXT: {}}}, 401: {"model": Error}})
def metrics(_: Annotated[Principal | None, Depends(metrics_access)], services: ServicesDep) -> PlainTextResponse:
    return PlainTextResponse(render_metrics(services), media_type=PROMETHEUS_TEXT)
