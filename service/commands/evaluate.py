"""``cellwatch eval``: score detections (and later events) against a simulation's truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dsp.errors import InputError
from service.commands.common import read_jsonl


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
