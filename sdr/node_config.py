"""``node.toml``: what a sensor node runs, checked once at start into a :class:`NodeSetup`.

The file's sections (``sdr/node.example.toml`` is the commented reference, printed by
``cellwatch node --example-config``):

* top level: ``node_id`` (its key files are named after it), ``sensor_id`` (what its
  detections carry, default the node id), ``heartbeat_s``;
* ``[service]``: the ingest ``endpoint``, the service's public ``server_key`` and this node's
  ``node_key`` (secret) files, or ``insecure = true`` for local development; the durable
  ``outbox`` file; ``flush_timeout_s`` at exit;
* ``[scan]``: ``dwell_s``, ``settle_s``, ``usable_width_hz`` (:mod:`sdr.bandplan`);
* ``[[bands]]``: ``name``, ``low_mhz``, ``high_mhz``, ``weight`` (dwell = weight x
  ``scan.dwell_s``); omitted: :data:`sdr.bandplan.DEFAULT_BANDS`;
* ``[[sources]]``: ``spec`` (``rtlsdr:SERIAL``, ``rtl_tcp://HOST:PORT``, ``replay:PATH``,
  ``sim:SITE[:SCENARIO]:SENSOR``), ``gain_db``, ``sample_rate_hz``, ``ppm``, ``sensor_id``,
  then either ``center_freq_hz`` (a fixed tuning), or ``bands`` (pin this dongle to those
  bands), or nothing (share the remaining bands with the other such dongles); ``options``
  for the source kind (``bias_tee``, ``settle_s``, ``realtime``, ``loop``, ``seed`` ...);
* ``[detector]``: :class:`dsp.detector.DetectorConfig` fields;
* ``[snippets]``: the IQ snippets kept as evidence (:class:`dsp.snippets.SnippetPolicy`):
  ``enabled``, ``margin_s``, ``first_per_session``, ``interval_s``, ``max_per_minute``,
  ``ring_s``, ``max_pending``.

Every problem is one :class:`~dsp.errors.InputError` naming the file and the field
(``node.toml: sources[1].gain_db: automatic gain is refused ...``), including those the
source itself finds (its settings are validated here by creating it, without opening
it). Relative paths (keys, outbox, ``replay:`` files, ``sim:`` site and scenario files)
are relative to the config file's folder.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from calibration.config import StrictModel, read_toml, validate
from dsp.detector import DetectorConfig
from dsp.errors import InputError
from dsp.snippets import SnippetPolicy
from dsp.wire import check_node_id
from sdr.bandplan import (
    DEFAULT_BAND_WEIGHTS,
    DEFAULT_BANDS,
    DEFAULT_DWELL_S,
    DEFAULT_SETTLE_S,
    DEFAULT_USABLE_WIDTH_HZ,
    Band,
    BandPlan,
    ScanSchedule,
)
from sdr.sources import Source, SourceSpec, create_source, parse_source_spec

LIVE_KINDS = ("rtlsdr", "rtl_tcp")
TUNABLE_KINDS = ("rtlsdr", "rtl_tcp", "sim")
DEFAULT_SAMPLE_RATE_HZ = 2_400_000
_ENDPOINT_RE = re.compile(r"^(tcp://[^\s:/]+|tcp://\[[0-9A-Fa-f:.]+\]):\d{1,5}$|^ipc://\S+$")
_SPEC_FIELDS = {"source": "spec", "site": "spec", "scenario": "spec", "sensor": "spec"}
_SOURCE_FIELDS = {"sample_rate_hz", "center_freq_hz", "gain_db", "ppm", "sensor_id"}


class ServiceSection(StrictModel):
    endpoint: str
    server_key: Path | None = None
    node_key: Path | None = None
    insecure: bool = False
    outbox: Path | None = None
    flush_timeout_s: float = Field(2.0, ge=0.0, le=600.0)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not _ENDPOINT_RE.match(value):
            raise ValueError(f"expected tcp://HOST:PORT (or ipc://PATH), got {value!r}")
        return value

    @model_validator(mode="after")
    def _keys(self) -> ServiceSection:
        if self.insecure and (self.server_key is not None or self.node_key is not None):
            raise ValueError("insecure mode takes no keys: remove server_key/node_key or insecure = true")
        if not self.insecure and (self.server_key is None or self.node_key is None):
            missing = "server_key" if self.server_key is None else "node_key"
            raise ValueError(f"{missing} missing: CURVE needs the service's public key file and this node's "
                             "secret key file (cellwatch keys), or insecure = true for local development only")
        return self


class ScanSection(StrictModel):
    dwell_s: float = Field(DEFAULT_DWELL_S, gt=0.0, le=3600.0)
    settle_s: float = Field(DEFAULT_SETTLE_S, ge=0.0, le=10.0)
    usable_width_hz: float = Field(DEFAULT_USABLE_WIDTH_HZ, gt=0.0, le=3.2e6)


class BandSection(StrictModel):
    name: str = Field(min_length=1, max_length=32)
    low_mhz: float = Field(gt=0.0)
    high_mhz: float = Field(gt=0.0)
    weight: float = Field(1.0, gt=0.0, le=1000.0)

    @model_validator(mode="after")
    def _order(self) -> BandSection:
        if self.high_mhz <= self.low_mhz:
            raise ValueError("high_mhz must be above low_mhz")
        return self


class SourceSection(StrictModel):
    spec: str = Field(min_length=1)
    sensor_id: str | None = Field(None, min_length=1, max_length=64)
    sample_rate_hz: float | None = Field(None, gt=0.0)
    gain_db: float | None = None
    ppm: float = 0.0
    center_freq_hz: float | None = Field(None, gt=0.0)
    bands: list[str] | None = Field(None, min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _tuning(self) -> SourceSection:
        if self.center_freq_hz is not None and self.bands is not None:
            raise ValueError("give center_freq_hz (a fixed tuning) or bands (scan them), not both")
        return self


class SnippetsSection(StrictModel):
    enabled: bool = True
    margin_s: float = Field(0.5e-3, ge=0.0, le=0.1)
    first_per_session: int = Field(2, ge=0, le=1000)
    interval_s: float = Field(10.0, gt=0.0, le=86400.0)
    max_per_minute: int = Field(60, ge=0, le=6000)
    ring_s: float = Field(1.5, gt=0.0, le=30.0)
    max_pending: int = Field(2000, ge=1, le=1_000_000)

    def policy(self) -> SnippetPolicy:
        return SnippetPolicy(margin_s=self.margin_s, first_per_session=self.first_per_session,
                             interval_s=self.interval_s, max_per_minute=self.max_per_minute, ring_s=self.ring_s)


class NodeConfig(StrictModel):
    node_id: str
    sensor_id: str | None = Field(None, min_length=1, max_length=64)
    heartbeat_s: float = Field(5.0, gt=0.0, le=3600.0)
    service: ServiceSection
    scan: ScanSection = Field(default_factory=lambda: ScanSection.model_validate({}))
    bands: list[BandSection] | None = Field(None, min_length=1)
    sources: list[SourceSection] = Field(min_length=1)
    detector: dict[str, Any] = Field(default_factory=dict)
    snippets: SnippetsSection = Field(default_factory=lambda: SnippetsSection.model_validate({}))

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str) -> str:
        try:
            return check_node_id(value)
        except InputError as exc:
            raise ValueError(exc.problem) from None


@dataclass
class SourcePlan:
    """One source of the node: created and validated (not opened), with its schedule."""

    index: int
    spec: str
    kind: str
    sensor_id: str
    source: Source
    schedule: ScanSchedule


@dataclass
class NodeSetup:
    """Everything :class:`sdr.node.Node` needs, checked."""

    config: NodeConfig
    source_name: str  # the config file, or "command line"
    plan: BandPlan
    sources: list[SourcePlan]
    detector: DetectorConfig
    outbox_path: Path
    server_key: Path | None
    node_key: Path | None
    snippets: SnippetPolicy | None = None  # None: no IQ snippets are kept

    @property
    def node_id(self) -> str:
        return self.config.node_id

    @property
    def sensor_id(self) -> str:
        return self.config.sensor_id or self.config.node_id

    @property
    def schedules(self) -> list[ScanSchedule]:
        return [s.schedule for s in self.sources]


def default_outbox_path(node_id: str) -> Path:
    """``$XDG_STATE_HOME/cellwatch/node-<id>.outbox.sqlite`` (``~/.local/state`` without it)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "cellwatch" / f"node-{node_id}.outbox.sqlite"


