"""One sensor of the simulated prison, live: a dongle that hears what :mod:`sdr.simulate` renders.

Spec: ``sim:SITE:SENSOR`` or ``sim:SITE:SCENARIO:SENSOR``. ``SITE`` is a bundled site
name (``demo_prison`` is ``calibration/sites/demo_prison.toml``) or a site file;
``SCENARIO`` a bundled scenario name (``sdr/scenarios/<name>.toml``) or a scenario file,
by default the bundled scenario named like the site; ``SENSOR`` one of the site's
sensor ids. ``cellwatch demo`` runs one node process per sensor, each with
``--source sim:demo_prison:<sensor>`` and the same ``seed`` and ``start_utc``: every
process renders the same phones, so their detections line up as real sensors' would.

Options (keyword arguments of :func:`~sdr.sources.base.open_source`, or a node
source's ``options``):

* ``seed`` (0): the simulation's seed. Same seed, same samples as ``cellwatch simulate``
  writes for this sensor, as long as the source is not retuned (``center_freq_hz``
  defaults to the scenario's receiver tuning and ``gain_db`` to the sensor's).
* ``realtime`` (True): hand each block over when the wall clock reaches its last sample;
  False renders as fast as the consumer reads.
* ``timestamps`` (``"now"``): the scenario's time axis mapped to the wall clock, its
  second 0 at ``start_utc`` (default: when the source opens, minus ``start_s``); with
  ``"scenario"``, the scenario's own ``start_utc`` (the times ``cellwatch simulate`` and
  its truth file use).
* ``start_utc``: UTC (epoch seconds, ISO 8601 text or a TOML date-time) of scenario
  second 0 in ``"now"`` mode.
  Processes given the same value agree on time; one opened later starts where the
  scenario is at that moment (looped when ``loop``).
* ``start_s`` (0): the scenario second the stream starts at (without ``start_utc``).
* ``loop`` (True): start the scenario again at its end, time running on; False stops
  the source at the end (``state`` becomes ``"stopped"``).
* ``duration_s``: shorten (or lengthen) the scenario.
* ``settle_s`` (0.02): samples discarded after :meth:`SimSource.tune`, as a dongle's tuner
  settles; they count in the next block's ``n_dropped`` and in ``n_settle_samples``.
* ``block_samples`` (65536, 27 ms at 2.4 MS/s, a librtlsdr transfer): samples per block.
* ``max_lag_s`` (2.0): in real time, a source that falls this far behind the wall clock
  (the machine cannot render as fast as time passes) skips ahead to the present, and
  counts the skipped samples as dropped, as an overflowing USB queue would.
* ``render`` (``"auto"``): ``"exact"`` renders every sample as ``cellwatch simulate`` does
  (fresh noise, every burst synthesized); ``"fast"`` is the cheap renderer of
  :class:`FastRenderer` (a replayed noise bank, only the samples that carry a burst
  digitized, each burst shape synthesized a few times and reused), 1-3 % of a core at
  2.4 MS/s instead of 14 %, so that the demo's twelve sensors keep up on a two-core
  laptop; ``"auto"`` is fast in real time and exact otherwise.

In real time the source measures its *lag*, how late each block is handed over after its
last sample is due (a consumer or a machine that cannot keep up), and logs it every
``lag_log_s`` (30 s) with the share of a core spent rendering
(``sim_lag ... lag_s_mean lag_s_max render_cpu``); :attr:`SimSource.lag_s` is the last value.

Retuning renders from the next sample on at the new centre frequency: the bursts that
fall in the new 2.4 MHz appear, with the sensor's own received powers. Simulated USB
drops (the scenario's ``drop_probability``) are counted as dropped samples.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from calibration.site import Site, load_site
from dsp.errors import InputError
from dsp.iq import cu8_to_complex64
from dsp.records import IQBlock
from dsp.waveform import render_burst
from sdr.receiver import NoiseBank, RtlSdrModel
from sdr.scenario import Scenario, load_scenario, parse_utc
from sdr.sources.base import OVERLOAD_FRACTION, RUNNING, STOPPED, Source, check_center_freq

logger = logging.getLogger(__name__)

TIMESTAMP_MODES = ("now", "scenario")
RENDER_MODES = ("auto", "exact", "fast")
DEFAULT_BLOCK_SAMPLES = 65_536
FULL_SCALE = 0.9999  # a cu8 component at 0 or 255 converts to -1 or +1
NOISE_BANK_SAMPLES = 1 << 19  # 0.22 s at 2.4 MS/s: 4 MiB of noise, and as much of idle output
WAVEFORM_VARIANTS = 8  # distinct renderings kept per burst shape (kind, channel, length)
SKIP_BELOW_SNR_DB = -30.0  # as Simulation.stream: bursts this far under the noise cannot move a sample
LAG_LOG_S = 30.0
_VARYING_PARAMS = frozenset({"fn", "session"})  # burst parameters that do not change its waveform's shape


def bundled_site_path(name: str) -> Path:
    return Path(str(resources.files("calibration") / "sites" / f"{name}.toml"))


def bundled_scenario_path(name: str) -> Path:
    return Path(str(resources.files("sdr") / "scenarios" / f"{name}.toml"))


def _is_file_name(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith(".toml")


def resolve_site(site: str, spec: str) -> Path:
    path = Path(site) if _is_file_name(site) else bundled_site_path(site)
    if not path.is_file():
        what = "site file" if _is_file_name(site) else "bundled site (or give a path to a site .toml)"
        raise InputError(spec, "site", f"no {what} {site!r}")
    return path


def resolve_scenario(scenario: str | None, site: str, spec: str) -> Path:
    if scenario is None:
        path = bundled_scenario_path(Path(site).stem)
        if not path.is_file():
            raise InputError(spec, "scenario", f"no bundled scenario for site {Path(site).stem!r}: use sim:SITE:SCENARIO:SENSOR")
        return path
    path = Path(scenario) if _is_file_name(scenario) else bundled_scenario_path(scenario)
    if not path.is_file():
        raise InputError(spec, "scenario", f"no scenario {scenario!r}")
    return path


def _utc_seconds(value: Any, spec: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime):  # a TOML date-time
        moment = value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)
        return moment.timestamp()
    if isinstance(value, str):
        try:
            return parse_utc(value)
        except ValueError as exc:
            raise InputError(spec, "start_utc", str(exc)) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(spec, "start_utc", f"must be seconds since the Unix epoch or an ISO 8601 time, got {value!r}")
    return float(value)


def _seconds(value: Any, spec: str, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0 \
            or (positive and value == 0):
        kind = "a positive" if positive else "a non-negative"
        raise InputError(spec, name, f"must be {kind} number of seconds, got {value!r}")
    return float(value)


def _shape_key(item: Any) -> tuple[Any, ...]:
    """What a burst's waveform depends on, its data aside: bursts with the same key share renderings."""
    burst = item.burst
    params = tuple(sorted((k, repr(v)) for k, v in burst.params.items() if k not in _VARYING_PARAMS))
    return burst.kind, burst.freq_hz, burst.bandwidth_hz, item.n_samples, params


