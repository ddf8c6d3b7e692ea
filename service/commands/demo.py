"""``cellwatch demo``: the bundled demo prison end to end, no hardware.

This build runs the offline pipeline on the demo prison: the simulator renders what
the 12 corridor sensors record while phones in cells call, text and browse, the
detector processes each recording, and the detections are scored against the
simulator's truth. The live service and dashboard join the demo as they land.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path

from service.commands.common import progress


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "demo",
        help="run cellwatch on the bundled demo prison (simulated sensors, no hardware)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=30.0, metavar="SECONDS",
                        help="seconds of the demo evening to simulate (default 30)")
    parser.add_argument("--out", type=Path, help="keep the recordings, truth and detections in this folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--jobs", type=int, default=2, help="detector processes in parallel (default 2)")
    parser.set_defaults(handler=run)


def demo_site_path() -> Path:
    return Path(str(resources.files("calibration") / "sites" / "demo_prison.toml"))


def demo_scenario_path() -> Path:
    return Path(str(resources.files("sdr") / "scenarios" / "demo_prison.toml"))


def _detect_one(args: tuple[str, str]) -> tuple[str, int, float]:
    from sdr.recording import open_recording
    from service.commands.detect import write_detections

    meta_path, out_path = args
    recording = open_recording(meta_path)
    started = time.perf_counter()
    with open(out_path, "w", encoding="utf-8") as out:
        n = write_detections(recording, out)
    return recording.info.sensor_id, n, time.perf_counter() - started


def run(args: argparse.Namespace) -> int:
    from calibration.site import load_site
    from dsp.scoring import format_score, score_detections
    from sdr.scenario import load_scenario
    from sdr.simulate import Simulation
    from service.commands.evaluate import load_detections, load_truth

    site = load_site(demo_site_path())
    scenario = load_scenario(demo_scenario_path())
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="cellwatch-demo-"))
    print(f"cellwatch demo: {site.name}, {len(site.cells)} cells, {len(site.sensors)} sensors")
    print(f"scenario '{scenario.name}': {scenario.description}")
    print(f"1/3 simulating {args.duration:g} s at {len(site.sensors)} sensors into {out_dir} ...", flush=True)
    sim = Simulation(site, scenario, seed=args.seed, duration_s=args.duration, scenario_source=str(demo_scenario_path()))
    with progress(sim.duration_s, "simulating") as bar:
        result = sim.run(out_dir, progress=bar.update)
    print(f"    {result.n_bursts} bursts transmitted by {len({b.phone_id for b in sim.bursts})} phone(s)")
    print("2/3 detecting bursts in each sensor's recording ...", flush=True)
    jobs = [(str(p), str(out_dir / f"{p.name.removesuffix('.sigmf-meta')}.detections.jsonl")) for p in result.recordings]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for sensor_id, n, elapsed in pool.map(_detect_one, jobs):
            print(f"    {sensor_id:<8} {n:6d} detections  ({sim.duration_s / max(elapsed, 1e-9):.0f}x real time)")
    print("3/3 scoring the detections against the simulator's truth ...")
    truth, meta = load_truth(result.truth_path)
    detections = load_detections([Path(p) for _, p in jobs])
    half = meta["sample_rate_hz"] / 2
    score = score_detections(truth, detections, meta["sensors"], meta["duration_s"],
                             band_hz=(meta["center_freq_hz"] - half, meta["center_freq_hz"] + half))
    print(format_score(score))
    (out_dir / "score.json").write_text(json.dumps(score.to_dict(), indent=2) + "\n", encoding="utf-8")
    if args.out is None:
        shutil.rmtree(out_dir, ignore_errors=True)
    else:
        print(f"recordings, truth.jsonl, detections and score.json are in {out_dir}")
    return 0
