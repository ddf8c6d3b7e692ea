"""The sensor node runtime: sources -> detector -> sender, with band scanning and heartbeats.

One thread runs the DSP: it polls every source (``read_block(0)``: live sources buffer in
their own worker threads, so polling never loses samples), feeds each block to the
:class:`~dsp.pipeline.DetectionPipeline` of the tuning it was taken at, and hands the
detections to the :class:`~sdr.sender.DetectionSender`, whose own thread delivers them.
Detections carry burst power in dBFS and the gain setting; the service turns them into
dBm with the sensor's calibration (DESIGN.md), so recalibrating never touches a node.

Scanning (:mod:`sdr.bandplan`): a scanning source is retuned when its schedule's slot
ends. The schedule's clock is UTC now for a source that runs in real time (every node
of a site then watches the same channel at the same moment) and the stream's own time
for one that runs faster (a simulation or replay as fast as possible). Blocks are routed
by the frequency they carry, never by the last command: a live source may still deliver
samples taken before the retune. Each tuning keeps its own pipeline, whose noise floor
therefore survives between visits; when the tuning changes the pipeline just left is
flushed (its open bursts end with the dwell), and the samples taken while the tuner
settled are discarded by the source itself (they show as ``n_dropped``). At start a
scanning source makes one *warm-up pass*: it stays on each channel until that channel's
detector has its noise floor (0.25 s of samples), ~0.3 s a channel, 25 s for the 76
default channels, then follows the UTC schedule (:meth:`Node._warm_up` says why).

Heartbeats every ``heartbeat_s``: the sources' state (``running``, ``retrying`` while a
radio is away, ``stopped``), dropped samples and overloaded blocks, and per band its noise
floor (dBFS over the dongle's sampled band: the detector's per-column density, median over
columns and channels, plus 10·log10(sample rate), comparable to
:func:`sdr.receiver.noise_floor_dbfs`), the fraction of band x time actually watched over
the last three cycles or heartbeat interval (whichever is longer: a radio that is down reads 0)
and the planned revisit time (a node with a source faster than real time reports the
planned fraction instead). A band appears once one of its channels has a noise floor
(after 0.25 s of samples there). No clock offset is reported: the node does not measure
its NTP error.

IQ snippets (:mod:`dsp.snippets`, ``[snippets]`` in the config): each source keeps a
ring of its last ``ring_s`` of blocks (references, no copy), and for the detections its
pipelines report, the few the rate limit lets through (by default the first 2 bursts of
each new session, then one per session every 10 s, at most 60 a minute for the node)
are cut out with ``margin_s`` around them and queued in the outbox's snippet queue, so
they reach the service as reliably as detections (same acks, same outbox), without
holding detections back.

Failures: a source that cannot be opened, or fails while reading, is closed and reopened
with backoff (1 s doubling to 30 s) while heartbeats say ``retrying``; live sources also
reconnect by themselves. :meth:`Node.request_stop` (the CLI wires SIGINT and SIGTERM to
it) ends the loop: the sources close, every pipeline is flushed, a last heartbeat says
``stopped``, and the sender gets ``flush_timeout_s`` to deliver; whatever is not
acknowledged stays in the outbox for the next start.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dsp.errors import InputError
from dsp.pipeline import DetectionPipeline
from dsp.records import BandHealth, Detection, Heartbeat, IQBlock
from dsp.snippets import REASONS, IQSnippet, SnippetCutter, SnippetRateLimiter
from sdr.bandplan import Channel, ScanSchedule
from sdr.node_config import LIVE_KINDS, NodeSetup, SourcePlan
from sdr.sources import RETRYING, RUNNING, STOPPED, SourceError

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.005  # nothing was ready: wait this long before polling again
MAX_BLOCKS_PER_POLL = 8  # per source and round, so one fast source cannot starve the others
SUBMIT_INTERVAL_S = 0.1  # detections are written to the outbox (one fsync) at most this often
WARMUP_MAX_S = 2.0  # a warm-up visit that yields no noise floor this long (no samples) moves on
RETRY_MIN_S = 1.0
RETRY_MAX_S = 30.0


@dataclass
class _Unit:
    """One source at run time: its pipelines per tuning, its schedule position, its health."""

    plan: SourcePlan
    realtime: bool
    opened: bool = False
    finished: bool = False
    retry_at: float = 0.0  # monotonic
    backoff_s: float = RETRY_MIN_S
    error: str | None = None
    pipelines: dict[int, DetectionPipeline] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)  # centre -> channel
    last_freq_hz: int | None = None
    target_freq_hz: int | None = None
    slot_end_s: float = -math.inf
    warming: bool = True  # the first pass: each channel until its noise floor is known
    warm: set[int] = field(default_factory=set)  # centres whose detector has its noise floor
    visit_started_s: float | None = None  # schedule clock when the warm-up visit began
    warmup_done_s: float | None = None  # schedule clock when the warm-up pass ended
    n_blocks: int = 0
    n_samples: int = 0
    n_hops: int = 0
    n_detections: int = 0
    watched_samples: collections.Counter[int] = field(default_factory=collections.Counter)  # centre -> samples
    cutter: SnippetCutter | None = None  # None: no IQ snippets

    @property
    def source(self) -> Any:
        return self.plan.source

    @property
    def schedule(self) -> ScanSchedule:
        return self.plan.schedule

    @property
    def scanning(self) -> bool:
        return not self.schedule.is_fixed

    @property
    def state(self) -> str:
        if self.finished:
            return STOPPED
        if not self.opened:
            return RETRYING
        return str(self.source.state)


@dataclass(frozen=True)
class NodeStats:
    """What a node did (returned by :meth:`Node.run`, used by tests and the benchmark)."""

    n_detections: int
    n_submitted: int
    n_blocks: int
    n_samples: int
    signal_s: float  # seconds of samples processed, all sources together
    n_hops: int
    n_heartbeats: int
    n_pending_at_exit: int
    per_source: list[dict[str, Any]]
    n_snippets: int = 0  # IQ snippets cut and handed to the sender
    snippet_reasons: dict[str, int] = field(default_factory=dict)  # taken / rate_limited / not_in_ring ...


class Node:
    """Runs a :class:`~sdr.node_config.NodeSetup`; ``sender`` defaults to one built from its ``[service]``."""

    def __init__(self, setup: NodeSetup, *, sender: Any = None) -> None:
        self.setup = setup
        self._sender = sender
        self._own_sender = sender is None
        self._stop = threading.Event()
        self._units = [_Unit(plan, realtime=plan.kind in LIVE_KINDS
                             or bool(setup.config.sources[plan.index].options.get("realtime", True)))
                       for plan in setup.sources]
        for unit in self._units:
            for channel in unit.schedule.channels:
                unit.channels[channel.center_freq_hz] = channel
        if setup.snippets is not None:  # one limiter: the uplink budget is the node's
            limiter = SnippetRateLimiter(setup.snippets)
            for unit in self._units:
                unit.cutter = SnippetCutter(setup.snippets, limiter)
        self._pending: list[Detection] = []
        self._pending_snippets: list[IQSnippet] = []
        self._n_snippets = 0
        self._last_submit = time.monotonic()
        self._n_submitted = 0
        self._n_heartbeats = 0
        self._heartbeat_seq = 0
        self._watch_history: collections.deque[tuple[float, dict[str, float]]] = collections.deque()

    # -- control ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the loop to end (safe from a signal handler or another thread)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> NodeStats:
        """Run until :meth:`request_stop`, or until every source has ended (recordings that do not loop)."""
        setup = self.setup
        if self._sender is None:
            self._sender = self._make_sender()
            self._sender.start()
        log.info("node_start node_id=%s sensor_id=%s sources=%d endpoint=%s outbox=%s", setup.node_id,
                 setup.sensor_id, len(self._units), setup.config.service.endpoint, setup.outbox_path)
        for unit in self._units:
            s = unit.schedule
            if s.is_fixed:
                log.info("plan source=%s fixed_freq_hz=%d band=%s", unit.plan.spec, s.channels[0].center_freq_hz,
                         s.channels[0].band)
            else:
                log.info("plan source=%s channels=%d cycle_s=%.2f duty=%.2f bands=%s", unit.plan.spec, len(s.visits),
                         s.cycle_s, s.duty, ",".join(sorted({c.band for c in s.channels})))
        next_heartbeat = time.monotonic()
        try:
            for unit in self._units:
                self._open(unit)
            while not self._stop.is_set():
                progressed = False
                for unit in self._units:
                    progressed |= self._poll(unit)
                now = time.monotonic()
                if (self._pending or self._pending_snippets) and now - self._last_submit >= SUBMIT_INTERVAL_S:
                    self._submit()
                if now >= next_heartbeat:
                    self._heartbeat()
                    next_heartbeat = now + setup.config.heartbeat_s
                if all(u.finished for u in self._units):
                    log.info("node_sources_ended node_id=%s", setup.node_id)
                    break
                if not progressed:
                    self._stop.wait(IDLE_WAIT_S)
        finally:
            self._shutdown()
        return self.stats()

    def _make_sender(self) -> Any:
        from sdr.sender import DetectionSender

        service = self.setup.config.service
        try:
            self.setup.outbox_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(str(self.setup.outbox_path.parent), None,
                             f"cannot create the outbox folder: {exc.strerror or exc}") from None
        options: dict[str, Any] = {"max_snippets_pending": self.setup.config.snippets.max_pending}
        if service.insecure:
            return DetectionSender(service.endpoint, self.setup.node_id, self.setup.outbox_path, insecure=True,
                                   **options)
        return DetectionSender(service.endpoint, self.setup.node_id, self.setup.outbox_path,
                               server_public_key=self.setup.server_key, client_keys=self.setup.node_key, **options)

    # -- sources ---------------------------------------------------------------------------

    def _open(self, unit: _Unit) -> None:
        """Open ``unit``'s source; a radio that is not there is retried later (InputError propagates)."""
        try:
            unit.source.open()
        except SourceError as exc:
            self._failed(unit, str(exc))
            return
        unit.opened = True
        unit.error = None
        unit.backoff_s = RETRY_MIN_S
        if unit.cutter is not None:  # a reopened source may count its samples from 0 again
            unit.cutter.reset()
        unit.target_freq_hz = unit.source.center_freq_hz
        unit.slot_end_s = -math.inf
        unit.visit_started_s = None
        if unit.source.state == STOPPED:  # a simulation whose scenario is already over
            self._finish(unit)

    def _failed(self, unit: _Unit, reason: str) -> None:
        if unit.opened:
            try:
                unit.source.close()
            except (SourceError, OSError) as exc:
                log.debug("source_close_failed source=%s error=%s", unit.plan.spec, exc)
        unit.opened = False
        unit.error = reason
        unit.retry_at = time.monotonic() + unit.backoff_s
        log.warning("source_failed source=%s error=%s retry_in_s=%.1f", unit.plan.spec, reason, unit.backoff_s)
        unit.backoff_s = min(2.0 * unit.backoff_s, RETRY_MAX_S)
        self._flush_pipelines(unit)

    def _finish(self, unit: _Unit) -> None:
        unit.finished = True
        self._flush_pipelines(unit)
        log.info("source_ended source=%s n_blocks=%d n_detections=%d", unit.plan.spec, unit.n_blocks,
                 unit.n_detections)

    def _poll(self, unit: _Unit) -> bool:
        """Read what ``unit``'s source has ready, retune on schedule; True if a block came."""
        if unit.finished:
            return False
        if not unit.opened:
            if time.monotonic() >= unit.retry_at:
                self._open(unit)
            if not unit.opened:
                return False
        source = unit.source
        got = 0
        try:
            if unit.scanning and unit.realtime:
                self._hop(unit, time.time())
            for _ in range(MAX_BLOCKS_PER_POLL):
                block = source.read_block(0.0)
                if block is None:
                    if source.state == STOPPED and not self._stop.is_set():
                        if unit.plan.kind in LIVE_KINDS:  # a live source stops only when closed: its worker died
                            self._failed(unit, source.last_error or "source stopped")
                        else:
                            self._finish(unit)
                    break
                got += 1
                self._process(unit, block)
                if unit.scanning:
                    self._hop(unit, time.time() if unit.realtime else block.t_end_s)
        except (SourceError, OSError) as exc:
            self._failed(unit, str(exc))
        return got > 0

    def _hop(self, unit: _Unit, t_s: float) -> None:
        """Retune when the schedule's current slot is over (after the warm-up pass)."""
        if unit.warming:
            self._warm_up(unit, t_s)
            return
        if t_s < unit.slot_end_s:
            return
        index, unit.slot_end_s = unit.schedule.visit_to_tune(t_s, unit.target_freq_hz)
        self._tune(unit, unit.schedule.visits[index].channel.center_freq_hz)

    def _tune(self, unit: _Unit, freq: int) -> None:
        if freq != unit.target_freq_hz:
            unit.source.tune(freq)
            unit.target_freq_hz = freq
            unit.n_hops += 1

    def _warm_up(self, unit: _Unit, t_s: float) -> None:
        """First pass: stay on each channel until its detector has a noise floor, then move on.

        The detector needs ``warmup_s`` (0.25 s) of a channel's samples before it can test
        anything; collected over short dwells it would take several cycles, and a stream
        that ends during the warm-up makes the detector settle for an estimate from the
        few frames it has (meant for short recordings), whose errors cause false alarms.
        One visit per channel, as long as it needs, avoids both; then the UTC schedule
        takes over. ~0.3 s per channel: 25 s for the 76 default channels on one dongle.
        """
        current = unit.target_freq_hz
        if unit.visit_started_s is None:
            unit.visit_started_s = t_s
        pipeline = unit.pipelines.get(current) if current is not None else None
        if pipeline is not None and pipeline.detector.noise_floor_dbfs_hz is not None:
            unit.warm.add(current)  # type: ignore[arg-type]
        elif t_s - unit.visit_started_s < WARMUP_MAX_S:
            return
        else:  # no samples came: try the others, this one warms up on its scheduled visits
            log.warning("warmup_skipped source=%s center_freq_hz=%s", unit.plan.spec, current)
            unit.warm.add(current)  # type: ignore[arg-type]
        rest = [c.center_freq_hz for c in unit.schedule.channels if c.center_freq_hz not in unit.warm]
        if rest:
            unit.visit_started_s = t_s
            self._tune(unit, rest[0])
            return
        unit.warming = False
        unit.warmup_done_s = t_s
        log.info("warmup_done source=%s channels=%d", unit.plan.spec, len(unit.warm))
        self._hop(unit, t_s)

    # -- detection -------------------------------------------------------------------------

    def _process(self, unit: _Unit, block: IQBlock) -> None:
        freq = int(block.center_freq_hz)
        if unit.last_freq_hz is not None and freq != unit.last_freq_hz:
            self._flush_pipeline(unit, unit.last_freq_hz)
        pipeline = unit.pipelines.get(freq)
        if pipeline is None:
            pipeline = DetectionPipeline(unit.plan.sensor_id, block.sample_rate_hz, freq, self.setup.detector)
            unit.pipelines[freq] = pipeline
            if freq not in unit.channels:  # a live source's first blocks, or a fixed source's own frequency
                unit.channels[freq] = ScanSchedule.fixed(
                    self.setup.plan.fixed_channel(freq, block.sample_rate_hz)).channels[0]
        if unit.cutter is not None:
            unit.cutter.observe(block)  # before processing: the burst may end in this block
        detections = pipeline.process(block)
        unit.last_freq_hz = freq
        unit.n_blocks += 1
        unit.n_samples += block.n_samples
        unit.watched_samples[freq] += block.n_samples
        if detections:
            self._detected(unit, freq, detections)

    def _flush_pipeline(self, unit: _Unit, freq: int) -> None:
        pipeline = unit.pipelines.get(freq)
        if pipeline is not None:
            detections = pipeline.flush()
            if detections:
                self._detected(unit, freq, detections)

    def _detected(self, unit: _Unit, freq: int, detections: list[Detection]) -> None:
        unit.n_detections += len(detections)
        self._pending.extend(detections)
        if unit.cutter is not None:
            snippets = unit.cutter.cut(detections, freq)
            self._pending_snippets.extend(snippets)
            self._n_snippets += len(snippets)

    def _flush_pipelines(self, unit: _Unit) -> None:
        for freq in unit.pipelines:
            self._flush_pipeline(unit, freq)
        unit.last_freq_hz = None

    def _submit(self) -> None:
        detections, self._pending = self._pending, []
        snippets, self._pending_snippets = self._pending_snippets, []
        self._last_submit = time.monotonic()
        if detections:
            self._n_submitted += len(self._sender.submit(detections))
        if snippets:  # after their detections; a sender without snippet support takes none
            submit_snippets = getattr(self._sender, "submit_snippets", None)
            if submit_snippets is not None:
                submit_snippets(snippets)

    # -- heartbeats ------------------------------------------------------------------------

    def _band_floors(self) -> dict[str, float]:
        """Noise floor per band (dBFS over the sampled band), from the detectors that have one."""
        per_band: dict[str, list[float]] = collections.defaultdict(list)
        for unit in self._units:
            for freq, pipeline in unit.pipelines.items():
                detector = pipeline.detector
                density = detector.noise_floor_dbfs_hz
                if density is None:
                    continue
                usable = (np.asarray(detector.column_dofs) > 0) & ~np.asarray(detector.carrier_mask)
                values = np.asarray(density)[usable] if usable.any() else np.asarray(density)
                channel = unit.channels[freq]
                per_band[channel.band].append(float(np.median(values)) + 10.0 * math.log10(detector.sample_rate_hz))
        return {band: float(np.median(v)) for band, v in per_band.items()}

    def _band_width_hz(self, band: str) -> float:
        """A plan band's width, or the channel's for a fixed tuning outside the plan's bands."""
        for b in self.setup.plan.bands:
            if b.name == band:
                return float(b.width_hz)
        return max((c.width_hz for u in self._units for c in u.channels.values() if c.band == band), default=1.0)

    def _watched(self, now_s: float) -> dict[str, float]:
        """Fraction of band x time watched since the oldest kept snapshot (three cycles or a heartbeat ago)."""
        hz_s: dict[str, float] = collections.defaultdict(float)  # band -> Hz x s watched since start
        for unit in self._units:
            for freq, n in unit.watched_samples.items():
                channel = unit.channels[freq]
                width = min(channel.width_hz, self._band_width_hz(channel.band))
                hz_s[channel.band] += n / unit.source.sample_rate_hz * width
        self._watch_history.append((now_s, dict(hz_s)))
        span_s = max([self.setup.config.heartbeat_s] + [3.0 * u.schedule.cycle_s for u in self._units])
        while len(self._watch_history) > 2 and now_s - self._watch_history[1][0] >= span_s:
            self._watch_history.popleft()
        t0, old = self._watch_history[0]
        elapsed = now_s - t0
        if elapsed <= 0:
            return {}
        return {band: min(1.0, (total - old.get(band, 0.0)) / elapsed / self._band_width_hz(band))
                for band, total in hz_s.items()}

    def _revisit(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for unit in self._units:
            for channel in unit.schedule.channels:
                out[channel.band] = max(out.get(channel.band, 0.0), unit.schedule.cycle_s)
        return out

    def heartbeat(self) -> Heartbeat:
        """The heartbeat the node would send now (also logged)."""
        now = time.time()
        states = [u.state for u in self._units]
        if all(s == STOPPED for s in states):
            state = STOPPED
        elif any(s == RETRYING for s in states):
            state = RETRYING
        else:
            state = RUNNING
        n_dropped = sum(u.source.n_dropped_samples for u in self._units)
        n_overloads = sum(u.source.n_overloads for u in self._units)
        floors, revisit = self._band_floors(), self._revisit()
        if all(u.realtime for u in self._units):
            watched = self._watched(now)
        else:  # faster than real time: wall-clock shares mean nothing, report the plan's
            watched = {c.band: c.watched_fraction for c in self.setup.plan.coverage(self.setup.schedules)}
        order = [b.name for b in self.setup.plan.bands]
        names = sorted(floors, key=lambda b: (order.index(b) if b in order else len(order), b))
        bands = tuple(BandHealth(b, round(floors[b], 2), round(watched.get(b, 0.0), 5), round(revisit.get(b, 0.0), 3))
                      for b in names)
        parts = []
        for u in self._units:
            text = f"{u.plan.spec}={u.state}"
            if u.state == RETRYING and (u.error or u.source.last_error):
                text += f" ({u.error or u.source.last_error})"
            parts.append(text)
        warming = [b for b in order if b not in floors and any(c.band == b for u in self._units for c in u.schedule.channels)]
        if warming:
            parts.append("warming up: " + ",".join(warming))
        self._heartbeat_seq += 1
        return Heartbeat(sensor_id=self.setup.sensor_id, t_s=round(now, 6), source_state=state,
                         n_dropped_samples=int(n_dropped), n_overload_blocks=int(n_overloads), clock_offset_s=None,
                         bands=bands, seq=self._heartbeat_seq, message="; ".join(parts)[:1000])

    def _heartbeat(self) -> None:
        hb = self.heartbeat()
        self._sender.submit_heartbeat(hb)
        self._n_heartbeats += 1
        sender = self._sender.stats()
        log.info("heartbeat node=%s state=%s dropped=%d overloads=%d detections=%d pending=%d snippets=%d "
                 "snippets_pending=%d connected=%s bands=%s sources=%s", self.setup.node_id, hb.source_state,
                 hb.n_dropped_samples, hb.n_overload_blocks, sum(u.n_detections for u in self._units),
                 sender.n_pending, self._n_snippets, getattr(sender, "n_snippets_pending", 0), sender.connected,
                 ",".join(f"{b.band}:{b.noise_floor_dbfs:.1f}dBFS/{100 * b.watched_fraction:.2f}%/{b.revisit_s:.1f}s"
                          for b in hb.bands) or "-", hb.message.replace(" ", "_") or "-")

    # -- shutdown --------------------------------------------------------------------------

    def _shutdown(self) -> None:
        for unit in self._units:
            if unit.opened:
                try:
                    unit.source.close()
                except (SourceError, OSError) as exc:
                    log.warning("source_close_failed source=%s error=%s", unit.plan.spec, exc)
            if not unit.finished:
                self._flush_pipelines(unit)
                unit.finished = True
        if self._sender is None:
            return
        try:
            self._submit()
            self._heartbeat()
            timeout = self.setup.config.service.flush_timeout_s
            if self._own_sender:
                delivered = self._sender.flush(timeout)
                pending = self._sender.stats().n_pending
                log.info("node_stop node_id=%s detections=%d delivered_all=%s pending_in_outbox=%d", self.setup.node_id,
                         sum(u.n_detections for u in self._units), delivered, pending)
        finally:
            if self._own_sender:
                self._final_pending = self._sender.stats().n_pending
                self._sender.close()

    def stats(self) -> NodeStats:
        pending = getattr(self, "_final_pending", None)
        if pending is None and self._sender is not None:
            pending = self._sender.stats().n_pending
        return NodeStats(
            n_detections=sum(u.n_detections for u in self._units),
            n_submitted=self._n_submitted,
            n_blocks=sum(u.n_blocks for u in self._units),
            n_samples=sum(u.n_samples for u in self._units),
            signal_s=sum(u.n_samples / u.source.sample_rate_hz for u in self._units if u.n_samples),
            n_hops=sum(u.n_hops for u in self._units),
            n_heartbeats=self._n_heartbeats,
            n_pending_at_exit=int(pending or 0),
            per_source=[{"spec": u.plan.spec, "state": u.state, "n_blocks": u.n_blocks, "n_samples": u.n_samples,
                         "n_hops": u.n_hops, "n_detections": u.n_detections, "n_pipelines": len(u.pipelines),
                         "warmup_done_s": u.warmup_done_s,
                         "n_dropped_samples": u.source.n_dropped_samples,
                         "n_settle_samples": u.source.n_settle_samples} for u in self._units],
            n_snippets=self._n_snippets,
            snippet_reasons={r: sum(u.cutter.counts[r] for u in self._units if u.cutter is not None)
                             for r in REASONS},
        )
