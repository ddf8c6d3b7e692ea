"""The service's configuration file (``service.toml``), validated once at start.

One TOML file per process (STYLE.md): :func:`load_settings` parses it with
:func:`calibration.config.load_toml`, so an unknown key or a bad value is one line
naming the file and the field (``service.toml: http.port: Input should be ...``).
Relative paths in the file are taken relative to the file's folder, so a site's
configuration folder can be moved as a whole.

Example (every key but ``site`` is optional)::

    site = "demo_prison.toml"            # the site plan (DESIGN.md "Site file")
    calibration = "calibration.toml"     # per-sensor gain offsets (calibration.gain)

    [database]
    path = "cellwatch.sqlite"            # SQLite, WAL journal (the default)
    # url = "postgresql+psycopg://cellwatch@db.local/cellwatch"   # large sites

    [ingest]                             # the ZeroMQ endpoint the sensor nodes connect to
    bind = "tcp://0.0.0.0:5557"
    server_key = "keys/service.key_secret"
    allowed_keys_dir = "keys/allowed"    # one <node_id>.key per node
    # insecure = true                    # no CURVE: local development only

    [http]
    host = "127.0.0.1"
    port = 8080

    [security]
    session_ttl_s = 43200                # a session lasts one shift
    cookie_secure = true                 # behind HTTPS

    [alerts]                             # place kind -> priority, over the engine's defaults
    corridor = "low"

    [engine]                             # the event engine (service.events.EngineConfig)
    event_gap_s = 60.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, field_validator, model_validator

from calibration.config import StrictModel, load_toml

DEFAULT_DATABASE_FILE = "cellwatch.sqlite"


class DatabaseSettings(StrictModel):
    """Where events, detections, users and the audit log live.

    ``path``: a SQLite file (WAL journal, ``synchronous=FULL``); ``url``: any SQLAlchemy
    URL (PostgreSQL for large sites). Give one or neither (then ``cellwatch.sqlite``
    beside the config file).
    """

    path: Path | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> DatabaseSettings:
        if self.path is not None and self.url is not None:
            raise ValueError("give database.path (SQLite) or database.url, not both")
        if self.url is not None and "://" not in self.url:
            raise ValueError("database.url must be a URL such as postgresql+psycopg://user@host/db")
        return self


class IngestSettings(StrictModel):
    """The ZeroMQ ingest (service.ingest): CURVE keys, or ``insecure`` for development."""

    enabled: bool = True
    bind: str = "tcp://127.0.0.1:5557"
    server_key: Path | None = None  # the service's .key_secret file
    allowed_keys_dir: Path | None = None  # <node_id>.key files of the nodes let in
    insecure: bool = False
    sensors_by_node: dict[str, list[str]] = Field(default_factory=dict)
    keys_reload_s: float = Field(default=10.0, gt=0)  # how often the allowed-keys folder is rescanned

    @model_validator(mode="after")
    def _keys(self) -> IngestSettings:
        if not self.enabled:
            return self
        if self.insecure and (self.server_key is not None or self.allowed_keys_dir is not None):
            raise ValueError("insecure mode takes no keys: remove ingest.insecure to use CURVE")
        if not self.insecure and (self.server_key is None or self.allowed_keys_dir is None):
            raise ValueError("CURVE needs ingest.server_key and ingest.allowed_keys_dir "
                             "(or ingest.insecure = true for local development)")
        return self


class HttpSettings(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port (tests)
    metrics_token_file: Path | None = None  # a token a Prometheus scraper may present on /metrics
    graceful_shutdown_s: int = Field(default=3, ge=0)


class SecuritySettings(StrictModel):
    session_ttl_s: float = Field(default=12 * 3600.0, ge=60)
    cookie_secure: bool = False  # True behind HTTPS: the session cookie is never sent in clear
    login_max_failures: int = Field(default=5, ge=1)  # per client address and per user name, in the window
    login_window_s: float = Field(default=300.0, gt=0)
    password_min_length: int = Field(default=10, ge=8)
    # Argon2id cost (RFC 9106 section 4, second recommended option by default: t=3, 64 MiB, p=4).
    password_hash_time_cost: int = Field(default=3, ge=1)
    password_hash_memory_kib: int = Field(default=65536, ge=8192)


class SensorSettings(StrictModel):
    offline_after_s: float = Field(default=30.0, gt=0)  # heartbeat older than this: the sensor is offline


class WorkerSettings(StrictModel):
    """How the service drives the event engine (service.worker)."""

    flush_interval_s: float = Field(default=0.25, gt=0)  # how often idle transmissions are closed
    rebuild_window_s: float = Field(default=120.0, ge=0)  # detections re-fed on restart to rebuild the engine's state
    max_batch: int = Field(default=5000, ge=1)


class ServiceSettings(StrictModel):
    """All of ``service.toml``; build it with :func:`load_settings` (or directly in tests)."""

    site: Path
    calibration: Path | None = None
    survey: Path | None = None
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    sensors: SensorSettings = Field(default_factory=SensorSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    # [engine]: service.events.EngineConfig as it is (event_gap_s, [engine.correlation], [engine.locator], ...),
    # checked when the engine is built; [alerts]: place kind -> priority over the engine's defaults.
    engine: dict[str, Any] = Field(default_factory=dict)
    alerts: dict[str, str] = Field(default_factory=dict)
    _source: str = PrivateAttr("service settings")

    @field_validator("alerts")
    @classmethod
    def _priorities(cls, value: dict[str, str]) -> dict[str, str]:
        for kind, priority in value.items():
            if not kind or not priority:
                raise ValueError("alerts map a place kind to a non-empty priority")
        return value

    @property
    def source(self) -> str:
        """The file these settings came from (for error messages)."""
        return self._source

    @property
    def database_url(self) -> str:
        if self.database.url is not None:
            return self.database.url
        path = self.database.path or Path(DEFAULT_DATABASE_FILE)
        return f"sqlite:///{path}"

    def resolved(self, base: Path) -> ServiceSettings:
        """These settings with every relative path taken relative to ``base``."""

        def fix(p: Path | None) -> Path | None:
            return None if p is None else p if p.is_absolute() else base / p

        database = self.database
        if database.url is None:
            database = database.model_copy(update={"path": fix(database.path or Path(DEFAULT_DATABASE_FILE))})
        ingest = self.ingest.model_copy(update={"server_key": fix(self.ingest.server_key),
                                                "allowed_keys_dir": fix(self.ingest.allowed_keys_dir)})
        http = self.http.model_copy(update={"metrics_token_file": fix(self.http.metrics_token_file)})
        return self.model_copy(update={"site": fix(self.site), "calibration": fix(self.calibration),
                                       "survey": fix(self.survey), "database": database, "ingest": ingest,
                                       "http": http})


def load_settings(path: str | Path) -> ServiceSettings:
    """Read and validate ``service.toml``; raises InputError naming the file and the field."""
    path = Path(path)
    settings = load_toml(ServiceSettings, path).resolved(path.resolve().parent)
    settings._source = str(path)
    return settings

