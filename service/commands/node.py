"""``cellwatch node``: a sensor node (sources -> detector -> ZeroMQ sender), from node.toml or flags."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from dsp.errors import InputError
from service.commands.common import si_float

log = logging.getLogger(__name__)

EPILOG = """\
examples:
  cellwatch node --example-config > node.toml       a commented config to edit
  cellwatch node --config node.toml --check         check it and print the band plan
  cellwatch node --config node.toml                 run the node (Ctrl-C or SIGTERM stop it cleanly)
  cellwatch node --source rtlsdr:00000042 --gain 28 --node-id A1-S1 --service tcp://cellwatch:5557 \\
      --server-key keys/service.key --node-key keys/A1-S1.key_secret
  cellwatch node --source rtl_tcp://pi-corridor:1234 --gain 20 --freq 902.4M --node-id A1-S2 \\
      --service tcp://127.0.0.1:5557 --insecure
  cellwatch node --source replay:recordings/gsm_call/A1-S1.sigmf-meta --node-id A1-S1 \\
      --service tcp://127.0.0.1:5557 --insecure --fast
  cellwatch node --source sim:demo_prison:A1-S1 -o seed=0 --node-id A1-S1 --service tcp://127.0.0.1:5557 --insecure

Without --freq or --bands a tunable source scans the default band plan (B28, B20, GSM-900, B3);
several --source split it between them. The example config (sdr/node.example.toml) documents
every key. Exit status 2 with one line naming the field when the config or a flag is wrong.
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "node",
        help="run a sensor node: radio sources -> burst detector -> the service over ZeroMQ",
        description=(
            "Run a sensor node: read IQ from RTL-SDR dongles (local, rtl_tcp), recordings or the "
            "simulated prison, hop across the uplink bands of the band plan, detect phone bursts, "
            "and deliver each detection (burst power in dBFS with the gain setting) to the service "
            "through a durable outbox over CURVE-authenticated ZeroMQ. Heartbeats every few seconds "
            "report source state, losses and per-band noise floor and coverage."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="node.toml (see --example-config)")
    parser.add_argument("--check", action="store_true", help="check the config, print the band plan and exit")
    parser.add_argument("--example-config", action="store_true", help="print the commented example node.toml and exit")
    parser.add_argument("--quiet", action="store_true", help="log warnings only (default: heartbeats and events too)")
    quick = parser.add_argument_group("without a config file")
    quick.add_argument("--source", action="append", metavar="SPEC",
                       help="rtlsdr:SERIAL, rtl_tcp://HOST:PORT, replay:PATH or sim:SITE[:SCENARIO]:SENSOR (repeatable)")
    quick.add_argument("--node-id", help="this node's id (its key files are named after it)")
    quick.add_argument("--service", metavar="ENDPOINT", help="the service's ingest, tcp://HOST:PORT")
    quick.add_argument("--insecure", action="store_true", help="no CURVE: local development only")
    quick.add_argument("--server-key", type=Path, metavar="FILE", help="the service's public key (service.key)")
    quick.add_argument("--node-key", type=Path, metavar="FILE", help="this node's secret key (<node-id>.key_secret)")
    quick.add_argument("--gain", type=float, metavar="DB", help="manual tuner gain for live dongles (AGC is refused)")
    quick.add_argument("--rate", type=si_float, metavar="HZ", help="sample rate of live dongles (default 2.4M)")
    quick.add_argument("--ppm", type=float, default=0.0, help="crystal correction of live dongles (ppm)")
    quick.add_argument("--freq", type=si_float, metavar="HZ", help="fixed tuning, no scanning (e.g. 902.4M)")
    quick.add_argument("--bands", metavar="NAME,...", help="scan only these default bands (B28,B20,GSM-900,B3)")
    quick.add_argument("--fast", action="store_true", help="replay and sim sources run as fast as possible, not in real time")
    quick.add_argument("-o", "--source-option", action="append", default=[], metavar="KEY=VALUE",
                       help="an option of the source kind (TOML value), e.g. seed=3, loop=false, bias_tee=true")
    quick.add_argument("--outbox", type=Path, metavar="FILE", help="durable outbox (default ~/.local/state/cellwatch/)")
    quick.add_argument("--heartbeat", type=float, default=5.0, metavar="S", help="seconds between heartbeats (default 5)")
    parser.set_defaults(handler=run)


def example_config_text() -> str:
    return (resources.files("sdr") / "node.example.toml").read_text(encoding="utf-8")