def _under(base: Path, path: Path | str) -> Path:
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else base / p


def resolve_spec(spec: str, base: Path) -> str:
    """``spec`` with its file parts made relative to ``base`` (the config file's folder)."""
    parsed = parse_source_spec(spec)
    if parsed.kind == "replay" and parsed.path is not None:
        return f"replay:{_under(base, parsed.path)}"
    if parsed.kind == "sim":
        parts = [parsed.site, parsed.scenario, parsed.sensor]
        for i in (0, 1):
            text = parts[i]
            if text is not None and ("/" in text or text.endswith(".toml")):
                parts[i] = str(_under(base, text))
        return "sim:" + ":".join(p for p in parts if p is not None)
    return parsed.text


def default_bands(dwell_s: float) -> tuple[Band, ...]:
    return tuple(Band(b.name, b.low_hz, b.high_hz, dwell_s * DEFAULT_BAND_WEIGHTS[b.name]) for b in DEFAULT_BANDS)


def _attach(exc: InputError, source: str, prefix: str = "") -> InputError:
    field = f"{prefix}.{exc.field}" if prefix and exc.field else (prefix or exc.field)
    return InputError(source, field, exc.problem)


def _source_error(exc: InputError, source: str, index: int, spec: str | None = None) -> InputError:
    """A source's complaint as ``node.toml: sources[i].FIELD: problem``; one about another file
    (a recording, a simulated site) already names that file and passes unchanged."""
    if exc.source is not None and spec is not None and exc.source != spec:
        return exc
    field = exc.field
    if field is None or field in _SPEC_FIELDS:
        name = "spec"
    elif field in _SOURCE_FIELDS:
        name = field
    else:
        name = f"options.{field}"
    return InputError(source, f"sources[{index}].{name}", exc.problem)


