"""``cellwatch calibrate``: gain, frequency and survey calibration of a site, and sensor placement.

Subcommands, in the order of an installation (docs/installing.md):

* ``plan``   where to mount N sensors in the corridors (expected accuracy, current vs proposal);
* ``gain``   each sensor's dBFS -> dBm offset, from a reference transmitter or the noise floor;
* ``ppm``    each dongle's crystal error, from a GSM cell's FCCH bursts or a reference carrier;
* ``walk``   a survey plan (and a scenario to rehearse it on the simulator);
* ``survey`` fingerprints per place and sensor and a fitted propagation model, from a walk;
* ``check``  drift of noise floors, reference levels and crystals against the calibration file.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dsp.errors import InputError
from service.commands.common import output_stream, read_jsonl

log = logging.getLogger(__name__)

DEFAULT_DURATION_S = 1.0
DEFAULT_RECEIVER_GAIN_DB = 28.0
DETECT_SNR_DB = 6.0  # a GSM burst is found about 9 times in 10 from this SNR (the detector benchmark)
EXIT_DRIFT = 3


# ============================================================== registration
def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "calibrate",
        help="calibrate a site: sensor placement, gains, crystal errors, survey fingerprints, drift checks",
        description=(
            "Everything that turns a site file and a set of dongles into a calibrated installation. "
            "Run `cellwatch calibrate SUBCOMMAND --help` for each step; docs/installing.md walks through "
            "them in order: plan -> mount -> gain -> ppm -> walk/survey -> check."
        ),
        epilog=(
            "examples:\n"
            "  cellwatch calibrate plan --site site.toml --sensors 16 --out proposed.toml\n"
            "  cellwatch calibrate gain --noise-figure 6.5 --calibration cal.toml rec/*.sigmf-meta\n"
            "  cellwatch calibrate gain --site site.toml --reference beacon.toml --calibration cal.toml rec/*.sigmf-meta\n"
            "  cellwatch calibrate ppm --arfcn 20 --calibration cal.toml rec/*.sigmf-meta\n"
            "  cellwatch calibrate survey --site site.toml --plan walk.toml --calibration cal.toml \\\n"
            "      --out survey.toml --fitted-site fitted.toml detections.jsonl\n"
            "  cellwatch calibrate check --calibration cal.toml --arfcn 20 rec/*.sigmf-meta"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    steps = parser.add_subparsers(dest="step", metavar="STEP")
    steps.required = True
    _register_plan(steps)
    _register_gain(steps)
    _register_ppm(steps)
    _register_walk(steps)
    _register_survey(steps)
    _register_check(steps)


def _recording_options(parser: argparse.ArgumentParser) -> None:
    from service.commands.common import add_raw_options

    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, metavar="S",
                        help=f"seconds of each recording to analyse, from its start (default {DEFAULT_DURATION_S:g})")
    add_raw_options(parser)


def _register_plan(steps: argparse._SubParsersAction) -> None:
    p = steps.add_parser(
        "plan",
        help="propose where to mount N sensors in the corridors for the best expected cell accuracy",
        description=(
            "Searches mounting positions along the walls and centre lines of the site's corridor zones for the "
            "N sensors that maximize the expected cell accuracy of the localization (a fast analytic objective: "
            "pairwise confusion of places from the model's loss table, the unknown transmit power projected out; "
            "greedy choice then local moves). The site's current placement, the naive one (sensors evenly on "
            "the corridor centre lines) and the proposal are then compared on the benchmark's oracle accuracy "
            "(Monte Carlo: true model, known shadowing sigma, phones at random points of random cells). Rule of "
            "thumb from the demo prison: a sensor on a wall near cell doors beats one on the centre line, which "
            "hears the two facing cells alike; accuracy grows with sensors up to one per cell door."
        ),
        epilog="example: cellwatch calibrate plan --site calibration/sites/demo_prison.toml --sensors 12 --out proposed.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--site", type=Path, required=True, help="site file (TOML)")
    p.add_argument("--sensors", type=int, required=True, metavar="N", help="number of sensors to place")
    p.add_argument("--gain-db", type=float, default=DEFAULT_RECEIVER_GAIN_DB,
                   help=f"tuner gain the nodes will run at: sets the detection threshold (default {DEFAULT_RECEIVER_GAIN_DB:g})")
    p.add_argument("--threshold-dbm", type=float, help="detection threshold at the antenna (overrides --gain-db)")
    p.add_argument("--sigma-db", type=float, help="shadowing sigma (default: the site's propagation model, 4 dB)")
    p.add_argument("--height", type=float, default=2.6, metavar="M", help="mounting height above the floor (default 2.6 m)")
    p.add_argument("--spacing", type=float, default=1.5, metavar="M", help="spacing of candidate positions (default 1.5 m)")
    p.add_argument("--zones", default="corridor", metavar="KINDS",
                   help="zone kinds sensors may go in, comma-separated (default: corridor)")
    p.add_argument("--freq", type=float, default=902.4e6, metavar="HZ", help="band to plan for (default 902.4e6)")
    p.add_argument("--phones", type=int, default=800, metavar="N", help="Monte-Carlo phones per accuracy figure (default 800)")
    p.add_argument("--seed", type=int, default=0, help="Monte-Carlo seed (default 0)")
    p.add_argument("--out", type=Path, help="write the site with the proposed sensors (TOML)")
    p.set_defaults(handler=run_plan)


def _register_gain(steps: argparse._SubParsersAction) -> None:
    p = steps.add_parser(
        "gain",
        help="measure each sensor's dBFS -> dBm offset (reference transmitter, or noise floor) and store it",
        description=(
            "Measures gain_offset_db, the unit's gain minus the nominal R820T step, so that the service turns "
            "each detection's dBFS into dBm at the antenna connector. Two methods:\n"
            "  reference (--reference REF.toml): a carrier of known power at a known place or with a known loss. "
            "In recordings its power is measured as a tone; in detections (.jsonl) as the mean power of the "
            "bursts in the reference's time window. Expected power = tx_power_dbm - path_loss_db (given: a "
            "cable and attenuators, good to ~0.3 dB) or - the site model's loss (radiated: carries the "
            "building's shadowing, ~4 dB per position; use several positions or the survey's fit).\n"
            "  noise (default, --noise-figure): the thermal floor kTBF of a dongle with a known noise figure. "
            "Record a quiet band at a high gain (>= 44 dB); the ADC's own floor (-45.2 dBFS) is removed.\n"
            "Offsets are per sensor, band and gain step; the calibration file keeps one gain_offset_db per "
            "sensor (the measurements are combined, each one noted as a comment under the sensor). "
            "Recordings must be made without AGC; their gain is read from the SigMF metadata."
        ),
        epilog=("examples:\n"
                "  cellwatch calibrate gain --noise-figure 6.5 --calibration cal.toml quiet/*.sigmf-meta\n"
                "  cellwatch calibrate gain --site site.toml --reference beacon.toml --calibration cal.toml rec/*.sigmf-meta\n"
                "reference file (TOML), one [[references]] table per transmitter or position:\n"
                "  [[references]]\n"
                "  id = \"gen-A1\"\n"
                "  freq_hz = 903.1e6          # keep it off any other carrier's mirror frequency\n"
                "  tx_power_dbm = -10.0       # at its antenna (generator output - cable loss + antenna gain)\n"
                "  position = [13.5, 5.2]     # or place = \"A-1-corridor\"\n"
                "  floor = 1\n"
                "  height_m = 1.5\n"
                "  # path_loss_db = 60.0      # instead of a place: conducted, cable + attenuators into the dongle\n"
                "  # sensors = [\"A1-S2\"]      # which sensors it is for (default: all that hear it)\n"
                "  # start_utc / end_utc      # when it was on (needed with detections)"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="recordings (SigMF, raw .cu8) of each sensor, or detections (.jsonl) with --reference")
    p.add_argument("--site", type=Path, help="site file (needed for a reference given by place or position)")
    p.add_argument("--reference", type=Path, help="reference transmitters (TOML, see below)")
    p.add_argument("--noise-figure", type=float, metavar="DB",
                   help="noise figure for the noise method (default 6.5 dB, an R820T2 at high gain near 900 MHz)")
    p.add_argument("--max-ppm", type=float, default=100.0, help="crystal error to allow when looking for a carrier (default 100)")
    p.add_argument("--calibration", type=Path, help="calibration file to update (created if missing); without it, only a report")
    _recording_options(p)
    p.set_defaults(handler=run_gain)


def _register_ppm(steps: argparse._SubParsersAction) -> None:
    p = steps.add_parser(
        "ppm",
        help="measure each dongle's crystal error from a GSM cell's FCCH bursts or a reference carrier",
        description=(
            "Measures ppm_error (positive: the crystal runs fast; the value rtl_sdr -p corrects) from a tone of "
            "known frequency: the frequency-correction bursts (FCCH) of a GSM base station's BCCH carrier, a pure "
            "tone 67.708 kHz above downlink ARFCN n at 935.0 + 0.2 n MHz, sent every 10 frames (TS 45.002 §5.2.4, "
            "as kalibrate-rtl uses them; base stations hold 0.05 ppm), or a reference carrier (--carrier-freq). "
            "Record each dongle tuned near the carrier, with no ppm correction applied, for about a second "
            "(kal -s GSM900 lists the strong cells). With several --arfcn, each recording uses the one it hears best."
        ),
        epilog="example: cellwatch calibrate ppm --arfcn 20 --arfcn 22 --calibration cal.toml rec/*.sigmf-meta",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recordings", nargs="+", type=Path, metavar="RECORDING", help="recordings (SigMF, raw .cu8)")
    p.add_argument("--arfcn", type=int, action="append", help="GSM-900 downlink channel of a nearby cell (repeatable)")
    p.add_argument("--carrier-freq", type=float, metavar="HZ", help="a reference carrier's frequency instead")
    p.add_argument("--max-ppm", type=float, default=100.0, help="largest crystal error to search (default 100)")
    p.add_argument("--calibration", type=Path, help="calibration file to update (created if missing); without it, only a report")
    _recording_options(p)
    p.set_defaults(handler=run_ppm)


def _register_walk(steps: argparse._SubParsersAction) -> None:
    p = steps.add_parser(
        "walk",
        help="write a survey plan for a site (and a scenario to rehearse the walk on the simulator)",
        description=(
            "Writes a survey plan visiting every cell (or every place, or a list) with a reference GSM phone at "
            "a fixed power, POINTS positions per place, DWELL seconds at each: the plan `calibrate survey` "
            "reads. With --scenario-out, also a scenario in which the simulator's phone does exactly that walk "
            "(each position at random inside its place): `cellwatch simulate` it, `cellwatch detect` the "
            "recordings, then `calibrate survey` them to rehearse the whole procedure without a building. For a "
            "real walk use longer dwells (20-30 s per cell, moving around inside it) and edit the times."
        ),
        epilog=("example: cellwatch calibrate walk --site site.toml --places cells --plan-out walk_plan.toml "
                "--scenario-out walk.toml"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--site", type=Path, required=True, help="site file (TOML)")
    p.add_argument("--plan-out", type=Path, required=True, help="survey plan to write (TOML)")
    p.add_argument("--scenario-out", type=Path, help="simulator scenario of the same walk (TOML)")
    p.add_argument("--places", default="all", help="'cells', 'all' (cells and zones) or comma-separated ids (default all)")
    p.add_argument("--points", type=int, default=3, help="positions per place (default 3)")
    p.add_argument("--dwell", type=float, default=0.25, metavar="S", help="seconds at each position (default 0.25)")
    p.add_argument("--gap", type=float, default=0.05, metavar="S", help="seconds between positions (default 0.05)")
    p.add_argument("--tx-power-dbm", type=float, default=30.0, help="reference transmitter power (default 30 dBm)")
    p.add_argument("--arfcn", type=int, default=62, help="its GSM uplink channel (default 62: 902.4 MHz)")
    p.add_argument("--gain-db", type=float, default=DEFAULT_RECEIVER_GAIN_DB, help="the scenario's receiver gain (default 28)")
    p.add_argument("--start-utc", default="2026-01-05T08:00:00Z", help="UTC time of the walk's start")
    p.set_defaults(handler=run_walk)


def _register_survey(steps: argparse._SubParsersAction) -> None:
    p = steps.add_parser(
        "survey",
        help="survey fingerprints and a fitted propagation model from the detections of a survey walk",
        description=(
            "Sorts the detections of a survey walk into the plan's stops (place, time window; see "
            "`calibrate walk` and docs/installing.md for the TOML and CSV forms), averages what each sensor "
            "heard of the reference transmitter, and writes (--out) fingerprints per place and sensor: the mean "
            "loss and its spread over the positions, the file `cellwatch locate --survey` and the service read. "
            "It also fits the propagation model (path loss exponent, slab loss, wall losses per material and "
            "per wall, per-sensor level offsets) by robust least squares (soft-L1), reports the residual sigma "
            "(the shadowing left: a value for the locator's sigma_static_db) and writes the fitted site "
            "(--fitted-site). --calibration-out moves the fitted sensor offsets into the gain calibration; the "
            "fingerprints are then computed with it, so use that calibration with them."
        ),
        epilog=("example: cellwatch calibrate survey --site site.toml --plan walk_plan.toml --calibration cal.toml \\\n"
                "           --out survey.toml --fitted-site fitted.toml --calibration-out cal2.toml detections.jsonl"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("detections", nargs="+", type=Path, metavar="DETECTIONS", help="detections of the walk (JSON Lines)")
    p.add_argument("--site", type=Path, required=True, help="site file (TOML)")
    p.add_argument("--plan", type=Path, required=True, help="survey plan (TOML, or CSV operator notes)")
    p.add_argument("--calibration", type=Path, help="sensor calibration in force during the walk")
    p.add_argument("--out", type=Path, help="fingerprints to write (.toml, or .json)")
    p.add_argument("--fitted-site", type=Path, help="site file with the fitted model to write")
    p.add_argument("--calibration-out", type=Path, help="calibration with the fitted sensor offsets applied, to write")
    p.add_argument("--wall-mode", choices=("wall", "material", "none"), default="wall",
                   help="fit one loss per wall group plus a deviation per wall (default), per group only, or none")
    p.add_argument("--wall-prior-db", type=float, default=3.0, help="how far one wall may stray from its group (default 3 dB)")
    p.add_argument("--no-offsets", action="store_true", help="do not fit per-sensor level offsets")
    p.add_argument("--min-heard", type=float, default=0.7, metavar="FRACTION",
                   help="a sensor must hear this share of a stop's bursts to count (default 0.7)")
    group = p.add_argument_group("CSV plans")
    group.add_argument("--start-utc", help="UTC time the CSV's relative start/end seconds count from")
    group.add_argument("--tx-power-dbm", type=float, default=30.0, help="transmitter power when the CSV has no column (default 30)")
    group.add_argument("--freq", type=float, metavar="HZ", help="only detections within 150 kHz of this frequency")
    p.set_defaults(handler=run_survey)


def _register_check(steps: argparse._SubParsersAction) -> None:
    p = steps.add_parser(
        "check",
        help="flag sensors whose noise floor, reference level or crystal drifted from the calibration file",
        description=(
            "Re-measures what `calibrate gain` and `calibrate ppm` measured and compares it with what the stored "
            "calibration predicts: the noise floor (thermal floor through the stored gain offset, with "
            "--noise-figure; most sensitive at high gain), a reference transmitter's level in dBm (--reference), "
            "the crystal error (--arfcn or --carrier-freq). A sensor beyond tolerance is flagged DRIFT: a failing "
            "LNA or cable, a swapped dongle, a gain step not applied, an aging crystal. Run it from cron: "
            f"--fail-on-drift exits with status {EXIT_DRIFT} when anything drifted."
        ),
        epilog="example: cellwatch calibrate check --calibration cal.toml --arfcn 20 rec/*.sigmf-meta",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recordings", nargs="+", type=Path, metavar="RECORDING", help="fresh recordings of each sensor")
    p.add_argument("--calibration", type=Path, required=True, help="the calibration file in force")
    p.add_argument("--noise-figure", type=float, default=6.5, metavar="DB", help="for the noise-floor check (default 6.5)")
    p.add_argument("--no-noise", action="store_true", help="skip the noise-floor check (a busy band)")
    p.add_argument("--site", type=Path, help="site file (for --reference by place or position)")
    p.add_argument("--reference", type=Path, help="reference transmitters (TOML, as for calibrate gain)")
    p.add_argument("--arfcn", type=int, action="append", help="GSM downlink channel for the crystal check (repeatable)")
    p.add_argument("--carrier-freq", type=float, metavar="HZ", help="reference carrier for the crystal check")
    p.add_argument("--max-ppm", type=float, default=100.0, help="largest crystal error to search (default 100)")
    p.add_argument("--tolerance-db", type=float, default=2.0, help="level drift to flag (default 2 dB)")
    p.add_argument("--tolerance-ppm", type=float, default=1.0, help="crystal drift to flag (default 1 ppm)")
    p.add_argument("--fail-on-drift", action="store_true", help=f"exit with status {EXIT_DRIFT} when a sensor drifted")
    _recording_options(p)
    p.set_defaults(handler=run_check)


# ============================================================== helpers
def _now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _positive(value: float | None, name: str) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise InputError(None, name, f"must be a positive number, got {value:g}")


def _open(paths: Sequence[Path], args: argparse.Namespace) -> list[Any]:
    from sdr.recording import open_recording

    return [open_recording(p, sample_rate_hz=getattr(args, "rate", None), center_freq_hz=getattr(args, "freq", None))
            for p in paths]


def _samples(recording: Any, duration_s: float, start_s: float | None = None, end_s: float | None = None) -> Any:
    """The first ``duration_s`` of a recording (or of its part between two UTC times)."""
    info = recording.info
    first = 0
    if start_s is not None and info.t_start_known:
        first = max(0, min(info.n_samples, int((start_s - info.t_start_s) * info.sample_rate_hz)))
    last = info.n_samples
    if end_s is not None and info.t_start_known:
        last = max(first, min(info.n_samples, int((end_s - info.t_start_s) * info.sample_rate_hz)))
    n = min(last - first, int(duration_s * info.sample_rate_hz))
    if n <= 0:
        raise InputError(info.path, None, "holds no samples in the requested time window")
    return recording.read(first, n)


def _gain_of(recording: Any) -> float:
    gain = recording.info.gain_db
    if gain is None:
        raise InputError(recording.info.path, "gain_db", "the recording does not say its tuner gain (SigMF hw/gain "
                         "metadata): a level cannot be calibrated without it")
    return float(gain)


def _load_calibration(path: Path | None) -> Any:
    from calibration.gain import CalibrationTable

    if path is None or not path.exists():
        return CalibrationTable()
    return CalibrationTable.from_file(path)


def _clipped(samples: Any) -> float:
    import numpy as np

    components = np.asarray(samples).view(np.float32)
    return float(np.count_nonzero(np.abs(components) >= 0.996) / max(components.size, 1))


def _threshold_dbm(gain_db: float) -> float:
    """Detection threshold at the antenna of a GSM burst for a generic RTL-SDR at ``gain_db``."""
    from sdr.receiver import ReceiverConfig, dbfs_to_dbm, noise_floor_dbfs

    config = ReceiverConfig(gain_db=gain_db)
    rate = 2.4e6
    floor = float(dbfs_to_dbm(noise_floor_dbfs(config, rate), config.gain_db, 0.0, config.dbfs_at_0db_gain_dbm))
    return floor + 10.0 * math.log10(200e3 / rate) + DETECT_SNR_DB


# ============================================================== plan
def run_plan(args: argparse.Namespace) -> int:
    import numpy as np

    from calibration import placement
    from calibration.fit import format_site_toml
    from calibration.propagation import PropagationModel
    from calibration.site import load_site

    site = load_site(args.site)
    if args.sensors < 1:
        raise InputError(None, "--sensors", f"must be at least 1, got {args.sensors}")
    for name in ("height", "spacing", "freq"):
        _positive(getattr(args, name), f"--{name}")
    _positive(args.sigma_db, "--sigma-db")
    if args.phones < 10:
        raise InputError(None, "--phones", "must be at least 10")
    kinds = [k.strip() for k in args.zones.split(",") if k.strip()]
    if not placement.corridor_zones(site, kinds):
        raise InputError(str(args.site), "zones", f"no zone of kind {', '.join(kinds)} to mount sensors in")
    if args.height >= site.floor_height_m:
        raise InputError(None, "--height", f"must be below the floor height {site.floor_height_m:g} m")
    threshold = args.threshold_dbm if args.threshold_dbm is not None else _threshold_dbm(args.gain_db)
    model = PropagationModel.for_site(site)
    candidates = placement.candidate_positions(site, kinds=kinds, spacing_m=args.spacing, height_m=args.height)
    if len(candidates) < args.sensors:
        raise InputError(None, "--sensors", f"only {len(candidates)} candidate positions at {args.spacing:g} m spacing: "
                         "ask for fewer sensors or a smaller --spacing")
    problem = placement.PlacementProblem(site, candidates, model=model, freq_hz=args.freq, sigma_db=args.sigma_db,
                                         threshold_dbm=threshold)
    naive = placement.naive_placement(site, args.sensors, kinds=kinds, height_m=args.height)
    result = placement.plan_placement(problem, args.sensors, naive=naive)
    proposal = [candidates[i] for i in result.chosen]
    print(f"site {site.name}: {len(site.cells)} cells; {len(candidates)} candidate positions in "
          f"{len(placement.corridor_zones(site, kinds))} zones ({', '.join(kinds)}), {args.height:g} m up; "
          f"detection threshold {threshold:.1f} dBm, shadowing sigma {problem.sigma_db:g} dB")
    rows = []
    if site.sensors:
        rows.append(("current (site file)", len(site.sensors), site.sensor_xyz(), float("nan")))
    naive_xyz = np.array([[c.xy[0], c.xy[1], float(site.z_m(c.floor, c.height_m))] for c in naive])
    rows.append(("naive (centre lines)", len(naive), naive_xyz, result.naive_score))
    rows.append(("proposal", args.sensors, problem.sensors_xyz(result.chosen), result.score))
    print(f"{'placement':<22} {'sensors':>7} {'cell %':>7} {'wing+floor %':>13} {'confidence':>10} {'objective':>9}")
    for name, n, xyz, objective in rows:
        acc = problem.oracle_accuracy(xyz, n_phones=args.phones, seed=args.seed)
        print(f"{name:<22} {n:>7d} {acc['pct_correct_cell']:7.1f} {acc['pct_correct_wing_floor']:13.1f} "
              f"{acc['mean_confidence']:10.2f} {objective:9.3f}")
    print("(cell %: oracle accuracy by Monte Carlo, true model and sigma, phones in cells; objective: the planner's "
          "fast estimate)")
    sensors = placement.sensors_for(site, proposal)
    print("proposed positions:")
    by_position = {(float(s.position[0]), float(s.position[1]), s.floor): s for s in sensors}
    for c in sorted(proposal, key=lambda c: (c.floor, c.zone_id, c.xy)):
        sensor = by_position[(c.xy[0], c.xy[1], c.floor)]
        print(f"  {sensor.id:<10} {c.zone_id:<18} floor {c.floor:>2}  x {c.xy[0]:7.2f}  y {c.xy[1]:7.2f}  ({c.kind})")
    if args.out is not None:
        header = (f"{site.name}: sensors proposed by `cellwatch calibrate plan --sensors {args.sensors}` on {_now_utc()}\n"
                  f"from {args.site}; threshold {threshold:.1f} dBm, sigma {problem.sigma_db:g} dB. Everything else is "
                  "the original site file's (comments are not kept).")
        with output_stream(args.out) as out:
            out.write(format_site_toml(placement.site_with(site, proposal), header))
        print(f"wrote {args.out}")
    return 0


# ============================================================== gain
def run_gain(args: argparse.Namespace) -> int:
    from calibration import gaincal
    from calibration.propagation import PropagationModel
    from calibration.site import load_site

    _positive(args.duration, "--duration")
    _positive(args.max_ppm, "--max-ppm")
    site = load_site(args.site) if args.site else None
    model = PropagationModel.for_site(site) if site else None
    references = gaincal.load_references(args.reference, site) if args.reference else []
    if references and args.noise_figure is not None:
        raise InputError(None, "--noise-figure", "give --reference or --noise-figure, not both")
    noise_figure = args.noise_figure if args.noise_figure is not None else gaincal.DEFAULT_NOISE_FIGURE_DB
    current = _load_calibration(args.calibration)
    reports: dict[str, gaincal.SensorReport] = {}
    detection_files = [p for p in args.inputs if p.suffix.lower() == ".jsonl"]
    recording_files = [p for p in args.inputs if p.suffix.lower() != ".jsonl"]
    if detection_files and not references:
        raise InputError(str(detection_files[0]), None, "detections need --reference (the noise method reads recordings)")
    if references:
        _warn_mirrors(references, recording_files, args)
    for recording in _open(recording_files, args):
        info = recording.info
        report = reports.setdefault(info.sensor_id, gaincal.SensorReport(info.sensor_id))
        gain = _gain_of(recording)
        dbfs0 = current.get(info.sensor_id).dbfs_at_0db_gain_dbm
        if references:
            for ref in references:
                if not ref.serves(info.sensor_id):
                    continue
                offset_hz = ref.freq_hz - info.center_freq_hz
                search_hz = args.max_ppm * 1e-6 * info.center_freq_hz + 2e3
                if abs(offset_hz) + search_hz >= info.sample_rate_hz / 2:
                    continue
                samples = _samples(recording, args.duration, ref.start_s, ref.end_s)
                level = gaincal.measure_tone_power_dbfs(samples, info.sample_rate_hz, offset_hz, search_hz)
                if level.snr_db < gaincal.MIN_REFERENCE_SNR_DB:
                    report.problems.append(f"{ref.id}: not heard (SNR {level.snr_db:.1f} dB)")
                    continue
                if level.peak_dbfs > gaincal.MAX_REFERENCE_DBFS or _clipped(samples) > 1e-4:
                    report.problems.append(f"{ref.id}: the recording clips (peak {level.peak_dbfs:.1f} dBFS): lower the gain")
                    continue
                report.measurements.append(gaincal.reference_measurement(
                    info.sensor_id, ref, level.power_dbfs, gain, info.center_freq_hz, site, model, dbfs0))
        else:
            samples = _samples(recording, args.duration)
            if _clipped(samples) > 1e-4:
                report.problems.append(f"{info.path}: clips (a strong signal in band): record a quiet band")
                continue
            floor = gaincal.measure_noise_floor_dbfs(samples, info.sample_rate_hz)
            try:
                report.measurements.append(gaincal.noise_measurement(
                    info.sensor_id, floor, gain, info.sample_rate_hz, info.center_freq_hz, noise_figure,
                    source=info.path, dbfs_at_0db_gain_dbm=dbfs0))
            except InputError as exc:
                report.problems.append(exc.problem)
    for path in detection_files:
        _gain_from_detections(path, references, reports, site, model, current)
    return _finish_gain(args, reports, current)


def _warn_mirrors(references: Sequence[Any], recording_files: Sequence[Path], args: argparse.Namespace) -> None:
    """A dongle images every carrier at its mirror frequency (I/Q imbalance, ~ -37 dB) and at its 2nd and 3rd
    harmonics (8-bit quantization), aliased into the band: a strong reference's image can pass for a weak one."""
    tunings = {(r.info.center_freq_hz, r.info.sample_rate_hz) for r in _open(recording_files, args)} \
        if recording_files else set()
    for centre, rate in tunings:
        for a in references:
            offset = a.freq_hz - centre
            images = {"mirror image": -offset, "2nd harmonic": 2 * offset, "3rd harmonic": 3 * offset}
            for b in references:
                for what, image in images.items():
                    aliased = (image + rate / 2) % rate - rate / 2
                    if a is not b and abs(aliased - (b.freq_hz - centre)) < 5e3:
                        print(f"warning: reference {b.id} sits on the {what} of {a.id} when tuned to "
                              f"{centre / 1e6:.3f} MHz: move one of them", file=sys.stderr)


