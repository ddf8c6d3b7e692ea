"""CPU of one ``cellwatch node`` process running two sources at 2.4 MS/s each in real time.

What is measured: a real node process (``python -m service.cli node --config ...``) with two
``replay`` sources paced in real time (``realtime = true, loop = true``), each replaying a
simulated recording of the demo prison at 2.4 MS/s (a GSM call, an LTE data session, an
SMS and a passer-by's call in its 2.4 MHz: bursts to detect, measure and deliver), its
detections delivered over ZeroMQ to an ``IngestServer`` in this process, which stores them
in SQLite. After a warm-up (imports, first epochs), the process's CPU time (user + system,
all threads, from ``/proc/PID/stat``) over the wall time of the measurement window is the
figure: ``cpu_fraction_of_one_core``. The replay sources cost what a live source costs in
conversion (cu8 to complex64); a live dongle adds its USB thread, and an ``rtl_tcp`` source
its socket reads (small next to the DSP).

Real time is checked, not assumed: the detections' delivery latency (stored time minus
burst time) must stay bounded — a node falling behind would show a growing latency — and
the heartbeats must report no dropped samples. The machine's load average is recorded: on
a busy machine CPU time per second of signal grows a little (caches are shared) and a
source may fall behind.

Secondary figure (``sim_one_source``): a node with one ``sim`` source in real time, i.e.
what each of the demo's simulated nodes costs with the simulator's rendering included.

``python -m bench.node_cpu [--quick] [--out DIR]`` writes ``node_cpu.json``; quick mode
measures a few seconds (a smoke test, not a figure).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, RESULTS_DIR, header, write_json

log = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SENSOR = "A1-S1"


def make_recording(out_dir: Path, duration_s: float, seed: int) -> Path:
    """A recording of the demo evening at one sensor, ``duration_s`` long from its 2nd second."""
    from calibration.site import load_site
    from sdr.scenario import load_scenario
    from sdr.simulate import Simulation

    scenario = load_scenario(REPO / "sdr" / "scenarios" / "demo_prison.toml")
    scenario = scenario.model_copy(update={"sensors": [SENSOR]})
    Simulation(load_site(REPO / "calibration" / "sites" / "demo_prison.toml"), scenario, seed=seed,
               duration_s=duration_s).run(out_dir)
    return out_dir / f"{SENSOR}.sigmf-meta"


def _cpu_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid``, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def _peak_rss_mb(pid: int) -> float | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return None


def measure_node(config_text: str, work: Path, warmup_s: float, measure_s: float) -> dict[str, Any]:
    """Run a node on ``config_text`` (its ``{endpoint}`` filled in) and measure its CPU over ``measure_s``."""
    from service.detection_log import DetectionLog
    from service.ingest import IngestServer

    work.mkdir(parents=True, exist_ok=True)
    store = DetectionLog(work / "ingest.sqlite")
    heartbeats: list[Any] = []

    class Store:
        def store_detections(self, node_id: str, stream_id: str, detections: Any) -> int:
            return store.store_detections(node_id, stream_id, detections)

        def store_heartbeat(self, node_id: str, heartbeat: Any, sender: Any) -> None:
            heartbeats.append((time.time(), heartbeat))

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    with IngestServer(Store(), bind="tcp://127.0.0.1:*", insecure=True) as ingest:
        config = work / "node.toml"
        config.write_text(config_text.replace("{endpoint}", ingest.endpoint))
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "node", "--config", str(config), "--quiet"],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(warmup_s)
            if proc.poll() is not None:
                raise RuntimeError(f"node exited early: {proc.stderr.read() if proc.stderr else ''}")
            load0 = os.getloadavg()[0]
            u0, s0 = _cpu_s(proc.pid)
            t0 = time.monotonic()
            wall0 = time.time()
            n0 = store.count()
            time.sleep(measure_s)
            u1, s1 = _cpu_s(proc.pid)
            t1 = time.monotonic()
            wall1 = time.time()
            n1 = store.count()
            rss_mb = _peak_rss_mb(proc.pid)
            load1 = os.getloadavg()[0]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
    window = [s for s in store.detections() if wall0 <= s.received_s <= wall1]
    store.close()
    latencies = np.array([s.received_s - s.detection.t_start_s for s in window])
    during = [hb for t, hb in heartbeats if wall0 <= t <= wall1]
    elapsed = t1 - t0
    cpu = (u1 - u0) + (s1 - s0)
    return {
        "measure_s": elapsed,
        "cpu_s": cpu,
        "cpu_fraction_of_one_core": cpu / elapsed,
        "user_fraction": (u1 - u0) / elapsed,
        "system_fraction": (s1 - s0) / elapsed,
        "n_detections": n1 - n0,
        "detections_per_s": (n1 - n0) / elapsed,
        "latency_s": {
            "median": float(np.median(latencies)) if latencies.size else None,
            "p99": float(np.quantile(latencies, 0.99)) if latencies.size else None,
            "max": float(latencies.max()) if latencies.size else None,
        },
        "n_heartbeats": len(during),
        "n_dropped_samples": during[-1].n_dropped_samples if during else None,
        "source_state": during[-1].source_state if during else None,
        "peak_rss_mb": rss_mb,
        "load_average_1min": [load0, load1],  # other work on the machine (n_cpus in machine)
        "exit_status": proc.returncode,
        "stderr_tail": (err or "")[-500:],
    }


REPLAY_CONFIG = """\
node_id = "bench"
heartbeat_s = 1.0
[service]
endpoint = "{{endpoint}}"
insecure = true
outbox = "{outbox}"
flush_timeout_s = 1.0
{sources}
"""

REPLAY_SOURCE = """\
[[sources]]
spec = "replay:{recording}"
options = {{ realtime = true, loop = true, timestamps = "now" }}
"""

SIM_SOURCE = """\
[[sources]]
spec = "sim:demo_prison:{sensor}"
center_freq_hz = 902.4e6
options = {{ seed = {seed}, realtime = true }}
"""


def run(out_dir: Path = RESULTS_DIR, quick: bool = False, seed: int = 1) -> dict[str, Any]:
    measure_s = 6.0 if quick else 60.0
    warmup_s = 4.0 if quick else 8.0
    result = header("node_cpu", quick)
    with tempfile.TemporaryDirectory(prefix="cellwatch-node-cpu-") as tmp:
        work = Path(tmp)
        recording = make_recording(work / "recording", 4.0 if quick else 20.0, seed)
        sources = "".join(REPLAY_SOURCE.format(recording=recording) for _ in range(2))
        config = REPLAY_CONFIG.format(outbox=work / "two" / "outbox.sqlite", sources=sources)
        log.info("node_cpu measuring two replay sources measure_s=%.0f", measure_s)
        two = measure_node(config, work / "two", warmup_s, measure_s)
        sim_sources = SIM_SOURCE.format(sensor=SENSOR, seed=seed)
        sim_config = REPLAY_CONFIG.format(outbox=work / "sim" / "outbox.sqlite", sources=sim_sources)
        log.info("node_cpu measuring one sim source measure_s=%.0f", measure_s)
        sim = measure_node(sim_config, work / "sim", warmup_s + 2.0, measure_s)
    result.update({
        "sample_rate_hz": 2.4e6,
        "n_sources": 2,
        "source": "replay, real time, looped, of a simulated 902.4 MHz recording (demo evening)",
        "cpu_fraction_of_one_core": two["cpu_fraction_of_one_core"],
        "two_replay_sources": two,
        "sim_one_source": sim,
    })
    path = write_json(out_dir / "node_cpu.json", result)
    log.info("node_cpu cpu_fraction=%.3f detections_per_s=%.0f latency_median_s=%s path=%s",
             two["cpu_fraction_of_one_core"], two["detections_per_s"], two["latency_s"]["median"], path)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.node_cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds: a smoke test, not a figure")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder (default bench/results)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    result = run(args.out, args.quick, args.seed)
    two, sim = result["two_replay_sources"], result["sim_one_source"]
    print(f"node, 2 sources x 2.4 MS/s in real time: {100 * two['cpu_fraction_of_one_core']:.1f} % of one core "
          f"({two['detections_per_s']:.0f} detections/s, median delivery latency "
          f"{two['latency_s']['median']:.2f} s, peak RSS {two['peak_rss_mb']:.0f} MB); "
          f"one sim source: {100 * sim['cpu_fraction_of_one_core']:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
