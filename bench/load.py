"""Load: many sensor nodes on loopback against one ``cellwatch serve``, at rates well above a prison's.

``python -m bench.load [--quick] [--out DIR] [--nodes N]`` writes ``load.json`` and ``load.png``.

What runs, all on 127.0.0.1:

* ``cellwatch serve`` in its own process: SQLite (WAL, ``synchronous=FULL``), CURVE on,
  the real event engine, the HTTP API and the live feed.
* **Load nodes** (200; 20 in quick mode): the real node delivery code, one
  :class:`sdr.sender.DetectionSender` per node (its own CURVE key pair, DEALER socket, I/O
  thread and durable SQLite outbox), spread over a few worker processes. Their outboxes
  sit on ``/dev/shm`` where it exists: a node's disk is its own, not the service's, and
  200 nodes fsyncing one shared disk would measure that disk. Each node submits its
  detections every 0.1 s at its share of the offered rate, on its own 200 kHz channel;
  the site plan does not name these nodes, so the engine stores and skips them.
* **A real phone load on the site's 12 sensors**, in the main process: GSM calls
  synthesized from the demo prison's propagation model (4 s each, a new cell every 6 s),
  replayed at real time (each burst submitted when its time comes), which the engine
  correlates and locates while the load runs. A client follows ``/api/live``; the latency
  of each ``event.detections`` message is its arrival time minus the newest burst it
  carries (as ``bench.service_ingest``'s ``update_latency``).

The offered rate is stepped up (full: 5, 10, 20, 40 detections/s per node for 60 s each,
i.e. 1,000 to 8,000/s from 200 nodes, plus ~1,200/s from the calls; quick: 10 and 40/s per
node for 10 s). For each step: detections offered, stored and acknowledged per second
(from the nodes' acks), the backlog left in the outboxes at its end, and the live-feed
latency; over the whole run, the service's RSS every second (from ``/proc``) and its CPU.
A step is **held** when the acknowledged rate keeps up with the offered one (>= 95 %) and
the backlog at its end is under 2 s of load. At the end every outbox is flushed and the
database is checked: every detection submitted is stored exactly once (nothing lost,
nothing twice) whatever the step.

For scale: a GSM call heard by 12 sensors makes ~2,600 detections/s (one 577 us burst
per TDMA frame per sensor); a prison with a few calls at once and LTE phones in standby
produces some hundreds to a few thousand detections/s site-wide.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

log = logging.getLogger(__name__)

SITE_SENSORS = ["A1-S1", "A1-S2", "A1-S3", "A2-S1", "A2-S2", "A2-S3", "B1-S1", "B1-S2", "B1-S3", "B2-S1", "B2-S2",
                "B2-S3"]
CALL_PLACES = ["A-1-05", "B-2-03", "A-2-12", "B-1-08", "A-1-14", "B-2-10"]
CALL_S, CALL_EVERY_S = 4.0, 6.0
TICK_S = 0.1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def load_node_ids(n: int) -> list[str]:
    return [f"load-{i:03d}" for i in range(n)]


# -- the load nodes (worker processes) ---------------------------------------------------------------------


def _load_worker(node_ids: list[str], first_channel: int, keys_dir: str, outbox_dir: str, endpoint: str,
                 server_public: bytes, steps: list[tuple[float, float]], conn: Any) -> None:
    """Run ``node_ids`` as real senders through the rate ``steps`` [(per-node rate, seconds)], reporting
    (t, n_offered, n_acked, n_pending) every second on ``conn``; at the end flush and report totals."""
    from dsp.records import Detection
    from sdr.sender import DetectionSender
    from service.keys import load_keypair

    logging.basicConfig(level=logging.WARNING)
    senders = [DetectionSender(endpoint, node, Path(outbox_dir) / f"{node}.outbox.sqlite",
                               server_public_key=server_public, client_keys=load_keypair(Path(keys_dir) / f"{node}.key_secret"),
                               batch_size=200, max_in_flight=4, ack_timeout_s=5.0, reconnect_max_s=1.0).start()
               for node in node_ids]
    freqs = [880.2e6 + 0.2e6 * ((first_channel + k) % 170) for k in range(len(node_ids))]
    owed = np.zeros(len(node_ids))
    n_offered = 0
    conn.send(("ready", len(senders)))
    start = conn.recv()  # the common start time (wall clock)
    while time.time() < start:
        time.sleep(0.01)
    next_report = time.time() + 1.0
    for rate, seconds in steps:
        end = time.time() + seconds
        while True:
            now = time.time()
            if now >= end:
                break
            owed += rate * TICK_S
            for k, sender in enumerate(senders):
                n = int(owed[k])
                if n:
                    owed[k] -= n
                    sender.submit([Detection(node_ids[k], now + i * 1e-3, 546e-6, freqs[k], 200e3, -40.0, 20.0, "gsm",
                                             rssi_dbm=-70.0) for i in range(n)])
                    n_offered += n
            if now >= next_report:
                stats = [s.stats() for s in senders]
                conn.send(("tick", now, n_offered, sum(s.n_acked for s in stats), sum(s.n_pending for s in stats)))
                next_report += 1.0
            time.sleep(max(0.0, TICK_S - (time.time() - now)))
    flushed = all(s.flush(300.0) for s in senders)
    stats = [s.stats() for s in senders]
    conn.send(("done", n_offered, sum(s.n_acked for s in stats), sum(s.n_resent for s in stats), flushed,
               sum(s.n_write_failures + s.n_invalid for s in stats)))
    for s in senders:
        s.close()


# -- the phone calls on the site's sensors (main process) --------------------------------------------------


class CallPlayer(threading.Thread):
    """GSM calls on the site's sensors at real time, one cell after another, until stopped."""

    def __init__(self, svc: Any, outbox_dir: Path, duration_s: float, seed: int = 1) -> None:
        super().__init__(daemon=True)
        from bench.service_ingest import make_sender
        from calibration.site import load_site
        from service.settings import load_settings

        self.site = load_site(load_settings(svc.config).site)
        outbox_dir.mkdir(parents=True, exist_ok=True)
        self.senders = {s: make_sender(svc, s, outbox_dir, batch_size=200).start() for s in SITE_SENSORS}
        self.duration_s = duration_s
        self.seed = seed
        self.n_submitted = 0
        self.call_ends_s: list[float] = []

    def run(self) -> None:
        from bench.service_ingest import synth_call

        t0 = time.time() + 0.5
        k = 0
        while t0 + CALL_S < self._end_s:
            call = synth_call(self.site, CALL_PLACES[k % len(CALL_PLACES)], t0, CALL_S, seed=1000 * self.seed + k)
            self.call_ends_s.append(t0 + CALL_S)
            cursors = dict.fromkeys(call, 0)
            while any(cursors[s] < len(d) for s, d in call.items()):
                now = time.time()
                for sensor_id, dets in call.items():
                    i = j = cursors[sensor_id]
                    while j < len(dets) and dets[j].t_start_s + dets[j].duration_s <= now:
                        j += 1
                    if j > i:
                        self.senders[sensor_id].submit(dets[i:j])
                        self.n_submitted += j - i
                        cursors[sensor_id] = j
                time.sleep(0.02)
            k += 1
            t0 += CALL_EVERY_S
            while time.time() < t0 - 0.1:
                time.sleep(0.05)

    def start_for(self) -> None:
        self._end_s = time.time() + self.duration_s
        self.start()

    def finish(self) -> tuple[bool, int]:
        self.join(self.duration_s + 30.0)
        flushed = all(s.flush(120.0) for s in self.senders.values())
        for s in self.senders.values():
            s.close()
        return flushed, self.n_submitted


