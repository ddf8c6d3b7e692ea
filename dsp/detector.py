"""Streaming burst detector: short-time FFT power, minimum-statistics floor, CFAR box tests.

A phone's uplink burst is a rectangle in time and frequency (a GSM normal burst is
546 µs × 200 kHz, an LTE PUSCH subframe 1 ms × n·180 kHz). The ideal energy detector
(H. Urkowitz, "Energy detection of unknown deterministic signals", Proc. IEEE 55(4),
1967) sums |x|² over exactly that rectangle and compares the sum with a threshold set
by the false-alarm probability. This module gets as close to it as a streaming search
over unknown positions allows:

1. **Power grid.** Non-overlapping frames of ``fft_size`` samples, a *lightly tapered*
   window (Tukey, ``tukey_alpha`` = 0.25), FFT, |X|². An energy detector wants every
   sample to count with the same weight: a Hann window keeps only (Σw²)²/(NΣw⁴) = 18/35
   of the degrees of freedom, ~1.4 dB of sensitivity at these time-bandwidth products.
   A rectangular window loses nothing but leaks (−28 dB at 8 bins): the fluctuating
   skirts of a strong narrowband carrier then raise false alarms over hundreds of kHz.
   Tukey 0.25 keeps 87 % of the degrees of freedom (0.3 dB) and leaks −40 dB at 8 bins,
   −66 dB at 16. Box thresholds use the moment-matched Gamma law of the windowed sums
   (exact effective degrees of freedom from the window's bin correlation).
2. **Cells.** ``bins_per_cell`` adjacent bins are summed (37.5 kHz at 2.4 MS/s), then
   divided by the column's noise floor (:mod:`dsp.noise`, minimum statistics that leave
   painted bursts out), so a noise cell has mean ``bins_per_cell``. DC-guard bins are
   left out; carrier-masked columns are replaced by their expected value (neutral).
3. **Box tests (CFAR).** For each template (duration, bandwidth) — GSM normal and
   access burst, LTE subframe on 1, 4 and 12 RB, PRACH — the sum over every box of
   K frames × B columns, at every frame and column offset, is compared with the
   ``1 - pfa_t`` quantile of its Gamma law under noise: ``pfa_t`` is the template's
   false-alarm probability per box test, ``pfa`` itself unless an ``fa_weight`` moves
   budget between templates (the average over every test stays ``pfa``). Sums are built by doubling (shared power-of-two levels,
   contiguous float32 additions of positive terms). Boxes of 500 kHz and more step by
   two columns (unless they have few positions in the band). Templates run smallest
   first, and cells a template has explained are neutral for the larger ones, so a
   strong GSM burst does not light a 2 MHz box too.
4. **Segmentation.** The union of all exceeding boxes is labelled in connected
   components; a component whose columns hold two signals with ≥ 112 kHz of noise
   between them (joined by box painting) is cut in two; each is trimmed to its most
   likely rectangle (maximum-sum segment of the log-likelihood ratio of its rows, then
   of its columns). A component is finalized once no later box can touch it, so the
   output does not depend on how the stream is cut into blocks; finalized components
   are measured in batches, as flat arrays (a fixed number of numpy calls per batch,
   whatever its size). Receiver artefacts are dropped: the IQ-imbalance image of a
   signal ≥ 18 dB stronger at -f, and a strip at one band edge 6 dB under a signal at the
   other (the alias of what lies just beyond it); so are detections narrower than
   ``min_bandwidth_hz`` (carriers), whose columns are masked when they keep coming back.
   GSM bursts that the mask joined are cut apart after a first measurement: phones on
   consecutive timeslots at their 30 µs guard periods (:meth:`BurstDetector._split_in_time`),
   phones on neighbouring ARFCNs in one timeslot between their GMSK line pairs
   (:meth:`BurstDetector._split_in_frequency`); the pieces are measured again.
5. **Measurement.** Edges: the burst's in-band energy in the frames around each edge
   over its plateau is the share of their window energy it covers, which places the edge
   within ~20 µs; the change point of the band-filtered sample power then fixes it to a
   few samples (bursts under 3 frames go straight to the change point). Spectrum: the
   mean of the stored frame spectra minus the noise floor gives the burst power, the
   centre frequency (power centroid, or for GMSK the midpoint of the spectral lines of
   the squared signal, :func:`gmsk_line_frequencies`) and the occupied bandwidth (99 %
   of the power, ITU-R SM.328; reliable above ~10 dB SNR). Clipping is flagged when a
   frame of the burst reaches ``clip_level`` in I or Q.

The internal unit of work is an *epoch* of ``epoch_frames`` frames (one FFT call; 1024
frames, 109 ms, ran a busy band 6 % faster than 512, from less glue per second, and an
idle one as fast; 2048 spilled out of the cache); everything — floor updates, box tests,
finalization — is keyed to frame indices, never to block boundaries. The first
``warmup_s`` are held until the floor has its first estimate, then searched with it,
so nothing is lost at the start of a stream (or of a recording shorter than that), nor
after an announced gain step, which starts the floor afresh.

A block that carries the receiver's cu8 bytes (:meth:`dsp.records.IQBlock.from_cu8`: a
dongle's, a cu8 recording's) is kept as bytes: the epoch's frames are windowed from them
and the measurement's windows converted as they are gathered, each value the one
converter's (:func:`dsp.iq.cu8_to_complex64`), so the detections are the same to the bit
as from its samples, with no conversion pass and a quarter of the memory held (busy band
+7-9 %, idle +6-8 %, same process A/B).
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from scipy import signal, stats

from dsp import fastgrid, labelling, measure_kernels, split_kernels
from dsp.errors import InputError
from dsp.iq import CU8_OFFSET, CU8_SCALE, ComplexArray, U8Array, cu8_to_complex64
from dsp.noise import NoiseFloorTracker
from dsp.records import Detection, IQBlock, decimal_round, detection_from_values, frozen_builder
from dsp.transforms import RowFFT

FloatArray = npt.NDArray[np.float32]
AnyFloatArray = npt.NDArray[np.floating[Any]]  # float32 or float64
IQArray = npt.NDArray[np.complex64] | U8Array  # samples, or the receiver's cu8 bytes
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

# (name, duration_s, bandwidth_hz[, fa_weight]): what the box tests look for. A fourth
# field moves the false-alarm budget between templates (BurstDetector._make_box_tests; the
# union bound stays pfa x tests): doubling a template's pfa buys ~0.07 dB at Pd 0.9 and
# costs budget in proportion to its positions (60 a frame for the narrow boxes, 7 for the
# 2.16 MHz ones). The 12 RB boxes get three shares (0.11 dB; the others give up 13 % of
# theirs, 0.014 dB). Weighting all of LTE first (GSM normal 0.5, access 0.25, 1/4/12 RB
# 1.5/2/2.5) took every LTE gap to 1.31-1.39 dB, but in a dense GSM scene (two phones on
# adjacent timeslots heard by door antennas) it made the spurious fragment events beside
# each call larger (up to 104 bursts, from 76).
DEFAULT_TEMPLATES: tuple[tuple[Any, ...], ...] = (
    ("gsm_normal", 0.546e-3, 190e3),  # TS 45.002 §5.2.3 normal burst; also a PUCCH slot (0.5 ms × 1 RB)
    ("gsm_access", 0.325e-3, 190e3),  # TS 45.002 §5.2.7 access burst (88 bits)
    ("lte_1rb", 1.0e-3, 180e3),  # TS 36.211 §5.3: PUSCH subframe on 1 RB
    ("lte_4rb", 1.0e-3, 720e3),
    ("lte_prach", 0.903e-3, 1.08e6),  # TS 36.211 §5.7 format 0
    ("lte_12rb", 1.0e-3, 2.16e6, 3.0),
    # A subframe (9.4 frames) fills 9 frames at best; a 10-frame box holds all of it at
    # most alignments. On the widest allocation, whose boxes are few (7 a frame), that is
    # 0.1-0.2 dB at Pd 0.9 for 3 % more tests (the default pfa keeps the union bound where
    # it was); on 1 and 4 RB it bought nothing measurable.
    ("lte_12rb_10f", 1.07e-3, 2.16e6, 3.0),
)

GMSK_BIT_RATE_HZ = 1625000.0 / 6.0  # TS 45.004 §2.1
_GSM_TIMESLOT_S = 0.120 / 26.0 / 8.0  # TS 45.002 §4.3.1: 576.9 µs, 156.25 bits
_GSM_GUARD_S = 8.25 / GMSK_BIT_RATE_HZ  # TS 45.002 §5.2.3: the normal burst's guard period, 30.5 µs
_GSM_CHANNEL_SPACING_HZ = 200e3  # TS 45.005 §2: ARFCNs are 200 kHz apart
_GSM_NORMAL_BURST_S = 148 / GMSK_BIT_RATE_HZ  # TS 45.002 §5.2.3: 148 bits, 546.5 µs between the -3 dB points
GMSK_LINE_RATIO = 15.0  # weaker line of the pair over the mean: SC-FDMA/PUCCH stay below ~12, GMSK at 15 dB above 15
_TIME_TOLERANCE_S = 10e-6  # block timestamps further than this from the stream clock re-anchor it
_NO_BINS = np.zeros(0, dtype=np.int64)  # no DC guard to bridge (measure_kernels.spectrum_stats)


def _check(condition: bool, name: str, problem: str) -> None:
    if not condition:
        raise InputError(None, f"detector.{name}", problem)


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Validated parameters of :class:`BurstDetector` (unknown keys are rejected by :meth:`from_dict`).

    Defaults target an RTL-SDR at 2.4 MS/s: 256-point frames (106.7 µs, 9.375 kHz bins),
    37.5 kHz cells, a 1 s minimum-statistics floor, and ``pfa = 9.5e-11`` per box test on
    average (each template's share follows its ``fa_weight``): measured 4 false alarms per
    hour at 1e-9 and 0 in an hour at 1e-10 with the first six templates; with seven (2.21
    million tests a second) 9.5e-11 keeps the union bound, tests × pfa, where the six had
    it at 1e-10 (0.76 per hour).
    """

    fft_size: int = 256  # frame length: 106.7 µs at 2.4 MS/s, five frames to a GSM burst
    tukey_alpha: float = 0.25  # window taper (module docstring, point 1); 0 is rectangular
    bins_per_cell: int = 4  # bins summed into one cell of the detection grid
    epoch_frames: int = 1024  # frames per FFT call and unit of work
    pfa: float = 9.5e-11  # false-alarm probability of one box test, on average over the templates
    templates: tuple[tuple[Any, ...], ...] = DEFAULT_TEMPLATES  # (name, duration_s, bandwidth_hz[, fa_weight])
    noise_window_s: float = 1.0  # history of the floor: a step is followed in half of it
    noise_quantile: float = 0.5  # quantile of the group estimates taken as the floor
    noise_sum_frames: int = 2  # frames summed before minima
    noise_min_groups: int = 8  # sums per minimum
    noise_update_s: float = 0.1  # how often the floor is re-estimated
    warmup_s: float = 0.25  # no detection before the floor has this much history
    dc_guard_hz: float = 10e3  # bins this close to 0 Hz (the RTL-SDR DC spike) are ignored
    min_bandwidth_hz: float = 100e3  # narrower detections are carriers, not phones
    carrier_window_s: float = 2.0  # memory of narrowband rejections per column ...
    carrier_occupancy: float = 0.25  # ... and the share of time that masks the column
    max_burst_s: float = 1.0  # a longer region is cut (flag "truncated"): bounded memory
    clip_level: float = 0.99  # |I| or |Q| at or above this flags the burst as clipped
    image_rejection_db: float = 18.0  # this far below a simultaneous signal at -f (or at the other band edge): an artefact

    def __post_init__(self) -> None:
        _check(self.fft_size >= 16 and self.fft_size & (self.fft_size - 1) == 0, "fft_size", "must be a power of two >= 16")
        _check(0.0 <= self.tukey_alpha <= 1.0, "tukey_alpha", "must be in [0, 1] (0 is rectangular)")
        _check(self.bins_per_cell >= 1 and (self.fft_size // 2) % self.bins_per_cell == 0, "bins_per_cell",
               "must divide fft_size / 2")
        group = self.noise_sum_frames * self.noise_min_groups
        _check(self.noise_sum_frames >= 1, "noise_sum_frames", "must be >= 1")
        _check(self.noise_min_groups >= 1, "noise_min_groups", "must be >= 1")
        _check(self.epoch_frames >= 16 and self.epoch_frames % group == 0, "epoch_frames",
               f"must be >= 16 and a multiple of noise_sum_frames x noise_min_groups ({group})")
        _check(0.0 < self.pfa < 0.1, "pfa", "must be in (0, 0.1)")
        _check(len(self.templates) > 0, "templates", "needs at least one (name, duration_s, bandwidth_hz)")
        for i, tpl in enumerate(self.templates):
            _check(len(tpl) in (3, 4) and float(tpl[1]) > 0 and float(tpl[2]) > 0
                   and (len(tpl) == 3 or 0 < float(tpl[3]) < math.inf), f"templates[{i}]",
                   "must be (name, duration_s > 0, bandwidth_hz > 0) or (..., fa_weight > 0)")
        _check(self.noise_window_s > 0, "noise_window_s", "must be positive")
        _check(0.05 <= self.noise_quantile <= 0.95, "noise_quantile", "must be in [0.05, 0.95]")
        _check(self.noise_update_s > 0, "noise_update_s", "must be positive")
        _check(0 < self.warmup_s <= self.noise_window_s, "warmup_s", "must be in (0, noise_window_s]")
        _check(self.dc_guard_hz >= 0, "dc_guard_hz", "must not be negative")
        _check(self.min_bandwidth_hz >= 0, "min_bandwidth_hz", "must not be negative")
        _check(self.carrier_window_s > 0, "carrier_window_s", "must be positive")
        _check(0 < self.carrier_occupancy <= 1, "carrier_occupancy", "must be in (0, 1]")
        _check(self.max_burst_s > 0, "max_burst_s", "must be positive")
        _check(0 < self.clip_level <= 1.5, "clip_level", "must be in (0, 1.5]")
        _check(self.image_rejection_db > 0, "image_rejection_db", "must be positive")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DetectorConfig:
        """Build from a parsed config table; an unknown key raises InputError naming it."""
        known = set(cls.__dataclass_fields__)
        for key in values:
            if key not in known:
                raise InputError(None, f"detector.{key}", "unknown key")
        data = dict(values)
        if "templates" in data:
            data["templates"] = tuple(tuple(t) for t in data["templates"])
        try:
            return cls(**data)
        except TypeError as exc:
            raise InputError(None, "detector", str(exc)) from None


@dataclass(frozen=True, slots=True)
class Burst:
    """One detected burst, measured.

    ``t_start_s``/``duration_s``: UTC start and length between the edges where the burst
    rises out of / sinks into the noise (a GSM burst's ramp midpoints, ~8 µs inside
    its TS 45.002 timeslot edges). ``freq_hz``: absolute centre (module docstring, 5).
    ``bandwidth_hz``: 99 % occupied bandwidth of the noise-subtracted spectrum.
    ``power_dbfs``: mean power over ``duration_s`` in the burst's band, noise subtracted
    (|x| = 1 is 0 dBFS); within ±20 kHz of the DC guard a share of it is hidden and it
    reads low (up to ~0.8 dB for a GSM burst centred on DC). ``snr_db``: that power
    over the noise power in ``bandwidth_hz``. ``flatness``: mean over peak of the
    smoothed noise-subtracted spectrum in the central 80 % of the occupied band
    (measured medians: GMSK 0.47, SC-FDMA 0.7). ``gmsk_line_ratio``: strength of the
    GMSK spectral lines (None when not looked for: over 450 kHz occupied, under 200 µs).
    ``sample_start`` counts samples since the stream started (dropped ones included).
    ``truncated``: cut by ``max_burst_s``, a gap or the end of the stream. ``split``:
    ``"time"`` or ``"frequency"`` when the burst was cut out of a region holding GSM bursts
    of consecutive timeslots or of neighbouring ARFCNs (:meth:`BurstDetector._split_in_time`,
    :meth:`BurstDetector._split_in_frequency`); a frequency cut needs GMSK line pairs 200 kHz
    apart, so such a burst is GSM even where its own lines are blurred by its neighbour's.
    The detection record carries it as the flag ``split_time`` or ``split_frequency``.
    """

    t_start_s: float
    duration_s: float
    freq_hz: float
    bandwidth_hz: float
    power_dbfs: float
    snr_db: float
    noise_dbfs_hz: float  # noise density around the burst, dBFS per Hz
    sample_start: int
    sample_count: int
    clipped: bool
    n_frames: int
    n_cells: int
    flatness: float
    gmsk_line_ratio: float | None
    center_freq_hz: int
    truncated: bool = False
    gain_db: float | None = None
    split: str = ""

    @property
    def t_end_s(self) -> float:
        return self.t_start_s + self.duration_s

    def to_detection(
        self,
        sensor_id: str,
        tech: str = "unknown",
        *,
        session_id: str | None = None,
        seq: int | None = None,
        rssi_dbm: float | None = None,
        channel: str | None = None,
    ) -> Detection:
        """DESIGN.md's detection record for this burst, times to 0.1 µs, frequencies to 0.1 Hz,
        levels to 0.01 dB."""
        return detection_from_values((sensor_id, *map(round, _rounded_values(self), _ROUNDED_DIGITS), tech, rssi_dbm, seq,
                                      self.sample_start, self.sample_count, channel, self.flags(), self.gain_db,
                                      session_id))

    def flags(self) -> tuple[str, ...]:
        """The detection record's flags."""
        if not (self.clipped or self.truncated or self.split):
            return ()  # most bursts
        return tuple(f for f, on in (("clipped", self.clipped), ("truncated", self.truncated),
                                     ("split_time", self.split == "time"),
                                     ("split_frequency", self.split == "frequency")) if on)


_burst_from_values = frozen_builder(Burst)  # Burst(*values), every field given, in field order
# the fields a detection record rounds, in record order, and to how many decimals (times to 0.1 µs,
# frequencies to 0.1 Hz, levels to 0.01 dB): Burst.to_detection and detections_of
_ROUNDED_FIELDS = (("t_start_s", 7), ("duration_s", 7), ("freq_hz", 1), ("bandwidth_hz", 1), ("power_dbfs", 2),
                   ("snr_db", 2))
_rounded_values = operator.attrgetter(*(name for name, _ in _ROUNDED_FIELDS))
_ROUNDED_DIGITS = tuple(digits for _, digits in _ROUNDED_FIELDS)
_count_values = operator.attrgetter("sample_start", "sample_count", "gain_db")


def detections_of(bursts: Sequence[Burst], sensor_id: str, techs: Sequence[str], session_ids: Sequence[str | None],
                  channels: Sequence[str | None]) -> list[Detection]:
    """``[b.to_detection(sensor_id, tech, session_id=s, channel=c) ...]`` for a batch of the detector's
    bursts (float fields): the same records, each field rounded for the whole batch at once
    (:func:`dsp.records.decimal_round`; six ``round`` calls were a third of a record's cost)."""
    if not bursts:
        return []
    values = np.array(list(map(_rounded_values, bursts)), dtype=np.float64)  # (bursts, fields)
    rounded = [decimal_round(values[:, k], digits) for k, digits in enumerate(_ROUNDED_DIGITS)]
    starts, counts, gains = zip(*map(_count_values, bursts), strict=True)
    flags = [b.flags() for b in bursts]
    none = itertools.repeat(None)
    return list(map(detection_from_values, zip(
        itertools.repeat(sensor_id), *rounded, techs, none, none, starts, counts, channels, flags, gains, session_ids)))


@dataclass(frozen=True, slots=True)
class BoxTest:
    """One template on the cell grid: ``n_frames`` × ``n_columns`` cells, its Gamma threshold."""

    name: str
    n_frames: int
    n_columns: int  # width in columns (a multiple of ``stride``)
    dof: float  # Gamma shape of the box sum under noise (moment matched)
    threshold: float  # on the sum of normalized cells (noise mean 1 per bin)
    pfa: float  # its false-alarm probability per test
    stride: int = 1  # columns between tested positions: 2 for wide boxes (a grid of column pairs)


@dataclass(slots=True)
class _Epoch:
    """The frames of one FFT call and what the detector derived from them."""

    first_frame: int  # absolute frame index (frames restart nowhere: gaps skip indices)
    sample_start: int  # stream sample index of the first sample
    iq: IQArray  # (n_frames * fft_size,) complex64 samples, or their cu8 bytes (twice as many: _iq_width)
    power: FloatArray  # (n_frames, fft_size) |X_k|² per bin, natural FFT order, DC guard zeroed
    peak: FloatArray  # (n_frames,) largest |I| or |Q| of each frame's samples (clipping flag)
    cells: FloatArray | None  # normalized (n_frames, n_columns), None during warm-up
    mask: BoolArray  # (n_frames, n_columns) painted by exceeding boxes
    floor: npt.NDArray[np.float64] | None  # mean noise power of one cell per column

    @property
    def n_frames(self) -> int:
        return int(self.mask.shape[0])

    @property
    def end_frame(self) -> int:
        return self.first_frame + self.n_frames

    @property
    def sample_end(self) -> int:
        return self.sample_start + self.iq.shape[0] // _iq_width(self.iq)


def _iq_width(iq: IQArray) -> int:
    """Array items a sample takes: 2 cu8 bytes (I, Q), or 1 complex64."""
    return 2 if iq.dtype == np.uint8 else 1


@dataclass
class DetectorStats:
    """Counters a node reports in its heartbeat."""

    n_samples: int = 0
    n_frames: int = 0
    n_warmup_frames: int = 0
    n_bursts: int = 0
    n_gaps: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class _Workspace:
    """Named scratch arrays reused from epoch to epoch.

    The grid arrays are ~130 kB, just above glibc's default mmap threshold: allocating
    them afresh for every operation costs a page fault per 4 kB and halved the
    throughput. Results living in a workspace are valid until the same name is reused.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, npt.NDArray[Any]] = {}

    def get(self, name: str, size: int, dtype: Any = np.float32) -> npt.NDArray[Any]:
        arr = self._arrays.get(name)
        if arr is None or arr.shape[0] < size or arr.dtype != dtype:
            arr = np.empty(max(size, 1), dtype=dtype)
            self._arrays[name] = arr
        return arr[:size]


@functools.cache
def _box_arrays(tests: tuple[BoxTest, ...]) -> tuple[IntArray, IntArray, IntArray, FloatArray]:
    """The templates as the arrays :func:`dsp.labelling.box_tests` takes: frames, columns,
    strides and float32 thresholds (the box sums are float32)."""
    return (np.array([t.n_frames for t in tests], dtype=np.int64), np.array([t.n_columns for t in tests], dtype=np.int64),
            np.array([t.stride for t in tests], dtype=np.int64),
            np.array([np.float32(t.threshold) for t in tests], dtype=np.float32))


def _best_segments(values: npt.NDArray[np.floating[Any]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Maximum-sum contiguous segment ``[start, stop)`` of every row of ``values`` (m, n)."""
    m, n = values.shape
    prefix = np.zeros((m, n + 1), dtype=np.float64)
    np.cumsum(values, axis=1, out=prefix[:, 1:])
    gains = prefix[:, 1:] - np.minimum.accumulate(prefix[:, :-1], axis=1)
    stop = np.argmax(gains, axis=1) + 1
    before = np.arange(n + 1)[None, :] < stop[:, None]
    start = np.argmin(np.where(before, prefix, np.inf), axis=1)
    return start.astype(np.int64), stop.astype(np.int64)


@functools.lru_cache(maxsize=1024)
def _gamma_isf(pfa: float, shape: float) -> float:
    """Box threshold quantile: the same few per configuration, ~1 ms each from scipy at every start."""
    return float(stats.gamma.isf(pfa, shape))


def _inverse_scale(n_fft: int) -> tuple[np.float32, bool]:
    """The factor to write an inverse FFT's spectra with, and whether that is its 1/n: for a
    power-of-two length, 1/n times a spectrum is exact, and so is the transform of it (every
    value scaled by a power of two), so the inverse gives the same bits without pyFFTW's
    normalising pass over its buffer; other lengths keep that pass."""
    if n_fft & (n_fft - 1) == 0:
        return np.float32(1.0 / n_fft), True
    return np.float32(1.0), False


def _llr_weights(snr: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Weight and offset of the log-likelihood ratio ``w·x - off`` of one unit-mean exponential
    sample ``x`` between noise (mean 1) and signal plus noise (mean 1 + snr)."""
    s = np.maximum(snr, 1e-3)
    return s / (1.0 + s), np.log1p(s)


def _gmsk_line_scores(filtered: ComplexArray, sample_rate_hz: float, rows_fft: RowFFT) -> tuple[
        npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
    """The spectrum of the squared bursts scored for GMSK's line pair: ``(score, centres_hz, step_hz)``,
    ``score[:, j]`` the weaker of the two lines R_b/2 either side of ``centres_hz[j]`` (twice the
    carrier offset), on a grid of ``step_hz``."""
    square = np.square(filtered)
    n_fft = 2 * square.shape[1]
    power = np.fft.fftshift(np.abs(rows_fft.fft(square, n_fft)) ** 2, axes=1)
    step_hz = sample_rate_hz / n_fft
    freqs = (np.arange(n_fft) - n_fft // 2) * step_hz
    half = round(0.5 * GMSK_BIT_RATE_HZ / step_hz)
    score = np.minimum(power[:, : n_fft - 2 * half], power[:, 2 * half :])  # both lines, not one
    return score, freqs[half : n_fft - half], step_hz


def gmsk_line_frequencies(filtered: ComplexArray, sample_rate_hz: float, guesses_hz: npt.ArrayLike,
                          rows_fft: RowFFT, search_hz: float = 25e3) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Carrier offsets of (G)MSK bursts from the spectral lines of their square, and line strengths.

    ``filtered``: (m, n) band-filtered bursts (zero padded). Squaring MSK doubles its phase
    steps to ±π a bit: the square is frequency-shift keyed with index 1, whose spectrum
    holds two lines at 2·f_c ± R_b/2 whatever the data (the classic squaring carrier
    recovery of MSK; GMSK with BT = 0.3, TS 45.004 §2.4, keeps them). Their midpoint gives
    f_c without the ±R_b/(4√n) data-dependent wander of a power centroid. Returns
    (offsets_hz, ratios): a ratio is the weaker line of the pair (both must be there)
    over its mean in the search range (± ``search_hz`` around the guess): measured
    below 12.5 for LTE PUSCH/PUCCH at any SNR, median 20 / 27 for GMSK at 10 / 15 dB.
    """
    guesses = np.asarray(guesses_hz, dtype=np.float64)
    n_fft = 2 * filtered.shape[1]
    m, n = filtered.shape
    square = rows_fft.rows(m, n_fft)
    np.square(filtered, out=square[:, :n])
    square[:, n:] = 0.0  # zero padded to twice the length
    spectrum = rows_fft.forward(m, n_fft)
    step_hz = sample_rate_hz / n_fft
    half = round(0.5 * GMSK_BIT_RATE_HZ / step_hz)
    centres = ((np.arange(n_fft) - n_fft // 2) * step_hz)[half : n_fft - half]
    # the line-pair scores of _gmsk_line_scores, searched around each guess in one compiled pass
    k, sums, counts, peak, left, right = measure_kernels.gmsk_line_peaks(spectrum, half, centres, 2.0 * guesses,
                                                                         2.0 * search_hz)
    means = sums / np.maximum(counts, 1)
    ratios = np.where(means > 0, peak / np.where(means > 0, means, 1.0), 0.0)
    denom = left - 2.0 * peak + right
    delta = np.where(denom < 0, 0.5 * (left - right) / np.where(denom < 0, denom, -1.0), 0.0)
    offsets = 0.5 * (centres[k] + np.clip(delta, -0.5, 0.5) * step_hz)
    return offsets, ratios


def gmsk_carrier_pair(filtered: ComplexArray, sample_rate_hz: float, lo_hz: npt.ArrayLike, hi_hz: npt.ArrayLike,
                      spacing_hz: float, tolerance_hz: float, rows_fft: RowFFT, search_hz: float = 25e3,
                      ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The strongest GMSK carrier between ``lo_hz`` and ``hi_hz``, and the strongest one ``spacing_hz``
    (± ``tolerance_hz``) from it.

    The line pairs of :func:`gmsk_line_frequencies`, looked for over the whole band instead
    of around a guess: ``filtered`` (m, n) band-filtered bursts at ``sample_rate_hz`` (the
    square spans twice the band, so the rate must exceed twice its width). Returns
    (f1, ratio1, f2, ratio2), each ratio the weaker line of a pair over the mean line
    score within ± ``search_hz`` of its carrier (as :func:`gmsk_line_frequencies`).
    """
    lo = np.asarray(lo_hz, dtype=np.float64)
    hi = np.asarray(hi_hz, dtype=np.float64)
    score, line_centres_hz, step_hz = _gmsk_line_scores(filtered, sample_rate_hz, rows_fft)
    carriers = 0.5 * line_centres_hz  # the carrier each score belongs to
    reach = max(1, round(2.0 * search_hz / step_hz))  # ± search_hz of carrier is ± 2·search_hz of line
    prefix = np.zeros((score.shape[0], score.shape[1] + 1))
    np.cumsum(score, axis=1, out=prefix[:, 1:])
    rows = np.arange(score.shape[0])

    def ratio_at(k: IntArray) -> npt.NDArray[np.float64]:  # only two scores a row need their local mean
        a = np.maximum(k - reach, 0)
        b = np.minimum(k + reach + 1, score.shape[1])
        local_mean = (prefix[rows, b] - prefix[rows, a]) / (b - a)
        return np.where(local_mean > 0, score[rows, k] / np.where(local_mean > 0, local_mean, 1.0), 0.0)

    inside = (carriers[None, :] >= lo[:, None]) & (carriers[None, :] <= hi[:, None])
    k1 = np.argmax(np.where(inside, score, -np.inf), axis=1)
    f1 = carriers[k1]
    apart = inside & (np.abs(np.abs(carriers[None, :] - f1[:, None]) - spacing_hz) <= tolerance_hz)
    k2 = np.argmax(np.where(apart, score, -np.inf), axis=1)
    r2 = np.where(apart.any(axis=1), ratio_at(k2), 0.0)
    return f1, ratio_at(k1), carriers[k2], r2


@dataclass(slots=True)
class _Components:
    """Finalized connected regions of the detection mask, before measurement, one array per property.

    Flat rather than one object per region: the per-region work of a busy band (a GSM call
    alone makes 217 regions a second) is then a fixed number of numpy calls per batch.
    ``z`` holds every region's bounding box of normalized cells, row-major, one box after
    the other from ``offsets[i]``, with cells outside the region set neutral
    (``bins_per_cell``, the noise mean).
    """

    r0: IntArray  # absolute frames [r0, r1) of the bounding box
    r1: IntArray
    c0: IntArray  # columns [c0, c1)
    c1: IntArray
    offsets: IntArray  # (m + 1,) start of each box in ``z``
    z: npt.NDArray[np.float64]
    n_cells: IntArray  # cells of the region itself
    floor: npt.NDArray[np.float64]  # (m, n_columns) mean noise power of one cell
    truncated: BoolArray

    @property
    def m(self) -> int:
        return int(self.r0.shape[0])

    def take(self, idx: IntArray) -> _Components:
        sizes = (self.r1 - self.r0)[idx] * (self.c1 - self.c0)[idx]
        offsets = np.zeros(idx.shape[0] + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        flat = np.repeat(self.offsets[idx], sizes) + np.arange(offsets[-1]) - np.repeat(offsets[:-1], sizes)
        return _Components(r0=self.r0[idx], r1=self.r1[idx], c0=self.c0[idx], c1=self.c1[idx], offsets=offsets,
                           z=self.z[flat], n_cells=self.n_cells[idx], floor=self.floor[idx], truncated=self.truncated[idx])

    @staticmethod
    def concat(parts: list[_Components]) -> _Components:
        if len(parts) == 1:
            return parts[0]
        sizes = np.array([p.z.shape[0] for p in parts])
        shifts = np.cumsum(sizes) - sizes
        return _Components(
            r0=np.concatenate([p.r0 for p in parts]),
            r1=np.concatenate([p.r1 for p in parts]),
            c0=np.concatenate([p.c0 for p in parts]),
            c1=np.concatenate([p.c1 for p in parts]),
            offsets=np.concatenate([[0]] + [p.offsets[1:] + s for p, s in zip(parts, shifts, strict=True)]),
            z=np.concatenate([p.z for p in parts]),
            n_cells=np.concatenate([p.n_cells for p in parts]),
            floor=np.concatenate([p.floor for p in parts]),
            truncated=np.concatenate([p.truncated for p in parts]),
        )


@dataclass(slots=True)
class _Parts:
    """Signal rectangles to measure (one per region, or several after a split), one array per property.

    ``t0_fixed``/``t1_fixed``: a stream sample index where a split already placed the
    start/stop (-1: measure it). ``margin_lo``/``margin_hi``: bins added below/above the
    band when collecting its energy (none on the side of a frequency split, where the
    neighbour's skirt would leak in).
    """

    ra: IntArray  # absolute frames [ra, rb)
    rb: IntArray
    lo: IntArray  # shifted grid bins [lo, hi)
    hi: IntArray
    snr: npt.NDArray[np.float64]  # mean cell SNR of the rectangle (linear)
    floor: npt.NDArray[np.float64]
    truncated: BoolArray
    n_cells: IntArray
    t0_fixed: IntArray
    t1_fixed: IntArray
    margin_lo: IntArray
    margin_hi: IntArray
    box_r0: IntArray  # the region's bounding box, frames [box_r0, box_r1)
    box_r1: IntArray
    split: IntArray  # 0: a whole region, 1: cut in time, 2: cut in frequency (Burst.split)
    carrier_hz: npt.NDArray[np.float64]  # GMSK carrier offset found by a frequency cut (NaN: none)

    @property
    def m(self) -> int:
        return int(self.ra.shape[0])

    def take(self, idx: IntArray) -> _Parts:
        return _Parts(*(getattr(self, f.name)[idx] for f in fields(self)))

    @staticmethod
    def concat(parts: list[_Parts]) -> _Parts:
        return _Parts(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Parts)))


@dataclass(slots=True)
class _Measured:
    """What :meth:`BurstDetector._measure_parts` found for each part, one array per quantity."""

    t0: IntArray  # stream sample index of the start
    length: IntArray  # samples
    centroid: npt.NDArray[np.float64]  # centre offset from the receiver's frequency (Hz)
    bandwidth: npt.NDArray[np.float64]  # 99 % occupied (Hz)
    signal_power: npt.NDArray[np.float64]  # FS² per sample, noise subtracted
    noise_density: npt.NDArray[np.float64]  # FS² per Hz
    clip_peak: npt.NDArray[np.float64]
    flatness: npt.NDArray[np.float64]
    line_ratio: npt.NDArray[np.float64]  # NaN: not looked for
    total: npt.NDArray[np.float64]  # in-band excess of the mean frame spectrum (|X_k|² units)
    positive: npt.NDArray[np.float64]  # (m, fft_size) in-band excess spectrum, clipped at 0, shifted order
    lines_due: BoolArray  # GMSK lines to be looked for, not yet looked for (BurstDetector._look_for_lines)

    @staticmethod
    def concat(items: list[_Measured]) -> _Measured:
        return _Measured(*(np.concatenate([getattr(x, f.name) for x in items]) for f in fields(_Measured)))

    def take(self, idx: IntArray) -> _Measured:
        return _Measured(*(getattr(self, f.name)[idx] for f in fields(self)))


class BurstDetector:
    """Streaming detector plan for one receiver (sample rate, centre frequency).

    ``process(block)`` consumes an :class:`~dsp.records.IQBlock` of any length and returns
    the bursts finalized so far; ``flush()`` ends the stream and returns the rest.
    A block with ``n_dropped > 0`` closes every open burst (its frames are not contiguous
    with what came before). A change of ``gain_db`` restarts the noise floor's warm-up.

    Bursts come out in batches (up to 512, or once the oldest started 1 s ago), each
    batch in time order; a long burst can come after shorter later ones. The detector
    keeps references to block sample (or cu8 byte) arrays for up to ~1.3 s: a source must
    not refill an array it has handed over.
    """

    _GMSK_MAX_BANDWIDTH_HZ = 450e3  # look for GMSK lines in bands up to this wide
    _COARSE_FROM_HZ = 500e3  # boxes this wide are tested on the grid of column pairs ...
    _COARSE_MIN_POSITIONS = 16  # ... unless they fit fewer positions than this into the band
    _ALIAS_EDGE_COLUMNS = 3  # the outer 112 kHz on each side, where the anti-alias filter is weak ...
    _ALIAS_RATIO = 4.0  # ... and a strip 6 dB below the other edge's signal is its alias
    _GMSK_SPAN = 1024  # central samples of a burst used for its GMSK lines
    _GMSK_RECENTRE_HZ = 50e3  # a guess further than this from the band's middle centres the line search
    _QUIET_COLUMNS = 3  # this many adjacent columns (112 kHz) of noise inside a region separate two signals ...
    _QUIET_EXCESS = 1.5  # ... when their cells average under this excess over the noise (_separate_bands),
    _STRONG_EXCESS = 4.0  # ... between two signals with a column averaging this much (0 dB per cell)
    _VALLEY_RATIO = 10.0  # columns this far (10 dB) under the weaker of the peaks either side are a gap ...
    _VALLEY_MIN_PEAK = 40.0  # ... when both peaks reach this excess per cell (10 dB)
    _SPLIT_MAX_SLOTS = 16  # merged GSM bursts of up to this many timeslots are cut apart (_split_in_time)
    _SPLIT_MAX_BANDWIDTH_HZ = 1.0e6  # ... when no wider than 5 ARFCNs
    _SPLIT_WINDOW = 640  # samples (267 µs) looked at around each slot boundary
    _SPLIT_FLANK = 48  # samples (20 µs) averaged on each flank ...
    _SPLIT_FLANK_OFFSET_S = 30e-6  # ... from this far either side of the gap ...
    _SPLIT_GAP = 24  # ... and (10 µs, inside the 15 µs where neither burst sends) in the gap
    _SPLIT_SEARCH_S = 80e-6  # the gap is looked for this far either side of where it must be
    _SPLIT_ON_SNR = 1.0  # a flank 3 dB over the noise is a busy slot ...
    _SPLIT_ON_RELATIVE = 0.01  # ... and within 20 dB of the strongest slot of the region
    _SPLIT_DIP = 0.5  # the gap's excess power under this share of the weaker flank's ...
    _SPLIT_DEEP_DIP = 0.03  # ... or this share of the stronger flank's is a guard period
    _SPLIT_MIN_S = 100e-6  # shorter pieces are dropped
    _SPLIT_PROOF_BANDWIDTH_HZ = 180e3  # a cut stands when a piece is this wide (a GMSK burst's 99 % band
    _SPLIT_PROOF_SHORTER_S = 40e-6  # is ~250 kHz), lasts a normal burst (546.5 µs) less up to this or
    _SPLIT_PROOF_LONGER_S = 110e-6  # more up to this (at 35 dB its ramps are counted in), and shows lines
    _FSPLIT_MAX_S = 700e-6  # a frequency cut looks at regions no longer than one (strong) GSM burst
    _SPLIT_LEFTOVER = 0.3  # rectangle beyond a region's measured edge, in slots, that may hold another burst
    _FSPLIT_MIN_BANDWIDTH_HZ = 300e3  # regions at least this wide may hold two GSM carriers (_split_in_frequency)
    _FSPLIT_SPACING_TOLERANCE_HZ = 30e3  # ... 200 kHz apart (TS 45.005 §2) to within this
    _FSPLIT_FIRST_RATIO = 12.5  # line ratios of the stronger carrier (SC-FDMA stays below) ...
    _FSPLIT_SECOND_RATIO = 8.0  # ... and of the other (a lone burst shows < 3 that far from its own)
    _HALF_POWER_MIN_SNR = 20.0  # plateau/noise (13 dB) from which edges are the -3 dB points (half_power_edges)
    _HALF_POWER_HALF_SAMPLES = 4  # power averaged over 8 samples (3.3 µs) to find them
    _HALF_POWER_MAX_SHIFT_SAMPLES = 240  # 100 µs: the filter's ringing at 45 dB reaches ~60 µs
    _BANDWIDTH_RELIABLE_SNR = 10.0  # mean cell SNR (10 dB) above which the 99 % bandwidth is trusted (_bursts)
    _RESCUE_MIN_RECT_HZ = 150e3  # ... below it, a rectangle this wide is a signal, not a carrier
    # components measured together, or once the oldest started this long ago (detection
    # latency): the measurement's numpy glue (~1 ms a batch) is paid per batch; 256 / 0.5 s
    # ran a busy band 14 % faster than 64 / 0.25 s, 512 / 1 s another 4.5 %, same records
    # (the service waits for each sensor's usual lateness, the snippet ring holds 1.5 s)
    _BATCH = 512
    _BATCH_DELAY_S = 1.0

    def __init__(self, config: DetectorConfig, sample_rate_hz: float, center_freq_hz: int) -> None:
        if not (sample_rate_hz > 0 and math.isfinite(sample_rate_hz)):
            raise InputError(None, "sample_rate_hz", "must be positive")
        self.config = config
        self.sample_rate_hz = float(sample_rate_hz)
        self.center_freq_hz = int(center_freq_hz)
        n = config.fft_size
        g = config.bins_per_cell
        self.n_columns = n // g
        # natural-order bins guarded around DC
        nat_freqs = np.fft.fftfreq(n, d=1.0 / self.sample_rate_hz)
        self._guard_bins = np.flatnonzero(np.abs(nat_freqs) <= config.dc_guard_hz)
        self._ws = _Workspace()
        self._fft = RowFFT.for_this_thread()  # planned FFTW transforms, shared by this thread's detectors
        self._free: dict[str, list[npt.NDArray[Any]]] = {}  # arrays of trimmed epochs, reused
        shifted_freqs = np.fft.fftshift(nat_freqs)
        self._bin_freqs_hz = shifted_freqs  # frequency of shifted bin k
        guarded = np.zeros(n, dtype=bool)
        guarded[np.fft.fftshift(np.isin(np.arange(n), self._guard_bins))] = True
        self._guarded_shifted = guarded
        guard_idx = np.flatnonzero(guarded)
        # bins either side of the DC guard whose mean bridges it in burst spectra
        self._guard_fill = (
            (np.arange(guard_idx[0] - 4, guard_idx[0]), np.arange(guard_idx[-1] + 1, guard_idx[-1] + 5), guard_idx)
            if guard_idx.size and guard_idx[0] >= 4 and guard_idx[-1] < n - 4 else None
        )
        self.column_dofs = g - guarded.reshape(self.n_columns, g).sum(axis=1)
        self._window = signal.windows.tukey(n, config.tukey_alpha, sym=False).astype(np.float32)
        self._window_iq = np.repeat(self._window, 2)  # the window for interleaved I, Q
        w2 = self._window.astype(np.float64) ** 2
        self._window_power = float(w2.mean())  # E|X_k|^2 = N·σ²·window_power for white noise
        rho = np.fft.fft(w2) / w2.sum()
        self._rho2 = np.abs(rho) ** 2  # |correlation|² of two bins d apart, d = 0..N-1
        self._tracker = NoiseFloorTracker(
            self.n_columns,
            [self.effective_dof(max(int(d), 1)) for d in self.column_dofs],
            n_sum=config.noise_sum_frames,
            n_min=config.noise_min_groups,
            window_frames=max(1, round(config.noise_window_s / self.frame_s)),
            quantile=config.noise_quantile,
            warmup_frames=max(1, round(config.warmup_s / self.frame_s)),
            update_frames=max(1, round(config.noise_update_s / self.frame_s)),
        )
        self._batch_delay_frames = max(1, round(self._BATCH_DELAY_S / self.frame_s))
        self._image_ratio = 10.0 ** (config.image_rejection_db / 10.0)
        self.box_tests = self._make_box_tests()
        self._max_box_frames = max(t.n_frames for t in self.box_tests)
        # the kernel's template arrays, made once (hashing the templates for the cache cost 20 µs an epoch)
        self._box_kernel_args = _box_arrays(self.box_tests)
        self._scratch_shapes: dict[int, tuple[tuple[int, int], tuple[int, int, int]]] = {}  # by grid rows
        self._norm_key: tuple[Any, ...] | None = None  # (floor, carrier_mask) the constants below are for
        self._norm_scale = np.zeros(0, dtype=np.float32)
        self._norm_offset = np.zeros(0, dtype=np.float32)
        energy = self._window.astype(np.float64) ** 2
        two = np.concatenate((energy, energy)) / energy.sum()
        self._prefix2 = np.concatenate(([0.0], np.cumsum(two)))  # window energy of [0, t), in frames
        self._suffix2 = self._prefix2[-1] - self._prefix2  # window energy of [t, 2N)
        self._neg_suffix2 = -self._suffix2  # ascending, for a binary search (split_kernels.edge_estimates)
        self._shift_index = np.fft.fftshift(np.arange(n))
        self._edge_bins: dict[int, npt.NDArray[np.int64]] = {}
        self._edge_counts: dict[int, npt.NDArray[np.int64]] = {}  # FFT bins per grid bin, by FFT length
        self._grid = np.arange(n)
        self._carrier_occupancy = np.zeros(self.n_columns, dtype=np.float64)
        self.carrier_mask = np.zeros(self.n_columns, dtype=bool)
        self._usable_for = b""  # the carrier mask ``_usable`` was made for (its bytes)
        self._usable = np.zeros(n, dtype=bool)
        self.stats = DetectorStats()
        self._next_frame = 0
        self._reset_stream()
        self._anchor_s: float | None = None  # UTC of stream sample index 0
        self._gain_db: float | None = None

    # -- derived axes ---------------------------------------------------------------

    @property
    def frame_s(self) -> float:
        return self.config.fft_size / self.sample_rate_hz

    @property
    def bin_hz(self) -> float:
        return self.sample_rate_hz / self.config.fft_size

    @property
    def cell_hz(self) -> float:
        return self.bin_hz * self.config.bins_per_cell

    @property
    def column_freqs_hz(self) -> npt.NDArray[np.float64]:
        """Centre of each column, offset from the receiver centre (Hz)."""
        g = self.config.bins_per_cell
        return self._bin_freqs_hz.reshape(self.n_columns, g).mean(axis=1)

    @property
    def noise_floor_dbfs_hz(self) -> npt.NDArray[np.float64] | None:
        """Current noise density per column in dBFS/Hz, or None during warm-up."""
        floor = self._tracker.floor
        if floor is None:
            return None
        per_bin = floor / np.maximum(self.column_dofs, 1) / self._window_power
        return 10.0 * np.log10(per_bin / self.config.fft_size**2 / self.bin_hz)

    @property
    def tests_per_second(self) -> float:
        """Box tests evaluated per second of signal (for false-alarm bookkeeping)."""
        per_frame = sum((self.n_columns - t.n_columns) // t.stride + 1 for t in self.box_tests)
        return per_frame / self.frame_s

    def _grid_bins(self, length: int) -> npt.NDArray[np.int64]:
        """Shifted grid bin (0..fft_size-1) holding each natural-order bin of a ``length``-point FFT."""
        freqs = np.fft.fftfreq(length, d=1.0 / self.sample_rate_hz)
        k = np.floor(freqs / self.bin_hz + self.config.fft_size / 2 + 0.5).astype(np.int64)
        return np.clip(k, 0, self.config.fft_size - 1)

    def effective_dof(self, n_bins: int) -> float:
        """Moment-matched Gamma shape of the sum of ``n_bins`` adjacent bins of one frame.

        Bins d apart have power correlation |ρ_d|², ρ_d = Σw²e^(-2πjdn/N)/Σw², so the
        sum has variance Σ_d (n - |d|)|ρ_d|² (unit-mean bins) and shape n²/variance.
        """
        d = np.arange(-(n_bins - 1), n_bins)
        variance = float(np.sum((n_bins - np.abs(d)) * self._rho2[np.abs(d) % self.config.fft_size]))
        return n_bins * n_bins / variance

    def _make_box_tests(self) -> tuple[BoxTest, ...]:
        """One test per distinct box, each with its share of the false-alarm budget.

        Template t gets ``pfa_t = pfa · w_t · Σ n_s / Σ w_s n_s`` (``n``: positions a frame,
        ``w``: ``fa_weight``, 1 when absent), so the expected false alarms (union bound,
        ``Σ n_t pfa_t``) are those of ``pfa`` on every test, whatever the weights.
        """
        shapes: dict[tuple[int, int], tuple[str, int, float]] = {}  # (frames, columns) -> (name, stride, weight)
        for template in self.config.templates:
            name, duration_s, bandwidth_hz = template[:3]
            weight = float(template[3]) if len(template) > 3 else 1.0
            k = max(1, round(float(duration_s) / self.frame_s))
            # Wide boxes step by two columns on a grid of column pairs: a quarter of the
            # work, and at most one column (37.5 kHz) of misalignment on 700+ kHz. Boxes
            # nearly as wide as the band have few positions: they keep every column (the
            # misalignment cost 0.1 dB on a 2.16 MHz allocation).
            width = max(1, round(float(bandwidth_hz) / self.cell_hz))
            coarse = (float(bandwidth_hz) >= self._COARSE_FROM_HZ and self.n_columns % 2 == 0
                      and self.n_columns - width >= self._COARSE_MIN_POSITIONS)
            stride = 2 if coarse else 1
            b = min(self.n_columns, stride * max(1, round(float(bandwidth_hz) / (stride * self.cell_hz))))
            shapes.setdefault((k, b), (str(name), stride, weight))
        positions = {key: (self.n_columns - key[1]) // stride + 1 for key, (_, stride, _) in shapes.items()}
        scale_pfa = sum(positions.values()) / sum(w * positions[key] for key, (_, _, w) in shapes.items())
        g = self.config.bins_per_cell
        tests: list[BoxTest] = []
        for (k, b), (name, stride, weight) in shapes.items():
            pfa = min(self.config.pfa * weight * scale_pfa, 0.5)
            shape = k * self.effective_dof(b * g)
            threshold = k * b * g / shape * _gamma_isf(pfa, shape)
            tests.append(BoxTest(name, k, b, shape, threshold, pfa, stride))
        # smallest first: see _box_tests
        return tuple(sorted(tests, key=lambda t: (t.n_frames * t.n_columns, t.n_frames)))

    # -- streaming ------------------------------------------------------------------

    def _reset_stream(self) -> None:
        """Forget the frame grid (after a gap); the noise floor is kept."""
        n = self.config.fft_size
        self._buffer: IQArray = np.empty(self.config.epoch_frames * n, dtype=np.complex64)
        self._n_buffered = 0  # samples in the buffer (cu8 blocks are buffered as bytes)
        self._buffer_sample_start: int | None = None
        self._history: deque[_Epoch] = deque()
        self._pending: list[_Components] = []  # finalized, waiting to be measured in a batch
        self._open_from: int | None = None  # first frame that may still belong to an open component

    def process(self, block: IQBlock) -> list[Burst]:
        """Feed one block; return the bursts finalized by it."""
        if block.sample_rate_hz != self.sample_rate_hz:
            raise InputError(None, "sample_rate_hz", f"block at {block.sample_rate_hz} Hz, detector planned for {self.sample_rate_hz} Hz")
        if int(block.center_freq_hz) != self.center_freq_hz:
            raise InputError(None, "center_freq_hz", f"block at {block.center_freq_hz} Hz, detector planned for {self.center_freq_hz} Hz")
        out: list[Burst] = []
        predicted = None if self._anchor_s is None else self._anchor_s + block.sample_index / self.sample_rate_hz
        discontinuous = block.n_dropped > 0 or (
            self._buffer_sample_start is not None
            and block.sample_index != self._buffer_sample_start + self._n_buffered
        )
        if discontinuous and self._anchor_s is not None:
            self.stats.n_gaps += 1
            out.extend(self._end_stream())
        if predicted is None or abs(block.t_start_s - predicted) > _TIME_TOLERANCE_S:
            if predicted is not None and not discontinuous:
                out.extend(self._end_stream())
            self._anchor_s = block.t_start_s - block.sample_index / self.sample_rate_hz
        if block.gain_db is not None:
            if self._gain_db is not None and block.gain_db != self._gain_db:
                # The new floor is measured, not scaled: the ADC's share of the noise does
                # not follow the tuner gain. The first warmup_s after the step are held and
                # searched once it exists (_backfill), as at the start of a stream.
                out.extend(self._end_stream())
                self._tracker.restart()
            self._gain_db = block.gain_db
        iq = self._block_iq(block)
        width = _iq_width(iq)
        n_samples = iq.shape[0] // width
        if self._buffer_sample_start is None:
            self._buffer_sample_start = block.sample_index
        self.stats.n_samples += n_samples
        pos = 0
        n_epoch = self.config.epoch_frames * self.config.fft_size
        while pos < n_samples:
            if self._n_buffered == 0 and n_samples - pos >= n_epoch:
                # a whole epoch inside the block: use it in place (it is never modified)
                out.extend(self._run_epoch(iq[width * pos : width * (pos + n_epoch)], final=False))
                self._buffer_sample_start += n_epoch
                pos += n_epoch
                continue
            if self._buffer.dtype != iq.dtype:  # empty (_block_iq): bytes or samples, as the block
                self._buffer = np.empty(width * n_epoch, dtype=iq.dtype)
            take = min(n_epoch - self._n_buffered, n_samples - pos)
            self._buffer[width * self._n_buffered : width * (self._n_buffered + take)] = iq[width * pos : width * (pos + take)]
            self._n_buffered += take
            pos += take
            if self._n_buffered == n_epoch:
                out.extend(self._run_epoch(self._buffer, final=False))
                self._buffer = np.empty(width * n_epoch, dtype=iq.dtype)
                self._buffer_sample_start += n_epoch
                self._n_buffered = 0
        return out

    def _block_iq(self, block: IQBlock) -> IQArray:
        """The block's cu8 bytes when it has them, else its samples as complex64; when the partial
        epoch buffered holds the other kind, both become samples (the buffered bytes converted:
        the same values), so an epoch is all of one kind."""
        bytes_buffered = self._n_buffered > 0 and self._buffer.dtype == np.uint8
        if block.cu8 is not None and (self._n_buffered == 0 or bytes_buffered):
            return block.cu8
        if bytes_buffered:
            converted = np.empty(self._buffer.shape[0] // 2, dtype=np.complex64)
            converted[: self._n_buffered] = cu8_to_complex64(cast(U8Array, self._buffer)[: 2 * self._n_buffered])
            self._buffer = converted
        samples = block.samples
        return samples if samples.dtype == np.complex64 else samples.astype(np.complex64)

    def flush(self) -> list[Burst]:
        """End of stream: process the partial epoch and close every open burst."""
        return self._end_stream()

    def _end_stream(self) -> list[Burst]:
        out: list[Burst] = []
        n = self.config.fft_size
        n_frames = self._n_buffered // n
        if n_frames and self._buffer_sample_start is not None:
            out.extend(self._run_epoch(self._buffer[: _iq_width(self._buffer) * n_frames * n].copy(), final=True))
        else:
            if self._tracker.floor is None and self._history:
                self._tracker.estimate_now()  # the stream ended during the warm-up
                if self._tracker.floor is not None:
                    self._backfill()
            out.extend(self._finalize(final=True))
        self._reset_stream()
        return out

    # -- one epoch ------------------------------------------------------------------

    def _power_cells(self, iq: IQArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Windowed FFT power per bin (natural order), summed over ``bins_per_cell`` bins into
        (n_frames, n_columns) cells in shifted (increasing frequency) order, and each frame's
        largest |I| or |Q| (read here, where the samples pass anyway, for the clipping flag).

        Two fused passes around an in-place FFT (:mod:`dsp.fastgrid`): window and peak before
        (from the cu8 bytes themselves when the epoch holds bytes), power, guard, cell sums and
        shift after; a rectangular window is a window of ones.
        """
        n = self.config.fft_size
        n_frames = iq.shape[0] // (_iq_width(iq) * n)
        ws = self._ws
        windowed = self._fft.rows(n_frames, n, exact=True).view(np.float32).ravel()
        peak = np.empty(n_frames, dtype=np.float32)
        if iq.dtype == np.uint8:
            fastgrid.window_frames_cu8(cast(U8Array, iq), np.float32(CU8_OFFSET), np.float32(CU8_SCALE), self._window_iq,
                                       windowed, peak)
        else:
            fastgrid.window_frames(iq.view(np.float32), self._window_iq, windowed, peak)
        spectra = self._fft.forward(n_frames, n, exact=True)  # planned, in place on the rows just written
        power = self._take("power", (n_frames, n), np.float32)
        cells = ws.get("raw_cells", n_frames * self.n_columns).reshape(n_frames, self.n_columns)
        fastgrid.power_cells(spectra.view(np.float32), self._guard_bins, self.config.bins_per_cell, power, cells)
        return power, cells, peak

    def _run_epoch(self, iq: IQArray, final: bool) -> list[Burst]:
        assert self._buffer_sample_start is not None
        power, raw, peak = self._power_cells(iq)
        n_frames = raw.shape[0]
        floor = self._tracker.floor
        self.stats.n_frames += n_frames
        epoch = _Epoch(
            first_frame=self._next_frame,
            sample_start=self._buffer_sample_start,
            iq=iq,
            cells=None,
            mask=self._take("mask", (n_frames, self.n_columns), np.bool_),
            power=power,
            peak=peak,
            floor=None,
        )
        epoch.mask[:] = False
        self._next_frame += n_frames
        self._history.append(epoch)
        if floor is None:
            self.stats.n_warmup_frames += n_frames
            self._tracker.push(raw)
            if final and self._tracker.floor is None:
                self._tracker.estimate_now()  # a recording shorter than the warm-up
            if self._tracker.floor is not None:
                self._backfill()
        else:
            self._normalize(epoch, raw, floor)
            self._box_tests(epoch)
            self._tracker.push(raw, epoch.mask)  # painted bursts stay out of the floor
        # during the warm-up there is nothing to label yet (and the open region must not move)
        bursts = self._finalize(final=final) if self._tracker.floor is not None else []
        self._update_carriers(epoch)
        self._trim_history()
        return bursts

    def _normalize(self, epoch: _Epoch, raw: FloatArray, floor: npt.NDArray[np.float64]) -> None:
        """Cells divided by the floor (mean ``bins_per_cell`` under noise); masked columns neutral.

        The per-column scale and offset change only with a new floor estimate (a few a
        second) or carrier mask: they are remade then, not for every epoch.
        """
        mask = self.carrier_mask.tobytes()  # the mask's contents, as _usable_bins keys it
        if self._norm_key is None or self._norm_key[0] is not floor or self._norm_key[1] != mask:
            g = self.config.bins_per_cell
            usable = (self.column_dofs > 0) & ~self.carrier_mask
            dofs = np.where(usable, self.column_dofs, 0)
            self._norm_scale = np.where(usable, dofs / floor, 0.0).astype(np.float32)
            self._norm_offset = (g - dofs).astype(np.float32)
            self._norm_key = (floor, mask)
        cells = self._take("cells", (epoch.n_frames, self.n_columns), np.float32)
        fastgrid.scale_cells(raw, self._norm_scale, self._norm_offset, cells)  # one pass for numpy's multiply and add
        epoch.cells = cells
        epoch.floor = floor.copy()

    def _backfill(self) -> None:
        """The floor has just become available: detect in the warm-up epochs held so far.

        Nothing is lost at the start of a stream (bundled recordings last 0.2-0.4 s); the
        warm-up epochs are judged against the first estimate, made from them.
        """
        floor = self._tracker.floor
        assert floor is not None
        g = self.config.bins_per_cell
        half = self.n_columns // 2
        for ep in list(self._history):
            if ep.cells is not None:
                continue
            natural = ep.power[:, 0::g].copy()
            for j in range(1, g):
                natural += ep.power[:, j::g]
            raw = np.concatenate((natural[:, half:], natural[:, :half]), axis=1)
            self._normalize(ep, raw, floor)
            self._box_tests(ep)

    def _recent_cells(self, earlier: list[_Epoch], first_frame: int, n_rows: int) -> list[FloatArray]:
        """The last ``n_rows`` (at most) normalized rows of ``earlier`` epochs that end contiguously at
        ``first_frame``, as views of the epochs' cells, latest first."""
        rows: list[FloatArray] = []
        have = 0
        expected_end = first_frame
        for ep in reversed(earlier):
            if have >= n_rows or ep.cells is None or ep.end_frame != expected_end:
                break
            take = min(n_rows - have, ep.n_frames)
            rows.append(ep.cells[ep.n_frames - take :])
            have += take
            expected_end = ep.first_frame
        return rows

    def _box_tests(self, epoch: _Epoch) -> None:
        """Every template at every position whose box ends in this epoch; paint the hits.

        Templates run smallest first and the cells they explain are made neutral for
        the larger ones (a strong GSM burst must not also light up a 2 MHz box). The work is
        one compiled call (:func:`dsp.labelling.box_tests`): in numpy it was ~60 calls per
        epoch over 130 kB arrays, at memory speed, plus the painting.
        """
        assert epoch.cells is not None
        earlier = [ep for ep in self._history if ep.end_frame <= epoch.first_frame]
        carried = self._recent_cells(earlier, epoch.first_frame, self._max_box_frames - 1)
        n_carry = sum(rows.shape[0] for rows in carried)
        n_cols = self.n_columns
        n_rows = n_carry + epoch.n_frames
        ws = self._ws
        grid = ws.get("grid", n_rows * n_cols).reshape(n_rows, n_cols)
        end = n_carry
        for rows in carried:  # latest first: filled from the bottom of the carried part up
            grid[end - rows.shape[0] : end] = rows
            end -= rows.shape[0]
        grid[n_carry:] = epoch.cells
        painted = ws.get("painted", n_rows * n_cols, np.bool_).reshape(n_rows, n_cols)
        n_frames, n_columns, strides, thresholds = self._box_kernel_args
        shapes = self._scratch_shapes.get(n_rows)
        if shapes is None:
            shapes = self._scratch_shapes[n_rows] = labelling.scratch_shapes(n_frames, n_columns, n_rows, n_cols)
        level_shape, cover_shape = shapes
        levels = ws.get("levels", math.prod(level_shape)).reshape(level_shape)
        cover = ws.get("cover", math.prod(cover_shape), np.bool_).reshape(cover_shape)
        if not labelling.box_tests(grid, n_carry, n_frames, n_columns, strides, thresholds,
                                   np.float32(self.config.bins_per_cell), painted, levels, cover):
            return
        epoch.mask |= painted[n_carry:]
        idx = n_carry  # paint back into earlier epochs' rows
        for ep in reversed(earlier):
            if idx <= 0:
                break
            take = min(idx, ep.n_frames)
            ep.mask[ep.n_frames - take :] |= painted[idx - take : idx]
            idx -= take

    # -- segmentation ---------------------------------------------------------------

    def _finalize(self, final: bool) -> list[Burst]:
        """Label the open part of the mask; measure the components no later box can reach."""
        if not self._history:
            return []
        end_frame = self._history[-1].end_frame
        settled = end_frame if final else end_frame - self._max_box_frames
        start = self._history[0].first_frame if self._open_from is None else max(self._open_from, self._history[0].first_frame)
        eps = [ep for ep in self._history if ep.end_frame > start]
        masks = [ep.mask[max(0, start - ep.first_frame) :] for ep in eps]
        if not any(m.any() for m in masks):
            self._open_from = max(settled, start)
            return self._measure_pending(final, end_frame)
        sub = np.concatenate(masks)
        labels = self._ws.get("labels", sub.size, np.int32).reshape(sub.shape)
        bounds = labelling.label_regions(sub, labels)
        n_labels = bounds.shape[0]
        r0 = bounds[:, 0] + start
        r1 = bounds[:, 1] + start
        max_rows = max(1, round(self.config.max_burst_s / self.frame_s))
        if final:
            still_open = np.zeros(n_labels, dtype=bool)
            truncated = r1 >= end_frame  # stopped by a gap or the end of the stream
        else:
            late = r1 > settled
            still_open = late & (r1 - r0 < max_rows)
            truncated = late & ~still_open  # too long to keep open: cut here, the rest is a new burst
        self._open_from = int(min(settled, r0[still_open].min())) if still_open.any() else settled
        done = np.flatnonzero(~still_open)
        if done.size:
            # only the frames of the finished regions' boxes are read: their cells alone are copied
            g = float(self.config.bins_per_cell)
            box = bounds[done]
            lo_row = int(box[:, 0].min())
            hi_row = int(box[:, 1].max())
            first, end = start + lo_row, start + hi_row
            cells = np.concatenate([
                (ep.cells if ep.cells is not None else np.full((ep.n_frames, self.n_columns), g, np.float32))[
                    max(0, first - ep.first_frame) : end - ep.first_frame]
                for ep in eps if ep.first_frame < end and ep.end_frame > first
            ])
            box[:, :2] -= lo_row
            comps = self._components(labels[lo_row:hi_row], cells, box, done + 1, first, truncated[done], eps)
            finished = np.zeros(n_labels + 1, dtype=bool)
            finished[done + 1] = True
            row = 0  # the finished regions' cells lie in their boxes' rows [lo_row, hi_row): only those are cleared
            for m in masks:
                top, bottom = max(row, lo_row), min(row + m.shape[0], hi_row)
                if bottom > top:  # views into the epochs' masks
                    labelling.clear_finished(m[top - row : bottom - row], labels[top:bottom], finished)
                row += m.shape[0]
            if comps.m:
                self._pending.append(comps)
        return self._measure_pending(final, end_frame)

    def _components(self, labels: npt.NDArray[np.int32], cells: FloatArray, bounds: IntArray, ids: IntArray,
                    start: int, truncated: BoolArray, eps: list[_Epoch]) -> _Components:
        """The finalized regions ``ids`` of ``labels`` (rows from frame ``start``) as :class:`_Components`,
        receiver artefacts (:meth:`_artefacts`) left out."""
        g = float(self.config.bins_per_cell)
        b0, b1, c0, c1 = bounds.T
        own, rows, n_cells = labelling.region_sums(labels, cells, bounds, ids, g)
        artefact = self._artefacts(own, rows, c0, c1)
        self.stats.rejected["image_or_alias"] += int(artefact.sum())
        # the floor of the epoch holding each region's first frame (or the first one known)
        firsts = np.array([ep.first_frame for ep in eps])
        floors = [ep.floor for ep in eps]
        fallback = next(f for f in floors if f is not None)
        stacked = np.stack([fallback if f is None else f for f in floors])
        r0 = b0 + start
        floor = stacked[np.searchsorted(firsts, r0, side="right") - 1]
        keep = np.flatnonzero(~artefact)
        offsets, z = labelling.region_boxes(labels, cells, bounds[keep], ids[keep], g)
        return _Components(r0=r0[keep], r1=b1[keep] + start, c0=c0[keep], c1=c1[keep], offsets=offsets, z=z,
                           n_cells=n_cells[keep], floor=floor[keep], truncated=truncated[keep])

    def _artefacts(self, own: npt.NDArray[np.float64], rows: npt.NDArray[np.float64], c0: IntArray,
                   c1: IntArray) -> BoolArray:
        """Which components are receiver artefacts of a much stronger simultaneous signal?

        Two are looked for. The IQ image: I/Q gain and phase mismatch mirrors every signal
        to the opposite offset, 25-40 dB down on an RTL-SDR, so a strong burst at -f shows
        a weak, perfectly simultaneous copy at +f. The alias: what lies just beyond one band
        edge folds, barely filtered, to just inside the other, so a strong signal running
        into the upper edge shows a weak strip at the lower one (and vice versa).
        ``own``: (m, n_columns) mean over the component's frames of its cells minus the noise
        mean (zero outside it); ``rows``: the same over all cells of those frames.
        """
        n = self.n_columns
        edge = self._ALIAS_EDGE_COLUMNS
        hi_start = slice(n - edge, None).indices(n)[0]  # rows[:, n - edge:] and rows[:, :edge], as numpy slices them
        lo_stop = slice(None, edge).indices(n)[1]
        return labelling.artefacts(own, rows, c0, c1, self._image_ratio, edge, hi_start, lo_stop, self._ALIAS_RATIO,
                                   float(self.config.bins_per_cell))

    def _measure_pending(self, final: bool, end_frame: int) -> list[Burst]:
        """Measure the finalized components in batches: numpy's per-call overhead is paid
        once per batch, not once per burst (a GSM call alone makes 217 bursts a second)."""
        if not self._pending:
            return []
        n_pending = sum(c.m for c in self._pending)
        oldest = min(int(c.r0.min()) for c in self._pending)
        if not (final or n_pending >= self._BATCH or end_frame - oldest >= self._batch_delay_frames):
            return []
        components = _Components.concat(self._pending)
        self._pending = []
        bursts = self._measure(components, list(self._history))
        bursts.sort(key=lambda b: b.sample_start)
        self.stats.n_bursts += len(bursts)
        return bursts

    def _trim_history(self) -> None:
        """Drop epochs no open component and no future box test or measurement needs."""
        if self._tracker.floor is None:
            return  # warm-up epochs wait for the first floor estimate (_backfill)
        keep_from = self._history[-1].end_frame - self._max_box_frames - 2
        if self._open_from is not None:
            keep_from = min(keep_from, self._open_from - 2)
        if self._pending:
            keep_from = min(keep_from, min(int(c.r0.min()) for c in self._pending) - 2)
        while len(self._history) > 1 and self._history[0].end_frame <= keep_from:
            old = self._history.popleft()
            self._give("mask", old.mask)
            self._give("cells", old.cells)
            self._give("power", old.power)

    def _take(self, kind: str, shape: tuple[int, int], dtype: Any) -> npt.NDArray[Any]:
        """An array of a trimmed epoch, reused (contents undefined), or a new one."""
        free = self._free.setdefault(kind, [])
        for i, arr in enumerate(free):
            if arr.shape == shape:
                del free[i]
                return arr
        return np.empty(shape, dtype=dtype)

    def _give(self, kind: str, arr: npt.NDArray[Any] | None) -> None:
        free = self._free.setdefault(kind, [])
        if arr is not None and len(free) < 4:
            free.append(arr)

    def _update_carriers(self, epoch: _Epoch) -> None:
        decay = math.exp(-epoch.n_frames * self.frame_s / self.config.carrier_window_s)
        self._carrier_occupancy *= decay
        on = self._carrier_occupancy > self.config.carrier_occupancy
        off = self._carrier_occupancy < 0.5 * self.config.carrier_occupancy
        self.carrier_mask = (self.carrier_mask | on) & ~off

    # -- measurement ----------------------------------------------------------------

    def _gather(self, eps: list[_Epoch], starts: npt.NDArray[np.int64], width: int,
                out: ComplexArray | None = None) -> ComplexArray:
        """Samples [start, start + width) for every start, (k, width), zeros outside the history
        (written into ``out``, whose first ``width`` columns it fills, when given)."""
        if out is None:
            out = np.empty((starts.shape[0], width), dtype=np.complex64)
        self._gather_into(eps, starts, np.full(starts.shape[0], width, dtype=np.int64), out[:, :width])
        return out

    def _gather_into(self, eps: list[_Epoch], starts: IntArray, lengths: IntArray, out: ComplexArray) -> None:
        """Samples [starts[r], starts[r] + lengths[r]) of the history into ``out[r]``, zeros elsewhere in
        the row (past ``lengths[r]``, or where the history has none): one compiled pass over the
        epochs that hold any, instead of a fancy-indexed copy per epoch and a zero-filled array."""
        starts = np.ascontiguousarray(starts, dtype=np.int64)
        lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        if not starts.shape[0]:
            return
        a = int(starts.min())
        b = int((starts + lengths).max())
        held = [ep for ep in eps if ep.sample_start < b and ep.sample_end > a]
        # each sample written once: zeros only where no epoch will copy (the history is
        # contiguous: a gap resets it)
        cover_start = held[0].sample_start if held else 0
        cover_end = held[-1].sample_end if held else 0
        measure_kernels.zero_outside(starts, lengths, cover_start, cover_end, out)
        for ep in held:
            if ep.iq.dtype == np.uint8:  # converted as they are copied
                measure_kernels.gather_windows_cu8(ep.iq, ep.sample_start, starts, lengths, np.float32(CU8_OFFSET),
                                                   np.float32(CU8_SCALE), out.view(np.float32))
            else:
                measure_kernels.gather_windows(ep.iq, ep.sample_start, starts, lengths, out)

    def _separate_bands(self, comps: _Components) -> tuple[IntArray, IntArray, IntArray, IntArray]:
        """Cut components in frequency where whole columns of them are noise.

        Box painting joins two signals whose boxes touch: a strong GSM burst lights 720 kHz
        LTE boxes that reach a PUCCH slot 400 kHz away. Where at least ``_QUIET_COLUMNS``
        adjacent columns of a component average under ``_QUIET_EXCESS`` of excess per cell
        over its frames (noise: 0 ± ~0.8 over six frames; a 180 kHz allocation at 10 dB:
        ~8) between two signals each with a column averaging ``_STRONG_EXCESS`` or more,
        the signals on either side become components of their own (a weak wide burst, whose
        columns dip at random, is never cut; weak segments beside them, painted spill-over,
        are dropped). A deep valley between two strong signals separates them too: a 40 dB
        GSM burst's skirts stay above the noise 300 kHz out, over the gap to a phone 600 kHz
        away. A segment the image rejection below the component's strongest is that
        signal's IQ image or spill-over, not a signal of its own: it is not cut off (the
        rectangle trims it away).

        Returns the boxes to trim as ``(component, col_lo, col_hi, n_cells)``: the components
        without such a gap whole (in their order, ``n_cells`` theirs), then the signals cut
        out of the others, each over every row of its component and its active columns
        ``[col_lo, col_hi)`` (relative to the component's box; narrow quiet runs at its ends
        go), ``n_cells`` the painted cells there. The cut boxes stay views of the component's
        cells (:mod:`dsp.split_kernels`): nothing is copied.
        """
        h = comps.r1 - comps.r0
        w = comps.c1 - comps.c0
        cut, seg_parent, seg_lo, seg_hi, seg_cells = split_kernels.band_cuts(
            self._cells_f64(comps), comps.offsets, h, w, float(self.config.bins_per_cell), self._QUIET_EXCESS,
            self._QUIET_COLUMNS, self._STRONG_EXCESS, self._VALLEY_RATIO, self._VALLEY_MIN_PEAK, self._image_ratio)
        if not cut.any():
            return np.arange(comps.m), np.zeros(comps.m, dtype=np.int64), w, comps.n_cells
        whole = np.flatnonzero(~cut)
        return (np.concatenate((whole, seg_parent)), np.concatenate((np.zeros(whole.size, dtype=np.int64), seg_lo)),
                np.concatenate((w[whole], seg_hi)), np.concatenate((comps.n_cells[whole], seg_cells)))

    @staticmethod
    def _cells_f64(comps: _Components) -> npt.NDArray[np.float64]:
        """The components' cells in float64, the precision their sums were always taken in."""
        return np.ascontiguousarray(comps.z, dtype=np.float64)

    def _rectangles(self, comps: _Components, boxes: tuple[IntArray, IntArray, IntArray, IntArray]) -> _Parts:
        """Most likely signal rectangle of each box of :meth:`_separate_bands` (rows, then columns, twice).

        The painted union of boxes overhangs a strong burst by up to a box on every side;
        the maximum-sum segment of the per-row (then per-column) log-likelihood ratio of
        the cells keeps the rows and columns that carry the burst (the sums in
        :func:`dsp.split_kernels.refine_rectangles`, a pass over each box's cells).
        """
        parent, col_lo, col_hi, n_cells = boxes
        g_int = self.config.bins_per_cell
        g = float(g_int)
        z = self._cells_f64(comps)
        m = parent.shape[0]
        whole = m == comps.m  # no band cut (a cut component leaves two boxes or more): the boxes are the components
        h = comps.r1 - comps.r0
        stride = comps.c1 - comps.c0
        if not whole:
            h = h[parent]
            stride = stride[parent]
        bases = comps.offsets[:-1] + col_lo if whole else comps.offsets[parent] + col_lo
        w = col_hi - col_lo
        a, b = np.zeros(m, dtype=np.int64), h.copy()
        a2, b2 = np.zeros(m, dtype=np.int64), w.copy()
        snr = np.ones(m)
        for _ in range(2):
            snr = split_kernels.core_snr(z, bases, stride, a, b, a2, b2, g)
            weight, off = _llr_weights(snr)
            split_kernels.refine_rectangles(z, bases, stride, h, w, weight, g * off, a, b, a2, b2)
        r0, r1, c0 = comps.r0, comps.r1, comps.c0
        floor, truncated = comps.floor, comps.truncated
        if not whole:
            r0, r1, c0 = r0[parent], r1[parent], c0[parent]
            floor, truncated = floor[parent], truncated[parent]
        minus = np.full(m, -1, dtype=np.int64)
        margin = np.full(m, 2 * g_int, dtype=np.int64)
        return _Parts(ra=r0 + a, rb=r0 + b, lo=(c0 + col_lo + a2) * g_int, hi=(c0 + col_lo + b2) * g_int,
                      snr=snr, floor=floor, truncated=truncated, n_cells=n_cells,
                      t0_fixed=minus, t1_fixed=minus.copy(), margin_lo=margin, margin_hi=margin.copy(),
                      box_r0=r0, box_r1=r1, split=np.zeros(m, dtype=np.int64),
                      carrier_hz=np.full(m, np.nan))

    def _measure(self, comps: _Components, eps: list[_Epoch]) -> list[Burst]:
        """Bursts of a batch of components: bands apart, rectangles, measurement, then the
        cuts of joined GSM bursts (in time, then in frequency) and their pieces measured."""
        if not comps.m:
            return []
        parts = self._rectangles(comps, self._separate_bands(comps))
        meas = self._measure_parts(parts, eps)
        split = self._split_in_time(parts, meas, eps)
        if split is not None:
            # a cut stands when a piece is a GSM normal burst, GMSK lines and all: LTE is left
            # whole (PUCCH slots at a band edge, cut by its roll-off, can show lines too)
            new, parent = split
            # the lines (a third of a piece's cost) first only where the rest of a proof holds: most
            # candidates are LTE subframes, whose pieces are thrown away (a piece's lines are the
            # same whenever they are looked for)
            new_meas = self._measure_parts(new, eps, lines=False)
            excess_s = new_meas.length / self.sample_rate_hz - _GSM_NORMAL_BURST_S
            may_prove = ((new_meas.bandwidth >= self._SPLIT_PROOF_BANDWIDTH_HZ)
                         & (excess_s >= -self._SPLIT_PROOF_SHORTER_S) & (excess_s <= self._SPLIT_PROOF_LONGER_S))
            self._look_for_lines(new, new_meas, eps, np.flatnonzero(may_prove & new_meas.lines_due))
            proof = may_prove & (new_meas.line_ratio >= GMSK_LINE_RATIO)
            if proof.any():
                cut = np.zeros(parts.m, dtype=bool)
                cut[parent[proof]] = True
                pieces = np.flatnonzero(cut[parent])
                self._look_for_lines(new, new_meas, eps, pieces[new_meas.lines_due[pieces]])
                keep = np.flatnonzero(~cut)
                parts = _Parts.concat([parts.take(keep), new.take(pieces)])
                meas = _Measured.concat([meas.take(keep), new_meas.take(pieces)])
        for _ in range(2):  # three neighbouring ARFCNs take two cuts
            split = self._split_in_frequency(parts, meas, eps)
            if split is None:
                break
            new, replaced = split
            keep = np.setdiff1d(np.arange(parts.m), replaced)
            parts = _Parts.concat([parts.take(keep), new])
            meas = _Measured.concat([meas.take(keep), self._measure_parts(new, eps)])
        return self._bursts(parts, meas)

    def _split_in_time(self, parts: _Parts, meas: _Measured, eps: list[_Epoch]) -> tuple[_Parts, IntArray] | None:
        """Cut merged GSM bursts of consecutive timeslots apart: the pieces, and the part each comes from.

        Two phones on consecutive timeslots of one ARFCN (or of neighbouring ones) leave only
        the guard period between their bursts: 8.25 bits, 30 µs between the -3 dB points
        (TS 45.002 §5.2.3), much less than a 107 µs frame, so the detection mask joins them.
        A region no wider than 1 MHz lasting k ≥ 2 timeslots (576.9 µs, §4.3.1) — or one
        slot, beside which its bounding box reaches a busy slot (a weak burst next to a
        strong one, whose edge change point stopped at the strong one) — is looked at
        where the slot boundaries must be, on the grid of its start. A slot is busy when the
        cells of its inner frames are 3 dB over the noise; around each boundary, the lowest
        10 µs mean of the band-filtered power within ±80 µs of it (a strong burst's measured
        start, the grid's anchor, can be tens of µs early) and the power of the two flanks,
        20 µs each from 30 µs either side of that gap. A boundary between two busy slots is
        cut when the gap is 3 dB below the weaker flank towards the noise, or 15 dB below the
        stronger (the band filter rings into the gap after a 35 dB burst; GMSK's envelope is
        constant, so only the guard period dips); one between a busy and an idle slot is cut
        too (the idle slot is dropped). A region one of whose busy boundaries shows no dip is
        left whole. The cut edges are the change points of the per-sample log-likelihood
        ratio either side of the gap; the region's outer edges are measured again on each
        end piece, with its own level. :meth:`_measure` keeps the cuts of a region only when
        a piece is a GSM normal burst with its GMSK lines: an LTE transmission (whole 1 ms
        subframes, no guard, no lines) is never cut.
        """
        rate = self.sample_rate_hz
        n = self.config.fft_size
        slot = _GSM_TIMESLOT_S * rate
        guard = _GSM_GUARD_S * rate
        length = meas.length
        hist_first = eps[0].first_frame
        origin = eps[0].sample_start  # the history is contiguous: frame f starts at origin + (f - hist_first)·n
        rect_start = origin + (parts.ra - hist_first) * n
        rect_end = origin + (parts.rb - hist_first) * n
        # the region may reach beyond the measured edges into a weak neighbour's slot (its rows
        # fell out of the rectangle, scored with the strong burst's SNR): one more slot each side
        # (a leftover of 1 - _SPLIT_LEFTOVER of a slot counts as a slot). An extra slot counts only
        # when busy (mostly it holds the painting's overhang): the cheap cell test first, so that a
        # lone burst costs no band filtering (and, for a single measured slot, only beside a burst
        # that shows GMSK lines: a cut stands only if a piece proves GSM, and a weak neighbour piece
        # seldom can); the slots before and after are probed in one pass
        g = self.config.bins_per_cell
        k, before, after, eligible, probe, first, probe_lo, probe_hi, n_before = split_kernels.slot_candidates(
            meas.t0, length, origin + (parts.box_r0 - hist_first) * n, origin + (parts.box_r1 - hist_first) * n,
            meas.bandwidth, meas.total, parts.truncated, parts.t0_fixed, parts.t1_fixed, meas.line_ratio, slot, guard,
            1.0 - self._SPLIT_LEFTOVER, self._SPLIT_MAX_BANDWIDTH_HZ, self._SPLIT_MAX_SLOTS, GMSK_LINE_RATIO,
            parts.lo, parts.hi, g)
        if probe.size:
            idle = np.flatnonzero(~(self._slot_snr(eps, first, slot, probe_lo, probe_hi, hist_first, origin)
                                    > self._SPLIT_ON_SNR))
            before[probe[idle[idle < n_before]]] = 0
            after[probe[idle[idle >= n_before]]] = 0
        total = k + before + after
        candidates = np.flatnonzero(eligible & (total >= 2))
        if not candidates.size:
            return None
        width = self._SPLIT_WINDOW
        half = width // 2
        # the slot grid of each candidate (split_kernels.slot_grid): boundary b, between slots
        # j - 1 and j of region owner[b] (slot j starts at t0 + j·slot), centred on its guard period
        n_slots = total[candidates]
        before_c = before[candidates]
        k_c = k[candidates]
        owner, j, centre, first_bound, slot_first, slot_start = split_kernels.slot_grid(
            meas.t0[candidates], k_c, before_c, n_slots, slot, guard / 2)
        parent = candidates[owner]
        slot_snr = self._slot_snr(eps, slot_start, slot, np.repeat(parts.lo[candidates] // g, n_slots),
                                  np.repeat(parts.hi[candidates] // g, n_slots), hist_first, origin)
        # a slot is busy when the normalized cells of its inner frames, over the region's band,
        # are 3 dB over the noise and within 20 dB of the strongest slot (a 20 µs flank is too
        # noisy to say, and rings after a strong burst); the slots beyond the measured part
        # matter only when busy: an idle one there is the painting's overhang, and the measured
        # edge stands (split_kernels.slot_states)
        slot_on, on_left, on_right, busy, step = split_kernels.slot_states(
            slot_snr, slot_first, n_slots, owner, j, before_c, k_c, self._SPLIT_ON_SNR, self._SPLIT_ON_RELATIVE)
        # only a boundary between two busy slots (cut if it dips) or a step between a busy and
        # an idle slot (cut) is band-filtered: one between two idle slots decides nothing
        looked = np.flatnonzero(busy | step)
        if not looked.size:
            return None
        lp = parent[looked]
        noise_cell = self._noise_cells(parts.floor[lp]) / self._window_power  # of a rectangular frame
        usable = self._usable_bins()
        l_centre = centre[looked]
        energy, sigma2 = self._band_energy(eps, l_centre - half, width, parts.lo[lp], parts.hi[lp], noise_cell, usable)
        # the gap: the lowest 10 µs mean within ±80 µs of the boundary; the flanks, 20 µs each
        # starting 30 µs either side of the gap found (a strong burst's start, and so the slot
        # grid, can be off by tens of µs)
        search = round(self._SPLIT_SEARCH_S * rate)
        gap, gap_centre, left, right = split_kernels.slot_gaps(
            energy, sigma2, half - search, half + search - self._SPLIT_GAP, self._SPLIT_GAP, self._SPLIT_FLANK,
            round(self._SPLIT_FLANK_OFFSET_S * rate))
        dip = np.zeros(owner.size, dtype=bool)
        dip[looked] = ((gap < self._SPLIT_DIP * np.minimum(left, right))
                       | (gap < self._SPLIT_DEEP_DIP * np.maximum(left, right)))
        cut = (busy & dip) | step
        undipped = np.bincount(owner, weights=busy & ~dip, minlength=candidates.size) > 0
        n_cuts = np.bincount(owner, weights=cut, minlength=candidates.size)
        # change points either side of the gap (the left piece's end, the right piece's start);
        # a side without a dip (a step to or from an idle slot) is searched over its half window
        w_left, off_left = _llr_weights(np.maximum(left, 0.0) / sigma2)
        w_right, off_right = _llr_weights(np.maximum(right, 0.0) / sigma2)
        ends, starts = split_kernels.change_points(energy, w_left / sigma2, off_left, w_right / sigma2, off_right,
                                                   np.where(busy[looked], gap_centre, half))
        left_end = np.zeros(owner.size, dtype=np.int64)
        right_start = np.zeros(owner.size, dtype=np.int64)
        left_end[looked] = l_centre - half + ends
        right_start[looked] = l_centre - half + starts
        # the runs of busy slots between cuts, one piece each (split_kernels.time_pieces): its part,
        # start and stop (-1 where the end piece is measured afresh), SNR, bounding box at either end
        idx, t0, t1, piece_snr, box_first, box_last = split_kernels.time_pieces(
            np.flatnonzero(~undipped & (n_cuts > 0)), candidates, first_bound, slot_first, n_slots, slot_on, slot_snr,
            cut, on_left, on_right, left_end, right_start, centre, before, after)
        if not idx.size:
            return None
        # frames: whole frames inside a cut piece (its neighbour's energy stays out of its
        # spectrum); an end piece keeps the region's rectangle edge there, or its bounding
        # box's when it holds a busy slot beyond the measured part
        ra = np.where(t0 >= 0, hist_first + -((origin - t0) // n), np.where(box_first, parts.box_r0[idx], parts.ra[idx]))
        rb = np.where(t1 >= 0, hist_first + (t1 - origin) // n, np.where(box_last, parts.box_r1[idx], parts.rb[idx]))
        short = rb <= ra
        ra = np.where(short & (t0 >= 0), hist_first + (t0 - origin) // n, ra)
        rb = np.maximum(np.where(short & (t1 >= 0), hist_first + -((origin - t1) // n), rb), ra + 1)
        extent = (np.where(t1 >= 0, t1, origin + (rb - hist_first) * n)
                  - np.where(t0 >= 0, t0, origin + (ra - hist_first) * n))
        keep = np.flatnonzero(extent >= self._SPLIT_MIN_S * rate)  # shorter pieces are dropped
        idx = idx[keep]
        new = parts.take(idx)
        new.ra = ra[keep]
        new.rb = rb[keep]
        new.t0_fixed = t0[keep]
        new.t1_fixed = t1[keep]
        new.split = np.ones_like(idx)
        new.snr = np.maximum(piece_snr[keep], 1e-3)
        new.lo, new.hi = self._piece_bands(new, eps)
        new.n_cells = np.maximum(1, parts.n_cells[idx] * extent[keep] // np.maximum(rect_end - rect_start, 1)[idx])
        return new, idx

    def _split_in_frequency(self, parts: _Parts, meas: _Measured, eps: list[_Epoch]) -> tuple[_Parts, IntArray] | None:
        """Cut simultaneous GSM bursts on neighbouring ARFCNs apart: new parts, and which parts they replace.

        Two phones on ARFCNs 200 kHz apart in the same timeslot overlap in frequency (a GMSK
        burst's 99 % band is ~250 kHz) and the mask joins them into one ~450 kHz region. The
        square of a GMSK burst holds a pair of lines R_b apart around twice its carrier
        (:func:`gmsk_line_frequencies`), whatever the other burst does; a region 300 kHz - 1 MHz
        wide and no longer than a (strong) GSM burst showing two such pairs 200 kHz apart (the ARFCN
        spacing, ± 30 kHz) is cut at the lowest point of its spectrum between the two
        carriers. The stronger pair must look like GMSK (ratio ≥ 12.5, where SC-FDMA stays
        below); the other, whose lower line shares the band with the cross term of the two
        bursts, needs only ``_FSPLIT_SECOND_RATIO`` (a lone GMSK burst shows under 3 there).
        """
        rate = self.sample_rate_hz
        candidates = np.flatnonzero(
            (meas.bandwidth >= self._FSPLIT_MIN_BANDWIDTH_HZ) & (meas.bandwidth <= self._SPLIT_MAX_BANDWIDTH_HZ)
            & (meas.length >= 200e-6 * rate) & (meas.length <= self._FSPLIT_MAX_S * rate) & (meas.total > 0)
            & ~parts.truncated)
        if not candidates.size:
            return None
        g = self.config.bins_per_cell
        span = self._GMSK_SPAN
        length = meas.length[candidates]
        take = np.minimum(span, length)
        chunk = self._gather(eps, meas.t0[candidates] + (length - take) // 2, span)
        chunk[np.arange(span)[None, :] >= take[:, None]] = 0.0
        spectrum = self._fft.fft(chunk)
        lo_hz = self._bin_freqs_hz[parts.lo[candidates]] - g * self.bin_hz
        hi_hz = self._bin_freqs_hz[parts.hi[candidates] - 1] + g * self.bin_hz
        # the band moved to 0 Hz (its square then stays inside ± rate / 2) and filtered
        step_hz = rate / span
        shift = np.rint(0.5 * (lo_hz + hi_hz) / step_hz).astype(np.int64)
        rel = np.fft.fftfreq(span, d=1.0 / span).astype(np.int64)
        spectrum = split_kernels.roll_rows(spectrum, shift)
        rel_lo = lo_hz - shift * step_hz
        rel_hi = hi_hz - shift * step_hz
        spectrum *= ((rel[None, :] * step_hz >= rel_lo[:, None]) & (rel[None, :] * step_hz <= rel_hi[:, None])).astype(np.float32)
        filtered = self._fft.ifft(spectrum)
        f1, r1, f2, r2 = gmsk_carrier_pair(filtered, rate, rel_lo, rel_hi, _GSM_CHANNEL_SPACING_HZ,
                                           self._FSPLIT_SPACING_TOLERANCE_HZ, self._fft)
        f1 = f1 + shift * step_hz
        f2 = f2 + shift * step_hz
        two = (np.maximum(r1, r2) >= self._FSPLIT_FIRST_RATIO) & (np.minimum(r1, r2) >= self._FSPLIT_SECOND_RATIO)
        if not two.any():
            return None
        chosen = candidates[two]
        f_lo = np.minimum(f1, f2)[two]
        f_hi = np.maximum(f1, f2)[two]
        # the valley of the (smoothed) excess spectrum between the two carriers
        positive = meas.positive[chosen]
        smooth = positive.copy()
        smooth[:, 1:-1] = (positive[:, :-2] + positive[:, 1:-1] + positive[:, 2:]) / 3.0
        between = ((self._bin_freqs_hz[None, :] > f_lo[:, None]) & (self._bin_freqs_hz[None, :] < f_hi[:, None])
                   & (self._grid[None, :] > parts.lo[chosen][:, None]) & (self._grid[None, :] < parts.hi[chosen][:, None] - 1))
        inside = between.any(axis=1)
        chosen, f_lo, f_hi, smooth, between = chosen[inside], f_lo[inside], f_hi[inside], smooth[inside], between[inside]
        if not chosen.size:
            return None
        cut = np.argmin(np.where(between, smooth, np.inf), axis=1)
        low = parts.take(chosen)
        high = parts.take(chosen)
        low.hi = np.maximum(cut, low.lo + 1)
        low.margin_hi = np.zeros_like(low.margin_hi)
        high.lo = np.minimum(cut, high.hi - 1)
        high.margin_lo = np.zeros_like(high.margin_lo)
        low.split = np.full_like(low.split, 2)
        high.split = np.full_like(high.split, 2)
        low.carrier_hz = f_lo
        high.carrier_hz = f_hi
        share = (cut - parts.lo[chosen]) / np.maximum(parts.hi[chosen] - parts.lo[chosen], 1)
        low.n_cells = np.maximum(1, np.rint(parts.n_cells[chosen] * share).astype(np.int64))
        high.n_cells = np.maximum(1, parts.n_cells[chosen] - low.n_cells)
        return _Parts.concat([low, high]), chosen

    def _slot_snr(self, eps: list[_Epoch], slot_start: npt.NDArray[np.float64], slot: float, c_lo: IntArray,
                  c_hi: IntArray, hist_first: int, origin: int) -> npt.NDArray[np.float64]:
        """Mean SNR per cell over columns [c_lo, c_hi) of the frames inside the middle 80 % of
        each timeslot starting at sample ``slot_start``."""
        n = self.config.fft_size
        f_a = hist_first + np.ceil((slot_start + 0.1 * slot - origin) / n).astype(np.int64)
        f_b = np.maximum(hist_first + np.floor((slot_start + 0.9 * slot - origin) / n).astype(np.int64), f_a + 1)
        return self._cell_means(eps, f_a, f_b, c_lo, c_hi) / self.config.bins_per_cell - 1.0

    def _frame_sums(self, eps: list[_Epoch], f_a: IntArray, f_b: IntArray) -> npt.NDArray[np.float64]:
        """Sum of the normalized cells of frames [f_a, f_b) of each row, (k, n_columns), frames
        added in time order (neutral where the history has no cells): the epochs' cells are
        read in place, one kernel call per stretch of frames (:func:`dsp.split_kernels.add_frames`)."""
        g = float(self.config.bins_per_cell)
        sums = np.zeros((f_a.shape[0], self.n_columns))
        if not f_a.size:
            return sums
        lo = int(f_a.min())
        hi = int(f_b.max())
        none = np.zeros((0, self.n_columns), dtype=np.float32)
        at = lo  # frames before ``at`` are added
        for ep in eps:
            if at >= hi:
                break
            if ep.end_frame <= at:
                continue
            if ep.first_frame > at:  # before the history, or between epochs: neutral
                split_kernels.add_frames(none, at, ep.first_frame, g, f_a, f_b, sums)
            split_kernels.add_frames(none if ep.cells is None else ep.cells, ep.first_frame, ep.end_frame, g,
                                     f_a, f_b, sums)
            at = ep.end_frame
        if at < hi:
            split_kernels.add_frames(none, at, hi, g, f_a, f_b, sums)
        return sums

    def _cell_means(self, eps: list[_Epoch], f_a: IntArray, f_b: IntArray, c_lo: IntArray, c_hi: IntArray,
                    ) -> npt.NDArray[np.float64]:
        """Mean normalized cell over frames [f_a, f_b) and columns [c_lo, c_hi) of each row (neutral
        where the history has no cells)."""
        return split_kernels.band_means(self._frame_sums(eps, f_a, f_b), c_lo, c_hi, f_b - f_a)

    def _piece_bands(self, parts: _Parts, eps: list[_Epoch]) -> tuple[IntArray, IntArray]:
        """The columns of each part's band that its own frames fill: the maximum-sum segment of
        the per-column log-likelihood ratio of the normalized cells over frames [ra, rb), inside
        [lo, hi). A piece of a split region keeps only its own ARFCN, not its neighbours'."""
        g = self.config.bins_per_cell
        counts = parts.rb - parts.ra
        c0 = parts.lo // g
        weight, off = _llr_weights(parts.snr)
        a, b = split_kernels.column_segments(self._frame_sums(eps, parts.ra, parts.rb), c0, parts.hi // g, weight,
                                             counts * g * off)
        return (c0 + a) * g, (c0 + b) * g

    def _frame_power(self, eps: list[_Epoch], first: IntArray, n_present: IntArray,
                     ) -> tuple[FloatArray, FloatArray, IntArray]:
        """|X_k|² (shifted order) and the largest |I| or |Q| of frames ``[first[i], first[i] + n_present[i])``
        of every part, one part after the other, (k, fft_size) and (k,), and the row where each part's frames begin.

        The peaks were taken once per frame by :meth:`_power_cells`, which reads every sample anyway;
        one compiled copy per epoch holding any of the frames (:func:`dsp.split_kernels.part_frames`)."""
        row0 = np.cumsum(n_present) - n_present
        n_total = int(row0[-1] + n_present[-1]) if row0.size else 0
        power = np.empty((n_total, self.config.fft_size), dtype=np.float32)
        peaks = np.empty(n_total, dtype=np.float32)
        if n_total:
            lo = int(first.min())
            hi = int((first + n_present).max())
            for ep in eps:
                if ep.first_frame < hi and ep.end_frame > lo:
                    split_kernels.part_frames(ep.power, ep.peak, ep.first_frame, first, n_present, row0, power, peaks)
        return power, peaks, row0

    def _measure_parts(self, parts: _Parts, eps: list[_Epoch], lines: bool = True) -> _Measured:
        """Measure rectangles: edges, spectrum, power; vectorized over the batch.

        Edges (bursts of 3 frames or more): the burst's in-band energy in the two frames
        around each edge, minus noise, over its plateau (the mean of the inner frames) is
        the share of those frames' window energy the burst covers; inverting the window's
        cumulative energy gives the edge to a few samples with no extra FFT; the sample-level
        change point of :meth:`_refine_edges` then places it within that frame (shorter
        bursts: within two frames of the rectangle's edges). Edges a split has placed
        (``t0_fixed``/``t1_fixed``) are kept. Parts :meth:`_bursts` will drop
        (:meth:`_dropped`) keep the frame-level edges and get no GMSK line search.
        ``lines=False``: the GMSK lines are left for :meth:`_look_for_lines` (``lines_due``).
        """
        cfg = self.config
        n = cfg.fft_size
        m = parts.m
        ra, rb, lo, hi, snr = parts.ra, parts.rb, parts.lo, parts.hi, parts.snr
        noise_cell = self._noise_cells(parts.floor)  # E|X_k|² of noise, per cell
        usable = self._usable_bins()
        hist_first = eps[0].first_frame
        hist_end = eps[-1].end_frame
        lo_m = lo - parts.margin_lo  # the band with a margin: the share of a burst's energy
        hi_m = hi + parts.margin_hi  # inside it must not depend on the data a frame carries
        lo_w = np.maximum(lo_m, 0)
        hi_w = np.minimum(hi_m, n)
        n_rows = rb - ra
        # every frame from ra-1 to rb of every burst that the history holds, gathered once
        first = np.minimum(np.maximum(ra - 1, hist_first), hist_end)  # np.clip, without its dispatch cost
        n_present = np.minimum(np.maximum(rb + 1, hist_first), hist_end) - first
        power, peaks, row0 = self._frame_power(eps, first, n_present)
        # per burst in one pass: band energy of the edge frames (ra-1, ra, rb-1, rb; the band's
        # noise where the history has none) and mean of the inner ones, mean spectrum, I/Q peak
        edge_energy, interior, inner_count, spectra, clip_peak, wide_noise, noise_band = measure_kernels.frame_sums(
            power, peaks, row0, n_present, first - ra, n_rows, lo_w, hi_w, lo, hi, noise_cell, cfg.bins_per_cell)
        # the history is contiguous (a gap resets it): frame f starts at this sample
        frame_start = eps[0].sample_start + (ra - hist_first) * n
        t0, t1, long = split_kernels.edge_estimates(edge_energy, interior, inner_count, wide_noise, n_rows,
                                                    frame_start, n, self._neg_suffix2, self._prefix2)
        below, above, inside = self._guard_fill if self._guard_fill is not None else (_NO_BINS,) * 3
        positive = np.empty((m, n))
        total, centroid, k_lo, k_hi, flatness = measure_kernels.spectrum_stats(
            spectra, noise_cell, cfg.bins_per_cell, usable, below, above, inside, lo_m, hi_m, self._bin_freqs_hz,
            positive)
        # parts _bursts will drop (a third of a busy band's: slivers of signals straddling the
        # band edge) keep the frame-level edges: their length only feeds the carrier mask
        dropped = self._dropped(parts.snr, (hi - lo) * self.bin_hz, (k_hi - k_lo + 1) * self.bin_hz, total)
        # sample-level change point: around the estimates above for long bursts, around the
        # rectangle's frame edges (± 2 frames) for bursts too short to have a plateau
        free = ((parts.t0_fixed < 0) | (parts.t1_fixed < 0)) & ~dropped
        for sel, width in ((long, n), (~long, 4 * n)):
            idx = np.flatnonzero(sel & free)
            if idx.size:
                rect_noise = noise_cell[idx] / self._window_power  # of a rectangular frame
                t0[idx], t1[idx] = self._refine_edges(eps, t0[idx], t1[idx], width, lo[idx], hi[idx],
                                                      rect_noise, usable, snr[idx], one_sided=width == n)
        # burst power: the mean spectrum is over whole rectangle frames; rescaled by the
        # fraction of those frames the burst fills (split_kernels.part_levels)
        to_power = 1.0 / (n * n * self._window_power)  # |X_k|² of a windowed frame -> FS² per sample
        t0, length, bandwidth, signal_power, noise_density, gmsk = split_kernels.part_levels(
            t0, t1, parts.t0_fixed, parts.t1_fixed, n_rows, n, total, k_lo, k_hi, noise_band, lo, hi, self.bin_hz,
            to_power, self._GMSK_MAX_BANDWIDTH_HZ, 200e-6 * self.sample_rate_hz)
        meas = _Measured(t0=t0, length=length, centroid=centroid, bandwidth=bandwidth, signal_power=signal_power,
                         noise_density=noise_density, clip_peak=clip_peak, flatness=flatness,
                         line_ratio=np.full(m, np.nan), total=total, positive=positive, lines_due=gmsk & ~dropped)
        if lines:
            self._look_for_lines(parts, meas, eps, np.flatnonzero(meas.lines_due))
        return meas

    def _look_for_lines(self, parts: _Parts, meas: _Measured, eps: list[_Epoch], idx: IntArray) -> None:
        """GMSK lines of the measured parts ``idx`` (whose lines are due), in place: their line
        ratio, and the line pair's carrier as centre where the lines are strong. Then, for the
        parts with no lines still due, a frequency cut's carrier as centre where the piece's own
        lines are blurred by its neighbour's cross term (a centroid would lean towards the cut).

        Row by row (the transforms are the same in any batch): parts' lines may be looked
        for in several calls, with the same results as in one.
        """
        if idx.size:
            offsets, ratios = self._gmsk_lines(eps, meas.t0[idx], meas.length[idx], parts.lo[idx], parts.hi[idx],
                                               meas.centroid[idx])
            meas.line_ratio[idx] = ratios
            strong = ratios >= GMSK_LINE_RATIO
            meas.centroid[idx[strong]] = offsets[strong]
            meas.lines_due[idx] = False
        if parts.split.any():
            found = ~np.isnan(parts.carrier_hz) & ~(meas.line_ratio >= GMSK_LINE_RATIO) & ~meas.lines_due
            meas.centroid[found] = parts.carrier_hz[found]

    def _dropped(self, snr: AnyFloatArray, rect_hz: AnyFloatArray, bandwidth_hz: AnyFloatArray, total: AnyFloatArray) -> BoolArray:
        """Parts :meth:`_bursts` drops whatever their edges: no power, or narrower than a phone's
        narrowest signal (``min_bandwidth_hz``: carriers) and not rescued."""
        narrow = (bandwidth_hz < self.config.min_bandwidth_hz) & ~self._rescued(snr, rect_hz, bandwidth_hz)
        return (total <= 0) | narrow

    def _rescued(self, snr: AnyFloatArray, rect_hz: AnyFloatArray, bandwidth_hz: AnyFloatArray) -> BoolArray:
        """Weak parts narrower than ``min_bandwidth_hz`` that are kept with their rectangle's width.

        The 99 % bandwidth of a weak burst is noise: near DC on an RTL-SDR a 180 kHz LTE
        allocation measured 47-94 kHz at 4 dB and was dropped as a carrier (Pd stuck at
        0.93-0.98 there). Under _BANDWIDTH_RELIABLE_SNR a rectangle as wide as a phone's
        narrowest signal is a signal, not a carrier."""
        return ((snr < self._BANDWIDTH_RELIABLE_SNR) & (rect_hz >= self._RESCUE_MIN_RECT_HZ)
                & (bandwidth_hz < self.config.min_bandwidth_hz))

    def _noise_cells(self, floor: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """E|X_k|² of noise of each bin of a cell from each part's cell floor, (m, n_columns), shifted
        order (divided by the window's power: of a rectangular frame). The kernels read bin ``k``'s
        at cell ``k // bins_per_cell`` (repeating it over the bins cost 1 % of a busy band)."""
        return floor / np.maximum(self.column_dofs, 1)

    def _usable_bins(self) -> BoolArray:
        """Bins outside the DC guard and the carrier mask (remade only when the mask changes)."""
        key = self.carrier_mask.tobytes()
        if key != self._usable_for:
            self._usable = ~self._guarded_shifted & np.repeat(~self.carrier_mask, self.config.bins_per_cell)
            self._usable_for = key
        return self._usable

    def _bursts(self, parts: _Parts, meas: _Measured) -> list[Burst]:
        """Burst records of measured parts; narrowband ones feed the carrier mask instead."""
        cfg = self.config
        g = cfg.bins_per_cell
        assert self._anchor_s is not None
        t0, length, centroid, bandwidth = meas.t0, meas.length, meas.centroid, meas.bandwidth
        signal_power, noise_density, clip_peak = meas.signal_power, meas.noise_density, meas.clip_peak
        flatness, line_ratio, total, lo, hi = meas.flatness, meas.line_ratio, meas.total, parts.lo, parts.hi
        dead = (length < 4) | (total <= 0)
        rect_hz = (hi - lo) * self.bin_hz
        bandwidth = np.where(self._rescued(parts.snr, rect_hz, bandwidth), rect_hz, bandwidth)
        narrow = ~dead & (bandwidth < cfg.min_bandwidth_hz)
        self.stats.rejected["no_power"] += int(dead.sum())
        self.stats.rejected["narrowband"] += int(narrow.sum())
        carriers = np.flatnonzero(narrow)
        if carriers.size:  # each adds its share of the window to its columns (at least one), in order
            c_lo = lo[carriers] // g
            c_hi = np.minimum(np.maximum(hi[carriers] // g, c_lo + 1), self.n_columns)
            n_cols = np.maximum(c_hi - c_lo, 0)
            first = np.cumsum(n_cols) - n_cols
            cols = np.repeat(c_lo - first, n_cols) + np.arange(int(n_cols.sum()))
            share = length[carriers] / self.sample_rate_hz / cfg.carrier_window_s
            np.add.at(self._carrier_occupancy, cols, np.repeat(share, n_cols))
        keep = np.flatnonzero(~dead & ~narrow)
        if not keep.size:
            return []
        rate = self.sample_rate_hz
        power = signal_power[keep]
        noise_power = noise_density[keep] * bandwidth[keep]
        power_dbfs = 10.0 * np.log10(np.maximum(power, 1e-30))
        snr_db = 10.0 * np.log10(np.maximum(power / noise_power, 1e-30))
        noise_dbfs_hz = 10.0 * np.log10(np.maximum(noise_density[keep], 1e-30))
        starts = t0[keep]
        t_start = (self._anchor_s + starts / rate).tolist()
        ratios = line_ratio[keep]
        lines = [None if math.isnan(r) else r for r in ratios.tolist()]
        names = ("", "time", "frequency")
        n_kept = keep.size
        # the values of every burst in Burst's field order, one column each (constants repeated)
        columns = zip(
            t_start, (length[keep] / rate).tolist(), (self.center_freq_hz + centroid[keep]).tolist(),
            bandwidth[keep].tolist(), power_dbfs.tolist(), snr_db.tolist(), noise_dbfs_hz.tolist(),
            starts.tolist(), length[keep].tolist(), (clip_peak[keep] >= cfg.clip_level).tolist(),
            (parts.rb - parts.ra)[keep].tolist(), parts.n_cells[keep].tolist(), flatness[keep].tolist(), lines,
            itertools.repeat(self.center_freq_hz, n_kept), parts.truncated[keep].tolist(),
            itertools.repeat(self._gain_db, n_kept), [names[x] for x in parts.split[keep].tolist()], strict=True)
        return list(map(_burst_from_values, columns))

    def _gmsk_lines(self, eps: list[_Epoch], t0: npt.NDArray[np.int64], length: npt.NDArray[np.int64],
                    lo: npt.NDArray[np.int64], hi: npt.NDArray[np.int64],
                    guesses: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """GMSK line frequency of narrow bursts: central samples, band-filtered and decimated by 4."""
        span = self._GMSK_SPAN
        g = self.config.bins_per_cell
        take = np.minimum(span, length)
        m = t0.shape[0]
        self._gather_into(eps, t0 + (length - take) // 2, take, self._fft.rows(m, span))  # zero past ``take``
        spectrum = self._fft.forward(m, span)
        # keep the band (± one column), centred on its middle, in a span/4-point spectrum;
        # squaring doubles offsets from that centre, so a burst far from the middle of a wide
        # band (a piece of a split region) is centred on its own guess instead: its lines
        # would otherwise alias
        n_out = span // 4
        centre_bin = ((lo + hi) // 2).astype(np.int64)  # shifted grid bin
        band_mid_hz = self._bin_freqs_hz[centre_bin]
        off_centre = np.abs(guesses - band_mid_hz) > self._GMSK_RECENTRE_HZ
        shift_hz = np.where(off_centre, guesses, band_mid_hz)
        step_hz = self.sample_rate_hz / span
        offset_bins = np.round(shift_hz / step_hz).astype(np.int64)
        rel = np.fft.fftfreq(n_out, d=1.0 / n_out).astype(np.int64)  # -n_out/2 .. n_out/2-1
        half_band = ((hi - lo) / 2 + g) * self.bin_hz
        band_rel_hz = np.where(off_centre, band_mid_hz - offset_bins * step_hz, 0.0)
        narrow = self._fft.spectra(m, n_out)
        scale, prescaled = _inverse_scale(n_out)
        measure_kernels.gmsk_band(spectrum, offset_bins, rel, rel * step_hz, band_rel_hz, half_band, scale, narrow)
        filtered = self._fft.inverse(m, n_out, prescaled)
        offsets, ratios = gmsk_line_frequencies(filtered, self.sample_rate_hz / 4.0,
                                                guesses - offset_bins * step_hz, self._fft)
        return offsets + offset_bins * step_hz, ratios

    def _band_energy(self, eps: list[_Epoch], firsts: IntArray, width: int, lo: IntArray, hi: IntArray,
                     noise_cell: npt.NDArray[np.float64], usable: BoolArray) -> tuple[FloatArray, npt.NDArray[np.float64]]:
        """Sample power of windows ``[first, first + width)`` band-filtered to grid bins ``[lo, hi)``,
        (k, width), and the noise power σ² per sample in that band, (k,).

        ``noise_cell``: E|X_k|² of noise of a cell's bins for a rectangular frame, (k, n_columns).
        """
        filtered = self._band_filtered(eps, firsts, width, lo, hi, usable)[:, :width]
        energy = np.square(filtered.real) + np.square(filtered.imag)
        return energy, self._band_sigma2(noise_cell, lo, hi, usable, 2 * width)

    def _band_filtered(self, eps: list[_Epoch], firsts: IntArray, width: int, lo: IntArray, hi: IntArray,
                       usable: BoolArray) -> ComplexArray:
        """Windows ``[first, first + width)`` band-filtered to grid bins ``[lo, hi)`` (row r to part
        ``r % len(lo)``), (k, 2·width): the first ``width`` samples of each row are the filtered window.

        Zero-padded FFT (a linear, not circular, filter) keeping the FFT bins that fall in
        the band's usable grid bins (the others are zeroed in place, not multiplied by a mask).
        """
        n_fft = 2 * width
        k = firsts.shape[0]
        padded = self._fft.rows(k, n_fft)  # filtered in place: valid until the next filter of this size
        self._gather_into(eps, firsts, np.full(k, width, dtype=np.int64), padded)
        spectrum = self._fft.forward(k, n_fft)
        scale, prescaled = _inverse_scale(n_fft)
        measure_kernels.keep_band_bins(spectrum, self._fft_grid_bins(n_fft), np.ascontiguousarray(lo, dtype=np.int64),
                                       np.ascontiguousarray(hi, dtype=np.int64), usable, scale)
        return self._fft.inverse(k, n_fft, prescaled)

    def _fft_grid_bins(self, n_fft: int) -> IntArray:
        """Shifted grid bin of each natural-order bin of an ``n_fft``-point FFT (cached, with their counts)."""
        k = self._edge_bins.get(n_fft)
        if k is None:
            k = self._grid_bins(n_fft)
            self._edge_bins[n_fft] = k
            self._edge_counts[n_fft] = np.bincount(k, minlength=self.config.fft_size)
        return k

    def _band_sigma2(self, noise_cell: npt.NDArray[np.float64], lo: IntArray, hi: IntArray, usable: BoolArray,
                     n_fft: int) -> npt.NDArray[np.float64]:
        """Noise power σ² per sample of :meth:`_band_filtered` rows: each kept grid bin's noise
        (its cell's ``noise_cell``, E|X_k|² of a rectangular frame) times the FFT bins that map to it."""
        self._fft_grid_bins(n_fft)
        per_grid = (self._edge_counts[n_fft] * usable).astype(np.float64)
        return measure_kernels.band_noise(np.ascontiguousarray(noise_cell, dtype=np.float64), self.config.bins_per_cell,
                                          per_grid, np.ascontiguousarray(lo, dtype=np.int64),
                                          np.ascontiguousarray(hi, dtype=np.int64), float(self.config.fft_size * n_fft))

    def _refine_edges(self, eps: list[_Epoch], s0: npt.NDArray[np.int64], s1: npt.NDArray[np.int64], width: int,
                      lo: npt.NDArray[np.int64], hi: npt.NDArray[np.int64], noise_cell: npt.NDArray[np.float64],
                      usable: BoolArray, snr: npt.NDArray[np.float64],
                      one_sided: bool) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Start and stop samples by the change-point rule on the band-filtered power.

        Around each estimated edge (``s0`` starts, ``s1`` stops) a window of ``width``
        samples is band-filtered to the burst's columns (:meth:`_band_filtered`); the
        maximum-sum segment of the per-sample log-likelihood ratio of exponential power —
        noise σ² from the floor, burst-to-noise ratio ``snr`` — gives the edge at sample
        resolution. ``one_sided``: the bursts are longer than the windows (each window holds
        one edge): the best start minimises the LLR prefix, the best stop maximises it.
        ``noise_cell``: E|X_k|² of noise of a cell's bins for a rectangular frame, (m, n_columns).
        The power, the LLR and its prefix sums are formed in one compiled pass per window
        (:func:`dsp.measure_kernels.edge_change_points`), never stored.
        """
        m = s0.shape[0]
        firsts = np.concatenate((s0 - width // 2, s1 - width // 2))
        filtered = self._band_filtered(eps, firsts, width, lo, hi, usable)  # rows r, r + m: part r
        sigma2 = self._band_sigma2(noise_cell, lo, hi, usable, 2 * width)
        w, off = _llr_weights(snr)
        weight = w / sigma2
        a, b = measure_kernels.edge_change_points(filtered, width, np.concatenate((weight, weight)),
                                                  np.concatenate((off, off)), one_sided)
        a, b = measure_kernels.half_power_edges(filtered, width, a, b, np.concatenate((sigma2, sigma2)), one_sided,
                                                self._HALF_POWER_MIN_SNR, self._HALF_POWER_HALF_SAMPLES,
                                                self._HALF_POWER_MAX_SHIFT_SAMPLES)
        t0 = firsts[:m] + a[:m]
        t1 = firsts[m:] + b[m:]
        bad = t1 - t0 < 4
        t0 = np.where(bad, s0, t0)
        t1 = np.where(bad, s1, t1)
        return t0.astype(np.int64), t1.astype(np.int64)