def load_node_config(path: str | Path) -> NodeSetup:
    """Read and check ``node.toml``; every problem is an InputError naming the file and field."""
    path = Path(path)
    config = validate(NodeConfig, read_toml(path), str(path))
    return build_setup(config, str(path), path.resolve().parent)


def build_setup(config: NodeConfig, source_name: str, base_dir: Path, *, now_s: float | None = None) -> NodeSetup:
    """Check what the schema cannot: band plan, detector, each source's settings; assign schedules."""
    scan = config.scan
    if config.bands is None:
        bands = default_bands(scan.dwell_s)
    else:
        bands = tuple(Band(b.name, int(round(b.low_mhz * 1e6)), int(round(b.high_mhz * 1e6)), scan.dwell_s * b.weight)
                      for b in config.bands)
    try:
        plan = BandPlan(bands, scan.usable_width_hz, scan.settle_s)
    except InputError as exc:
        raise _attach(exc, source_name) from None
    try:
        detector = DetectorConfig.from_dict(dict(config.detector))
    except InputError as exc:
        raise _attach(exc, source_name) from None
    names = {b.name for b in plan.bands}

    parsed: list[tuple[str, SourceSpec]] = []
    for i, section in enumerate(config.sources):
        try:
            spec = resolve_spec(section.spec, base_dir)
            parsed.append((spec, parse_source_spec(spec)))
        except InputError as exc:
            raise _source_error(exc, source_name, i) from None
        for j, name in enumerate(section.bands or []):
            if name not in names:
                raise InputError(source_name, f"sources[{i}].bands[{j}]",
                                 f"no band {name!r} in the plan ({', '.join(sorted(names))})")
        if section.bands is not None and parsed[-1][1].kind not in TUNABLE_KINDS:
            raise InputError(source_name, f"sources[{i}].bands", "a recording cannot be retuned: it replays its own frequency")

    pinned = [s.bands for s in config.sources if s.bands is not None]
    auto = [i for i, (s, (_, p)) in enumerate(zip(config.sources, parsed, strict=True))
            if s.bands is None and s.center_freq_hz is None and p.kind in TUNABLE_KINDS]
    try:
        pinned_schedules, shared = plan.schedules(len(auto), pinned)
    except ValueError as exc:
        raise InputError(source_name, "sources", str(exc)) from None
    taken = {name for names_ in pinned for name in names_}
    if auto and not shared:
        raise InputError(source_name, "sources", f"every band is pinned ({', '.join(sorted(taken))}): "
                         f"nothing left for sources {', '.join(str(i) for i in auto)}; pin them or fix their frequency")

    now = time.time() if now_s is None else now_s
    plans: list[SourcePlan] = []
    pinned_iter, shared_iter = iter(pinned_schedules), iter(shared)
    for i, (section, (spec, parsed_spec)) in enumerate(zip(config.sources, parsed, strict=True)):
        schedule: ScanSchedule | None = None
        if section.bands is not None:
            schedule = next(pinned_iter)
        elif section.center_freq_hz is None and parsed_spec.kind in TUNABLE_KINDS:
            schedule = next(shared_iter)
        if section.center_freq_hz is not None:
            if not math.isclose(section.center_freq_hz, round(section.center_freq_hz), abs_tol=1e-6):
                raise InputError(source_name, f"sources[{i}].center_freq_hz", "must be whole Hz")
            center: int | None = int(round(section.center_freq_hz))
        elif schedule is not None:
            center = schedule.visits[schedule.visit_at(now)[0]].channel.center_freq_hz
        else:
            center = None
        rate = section.sample_rate_hz
        if rate is None and parsed_spec.kind in LIVE_KINDS:
            rate = DEFAULT_SAMPLE_RATE_HZ
        sensor_id = section.sensor_id or config.sensor_id or config.node_id
        try:
            source = create_source(parsed_spec, sensor_id=sensor_id, sample_rate_hz=rate, center_freq_hz=center,
                                   gain_db=section.gain_db, ppm=section.ppm, **section.options)
            if schedule is None:  # fixed: a given frequency, or a recording's own
                schedule = ScanSchedule.fixed(plan.fixed_channel(source.center_freq_hz, source.sample_rate_hz))
        except InputError as exc:
            raise _source_error(exc, source_name, i, parsed_spec.text) from None
        plans.append(SourcePlan(i, spec, parsed_spec.kind, sensor_id, source, schedule))

    service = config.service
    outbox = _under(base_dir, service.outbox) if service.outbox is not None else default_outbox_path(config.node_id)
    return NodeSetup(
        config=config, source_name=source_name, plan=plan, sources=plans, detector=detector, outbox_path=outbox,
        server_key=None if service.server_key is None else _under(base_dir, service.server_key),
        node_key=None if service.node_key is None else _under(base_dir, service.node_key),
        snippets=config.snippets.policy() if config.snippets.enabled else None,
    )