# -- measuring the service ---------------------------------------------------------------------------------


def _proc_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _proc_cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, 100 * q)) if len(values) else None


def _check_database(db_path: Path) -> dict[str, int]:
    with sqlite3.connect(db_path) as db:
        n = db.execute("SELECT COUNT(*) FROM detections").fetchone()[0]
        dup = db.execute("SELECT COUNT(*) FROM (SELECT 1 FROM detections GROUP BY node_id, stream_id, seq "
                         "HAVING COUNT(*) > 1)").fetchone()[0]
        gaps = db.execute("SELECT COALESCE(SUM(mx - n), 0) FROM (SELECT MAX(seq) AS mx, COUNT(*) AS n FROM detections "
                          "GROUP BY node_id, stream_id)").fetchone()[0]
    return {"n_stored": int(n), "n_duplicate_keys": int(dup), "n_seq_gaps": int(gaps)}


def run(out_dir: Path | None = None, quick: bool = False, n_nodes: int | None = None, tmp: Path | None = None,
        step_s: float | None = None, seed: int = 1) -> dict[str, Any]:
    """The whole measurement; writes ``load.json`` and ``load.png`` into ``out_dir``.

    ``step_s`` overrides the length of each rate step; ``seed`` varies the synthesized calls.
    """
    from bench.common import RESULTS_DIR, header, write_json
    from bench.service_ingest import SseReader, add_user, login, start_service, write_service_config

    out_dir = out_dir or RESULTS_DIR
    work = tmp or Path(tempfile.mkdtemp(prefix="cellwatch-bench-load-"))
    n_nodes = n_nodes or (20 if quick else 200)
    per_node_rates = [10.0, 40.0] if quick else [5.0, 10.0, 20.0, 40.0]
    step_s = step_s or (10.0 if quick else 60.0)
    steps = [(r, step_s) for r in per_node_rates]
    n_workers = 1 if n_nodes <= 25 else 4
    nodes = load_node_ids(n_nodes)
    shm = Path("/dev/shm")
    outboxes = Path(tempfile.mkdtemp(prefix="cellwatch-load-outbox-", dir=shm if shm.is_dir() else None))
    config = write_service_config(work, SITE_SENSORS + nodes,
                                  extra="[engine.correlation]\ntransmission_gap_s = 1.0\n")
    add_user(config)
    result: dict[str, Any] = header("load", quick)
    result.update({"n_nodes": n_nodes, "n_worker_processes": n_workers, "per_node_rates": per_node_rates,
                   "step_s": step_s, "sender": "sdr.sender.DetectionSender + sdr.outbox.Outbox (real node code), "
                                               "CURVE, one per node", "outbox_dir": str(outboxes)})
    svc = start_service(config, SITE_SENSORS)
    pid = svc.proc.pid
    ctx = mp.get_context("spawn")
    workers = []
    try:
        headers = login(svc.url)
        share = (n_nodes + n_workers - 1) // n_workers
        for w in range(n_workers):
            ids = nodes[w * share:(w + 1) * share]
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_load_worker, args=(ids, w * share, str(work / "keys"), str(outboxes),
                                                          svc.ingest, svc.server_public, steps, child), daemon=True)
            proc.start()
            workers.append((proc, parent))
        for _, conn in workers:
            if not conn.poll(120.0):
                raise RuntimeError("a load worker did not start")
            conn.recv()
        reader = SseReader(f"{svc.url}/api/live", headers, params={"types": "event.detections"})
        total_s = sum(s for _, s in steps)
        calls = CallPlayer(svc, work / "calls", total_s, seed)
        start = time.time() + 2.0
        for _, conn in workers:
            conn.send(start)
        while time.time() < start:
            time.sleep(0.01)
        calls.start_for()
        timeline: list[dict[str, float]] = []
        latest: dict[int, tuple[float, int, int, int]] = {}
        done: dict[int, tuple[Any, ...]] = {}
        cpu0 = _proc_cpu_s(pid)
        end = start + total_s
        next_sample = start + 1.0
        while time.time() < end + 0.5:
            for w, (_, conn) in enumerate(workers):
                while conn.poll():
                    message = conn.recv()
                    if message[0] == "tick":
                        latest[w] = message[1:]
                    elif message[0] == "done":
                        done[w] = message[1:]
            if time.time() >= next_sample:
                timeline.append({"t_s": time.time() - start, "rss_mb": _proc_rss_mb(pid) or float("nan"),
                                 "cpu_s": (_proc_cpu_s(pid) or 0.0) - (cpu0 or 0.0),
                                 "offered": float(sum(v[1] for v in latest.values())),
                                 "acked": float(sum(v[2] for v in latest.values())),
                                 "pending": float(sum(v[3] for v in latest.values()))})
                next_sample += 1.0
            time.sleep(0.05)
        totals = []
        for w, (proc, conn) in enumerate(workers):
            while w not in done:
                if not conn.poll(400.0):
                    raise RuntimeError("a load worker did not finish")
                message = conn.recv()
                if message[0] == "done":
                    done[w] = message[1:]
            totals.append(done[w])
            proc.join(30.0)
        calls_flushed, n_call = calls.finish()
        time.sleep(1.0)
        live = reader.drain()
        reader.close()
        metrics = httpx.get(f"{svc.url}/metrics", headers=headers, timeout=30.0).text
        result["service_metrics"] = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
                                     if line.startswith(("cellwatch_detections_stored", "cellwatch_ingest_duplicates",
                                                         "cellwatch_ingest_store_errors", "cellwatch_engine_lag",
                                                         "cellwatch_events{", "cellwatch_live_dropped"))}
    finally:
        result["service_exit_status"] = svc.stop()
        for proc, _ in workers:
            if proc.is_alive():
                proc.kill()

    n_load = sum(t[0] for t in totals)
    checked = _check_database(work / "cellwatch.sqlite")
    result["totals"] = {"n_load_offered": n_load, "n_load_acked": sum(t[1] for t in totals),
                        "n_resent": sum(t[2] for t in totals), "n_call_detections": n_call,
                        "all_flushed": all(t[3] for t in totals) and calls_flushed,
                        "n_refused_at_node": sum(t[4] for t in totals), **checked,
                        "nothing_lost": checked["n_stored"] == n_load + n_call and checked["n_duplicate_keys"] == 0
                        and checked["n_seq_gaps"] == 0}
    result["steps"] = _steps(timeline, steps, n_nodes, live, calls.call_ends_s, start)
    held = [s for s in result["steps"] if s["held"]]
    result["largest_load_held_per_s"] = max((s["offered_per_s"] for s in held), default=None)
    rss = [p["rss_mb"] for p in timeline if np.isfinite(p["rss_mb"])]
    half = rss[len(rss) // 2:]
    result["rss_mb"] = {"start": rss[0] if rss else None, "max": max(rss) if rss else None,
                        "end": rss[-1] if rss else None,
                        "slope_second_half_mb_per_min": float(np.polyfit(np.arange(len(half)), half, 1)[0] * 60)
                        if len(half) > 2 else None}
    lat = [m.received_s - m.data["t_s"] for m in live if not _near_call_end(m.data["t_s"], calls.call_ends_s)]
    result["live_latency_s"] = {"n": len(lat), "p50": _percentile(lat, 0.5), "p99": _percentile(lat, 0.99)}
    # the headline figures, at the top level (bench.run's summary takes those)
    result["nothing_lost"] = result["totals"]["nothing_lost"]
    result["live_latency_p50_s"], result["live_latency_p99_s"] = (result["live_latency_s"]["p50"],
                                                                  result["live_latency_s"]["p99"])
    result["rss_mb_max"] = result["rss_mb"]["max"]
    result["rss_slope_mb_per_min"] = result["rss_mb"]["slope_second_half_mb_per_min"]
    result["timeline"] = timeline
    write_json(out_dir / "load.json", result)
    _plot(result, out_dir / "load.png", [(m.received_s - start, m.received_s - m.data["t_s"]) for m in live])
    return result


def _near_call_end(t_s: float, ends: Sequence[float]) -> bool:
    """The message that closes a call carries its last burst, published a transmission gap later."""
    return any(0.0 <= end - t_s < 0.5 for end in ends)


def _steps(timeline: list[dict[str, float]], steps: list[tuple[float, float]], n_nodes: int, live: list[Any],
           call_ends: Sequence[float], start: float) -> list[dict[str, Any]]:
    out = []
    t0 = 0.0
    for rate, seconds in steps:
        t1 = t0 + seconds
        inside = [p for p in timeline if t0 + 1.0 <= p["t_s"] <= t1 + 0.5]
        if len(inside) >= 2:
            a, b = inside[0], inside[-1]
            dt = b["t_s"] - a["t_s"]
            offered = (b["offered"] - a["offered"]) / dt
            acked = (b["acked"] - a["acked"]) / dt
            pending_end = b["pending"]
            cpu = (b["cpu_s"] - a["cpu_s"]) / dt
            rss = max(p["rss_mb"] for p in inside)
        else:
            offered = acked = pending_end = cpu = rss = float("nan")
        lat = [m.received_s - m.data["t_s"] for m in live
               if t0 <= m.received_s - start < t1 and not _near_call_end(m.data["t_s"], call_ends)]
        out.append({"per_node_rate": rate, "target_per_s": rate * n_nodes, "offered_per_s": offered,
                    "acked_per_s": acked, "pending_at_end": pending_end, "service_cpu_cores": cpu,
                    "service_rss_mb_max": rss, "live_latency_p50_s": _percentile(lat, 0.5),
                    "live_latency_p99_s": _percentile(lat, 0.99), "n_live_messages": len(lat),
                    "held": bool(acked >= 0.95 * offered and pending_end <= 2.0 * offered)})
        t0 = t1
    return out


def _plot(result: dict[str, Any], path: Path, latency: list[tuple[float, float]]) -> None:
    from bench.common import pyplot, save_figure

    plt = pyplot()
    t = [p["t_s"] for p in result["timeline"]]
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    offered = np.diff([p["offered"] for p in result["timeline"]], prepend=0.0)
    acked = np.diff([p["acked"] for p in result["timeline"]], prepend=0.0)
    axes[0].plot(t, offered, label="offered by the load nodes")
    axes[0].plot(t, acked, label="stored and acknowledged")
    axes[0].set_ylabel("detections / s")
    axes[0].legend(loc="upper left")
    axes[0].set_title(f"{result['n_nodes']} nodes on loopback, + GSM calls on the 12 site sensors")
    if latency:
        axes[1].plot(*zip(*latency, strict=True), ".", markersize=3)
    axes[1].set_ylabel("live feed latency (s)")
    axes[2].plot(t, [p["rss_mb"] for p in result["timeline"]])
    axes[2].set_ylabel("service RSS (MB)")
    axes[2].set_xlabel("time (s)")
    save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 nodes, 20 s: a smoke test, not figures")
    parser.add_argument("--nodes", type=int, default=None, help="number of load nodes (default 200, quick 20)")
    parser.add_argument("--step-s", type=float, default=None, help="seconds per rate step (default 60, quick 10)")
    parser.add_argument("--out", type=Path, default=None, help="folder for load.json and load.png")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = run(args.out, quick=args.quick, n_nodes=args.nodes, step_s=args.step_s)
    for s in result["steps"]:
        print(f"{s['target_per_s']:6.0f}/s offered by {result['n_nodes']} nodes: {s['acked_per_s']:6.0f}/s stored and "
              f"acknowledged, backlog {s['pending_at_end']:.0f}, live feed p50 {s['live_latency_p50_s'] or 0:.2f} s "
              f"p99 {s['live_latency_p99_s'] or 0:.2f} s, service {s['service_cpu_cores']:.2f} cores "
              f"{s['service_rss_mb_max']:.0f} MB: {'held' if s['held'] else 'NOT held'}")
    t = result["totals"]
    print(json.dumps({k: t[k] for k in ("n_load_offered", "n_call_detections", "n_stored", "n_duplicate_keys",
                                        "nothing_lost")}))
    print(f"largest load held: {result['largest_load_held_per_s']}/s; RSS {result['rss_mb']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
