"""``cellwatch simulate``: the simulated prison's recordings and truth, no hardware needed."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from service.commands.common import progress

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "simulate",
        help="simulate phones in a site and write one SigMF recording per sensor plus truth.jsonl",
        description=(
            "Render what every sensor of SITE would record while the phones and interferers of "
            "SCENARIO transmit: real GSM/LTE/NR/UMTS uplink waveforms, multi-wall propagation "
            "with shadowing and fading, RTL-SDR impairments and 8-bit quantization. Writes "
            "OUT/<sensor>.sigmf-meta/.sigmf-data (truth bursts as annotations) and OUT/truth.jsonl. "
            "The same seed gives the same bytes."
        ),
        epilog="example: cellwatch simulate --site calibration/sites/demo_prison.toml "
               "--scenario recordings/scenarios/gsm_call.toml --out /tmp/sim --duration 5",
    )
    parser.add_argument("--site", type=Path, required=True, help="site file (TOML)")
    parser.add_argument("--scenario", type=Path, required=True, help="scenario file (TOML)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--duration", type=float, metavar="S", help="seconds to simulate (default: the scenario's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from calibration.site import load_site
    from sdr.scenario import load_scenario
    from sdr.simulate import Simulation

    site = load_site(args.site)
    scenario = load_scenario(args.scenario)
    sim = Simulation(site, scenario, seed=args.seed, duration_s=args.duration, scenario_source=str(args.scenario))
    started = time.perf_counter()
    with progress(sim.duration_s, f"simulating {len(sim.sensor_ids)} sensors") as bar:
        result = sim.run(args.out, progress=bar.update)
    elapsed = time.perf_counter() - started
    per_sensor_factor = sim.duration_s * len(sim.sensor_ids) / max(elapsed, 1e-9)
    print(f"wrote {len(result.recordings)} recordings ({result.duration_s:.1f} s each, "
          f"{sim.center_freq_hz / 1e6:.3f} MHz, {sim.sample_rate_hz / 1e6:.3f} MS/s) and "
          f"{result.n_bursts} truth bursts to {result.out_dir}")
    print(f"took {elapsed:.1f} s: {per_sensor_factor:.1f}x real time per sensor")
    return 0
