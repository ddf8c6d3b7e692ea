"""``cellwatch demo``: the whole system on the bundled demo prison, live, no hardware.

Starts, as separate processes on this machine: the service (``cellwatch serve``, a fresh
SQLite database in the work folder, CURVE keys made for the occasion, a ``demo`` admin
with a random password, printed), and one sensor node per sensor of the site
(``cellwatch node``), each with the simulated dongle of its corridor, all sharing one
scenario start time so that every node hears the same phones at the same moment. The
nodes detect bursts and deliver them over CURVE-encrypted ZeroMQ; the service locates the
phones and shows them on the dashboard. The demo evening (``sdr/scenarios/demo_prison.toml``)
is five minutes of calls, SMS and data from cells, staff phones, the yard and the street,
played in a loop.

Ctrl-C (or SIGTERM) stops the nodes first (they deliver what they hold), then the
service; ``--duration`` does the same by itself. A node that dies or is stopped by hand
leaves the others running (its sensor turns offline on the dashboard after
``--offline-after`` seconds).

``--offline`` runs the earlier, offline pipeline instead: simulate recordings of every
sensor, detect, and score the detections against the simulator's truth (no service).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import math
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any

from dsp.errors import InputError
from service.commands.common import progress

log = logging.getLogger(__name__)

DEMO_USER = "demo"
DEFAULT_PORT = 8080
DEFAULT_OFFLINE_AFTER_S = 10.0
SERVICE_START_S = 60.0  # the service prints its URL and answers /healthz within this
NODE_STOP_S = 20.0  # a node flushes its outbox (flush_timeout_s, 2 s) and joins its sender thread (up to 10 s)
SERVICE_STOP_S = 15.0
# Each node imports numpy/scipy and builds the scenario (~2.5 s of CPU): the nodes start
# together and begin the scenario at one moment, when all should be up.
START_MARGIN_S = 4.0
START_MARGIN_PER_NODE_CPU_S = 2.5
STEADY_AFTER_S = 10.0  # CPU is measured from this long after the scenario's start (start-up is over)
MAX_LAG_S = 5.0  # a node stalled this long by a busy machine skips ahead (catches up below that)
# 55 ms blocks (half a detector epoch of 1024 frames of 256): 5-10 % less CPU than 27 ms ones
BLOCK_SAMPLES = 131_072
_SERVE_LINE_RE = re.compile(r"cellwatch serve: (http://\S+) \(ingest (\S+?),")
_LAG_RE = re.compile(r"sim_lag .*?lag_s_mean=([\d.]+) lag_s_max=([\d.]+) render_cpu=([\d.]+) dropped=(\d+)")
PR_SET_PDEATHSIG = 1


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the whole system on the bundled demo prison: service, dashboard, 12 simulated sensor nodes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"dashboard port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="stop by itself after this many seconds (default: run until Ctrl-C); "
                             "with --offline, the seconds of the demo evening to simulate (default 30)")
    parser.add_argument("--site", type=Path, metavar="FILE", help="site file (default: the bundled demo prison)")
    parser.add_argument("--scenario", type=Path, metavar="FILE",
                        help="scenario file (default: the bundled demo evening, played in a loop)")
    parser.add_argument("--workdir", type=Path, metavar="DIR",
                        help="keep the database, keys, configs and logs in this folder (default: a temporary "
                             "folder, removed at the end)")
    parser.add_argument("--info-json", type=Path, metavar="FILE",
                        help="write the URL, login, process ids and scenario start here once the dashboard answers")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the simulation (default 0)")
    parser.add_argument("--offline-after", type=float, default=DEFAULT_OFFLINE_AFTER_S, metavar="S",
                        help=f"a sensor silent this long shows offline (default {DEFAULT_OFFLINE_AFTER_S:g} s)")
    parser.add_argument("--offline", action="store_true",
                        help="no service: simulate recordings, detect, score against the truth, print the score")
    offline = parser.add_argument_group("with --offline")
    offline.add_argument("--out", type=Path, help="keep the recordings, truth and detections in this folder")
    offline.add_argument("--jobs", type=int, default=2, help="detector processes in parallel (default 2)")
    parser.set_defaults(handler=run)


def demo_site_path() -> Path:
    return Path(str(resources.files("calibration") / "sites" / "demo_prison.toml"))


def demo_scenario_path() -> Path:
    return Path(str(resources.files("sdr") / "scenarios" / "demo_prison.toml"))


def run(args: argparse.Namespace) -> int:
    _compile_detector()
    if args.offline:
        return run_offline(args)
    return run_live(args)


def _compile_detector() -> None:
    """Compile the detector's kernels here, once, before the nodes or workers start: on a
    fresh install each of them would otherwise compile the same ~50 kernels at once."""
    from dsp.warmup import compile_kernels

    seconds = compile_kernels()
    if seconds > 2.0:
        _say(f"detector compiled in {seconds:.0f} s (once: later runs load it from the cache)")


# ---------------------------------------------------------------------------------------------
# live: service + nodes


@dataclass
class DemoPlan:
    """What the demo will run, checked before anything starts."""

    site_path: Path
    scenario_path: Path
    site_name: str
    scenario_name: str
    scenario_duration_s: float
    sensors: list[str]
    center_freq_hz: int
    seed: int


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    reported: bool = False  # its unexpected exit was already reported


@dataclass
class Demo:
    """The running demo's processes and files (:func:`_shutdown` ends them, nodes first)."""

    plan: DemoPlan
    workdir: Path
    temporary: bool
    service: Child | None = None
    nodes: dict[str, Child] = field(default_factory=dict)
    running_since: float | None = None  # monotonic, when the first process was started
    start_utc: float | None = None  # the scenario's second 0 on the wall clock
    cpu_s: dict[str, float] = field(default_factory=dict)  # per child, CPU seconds just before the stop
    steady_cpu_s: dict[str, float] = field(default_factory=dict)  # per child, once every node runs the scenario
    steady_since: float | None = None  # monotonic, when steady_cpu_s was taken
    stopped_at: float | None = None  # monotonic, when the stop began

    def children(self) -> list[Child]:
        return [*self.nodes.values(), *([self.service] if self.service else [])]


