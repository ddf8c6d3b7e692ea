"""Sensitivity: probability of detection of single bursts versus SNR, beside the ideal energy detector.

What is measured
    For each waveform (a GSM normal burst; LTE PUSCH on 1, 4 and 12 RB; a PUCCH slot;
    a PRACH preamble) and each SNR point, ``n_trials`` independent bursts are added to
    noise at random start times (uniform over a 1 ms span, so every alignment with the
    detector's 106.7 µs frames occurs) and random centre frequencies (anywhere in the
    2.4 MHz band that keeps the burst clear of the DC guard and 100 kHz from the band
    edges; only the 12 RB allocation, 2.16 MHz wide, has to cross DC). Trials are laid
    end to end in one stream per waveform, in shuffled SNR order, each in its own window:
    1 ms of noise, the burst's 1 ms start span, the burst, 2 ms of noise, so two bursts
    are always more than 2 ms apart (more than the longest box template, 1 ms). The
    stream opens with ``noise_window_s`` of noise so the noise floor has settled. A trial
    is *detected* when a detection overlaps the burst in time (its sample span) and in
    frequency (``freq_hz ± bandwidth_hz/2`` against the burst's nominal band). Detections
    that overlap no burst are counted as spurious.

Pd 0.9 point
    A probit curve fitted by maximum likelihood to the SNR points within 2.5 dB of the
    rough crossing (:func:`bench.common.probit_crossing`), with a 95 % parametric
    bootstrap interval. Straight lines between the 1 dB points (the JSON's ``_linear``
    figures, used before) read the ideal detector's own curves 0 to 0.19 dB too high.

SNR
    Burst power over the noise power in the burst's nominal bandwidth ``W``: 200 kHz for
    GSM (as the issue asks), ``n_rb × 180 kHz`` for PUSCH and PUCCH, 1.08 MHz for PRACH.
    Burst power is the burst's energy over its nominal duration ``T`` (GSM: the 148 bits
    of the -3 dB width, 546.5 µs; LTE: the subframe, slot or preamble). The figure of
    merit, the SNR gap at Pd = 0.9, does not depend on the choice of ``W``.

Two noise models
    ``gaussian``: white complex Gaussian noise added in complex64 at the detector's
    input, no quantization. ``rtl_sdr``: the burst as an incident field through
    :class:`sdr.receiver.RtlSdrModel` at 28 dB of gain (thermal and ADC noise, DC
    offset, I/Q imbalance, 8-bit quantization) and back through
    :func:`dsp.iq.cu8_to_complex64`; the SNR then refers to the model's whole noise floor.

Theory (H. Urkowitz, "Energy detection of unknown deterministic signals", Proc. IEEE
55(4), 1967)
    The ideal energy detector knows the burst's time-frequency slot ``T × W`` exactly and
    sums ``|x|²`` over it: ``TW`` independent complex samples. Normalized by the noise
    power per sample, the sum is Gamma(TW, 1) under noise alone (χ² with 2TW degrees of
    freedom, halved) and half a non-central χ²(2TW, λ = 2·TW·SNR) with the burst, all of
    whose energy it collects. Its threshold is set for the *same false-alarm budget per
    hour*: it tests every slot of a tiling of the receiver band by non-overlapping
    ``T × W`` rectangles, ``(3600/T)·(fs/W)`` slots an hour, with a per-slot Pfa such
    that the expected false alarms are :data:`THEORY_FA_PER_HOUR` (1 per hour, the
    issue's ceiling; the false-alarm benchmark measures what the detector really does).
    A budget above the detector's real rate only makes the ideal detector better, so the
    reported gap is not flattering. The JSON also gives the gap against an ideal detector
    run at the detector's own per-test Pfa (``DetectorConfig().pfa``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize, stats

from bench.common import (
    CENTER_FREQ_HZ,
    RESULTS_DIR,
    SAMPLE_RATE_HZ,
    crossing,
    feed,
    header,
    isotonic,
    probit_crossing,
    pyplot,
    save_figure,
    write_json,
)
from dsp import gsm, lte
from dsp.detector import Burst, BurstDetector, DetectorConfig
from dsp.iq import cu8_to_complex64
from dsp.waveform import TxBurst, render_burst
from sdr.receiver import ReceiverConfig, RtlSdrModel, dbfs_to_dbm

log = logging.getLogger(__name__)

THEORY_FA_PER_HOUR = 1.0  # false-alarm budget of the ideal detector (the ceiling)
PD_TARGET = 0.9
EDGE_MARGIN_HZ = 100e3  # keep bursts this far inside the band edges
NOISE_POWER = 1e-3  # gaussian model: total noise power over the band (-30 dBFS)
RTL_GAIN_DB = 28.0
LTE_CARRIER_N_RB = 25  # a 5 MHz carrier; only the allocation reaches the receiver band
_LEAD_GAP_S = 1e-3  # noise before the start span of every trial window
_START_SPAN_S = 1e-3  # the burst starts uniformly in this span
_TAIL_GAP_S = 2e-3  # noise after the burst
_CHUNK_TRIALS = 64  # trials generated and fed per block
VARIANTS = ("gaussian", "rtl_sdr")
_MAX_LISTED_MISSES = 50


@dataclass(frozen=True)
class Waveform:
    """One burst type: its nominal slot (for SNR and theory) and how to build it at a frequency."""

    name: str
    label: str
    duration_s: float  # nominal T
    bandwidth_hz: float  # nominal W, also the SNR bandwidth
    build: Callable[[float, np.random.Generator], TxBurst]  # (centre freq Hz, rng) -> burst at t = 0

    @property
    def time_bandwidth(self) -> float:
        return self.duration_s * self.bandwidth_hz


def _gsm_normal(freq_hz: float, rng: np.random.Generator) -> TxBurst:
    return TxBurst(t_start_s=0.0, duration_s=gsm.NORMAL_BURST_DURATION_S, freq_hz=freq_hz,
                   bandwidth_hz=gsm.BANDWIDTH_HZ, tech="gsm", kind="gsm_normal",
                   params={"tsc": int(rng.integers(8))})


def _carrier_for(freq_hz: float, start_rb: int, n_rb: int) -> float:
    """Carrier centre that puts RBs ``start_rb..start_rb+n_rb-1`` centred on ``freq_hz``."""
    return freq_hz - (start_rb + n_rb / 2 - LTE_CARRIER_N_RB / 2) * lte.RB_BANDWIDTH_HZ


def _pusch(n_rb: int) -> Callable[[float, np.random.Generator], TxBurst]:
    start_rb = (LTE_CARRIER_N_RB - n_rb) // 2

    def build(freq_hz: float, rng: np.random.Generator) -> TxBurst:
        return lte.pusch_burst(0.0, _carrier_for(freq_hz, start_rb, n_rb), LTE_CARRIER_N_RB, start_rb, n_rb,
                               modulation="qpsk")

    return build


def _pucch(freq_hz: float, rng: np.random.Generator) -> TxBurst:
    rb = lte.pucch_rb(0, 0, LTE_CARRIER_N_RB)
    return lte.pucch_burst(0.0, _carrier_for(freq_hz, rb, 1), LTE_CARRIER_N_RB, resource=0, slot=0,
                           pucch_format="1a")


def _prach(freq_hz: float, rng: np.random.Generator) -> TxBurst:
    start_rb = 4
    return lte.prach_burst(0.0, _carrier_for(freq_hz, start_rb, lte.PRACH_N_RB), LTE_CARRIER_N_RB, start_rb,
                           root=int(rng.integers(1, lte.PRACH_N_ZC)))


WAVEFORMS: tuple[Waveform, ...] = (
    Waveform("gsm_normal", "GSM normal burst (546 µs × 200 kHz)",
             gsm.N_NORMAL_BURST_BITS * gsm.BIT_PERIOD_S, gsm.BANDWIDTH_HZ, _gsm_normal),
    Waveform("lte_pusch_1rb", "LTE PUSCH 1 RB (1 ms × 180 kHz)", lte.SUBFRAME_S, lte.RB_BANDWIDTH_HZ, _pusch(1)),
    Waveform("lte_pusch_4rb", "LTE PUSCH 4 RB (1 ms × 720 kHz)", lte.SUBFRAME_S, 4 * lte.RB_BANDWIDTH_HZ, _pusch(4)),
    Waveform("lte_pusch_12rb", "LTE PUSCH 12 RB (1 ms × 2.16 MHz)", lte.SUBFRAME_S, 12 * lte.RB_BANDWIDTH_HZ,
             _pusch(12)),
    Waveform("lte_pucch", "LTE PUCCH slot (0.5 ms × 180 kHz)", lte.SLOT_S, lte.RB_BANDWIDTH_HZ, _pucch),
    Waveform("lte_prach", "LTE PRACH format 0 (903 µs × 1.08 MHz)", lte.PRACH_DURATION_S, lte.PRACH_BANDWIDTH_HZ,
             _prach),
)


# ---------------------------------------------------------------------------------------
# Theory


def slots_per_hour(duration_s: float, bandwidth_hz: float, sample_rate_hz: float = SAMPLE_RATE_HZ) -> float:
    """Non-overlapping ``T × W`` slots tiling the receiver band for an hour."""
    return (3600.0 / duration_s) * (sample_rate_hz / bandwidth_hz)


def theory_pfa(duration_s: float, bandwidth_hz: float, fa_per_hour: float = THEORY_FA_PER_HOUR) -> float:
    """Per-slot false-alarm probability that gives ``fa_per_hour`` over the slot tiling."""
    return fa_per_hour / slots_per_hour(duration_s, bandwidth_hz)


def theory_pd(snr_db: npt.ArrayLike, time_bandwidth: float, pfa: float) -> npt.NDArray[np.float64]:
    """Pd of the ideal energy detector over ``TW`` complex samples at ``snr_db`` (Urkowitz 1967).

    Under noise the normalized energy is Gamma(TW); with the burst, twice it is
    non-central χ² with 2TW degrees of freedom and non-centrality 2·TW·SNR.
    """
    snr = 10.0 ** (np.asarray(snr_db, dtype=np.float64) / 10.0)
    threshold = float(stats.gamma.isf(pfa, time_bandwidth))
    return np.asarray(stats.ncx2.sf(2.0 * threshold, 2.0 * time_bandwidth, 2.0 * time_bandwidth * snr),
                      dtype=np.float64)


def theory_snr_db(pd: float, time_bandwidth: float, pfa: float) -> float:
    """SNR (dB) at which the ideal energy detector reaches ``pd``."""
    return float(optimize.brentq(lambda s: float(theory_pd(s, time_bandwidth, pfa)) - pd, -40.0, 40.0,
                                 xtol=1e-6))


def snr_grid_db(waveform: Waveform, quick: bool) -> npt.NDArray[np.float64]:
    """SNR points around the ideal detector's Pd = 0.5 point, wide enough for a few dB of loss."""
    centre = round(theory_snr_db(0.5, waveform.time_bandwidth,
                                 theory_pfa(waveform.duration_s, waveform.bandwidth_hz)))
    offsets = np.arange(-4.0, 9.0, 3.0) if quick else np.arange(-4.0, 11.0, 1.0)
    return centre + offsets


