"""Service benchmarks: ingest throughput and live-feed latency of a real ``cellwatch serve``.

``python -m bench.service_ingest [--quick] [--out DIR]`` writes ``service_ingest.json``.

Both run the real thing on 127.0.0.1: ``cellwatch serve`` in its own process (SQLite WAL,
``synchronous=FULL``, CURVE on, the real event engine), sensor nodes played by
:class:`sdr.sender.DetectionSender` (durable outbox, batches, acks) in this process.

* **Throughput**: every node's outbox is filled first, then all senders start at once
  (batches of 500, two in flight); the figure is detections stored *and acknowledged* per
  second, from the start until every outbox is empty (each ack follows the database
  commit). ``throughput``: the site's sensors, each on its own channel, so the engine
  correlates and locates alongside, in the same process; ``throughput_ingest_only``:
  nodes the site plan does not name, whose detections the engine drops at once.
* **Latency**: a GSM call from a cell of the demo prison, synthesized from the site's
  propagation model, is replayed at real time (each burst submitted when its time
  comes, burst times = wall clock) by the nodes that hear it, while a client follows
  ``/api/live``. Per ``event.detections`` message (the bursts an event just gained),
  ``update_latency`` = its arrival time - the newest burst's time (the call still going);
  ``burst_latency``, per burst, = arrival of the first message that covers that burst's
  time - the burst's time (it includes the bursts only published when the call ends and
  its transmission is closed, ``transmission_gap_s`` later); and the time from the first
  burst to ``event.created``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import re
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger(__name__)

ADMIN = "bench-admin"
PASSWORD = "bench password 0123"
_URL_RE = re.compile(r"cellwatch serve: (http://\S+?)/? \(ingest (\S+?),")


def cellwatch_exe() -> str:
    exe = shutil.which("cellwatch", path=str(Path(sys.executable).parent)) or shutil.which("cellwatch")
    if exe is None:
        raise RuntimeError("the cellwatch command is not installed in this environment")
    return exe


@dataclass
class ServiceProcess:
    """A ``cellwatch serve`` process and what it takes to talk to it."""

    proc: subprocess.Popen[str]
    url: str
    ingest: str
    config: Path
    server_public: bytes
    node_keys: dict[str, Any]
    stderr_path: Path

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return int(self.proc.returncode)

    def log_text(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


def write_service_config(tmp: Path, node_ids: Sequence[str], *, site: Path | None = None, http_port: int = 0,
                         ingest_bind: str = "tcp://127.0.0.1:*", extra: str = "") -> Path:
    """A service.toml with CURVE keys for the service and each node (written under ``tmp``)."""
    from service.keys import create_keypair

    keys = tmp / "keys"
    allowed = tmp / "allowed"
    allowed.mkdir(parents=True, exist_ok=True)
    if not (keys / "service.key_secret").exists():
        create_keypair(keys, "service")
    for node in node_ids:
        if not (keys / f"{node}.key").exists():
            public, _ = create_keypair(keys, node)
            shutil.copy(public, allowed / public.name)
    if site is None:
        site = Path(__file__).resolve().parent.parent / "calibration" / "sites" / "demo_prison.toml"
    config = tmp / "service.toml"
    config.write_text(
        f'site = "{site}"\n'
        "[database]\n"
        'path = "cellwatch.sqlite"\n'
        "[ingest]\n"
        f'bind = "{ingest_bind}"\n'
        'server_key = "keys/service.key_secret"\n'
        'allowed_keys_dir = "allowed"\n'
        "[http]\n"
        'host = "127.0.0.1"\n'
        f"port = {http_port}\n"
        "graceful_shutdown_s = 1\n"
        "[security]\n"
        "password_hash_time_cost = 1\n"
        "password_hash_memory_kib = 8192\n"
        "login_max_failures = 1000\n" + extra,
        encoding="utf-8")
    return config


def add_user(config: Path, username: str = ADMIN, role: str = "admin", password: str = PASSWORD) -> None:
    result = subprocess.run([cellwatch_exe(), "users", "--config", str(config), "add", username, "--role", role,
                             "--password-stdin"], input=password + "\n", capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"cellwatch users add failed: {result.stderr.strip()}")


def start_service(config: Path, node_ids: Sequence[str], *, timeout_s: float = 30.0) -> ServiceProcess:
    """Start ``cellwatch serve`` and wait for the line that gives its URL and ingest endpoint."""
    from service.keys import load_keypair, load_public_key

    stderr_path = config.parent / f"serve-{time.monotonic_ns()}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    stderr = open(stderr_path, "w", encoding="utf-8")
    proc = subprocess.Popen([cellwatch_exe(), "serve", "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=stderr, text=True, env=env)
    stderr.close()
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    line = ""
    while not line:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"cellwatch serve did not start: {stderr_path.read_text()[-2000:]}")
        if selector.select(0.1):
            line = proc.stdout.readline()
    selector.close()
    match = _URL_RE.search(line)
    if match is None:
        proc.kill()
        raise RuntimeError(f"unexpected first line from cellwatch serve: {line!r}")
    keys = config.parent / "keys"
    url = match.group(1).rstrip("/")
    wait_healthy(url, deadline)
    return ServiceProcess(proc, url, match.group(2), config, load_public_key(keys / "service.key"),
                          {n: load_keypair(keys / f"{n}.key_secret") for n in node_ids}, stderr_path)


def wait_healthy(url: str, deadline: float) -> None:
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}/healthz never answered 200")
        time.sleep(0.05)


def login(url: str, username: str = ADMIN, password: str = PASSWORD) -> dict[str, str]:
    r = httpx.post(f"{url}/api/auth/login", json={"username": username, "password": password}, timeout=10.0)
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['token']}"}


def make_sender(svc: ServiceProcess, node_id: str, outbox_dir: Path, **options: Any) -> Any:
    from sdr.sender import DetectionSender

    return DetectionSender(svc.ingest, node_id, outbox_dir / f"{node_id}.outbox.sqlite",
                           server_public_key=svc.server_public, client_keys=svc.node_keys[node_id],
                           **options)


@dataclass
class SseMessage:
    id: int
    type: str
    data: dict[str, Any]
    received_s: float


class SseReader:
    """Follows an SSE stream in a thread; messages land on ``messages`` with their arrival time."""

    def __init__(self, url: str, headers: dict[str, str], params: dict[str, Any] | None = None) -> None:
        self.messages: queue.Queue[SseMessage] = queue.Queue()
        self.connected = threading.Event()
        self.ended = threading.Event()
        self.status_code = 0
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=None))
        self._thread = threading.Thread(target=self._run, args=(url, headers, params), daemon=True)
        self._thread.start()
        if not self.connected.wait(10.0):
            raise RuntimeError("the live feed did not answer")

    def _run(self, url: str, headers: dict[str, str], params: dict[str, Any] | None) -> None:
        try:
            with self._client.stream("GET", url, headers=headers, params=params) as response:
                self.status_code = response.status_code
                self.connected.set()
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if not line:
                        if "data" in fields:
                            self.messages.put(SseMessage(int(fields.get("id", "0")), fields.get("event", "message"),
                                                         json.loads(fields["data"]), time.time()))
                        fields = {}
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self.connected.set()
            self.ended.set()

    def next(self, type_: str | None = None, timeout_s: float = 5.0) -> SseMessage:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {type_ or 'message'} on the live feed within {timeout_s} s")
            try:
                message = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            if type_ is None or message.type == type_:
                return message

    def drain(self) -> list[SseMessage]:
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self._client.close()
        self._thread.join(5.0)


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def node_detections(node_id: str, n: int, t0_s: float, channel: int) -> list[Any]:
    """``n`` GSM-like bursts of one node on its own 200 kHz channel, one per TDMA frame."""
    from dsp.records import Detection

    freq_hz = 880.2e6 + 0.2e6 * channel
    return [Detection(node_id, t0_s + i * 0.120 / 26.0, 546e-6, freq_hz, 200e3, -40.0, 20.0, "gsm",
                      rssi_dbm=-70.0) for i in range(n)]


def measure_throughput(svc: ServiceProcess, node_ids: Sequence[str], n_per_node: int, outbox_dir: Path,
                       timeout_s: float = 300.0) -> dict[str, Any]:
    """Fill every node's outbox, start all senders together, time until all is acknowledged."""
    outbox_dir.mkdir(parents=True, exist_ok=True)
    senders = [make_sender(svc, node, outbox_dir, batch_size=500, max_in_flight=2) for node in node_ids]
    try:
        t0 = time.time() - 60.0
        for k, (node, sender) in enumerate(zip(node_ids, senders, strict=True)):
            dets = node_detections(node, n_per_node, t0, k)
            for i in range(0, len(dets), 1000):
                sender.submit(dets[i:i + 1000])
        started = time.perf_counter()
        for sender in senders:
            sender.start()
        flushed = all(sender.flush(max(0.1, timeout_s - (time.perf_counter() - started))) for sender in senders)
        elapsed = time.perf_counter() - started
        n = n_per_node * len(senders)
        stats = [s.stats() for s in senders]
        return {"n_nodes": len(senders), "n_detections": n, "elapsed_s": elapsed, "all_acked": flushed,
                "detections_per_s": n / elapsed, "n_resent": sum(s.n_resent for s in stats),
                "n_acked": sum(s.n_acked for s in stats)}
    finally:
        for sender in senders:
            sender.close()