def _gain_from_detections(path: Path, references: Sequence[Any], reports: dict[str, Any], site: Any, model: Any,
                          current: Any) -> None:
    import numpy as np

    from calibration import gaincal
    from dsp.records import Detection

    detections = []
    for number, obj in read_jsonl(path):
        try:
            detections.append(Detection.from_dict(obj))
        except InputError as exc:
            raise InputError(str(path), f"line {number}.{exc.field}" if exc.field else f"line {number}", exc.problem) from None
    for i, ref in enumerate(references):
        if ref.start_s is None or ref.end_s is None:
            raise InputError(str(path), f"references[{i}]", "detections need the reference's start_utc and end_utc")
        chosen: dict[str, list[Any]] = {}
        for det in detections:
            if ref.start_s <= det.t_start_s < ref.end_s and abs(det.freq_hz - ref.freq_hz) <= 150e3 \
                    and det.gain_db is not None and ref.serves(det.sensor_id):
                chosen.setdefault(det.sensor_id, []).append(det)
        n_bursts = max((len(d) for d in chosen.values()), default=0)
        for sensor_id, dets in chosen.items():
            report = reports.setdefault(sensor_id, gaincal.SensorReport(sensor_id))
            if len(dets) < 0.7 * n_bursts:  # it heard only the fades up: its mean would read high
                report.problems.append(f"{ref.id}: heard {len(dets)} of {n_bursts} bursts, too weak for a level")
                continue
            relative = np.array([d.power_dbfs - d.gain_db for d in dets])
            level = 10.0 * math.log10(float(np.mean(10.0 ** (relative / 10.0))))
            gains = sorted({float(d.gain_db) for d in dets})
            dbfs0 = current.get(sensor_id).dbfs_at_0db_gain_dbm
            report.measurements.append(gaincal.reference_measurement(
                sensor_id, ref, level + gains[0], gains[0], float(np.median([d.freq_hz for d in dets])), site, model, dbfs0))


