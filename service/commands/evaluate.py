"""``cellwatch eval``: score detections and events against a simulation's truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dsp.errors import InputError
from service.commands.common import read_jsonl


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval",
        help="score detections against truth.jsonl (probability of detection, false alarms, errors)",
        description="Compare what cellwatch found with what the simulator really transmitted.",
    )
    what = parser.add_subparsers(dest="what", metavar="WHAT")
    what.required = True
    detect = what.add_parser(
        "detect",
        help="probability of detection, false alarms per hour, timing/frequency errors, confusion matrix",
        description=(
            "A truth burst counts as detected at a sensor when a detection of that sensor overlaps "
            "it in time and frequency; a detection that overlaps no truth burst is a false alarm. "
            "The simulation's span and sensors are read from simulation.json beside the truth file."
        ),
        epilog="example: cellwatch eval detect --truth /tmp/sim/truth.jsonl /tmp/sim/detections.jsonl",
    )
    detect.add_argument("detections", nargs="+", type=Path, help="detections (JSON Lines)")
    detect.add_argument("--truth", type=Path, required=True, help="truth.jsonl written by cellwatch simulate")
    detect.add_argument("--sensors", nargs="+", metavar="ID",
                        help="sensors to score (default: the simulation's sensors that appear in the detections)")
    detect.add_argument("--duration", type=float, metavar="S", help="span in seconds (default: from simulation.json)")
    detect.add_argument("--snr-floor", type=float, default=10.0, metavar="DB",
                        help="report Pd separately for truth bursts above this SNR (default 10 dB)")
    detect.add_argument("--json", action="store_true", help="print the figures as JSON")
    detect.set_defaults(handler=run_detect)
    locate = what.add_parser(
        "locate",
        help="%% correct cell, %% correct wing and floor, %% within the top 3, calibration of the confidence",
        description=(
            "Score events (cellwatch locate) against truth.jsonl. The truth's bursts are grouped into "
            "transmissions (phone and session); each transmission that some sensor could hear (a burst "
            "at --min-snr or more, inside the recorded band) is matched to the event whose transmissions "
            "overlap it most in time (and overlap it in frequency). Correct cell: the event's cell or zone "
            "is the truth's; wing and floor: both agree; top 3: the truth's place is among the event's "
            "first three candidates. Calibration: the events' confidence against how often they are "
            "right (reliability table, Brier score, expected calibration error)."
        ),
        epilog="example: cellwatch eval locate --truth /tmp/sim/truth.jsonl /tmp/sim/events.jsonl",
    )
    locate.add_argument("events", nargs="+", type=Path, help="events (JSON Lines) from cellwatch locate")
    locate.add_argument("--truth", type=Path, required=True, help="truth.jsonl written by cellwatch simulate")
    locate.add_argument("--min-snr", type=float, default=10.0, metavar="DB",
                        help="a truth transmission counts when some sensor got a burst at this SNR (default 10 dB)")
    locate.add_argument("--json", action="store_true", help="print the figures as JSON")
    locate.set_defaults(handler=run_locate)


def load_truth(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Truth records and the simulation's metadata (from simulation.json beside it, if any)."""
    required = ("t_start_s", "duration_s", "freq_hz", "bandwidth_hz", "tech")
    truth = []
    for number, obj in read_jsonl(path):
        if not isinstance(obj, dict):
            raise InputError(str(path), f"line {number}", "a truth record must be a JSON object")
        for key in required:
            if key not in obj:
                raise InputError(str(path), f"line {number}.{key}", "missing")
        truth.append(obj)
    meta_path = path.with_name("simulation.json")
    meta: dict[str, Any] = {}
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(str(meta_path), None, f"not valid JSON ({exc})") from None
    return truth, meta


def load_detections(paths: list[Path]) -> list[Any]:
    from dsp.records import Detection

    out = []
    for path in paths:
        for number, obj in read_jsonl(path):
            try:
                out.append(Detection.from_dict(obj))
            except InputError as exc:
                raise InputError(str(path), f"line {number}.{exc.field}" if exc.field else f"line {number}", exc.problem) from None
    return out