def measure_latency(svc: ServiceProcess, place_id: str, duration_s: float, outbox_dir: Path,
                    headers: dict[str, str], seed: int = 0, tx_power_dbm: float = 10.0,
                    close_wait_s: float = 6.0) -> dict[str, Any]:
    """Replay a synthesized call at real time through the nodes; follow it on the live feed."""
    from calibration.site import load_site
    from service.settings import load_settings

    site = load_site(load_settings(svc.config).site)
    t0 = time.time() + 0.5
    call = synth_call(site, place_id, t0, duration_s, seed=seed, tx_power_dbm=tx_power_dbm)
    heard = {s: d for s, d in call.items() if d}
    senders = {s: make_sender(svc, s, outbox_dir, batch_size=200).start() for s in heard}
    reader = SseReader(f"{svc.url}/api/live", headers, params={"types": "event.created,event.detections"})
    submitted: dict[str, int] = dict.fromkeys(heard, 0)
    try:
        while any(submitted[s] < len(d) for s, d in heard.items()):
            now = time.time()
            for sensor_id, dets in heard.items():
                k = submitted[sensor_id]
                j = k
                while j < len(dets) and dets[j].t_start_s + dets[j].duration_s <= now:
                    j += 1
                if j > k:
                    senders[sensor_id].submit(dets[k:j])
                    submitted[sensor_id] = j
            time.sleep(0.01)
        for sender in senders.values():
            sender.flush(10.0)
        last_burst_s = max(d.t_start_s for dets in heard.values() for d in dets)
        deadline = time.monotonic() + close_wait_s
        messages: list[SseMessage] = []
        while time.monotonic() < deadline:  # until the call is closed (transmission gap + margin)
            try:
                messages.append(reader.next(timeout_s=max(0.05, deadline - time.monotonic())))
            except AssertionError:
                break
            last = messages[-1]
            if last.type == "event.detections" and last.data["t_s"] >= last_burst_s:
                break  # the update that carries the last burst: the call is over
    finally:
        reader.close()
        for sender in senders.values():
            sender.close()
    created = [m for m in messages if m.type == "event.created"]
    updates = [m for m in messages if m.type == "event.detections"]
    bursts = sorted({d.t_start_s for dets in heard.values() for d in dets})
    published = sorted((m.data["t_s"], m.received_s) for m in updates)
    per_burst = []  # each burst: when the first message covering its time reached the feed
    k = 0
    for b in bursts:
        while k < len(published) and published[k][0] < b:
            k += 1
        if k < len(published):
            per_burst.append(published[k][1] - b)
    live = [m.received_s - m.data["t_s"] for m in updates if m.data["t_s"] < last_burst_s - 0.5]
    first_burst_s = bursts[0] if bursts else t0
    final = {}
    if created:
        event_id = created[0].data["event"]["event_id"]
        final = httpx.get(f"{svc.url}/api/events/{event_id}", headers=headers, timeout=10.0).json()
    return {
        "place": place_id, "duration_s": duration_s, "n_sensors_hearing": len(heard),
        "n_detections": sum(map(len, heard.values())), "n_bursts": len(bursts), "n_events_created": len(created),
        "first_cell": (created[0].data["event"]["cell"] or created[0].data["event"]["zone"]) if created else None,
        "final_cell": final.get("cell") or final.get("zone"), "final_confidence": final.get("confidence"),
        "final_n_bursts": final.get("n_bursts"),
        "first_event_after_first_burst_s": (created[0].received_s - first_burst_s) if created else None,
        "n_live_updates": len(updates),
        "update_latency_p50_s": _percentile(live, 0.5), "update_latency_p95_s": _percentile(live, 0.95),
        "burst_latency_p50_s": _percentile(per_burst, 0.5), "burst_latency_p95_s": _percentile(per_burst, 0.95),
        "n_bursts_published": len(per_burst),
    }


