"""The ``cellwatch`` command line: one entry point, one subcommand per job.

Every subcommand turns user mistakes (:class:`dsp.errors.InputError`) into one line
on stderr and exit status 2; anything else that escapes is a bug (status 1, with a
traceback under ``--debug``). Heavy imports happen inside the handlers so that
``cellwatch --help`` is instant and commands work without optional libraries.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from dsp.allocator import tune_malloc
from dsp.errors import InputError

log = logging.getLogger(__name__)

EXAMPLES = """\
examples:
  cellwatch info calibration/sites/demo_prison.toml      check and summarize a site file
  cellwatch info recordings/gsm_call/A1-S1.sigmf-meta     what a recording holds
  cellwatch simulate --site calibration/sites/demo_prison.toml \\
      --scenario recordings/scenarios/gsm_call.toml --out /tmp/sim
  cellwatch detect /tmp/sim/*.sigmf-meta --out /tmp/sim/detections.jsonl
  cellwatch eval detect --truth /tmp/sim/truth.jsonl /tmp/sim/detections.jsonl
  cellwatch demo                                          the whole system, no hardware

exit status: 0 ok, 2 bad input (one line on stderr naming the file and field), 1 internal error
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cellwatch",
        description=(
            "cellwatch finds covert mobile phones in prison cell blocks: sensor nodes with "
            "RTL-SDR dongles detect phone bursts on the uplink bands, a service localizes "
            "them by wing, floor and cell, and staff follow alerts on a live dashboard."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    from service.commands import calibrate, register_all

    register_all(sub)
    calibrate.register(sub)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# commands that run the burst detector: freed arrays stay in the process, no page faults for every
# batch (dsp.allocator); the others, the service among them, make no such arrays and keep glibc's defaults
_DETECTING_COMMANDS = frozenset({"node", "detect", "calibrate"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in _DETECTING_COMMANDS:
        tune_malloc()
    _configure_logging(args.verbose)
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    try:
        return int(handler(args) or 0)
    except InputError as exc:
        print(f"cellwatch {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cellwatch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: say so plainly, traceback on request
        if args.debug:
            raise
        print(f"cellwatch {args.command}: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
