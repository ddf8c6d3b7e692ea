"""What every request handler can reach: the running service's parts, built once by the app factory."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

if TYPE_CHECKING:
    from calibration.site import Site
    from service.auth import LoginLimiter
    from service.ingest import IngestServer
    from service.live import LiveHub
    from service.passwords import Passwords
    from service.settings import ServiceSettings
    from service.store import Store
    from service.worker import EventWorker

log = logging.getLogger(__name__)


@dataclass
class Services:
    """The parts of one running service; :func:`service.app.build_services` makes them."""

    settings: ServiceSettings
    site: Site
    store: Store
    hub: LiveHub
    worker: EventWorker
    passwords: Passwords
    limiter: LoginLimiter
    ingest: IngestServer | None = None
    calibration: Any = None
    metrics_token_hash: str | None = None
    started_s: float = field(default_factory=time.time)
    _ingest_started: bool = False
    _worker_started: bool = False

    def start_ingest(self) -> None:
        """Bind the ZeroMQ ingest (raises InputError if the address is taken)."""
        if self.ingest is not None and not self._ingest_started:
            self.ingest.start()
            self._ingest_started = True

    def start(self) -> None:
        if not self._worker_started:
            self.worker.start()
            self._worker_started = True
        self.start_ingest()

    def stop(self) -> None:
        """Stop taking detections first, then let the worker finish what was stored."""
        if self.ingest is not None and self._ingest_started:
            self.ingest.stop()
            self._ingest_started = False
        if self._worker_started:
            self.worker.stop()
            self._worker_started = False
        self.store.close()
        log.info("service stopped")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