# ---------------------------------------------------------------------------------------
# Trials


def burst_centres_hz(n: int, bandwidth_hz: float, dc_guard_hz: float, rng: np.random.Generator,
                     sample_rate_hz: float = SAMPLE_RATE_HZ) -> npt.NDArray[np.float64]:
    """Random centre offsets keeping a ``bandwidth_hz`` burst off DC and inside the band edges.

    When no such place exists (a band too wide) the burst is centred within what is left.
    """
    outer = 0.5 * sample_rate_hz - EDGE_MARGIN_HZ - 0.5 * bandwidth_hz
    inner = dc_guard_hz + 0.5 * bandwidth_hz
    if outer <= 0:
        return np.zeros(n)
    if inner >= outer:
        return rng.uniform(-outer, outer, n)
    side = rng.choice(np.array([-1.0, 1.0]), n)
    return side * rng.uniform(inner, outer, n)


@dataclass
class TrialRun:
    """One waveform through one noise model: per-trial outcome and the stream's bookkeeping."""

    snr_index: npt.NDArray[np.int64]
    offsets_hz: npt.NDArray[np.float64]  # burst centre from the receiver centre
    detected: npt.NDArray[np.bool_]
    n_matches: npt.NDArray[np.int64]  # detections overlapping each burst
    n_spurious: int
    noise_only_s: float
    n_detections: int
    stream_s: float
    elapsed_s: float