def _option(text: str) -> tuple[str, Any]:
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise InputError("command line", "--source-option", f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()  # a bare word: a string
    return key.strip(), parsed


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The node.toml equivalent of the command line (validated by the same model)."""
    missing = [flag for flag, value in (("--source", args.source), ("--node-id", args.node_id),
                                        ("--service", args.service)) if not value]
    if missing:
        raise InputError("command line", missing[0], "required without --config (or give --config node.toml)")
    if args.freq is not None and args.bands:
        raise InputError("command line", "--freq", "give --freq (fixed tuning) or --bands (scanning), not both")
    options = dict(_option(o) for o in args.source_option)
    sources = []
    for spec in args.source:
        kind = spec.partition(":")[0].lower()
        section: dict[str, Any] = {"spec": spec}
        if kind in ("rtlsdr", "rtl_tcp"):
            if args.gain is None:
                raise InputError("command line", "--gain", f"required for {spec}: a manual gain in dB "
                                 "(automatic gain makes levels meaningless), e.g. --gain 28")
            section["gain_db"] = args.gain
            section["ppm"] = args.ppm
            if args.rate is not None:
                section["sample_rate_hz"] = args.rate
        elif args.gain is not None and kind == "sim":
            section["gain_db"] = args.gain
        if args.freq is not None:
            section["center_freq_hz"] = round(args.freq)
        if kind in ("replay", "sim") and args.fast:
            section["options"] = {**options, "realtime": False}
        elif options:
            section["options"] = dict(options)
        sources.append(section)
    service: dict[str, Any] = {"endpoint": args.service, "insecure": bool(args.insecure)}
    if args.server_key is not None:
        service["server_key"] = str(args.server_key)
    if args.node_key is not None:
        service["node_key"] = str(args.node_key)
    if args.outbox is not None:
        service["outbox"] = str(args.outbox)
    config: dict[str, Any] = {"node_id": args.node_id, "heartbeat_s": args.heartbeat, "service": service,
                              "sources": sources}
    if args.bands:
        from sdr.bandplan import DEFAULT_BAND_WEIGHTS, DEFAULT_BANDS

        wanted = [b.strip() for b in args.bands.split(",") if b.strip()]
        known = {b.name: b for b in DEFAULT_BANDS}
        for name in wanted:
            if name not in known:
                raise InputError("command line", "--bands", f"unknown band {name!r} (known: {', '.join(known)})")
        config["bands"] = [{"name": n, "low_mhz": known[n].low_hz / 1e6, "high_mhz": known[n].high_hz / 1e6,
                            "weight": DEFAULT_BAND_WEIGHTS[n]} for n in wanted]
    return config


def run(args: argparse.Namespace) -> int:
    from calibration.config import validate
    from sdr.bandplan import describe
    from sdr.node import Node
    from sdr.node_config import NodeConfig, build_setup, load_node_config

    if args.example_config:
        sys.stdout.write(example_config_text())
        return 0
    if args.config is not None:
        quick_flags = [f for f, v in (("--source", args.source), ("--node-id", args.node_id),
                                      ("--service", args.service)) if v]
        if quick_flags:
            raise InputError("command line", quick_flags[0], "the config file says it: give --config or the flags, not both")
        setup = load_node_config(args.config)
    else:
        config = validate(NodeConfig, config_from_args(args), "command line")
        setup = build_setup(config, "command line", Path.cwd())
    if args.check:
        print(f"{setup.source_name}: ok: node {setup.node_id}, {len(setup.sources)} source(s), "
              f"outbox {setup.outbox_path}")
        print(describe(setup.plan, setup.schedules))
        return 0
    if not args.quiet and args.verbose == 0:
        logging.getLogger().setLevel(logging.INFO)
    from dsp.warmup import compile_kernels

    # loaded (or, the first time after an install, compiled: ~25 s) before any radio streams
    log.info("kernels_loading (the first start after an install compiles them: ~25 s)")
    log.info("kernels_ready seconds=%.1f", compile_kernels())
    node = Node(setup)

    def stop(signum: int, frame: object) -> None:
        log.warning("node_stopping signal=%s", signal.Signals(signum).name)
        node.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stats = node.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(f"node {setup.node_id}: {stats.n_detections} detections, {stats.signal_s:.1f} s of signal, "
          f"{stats.n_hops} retunes, {stats.n_pending_at_exit} detections left in the outbox", file=sys.stderr)
    return 0