def _band_offsets(measurements: Any) -> list[dict[str, float]]:
    """One offset per uplink band and gain step measured (inverse-variance mean of its measurements)."""
    from calibration import gaincal
    from calibration.gain import band_of

    groups: dict[tuple[float, float, float], list[Any]] = {}
    for m in measurements:
        _, low, high = band_of(m.center_freq_hz)
        groups.setdefault((low, high, round(m.gain_db, 1)), []).append(m)
    return [{"freq_min_hz": low, "freq_max_hz": high, "gain_db": gain,
             "gain_offset_db": round(gaincal.combine(group)[0], 3)}
            for (low, high, gain), group in sorted(groups.items())]


def _finish_gain(args: argparse.Namespace, reports: dict[str, Any], current: Any) -> int:
    from calibration import gaincal

    if not reports:
        raise InputError(None, "INPUT", "no sensor measured: check the inputs")
    print(f"{'sensor':<12} {'method':<10} {'gain':>5} {'band MHz':>9} {'offset dB':>9} {'± dB':>5}  detail")
    updates: dict[str, dict[str, float | list[dict[str, float]]]] = {}  # with each band's "offsets"
    notes: dict[str, list[str]] = {}
    when = _now_utc()
    for sensor_id in sorted(reports):
        report = reports[sensor_id]
        for m in report.measurements:
            print(f"{sensor_id:<12} {m.method:<10} {m.gain_db:5.1f} {m.center_freq_hz / 1e6:9.3f} {m.gain_offset_db:+9.2f} "
                  f"{m.uncertainty_db:5.2f}  {m.detail}")
            notes.setdefault(sensor_id, []).append(f"{when} gain ({m.method}): offset {m.gain_offset_db:+.2f} ± "
                                                   f"{m.uncertainty_db:.2f} dB; {m.detail}")
        for problem in report.problems:
            print(f"{sensor_id:<12} {'-':<10} {'':>5} {'':>9} {'':>9} {'':>5}  skipped: {problem}")
        if report.measurements:
            offset, uncertainty = report.offset_db, report.uncertainty_db
            assert offset is not None and uncertainty is not None
            old = current.get(sensor_id).gain_offset_db
            spread = report.spread_over_gain_steps_db
            steps = f"; offsets differ between gain steps by {spread:.1f} dB" if spread > 1.0 else ""
            print(f"{sensor_id:<12} {'=> stored':<10} {'':>5} {'':>9} {offset:+9.2f} {uncertainty:5.2f}  "
                  f"(was {old:+.2f} dB{steps})")
            updates[sensor_id] = {"gain_offset_db": round(offset, 3), "offsets": _band_offsets(report.measurements)}
    missing = [s for s, r in reports.items() if not r.measurements]
    if args.calibration is not None and updates:
        gaincal.update_calibration_file(args.calibration, updates, notes)
        print(f"updated {args.calibration}: gain_offset_db of {len(updates)} sensor(s), with the offset of each "
              f"band and gain step measured")
    elif updates:
        print("(report only: give --calibration FILE to store these offsets)")
    if missing:
        print(f"no offset for: {', '.join(sorted(missing))}", file=sys.stderr)
    return 0


