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
from dsp.records import IQBlock
from sdr.scenario import Scenario, load_scenario, parse_utc
from sdr.sources.base import OVERLOAD_FRACTION, RUNNING, STOPPED, Source, check_center_freq

logger = logging.getLogger(__name__)

TIMESTAMP_MODES = ("now", "scenario")
DEFAULT_BLOCK_SAMPLES = 65_536
FULL_SCALE = 0.9999  # a cu8 component at 0 or 255 converts to -1 or +1


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
        overload_fraction: float = OVERLOAD_FRACTION,
    ) -> None:
        spec = spec or (f"sim:{site}:{scenario}:{sensor}" if scenario else f"sim:{site}:{sensor}")
        super().__init__(spec, sensor_id or sensor)
        if timestamps not in TIMESTAMP_MODES:
            raise InputError(spec, "timestamps", f"must be one of {', '.join(TIMESTAMP_MODES)}, got {timestamps!r}")
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
        self._timestamps = timestamps
        self._loop = bool(loop)
        self._block_samples = block_samples
        self._overload_fraction = overload_fraction

        self._sim: Any = None  # sdr.simulate.Simulation, built by open()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._center_freq_hz = self._requested_freq_hz or int(self._scenario.receiver.center_freq_hz or 0)
        self._gain_db: float | None = self._gain_override_db
        self._generator: Iterator[IQBlock] | None = None
        self._generator_base = 0  # unrolled scenario sample of the generator's loop start
        self._pending: IQBlock | None = None  # rendered, not yet handed over
        self._pos = 0  # unrolled scenario sample of the next sample to hand over
        self._first_pos = 0  # where the stream started: sample_index 0
        self._yielded_end = 0  # stream index just after the last block handed over
        self._t_origin_utc = 0.0  # UTC of unrolled scenario sample 0
        self._mono_origin = 0.0  # monotonic time of unrolled scenario sample 0 (pacing)
        self._render_s = 0.01  # running estimate of the time one block takes to render

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
        self._state = RUNNING
        if not self._loop and first >= n_total:
            self._state = STOPPED
            logger.warning("sim_over source=%s start_utc=%s: the scenario ended before the source opened",
                           self._spec, self._start_utc)
        logger.info("sim_open source=%s sensor=%s center_freq_hz=%d gain_db=%s realtime=%s timestamps=%s "
                    "start_s=%.3f loop=%s", self._spec, self._sensor, self._center_freq_hz, self._gain_db,
                    self._realtime, self._timestamps, (first % n_total) / self._rate_hz, self._loop)

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
                    started = time.perf_counter()
                    self._pending = self._render_next()
                    if self._pending is None:
                        return None
                    self._render_s = 0.8 * self._render_s + 0.2 * (time.perf_counter() - started)
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
            n_dropped = block.sample_index - self._yielded_end
            self._yielded_end = block.sample_index + block.n_samples
            if n_dropped != block.n_dropped:
                block = dataclasses.replace(block, n_dropped=n_dropped)
            return block

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
                self._generator = sim.stream(
                    self._sensor, start_s=offset / self._rate_hz, center_freq_hz=self._center_freq_hz,
                    gain_db=self._gain_override_db, block_samples=self._block_samples,
                )
            try:
                raw = next(self._generator)
            except StopIteration:
                self._generator = None
                self._pos = self._generator_base + n_total
                continue
            if raw.n_dropped:
                self._count(dropped=raw.n_dropped)
            if raw.n_samples and self._is_overloaded(raw):
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

    def _is_overloaded(self, block: IQBlock) -> bool:
        components = block.samples.view(np.float32)
        return bool(np.count_nonzero(np.abs(components) >= FULL_SCALE) > self._overload_fraction * components.size)

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
