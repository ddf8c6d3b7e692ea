"""Which technology sent a burst, and which bursts belong to one phone's session.

What an energy detector can see of a burst is its duration, its occupied bandwidth,
the shape of its spectrum, whether it carries GMSK's spectral lines, and when it comes
back. The evidence, strongest first:

* **GMSK lines** (:func:`dsp.detector.gmsk_line_frequencies`): the square of a GMSK
  burst holds two spectral lines R_b apart (TS 45.004 §2); SC-FDMA and noise do not.
  A line ratio ≥ 15 is a GSM burst (measured: GSM median 20 at 10 dB SNR, ≥ 15.7 at
  15 dB; LTE PUSCH and PUCCH ≤ 12.5 at any SNR). A burst the detector cut out of a
  region holding two such line pairs 200 kHz apart (two phones on neighbouring ARFCNs in
  one timeslot, ``Burst.split == "frequency"``) is GSM too: its own lines are blurred by
  the cross term of the two bursts.
* **UMTS** (TS 25.101): a 3.84 Mchip/s carrier is continuous and ~4.7 MHz wide, wider
  than an RTL-SDR's 2.4 MHz: it fills the receiver band for tens of milliseconds or more.
* **GSM by shape and timing**: a normal burst is 546 µs × ~250 kHz (99 %) with a
  bell-shaped spectrum (TS 45.002 §5.2.3); an access burst 321 µs. A phone in a call
  comes back every TDMA frame (4.615 ms, TS 45.002 §4.3) in the same timeslot, so a
  burst whose start falls on an existing GSM session's frame grid is GSM.
* **LTE** (TS 36.211): whole subframes (1 ms) or slots (0.5 ms, PUCCH), the 71 µs SRS
  symbol, PRACH (0.9 ms × 1.08 MHz); bandwidths are multiples of 180 kHz and SC-FDMA
  spectra are flat-topped.

LTE and 5G NR uplinks cannot be told apart by energy alone: NR's CP-OFDM/DFT-s-OFDM
with 15 kHz subcarriers, slots of 1 ms and PRBs of 180 kHz look exactly like LTE to a
power detector. Both are therefore labelled ``lte`` unless the operator declares bands
that carry only NR (``nr_ranges_hz``, e.g. a band an operator refarmed to NR); this
module never claims ``nr`` from the signal itself.

:class:`SessionTracker` does the streaming part: it classifies each burst (using the
GSM frame-grid evidence it accumulates) and assigns ``session_id``s — GSM by channel
(ARFCN) and timeslot phase, following frequency hopping; LTE by overlapping allocation
within a short gap — with bounded state (sessions expire).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dsp.detector import Burst, detections_of
from dsp.errors import InputError
from dsp.gsm import TDMA_FRAME_S, arfcn_for_uplink_freq_hz
from dsp.records import Detection

GSM = "gsm"
LTE = "lte"
NR = "nr"
UMTS = "umts"
UNKNOWN = "unknown"
_FLAT_TOPPED = "GSM-sized, flat-topped spectrum"


@dataclass(frozen=True, slots=True)
class ClassifierConfig:
    """Thresholds of :func:`classify` (defaults measured on the simulator's waveforms)."""

    gmsk_line_ratio: float = 15.0  # line ratio that proves GMSK (LTE, PUCCH included, stays below 12.5)
    gmsk_visible_snr_db: float = 13.0  # above this SNR a GSM burst shows its lines ...
    gmsk_absent_ratio: float = 9.0  # ... so a ratio below this there is not GSM
    gsm_bandwidth_hz: tuple[float, float] = (130e3, 420e3)  # 99 % band of a GMSK burst (wider when weak)
    gsm_duration_s: tuple[float, float] = (0.26e-3, 0.75e-3)  # access .. normal burst, edges ±100 µs when weak
    gsm_grid_max_bandwidth_hz: float = 500e3  # on a session's frame grid, this much is still GSM
    gsm_grid_max_duration_s: float = 0.8e-3
    slot_duration_s: tuple[float, float] = (0.47e-3, 0.527e-3)  # an LTE slot, between access and normal bursts
    slot_timing_snr_db: float = 3.0  # edges good to ~20 µs from here up
    gsm_max_flatness: float = 0.58  # GMSK is bell-shaped, SC-FDMA flat (measured medians .47 / .70)
    lte_min_bandwidth_hz: float = 150e3
    lte_min_duration_s: float = 0.4e-3  # a PUCCH slot is 0.5 ms
    srs_max_duration_s: float = 0.12e-3  # one SC-FDMA symbol is 71.4 µs
    srs_min_bandwidth_hz: float = 600e3  # 4 RB at least (TS 36.211 §5.5.3.2)
    umts_min_duration_s: float = 20e-3
    umts_band_fraction: float = 0.8  # of min(receiver band, 3.84 MHz)
    nr_ranges_hz: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        for i, (low, high) in enumerate(self.nr_ranges_hz):
            if not low < high:
                raise InputError(None, f"classifier.nr_ranges_hz[{i}]", "needs low < high")


@dataclass(frozen=True, slots=True)
class Verdict:
    """A technology and why (an explicit reason, as rtl_433 detectors give)."""

    tech: str
    reason: str


# Every verdict classify() can give, made once (a verdict is immutable; classify() runs for
# every burst). An LTE-or-NR one is a pair: (LTE, NR in a band declared NR-only).
_UMTS_FILLS_BAND = Verdict(UMTS, "fills the band continuously")
_GSM_LINES = Verdict(GSM, "GMSK spectral lines")
_GSM_FREQUENCY_SPLIT = Verdict(GSM, "cut from a region with GMSK line pairs on neighbouring ARFCNs")
_GSM_ON_GRID = Verdict(GSM, "on a GSM session's TDMA frame grid")
_GSM_BELL_SHAPED = Verdict(GSM, "GSM-sized, bell-shaped spectrum")
_UNKNOWN_TOO_SHORT = Verdict(UNKNOWN, "too short and narrow for any uplink burst")
_UNKNOWN_NO_FORMAT = Verdict(UNKNOWN, "matches no uplink burst format")


def _lte_and_nr(reason: str) -> tuple[Verdict, Verdict]:
    return Verdict(LTE, reason), Verdict(NR, reason + " in a band declared NR-only")


_NO_LINES = _lte_and_nr("GSM-sized but no GMSK lines at this SNR")
_PUCCH_SLOT = _lte_and_nr("one 0.5 ms slot (PUCCH), not a 546 µs GSM burst")
_FLAT_TOP = _lte_and_nr(_FLAT_TOPPED)
_SRS_SYMBOL = _lte_and_nr("one wide SC-FDMA symbol (SRS)")
_ALLOCATION = _lte_and_nr("slot/subframe-sized allocation")


def classify(burst: Burst, sample_rate_hz: float, config: ClassifierConfig = ClassifierConfig(),
             *, on_gsm_grid: bool = False) -> Verdict:
    """Technology of one burst from its measurements (module docstring).

    ``on_gsm_grid``: the burst starts on the TDMA frame grid of an active GSM session
    on its channel (:class:`SessionTracker` knows). ``sample_rate_hz`` is the
    receiver's, to tell a band-filling UMTS carrier.
    """
    return _classify(burst, _umts_band_hz(sample_rate_hz, config), config, on_gsm_grid)


def _umts_band_hz(sample_rate_hz: float, cfg: ClassifierConfig) -> float:
    """Occupied bandwidth from which a long burst is a band-filling UMTS carrier."""
    return cfg.umts_band_fraction * min(sample_rate_hz, 3.84e6)


def _classify(burst: Burst, umts_band_hz: float, cfg: ClassifierConfig, on_gsm_grid: bool) -> Verdict:
    """:func:`classify` with the receiver's UMTS band worked out (the tracker does it once)."""
    bandwidth_hz = burst.bandwidth_hz
    duration_s = burst.duration_s
    if bandwidth_hz >= umts_band_hz and duration_s >= cfg.umts_min_duration_s:
        return _UMTS_FILLS_BAND
    ratio = burst.gmsk_line_ratio  # None: not looked for
    if ratio is not None and ratio >= cfg.gmsk_line_ratio:
        return _GSM_LINES
    if burst.split == "frequency":
        return _GSM_FREQUENCY_SPLIT
    lo_bw, hi_bw = cfg.gsm_bandwidth_hz
    lo_t, hi_t = cfg.gsm_duration_s
    gsm_sized = lo_bw <= bandwidth_hz <= hi_bw and lo_t <= duration_s <= hi_t
    gsm_sized |= on_gsm_grid and bandwidth_hz <= cfg.gsm_grid_max_bandwidth_hz and (
        lo_t <= duration_s <= cfg.gsm_grid_max_duration_s)
    snr_db = burst.snr_db
    lines_expected = ratio is not None and snr_db >= cfg.gmsk_visible_snr_db and duration_s >= 0.25e-3
    if gsm_sized:
        if lines_expected and ratio is not None and ratio < cfg.gmsk_absent_ratio:
            return _lte_or_nr(burst, cfg, _NO_LINES)
        if on_gsm_grid:
            return _GSM_ON_GRID
        lo_slot, hi_slot = cfg.slot_duration_s
        if snr_db >= cfg.slot_timing_snr_db and lo_slot <= duration_s <= hi_slot:
            return _lte_or_nr(burst, cfg, _PUCCH_SLOT)
        if burst.flatness <= cfg.gsm_max_flatness:
            return _GSM_BELL_SHAPED
        return _lte_or_nr(burst, cfg, _FLAT_TOP)
    if duration_s <= cfg.srs_max_duration_s:
        if bandwidth_hz >= cfg.srs_min_bandwidth_hz:
            return _lte_or_nr(burst, cfg, _SRS_SYMBOL)
        return _UNKNOWN_TOO_SHORT
    if bandwidth_hz >= cfg.lte_min_bandwidth_hz and duration_s >= cfg.lte_min_duration_s:
        return _lte_or_nr(burst, cfg, _ALLOCATION)
    return _UNKNOWN_NO_FORMAT


def _lte_or_nr(burst: Burst, cfg: ClassifierConfig, verdicts: tuple[Verdict, Verdict]) -> Verdict:
    for low, high in cfg.nr_ranges_hz:
        if low <= burst.freq_hz <= high:
            return verdicts[1]
    return verdicts[0]


@dataclass(frozen=True, slots=True)
class LabelledBurst:
    """A burst with its technology, session and channel."""

    burst: Burst
    tech: str
    reason: str
    session_id: str
    channel: str | None

    def to_detection(self, sensor_id: str, *, seq: int | None = None, rssi_dbm: float | None = None) -> Detection:
        return self.burst.to_detection(sensor_id, self.tech, session_id=self.session_id, seq=seq,
                                       rssi_dbm=rssi_dbm, channel=self.channel)


@dataclass(slots=True)
class _Session:
    session_id: str
    tech: str
    freq_lo_hz: float
    freq_hi_hz: float
    last_start_s: float
    last_end_s: float
    channels: set[int | None] = field(default_factory=set)
    n_bursts: int = 0
    phase_s: float = 0.0  # GSM: the session's start phase in the TDMA frame (smoothed)
    confirmed: bool = False  # GSM: seen with GMSK lines or bursts 1-3 frames apart


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """How bursts are grouped into sessions."""

    gsm_phase_tolerance_s: float = 80e-6  # timing advance changes slowly; weak bursts' edges wander
    gsm_expire_s: float = 2.0  # DTX leaves a SACCH burst every 480 ms: 2 s of silence ends a call
    gsm_hop_window_s: float = 0.1  # a hopping call changes ARFCN every frame
    lte_gap_s: float = 1.0  # an LTE phone's bursts closer than this on overlapping RBs
    lte_freq_tolerance_hz: float = 100e3
    other_gap_s: float = 1.0
    max_sessions: int = 256  # oldest expire first beyond this


_HALF_FRAME_S = 0.5 * TDMA_FRAME_S
_PHASE_STEP_S = TDMA_FRAME_S / 8.0  # one of the 8 timeslot phases of a TDMA frame
_ARFCN_TOLERANCE_HZ = 60e3  # a GSM burst's measured centre is good to a few kHz; ARFCNs are 200 kHz apart


class SessionTracker:
    """Streaming classification and session grouping of a detector's bursts.

    ``update(bursts)`` labels bursts in the order given (the detector's order of
    completion is fine: GSM bursts of a call arrive in time order). State is bounded:
    sessions idle for their expiry time, or beyond ``max_sessions``, are forgotten.
    Session ids are ``"<prefix><n>"``, unique for the tracker's life.

    Every burst passes through :meth:`_label`, so it is written for speed (a busy band
    brings ~300 bursts a second): the active sessions are also kept by technology, so a
    burst is compared with the sessions it may join only.
    """

    def __init__(self, sample_rate_hz: float, classifier: ClassifierConfig = ClassifierConfig(),
                 config: SessionConfig = SessionConfig(), prefix: str = "s") -> None:
        self.sample_rate_hz = float(sample_rate_hz)
        self.classifier = classifier
        self.config = config
        self.prefix = prefix
        self._sessions: list[_Session] = []  # in the order ties between sessions are decided by
        self._by_tech: dict[str, list[_Session]] = {}  # the same sessions by technology, in the same order
        self._next_expiry_s = math.inf  # no session can expire before this (see _expire)
        self._ids = itertools.count(1)
        self._umts_band_hz = _umts_band_hz(self.sample_rate_hz, classifier)
        self._channel_names: dict[tuple[int, int], str] = {}  # "arfcn N slot-phase K", made once each

    @property
    def n_active(self) -> int:
        return len(self._sessions)

    def update(self, bursts: Iterable[Burst]) -> list[LabelledBurst]:
        out = []
        label = self._label
        for burst in bursts:
            verdict, session_id, channel = label(burst)
            out.append(LabelledBurst(burst, verdict.tech, verdict.reason, session_id, channel))
        return out

    def detections(self, bursts: Iterable[Burst], sensor_id: str) -> list[Detection]:
        """``[x.to_detection(sensor_id) for x in self.update(bursts)]`` without the labelled
        bursts in between (the pipeline's path: it wants the records only)."""
        batch = list(bursts)
        if not batch:
            return []
        verdicts, session_ids, channels = zip(*map(self._label, batch), strict=True)
        return detections_of(batch, sensor_id, [v.tech for v in verdicts], session_ids, channels)

    def _label(self, burst: Burst) -> tuple[Verdict, str, str | None]:
        """The burst's verdict, session id and channel; updates (or starts) its session."""
        t_start_s = burst.t_start_s
        if not t_start_s <= self._next_expiry_s:  # _expire's own test, saving the call
            self._expire(t_start_s)
        cfg = self.classifier
        arfcn = arfcn_for_uplink_freq_hz(burst.freq_hz, tolerance_hz=_ARFCN_TOLERANCE_HZ)
        grid: _Session | None = None
        hop = False
        if GSM in self._by_tech:
            grid, hop = self._gsm_grid_match(burst, arfcn)
        if hop:
            # another channel's frame grid is weak evidence in a busy band (some GSM phone's
            # phase is always near): a hopping call keeps a burst unless it is too weak to be
            # timed, or its duration or missing lines say LTE (a spectrum's flatness alone is
            # too noisy to overrule it)
            verdict = _classify(burst, self._umts_band_hz, cfg, False)
            timed = burst.snr_db >= cfg.slot_timing_snr_db  # a weak burst's edges say little
            if timed and (verdict.tech == GSM or verdict.reason == _FLAT_TOPPED):
                verdict = _classify(burst, self._umts_band_hz, cfg, True)
            else:
                grid = None
        else:
            verdict = _classify(burst, self._umts_band_hz, cfg, grid is not None)
        channel: str | None = None
        tech = verdict.tech
        if tech == GSM:
            session = grid or self._new(GSM, burst)
            session.channels.add(arfcn)
            lag_frames = round((t_start_s - session.last_start_s) / TDMA_FRAME_S)
            ratio = burst.gmsk_line_ratio
            lines = ratio is not None and ratio >= cfg.gmsk_line_ratio
            if lines or (grid is not None and lag_frames <= 3):
                session.confirmed = True
            # follow slow timing-advance drift; edges of weak bursts are noisy, hence 1/4
            weight = 1.0 if session.n_bursts == 0 else 0.25
            phase_s = t_start_s % TDMA_FRAME_S
            session.phase_s = (session.phase_s + weight * _wrap(phase_s - session.phase_s)) % TDMA_FRAME_S
            if arfcn is not None:
                # the phase's index 0..7 in the TDMA frame: relative (the BTS's frame start is
                # unknown), so it names a phase, not the network's timeslot number
                key = (arfcn, int(phase_s / _PHASE_STEP_S) % 8)
                channel = self._channel_names.get(key)
                if channel is None:
                    channel = self._channel_names[key] = f"arfcn {key[0]} slot-phase {key[1]}"
        else:
            session = self._match_other(burst, tech) or self._new(tech, burst)
        session.last_start_s = t_start_s
        t_end_s = t_start_s + burst.duration_s  # burst.t_end_s
        if t_end_s > session.last_end_s:
            session.last_end_s = t_end_s
        if tech != GSM:
            half = 0.5 * burst.bandwidth_hz
            freq_lo_hz = burst.freq_hz - half
            if freq_lo_hz < session.freq_lo_hz:
                session.freq_lo_hz = freq_lo_hz
            freq_hi_hz = burst.freq_hz + half
            if freq_hi_hz > session.freq_hi_hz:
                session.freq_hi_hz = freq_hi_hz
        session.n_bursts += 1
        return verdict, session.session_id, channel

    def _gsm_grid_match(self, burst: Burst, arfcn: int | None) -> tuple[_Session | None, bool]:
        """The GSM session whose frame grid this burst falls on, on its channel or (second
        item True) as the next hop of a frequency-hopping call."""
        tol = self.config.gsm_phase_tolerance_s
        hop_window_s = self.config.gsm_hop_window_s
        t_start_s = burst.t_start_s
        freq_hz = burst.freq_hz
        phase = t_start_s % TDMA_FRAME_S
        same_channel: _Session | None = None  # the latest one
        hopping: _Session | None = None  # the first one ...
        n_hopping = 0  # ... of these
        for s in self._by_tech.get(GSM, ()):
            lag = t_start_s - s.last_start_s
            if lag <= _HALF_FRAME_S:
                continue
            if abs((phase - s.phase_s + _HALF_FRAME_S) % TDMA_FRAME_S - _HALF_FRAME_S) > tol:  # _wrap inlined
                continue
            frames = round(lag / TDMA_FRAME_S)
            if frames % 13 == 0 and not s.confirmed:
                # 13 TDMA frames are exactly 60 ms: anything on a 1 ms (LTE) or 10 ms grid
                # lands on the GSM frame grid at these lags, so they prove nothing alone
                continue
            if (arfcn is not None and arfcn in s.channels) or abs(freq_hz - s.freq_lo_hz) < _ARFCN_TOLERANCE_HZ:
                if same_channel is None or s.last_start_s > same_channel.last_start_s:
                    same_channel = s
            elif lag <= hop_window_s:
                if hopping is None:
                    hopping = s
                n_hopping += 1
        if same_channel is not None:
            return same_channel, False
        if n_hopping == 1:
            return hopping, True
        return None, False

    def _match_other(self, burst: Burst, tech: str) -> _Session | None:
        gap = self.config.lte_gap_s if tech in (LTE, NR) else self.config.other_gap_s
        tol = self.config.lte_freq_tolerance_hz
        t_start_s = burst.t_start_s
        lo = burst.freq_hz - 0.5 * burst.bandwidth_hz - tol
        hi = burst.freq_hz + 0.5 * burst.bandwidth_hz + tol
        best: _Session | None = None
        for s in self._by_tech.get(tech, ()):
            if t_start_s - s.last_end_s > gap:
                continue
            if lo <= s.freq_hi_hz and hi >= s.freq_lo_hz:
                if best is None or s.last_end_s > best.last_end_s:
                    best = s
        return best

    def _new(self, tech: str, burst: Burst) -> _Session:
        session = _Session(
            session_id=f"{self.prefix}{next(self._ids)}",
            tech=tech,
            freq_lo_hz=burst.freq_hz - (0.0 if tech == GSM else 0.5 * burst.bandwidth_hz),
            freq_hi_hz=burst.freq_hz + (0.0 if tech == GSM else 0.5 * burst.bandwidth_hz),
            last_start_s=burst.t_start_s,
            last_end_s=burst.t_end_s,
        )
        self._sessions.append(session)
        self._by_tech.setdefault(tech, []).append(session)
        self._next_expiry_s = min(self._next_expiry_s, session.last_end_s + self._limit(session))
        if len(self._sessions) > self.config.max_sessions:
            self._sessions.sort(key=lambda s: s.last_end_s)
            del self._sessions[: len(self._sessions) - self.config.max_sessions]
            self._index()
        return session

    def _index(self) -> None:
        """Sort the sessions by technology again, each group in the order of ``_sessions``."""
        by_tech: dict[str, list[_Session]] = {}
        for s in self._sessions:
            by_tech.setdefault(s.tech, []).append(s)
        self._by_tech = by_tech

    def _limit(self, s: _Session) -> float:
        cfg = self.config
        limit = cfg.gsm_expire_s if s.tech == GSM else (cfg.lte_gap_s if s.tech in (LTE, NR) else cfg.other_gap_s)
        return max(limit, 0.0)

    def _expire(self, now_s: float) -> None:
        # a session's end only moves later, so nothing expires before the earliest deadline
        # seen at the last pass (or given to a session made since): most bursts skip the pass
        if now_s <= self._next_expiry_s:
            return
        keep = []
        for s in self._sessions:
            if now_s - s.last_end_s <= self._limit(s) or math.isnan(now_s):
                keep.append(s)
        if len(keep) != len(self._sessions):
            self._sessions = keep
            self._index()
        self._next_expiry_s = min((s.last_end_s + self._limit(s) for s in keep), default=math.inf)


def _wrap(dt_s: float) -> float:
    """A phase difference folded into (-T/2, T/2] of a TDMA frame."""
    return (dt_s + _HALF_FRAME_S) % TDMA_FRAME_S - _HALF_FRAME_S


def label_bursts(bursts: Sequence[Burst], sample_rate_hz: float) -> list[LabelledBurst]:
    """Classify and group a finished list of bursts (sorted by start time first)."""
    tracker = SessionTracker(sample_rate_hz)
    return tracker.update(sorted(bursts, key=lambda b: b.t_start_s))