# ============================================================== ppm
def _estimate_ppm(samples: Any, info: Any, arfcns: Sequence[int] | None, carrier_freq: float | None,
                  max_ppm: float) -> Any:
    from calibration import ppm

    if carrier_freq is not None:
        return ppm.estimate_ppm_carrier(samples, info.sample_rate_hz, info.center_freq_hz, carrier_freq,
                                        max_ppm=max_ppm, source=info.path)
    best, errors = None, []
    for arfcn in arfcns or []:
        try:
            estimate = ppm.estimate_ppm_fcch(samples, info.sample_rate_hz, info.center_freq_hz, arfcn,
                                             max_ppm=max_ppm, source=info.path)
        except InputError as exc:
            errors.append(exc)
            continue
        if best is None or (estimate.n_bursts, estimate.snr_db) > (best.n_bursts, best.snr_db):
            best = estimate
    if best is None:
        raise errors[0] if errors else InputError(info.path, None, "no FCCH found")
    return best


def _ppm_reference_args(args: argparse.Namespace, required: bool) -> None:
    from dsp.gsm import downlink_freq_hz

    if args.arfcn and args.carrier_freq is not None:
        raise InputError(None, "--carrier-freq", "give --arfcn or --carrier-freq, not both")
    if required and not args.arfcn and args.carrier_freq is None:
        raise InputError(None, "--arfcn", "give the ARFCN of a nearby GSM cell (or --carrier-freq)")
    for arfcn in args.arfcn or []:
        try:
            downlink_freq_hz(arfcn)
        except InputError as exc:
            raise InputError(None, "--arfcn", exc.problem) from None
    _positive(args.carrier_freq, "--carrier-freq")
    _positive(args.max_ppm, "--max-ppm")
    _positive(args.duration, "--duration")


