"""Scenario files: who transmits where, when and how, for the simulated prison.

A scenario is a TOML file (see ``recordings/scenarios/*.toml`` for commented
examples). It names phones (placed in a cell, a zone or at a point), their
technology and activity, the interferers, and the receivers' settings. Site-dependent
checks (does cell ``A-1-03`` exist?) happen in :func:`check_against_site` so that
one scenario can be reused on another site when its places exist there.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeAlias

from pydantic import Field, field_validator, model_validator

from calibration.config import StrictModel, load_toml
from dsp.errors import InputError

Tech = Literal["gsm", "lte", "nr", "umts"]
Activity = Literal["call", "sms", "data", "idle_update"]


class PowerControl(StrictModel):
    """Closed-loop power control seen as a slow random walk between bounds (GSM: every 480 ms SACCH period)."""

    min_dbm: float = 5.0
    max_dbm: float = 23.0
    step_db: float = 2.0
    period_s: float = 0.48


def _check_one_place(spec: Emitter) -> None:
    """A transmitter stands in exactly one of a cell, a zone or a position (with its floor)."""
    given = [name for name in ("cell", "zone", "position") if getattr(spec, name) is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of cell, zone or position")
    if spec.position is not None and spec.floor is None:
        raise ValueError("a position needs a floor")


class PhoneSpec(StrictModel):
    id: str
    cell: str | None = None
    zone: str | None = None
    position: tuple[float, float] | None = None
    floor: int | None = None
    height_m: float = Field(default=1.2, ge=0.0, le=10.0)
    tech: Tech = "gsm"
    activity: Activity = "call"
    start_s: float = Field(default=0.0, ge=0.0)
    duration_s: float | None = Field(default=None, gt=0.0)
    tx_power_dbm: float | None = Field(default=None, ge=-50.0, le=40.0)
    power_control: PowerControl | None = None
    established: bool = False  # the session began before the recording: no setup signalling
    # GSM
    arfcn: int | None = None
    timeslot: int | None = Field(default=None, ge=0, le=7)
    tsc: int | None = Field(default=None, ge=0, le=7)
    dtx: bool = False
    hopping_arfcns: list[int] | None = None
    # LTE / NR / UMTS
    carrier_freq_hz: float | None = Field(default=None, gt=0.0)
    carrier_n_rb: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_place(self) -> PhoneSpec:
        _check_one_place(self)
        if self.tx_power_dbm is not None and self.power_control is not None:
            raise ValueError("give tx_power_dbm or power_control, not both")
        if self.tech == "gsm" and self.carrier_freq_hz is not None:
            raise ValueError("a GSM phone is placed in frequency by arfcn, not carrier_freq_hz")
        if self.tech != "gsm" and self.arfcn is not None:
            raise ValueError(f"arfcn is for GSM phones; an {self.tech} phone uses carrier_freq_hz")
        return self


class InterfererSpec(StrictModel):
    """A non-phone emitter: a continuous carrier, or a narrowband FM voice radio."""

    id: str
    kind: Literal["cw", "fm"] = "cw"
    freq_hz: float = Field(gt=0.0)
    power_dbm: float = Field(ge=-60.0, le=50.0)
    cell: str | None = None
    zone: str | None = None
    position: tuple[float, float] | None = None
    floor: int | None = None
    height_m: float = 2.0
    start_s: float = Field(default=0.0, ge=0.0)
    duration_s: float | None = Field(default=None, gt=0.0)
    deviation_hz: float = Field(default=2500.0, ge=0.0)

    @model_validator(mode="after")
    def _one_place(self) -> InterfererSpec:
        _check_one_place(self)
        return self


class DownlinkSpec(StrictModel):
    """A calibration signal (:mod:`dsp.downlink`): a GSM cell's BCCH carrier with its FCCH
    tones (``kind = "gsm_bcch"``, on downlink ``arfcn``: 935.0 + 0.2·n MHz), or a reference
    carrier (``kind = "cw"``, at ``freq_hz``). ``power_dbm`` is its EIRP toward the site;
    it reaches each sensor through the site's propagation model. Rendered only by dongles
    tuned so that its whole channel falls in their band."""

    id: str
    kind: Literal["gsm_bcch", "cw"] = "gsm_bcch"
    arfcn: int | None = Field(default=None, ge=0, le=1023)
    freq_hz: float | None = Field(default=None, gt=0.0)
    bcc: int = Field(default=0, ge=0, le=7)
    power_dbm: float = Field(ge=-60.0, le=70.0)
    cell: str | None = None
    zone: str | None = None
    position: tuple[float, float] | None = None
    floor: int | None = None
    height_m: float = 2.0
    start_s: float = Field(default=0.0, ge=0.0)
    duration_s: float | None = Field(default=None, gt=0.0)

    @model_validator(mode="after")
    def _one_place_one_frequency(self) -> DownlinkSpec:
        _check_one_place(self)
        if self.kind == "gsm_bcch":
            if self.arfcn is None or self.freq_hz is not None:
                raise ValueError("a gsm_bcch carrier is placed by arfcn (its downlink channel), not freq_hz")
            from dsp.gsm import downlink_freq_hz

            try:
                object.__setattr__(self, "freq_hz", float(downlink_freq_hz(self.arfcn)))
            except ValueError as exc:
                raise ValueError(str(exc).split(": ")[-1]) from None
        elif self.freq_hz is None or self.arfcn is not None:
            raise ValueError("a cw carrier needs freq_hz (and no arfcn)")
        return self


Emitter: TypeAlias = PhoneSpec | InterfererSpec | DownlinkSpec
"""Anything a scenario places in the site (each stands in one cell, zone or position)."""


class SensorOverride(StrictModel):
    gain_offset_db: float | None = None
    ppm_error: float | None = None
    noise_figure_db: float | None = None
    gain_db: float | None = None


class ReceiverSpec(StrictModel):
    """How every simulated dongle is set up, with random per-sensor spreads (seeded)."""

    sample_rate_hz: float = Field(default=2.4e6, gt=0.0, le=3.2e6)
    center_freq_hz: float | None = Field(default=None, ge=24e6, le=1766e6)
    gain_db: float = Field(default=14.4, ge=0.0, le=49.6)  # full scale at -29 dBm: a phone next door does not clip
    noise_figure_db: float = Field(default=6.5, ge=0.0, le=30.0)
    datatype: Literal["cu8", "ci16_le", "cf32_le"] = "cu8"
    gain_spread_db: float = Field(default=0.0, ge=0.0, le=10.0)
    ppm_spread: float = Field(default=0.0, ge=0.0, le=100.0)
    drop_probability: float = Field(default=0.0, ge=0.0, le=0.5)
    sensors: dict[str, SensorOverride] = Field(default_factory=dict)


class Scenario(StrictModel):
    name: str = "scenario"
    description: str = ""
    start_utc: str = "2026-01-05T21:30:00Z"
    duration_s: float = Field(default=10.0, gt=0.0, le=24 * 3600.0)
    sensors: list[str] | None = None  # record only these sensors (default: all of the site's)
    receiver: ReceiverSpec = Field(default_factory=ReceiverSpec)
    propagation: dict[str, float | str | bool] = Field(default_factory=dict)
    phones: list[PhoneSpec] = Field(default_factory=list)
    interferers: list[InterfererSpec] = Field(default_factory=list)
    downlink: list[DownlinkSpec] = Field(default_factory=list)  # calibration signals (dsp.downlink)

    @field_validator("start_utc")
    @classmethod
    def _iso_time(cls, value: str) -> str:
        parse_utc(value)
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> Scenario:
        seen: set[str] = set()
        for phone in self.phones:
            if phone.id in seen:
                raise ValueError(f"duplicate phone id {phone.id!r}")
            seen.add(phone.id)
        return self

    @property
    def start_epoch_s(self) -> float:
        return parse_utc(self.start_utc)


def parse_utc(text: str) -> float:
    """ISO-8601 UTC time (``2026-01-05T21:30:00Z``) as seconds since the Unix epoch."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO-8601 time: {text!r} (e.g. 2026-01-05T21:30:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def load_scenario(path: str | Path) -> Scenario:
    return load_toml(Scenario, path)