def run_trials(waveform: Waveform, snrs_db: npt.NDArray[np.float64], n_trials: int, variant: str,
               rng: np.random.Generator, config: DetectorConfig | None = None,
               centres_hz: npt.NDArray[np.float64] | None = None) -> TrialRun:
    """Generate the trial stream block by block, run the detector on it and score every trial.

    ``centres_hz``: each trial's burst centre from the receiver centre (default: random,
    :func:`burst_centres_hz`), ``len(snrs_db) * n_trials`` of them.
    """
    config = config or DetectorConfig()
    fs = SAMPLE_RATE_HZ
    fc = CENTER_FREQ_HZ
    started = time.perf_counter()
    detector = BurstDetector(config, fs, fc)
    n_total = len(snrs_db) * n_trials
    snr_index = rng.permutation(np.repeat(np.arange(len(snrs_db)), n_trials))
    probe = waveform.build(fc, rng)
    n_burst = math.ceil(probe.duration_s * fs)
    window = math.ceil((_LEAD_GAP_S + _START_SPAN_S + _TAIL_GAP_S) * fs) + n_burst
    lead = math.ceil(config.noise_window_s * fs)
    starts = (lead + np.arange(n_total, dtype=np.int64) * window + round(_LEAD_GAP_S * fs)
              + rng.integers(0, round(_START_SPAN_S * fs), n_total))
    offsets_hz = (burst_centres_hz(n_total, waveform.bandwidth_hz, config.dc_guard_hz, rng) if centres_hz is None
                  else np.asarray(centres_hz, dtype=np.float64))
    snr_lin = 10.0 ** (snrs_db[snr_index] / 10.0)
    band_fraction = waveform.bandwidth_hz / fs

    gain_db: float | None = None
    model: RtlSdrModel | None = None
    if variant == "gaussian":
        amplitudes = np.sqrt(snr_lin * NOISE_POWER * band_fraction)
    elif variant == "rtl_sdr":
        receiver = ReceiverConfig(gain_db=RTL_GAIN_DB)
        model = RtlSdrModel(receiver, fs, fc, rng)
        gain_db = receiver.gain_db
        power_dbfs = 10.0 * np.log10(snr_lin * band_fraction) + model.noise_floor_dbfs
        power_dbm = dbfs_to_dbm(power_dbfs, receiver.gain_db, receiver.gain_offset_db,
                                receiver.dbfs_at_0db_gain_dbm)
        amplitudes = np.sqrt(10.0 ** (np.asarray(power_dbm) / 10.0))  # sqrt(mW)
    else:
        raise ValueError(f"unknown noise model {variant!r} (one of {', '.join(VARIANTS)})")

    def noise(n: int) -> npt.NDArray[np.complex64]:
        scale = np.float32(math.sqrt(NOISE_POWER / 2.0))
        return (rng.standard_normal(2 * n, dtype=np.float32) * scale).view(np.complex64)

    def to_detector(x: npt.NDArray[np.complex64], first: int) -> npt.NDArray[np.complex64]:
        if model is None:
            return x
        raw, _ = model.process(x, first)
        return cu8_to_complex64(raw)

    bursts: list[Burst] = []
    head = np.zeros(lead, np.complex64) if model is not None else noise(lead)
    bursts += feed(detector, to_detector(head, 0), 0, gain_db)
    first = lead
    lengths = np.zeros(n_total, dtype=np.int64)
    for c0 in range(0, n_total, _CHUNK_TRIALS):  # a loop over blocks of trials
        c1 = min(n_total, c0 + _CHUNK_TRIALS)
        n = (c1 - c0) * window
        x = np.zeros(n, np.complex64) if model is not None else noise(n)
        for i in range(c0, c1):  # a loop over bursts
            burst = waveform.build(fc + float(offsets_hz[i]), rng)
            y = render_burst(burst, rng, fs, fc)
            at = int(starts[i]) - first
            x[at : at + y.shape[0]] += y * np.float32(amplitudes[i])
            lengths[i] = y.shape[0]
        bursts += feed(detector, to_detector(x, first), first, gain_db)
        first += n
    bursts += detector.flush()

    detected, n_matches, n_spurious = score(bursts, starts, starts + lengths, fc + offsets_hz,
                                            waveform.bandwidth_hz)
    noise_only_s = (first - int(lengths.sum())) / fs
    return TrialRun(snr_index, offsets_hz, detected, n_matches, n_spurious, noise_only_s, len(bursts), first / fs,
                    time.perf_counter() - started)


