"""``cellwatch detect``: detections (JSON Lines) from recordings, streamed block by block."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from dsp.errors import InputError
from service.commands.common import add_raw_options, output_stream, progress

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "detect",
        help="detect phone bursts in recordings and write detection records (JSON Lines)",
        description=(
            "Run the burst detector (streaming FFT energy detection with a CFAR threshold, "
            "burst segmentation, GSM/LTE/NR/UMTS classification) over each recording and "
            "write one detection record per burst, as DESIGN.md specifies. Files are "
            "streamed in blocks: memory does not grow with their length."
        ),
        epilog="example: cellwatch detect /tmp/sim/*.sigmf-meta --out /tmp/sim/detections.jsonl",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="recordings: SigMF (.sigmf-meta/.sigmf-data), raw .cu8, .cfile/.cf32")
    parser.add_argument("--out", type=Path, help="output file (default: standard output)")
    parser.add_argument("--sensor-id", help="sensor id to put in the records (default: from the recording, or its file name)")
    parser.add_argument("--block-size", type=int, default=262144, metavar="N",
                        help="samples per block read from the file (the result does not depend on it)")
    add_raw_options(parser)
    parser.set_defaults(handler=run)


def write_detections(recording: Any, out: IO[str], block_size: int = 262144,
                     on_block: Callable[[float], object] | None = None) -> int:
    """Run the detection pipeline over one recording, writing JSON Lines; the number of detections.

    A recording of a hopping node retunes between captures: one pipeline per tuning, as
    the node runs them (each keeps its own noise floor; a return to a tuning is a gap).
    """
    from dsp.pipeline import DetectionPipeline

    info = recording.info
    pipelines: dict[int, DetectionPipeline] = {}
    for block in recording.blocks(block_size):
        if on_block is not None:
            on_block(block.duration_s)
        freq_hz = int(block.center_freq_hz)
        pipeline = pipelines.get(freq_hz)
        if pipeline is None:  # session ids stay unique across tunings
            prefix = f"{info.sensor_id}:" if not pipelines else f"{info.sensor_id}:{len(pipelines)}:"
            pipeline = pipelines[freq_hz] = DetectionPipeline(info.sensor_id, block.sample_rate_hz, freq_hz,
                                                              session_prefix=prefix)
        for detection in pipeline.process(block):
            out.write(detection.to_json() + "\n")
    for pipeline in pipelines.values():
        for detection in pipeline.flush():
            out.write(detection.to_json() + "\n")
    return sum(p.n_detections for p in pipelines.values())


def run(args: argparse.Namespace) -> int:
    from sdr.recording import open_recording

    if args.sensor_id and len(args.paths) > 1:
        log.warning("one --sensor-id for %d files: all their detections carry %s", len(args.paths), args.sensor_id)
    recordings = [open_recording(p, sample_rate_hz=args.rate, center_freq_hz=args.freq, sensor_id=args.sensor_id)
                  for p in args.paths]  # open all first: a bad file fails before any work
    total_s = sum(r.info.duration_s for r in recordings)
    started = time.perf_counter()
    n_total = 0
    with output_stream(args.out) as out, progress(total_s, "detecting") as bar:
        for recording in recordings:
            try:
                n = write_detections(recording, out, args.block_size, on_block=bar.update)
            except InputError as exc:  # something in the samples or metadata the detector refused: name the file
                raise (exc.with_source(str(recording.info.path)) if exc.source is None else exc) from None
            n_total += n
            log.info("detected path=%s sensor=%s n=%d", recording.info.path, recording.info.sensor_id, n)
    elapsed = time.perf_counter() - started
    print(f"{n_total} detections in {len(recordings)} recording(s), {total_s:.1f} s of signal in {elapsed:.1f} s "
          f"({total_s / max(elapsed, 1e-9):.0f}x real time)", file=sys.stderr)
    return 0
