"""``cellwatch locate``: events (JSON Lines) from detections, with the service's own engine."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from service.commands.common import output_stream, read_jsonl, write_jsonl

log = logging.getLogger(__name__)

FEED_CHUNK = 5000  # detections per engine call: memory stays flat on long files


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "locate",
        help="group detections into bursts, transmissions and events, and locate them by wing, floor and cell",
        description=(
            "Correlate the detections of all sensors (the same burst seen by several sensors, the bursts of "
            "one call or session), then locate each transmission: a posterior probability over every cell "
            "and zone of the site from the levels at the sensors that heard it and the silence of those that "
            "did not, with the phone's transmit power marginalized. Writes one event record per line "
            "(DESIGN.md), the same events the service shows. Detections without rssi_dbm are calibrated "
            "with --calibration (defaults: a generic RTL-SDR). Every sensor present in the input is taken as "
            "listening throughout."
        ),
        epilog=("example: cellwatch locate --site calibration/sites/demo_prison.toml /tmp/sim/detections.jsonl "
                "--out /tmp/sim/events.jsonl"),
    )
    parser.add_argument("detections", nargs="*", type=Path, metavar="DETECTIONS", help="detections (JSON Lines)")
    parser.add_argument("--site", type=Path, required=True, help="site file (TOML)")
    parser.add_argument("--survey", type=Path, help="survey fingerprints (JSON or TOML, see service/locate.py)")
    parser.add_argument("--calibration", type=Path, help="sensor calibration (TOML: [sensors.<id>] gain_offset_db ...)")
    parser.add_argument("--config", type=Path,
                        help="engine settings (TOML: [correlation], [locator], [alerts] tables and event keys)")
    parser.add_argument("--from-truth", type=Path, metavar="TRUTH",
                        help="instead of detections, use a simulation's truth.jsonl: its per-sensor received powers "
                             "above the detection SNR (the oracle: no detector errors)")
    parser.add_argument("--out", type=Path, help="output file (default: standard output)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from calibration.config import read_toml
    from calibration.gain import CalibrationTable
    from calibration.site import load_site
    from dsp.errors import InputError
    from dsp.records import Detection
    from service.events import EngineConfig, EventEngine
    from service.locate import ORACLE_DETECT_SNR_DB, detections_from_truth, load_survey

    site = load_site(args.site)
    calibration = CalibrationTable.from_file(args.calibration) if args.calibration else None
    survey = load_survey(args.survey, site) if args.survey else None
    config = EngineConfig.from_dict(read_toml(args.config), source=str(args.config)) if args.config else EngineConfig()
    if not args.detections and args.from_truth is None:
        raise InputError(None, "DETECTIONS", "give detection files, or --from-truth truth.jsonl")
    started = time.perf_counter()
    detections: list[Detection] = []
    for path in args.detections:
        for number, obj in read_jsonl(path):
            try:
                detection = Detection.from_dict(obj)
            except InputError as exc:
                field = f"line {number}.{exc.field}" if exc.field else f"line {number}"
                raise InputError(str(path), field, exc.problem) from None
            try:
                site.sensor_index(detection.sensor_id)
            except KeyError:
                raise InputError(str(path), f"line {number}.sensor_id",
                                 f"sensor {detection.sensor_id!r} is not in site {site.name!r}") from None
            detections.append(detection)
    if args.from_truth is not None:
        truth = [obj for _, obj in read_jsonl(args.from_truth) if isinstance(obj, dict)]
        snr_db = config.locator.detect_snr_db
        detections.extend(detections_from_truth(truth, ORACLE_DETECT_SNR_DB if snr_db is None else snr_db))
        listening = [s.id for s in site.sensors if any(s.id in (r.get("rx_power_dbm") or {}) for r in truth[:1])]
    else:
        listening = sorted({d.sensor_id for d in detections})
    detections.sort(key=lambda d: (d.t_start_s, d.sensor_id))
    engine = EventEngine(site, calibration=calibration, survey=survey, config=config)
    engine.mark_listening(listening)
    events = {}
    for start in range(0, len(detections), FEED_CHUNK):
        for event in engine.add(detections[start:start + FEED_CHUNK]):
            events[event.event_id] = event
    for event in engine.flush():
        events[event.event_id] = event
    ordered = sorted(events.values(), key=lambda e: (e.t_start_s, e.event_id))
    with output_stream(args.out) as out:
        write_jsonl(out, (e.to_dict() for e in ordered))
    elapsed = time.perf_counter() - started
    n_alerts = sum(1 for e in ordered if e.priority == "alert")
    print(f"{len(ordered)} events ({n_alerts} alerts) from {len(detections)} detections of {len(listening)} sensors: "
          f"{engine.counts['bursts']} bursts, {engine.counts['transmissions_closed']} transmissions, "
          f"static sigma {engine.sigma_static_db:g} dB, in {elapsed:.2f} s", file=sys.stderr)
    return 0
