"""What the fuzz tests share: hostile JSON values, a tree mutator, a TOML writer, the CLI in-process.

The mutator takes a valid document (a message, SigMF metadata, a config file) and
changes one node of its tree: replaced by a hostile value (huge or negative integers,
NaN and infinities, NUL and lone surrogates in strings, deep structures), deleted, or
given a sibling. Inputs that stay close to valid reach the checks deep inside a parser,
where random bytes never get.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

ODD_TEXT = st.sampled_from(["", "\x00", "\ud800", "\udfff\ud800", "A" * 5000, "é", "\u202e", "../../etc/passwd",
                            "A1-S1\x00", " ", "NaN", "1e400", "-1", "0x10", "2026-13-45T25:61:61Z"])
BIG_INTS = st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, 10**400])
EXTREME_FLOATS = st.sampled_from([1e308, -1e308, 5e-324, -0.0, float("nan"), float("inf"), float("-inf"), 1.7e9,
                                  -1.0, 0.0])
SCALARS = (st.none() | st.booleans() | st.integers() | BIG_INTS
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40) | ODD_TEXT)
JSON_VALUES = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=12), children, max_size=4), max_leaves=12)
REPLACEMENTS = st.one_of(BIG_INTS, ODD_TEXT, EXTREME_FLOATS, JSON_VALUES)  # hostile as often as any value


@st.composite
def mutated(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """``value`` with one node of its JSON tree replaced, deleted, added to, or left as it is."""
    if isinstance(value, dict) and value and depth < 8 and draw(st.integers(0, 9)) < 8:
        out = dict(value)
        key = draw(st.sampled_from(sorted(out)))
        action = draw(st.sampled_from(("recurse", "recurse", "replace", "delete", "add")))
        if action == "recurse":
            out[key] = draw(mutated(out[key], depth + 1))
        elif action == "replace":
            out[key] = draw(REPLACEMENTS)
        elif action == "delete":
            del out[key]
        else:
            out[draw(st.text(max_size=12) | st.sampled_from(sorted(out)))] = draw(JSON_VALUES)
        return out
    if isinstance(value, list) and value and depth < 8 and draw(st.integers(0, 9)) < 8:
        out_list = list(value)
        i = draw(st.integers(0, len(out_list) - 1))
        action = draw(st.sampled_from(("recurse", "recurse", "replace", "delete", "duplicate")))
        if action == "recurse":
            out_list[i] = draw(mutated(out_list[i], depth + 1))
        elif action == "replace":
            out_list[i] = draw(REPLACEMENTS)
        elif action == "delete":
            del out_list[i]
        else:
            out_list.append(out_list[i])
        return out_list
    return draw(REPLACEMENTS) if draw(st.booleans()) else value


def dump_json(value: Any, ensure_ascii: bool = True) -> bytes:
    """JSON text of ``value`` as a hostile writer makes it: NaN as written by Python, lone
    surrogates escaped (or raw bytes), integers too long for ``str()`` written out anyway."""
    try:
        return json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
    except ValueError:
        return b'{"x": ' + b"9" * 5000 + b"}"


def _toml_string(text: str) -> str:
    clean = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")  # a file holds UTF-8 only
    return json.dumps(clean, ensure_ascii=True)  # JSON escapes are TOML basic-string escapes


def toml_value(value: Any) -> str | None:
    """One inline TOML value (None for JSON null, which TOML cannot say)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if -(2**63) <= value < 2**63 else str(float(min(value, 10**300)))
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        items = [v for v in (toml_value(x) for x in value) if v is not None]
        return "[" + ", ".join(items) + "]"
    if isinstance(value, dict):
        pairs = [f"{_toml_string(str(k))} = {v}" for k, v in ((k, toml_value(x)) for k, x in value.items())
                 if v is not None]
        return "{" + ", ".join(pairs) + "}"
    return None


def dump_toml(document: Any) -> str:
    """A TOML document of ``document``, every table inline (one key a line)."""
    if not isinstance(document, dict):
        document = {"value": document}
    lines = []
    for key, value in document.items():
        text = toml_value(value)
        if text is not None:
            lines.append(f"{_toml_string(str(key))} = {text}")
    return "\n".join(lines) + "\n"


@dataclass
class Ran:
    code: int
    out: str
    err: str


def run_cli(*args: object) -> Ran:
    """``cellwatch ARGS`` in this process (the real entry point), its output captured."""
    from service.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return Ran(code, out.getvalue(), err.getvalue())


def check_one_line_error(ran: Ran, command: str, names: str) -> None:
    """Exit 2 with one line on stderr, ``cellwatch COMMAND: ...`` naming ``names`` (a file)."""
    lines = ran.err.strip().splitlines()
    assert ran.code == 2, (ran.code, ran.err[-2000:])
    assert len(lines) == 1 and lines[0].startswith(f"cellwatch {command}: "), lines
    assert names in lines[0], lines
    assert "Traceback" not in ran.err and "internal error" not in ran.err