def run_detect(args: argparse.Namespace) -> int:
    from dsp.scoring import format_score, score_detections

    truth, meta = load_truth(args.truth)
    detections = load_detections(args.detections)
    sensors = args.sensors
    if not sensors:
        seen = {d.sensor_id for d in detections}
        sensors = [s for s in meta.get("sensors", sorted(seen)) if s in seen] or sorted(seen)
    if not sensors:
        sensors = list(meta.get("sensors", []))
    duration_s = args.duration if args.duration is not None else meta.get("duration_s")
    if duration_s is None:
        raise InputError(str(args.truth), None, "no simulation.json beside it: pass --duration")
    band = None
    if "center_freq_hz" in meta and "sample_rate_hz" in meta:
        half = meta["sample_rate_hz"] / 2
        band = (meta["center_freq_hz"] - half, meta["center_freq_hz"] + half)
    score = score_detections(truth, detections, sensors, float(duration_s), band_hz=band, snr_floor_db=args.snr_floor)
    print(json.dumps(score.to_dict(), indent=2) if args.json else format_score(score))
    return 0


# ====================================================================== eval locate
CONFIDENCE_BINS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
GSM_FRAME_S = 0.120 / 26.0  # TS 45.002 §4.3.1
_MATCH_TIME_S = 5e-3
_MATCH_FREQ_HZ = 100e3
_MATCH_PHASE_S = 300e-6  # about half a GSM timeslot


def truth_transmissions(truth: list[dict[str, Any]], min_snr_db: float = 10.0,
                        band_hz: tuple[float, float] | None = None) -> list[dict[str, Any]]:
    """The truth's bursts grouped by (phone, session): span, frequency range, place, burst count.

    ``audible`` says whether some sensor got one of its bursts at ``min_snr_db`` or more
    (inside ``band_hz`` when given): only those can be located. ``phases_s`` holds each
    burst's start modulo the GSM TDMA frame, to tell apart phones on one carrier.
    """
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for record in truth:
        key = (str(record.get("phone_id")), str(record.get("session_id")))
        t0 = float(record["t_start_s"])
        t1 = t0 + float(record["duration_s"])
        half = float(record["bandwidth_hz"]) / 2.0
        f = float(record["freq_hz"])
        in_band = band_hz is None or (band_hz[0] <= f - half and f + half <= band_hz[1])
        snrs = record.get("snr_db")
        loud = in_band and (any(v >= min_snr_db for v in snrs.values()) if isinstance(snrs, dict) else True)
        entry = groups.get(key)
        if entry is None:
            entry = groups[key] = {
                "phone_id": key[0], "session_id": key[1], "tech": record.get("tech"),
                "place": record.get("cell") or record.get("zone"), "cell": record.get("cell"),
                "zone": record.get("zone"), "wing": record.get("wing"), "floor": record.get("floor"),
                "t_start_s": t0, "t_end_s": t1, "freq_lo_hz": f - half, "freq_hi_hz": f + half,
                "n_bursts": 0, "n_audible": 0, "phases_s": [],
            }
        entry["t_start_s"] = min(entry["t_start_s"], t0)
        entry["t_end_s"] = max(entry["t_end_s"], t1)
        entry["freq_lo_hz"] = min(entry["freq_lo_hz"], f - half)
        entry["freq_hi_hz"] = max(entry["freq_hi_hz"], f + half)
        entry["n_bursts"] += 1
        entry["n_audible"] += int(bool(loud))
        entry["phases_s"].append(t0 % GSM_FRAME_S)
    out = sorted(groups.values(), key=lambda e: (e["t_start_s"], e["phone_id"]))
    for entry in out:
        entry["audible"] = entry["n_audible"] > 0
    return out


def _overlap_s(tx: dict[str, Any], event: dict[str, Any]) -> float:
    """Seconds of ``tx``'s span covered by the event's transmissions that overlap it in
    frequency, weighted by how much their frequency ranges overlap (intersection over union)
    and, for a GSM transmission, by the share of ``tx``'s bursts in its timeslot."""
    import numpy as np

    parts = event.get("transmissions") or [{"t_start_s": event["t_start_s"], "t_end_s": event["t_end_s"],
                                            "freq_hz": event["freq_hz"]}]
    total = 0.0
    for part in parts:
        f0 = float(part.get("freq_lo_hz", part["freq_hz"]))
        f1 = float(part.get("freq_hi_hz", part["freq_hz"]))
        if f1 < tx["freq_lo_hz"] - _MATCH_FREQ_HZ or f0 > tx["freq_hi_hz"] + _MATCH_FREQ_HZ:
            continue
        lo = max(float(part["t_start_s"]) - _MATCH_TIME_S, tx["t_start_s"])
        hi = min(float(part["t_end_s"]) + _MATCH_TIME_S, tx["t_end_s"])
        if hi < lo:
            continue
        # frequency: intersection over union, so a narrow carrier inside a wide one counts little
        union = max(f1, tx["freq_hi_hz"]) - min(f0, tx["freq_lo_hz"])
        inter = min(f1, tx["freq_hi_hz"]) - max(f0, tx["freq_lo_hz"])
        share = max(inter, 0.0) / union if union > 0 else 1.0
        share = max(share, 1e-3)
        phase = part.get("slot_phase_s")
        if phase is not None:
            delta = np.abs((np.asarray(tx["phases_s"]) - float(phase) + GSM_FRAME_S / 2) % GSM_FRAME_S - GSM_FRAME_S / 2)
            share *= float(np.mean(delta <= _MATCH_PHASE_S))
        total += max(hi - lo, 1e-6) * share
    return total