def synth_call(site: Any, place_id: str, t0_s: float, duration_s: float, *, freq_hz: float = 902.4e6,
               tx_power_dbm: float = 10.0, seed: int = 0, noise_dbm: float = -112.0,
               min_snr_db: float = 8.0) -> dict[str, list[Any]]:
    """Detections a GSM call from the middle of ``place_id`` makes at each sensor (by sensor id).

    One 546 us burst per TDMA frame (24 of every 26, TS 45.002 section 4.3.1), the level at
    each sensor from the site's propagation model plus 3 dB of fading per burst; a sensor
    reports a burst ``min_snr_db`` over its noise. ``seq`` counts per sensor from 1.
    """
    import numpy as np

    from calibration.propagation import PropagationModel
    from dsp.records import Detection

    frame_s = 0.120 / 26.0
    rng = np.random.default_rng(seed)
    place = site.places[site.place_index(place_id)]
    tx = np.array([*place.centroid, float(site.z_m(place.floor, 1.0))])
    mean_dbm = PropagationModel.for_site(site).received_power_dbm(site, tx_power_dbm, tx,
                                                                  np.arange(len(site.sensors)), freq_hz)
    frames = np.arange(int(duration_s / frame_s))
    frames = frames[frames % 26 < 24]
    out: dict[str, list[Any]] = {s.id: [] for s in site.sensors}
    for i, sensor in enumerate(site.sensors):
        levels = mean_dbm[i] + rng.normal(0.0, 3.0, frames.size)
        dets = out[sensor.id]
        for frame, level in zip(frames.tolist(), levels.tolist(), strict=True):
            snr = level - noise_dbm
            if snr >= min_snr_db:
                dets.append(Detection(sensor.id, t0_s + frame * frame_s, 546e-6, freq_hz, 200e3, level - 15.0, snr,
                                      "gsm", rssi_dbm=level, seq=len(dets) + 1))
    return out