def run_ppm(args: argparse.Namespace) -> int:
    from calibration import gaincal

    _ppm_reference_args(args, required=True)
    updates: dict[str, dict[str, float]] = {}
    notes: dict[str, list[str]] = {}
    when = _now_utc()
    print(f"{'sensor':<12} {'reference':<24} {'ppm':>9} {'± ppm':>7} {'bursts':>6} {'SNR dB':>7} {'error Hz':>9}")
    failed = []
    for recording in _open(args.recordings, args):
        info = recording.info
        samples = _samples(recording, args.duration)
        try:
            est = _estimate_ppm(samples, info, args.arfcn, args.carrier_freq, args.max_ppm)
        except InputError as exc:
            print(f"{info.sensor_id:<12} {'-':<24} skipped: {exc.problem}")
            failed.append(info.sensor_id)
            continue
        unc = est.uncertainty_ppm
        print(f"{info.sensor_id:<12} {est.reference:<24} {est.ppm_error:+9.3f} {unc:7.3f} {est.n_bursts:6d} "
              f"{est.snr_db:7.1f} {est.freq_error_hz:+9.1f}")
        updates[info.sensor_id] = {"ppm_error": round(est.ppm_error, 3)}
        notes.setdefault(info.sensor_id, []).append(
            f"{when} ppm: {est.ppm_error:+.3f} ± {unc:.3f} ppm from {est.reference} ({est.n_bursts} tones, "
            f"SNR {est.snr_db:.0f} dB, tuned {info.center_freq_hz / 1e6:.3f} MHz)")
    if args.calibration is not None and updates:
        gaincal.update_calibration_file(args.calibration, updates, notes)
        print(f"updated {args.calibration}: ppm_error of {len(updates)} sensor(s)")
    elif updates:
        print("(report only: give --calibration FILE to store these errors; set each node's ppm to the integer part)")
    if not updates:
        raise InputError(None, "RECORDING", "no recording held the reference tone")
    return 0