def score(bursts: list[Burst], starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64],
          freqs_hz: npt.NDArray[np.float64], bandwidth_hz: float,
          ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64], int]:
    """Which bursts (time-sorted spans ``[starts, ends)``, nominal bands) a detection overlaps.

    Returns (detected per burst, number of overlapping detections per burst, number of
    detections that overlap no burst).
    """
    n_matches = np.zeros(starts.shape[0], dtype=np.int64)
    n_spurious = 0
    lo_hz = freqs_hz - 0.5 * bandwidth_hz
    hi_hz = freqs_hz + 0.5 * bandwidth_hz
    for b in bursts:  # a loop over detections
        d0, d1 = b.sample_start, b.sample_start + b.sample_count
        j0 = int(np.searchsorted(ends, d0, side="right"))
        j1 = int(np.searchsorted(starts, d1, side="left"))
        f0, f1 = b.freq_hz - 0.5 * b.bandwidth_hz, b.freq_hz + 0.5 * b.bandwidth_hz
        cand = np.arange(j0, j1)
        hit = cand[(lo_hz[cand] < f1) & (hi_hz[cand] > f0)]
        if hit.size:
            n_matches[hit] += 1
        else:
            n_spurious += 1
    return n_matches > 0, n_matches, n_spurious


# ---------------------------------------------------------------------------------------
# The benchmark