def _check_positive(value: float | None, flag: str) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise InputError("command line", flag, f"must be a positive number of seconds, got {value:g}")


def make_plan(args: argparse.Namespace) -> DemoPlan:
    """Load and cross-check site and scenario: every mistake is an InputError before anything starts."""
    from calibration.site import load_site
    from dsp import activity
    from sdr.scenario import check_against_site, load_scenario

    _check_positive(args.duration, "--duration")
    _check_positive(args.offline_after, "--offline-after")
    if not 0 <= args.port <= 65535:
        raise InputError("command line", "--port", f"must be 0-65535, got {args.port}")
    if args.seed < 0:
        raise InputError("command line", "--seed", f"must be a non-negative integer, got {args.seed}")
    site_path = (args.site or demo_site_path()).resolve()
    scenario_path = (args.scenario or demo_scenario_path()).resolve()
    for path, flag in ((site_path, "--site"), (scenario_path, "--scenario")):
        if not path.is_file():
            raise InputError(str(path), None, f"no such file ({flag})")
    site = load_site(site_path)
    scenario = load_scenario(scenario_path)
    check_against_site(scenario, site, str(scenario_path))
    sensors = list(scenario.sensors or [s.id for s in site.sensors])
    if not sensors:
        raise InputError(str(site_path), "sensors", "the site has no sensors to simulate")
    center = scenario.receiver.center_freq_hz
    if center is None:  # as sdr.simulate.Simulation tunes: the first phone's channel
        probe = [activity.nominal_freq_hz(p) for p in scenario.phones]
        probe = probe or [i.freq_hz for i in scenario.interferers]
        center = probe[0] if probe else 902.4e6
    return DemoPlan(site_path, scenario_path, site.name, scenario.name, scenario.duration_s, sensors,
                    int(round(center)), args.seed)