@dataclasses.dataclass(frozen=True)
class BurstTable:
    """One sensor's view of a simulation's bursts as arrays (built once, shared by every tuning)."""

    items: list[Any]  # the Simulation's SimulatedBurst records, in start order
    freqs_hz: np.ndarray
    widths_hz: np.ndarray
    starts: np.ndarray  # first sample (int64)
    ends: np.ndarray  # sample after the last
    rx_dbm: np.ndarray  # received power at this sensor
    phases: np.ndarray  # carrier phase at this sensor (radians)
    snr_db: np.ndarray  # received power over this sensor's noise in the burst's bandwidth

    @classmethod
    def build(cls, sim: Any, position: int) -> BurstTable:
        items = sim.bursts
        n = len(items)
        widths = np.fromiter((b.burst.bandwidth_hz for b in items), np.float64, n)
        starts = np.fromiter((b.start_sample for b in items), np.int64, n)
        rx_dbm = np.fromiter((b.rx_power_dbm[position] for b in items), np.float64, n)
        noise_dbm = {w: sim.noise_dbm(position, w) for w in np.unique(widths)}
        return cls(
            items=list(items),
            freqs_hz=np.fromiter((b.burst.freq_hz for b in items), np.float64, n),
            widths_hz=widths,
            starts=starts,
            ends=starts + np.fromiter((b.n_samples for b in items), np.int64, n),
            rx_dbm=rx_dbm,
            phases=np.fromiter((b.phases[position] for b in items), np.float64, n),
            snr_db=rx_dbm - np.array([noise_dbm[w] for w in widths]),
        )