def score_events(truth: list[dict[str, Any]], events: list[dict[str, Any]], *, min_snr_db: float = 10.0,
                 band_hz: tuple[float, float] | None = None) -> dict[str, Any]:
    """Localization figures of events against the truth (see ``cellwatch eval locate --help``).

    Per truth transmission (the headline figures): the event that covers it most.
    Per event (``per_event``): the truth transmission it covers most; an event covering
    none is spurious.
    """
    import numpy as np

    txs = truth_transmissions(truth, min_snr_db, band_hz)
    audible = [t for t in txs if t["audible"]]
    order = sorted(range(len(events)), key=lambda i: float(events[i]["t_start_s"]))
    starts = np.array([float(events[i]["t_start_s"]) for i in order])
    ends = np.maximum.accumulate(np.array([float(events[i]["t_end_s"]) for i in order])) if order else np.zeros(0)
    best_for_event: dict[int, tuple[float, int]] = {}
    matched: list[tuple[dict[str, Any], dict[str, Any]]] = []
    missed = []
    for k, tx in enumerate(audible):
        hi = int(np.searchsorted(starts, tx["t_end_s"] + _MATCH_TIME_S, side="right"))
        lo = int(np.searchsorted(ends, tx["t_start_s"] - _MATCH_TIME_S, side="left"))
        best, best_overlap = None, 0.0
        for j in range(lo, hi):
            overlap = _overlap_s(tx, events[order[j]])
            if overlap > best_overlap:
                best, best_overlap = order[j], overlap
            if overlap > best_for_event.get(order[j], (0.0, -1))[0]:
                best_for_event[order[j]] = (overlap, k)
        if best is None:
            missed.append(tx)
        else:
            matched.append((tx, events[best]))

    def place_of(event: dict[str, Any]) -> Any:
        return event.get("cell") or event.get("zone")

    n = len(matched)
    correct = np.array([place_of(e) == t["place"] for t, e in matched], dtype=bool)
    wing_floor = np.array([(e.get("wing"), e.get("floor")) == (t["wing"], t["floor"]) for t, e in matched], dtype=bool)
    top3 = np.array([t["place"] in [c.get("place") for c in (e.get("candidates") or [])[:3]] for t, e in matched],
                    dtype=bool)
    confidence = np.array([float(e.get("confidence") or 0.0) for _, e in matched])
    zone_truth = [(t, e) for t, e in matched if t["cell"] is None]
    blamed = [{"phone_id": t["phone_id"], "zone": t["zone"], "event_cell": e.get("cell")}
              for t, e in zone_truth if e.get("cell") is not None]
    table = []
    ece = 0.0
    for k in range(len(CONFIDENCE_BINS) - 1):
        lo_c, hi_c = CONFIDENCE_BINS[k], CONFIDENCE_BINS[k + 1]
        last = k == len(CONFIDENCE_BINS) - 2
        inside = (confidence >= lo_c) & ((confidence <= hi_c) if last else (confidence < hi_c))
        m = int(np.count_nonzero(inside))
        row: dict[str, Any] = {"bin": [lo_c, hi_c], "n": m, "mean_confidence": None, "accuracy": None}
        if m:
            row["mean_confidence"] = float(confidence[inside].mean())
            row["accuracy"] = float(correct[inside].mean())
            ece += m / n * abs(row["accuracy"] - row["mean_confidence"])
        table.append(row)
    event_correct = [place_of(events[i]) == audible[k]["place"] for i, (_, k) in best_for_event.items()]

    def pct(values: Any) -> float | None:
        return float(100.0 * np.mean(values)) if len(values) else None

    cells_only = np.array([t["cell"] is not None for t, _ in matched], dtype=bool)
    return {
        "n_truth_transmissions": len(txs),
        "n_audible": len(audible),
        "n_matched": n,
        "n_missed": len(missed),
        "missed": [{"phone_id": t["phone_id"], "session_id": t["session_id"], "place": t["place"],
                    "n_bursts": t["n_bursts"]} for t in missed],
        "pct_correct_place": pct(correct),
        "pct_correct_wing_floor": pct(wing_floor),
        "pct_truth_in_top3": pct(top3),
        "pct_correct_cell_cell_phones": pct(correct[cells_only]),
        "pct_correct_wing_floor_cell_phones": pct(wing_floor[cells_only]),
        "n_cell_phones": int(np.count_nonzero(cells_only)),
        "n_zone_phones": len(zone_truth),
        "zone_phones_blamed_on_a_cell": blamed,
        "mean_confidence": float(confidence.mean()) if n else None,
        "brier": float(np.mean((confidence - correct) ** 2)) if n else None,
        "ece": float(ece) if n else None,
        "reliability": table,
        "per_event": {
            "n_events": len(events),
            "n_spurious": len(events) - len(best_for_event),
            "pct_correct_place": pct(event_correct),
            # the events the headline figures judge (one per truth transmission matched)
            "matched_event_ids": sorted({str(e.get("event_id")) for _, e in matched}),
        },
        "wrong": [{"phone_id": t["phone_id"], "session_id": t["session_id"], "truth": t["place"],
                   "event": place_of(e), "confidence": e.get("confidence")}
                  for (t, e), ok in zip(matched, correct, strict=True) if not ok],
    }


