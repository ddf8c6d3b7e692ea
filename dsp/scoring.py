"""Detections judged against the truth: probability of detection, false alarms, errors, confusion.

Pure functions over records, shared by ``cellwatch eval detect`` and the benchmarks so
that both report the same figures. A truth burst (DESIGN.md truth record) counts as
detected at a sensor when a detection of that sensor overlaps it in time and frequency;
a detection that overlaps no truth burst at all (of any power) is a false alarm.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dsp.records import TECHNOLOGIES, Detection

SNR_BINS_DB = (-10.0, -5.0, 0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 20.0, 30.0, 60.0)


@dataclass(frozen=True)
class MatchTolerance:
    time_s: float = 100e-6  # sensor clock and edge-estimation slack on each side
    freq_hz: float = 50e3  # beyond half the wider of the two bandwidths (crystal error)


@dataclass
class DetectionScore:
    n_truth: int = 0
    n_detected: int = 0
    n_truth_above: int = 0  # truth bursts above the SNR floor of interest
    n_detected_above: int = 0
    n_detections: int = 0
    n_false_alarms: int = 0
    duration_s: float = 0.0
    n_sensors: int = 0
    snr_floor_db: float = 10.0
    timing_errors_s: list[float] = field(default_factory=list)
    freq_errors_hz: list[float] = field(default_factory=list)
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)
    pd_by_snr: list[dict[str, float]] = field(default_factory=list)

    @property
    def probability_of_detection(self) -> float:
        return self.n_detected / self.n_truth if self.n_truth else float("nan")

    @property
    def probability_of_detection_above(self) -> float:
        return self.n_detected_above / self.n_truth_above if self.n_truth_above else float("nan")

    @property
    def false_alarms_per_hour_per_sensor(self) -> float:
        hours = self.duration_s * max(self.n_sensors, 1) / 3600.0
        return self.n_false_alarms / hours if hours > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float | None]:
            if not values:
                return {"n": 0, "median_abs": None, "p95_abs": None, "mean": None}
            arr = np.abs(np.asarray(values))
            return {"n": len(values), "median_abs": float(np.median(arr)), "p95_abs": float(np.percentile(arr, 95)),
                    "mean": float(np.mean(values))}

        return {
            "n_truth_bursts": self.n_truth,
            "n_detected": self.n_detected,
            "probability_of_detection": self.probability_of_detection,
            "snr_floor_db": self.snr_floor_db,
            "n_truth_above_floor": self.n_truth_above,
            "probability_of_detection_above_floor": self.probability_of_detection_above,
            "n_detections": self.n_detections,
            "n_false_alarms": self.n_false_alarms,
            "duration_s": self.duration_s,
            "n_sensors": self.n_sensors,
            "false_alarms_per_hour_per_sensor": self.false_alarms_per_hour_per_sensor,
            "timing_error_s": stats(self.timing_errors_s),
            "frequency_error_hz": stats(self.freq_errors_hz),
            "confusion": {f"{t}->{d}": n for (t, d), n in sorted(self.confusion.items())},
            "pd_by_snr_db": self.pd_by_snr,
        }


def _truth_arrays(truth: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t0 = np.array([t["t_start_s"] for t in truth], dtype=np.float64)
    t1 = t0 + np.array([t["duration_s"] for t in truth], dtype=np.float64)
    f = np.array([t["freq_hz"] for t in truth], dtype=np.float64)
    bw = np.array([t["bandwidth_hz"] for t in truth], dtype=np.float64)
    return t0, t1, f, bw


def score_detections(
    truth: Sequence[dict[str, Any]],
    detections: Iterable[Detection],
    sensors: Sequence[str],
    duration_s: float,
    *,
    band_hz: tuple[float, float] | None = None,
    snr_floor_db: float = 10.0,
    tolerance: MatchTolerance = MatchTolerance(),
) -> DetectionScore:
    """Score ``detections`` of ``sensors`` against ``truth`` over ``duration_s`` seconds.

    ``band_hz`` (low, high) restricts the truth to bursts a receiver could see; a truth
    burst's SNR at a sensor is read from its ``snr_db`` map (written by the simulator).
    """
    if band_hz is not None:
        truth = [t for t in truth if t["freq_hz"] + t["bandwidth_hz"] / 2 > band_hz[0]
                 and t["freq_hz"] - t["bandwidth_hz"] / 2 < band_hz[1]]
    score = DetectionScore(duration_s=duration_s, n_sensors=len(sensors), snr_floor_db=snr_floor_db)
    by_sensor: dict[str, list[Detection]] = {s: [] for s in sensors}
    for det in detections:
        if det.sensor_id in by_sensor:
            by_sensor[det.sensor_id].append(det)
    t0, t1, f, bw = _truth_arrays(truth) if truth else (np.zeros(0),) * 4
    snr_hist_total = np.zeros(len(SNR_BINS_DB) - 1)
    snr_hist_hit = np.zeros(len(SNR_BINS_DB) - 1)
    for sensor in sensors:
        dets = by_sensor[sensor]
        score.n_detections += len(dets)
        snr = np.array([t.get("snr_db", {}).get(sensor, np.inf) for t in truth], dtype=np.float64)
        if not dets:
            hit = np.zeros(len(truth), dtype=bool)
        else:
            d0 = np.array([d.t_start_s for d in dets])
            d1 = d0 + np.array([d.duration_s for d in dets])
            df = np.array([d.freq_hz for d in dets])
            dbw = np.array([d.bandwidth_hz for d in dets])
            # (n_truth, n_det) overlap in time and frequency
            time_ok = (d0[None, :] < t1[:, None] + tolerance.time_s) & (d1[None, :] > t0[:, None] - tolerance.time_s)
            freq_ok = np.abs(df[None, :] - f[:, None]) < (np.maximum(dbw[None, :], bw[:, None]) / 2 + tolerance.freq_hz)
            overlap = time_ok & freq_ok
            hit = overlap.any(axis=1)
            score.n_false_alarms += int(np.count_nonzero(~overlap.any(axis=0)))
            for i in np.flatnonzero(hit):
                j_candidates = np.flatnonzero(overlap[i])
                j = j_candidates[np.argmin(np.abs(d0[j_candidates] - t0[i]))]
                score.confusion[(truth[int(i)]["tech"], dets[j].tech)] += 1
                if np.count_nonzero(overlap[:, j]) == 1:  # one-to-one: edges and centre are comparable
                    score.timing_errors_s.append(float(d0[j] - t0[i]))
                    score.freq_errors_hz.append(float(df[j] - f[i]))
        score.n_truth += len(truth)
        score.n_detected += int(np.count_nonzero(hit))
        above = snr >= snr_floor_db
        score.n_truth_above += int(np.count_nonzero(above))
        score.n_detected_above += int(np.count_nonzero(hit & above))
        finite = np.isfinite(snr)
        bins = np.digitize(snr[finite], SNR_BINS_DB) - 1
        valid = (bins >= 0) & (bins < len(snr_hist_total))
        np.add.at(snr_hist_total, bins[valid], 1)
        np.add.at(snr_hist_hit, bins[valid], hit[finite][valid].astype(float))
    score.pd_by_snr = [
        {"snr_low_db": SNR_BINS_DB[k], "snr_high_db": SNR_BINS_DB[k + 1], "n": int(snr_hist_total[k]),
         "pd": float(snr_hist_hit[k] / snr_hist_total[k]) if snr_hist_total[k] else float("nan")}
        for k in range(len(snr_hist_total))
    ]
    return score


def format_score(score: DetectionScore) -> str:
    d = score.to_dict()
    lines = [
        f"truth bursts (x sensors):     {d['n_truth_bursts']}",
        f"probability of detection:     {d['probability_of_detection']:.3f}",
        f"  above {score.snr_floor_db:.0f} dB SNR:          {d['probability_of_detection_above_floor']:.3f} "
        f"({score.n_detected_above}/{score.n_truth_above})",
        f"detections:                   {d['n_detections']}",
        f"false alarms:                 {d['n_false_alarms']} "
        f"({d['false_alarms_per_hour_per_sensor']:.2f} per hour per sensor over {score.duration_s:.1f} s x {score.n_sensors})",
    ]
    for name, key, scale, unit in (("timing error", "timing_error_s", 1e6, "us"), ("frequency error", "frequency_error_hz", 1e-3, "kHz")):
        s = d[key]
        if s["n"]:
            lines.append(f"{name + ':':<30}median |e| {s['median_abs'] * scale:.2f} {unit}, p95 {s['p95_abs'] * scale:.2f} {unit} (n={s['n']})")
    lines.append("Pd by SNR (dB):  " + "  ".join(
        f"[{b['snr_low_db']:g},{b['snr_high_db']:g}) {b['pd']:.2f}" for b in d["pd_by_snr_db"] if b["n"]))
    techs = sorted({t for t, _ in score.confusion} | {x for _, x in score.confusion}, key=lambda x: TECHNOLOGIES.index(x) if x in TECHNOLOGIES else 99)
    if techs:
        lines.append("classification (rows truth, columns detected):")
        lines.append("          " + "".join(f"{t:>9}" for t in techs))
        for t in techs:
            lines.append(f"{t:>10}" + "".join(f"{score.confusion.get((t, x), 0):>9}" for x in techs))
    return "\n".join(lines)
