"""The simulated prison: phones transmit, the building attenuates, RTL-SDR sensors record.

``simulate()`` renders one SigMF recording per sensor, exactly as the dongles would
deliver them (cu8 by default, all sensors on one clock), plus ``truth.jsonl``
(DESIGN.md's truth record, one line per transmitted burst) and the truth bursts as
SigMF annotations. Same site, scenario and seed: same bytes.

How a burst reaches a sensor: the phone's transmit power, minus the deterministic
path loss of :class:`calibration.propagation.PropagationModel` (the part a locator
may know), minus static log-normal shadowing for that position/sensor pair, plus
per-burst fast fading (the parts a locator must cope with). Each burst is rendered
once and added to every sensor's stream with that sensor's amplitude and a random
carrier phase; the receiver model then adds thermal noise and the dongle's
impairments and quantizes to 8 bits.

Memory stays bounded: time advances in blocks, a burst is rendered when it starts
and forgotten when it ends, continuous emitters (carriers, FM radios) are generated
block by block with continuous phase.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from calibration.propagation import PropagationModel, ShadowingField, fading_db
from calibration.site import Site
from dsp import activity, downlink
from dsp.errors import InputError
from dsp.iq import cu8_to_complex64
from dsp.records import IQBlock
from dsp.waveform import TxBurst, render_burst
from sdr.receiver import ReceiverConfig, RtlSdrModel, dbfs_to_dbm, noise_floor_dbfs
from sdr.recording import SigMFWriter
from sdr.scenario import (
    DownlinkSpec,
    Emitter,
    InterfererSpec,
    PhoneSpec,
    Scenario,
    SensorOverride,
    check_against_site,
)

log = logging.getLogger(__name__)

BLOCK_DURATION_S = 0.1


@dataclass(frozen=True)
class Placement:
    """Where an emitter is: its 3-D point and the place that contains it (DESIGN.md truth fields)."""

    xyz: np.ndarray  # (3,) metres
    position: tuple[float, float]
    floor: int
    cell: str | None
    zone: str | None
    wing: str | None


@dataclass
class SimulatedBurst:
    """A transmitted burst with its absolute sample span and its power at every sensor."""

    burst: TxBurst
    phone_id: str
    placement: Placement
    tx_power_dbm: float  # mean power of this burst (phone power + the burst's own offset)
    start_sample: int
    n_samples: int
    rx_power_dbm: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n_sensors,)
    phases: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n_sensors,) radians

    @property
    def end_sample(self) -> int:
        return self.start_sample + self.n_samples


@dataclass
class SimulationResult:
    out_dir: Path
    recordings: list[Path]
    truth_path: Path
    n_bursts: int
    duration_s: float


def place(site: Site, spec: Emitter, rng: np.random.Generator) -> Placement:
    """A point for the emitter: uniformly inside its cell or zone, or the given position."""
    if spec.position is not None:
        assert spec.floor is not None
        xy = np.asarray(spec.position, dtype=float)
        floor = int(spec.floor)
        index = int(site.locate(xy[None, :], floor)[0])
    else:
        place_id = spec.cell if spec.cell is not None else spec.zone
        assert place_id is not None
        index = site.place_index(place_id)
        candidates = site.sample_points(index, spacing_m=0.25, margin_m=0.4)
        xy = candidates[rng.integers(len(candidates))] + rng.uniform(-0.125, 0.125, size=2)
        floor = site.places[index].floor
    the_place = site.places[index] if index >= 0 else None
    z = float(site.z_m(floor, spec.height_m))
    return Placement(
        xyz=np.array([xy[0], xy[1], z]),
        position=(float(xy[0]), float(xy[1])),
        floor=floor,
        cell=the_place.id if the_place is not None and the_place.kind == "cell" else None,
        zone=the_place.id if the_place is not None and the_place.kind != "cell" else None,
        wing=the_place.wing if the_place is not None else None,
    )


def _carriers(scenario: Scenario) -> tuple[InterfererSpec | DownlinkSpec, ...]:
    """The scenario's continuous emitters: its interferers, then its downlink signals."""
    return (*scenario.interferers, *scenario.downlink)


def _first(value: float | None, default: float) -> float:
    return float(default if value is None else value)