# ============================================================== walk
def run_walk(args: argparse.Namespace) -> int:
    from calibration import survey
    from calibration.site import load_site

    site = load_site(args.site)
    if args.places == "all":
        places = None
    elif args.places == "cells":
        places = [c.id for c in site.cells]
    else:
        places = [p.strip() for p in args.places.split(",") if p.strip()]
        for place in places:
            try:
                site.place_index(place)
            except KeyError:
                raise InputError(None, "--places", f"no cell or zone {place!r} in site {site.name!r}") from None
    if args.points < 1:
        raise InputError(None, "--points", "must be at least 1")
    for name in ("dwell", "gap"):
        if not getattr(args, name) > 0:
            raise InputError(None, f"--{name}", "must be positive")
    try:
        plan, scenario = survey.walk(site, places=places, points_per_place=args.points, dwell_s=args.dwell,
                                     gap_s=args.gap, tx_power_dbm=args.tx_power_dbm, arfcn=args.arfcn,
                                     start_utc=args.start_utc)
    except InputError as exc:
        raise InputError(None, "--arfcn", exc.problem) from None
    survey.parse_plan(plan, site)  # the plan it writes is one it reads
    header = f"survey plan for {site.name} ({args.site}), written by cellwatch calibrate walk on {_now_utc()}"
    with output_stream(args.plan_out) as out:
        out.write(survey.format_plan_toml(plan, header))
    print(f"wrote {args.plan_out}: {len(plan['stops'])} stops in "
          f"{len({s['place'] for s in plan['stops']})} places, {scenario['duration_s']:.1f} s")
    if args.scenario_out is not None:
        scenario["receiver"]["gain_db"] = args.gain_db
        with output_stream(args.scenario_out) as out:
            out.write(_scenario_toml(scenario))
        print(f"wrote {args.scenario_out}: rehearse with cellwatch simulate --site {args.site} --scenario "
              f"{args.scenario_out} --out DIR, then cellwatch detect DIR/*.sigmf-meta --out DIR/detections.jsonl")
    return 0


