"""``cellwatch info PATH``: what a recording holds, or a site file checked and summarized."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from service.commands.common import add_raw_options


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "info",
        help="describe a recording, or validate and summarize a site file",
        description=(
            "Given a recording (SigMF .sigmf-meta/.sigmf-data, raw rtl_sdr .cu8, GNU Radio "
            ".cfile/.cf32): format, sample rate, centre frequency, start time, duration, power "
            "statistics, clipping and annotations. Given a site file (.toml): validate it and "
            "summarize its wings, floors, cells, zones, walls and sensors."
        ),
    )
    parser.add_argument("path", type=Path, help="recording or site file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_raw_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    path: Path = args.path
    if path.suffix == ".toml":
        from calibration.site import load_site

        site = load_site(path)
        if args.json:
            print(json.dumps(site.summary_dict(), indent=2))
        else:
            print(site.summary())
        return 0

    from sdr.recording_info import format_recording_summary, summarize_recording

    summary = summarize_recording(path, sample_rate_hz=args.rate, center_freq_hz=args.freq)
    print(json.dumps(summary, indent=2) if args.json else format_recording_summary(summary))
    return 0