def _power_walk(spec: PhoneSpec, t_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Transmit power at times ``t_s``: fixed, or power control's bounded random walk."""
    if spec.power_control is None:
        default_dbm = 23.0 if spec.tech != "gsm" else 30.0
        return np.full(t_s.shape, spec.tx_power_dbm if spec.tx_power_dbm is not None else default_dbm)
    control = spec.power_control
    n_periods = int(np.max(t_s, initial=0.0) // control.period_s) + 2
    steps = rng.choice([-control.step_db, 0.0, control.step_db], size=n_periods)
    level = rng.uniform(control.min_dbm, control.max_dbm)
    levels = np.empty(n_periods)
    for i, step in enumerate(steps):  # a loop over 480 ms periods, not samples
        level = float(np.clip(level + step, control.min_dbm, control.max_dbm))
        levels[i] = level
    return levels[(t_s // control.period_s).astype(int)]


class Simulation:
    """A scenario on a site, ready to render: placements, bursts and received powers drawn."""

    def __init__(self, site: Site, scenario: Scenario, *, seed: int = 0, duration_s: float | None = None,
                 scenario_source: str = "scenario") -> None:
        check_against_site(scenario, site, scenario_source)
        self.site = site
        self.scenario = scenario
        self.seed = seed
        self.duration_s = float(duration_s if duration_s is not None else scenario.duration_s)
        if self.duration_s <= 0:
            raise InputError(scenario_source, "duration_s", "must be positive")
        receiver = scenario.receiver
        self.sample_rate_hz = float(receiver.sample_rate_hz)
        self.n_samples = int(round(self.duration_s * self.sample_rate_hz))
        self.start_epoch_s = scenario.start_epoch_s
        wanted = scenario.sensors or [s.id for s in site.sensors]
        self.sensor_indices = np.array([site.sensor_index(s) for s in wanted], dtype=int)
        self.sensor_ids = list(wanted)

        streams = np.random.SeedSequence(seed).spawn(6)
        placement_rng, schedule_seq, power_rng, fading_rng, phase_rng, receiver_seq = (
            np.random.default_rng(streams[0]), streams[1], np.random.default_rng(streams[2]),
            np.random.default_rng(streams[3]), np.random.default_rng(streams[4]), streams[5],
        )
        overrides = {**site.propagation, **scenario.propagation}
        self.model = PropagationModel.from_dict(overrides, source=scenario_source)
        self.shadowing = ShadowingField(site, self.model, seed=int(streams[0].generate_state(1)[0]))
        self.center_freq_hz = int(receiver.center_freq_hz or self._default_center_hz())

        self.bursts: list[SimulatedBurst] = []
        schedule_seeds = schedule_seq.spawn(max(1, len(scenario.phones)))
        for phone, phone_seq in zip(scenario.phones, schedule_seeds, strict=False):
            placement = place(site, phone, placement_rng)
            txs = activity.schedule(phone, self.duration_s, np.random.default_rng(phone_seq))
            txs = [b for b in txs if b.t_start_s < self.duration_s]
            powers = _power_walk(phone, np.array([b.t_start_s for b in txs]), power_rng)
            for burst, power in zip(txs, powers, strict=True):
                start = int(round(burst.t_start_s * self.sample_rate_hz))
                n = int(math.ceil(burst.duration_s * self.sample_rate_hz))
                self.bursts.append(SimulatedBurst(burst, phone.id, placement, float(power) + burst.power_offset_db, start, n))
        self.bursts.sort(key=lambda b: (b.start_sample, b.phone_id))
        self._burst_starts = [b.start_sample for b in self.bursts]
        self._max_burst_samples = max((b.n_samples for b in self.bursts), default=0)
        self._draw_received_powers(fading_rng, phase_rng)
        self.interferers = [(spec, place(site, spec, placement_rng)) for spec in _carriers(scenario)]
        self._interferer_rx_dbm = self._interferer_powers()
        self._receiver_seeds = receiver_seq.spawn(len(self.sensor_ids))
        self.receiver_configs = self._receiver_configs(np.random.default_rng(streams[0].spawn(1)[0]))
        self._interferer_phases = phase_rng.uniform(0, 2 * np.pi, size=(len(self.interferers), len(self.sensor_ids)))

    def _receiver_configs(self, spread_rng: np.random.Generator) -> list[ReceiverConfig]:
        """Each sensor's dongle: the scenario's settings, a seeded spread of gains and crystal errors, overrides."""
        receiver = self.scenario.receiver
        configs = []
        for sensor_id in self.sensor_ids:
            override = receiver.sensors.get(sensor_id) or SensorOverride()
            gain_offset_db = float(spread_rng.normal(0.0, receiver.gain_spread_db)) if receiver.gain_spread_db else 0.0
            ppm_error = float(spread_rng.uniform(-receiver.ppm_spread, receiver.ppm_spread)) if receiver.ppm_spread else 0.0
            configs.append(ReceiverConfig(
                gain_db=_first(override.gain_db, receiver.gain_db),
                noise_figure_db=_first(override.noise_figure_db, receiver.noise_figure_db),
                gain_offset_db=_first(override.gain_offset_db, gain_offset_db),
                ppm_error=_first(override.ppm_error, ppm_error),
                drop_probability=receiver.drop_probability,
            ))
        return configs

    def _default_center_hz(self) -> float:
        """Tune to the first phone's channel when the scenario does not say (a dongle sees 2.4 MHz)."""
        probe = [activity.nominal_freq_hz(p) for p in self.scenario.phones]
        if not probe:
            probe = [float(i.freq_hz or 0.0) for i in _carriers(self.scenario)]
        if not probe:
            return 902.4e6
        return float(probe[0])

    def mean_path_loss_db(self, xyz: np.ndarray, freq_hz: float) -> np.ndarray:
        """Deterministic path loss (dB) from one point to every recorded sensor."""
        return self.model.mean_path_loss_db(self.site, xyz, self.sensor_indices, freq_hz)

    def _static_loss_db(self, xyz: np.ndarray, freq_hz: float) -> np.ndarray:
        shadow = self.shadowing.sample(self.sensor_indices, np.broadcast_to(xyz, (len(self.sensor_indices), 3)))
        return self.mean_path_loss_db(xyz, freq_hz) + shadow

    def _draw_received_powers(self, fading_rng: np.random.Generator, phase_rng: np.random.Generator) -> None:
        n_sensors = len(self.sensor_ids)
        cache: dict[tuple[str, int], np.ndarray] = {}
        for item in self.bursts:
            key = (item.phone_id, int(round(item.burst.freq_hz / 1e6)))
            if key not in cache:
                cache[key] = self._static_loss_db(item.placement.xyz, item.burst.freq_hz)
            item.rx_power_dbm = item.tx_power_dbm - cache[key]
        if not self.bursts:
            return
        fading = fading_db(fading_rng, len(self.bursts) * n_sensors, self.model.rician_k_db).reshape(len(self.bursts), n_sensors)
        phases = phase_rng.uniform(0.0, 2.0 * np.pi, size=(len(self.bursts), n_sensors))
        for item, fade, phase in zip(self.bursts, fading, phases, strict=True):
            item.rx_power_dbm = item.rx_power_dbm + fade
            item.phases = phase

    def _interferer_powers(self) -> np.ndarray:
        out = np.zeros((len(self.interferers), len(self.sensor_ids)))
        for i, (spec, placement) in enumerate(self.interferers):
            freq_hz = spec.freq_hz
            assert freq_hz is not None  # a DownlinkSpec's validator sets it (from its arfcn for gsm_bcch)
            out[i] = spec.power_dbm - self._static_loss_db(placement.xyz, freq_hz)
        return out

    # ------------------------------------------------------------------ truth
    def truth_records(self) -> list[dict[str, Any]]:
        """DESIGN.md's truth record for every transmitted burst, plus ``kind`` and per-sensor ``rx_power_dbm``."""
        records = []
        noise_cache: dict[float, list[float]] = {}
        for item in self.bursts:
            b, p = item.burst, item.placement
            if b.bandwidth_hz not in noise_cache:
                noise_cache[b.bandwidth_hz] = [self.noise_dbm(k, b.bandwidth_hz) for k in range(len(self.sensor_ids))]
            noise = noise_cache[b.bandwidth_hz]
            records.append({
                "phone_id": item.phone_id,
                "session_id": str(b.params.get("session", f"{item.phone_id}:0")),
                "tech": b.tech,
                "kind": b.kind,
                "t_start_s": round(self.start_epoch_s + item.start_sample / self.sample_rate_hz, 7),
                "duration_s": b.duration_s,
                "freq_hz": b.freq_hz,
                "bandwidth_hz": b.bandwidth_hz,
                "tx_power_dbm": round(item.tx_power_dbm, 3),
                "cell": p.cell,
                "zone": p.zone,
                "wing": p.wing,
                "floor": p.floor,
                "position": [round(p.position[0], 3), round(p.position[1], 3)],
                "rx_power_dbm": {s: round(float(v), 2) for s, v in zip(self.sensor_ids, item.rx_power_dbm, strict=True)},
                "snr_db": {s: round(float(v - noise[k]), 2)
                           for k, (s, v) in enumerate(zip(self.sensor_ids, item.rx_power_dbm, strict=True))},
            })
        return records

    def noise_dbm(self, sensor_position: int, bandwidth_hz: float) -> float:
        """The receiver's whole noise (thermal, ADC, quantization) in ``bandwidth_hz``, referred to the antenna."""
        config = self.receiver_configs[sensor_position]
        floor_dbfs = noise_floor_dbfs(config, self.sample_rate_hz)
        floor_dbm = float(dbfs_to_dbm(floor_dbfs, config.gain_db, config.gain_offset_db, config.dbfs_at_0db_gain_dbm))
        return floor_dbm + 10.0 * math.log10(max(min(bandwidth_hz, self.sample_rate_hz), 1.0) / self.sample_rate_hz)

    def metadata(self) -> dict[str, Any]:
        """What a scorer needs beside the truth: span, sensors, tuning."""
        return {
            "site": self.site.name, "scenario": self.scenario.name, "seed": self.seed,
            "start_epoch_s": self.start_epoch_s, "duration_s": self.duration_s,
            "sample_rate_hz": self.sample_rate_hz, "center_freq_hz": self.center_freq_hz,
            "sensors": self.sensor_ids, "n_bursts": len(self.bursts),
        }

    # ------------------------------------------------------------------ rendering
    def _in_band(self, burst: TxBurst, center_freq_hz: float | None = None) -> bool:
        center = self.center_freq_hz if center_freq_hz is None else center_freq_hz
        half_band = self.sample_rate_hz / 2.0
        offset = abs(burst.freq_hz - center)
        return offset - burst.bandwidth_hz / 2.0 < half_band

    def _interferer_block(self, index: int, n0: int, n: int, center_freq_hz: float | None = None) -> np.ndarray | None:
        """Unit-power samples of a continuous interferer for samples [n0, n0+n), continuous across blocks."""
        center = self.center_freq_hz if center_freq_hz is None else center_freq_hz
        spec, _ = self.interferers[index]
        start = int(round(spec.start_s * self.sample_rate_hz))
        stop = self.n_samples if spec.duration_s is None else start + int(round(spec.duration_s * self.sample_rate_hz))
        lo, hi = max(n0, start), min(n0 + n, stop)
        if lo >= hi:
            return None
        if isinstance(spec, DownlinkSpec):  # a calibration signal: rendered only when its channel is in band
            part = downlink.render_block(spec.kind, float(spec.freq_hz or 0.0) - center, self.sample_rate_hz, lo, hi - lo,
                                         seed=self.seed * 4099 + index, bcc=spec.bcc)
            if part is None:
                return None
            block = np.zeros(n, dtype=np.complex64)
            block[lo - n0:hi - n0] = part
            return block
        t = np.arange(lo, hi, dtype=np.float64) / self.sample_rate_hz
        phase = 2.0 * np.pi * (spec.freq_hz - center) * t
        if spec.kind == "fm":
            # a voice-like modulating signal: three tones of fixed amplitude, integrated analytically
            tones_hz = np.array([340.0, 1020.0, 2210.0])
            weights = np.array([0.5, 0.3, 0.2])
            phase += 2.0 * np.pi * spec.deviation_hz * np.sum(
                weights[:, None] * np.sin(2.0 * np.pi * tones_hz[:, None] * t) / (2.0 * np.pi * tones_hz[:, None]), axis=0)
        out = np.zeros(n, dtype=np.complex64)
        out[lo - n0:hi - n0] = np.exp(1j * phase)
        return out

    def _incident_blocks(self, positions: list[int], center_freq_hz: int, start_sample: int,
                         rng: np.random.Generator, block_n: int,
                         skip_below_snr_db: float | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(n0, field)`` block after block from ``start_sample`` to the end: the field (sqrt(mW))
        at the sensors ``positions`` (indexes into :attr:`sensor_ids`), shape ``(len(positions), n)``.

        Each in-band burst is rendered once, when its first sample is reached, in burst order
        (so the draws from ``rng`` do not depend on ``block_n`` nor on which sensors are
        rendered), and scaled for the selected sensors only. Bursts that ended before
        ``start_sample`` are skipped without rendering, and so are bursts more than
        ``-skip_below_snr_db`` dB below every selected sensor's noise when it is given.
        """
        sel = np.asarray(positions, dtype=int)
        amplitudes_cache: dict[int, np.ndarray] = {}
        waveforms: dict[int, np.ndarray] = {}
        next_burst = bisect.bisect_left(self._burst_starts, start_sample - self._max_burst_samples)
        active: list[int] = []
        noise_cache: dict[float, np.ndarray] = {}
        interferer_amplitudes = [
            (np.sqrt(10.0 ** (self._interferer_rx_dbm[i][sel] / 10.0))
             * np.exp(1j * self._interferer_phases[i][sel])).astype(np.complex64)
            for i in range(len(self.interferers))
        ]
        for n0 in range(start_sample, self.n_samples, block_n):
            n = min(block_n, self.n_samples - n0)
            n1 = n0 + n
            while next_burst < len(self.bursts) and self.bursts[next_burst].start_sample < n1:
                item = self.bursts[next_burst]
                if item.end_sample > start_sample and self._in_band(item.burst, center_freq_hz):
                    if skip_below_snr_db is not None:
                        width = item.burst.bandwidth_hz
                        if width not in noise_cache:
                            noise_cache[width] = np.array([self.noise_dbm(int(k), width) for k in sel])
                        if np.all(item.rx_power_dbm[sel] - noise_cache[width] < skip_below_snr_db):
                            next_burst += 1
                            continue
                    active.append(next_burst)
                next_burst += 1
            incident = np.zeros((len(sel), n), dtype=np.complex64)
            still_active = []
            for index in active:
                item = self.bursts[index]
                if index not in waveforms:
                    waveforms[index] = render_burst(item.burst, rng, self.sample_rate_hz, center_freq_hz)
                    amplitudes_cache[index] = (np.sqrt(10.0 ** (item.rx_power_dbm[sel] / 10.0))
                                               * np.exp(1j * item.phases[sel])).astype(np.complex64)
                wave = waveforms[index]
                lo, hi = max(n0, item.start_sample), min(n1, item.start_sample + wave.shape[0])
                if lo < hi:
                    incident[:, lo - n0:hi - n0] += amplitudes_cache[index][:, None] * wave[None, lo - item.start_sample:hi - item.start_sample]
                if item.start_sample + wave.shape[0] > n1:
                    still_active.append(index)
                else:
                    del waveforms[index], amplitudes_cache[index]
            active = still_active
            for i in range(len(self.interferers)):
                carrier = self._interferer_block(i, n0, n, center_freq_hz)
                if carrier is not None:
                    incident += interferer_amplitudes[i][:, None] * carrier[None, :]
            yield n0, incident

    def _render_seed(self) -> np.random.SeedSequence:
        return np.random.SeedSequence(self.seed).spawn(8)[7]

    def stream(self, sensor_id: str, *, start_s: float = 0.0, center_freq_hz: int | None = None,
               gain_db: float | None = None, block_samples: int | None = None,
               skip_below_snr_db: float | None = -30.0) -> Iterator[IQBlock]:
        """One sensor's dongle output from ``start_s`` to the end, block by block, as :class:`IQBlock` s.

        Renders every burst for this sensor only. With ``start_s = 0``, the scenario's
        tuning and gain, the samples are exactly those :meth:`run` writes for the sensor
        (same seed, same noise, same bursts; any ``block_samples``). Another start,
        ``center_freq_hz`` or ``gain_db`` (a simulated dongle retuned, or set to another
        gain step) is just as deterministic but draws its own noise and waveform data; it
        also leaves out the bursts more than ``-skip_below_snr_db`` dB below this sensor's
        noise (30 dB: they could not move an 8-bit sample, and rendering is most of the
        cost of a simulated sensor far from the phone).
        Blocks carry the scenario's time axis: ``t_start_s`` is ``start_epoch_s`` plus the
        sample offset, ``sample_index`` the sample since the scenario start. Samples lost
        to simulated USB drops (which :meth:`run`'s recording loses silently, as a host
        would) are reported in ``n_dropped`` as if lost at the start of their block.
        """
        if sensor_id not in self.sensor_ids:
            raise InputError(None, "sensor", f"unknown sensor {sensor_id!r}; simulated sensors: {', '.join(self.sensor_ids)}")
        position = self.sensor_ids.index(sensor_id)
        center = self.center_freq_hz if center_freq_hz is None else int(center_freq_hz)
        start_sample = max(0, int(round(start_s * self.sample_rate_hz)))
        config = self.receiver_configs[position]
        if gain_db is not None:
            config = replace(config, gain_db=gain_db)
        skip = None
        if start_sample == 0 and center == self.center_freq_hz and config == self.receiver_configs[position]:
            render_seq, receiver_seq = self._render_seed(), self._receiver_seeds[position]
        else:  # a fresh, reproducible draw for this (sensor, start, tuning, gain)
            skip = skip_below_snr_db
            key = (position, start_sample, center, int(round(config.gain_db * 10)))
            render_seq = np.random.SeedSequence(self.seed, spawn_key=(100, *key))
            receiver_seq = np.random.SeedSequence(self.seed, spawn_key=(101, *key))
        model = RtlSdrModel(config, self.sample_rate_hz, center, np.random.default_rng(receiver_seq))
        block_n = int(block_samples or BLOCK_DURATION_S * self.sample_rate_hz)
        if block_n < 1:
            raise InputError(None, "block_samples", "must be positive")
        rng = np.random.default_rng(render_seq)
        for n0, incident in self._incident_blocks([position], center, start_sample, rng, block_n, skip):
            raw, n_lost = model.process(incident[0], n0)
            yield IQBlock(
                samples=cu8_to_complex64(raw),
                center_freq_hz=center,
                sample_rate_hz=self.sample_rate_hz,
                t_start_s=self.start_epoch_s + (n0 + n_lost) / self.sample_rate_hz,
                sensor_id=sensor_id,
                sample_index=n0 + n_lost,
                gain_db=config.gain_db,
                n_dropped=n_lost,
            )

    def run(self, out_dir: Path, *, progress: Callable[[float], None] | None = None) -> SimulationResult:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        receiver = self.scenario.receiver
        models, writers = [], []
        for sensor_id, seq, config in zip(self.sensor_ids, self._receiver_seeds, self.receiver_configs, strict=True):
            models.append(RtlSdrModel(config, self.sample_rate_hz, self.center_freq_hz, np.random.default_rng(seq)))
            writers.append(SigMFWriter(
                out_dir / sensor_id,
                datatype=receiver.datatype,
                sample_rate_hz=self.sample_rate_hz,
                center_freq_hz=self.center_freq_hz,
                t_start_s=self.start_epoch_s,
                sensor_id=sensor_id,
                gain_db=config.gain_db,
                description=f"cellwatch simulation: {self.scenario.name} on {self.site.name} (seed {self.seed})",
                extra_global={"cellwatch:seed": self.seed, "cellwatch:scenario": self.scenario.name},
            ))
        for writer in writers:
            writer.__enter__()
        rng_render = np.random.default_rng(self._render_seed())
        try:
            self._render(models, writers, rng_render, progress)
        finally:
            for writer in writers:
                writer.__exit__(None, None, None)
        truth_path = out_dir / "truth.jsonl"
        with open(truth_path, "w", encoding="utf-8") as stream:
            for record in self.truth_records():
                stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        (out_dir / "simulation.json").write_text(json.dumps(self.metadata(), indent=2) + "\n", encoding="utf-8")
        return SimulationResult(out_dir, [out_dir / f"{s}.sigmf-meta" for s in self.sensor_ids], truth_path,
                                len(self.bursts), self.duration_s)

    def _render(self, models: list[RtlSdrModel], writers: list[SigMFWriter], rng: np.random.Generator,
                progress: Callable[[float], None] | None) -> None:
        block_n = int(BLOCK_DURATION_S * self.sample_rate_hz)
        for item_index, item in enumerate(self.bursts):
            if self._in_band(item.burst):
                for s, writer in enumerate(writers):
                    writer.annotate(
                        item.start_sample, item.n_samples,
                        freq_lower_hz=item.burst.freq_hz - item.burst.bandwidth_hz / 2,
                        freq_upper_hz=item.burst.freq_hz + item.burst.bandwidth_hz / 2,
                        label=item.burst.kind,
                        comment=item.phone_id,
                        extra={"cellwatch:rx_power_dbm": round(float(item.rx_power_dbm[s]), 2),
                               "cellwatch:tx_power_dbm": round(item.tx_power_dbm, 2),
                               "cellwatch:burst_index": item_index},
                    )
        positions = list(range(len(self.sensor_ids)))
        for n0, incident in self._incident_blocks(positions, self.center_freq_hz, 0, rng, block_n):
            for s in positions:
                raw, _n_dropped = models[s].process(incident[s], n0)
                writers[s].write_raw(raw.tobytes())
            if progress is not None:
                progress(incident.shape[1] / self.sample_rate_hz)