def wilson_interval(k: npt.ArrayLike, n: npt.ArrayLike, z: float = 1.96) -> npt.NDArray[np.float64]:
    """95 % Wilson score interval of a proportion ``k/n``, shape ``(n_points, 2)`` (lower, upper)."""
    k = np.asarray(k, dtype=np.float64)
    n = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.stack([np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)], axis=1)


def _bootstrap_ci(snrs_db: npt.NDArray[np.float64], k: npt.NDArray[np.float64], n: npt.NDArray[np.int64],
                  n_resamples: int = 200) -> list[float] | None:
    """95 % interval of the Pd 0.9 point: the trials of every SNR point drawn again
    (parametric bootstrap, binomial at the measured Pd) and the crossing read again."""
    rng = np.random.default_rng(0)
    pd = k / np.maximum(n, 1)
    found = [probit_crossing(snrs_db, rng.binomial(n, pd), n, PD_TARGET) for _ in range(n_resamples)]
    values = [v for v in found if v is not None]
    if len(values) < 0.9 * n_resamples:
        return None
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def _summarize(run: TrialRun, snrs_db: npt.NDArray[np.float64], theory_snr90: float,
               theory_snr90_cfg: float) -> dict[str, Any]:
    n_points = len(snrs_db)
    n = np.bincount(run.snr_index, minlength=n_points)
    k = np.bincount(run.snr_index, weights=run.detected, minlength=n_points)
    pd = k / np.maximum(n, 1)
    matches = np.bincount(run.snr_index, weights=run.n_matches, minlength=n_points)
    snr90_linear = crossing(snrs_db, isotonic(pd, n), PD_TARGET)
    snr90 = probit_crossing(snrs_db, k, n, PD_TARGET)
    snr90_ci = _bootstrap_ci(snrs_db, k, n)
    # where the detector loses bursts it should not: misses 2 dB or more above its Pd 0.9 point
    late = run.snr_index >= np.searchsorted(snrs_db, (snr90 if snr90 is not None else np.inf) + 2.0)
    missed = np.flatnonzero(late & ~run.detected)
    return {
        "pd": pd,
        "n_trials": n,
        "pd_ci95": wilson_interval(k, n),
        "detections_per_detected_burst": np.where(k > 0, matches / np.maximum(k, 1), np.nan),
        "snr_db_at_pd90": snr90,
        "gap_db_at_pd90": None if snr90 is None else snr90 - theory_snr90,
        "gap_db_at_pd90_ci95": None if snr90_ci is None else [v - theory_snr90 for v in snr90_ci],
        "gap_db_at_pd90_linear": None if snr90_linear is None else snr90_linear - theory_snr90,
        "gap_db_at_pd90_vs_config_pfa": None if snr90 is None else snr90 - theory_snr90_cfg,
        "n_spurious_detections": run.n_spurious,
        "n_trials_2db_above_pd90": int(late.sum()),
        "missed_2db_above_pd90": [{"snr_db": float(snrs_db[run.snr_index[i]]), "freq_offset_hz": float(run.offsets_hz[i])}
                                  for i in missed[:_MAX_LISTED_MISSES]],
        "n_missed_2db_above_pd90": int(missed.size),
        "noise_only_s": run.noise_only_s,
        "n_detections": run.n_detections,
        "stream_s": run.stream_s,
        "elapsed_s": run.elapsed_s,
    }