class FastRenderer:
    """One simulated dongle at one tuning and gain, cheap enough for twelve in real time on two cores.

    Profiling a live simulated sensor (``cellwatch node`` with a ``sim`` source at
    2.4 MS/s on the demo evening: 0.34 of a core) put 0.14 in rendering: fresh Gaussian
    noise and 8-bit quantization of every sample (:meth:`RtlSdrModel.process`), and GMSK
    synthesis of every GSM burst (one per 4.6 ms TDMA frame per call). Here:

    * the noise comes from a :class:`~sdr.receiver.NoiseBank`, read at a random offset per
      block; a block starts as the bank's quantized idle output (a copy) and only the
      spans that hold a burst are digitized again, with the bank's own noise under them,
      so every sample still has the receiver model's exact distribution;
    * bursts more than 30 dB under this sensor's noise are left out (as
      :meth:`sdr.simulate.Simulation.stream` does once retuned): they cannot move an 8-bit
      sample; the far wing's sensors then render almost nothing;
    * each burst shape (kind, channel, length: :func:`_shape_key`) is synthesized
      :data:`WAVEFORM_VARIANTS` times with fresh data and the renderings are reused in
      random order. Power, timing, frequency and bandwidth are those of each burst, with
      its own fading and carrier phase at this sensor; only the data bits repeat.

    The scenario, the bursts and their received powers are the :class:`Simulation`'s, so
    every process given the same seed renders the same phones. A retuned source builds a
    new renderer (cheap) around the same :class:`BurstTable` and, for the same gain, the
    same noise bank (:meth:`make_bank`): noise does not depend on the tuning.
    """

    def __init__(self, sim: Any, position: int, center_freq_hz: int, gain_db: float | None,
                 block_samples: int, seed: int, *, table: BurstTable | None = None,
                 bank: NoiseBank | None = None) -> None:
        config = sim.receiver_configs[position]
        if gain_db is not None:
            config = dataclasses.replace(config, gain_db=gain_db)
        self.sim = sim
        self.position = position
        self.center_freq_hz = center_freq_hz
        self.gain_db = float(config.gain_db)
        self.sample_rate_hz = float(sim.sample_rate_hz)
        key = (position, center_freq_hz, int(round(config.gain_db * 10)))
        render_seq, receiver_seq = np.random.SeedSequence(seed, spawn_key=(103, *key)).spawn(2)
        self.model = RtlSdrModel(config, self.sample_rate_hz, center_freq_hz, np.random.default_rng(receiver_seq))
        if bank is None or bank.n_samples + block_samples > bank.noise.shape[0]:
            bank = self.make_bank(self.model, position, seed, block_samples)
        self.bank = bank
        self.block_samples = block_samples
        self._rng = np.random.default_rng(render_seq)

        table = table if table is not None else BurstTable.build(sim, position)
        in_band = np.abs(table.freqs_hz - center_freq_hz) - table.widths_hz / 2.0 < self.sample_rate_hz / 2.0
        chosen = np.flatnonzero(in_band & (table.snr_db >= SKIP_BELOW_SNR_DB))
        self.table = table
        self._items = [table.items[i] for i in chosen]
        self._starts = table.starts[chosen]
        self._ends = table.ends[chosen]
        self._amplitudes = (np.sqrt(10.0 ** (table.rx_dbm[chosen] / 10.0))
                            * np.exp(1j * table.phases[chosen])).astype(np.complex64)
        self._max_samples = int((self._ends - self._starts).max(initial=0))
        self._shapes: dict[tuple[Any, ...], list[np.ndarray]] = {}
        self._active: dict[int, np.ndarray] = {}  # bursts spanning blocks keep their rendering
        self._interferers = [
            (i, np.complex64(math.sqrt(10.0 ** (sim._interferer_rx_dbm[i][position] / 10.0))
                             * np.exp(1j * sim._interferer_phases[i][position])))
            for i in range(len(sim.interferers))
        ]
        logger.debug("fast_renderer sensor=%s center_freq_hz=%d bursts=%d of %d", sim.sensor_ids[position],
                     center_freq_hz, len(chosen), len(table.items))

    @staticmethod
    def make_bank(model: RtlSdrModel, position: int, seed: int, block_samples: int) -> NoiseBank:
        """The noise bank of ``model``'s dongle (seeded by sensor and gain, not by tuning)."""
        key = (position, int(round(model.config.gain_db * 10)))
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(102, *key)))
        return NoiseBank(model, NOISE_BANK_SAMPLES, rng, max_block=block_samples)

    @property
    def n_bursts(self) -> int:
        """Bursts this sensor hears at this tuning (in band, not far under its noise)."""
        return len(self._items)

    def _waveform(self, j: int) -> np.ndarray:
        wave = self._active.get(j)
        if wave is None:
            item = self._items[j]
            renderings = self._shapes.setdefault(_shape_key(item), [])
            if len(renderings) < WAVEFORM_VARIANTS:
                wave = render_burst(item.burst, self._rng, self.sample_rate_hz, self.center_freq_hz)
                renderings.append(wave)
            else:
                wave = renderings[int(self._rng.integers(WAVEFORM_VARIANTS))]
            self._active[j] = wave
        return wave

    def _spans(self, n0: int, n1: int) -> list[tuple[int, int, list[int]]]:
        """Disjoint ``(lo, hi, bursts)`` covering every burst sample in ``[n0, n1)``."""
        first = int(np.searchsorted(self._starts, n0 - self._max_samples, side="left"))
        last = int(np.searchsorted(self._starts, n1, side="left"))
        spans: list[tuple[int, int, list[int]]] = []
        for j in range(first, last):  # a loop over bursts, not samples
            end = int(self._ends[j])
            if end <= n0:
                continue
            lo, hi = max(int(self._starts[j]), n0), min(end, n1)
            if spans and lo <= spans[-1][1]:
                span_lo, span_hi, members = spans[-1]
                members.append(j)
                spans[-1] = (span_lo, max(span_hi, hi), members)
            else:
                spans.append((lo, hi, [j]))
        return spans

    def render(self, n0: int, n: int) -> tuple[np.ndarray, int, int]:
        """Samples ``[n0, n0+n)`` of the scenario (complex64, dropped transfers removed), the
        number of samples dropped, and the number of I/Q components at the ADC rails."""
        if n > self.block_samples:
            raise ValueError(f"blocks of at most {self.block_samples} samples, not {n}")
        n1 = n0 + n
        spans = self._spans(n0, n1)
        carriers = [(amplitude, c) for i, amplitude in self._interferers
                    if (c := self.sim._interferer_block(i, n0, n, self.center_freq_hz)) is not None]
        if carriers:  # a continuous emitter: the whole block carries signal
            spans = [(n0, n1, sorted({j for _, _, members in spans for j in members}))]
        offset = self.bank.offset()
        idle_rails = self.bank.idle_rails
        out = self.bank.idle[offset:offset + n].copy()
        rails = int(idle_rails[offset + n] - idle_rails[offset])
        for lo, hi, members in spans:
            field = np.zeros(hi - lo, dtype=np.complex64)
            for j in members:
                start = int(self._starts[j])
                a, b = max(lo, start), min(hi, int(self._ends[j]))
                if a < b:
                    field[a - lo:b - lo] += self._amplitudes[j] * self._waveform(j)[a - start:b - start]
            for amplitude, carrier in carriers:
                field += amplitude * carrier[lo - n0:hi - n0]
            a, b = offset + lo - n0, offset + hi - n0
            raw = self.model.digitize(field, lo, self.bank.noise[a:b])
            out[lo - n0:hi - n0] = cu8_to_complex64(raw)
            rails += int(np.count_nonzero((raw == 0) | (raw == 255))) - int(idle_rails[b] - idle_rails[a])
        for j in [j for j in self._active if self._ends[j] <= n1]:
            del self._active[j]
        keep = self.model.drop_transfers(n0, n)
        if keep is None:
            return out, 0, rails
        return out[keep], int(n - np.count_nonzero(keep)), rails

    def blocks(self, start_sample: int) -> Iterator[tuple[IQBlock, int]]:
        """``(block, rail components)`` from ``start_sample`` to the scenario's end, as
        :meth:`Simulation.stream` yields them (scenario time axis)."""
        sim = self.sim
        self._active.clear()
        for n0 in range(start_sample, sim.n_samples, self.block_samples):
            n = min(self.block_samples, sim.n_samples - n0)
            samples, n_lost, rails = self.render(n0, n)
            yield IQBlock(
                samples=samples,
                center_freq_hz=self.center_freq_hz,
                sample_rate_hz=self.sample_rate_hz,
                t_start_s=sim.start_epoch_s + (n0 + n_lost) / self.sample_rate_hz,
                sensor_id=sim.sensor_ids[self.position],
                sample_index=n0 + n_lost,
                gain_db=self.gain_db,
                n_dropped=n_lost,
            ), rails


