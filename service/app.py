"""The web service: ``create_app(settings)`` builds the FastAPI application around the running parts.

Nothing is built at import time. :func:`build_services` opens what the settings name (site
plan, calibration, database with its migrations, event engine, ZeroMQ ingest) and
:func:`create_app` wires them into an application whose lifespan starts the event worker
and the ingest and stops them in the right order: the ingest first (nodes keep what is not
acknowledged), then the worker, which finishes what was stored.

Every route but ``/healthz`` needs a session (service.auth); every response carries
security headers (a strict Content-Security-Policy: the dashboard must load its scripts
and styles from files, not inline); errors are JSON ``{"detail": "..."}``, and bad input
is a 4xx, never a 500. The OpenAPI schema is served to logged-in users at
``/api/openapi.json`` (no CDN-hosted docs page: control rooms are offline).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from calibration.config import field_path
from calibration.site import Site, load_site
from dsp.errors import InputError
from dsp.wire import CurveKeyPair
from service.auth import LoginLimiter, ViewerUser
from service.deps import Services
from service.live import LiveHub
from service.passwords import Passwords, token_hash
from service.routers import (
    audit,
    auth,
    cells,
    dashboard,
    events,
    evidence,
    health,
    live,
    sensors,
    site,
    users,
)
from service.sensor_monitor import AllowedKeysReloader, SensorMonitor
from service.settings import ServiceSettings
from service.store import open_store
from service.worker import EngineLike, EventWorker

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'")
SECURITY_HEADERS = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
)

EngineFactory = Callable[[Site, ServiceSettings, Any], EngineLike]


def version() -> str:
    try:
        return metadata.version("cellwatch")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def default_engine_factory(site_: Site, settings: ServiceSettings, calibration: Any) -> EngineLike:
    """The real event engine (service.events) configured by ``[engine]`` and ``[alerts]``."""
    from service.events import EngineConfig, EventEngine

    options = dict(settings.engine)
    if settings.alerts:
        options["alerts"] = {**dict(options.get("alerts") or {}), **settings.alerts}
    try:
        config = EngineConfig.from_dict(options)
    except InputError as exc:
        field = exc.field or ""
        if not (field.startswith("alerts") and settings.alerts):  # [alerts] is a top-level table
            field = f"engine.{field}".rstrip(".")
        raise InputError(settings.source, field, exc.problem) from None
    except (TypeError, ValueError) as exc:
        raise InputError(settings.source, "engine", str(exc).splitlines()[0]) from None
    return EventEngine(site_, calibration=calibration, survey=settings.survey, config=config)


def _load_calibration(path: Path | None) -> Any:
    if path is None:
        return None
    from calibration.gain import CalibrationTable

    return CalibrationTable.from_file(path)


def _read_metrics_token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InputError(str(path), "http.metrics_token_file", f"cannot read: {exc.strerror}") from None
    if len(token) < 20:
        raise InputError(str(path), "http.metrics_token_file", "the token must have at least 20 characters")
    return token_hash(token)


@dataclass(frozen=True)
class Prepared:
    """What the configuration names, read and checked, before anything is opened or bound."""

    site: Site
    calibration: Any
    engine: EngineLike
    metrics_token_hash: str | None
    server_keys: CurveKeyPair | None
    allowed_keys: dict[str, bytes] | None


def prepare(settings: ServiceSettings, *, engine_factory: EngineFactory | None = None) -> Prepared:
    """Read the site, calibration, keys and engine configuration; raises InputError naming the
    file and field at fault. Nothing is written: a configuration mistake leaves no trace."""
    from service.keys import load_allowed_keys, load_keypair

    site_ = load_site(settings.site)
    calibration = _load_calibration(settings.calibration)
    metrics_token_hash = _read_metrics_token(settings.http.metrics_token_file)
    engine = (engine_factory or default_engine_factory)(site_, settings, calibration)
    cfg = settings.ingest
    server_keys = allowed_keys = None
    if cfg.enabled and not cfg.insecure:
        assert cfg.server_key is not None and cfg.allowed_keys_dir is not None
        server_keys, allowed_keys = load_keypair(cfg.server_key), load_allowed_keys(cfg.allowed_keys_dir)
    return Prepared(site_, calibration, engine, metrics_token_hash, server_keys, allowed_keys)


def build_services(settings: ServiceSettings, *, engine_factory: EngineFactory | None = None,
                   prepared: Prepared | None = None) -> Services:
    """Open everything the settings name (database migrated, ingest made, not yet bound)."""
    from service.ingest import IngestServer
    from service.keys import load_allowed_keys

    p = prepared or prepare(settings, engine_factory=engine_factory)
    site_, calibration, engine, cfg = p.site, p.calibration, p.engine, settings.ingest
    store = open_store(settings.database_url)
    try:
        hub = LiveHub()
        rssi = getattr(calibration, "rssi_dbm", None)
        worker = EventWorker(store, engine, hub, flush_interval_s=settings.worker.flush_interval_s,
                             rebuild_window_s=settings.worker.rebuild_window_s, max_batch=settings.worker.max_batch,
                             rssi_dbm=rssi)
        store.add_detection_listener(worker.notify)
        ingest = None
        if cfg.enabled:
            if cfg.insecure:
                ingest = IngestServer(store, bind=cfg.bind, insecure=True, sensors_by_node=cfg.sensors_by_node)
            else:
                assert cfg.allowed_keys_dir is not None
                ingest = IngestServer(store, bind=cfg.bind, server_keys=p.server_keys, allowed_keys=p.allowed_keys,
                                      sensors_by_node=cfg.sensors_by_node)
                worker.every(cfg.keys_reload_s,
                             AllowedKeysReloader(cfg.allowed_keys_dir, ingest.set_allowed_keys, load_allowed_keys))
        sec = settings.security
        services = Services(
            settings=settings, site=site_, store=store, hub=hub, worker=worker,
            passwords=Passwords(sec.password_hash_time_cost, sec.password_hash_memory_kib),
            limiter=LoginLimiter(sec.login_max_failures, sec.login_window_s), ingest=ingest,
            calibration=calibration, metrics_token_hash=p.metrics_token_hash)
        worker.every(1.0, SensorMonitor(site_, store, hub, settings.sensors.offline_after_s, engine=engine))
        return services
    except BaseException:
        store.close()
        raise


class SecurityMiddleware:
    """Security headers on every response, a cap on request bodies, one access-log line per request."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.headers = SECURITY_HEADERS + ((("strict-transport-security", "max-age=31536000"),) if hsts else ())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope.get("path", "")
        state = {"status": 0}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                out = MutableHeaders(scope=message)
                for name, value in self.headers:
                    if name not in out:
                        out[name] = value
                if path.startswith("/api/") and "cache-control" not in out:
                    out["cache-control"] = "no-store"
            await send(message)

        refused = self._refuse_body(headers)
        if refused is not None:
            await refused(scope, receive, send_with_headers)
        else:
            await self.app(scope, receive, send_with_headers)
        level = logging.DEBUG if path in ("/healthz", "/metrics") else logging.INFO
        if log.isEnabledFor(level):
            client = scope.get("client")
            log.log(level, "http method=%s path=%s status=%d duration_ms=%.1f client=%s", scope.get("method"), path,
                    state["status"], 1000.0 * (time.perf_counter() - started), client[0] if client else "-")

    @staticmethod
    def _refuse_body(headers: dict[str, str]) -> JSONResponse | None:
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return JSONResponse({"detail": "invalid Content-Length"}, status_code=400)
            if int(length) > MAX_BODY_BYTES:
                return JSONResponse({"detail": f"request body larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            return JSONResponse({"detail": "send a Content-Length with the request body"}, status_code=411)
        return None


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    for err in exc.errors():
        loc = tuple(p for p in err.get("loc", ()) if isinstance(p, str | int))
        errors.append({"loc": list(loc), "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))})
    if not errors:
        return "invalid request", []
    first = errors[0]
    where = field_path(tuple(first["loc"]))
    return (f"{where}: {first['msg']}" if where else first["msg"]), errors


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, errors = _validation_message(exc)
        return JSONResponse({"detail": message, "errors": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error method=%s path=%s error=%s: %s", request.method, request.url.path,
                  type(exc).__name__, exc, exc_info=exc)
        return JSONResponse({"detail": "internal error: the service logged it"}, status_code=500)


def create_app(settings: ServiceSettings, *, engine_factory: EngineFactory | None = None,
               services: Services | None = None) -> FastAPI:
    """The application. ``services`` already built (``cellwatch serve`` builds them first, to report
    configuration errors before listening); otherwise the lifespan builds them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = services
        if svc is None:
            svc = await anyio.to_thread.run_sync(lambda: build_services(settings, engine_factory=engine_factory))
        svc.hub.bind(asyncio.get_running_loop())
        await anyio.to_thread.run_sync(svc.start)
        app.state.services = svc
        log.info("service ready site=%r sensors=%d database=%s ingest=%s", svc.site.name, len(svc.site.sensors),
                 svc.store.engine.url.render_as_string(hide_password=True),
                 svc.ingest.endpoint if svc.ingest is not None else "disabled")
        try:
            yield
        finally:
            svc.hub.close()
            await anyio.to_thread.run_sync(svc.stop)

    app = FastAPI(
        title="cellwatch",
        version=version(),
        description="Covert mobile phones located by wing, floor and cell: events, their workflow, sensors, "
                    "the site plan and a live feed. Log in at /api/auth/login; send the token as a bearer "
                    "token (or use the session cookie).",
        lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    for module in (auth, users, events, evidence, cells, sensors, site, live, audit, health, dashboard):
        app.include_router(module.router)

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi(_: ViewerUser) -> JSONResponse:
        return JSONResponse(app.openapi())

    _install_error_handlers(app)
    app.add_middleware(SecurityMiddleware, hsts=settings.security.cookie_secure)
    return app