@dataclass
class Run:
    tmp: Path
    results: dict[str, Any] = field(default_factory=dict)


def run(out_dir: Path | None = None, quick: bool = False, tmp: Path | None = None) -> dict[str, Any]:
    """Both measurements on a fresh service; writes ``service_ingest.json`` into ``out_dir``."""
    import tempfile

    from bench.common import RESULTS_DIR, header, write_json

    out_dir = out_dir or RESULTS_DIR
    work = tmp or Path(tempfile.mkdtemp(prefix="cellwatch-bench-service-"))
    n_nodes = 4 if quick else 12
    n_per_node = 2000 if quick else 20000
    sensors = ["A1-S1", "A1-S2", "A1-S3", "A2-S1", "A2-S2", "A2-S3", "B1-S1", "B1-S2", "B1-S3", "B2-S1", "B2-S2",
               "B2-S3"]
    others = [f"load-{i:02d}" for i in range(n_nodes)]  # nodes the site plan does not know: the engine skips them
    config = write_service_config(work, sensors + others)
    add_user(config)
    result: dict[str, Any] = header("service_ingest", quick)
    svc = start_service(config, sensors + others)
    try:
        headers = login(svc.url)
        result["latency"] = measure_latency(svc, "A-1-05", 3.0 if quick else 20.0, work, headers)
        result["throughput"] = measure_throughput(svc, sensors[:n_nodes], n_per_node, work / "site")
        result["throughput_ingest_only"] = measure_throughput(svc, others, n_per_node, work / "others")
        metrics = httpx.get(f"{svc.url}/metrics", headers=headers, timeout=10.0).text
        result["service_metrics"] = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
                                     if line.startswith(("cellwatch_detections_stored", "cellwatch_ingest_duplicates",
                                                         "cellwatch_event_latency"))}
    finally:
        result["service_exit_status"] = svc.stop()
    write_json(out_dir / "service_ingest.json", result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not figures")
    parser.add_argument("--out", type=Path, default=None, help="folder for service_ingest.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run(args.out, quick=args.quick)
    t, t0, lat = result["throughput"], result["throughput_ingest_only"], result["latency"]
    print(f"ingest: {t['detections_per_s']:.0f} detections/s stored and acknowledged with the engine locating them "
          f"({t['n_detections']} from {t['n_nodes']} nodes in {t['elapsed_s']:.1f} s, all acked: {t['all_acked']}, "
          f"{t['n_resent']} resent); {t0['detections_per_s']:.0f}/s for nodes the engine ignores")
    print(f"live feed: first event {lat['first_event_after_first_burst_s']:.2f} s after the first burst; "
          f"newest burst -> feed p50 {lat['update_latency_p50_s']:.2f} s, p95 {lat['update_latency_p95_s']:.2f} s "
          f"({lat['n_live_updates']} updates); every burst -> feed p50 {lat['burst_latency_p50_s']:.2f} s, "
          f"p95 {lat['burst_latency_p95_s']:.2f} s; cell {lat['first_cell']} then {lat['final_cell']} "
          f"(true {lat['place']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