class SimSource(Source):
    """A simulated sensor's dongle; see the module docstring for the spec and options."""

    def __init__(
        self,
        site: str,
        sensor: str,
        *,
        scenario: str | None = None,
        spec: str | None = None,
        sensor_id: str | None = None,
        sample_rate_hz: float | None = None,
        center_freq_hz: int | None = None,
        gain_db: float | None = None,
        ppm: float = 0.0,
        seed: int = 0,
        realtime: bool = True,
        timestamps: str = "now",
        start_utc: float | str | None = None,
        start_s: float = 0.0,
        loop: bool = True,
        duration_s: float | None = None,
        settle_s: float = 0.02,
        block_samples: int = DEFAULT_BLOCK_SAMPLES,
        max_lag_s: float = 2.0,
        render: str = "auto",
        lag_log_s: float = LAG_LOG_S,
        overload_fraction: float = OVERLOAD_FRACTION,
    ) -> None:
        spec = spec or (f"sim:{site}:{scenario}:{sensor}" if scenario else f"sim:{site}:{sensor}")
        super().__init__(spec, sensor_id or sensor)
        if timestamps not in TIMESTAMP_MODES:
            raise InputError(spec, "timestamps", f"must be one of {', '.join(TIMESTAMP_MODES)}, got {timestamps!r}")
        if render not in RENDER_MODES:
            raise InputError(spec, "render", f"must be one of {', '.join(RENDER_MODES)}, got {render!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InputError(spec, "seed", f"must be a non-negative integer, got {seed!r}")
        if isinstance(block_samples, bool) or not isinstance(block_samples, int) or block_samples < 256:
            raise InputError(spec, "block_samples", f"must be an integer >= 256, got {block_samples!r}")
        if ppm:
            raise InputError(spec, "ppm", "a simulated dongle's crystal error comes from the scenario "
                             "(receiver.ppm_spread); leave ppm at 0")
        self._start_utc = _utc_seconds(start_utc, spec)
        self._start_s = _seconds(start_s, spec, "start_s")
        if self._start_utc is not None and self._start_s:
            raise InputError(spec, "start_s", "give start_utc or start_s, not both")
        if self._start_utc is not None and timestamps != "now":
            raise InputError(spec, "start_utc", "only with timestamps = \"now\"")
        self._settle_s = _seconds(settle_s, spec, "settle_s")
        self._max_lag_s = _seconds(max_lag_s, spec, "max_lag_s", positive=True)
        self._lag_log_s = _seconds(lag_log_s, spec, "lag_log_s", positive=True)
        self._duration_s = None if duration_s is None else _seconds(duration_s, spec, "duration_s", positive=True)
        if gain_db is not None and (isinstance(gain_db, bool) or not isinstance(gain_db, int | float)
                                    or not 0.0 <= gain_db <= 49.6):
            raise InputError(spec, "gain_db", f"must be a tuner gain of 0-49.6 dB, got {gain_db!r}")

        self._site_path = resolve_site(site, spec)
        self._scenario_path = resolve_scenario(scenario, site, spec)
        self._site: Site = load_site(self._site_path)
        self._scenario: Scenario = load_scenario(self._scenario_path)
        wanted = self._scenario.sensors or [s.id for s in self._site.sensors]
        if sensor not in wanted:
            raise InputError(spec, "sensor", f"unknown sensor {sensor!r}; this simulation has {', '.join(wanted)}")
        self._sensor = sensor
        rate = float(self._scenario.receiver.sample_rate_hz)
        if sample_rate_hz is not None and float(sample_rate_hz) != rate:
            raise InputError(spec, "sample_rate_hz", f"the scenario's dongles run at {rate:g} S/s, not {sample_rate_hz:g}")
        self._rate_hz = rate
        self._requested_freq_hz = None if center_freq_hz is None else check_center_freq(spec, center_freq_hz)
        self._gain_override_db = None if gain_db is None else float(gain_db)
        self._seed = seed
        self._realtime = bool(realtime)
        self._fast = render == "fast" or (render == "auto" and self._realtime)
        self._timestamps = timestamps
        self._loop = bool(loop)
        self._block_samples = block_samples
        self._overload_fraction = overload_fraction

        self._sim: Any = None  # sdr.simulate.Simulation, built by open()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._center_freq_hz = self._requested_freq_hz or int(self._scenario.receiver.center_freq_hz or 0)
        self._gain_db: float | None = self._gain_override_db
        self._generator: Iterator[tuple[IQBlock, int | None]] | None = None  # (block, rail components)
        self._generator_base = 0  # unrolled scenario sample of the generator's loop start
        self._pending: IQBlock | None = None  # rendered, not yet handed over
        self._pos = 0  # unrolled scenario sample of the next sample to hand over
        self._first_pos = 0  # where the stream started: sample_index 0
        self._yielded_end = 0  # stream index just after the last block handed over
        self._t_origin_utc = 0.0  # UTC of unrolled scenario sample 0
        self._mono_origin = 0.0  # monotonic time of unrolled scenario sample 0 (pacing)
        self._render_s = 0.01  # running estimate of the time one block takes to render
        self._renderer: FastRenderer | None = None  # render = "fast": for the current tuning and gain
        self._burst_table: BurstTable | None = None  # render = "fast": built once
        self._lag_s = 0.0  # how late the last block was handed over (real time)
        self._lag_window: list[float] = []  # lags since the last sim_lag log line
        self._render_cpu_s = 0.0  # thread CPU spent rendering since the last log line
        self._lag_logged_at = 0.0  # monotonic

    # -- settings -------------------------------------------------------------------------------

    @property
    def sample_rate_hz(self) -> float:
        return self._rate_hz

    @property
    def center_freq_hz(self) -> int:
        return self._center_freq_hz

    @property
    def gain_db(self) -> float | None:
        return self._gain_db

    @property
    def realtime(self) -> bool:
        return self._realtime

    @property
    def render_mode(self) -> str:
        """``"fast"`` or ``"exact"``: the renderer in use (see the module docstring)."""
        return "fast" if self._fast else "exact"

    @property
    def lag_s(self) -> float:
        """How late, in seconds, the last block was handed over after its last sample was due (real time)."""
        return self._lag_s

    @property
    def simulation(self) -> Any:
        """The :class:`sdr.simulate.Simulation` behind the source (after :meth:`open`)."""
        return self._sim

    # -- life cycle -----------------------------------------------------------------------------

    def open(self) -> None:
        if self._state != STOPPED:
            return
        if self._sim is None:
            from sdr.simulate import Simulation

            started = time.perf_counter()
            self._sim = Simulation(self._site, self._scenario, seed=self._seed, duration_s=self._duration_s,
                                   scenario_source=str(self._scenario_path))
            logger.info("sim_built source=%s n_bursts=%d duration_s=%.1f build_s=%.2f", self._spec,
                        len(self._sim.bursts), self._sim.duration_s, time.perf_counter() - started)
        sim = self._sim
        position = sim.sensor_ids.index(self._sensor)
        if self._requested_freq_hz is None:
            self._center_freq_hz = int(sim.center_freq_hz)
        if self._gain_override_db is None:
            self._gain_db = float(sim.receiver_configs[position].gain_db)
        if self._fast:  # noise bank and burst table now, not in the first block's time
            self._fast_renderer()
        n_total = sim.n_samples
        now_utc, now_mono = time.time(), time.monotonic()
        first = int(round(self._start_s * self._rate_hz))
        if self._timestamps == "scenario":
            self._t_origin_utc = sim.start_epoch_s
        elif self._start_utc is not None:
            self._t_origin_utc = self._start_utc
            if self._realtime:
                first = max(0, math.floor((now_utc - self._start_utc) * self._rate_hz))
        else:
            self._t_origin_utc = now_utc - first / self._rate_hz
        if self._timestamps == "now":
            self._mono_origin = now_mono - (now_utc - self._t_origin_utc)
        else:
            self._mono_origin = now_mono - first / self._rate_hz
        self._stop.clear()
        self._first_pos = self._pos = first
        self._yielded_end = 0
        self._generator = None
        self._pending = None
        self._lag_window = []
        self._render_cpu_s = 0.0
        self._lag_logged_at = now_mono
        self._state = RUNNING
        if not self._loop and first >= n_total:
            self._state = STOPPED
            logger.warning("sim_over source=%s start_utc=%s: the scenario ended before the source opened",
                           self._spec, self._start_utc)
        logger.info("sim_open source=%s sensor=%s center_freq_hz=%d gain_db=%s realtime=%s timestamps=%s "
                    "start_s=%.3f loop=%s render=%s", self._spec, self._sensor, self._center_freq_hz, self._gain_db,
                    self._realtime, self._timestamps, (first % n_total) / self._rate_hz, self._loop, self.render_mode)

    def close(self) -> None:
        self._stop.set()
        self._state = STOPPED
        with self._lock:
            self._generator = None
            self._pending = None

    # -- data -----------------------------------------------------------------------------------

    def read_block(self, timeout_s: float | None = None) -> IQBlock | None:
        """The next block. In real time it is rendered just before it is due (twice the usual
        render time ahead), so a :meth:`tune` in between costs nothing, then handed over when due."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            early_s = 0.0
            with self._lock:
                if self._state != RUNNING:
                    return None
                if self._pending is None and self._realtime:
                    self._catch_up()
                    due = self._mono_origin + (self._pos + self._block_samples) / self._rate_hz
                    early_s = due - time.monotonic() - 2.0 * self._render_s - 0.005
                if self._pending is None and early_s <= 0:
                    started, started_cpu = time.perf_counter(), time.thread_time()
                    self._pending = self._render_next()
                    if self._pending is None:
                        return None
                    self._render_s = 0.8 * self._render_s + 0.2 * (time.perf_counter() - started)
                    self._render_cpu_s += time.thread_time() - started_cpu
                block = self._pending
            if block is not None:
                break
            wait_s = early_s if deadline is None else min(early_s, deadline - time.monotonic())
            if wait_s <= 0 or self._stop.wait(wait_s):
                return None
        if self._realtime:
            due = self._mono_origin + (self._unrolled(block) + block.n_samples) / self._rate_hz
            remaining_s = due - time.monotonic()
            if deadline is not None and time.monotonic() + remaining_s > deadline:
                self._stop.wait(max(0.0, deadline - time.monotonic()))
                return None
            if remaining_s > 0 and self._stop.wait(remaining_s):
                return None
        with self._lock:
            if self._pending is not block:  # retuned or closed meanwhile
                return None
            self._pending = None
            self._pos = self._unrolled(block) + block.n_samples
            if self._realtime:
                self._note_lag(time.monotonic() - (self._mono_origin + self._pos / self._rate_hz))
            n_dropped = block.sample_index - self._yielded_end
            self._yielded_end = block.sample_index + block.n_samples
            if n_dropped != block.n_dropped:
                block = dataclasses.replace(block, n_dropped=n_dropped)
            return block

    def _note_lag(self, lag_s: float) -> None:
        """Keep the handover lag; every ``lag_log_s`` log its mean and maximum and the rendering's CPU share."""
        self._lag_s = max(0.0, lag_s)
        self._lag_window.append(self._lag_s)
        now = time.monotonic()
        elapsed = now - self._lag_logged_at
        if elapsed >= self._lag_log_s:
            lags = self._lag_window
            logger.info("sim_lag source=%s lag_s_mean=%.3f lag_s_max=%.3f render_cpu=%.3f dropped=%d render=%s",
                        self._spec, sum(lags) / len(lags), max(lags), self._render_cpu_s / elapsed,
                        self.n_dropped_samples, self.render_mode)
            self._lag_window = []
            self._render_cpu_s = 0.0
            self._lag_logged_at = now

    def _unrolled(self, block: IQBlock) -> int:
        return block.sample_index + self._first_pos

    def _catch_up(self) -> None:
        """Skip to the present when rendering fell more than ``max_lag_s`` behind the wall clock."""
        now_pos = math.floor((time.monotonic() - self._mono_origin) * self._rate_hz)
        lag = now_pos - self._pos
        if lag <= self._max_lag_s * self._rate_hz:
            return
        self._count(dropped=lag)
        logger.warning("sim_behind source=%s lag_s=%.2f: skipping ahead (the machine renders slower than real time)",
                       self._spec, lag / self._rate_hz)
        self._pos = now_pos
        self._generator = None

    def _render_next(self) -> IQBlock | None:
        sim = self._sim
        n_total = sim.n_samples
        while True:
            if self._generator is None:
                loop_index, offset = divmod(self._pos, n_total)
                if loop_index > 0 and not self._loop:
                    self._state = STOPPED
                    return None
                self._generator_base = loop_index * n_total
                self._generator = self._blocks(offset)
            try:
                raw, n_rail = next(self._generator)
            except StopIteration:
                self._generator = None
                self._pos = self._generator_base + n_total
                continue
            if raw.n_dropped:
                self._count(dropped=raw.n_dropped)
            if raw.n_samples and self._is_overloaded(raw, n_rail):
                self._count(overloads=1)
            unrolled = self._generator_base + raw.sample_index
            return IQBlock(
                samples=raw.samples,
                center_freq_hz=self._center_freq_hz,
                sample_rate_hz=self._rate_hz,
                t_start_s=self._t_origin_utc + unrolled / self._rate_hz,
                sensor_id=self._sensor_id,
                sample_index=unrolled - self._first_pos,
                gain_db=raw.gain_db,
                n_dropped=raw.n_dropped,
            )

    def _blocks(self, offset: int) -> Iterator[tuple[IQBlock, int | None]]:
        """The renderer's blocks from scenario sample ``offset``, with their rail components when known."""
        sim = self._sim
        if not self._fast:
            for block in sim.stream(self._sensor, start_s=offset / self._rate_hz, center_freq_hz=self._center_freq_hz,
                                    gain_db=self._gain_override_db, block_samples=self._block_samples):
                yield block, None
            return
        yield from self._fast_renderer().blocks(offset)

    def _fast_renderer(self) -> FastRenderer:
        """The fast renderer for the current tuning (a retune makes a new one around the same bank)."""
        sim = self._sim
        renderer = self._renderer
        if renderer is None or renderer.center_freq_hz != self._center_freq_hz:
            position = sim.sensor_ids.index(self._sensor)
            if self._burst_table is None:
                self._burst_table = BurstTable.build(sim, position)
            renderer = FastRenderer(sim, position, self._center_freq_hz, self._gain_override_db, self._block_samples,
                                    self._seed, table=self._burst_table,
                                    bank=None if self._renderer is None else self._renderer.bank)
            level = logging.INFO if self._renderer is None else logging.DEBUG  # a scanning source retunes often
            self._renderer = renderer
            logger.log(level, "sim_fast_renderer source=%s center_freq_hz=%d bursts_heard=%d of %d", self._spec,
                       self._center_freq_hz, renderer.n_bursts, len(sim.bursts))
        return renderer

    def _is_overloaded(self, block: IQBlock, n_rail: int | None = None) -> bool:
        components = block.samples.view(np.float32)
        if n_rail is None:
            n_rail = int(np.count_nonzero(np.abs(components) >= FULL_SCALE))
        return bool(n_rail > self._overload_fraction * components.size)

    # -- tuning ---------------------------------------------------------------------------------

    def tune(self, center_freq_hz: int) -> None:
        """Retune from the next sample not yet handed over; ``settle_s`` of samples is discarded.

        Returns at once: in real time the settle interval passes before the next block is
        due, as it would on a dongle.
        """
        freq = check_center_freq(self._spec, center_freq_hz)
        with self._lock:
            if freq == self._center_freq_hz:
                return
            self._center_freq_hz = freq
            self._pending = None
            self._generator = None
            n_settle = int(round(self._settle_s * self._rate_hz))
            self._pos += n_settle
            if n_settle:
                self._count(settle=n_settle)
        logger.debug("sim_tune source=%s center_freq_hz=%d", self._spec, freq)