def run(out_dir: Path = RESULTS_DIR, quick: bool = False, seed: int = 1, n_trials: int | None = None,
        waveforms: tuple[str, ...] | None = None, variants: tuple[str, ...] = VARIANTS) -> dict[str, Any]:
    """Measure every waveform's Pd curve, write ``detect_sensitivity.json`` and ``.png``; return the result."""
    config = DetectorConfig()
    n_trials = n_trials or (12 if quick else 400)
    chosen = [w for w in WAVEFORMS if waveforms is None or w.name in waveforms]
    probe = BurstDetector(config, SAMPLE_RATE_HZ, CENTER_FREQ_HZ)
    result: dict[str, Any] = header("detect_sensitivity", quick)
    result.update({
        "definitions": {
            "snr_db": "burst energy / nominal duration T, over the noise power in the nominal bandwidth W",
            "pd": "fraction of trials with a detection overlapping the burst in time and frequency",
            "theory": ("ideal energy detector on the burst's exact T x W slot (Urkowitz 1967), "
                       "per-slot Pfa giving theory_false_alarms_per_hour over a tiling of the band"),
            "gap_db_at_pd90": ("detector SNR at Pd 0.9 (maximum-likelihood probit fit to the points within "
                               "2.5 dB of the crossing) minus theory's; _ci95: parametric bootstrap; _linear: "
                               "read off straight lines between the points (0-0.19 dB pessimistic, see "
                               "bench.common.probit_crossing)"),
        },
        "sample_rate_hz": SAMPLE_RATE_HZ,
        "theory_false_alarms_per_hour": THEORY_FA_PER_HOUR,
        "detector": {
            "pfa_per_test": config.pfa,
            "tests_per_second": probe.tests_per_second,
            "nominal_false_alarms_per_hour": probe.tests_per_second * config.pfa * 3600.0,
            "templates": [{"name": t.name, "n_frames": t.n_frames, "n_columns": t.n_columns, "pfa": t.pfa}
                          for t in probe.box_tests],
        },
        "rtl_sdr_gain_db": RTL_GAIN_DB,
        "n_trials_per_point": n_trials,
        "waveforms": {},
    })
    for wi, waveform in enumerate(chosen):
        tw = waveform.time_bandwidth
        pfa = theory_pfa(waveform.duration_s, waveform.bandwidth_hz)
        snrs = snr_grid_db(waveform, quick)
        snr90 = theory_snr_db(PD_TARGET, tw, pfa)
        snr90_cfg = theory_snr_db(PD_TARGET, tw, config.pfa)
        entry: dict[str, Any] = {
            "label": waveform.label,
            "duration_s": waveform.duration_s,
            "bandwidth_hz": waveform.bandwidth_hz,
            "snr_bandwidth_hz": waveform.bandwidth_hz,
            "time_bandwidth": tw,
            "n_slots_per_hour": slots_per_hour(waveform.duration_s, waveform.bandwidth_hz),
            "theory_pfa_per_slot": pfa,
            "snr_db": snrs,
            "theory_pd": theory_pd(snrs, tw, pfa),
            "theory_pd_at_config_pfa": theory_pd(snrs, tw, config.pfa),
            "theory_snr_db_at_pd90": snr90,
            "theory_snr_db_at_pd90_config_pfa": snr90_cfg,
        }
        for vi, variant in enumerate(variants):
            rng = np.random.default_rng([seed, wi, vi])
            trials = run_trials(waveform, snrs, n_trials, variant, rng, config)
            summary = _summarize(trials, snrs, snr90, snr90_cfg)
            log.info("sensitivity waveform=%s variant=%s gap_db=%s stream_s=%.1f elapsed_s=%.1f",
                     waveform.name, variant, summary["gap_db_at_pd90"], trials.stream_s, trials.elapsed_s)
            if variant == "gaussian":
                entry.update(summary)
            else:
                entry[variant] = summary
        result["waveforms"][waveform.name] = entry
    out_dir = Path(out_dir)
    write_json(out_dir / "detect_sensitivity.json", result)
    plot(result, out_dir / "detect_sensitivity.png")
    return result