def format_locate_score(score: dict[str, Any]) -> str:
    def fmt(value: float | None) -> str:
        return "  n/a" if value is None else f"{value:5.1f}"

    lines = [
        f"truth transmissions: {score['n_truth_transmissions']} ({score['n_audible']} audible), "
        f"matched to events: {score['n_matched']}, missed: {score['n_missed']}",
        f"events: {score['per_event']['n_events']}, {score['per_event']['n_spurious']} covering no truth "
        f"transmission, {fmt(score['per_event']['pct_correct_place'])} % in the right place",
        f"correct cell or zone:   {fmt(score['pct_correct_place'])} %   "
        f"(phones in cells: {fmt(score['pct_correct_cell_cell_phones'])} % of {score['n_cell_phones']})",
        f"correct wing and floor: {fmt(score['pct_correct_wing_floor'])} %   "
        f"(phones in cells: {fmt(score['pct_correct_wing_floor_cell_phones'])} %)",
        f"truth within the top 3: {fmt(score['pct_truth_in_top3'])} %",
        f"zone phones blamed on a cell: {len(score['zone_phones_blamed_on_a_cell'])} of {score['n_zone_phones']}",
    ]
    if score["n_matched"]:
        lines.append(f"confidence: mean {score['mean_confidence']:.3f}, Brier {score['brier']:.3f}, "
                     f"ECE {score['ece']:.3f}")
        lines.append("  confidence bin    n   mean conf  accuracy")
        for row in score["reliability"]:
            if row["n"]:
                lines.append(f"  {row['bin'][0]:.2f}-{row['bin'][1]:.2f}  {row['n']:6d}   {row['mean_confidence']:8.3f}  "
                             f"{row['accuracy']:8.3f}")
    return "\n".join(lines)


def load_events(paths: list[Path]) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        for number, obj in read_jsonl(path):
            if not isinstance(obj, dict):
                raise InputError(str(path), f"line {number}", "an event must be a JSON object")
            for key in ("t_start_s", "t_end_s", "freq_hz", "confidence"):
                if key not in obj:
                    raise InputError(str(path), f"line {number}.{key}", "missing")
            out.append(obj)
    return out


def run_locate(args: argparse.Namespace) -> int:
    truth, meta = load_truth(args.truth)
    events = load_events(args.events)
    band = None
    if "center_freq_hz" in meta and "sample_rate_hz" in meta:
        half = meta["sample_rate_hz"] / 2
        band = (meta["center_freq_hz"] - half, meta["center_freq_hz"] + half)
    score = score_events(truth, events, min_snr_db=args.min_snr, band_hz=band)
    print(json.dumps(score, indent=2) if args.json else format_locate_score(score))
    return 0