def check_against_site(scenario: Scenario, site: object, source: str) -> None:
    """Every place and sensor the scenario names exists in ``site`` (an InputError otherwise)."""
    cell_ids = {c.id for c in site.cells}  # type: ignore[attr-defined]
    zone_ids = {z.id for z in site.zones}  # type: ignore[attr-defined]
    sensor_ids = {s.id for s in site.sensors}  # type: ignore[attr-defined]
    floors = set(site.floors)  # type: ignore[attr-defined]
    groups: tuple[tuple[str, Sequence[Emitter]], ...] = (
        ("phones", scenario.phones), ("interferers", scenario.interferers), ("downlink", scenario.downlink),
    )
    for group, items in groups:
        for i, item in enumerate(items):
            if item.cell is not None and item.cell not in cell_ids:
                raise InputError(source, f"{group}[{i}].cell", f"unknown cell {item.cell!r} in this site")
            if item.zone is not None and item.zone not in zone_ids:
                raise InputError(source, f"{group}[{i}].zone", f"unknown zone {item.zone!r} in this site")
            if item.floor is not None and item.floor not in floors:
                raise InputError(source, f"{group}[{i}].floor", f"no floor {item.floor} in this site")
    for i, sensor_id in enumerate(scenario.sensors or []):
        if sensor_id not in sensor_ids:
            raise InputError(source, f"sensors[{i}]", f"unknown sensor {sensor_id!r} in this site")
    for sensor_id in scenario.receiver.sensors:
        if sensor_id not in sensor_ids:
            raise InputError(source, f"receiver.sensors.{sensor_id}", "unknown sensor in this site")