def plot(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    entries = result["waveforms"]
    n = max(1, len(entries))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 4.0 * rows), squeeze=False, layout="constrained")
    for ax, (name, e) in zip(axes.flat, entries.items(), strict=False):
        snrs = np.asarray(e["snr_db"], dtype=np.float64)
        fine = np.linspace(snrs[0], snrs[-1], 200)
        ax.plot(fine, theory_pd(fine, e["time_bandwidth"], e["theory_pfa_per_slot"]), "k-",
                label=f"ideal, {result['theory_false_alarms_per_hour']:g} FA/h")
        ax.plot(fine, theory_pd(fine, e["time_bandwidth"], result["detector"]["pfa_per_test"]), "k:",
                lw=1, label=f"ideal, Pfa {result['detector']['pfa_per_test']:g}/slot")
        if "pd" in e:
            ax.errorbar(snrs, e["pd"], yerr=_yerr(e), fmt="o-", ms=3, capsize=2,
                        label=f"detector, Gaussian (gap {_fmt_gap(e['gap_db_at_pd90'])})")
        if "rtl_sdr" in e:
            r = e["rtl_sdr"]
            ax.errorbar(snrs, r["pd"], yerr=_yerr(r), fmt="s--", ms=3, capsize=2,
                        label=f"detector, RTL-SDR 8-bit (gap {_fmt_gap(r['gap_db_at_pd90'])})")
        ax.axhline(PD_TARGET, color="grey", lw=0.6)
        ax.set_title(e["label"], fontsize=9)
        ax.set_xlabel(f"SNR in {e['snr_bandwidth_hz'] / 1e3:g} kHz (dB)")
        ax.set_ylabel("probability of detection")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="lower right")
        del name
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"Detection sensitivity ({result['mode']} run, {result['n_trials_per_point']} trials a point)")
    return save_figure(fig, path)


def _yerr(curve: dict[str, Any]) -> npt.NDArray[np.float64]:
    pd = np.asarray(curve["pd"], dtype=np.float64)
    ci = np.asarray(curve["pd_ci95"], dtype=np.float64).reshape(-1, 2)
    return np.maximum(np.vstack([pd - ci[:, 0], ci[:, 1] - pd]), 0.0)


def _fmt_gap(gap: float | None) -> str:
    return "n/a" if gap is None else f"{gap:+.2f} dB"
