"""``cellwatch serve --config service.toml``: the service in one process.

One process runs the HTTP API (FastAPI on uvicorn), the ZeroMQ ingest (its own thread)
and the event worker (its own thread), sharing one database. Configuration problems
(a missing key file, a taken port, a bad site plan) are reported before anything
listens, as one line naming the file and the field (exit status 2).
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EXAMPLE_CONFIG = """\
example service.toml (paths are relative to the file):
  site = "demo_prison.toml"
  [database]
  path = "cellwatch.sqlite"            # or: url = "postgresql+psycopg://cellwatch@db/cellwatch"
  [ingest]
  bind = "tcp://0.0.0.0:5557"
  server_key = "keys/service.key_secret"
  allowed_keys_dir = "keys/allowed"
  [http]
  host = "0.0.0.0"
  port = 8080

first admin:  cellwatch users --config service.toml add NAME --role admin
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve",
        help="run the service: ZeroMQ ingest, event engine, HTTP API and live feed",
        description=__doc__,
        epilog=EXAMPLE_CONFIG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, required=True, metavar="FILE", help="the service's TOML file")
    parser.set_defaults(handler=run)


class UtcKeyValueFormatter(logging.Formatter):
    """``ts=2026-01-31T12:00:00.123Z level=INFO logger=service.app message``: one event a line, grep-able."""

    def __init__(self) -> None:
        super().__init__("ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging API)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def configure_logging(verbosity: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(UtcKeyValueFormatter())
    logging.basicConfig(level=logging.DEBUG if verbosity > 0 else logging.INFO, handlers=[handler], force=True)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # our middleware logs requests


def bind_http(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a taken port is a clear error before anything starts."""
    from dsp.errors import InputError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(None, "http.host", f"cannot resolve {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise InputError(None, "http.port", f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import build_services, create_app, prepare
    from service.settings import load_settings

    settings = load_settings(args.config)
    sock = bind_http(settings.http.host, settings.http.port)
    try:
        prepared = prepare(settings)  # configuration mistakes end here, as one line, before any logging
        configure_logging(args.verbose)
        services = build_services(settings, prepared=prepared)
    except BaseException:
        sock.close()
        raise
    try:
        services.start_ingest()
    except BaseException:
        sock.close()
        services.stop()
        raise
    app = create_app(settings, services=services)
    url = _url(sock)
    ingest = services.ingest.endpoint if services.ingest is not None else "disabled"
    print(f"cellwatch serve: {url} (ingest {ingest}, site {services.site.name!r})", flush=True)
    log.info("listening url=%s host=%s ingest=%s database=%s", url, settings.http.host, ingest,
             services.store.engine.url.render_as_string(hide_password=True))
    if services.store.count_users() == 0:
        log.warning("no users yet: create the first admin with `cellwatch users --config %s add NAME --role admin`",
                    args.config)

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            services.hub.close()  # end the live streams now rather than after the grace period
            await super().shutdown(sockets)

    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=settings.http.graceful_shutdown_s)
    server = Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else 1
