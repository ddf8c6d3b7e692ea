"""Small helpers shared by the subcommands: argument types, progress bars, JSON Lines I/O."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from dsp.errors import InputError


def si_float(text: str) -> float:
    """argparse type: ``2.4M``, ``902.4e6``, ``250k`` as a float."""
    multipliers = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
    try:
        if text and text[-1] in multipliers:
            return float(text[:-1]) * multipliers[text[-1]]
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r} (use e.g. 2.4M or 902400000)") from None


def add_raw_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("raw files (.cu8, .cfile, .cf32) without a SigMF header")
    group.add_argument("--rate", type=si_float, metavar="HZ", help="sample rate, e.g. 2.4M")
    group.add_argument("--freq", type=si_float, metavar="HZ", help="centre frequency, e.g. 902.4M")


def progress(total: float | None, desc: str, unit: str = "s") -> Any:
    """A tqdm bar on a terminal, a silent stand-in otherwise (logs and pipes stay clean)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not sys.stderr.isatty(), leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} {unit} [{elapsed}<{remaining}]")


@contextmanager
def output_stream(path: Path | None) -> Iterator[IO[str]]:
    """Write to ``path`` (atomically: a temp file renamed at the end) or to stdout.

    A path that is not a regular file (``/dev/null``, a named pipe) is written in place:
    renaming onto it would replace the device with a file (as root, for every program)."""
    if path is None or str(path) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    if path.exists() and not path.is_file():
        try:
            with open(path, "w", encoding="utf-8") as stream:
                yield stream
        except OSError as exc:
            raise InputError(str(path), None, f"cannot write: {exc.strerror}") from None
        return
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "w", encoding="utf-8") as stream:
            yield stream
        tmp.replace(path)
    except OSError as exc:
        raise InputError(str(path), None, f"cannot write: {exc.strerror}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for every non-blank line; a bad line is an InputError naming it."""
    try:
        stream = open(path, encoding="utf-8")
    except OSError as exc:
        raise InputError(str(path), None, f"cannot read: {exc.strerror}") from None
    with stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError as exc:
                raise InputError(str(path), f"line {number}", f"not valid JSON ({exc})") from None


def write_jsonl(stream: IO[str], objects: Iterable[dict[str, Any]]) -> int:
    n = 0
    for obj in objects:
        stream.write(json.dumps(obj, separators=(",", ":")) + "\n")
        n += 1
    return n