def _scenario_toml(scenario: dict[str, Any]) -> str:
    import json

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        return repr(v)

    out = ["# A survey walk for the simulator (cellwatch calibrate walk): one reference phone, one position at a time."]
    for key in ("name", "description", "start_utc", "duration_s"):
        out.append(f"{key} = {value(scenario[key])}")
    out.append("")
    out.append("[receiver]")
    out.extend(f"{k} = {value(v)}" for k, v in scenario["receiver"].items())
    for phone in scenario["phones"]:
        out.append("")
        out.append("[[phones]]")
        out.extend(f"{k} = {value(v)}" for k, v in phone.items())
    return "\n".join(out) + "\n"


# ============================================================== survey
def run_survey(args: argparse.Namespace) -> int:
    from calibration import fit, gaincal, survey
    from calibration.gaincal import parse_utc_value
    from calibration.site import load_site
    from dsp.records import Detection

    site = load_site(args.site)
    calibration = _load_calibration(args.calibration)
    if not 0.0 < args.min_heard <= 1.0:
        raise InputError(None, "--min-heard", "must lie in (0, 1]")
    _positive(args.wall_prior_db, "--wall-prior-db")
    start = parse_utc_value(args.start_utc, "--start-utc", "value") if args.start_utc else None
    plan = survey.load_plan(args.plan, site, start_utc=start, tx_power_dbm=args.tx_power_dbm, freq_hz=args.freq) \
        if args.plan.suffix.lower() == ".csv" else survey.load_plan(args.plan, site)
    detections: list[Detection] = []
    for path in args.detections:
        for number, obj in read_jsonl(path):
            try:
                detections.append(Detection.from_dict(obj))
            except InputError as exc:
                raise InputError(str(path), f"line {number}.{exc.field}" if exc.field else f"line {number}",
                                 exc.problem) from None
    data = survey.collect(plan, detections, site, calibration)
    for warning in data.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    usable = data.usable(args.min_heard)
    print(f"{len(detections)} detections, {len(detections) - data.n_unmatched} in {len(plan.stops)} stops "
          f"({len({s.place_index for s in plan.stops})} places); {int(usable.sum())} (stop, sensor) levels usable")
    observations = survey.fit_observations(data, site, min_heard_fraction=args.min_heard)
    if not observations:
        raise InputError(str(args.plan), "stops", "no sensor heard the reference well at any stop: check the times and the band")
    options = fit.FitOptions(wall_mode=args.wall_mode, wall_prior_db=args.wall_prior_db, fit_offsets=not args.no_offsets)
    result = fit.fit_site(site, observations, options=options)
    print(result.report())
    outliers = result.outliers()
    if outliers:
        print(f"  {len(outliers)} (place, sensor) losses beyond 3 sigma, worst: "
              + "; ".join(f"{p} -> {s} {r:+.1f} dB" for p, s, r in outliers[:5]))
    level_offsets = None
    if args.calibration_out is not None and result.sensor_offsets:
        current = {s.id: calibration.get(s.id).gain_offset_db for s in site.sensors}
        new = fit.sensor_offsets_to_calibration(result.sensor_offsets, current)
        when = _now_utc()
        notes = {k: [f"{when} survey fit ({args.plan}): level offset {v.fitted:+.2f} ± {v.stderr:.2f} dB "
                     f"-> gain_offset_db {new[k]:+.2f}"] for k, v in result.sensor_offsets.items()}
        if args.calibration is not None and args.calibration.exists() and args.calibration != args.calibration_out:
            args.calibration_out.write_text(args.calibration.read_text(encoding="utf-8"), encoding="utf-8")
        gaincal.update_calibration_file(args.calibration_out, {k: {"gain_offset_db": round(v, 3)} for k, v in new.items()},
                                        notes)
        level_offsets = {k: v.fitted for k, v in result.sensor_offsets.items()}
        print(f"wrote {args.calibration_out}: gain offsets of {len(new)} sensors (use it with the fingerprints)")
    fingerprints = survey.fingerprints(data, site, min_heard_fraction=args.min_heard, level_offsets_db=level_offsets)
    n_places = int(sum(1 for p in range(len(site.places)) if (fingerprints.n_stops[p] > 0).any()))
    print(f"fingerprints: {fingerprints.n_surveyed} (place, sensor) pairs in {n_places} places")
    header = (f"survey of {site.name} from {args.plan} and {len(args.detections)} detection file(s), "
              f"cellwatch calibrate survey, {_now_utc()}; calibration: {args.calibration_out or args.calibration or 'defaults'}")
    if args.out is not None:
        text = survey.format_survey_json(fingerprints, site) if args.out.suffix.lower() == ".json" \
            else survey.format_survey_toml(fingerprints, site, header)
        with output_stream(args.out) as out:
            out.write(text)
        print(f"wrote {args.out}")
    if args.fitted_site is not None:
        site_header = (f"{site.name}: propagation fitted to the survey {args.plan} (cellwatch calibrate survey, "
                       f"{_now_utc()}).\nResidual sigma {result.residual_sigma_db:.2f} dB (plan {result.plan_residual_sigma_db:.2f} dB) "
                       f"over {result.n_observations} (place, sensor) losses.\nWall losses are per wall; "
                       "everything else is the original site file's (comments are not kept).")
        with output_stream(args.fitted_site) as out:
            out.write(fit.format_site_toml(result.site, site_header))
        print(f"wrote {args.fitted_site}")
    if args.out is None and args.fitted_site is None and args.calibration_out is None:
        print("(report only: --out, --fitted-site and --calibration-out write the results)")
    return 0