def _toml_str(value: object) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(str(value))


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the demo process dies, even by SIGKILL (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _cellwatch_command() -> list[str]:
    exe = Path(sys.executable).parent / "cellwatch"
    return [str(exe)] if exe.is_file() and os.access(exe, os.X_OK) else [sys.executable, "-m", "service.cli"]


def _spawn(name: str, args: Sequence[str], log_path: Path, *, stdout_pipe: bool = False) -> Child:
    """A child in its own process group (a terminal's Ctrl-C reaches only the demo, which
    stops the children in order), dying with the demo on Linux."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the node children raise their malloc thresholds (dsp.allocator)
    with open(log_path, "ab") as log_file:  # the child has its own copy of the descriptor
        proc = subprocess.Popen(
            [*_cellwatch_command(), *args], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else log_file, stderr=log_file, env=env,
            process_group=0, preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    return Child(name, proc, log_path)


def _check_port(port: int) -> None:
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise InputError("command line", "--port", f"cannot listen on 127.0.0.1:{port}: {exc.strerror} "
                             "(choose another with --port, or 0 for any free port)") from None


def _prepare_workdir(args: argparse.Namespace) -> tuple[Path, bool]:
    if args.workdir is None:
        return Path(tempfile.mkdtemp(prefix="cellwatch-demo-")), True
    workdir = args.workdir.resolve()
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(str(workdir), None, f"cannot create the work folder: {exc.strerror}") from None
    leftovers = [n for n in ("service.toml", "cellwatch.sqlite", "keys") if (workdir / n).exists()]
    if leftovers:
        raise InputError(str(workdir), None, f"holds a previous demo ({', '.join(leftovers)}): the demo starts "
                         "from a fresh database; give an empty folder or delete these")
    return workdir, False


def write_service_config(workdir: Path, plan: DemoPlan, port: int, offline_after_s: float) -> Path:
    """Keys for the service and every node, and the service's TOML (paths relative to it)."""
    from service.keys import create_keypair

    keys, allowed = workdir / "keys", workdir / "allowed"
    allowed.mkdir(parents=True, exist_ok=True)
    create_keypair(keys, "service")
    for node_id in plan.sensors:
        public, _ = create_keypair(keys, node_id)
        shutil.copy(public, allowed / public.name)
    path = workdir / "service.toml"
    path.write_text(
        "# written by cellwatch demo\n"
        f"site = {_toml_str(plan.site_path)}\n"
        "[database]\n"
        'path = "cellwatch.sqlite"\n'
        "[ingest]\n"
        'bind = "tcp://127.0.0.1:*"              # any free port: the nodes are told which\n'
        'server_key = "keys/service.key_secret"\n'
        'allowed_keys_dir = "allowed"\n'
        "[http]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        "graceful_shutdown_s = 1\n"
        "[sensors]\n"
        f"offline_after_s = {offline_after_s!r}\n",
        encoding="utf-8")
    return path


def create_demo_user(service_config: Path) -> str:
    """The ``demo`` admin with a fresh random password (returned), written before the service starts."""
    from service.passwords import Passwords, check_password
    from service.settings import load_settings
    from service.store import open_store

    settings = load_settings(service_config)
    security = settings.security
    password = check_password(secrets.token_urlsafe(12), security.password_min_length)
    store = open_store(settings.database_url)
    try:
        hashed = Passwords(security.password_hash_time_cost, security.password_hash_memory_kib).hash(password)
        store.create_user(DEMO_USER, "admin", hashed, actor="cli:cellwatch-demo")
    finally:
        store.close()
    return password


def write_node_config(workdir: Path, plan: DemoPlan, node_id: str, endpoint: str, start_utc: float,
                      heartbeat_s: float) -> Path:
    """One node: its simulated dongle fixed on the scenario's tuning (no scanning), in real time."""
    nodes = workdir / "nodes"
    nodes.mkdir(exist_ok=True)
    path = nodes / f"{node_id}.toml"
    spec = f"sim:{plan.site_path}:{plan.scenario_path}:{node_id}"
    path.write_text(
        "# written by cellwatch demo: one simulated sensor of the demo prison\n"
        f"node_id = {_toml_str(node_id)}\n"
        f"heartbeat_s = {heartbeat_s!r}\n"
        "[service]\n"
        f"endpoint = {_toml_str(endpoint)}\n"
        'server_key = "../keys/service.key"\n'
        f"node_key = {_toml_str(f'../keys/{node_id}.key_secret')}\n"
        f"outbox = {_toml_str(f'{node_id}.outbox.sqlite')}\n"
        "flush_timeout_s = 2.0\n"
        "[[sources]]\n"
        f"spec = {_toml_str(spec)}\n"
        f"center_freq_hz = {plan.center_freq_hz}\n"
        f"options = {{ seed = {plan.seed}, realtime = true, loop = true, start_utc = {start_utc!r}, "
        f'render = "fast", max_lag_s = {MAX_LAG_S!r}, block_samples = {BLOCK_SAMPLES} }}\n',
        encoding="utf-8")
    return path


def _read_serve_line(child: Child, deadline: float, stop: _Stop) -> tuple[str, str, bytes]:
    """The URL and ingest endpoint from ``cellwatch serve``'s first stdout line, and what followed it."""
    stdout = child.proc.stdout
    assert stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(stdout, selectors.EVENT_READ)
    line = b""
    try:
        while not line.endswith(b"\n"):
            if stop.event.is_set():
                raise _StopRequestedError
            if time.monotonic() > deadline:
                raise DemoError(f"the service did not start within {SERVICE_START_S:g} s", child)
            if selector.select(0.2):
                chunk = os.read(stdout.fileno(), 4096)
                if not chunk:
                    raise DemoError("the service exited while starting", child)
                line += chunk
    finally:
        selector.close()
    first, _, rest = line.partition(b"\n")
    match = _SERVE_LINE_RE.search(first.decode("utf-8", "replace"))
    if match is None:
        raise DemoError(f"unexpected first line from cellwatch serve: {first!r}", child)
    return match.group(1), match.group(2), rest


def _drain(stream: IO[bytes], log_path: Path, first: bytes) -> None:
    """Whatever else the service prints goes to its log (a full pipe would block it). Started
    once every child is spawned: ``preexec_fn`` is not safe while other threads run."""
    with open(log_path, "ab") as out:
        out.write(first)
        for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
            out.write(chunk)
            out.flush()


def _wait_healthy(url: str, child: Child, deadline: float, stop: _Stop) -> None:
    while not stop.event.is_set():
        try:
            with urllib.request.urlopen(url + "healthz", timeout=2.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if child.proc.poll() is not None:
            raise DemoError("the service exited while starting", child)
        if time.monotonic() > deadline:
            raise DemoError(f"{url}healthz did not answer within {SERVICE_START_S:g} s", child)
        time.sleep(0.1)
    raise _StopRequestedError


def write_info_json(path: Path, info: dict[str, Any]) -> None:
    """Atomically: a reader sees the whole file or none."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(info, out, indent=2)
            out.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _StopRequestedError(Exception):
    """Ctrl-C (or SIGTERM) while starting: stop what has started, as after a normal run."""


class DemoError(RuntimeError):
    """A child process failed: the message, and the child whose log tells why."""

    def __init__(self, message: str, child: Child | None = None) -> None:
        super().__init__(message)
        self.child = child


def _log_tail(path: Path, n_lines: int = 12) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in lines[-n_lines:])


def _say(text: str) -> None:
    print(f"cellwatch demo: {text}", flush=True)


def _note(text: str) -> None:
    print(f"cellwatch demo: {text}", file=sys.stderr, flush=True)


class _Stop:
    """SIGINT/SIGTERM: a first one asks for a clean stop, a second one for a quick one."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.hurry = False
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.event.is_set():
            self.hurry = True
        self.signal_name = signal.Signals(signum).name
        self.event.set()


def run_live(args: argparse.Namespace) -> int:
    plan = make_plan(args)
    _check_port(args.port)
    workdir, temporary = _prepare_workdir(args)
    demo = Demo(plan, workdir, temporary)
    started = time.monotonic()
    stop_at = None if args.duration is None else started + args.duration
    failed = False
    with _Stop() as stop:
        try:
            _start(demo, args, stop)
            _supervise(demo, stop, stop_at)
        except _StopRequestedError:
            pass
        except DemoError as exc:
            failed = True
            _note(f"error: {exc}")
            if exc.child is not None:
                _note(f"last lines of {exc.child.log_path}:\n{_log_tail(exc.child.log_path)}")
        finally:
            _shutdown(demo, stop)
    if demo.stopped_at is not None:
        _report_cpu(demo, demo.stopped_at)
    _report_lag(demo)
    if failed or not temporary:
        _note(f"database, keys, configs and logs are in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    _say("stopped")
    return 1 if failed else 0


def _start(demo: Demo, args: argparse.Namespace, stop: _Stop) -> None:
    plan, workdir = demo.plan, demo.workdir
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    loop = f"{plan.scenario_duration_s:g} s, looped"
    _say(f"{plan.site_name}: service and {len(plan.sensors)} simulated sensor nodes, "
         f"scenario {plan.scenario_name!r} ({loop}) at {plan.center_freq_hz / 1e6:g} MHz")
    config = write_service_config(workdir, plan, args.port, args.offline_after)
    password = create_demo_user(config)
    deadline = time.monotonic() + SERVICE_START_S
    demo.running_since = time.monotonic()
    demo.service = _spawn("service", ["serve", "--config", str(config)], logs / "service.log", stdout_pipe=True)
    url, endpoint, rest = _read_serve_line(demo.service, deadline, stop)
    n_cpus = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    start_utc = round(time.time() + START_MARGIN_S + START_MARGIN_PER_NODE_CPU_S * len(plan.sensors) / n_cpus, 3)
    demo.start_utc = start_utc
    heartbeat_s = max(0.5, min(5.0, args.offline_after / 4.0))
    for node_id in plan.sensors:
        node_config = write_node_config(workdir, plan, node_id, endpoint, start_utc, heartbeat_s)
        demo.nodes[node_id] = _spawn(f"node {node_id}", ["node", "--config", str(node_config)],
                                     logs / f"node-{node_id}.log")
    threading.Thread(target=_drain, args=(demo.service.proc.stdout, demo.service.log_path, rest), daemon=True).start()
    _wait_healthy(url, demo.service, deadline, stop)
    if args.info_json is not None:  # before the lines: whoever reads them finds the file
        write_info_json(args.info_json, {
            "url": url, "ingest": endpoint, "username": DEMO_USER, "password": password, "workdir": str(workdir),
            "service_pid": demo.service.proc.pid,
            "nodes": {node_id: {"pid": child.proc.pid, "sensors": [node_id]} for node_id, child in demo.nodes.items()},
            "site": str(plan.site_path), "scenario": str(plan.scenario_path), "start_utc": start_utc,
        })
    _say(f"dashboard {url}")
    _say(f"login {DEMO_USER} / {password}")
    until = "until Ctrl-C" if args.duration is None else f"for {args.duration:g} s"
    _note(f"scenario second 0 at {time.strftime('%H:%M:%S', time.localtime(start_utc))}; running {until}; "
          f"logs in {logs}")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process, all its threads (Linux ``/proc``), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _snapshot_cpu(demo: Demo) -> dict[str, float]:
    out = {}
    for child in demo.children():
        value = cpu_seconds(child.proc.pid) if child.proc.poll() is None else None
        if value is not None:
            out[child.name] = value
    return out


def _cpu_text(cpu_s: dict[str, float], elapsed_s: float) -> str:
    service = cpu_s.get("service")
    nodes = [v / elapsed_s for k, v in cpu_s.items() if k != "service"]
    parts = [] if service is None else [f"service {service / elapsed_s:.2f}"]
    if nodes:
        parts.append(f"{len(nodes)} nodes {sum(nodes):.2f} (each {min(nodes):.3f}-{max(nodes):.3f})")
    return f"{', '.join(parts)}; total {sum(cpu_s.values()) / elapsed_s:.2f}"


def _report_cpu(demo: Demo, stopped_at: float) -> None:
    """CPU per process (Linux), in cores: over the whole run, and once every node ran the scenario."""
    if demo.running_since is None or not demo.cpu_s:
        return
    _note(f"cpu in cores over {stopped_at - demo.running_since:.0f} s, start-up included: "
          f"{_cpu_text(demo.cpu_s, stopped_at - demo.running_since)}")
    if demo.steady_since is not None and stopped_at - demo.steady_since >= 10.0:
        steady = {k: v - demo.steady_cpu_s[k] for k, v in demo.cpu_s.items() if k in demo.steady_cpu_s}
        _note(f"cpu in cores over the last {stopped_at - demo.steady_since:.0f} s, all nodes running: "
              f"{_cpu_text(steady, stopped_at - demo.steady_since)}")


def _has_opened(child: Child) -> bool:
    """The node's simulated dongle runs (its start-up is over), or the node is gone."""
    if child.proc.poll() is not None:
        return True
    try:
        return b"sim_open " in child.log_path.read_bytes()
    except OSError:
        return False


def _supervise(demo: Demo, stop: _Stop, stop_at: float | None) -> None:
    """Wait for the end (signal or duration); a service that dies ends the demo, a node that dies does not."""
    while not stop.event.is_set():
        if stop_at is not None and time.monotonic() >= stop_at:
            return
        if demo.steady_since is None and demo.start_utc is not None and time.time() > demo.start_utc + STEADY_AFTER_S \
                and all(_has_opened(child) for child in demo.nodes.values()):
            demo.steady_cpu_s = _snapshot_cpu(demo)
            demo.steady_since = time.monotonic()
        service = demo.service
        if service is not None and service.proc.poll() is not None:
            raise DemoError(f"the service exited (status {service.proc.returncode})", service)
        for child in demo.nodes.values():
            if child.proc.poll() is not None and not child.reported:
                child.reported = True
                _note(f"{child.name} exited (status {child.proc.returncode}); the others go on")
        wait_s = 0.5 if stop_at is None else max(0.0, min(0.5, stop_at - time.monotonic()))
        stop.event.wait(wait_s)


def _terminate(children: Sequence[Child], sig: int, timeout_s: float, stop: _Stop) -> None:
    """Send ``sig`` to each live child, wait up to ``timeout_s`` (shorter after a second Ctrl-C), then kill."""
    for child in children:
        if child.proc.poll() is None:
            try:
                child.proc.send_signal(sig)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout_s
    for child in children:
        while child.proc.poll() is None and time.monotonic() < deadline and not stop.hurry:
            time.sleep(0.05)
        if child.proc.poll() is None:
            _note(f"{child.name} did not stop in time: killed")
            child.proc.kill()
        child.proc.wait()


def _shutdown(demo: Demo, stop: _Stop) -> None:
    """Nodes first (they flush their outboxes to the live service), then the service."""
    demo.cpu_s = _snapshot_cpu(demo)
    demo.stopped_at = time.monotonic()
    nodes = list(demo.nodes.values())
    running = [c for c in nodes if c.proc.poll() is None]
    if running or demo.service is not None:
        reason = f"{stop.signal_name}" if stop.signal_name else "time is up" if demo.service else "error"
        _note(f"stopping ({reason}): {len(running)} node(s), then the service")
    _terminate(nodes, signal.SIGINT, NODE_STOP_S, stop)
    if demo.service is not None:
        _terminate([demo.service], signal.SIGTERM, SERVICE_STOP_S, stop)


def summarize_lag(log_paths: Sequence[Path]) -> dict[str, Any]:
    """The nodes' ``sim_lag`` log lines summed up: how far behind real time the simulated dongles ran."""
    per_node: dict[str, dict[str, float]] = {}
    for path in log_paths:
        means, maxima, cpu, dropped = [], [], [], 0
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for match in _LAG_RE.finditer(text):
            means.append(float(match.group(1)))
            maxima.append(float(match.group(2)))
            cpu.append(float(match.group(3)))
            dropped = int(match.group(4))
        if means:
            per_node[path.stem.removeprefix("node-")] = {
                "lag_s_mean": sum(means) / len(means), "lag_s_max": max(maxima), "lag_s_last_mean": means[-1],
                "render_cpu": sum(cpu) / len(cpu), "dropped_samples": dropped, "n_reports": len(means)}
    return per_node


def _report_lag(demo: Demo) -> None:
    per_node = summarize_lag([c.log_path for c in demo.nodes.values()])
    if not per_node:
        return
    worst = max(per_node.values(), key=lambda v: v["lag_s_max"])
    dropped = sum(int(v["dropped_samples"]) for v in per_node.values())
    _note(f"real time: {len(per_node)} node(s) reported; lag mean "
          f"{sum(v['lag_s_mean'] for v in per_node.values()) / len(per_node):.3f} s, worst {worst['lag_s_max']:.3f} s; "
          f"{dropped} samples skipped to catch up")


# ---------------------------------------------------------------------------------------------
# offline: simulate, detect, score


def _detect_one(args: tuple[str, str]) -> tuple[str, int, float]:
    from sdr.recording import open_recording
    from service.commands.detect import write_detections

    meta_path, out_path = args
    recording = open_recording(meta_path)
    started = time.perf_counter()
    with open(out_path, "w", encoding="utf-8") as out:
        n = write_detections(recording, out)
    return recording.info.sensor_id, n, time.perf_counter() - started


def run_offline(args: argparse.Namespace) -> int:
    """The recordings of every sensor, their detections, and the score against the simulator's truth."""
    from calibration.site import load_site
    from dsp.scoring import format_score, score_detections
    from sdr.scenario import load_scenario
    from sdr.simulate import Simulation
    from service.commands.evaluate import load_detections, load_truth

    duration_s = 30.0 if args.duration is None else args.duration
    _check_positive(duration_s, "--duration")
    site_path = args.site or demo_site_path()
    scenario_path = args.scenario or demo_scenario_path()
    site = load_site(site_path)
    scenario = load_scenario(scenario_path)
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="cellwatch-demo-"))
    print(f"cellwatch demo: {site.name}, {len(site.cells)} cells, {len(site.sensors)} sensors")
    print(f"scenario '{scenario.name}': {scenario.description}")
    print(f"1/3 simulating {duration_s:g} s at {len(site.sensors)} sensors into {out_dir} ...", flush=True)
    sim = Simulation(site, scenario, seed=args.seed, duration_s=duration_s, scenario_source=str(scenario_path))
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