# ============================================================== check
def run_check(args: argparse.Namespace) -> int:
    from calibration import gaincal
    from calibration.gain import CalibrationTable
    from calibration.propagation import PropagationModel
    from calibration.site import load_site

    _ppm_reference_args(args, required=False)
    _positive(args.tolerance_db, "--tolerance-db")
    _positive(args.tolerance_ppm, "--tolerance-ppm")
    calibration = CalibrationTable.from_file(args.calibration)
    site = load_site(args.site) if args.site else None
    model = PropagationModel.for_site(site) if site else None
    references = gaincal.load_references(args.reference, site) if args.reference else []
    checks: list[gaincal.DriftCheck] = []
    notes: list[str] = []
    for recording in _open(args.recordings, args):
        info = recording.info
        gain = _gain_of(recording)
        samples = _samples(recording, args.duration)
        if info.sensor_id not in calibration.sensors:
            notes.append(f"{info.sensor_id}: not in {args.calibration} (checked against the defaults)")
        if not args.no_noise:
            cal = calibration.get(info.sensor_id)
            thermal_dbfs = (gaincal.thermal_noise_dbm(args.noise_figure, info.sample_rate_hz) + gain
                            + cal.gain_offset_db - cal.dbfs_at_0db_gain_dbm)
            if thermal_dbfs - gaincal.RTL_FIXED_FLOOR_DBFS < gaincal.MIN_THERMAL_MARGIN_DB:
                notes.append(f"{info.sensor_id}: noise floor not checked in {info.path}: at {gain:g} dB of gain it is "
                             "the ADC's own, whatever the tuner does (check at >= 44 dB, in a quiet band)")
            else:
                floor = gaincal.measure_noise_floor_dbfs(samples, info.sample_rate_hz)
                checks.append(gaincal.check_noise_floor(info.sensor_id, floor, gain, info.sample_rate_hz, calibration,
                                                        args.noise_figure, args.tolerance_db))
        for ref in references:
            offset_hz = ref.freq_hz - info.center_freq_hz
            search_hz = args.max_ppm * 1e-6 * info.center_freq_hz + 2e3
            if not ref.serves(info.sensor_id) or abs(offset_hz) + search_hz >= info.sample_rate_hz / 2:
                continue
            part = _samples(recording, args.duration, ref.start_s, ref.end_s)
            level = gaincal.measure_tone_power_dbfs(part, info.sample_rate_hz, offset_hz, search_hz)
            if level.snr_db < gaincal.MIN_REFERENCE_SNR_DB:
                checks.append(gaincal.DriftCheck(info.sensor_id, f"reference {ref.id} (not heard)", -math.inf,
                                                 ref.expected_rx_dbm(site, model, info.sensor_id), args.tolerance_db, "dBm"))
                continue
            checks.append(gaincal.check_level(info.sensor_id, ref, level.power_dbfs, gain, calibration, site, model,
                                              args.tolerance_db))
        if args.arfcn or args.carrier_freq is not None:
            try:
                est = _estimate_ppm(samples, info, args.arfcn, args.carrier_freq, args.max_ppm)
            except InputError as exc:
                notes.append(f"{info.sensor_id}: crystal not checked: {exc.problem}")
            else:
                checks.append(gaincal.DriftCheck(info.sensor_id, "crystal", est.ppm_error,
                                                 calibration.get(info.sensor_id).ppm_error, args.tolerance_ppm, "ppm"))
    print(f"{'sensor':<12} {'check':<26} {'measured':>10} {'expected':>10} {'delta':>8}  status")
    n_drift = 0
    for c in checks:
        status = "DRIFT" if c.drifted else "ok"
        n_drift += c.drifted
        print(f"{c.sensor_id:<12} {c.what:<26} {c.measured:10.2f} {c.expected:10.2f} {c.delta:+8.2f}  {status}"
              f"{'' if not c.drifted else f' (tolerance {c.tolerance:g} {c.unit})'}")
    for note in notes:
        print(f"note: {note}")
    drifted = sorted({c.sensor_id for c in checks if c.drifted})
    print(f"{len(checks)} checks, {n_drift} beyond tolerance" + (f": {', '.join(drifted)}" if drifted else ""))
    return EXIT_DRIFT if (args.fail_on_drift and n_drift) else 0
