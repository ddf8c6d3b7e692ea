"""Fuzzing the TOML files an operator writes: the site plan, a node's config, the service's config.

Each shipped example is parsed, then damaged by hypothesis: one node of its tree
replaced by a hostile value (wrong type, huge or negative numbers, NaN, NUL, empty
strings, deep tables), deleted or given an unknown sibling, and written back as TOML; or
its text cut short or with bytes flipped. Loading it must give the object or raise
:class:`~dsp.errors.InputError` with one line naming the file (and the field, for
anything but a syntax error), never any other exception. For the service, what loads
is also prepared (site, keys, engine and alert settings checked) as ``cellwatch serve``
does before it listens.

Each test prints how many inputs it tried.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calibration.site import load_site
from dsp.errors import InputError
from sdr.node_config import load_node_config
from service.settings import load_settings
from tests.conftest import DEMO_SITE, REPO
from tests.hardening.fuzzing import dump_toml, mutated

NODE_EXAMPLE = REPO / "sdr" / "node.example.toml"
SERVICE_EXTRA = """
[engine]
event_gap_s = 60.0
[engine.correlation]
transmission_gap_s = 1.0
[alerts]
corridor = "low"
[sensors]
offline_after_s = 30.0
[worker]
flush_interval_s = 0.25
"""


class Text(str):
    """A file's text that shows as its length in hypothesis' reports (not the whole file)."""

    def __repr__(self) -> str:
        return f"<{len(self)} characters>"


@st.composite
def damaged_toml(draw: st.DrawFn, text: Text) -> str:
    """``text`` (a valid TOML file) with one value of its tree damaged, or its bytes damaged."""
    if draw(st.integers(0, 9)) < 8:
        return dump_toml(draw(mutated(tomllib.loads(text))))
    data = bytearray(text.encode())
    if draw(st.booleans()):
        return bytes(data[: draw(st.integers(0, len(data)))]).decode("utf-8", "replace")
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data).decode("utf-8", "replace")


def _fuzz(name: str, text: str, path: Path, load: Callable[[Path], Any], n_examples: int) -> dict[str, int]:
    tried = {"inputs": 0, "loaded": 0, "refused": 0}
    fields: set[str] = set()

    @settings(max_examples=n_examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(damaged_toml(Text(text)))
    def check(damaged: str) -> None:
        tried["inputs"] += 1
        path.write_text(damaged, encoding="utf-8")
        try:
            load(path)
        except InputError as exc:
            tried["refused"] += 1
            message = str(exc)
            assert exc.source and "\n" not in message and len(message) < 2000, message
            problem = exc.problem
            # a field, or a file-level problem (syntax, encoding), or one that names its keys in the text
            assert exc.field or exc.source != str(path) or "TOML" in problem or "UTF-8" in problem \
                or "." in problem, message
            fields.add(str(exc.field).split("[")[0].split(".")[0])
            return
        tried["loaded"] += 1

    check()
    print(f"\n{name}: {tried['inputs']} damaged files, {tried['loaded']} loaded, {tried['refused']} refused with one "
          f"line naming the file and field ({len(fields)} different top-level fields named)")
    assert tried["refused"] > tried["inputs"] // 4
    return tried


def test_site_files(tmp_path: Path) -> None:
    tried = _fuzz("site file", DEMO_SITE.read_text(), tmp_path / "site.toml", load_site, 300)
    assert tried["loaded"] > 0  # some damage is harmless (an extra material, a renamed zone ...)


def test_node_configs(tmp_path: Path) -> None:
    _fuzz("node config", NODE_EXAMPLE.read_text(), tmp_path / "node.toml", load_node_config, 300)


@pytest.fixture
def service_config(tmp_path: Path) -> Path:
    from bench.service_ingest import write_service_config

    config = write_service_config(tmp_path, ["A1-S1"])
    config.write_text(config.read_text() + SERVICE_EXTRA)
    return config


def test_service_configs(service_config: Path) -> None:
    from service.app import prepare

    prepared = {"n": 0}

    def load(path: Path) -> Any:
        settings_ = load_settings(path)
        result = prepare(settings_)  # site, calibration, keys, [engine], [alerts]: what serve checks first
        prepared["n"] += 1
        return result

    text = service_config.read_text()
    prepare(load_settings(service_config))  # the base is valid
    tried = _fuzz("service config", text, service_config.with_name("fuzzed.toml"), load, 150)
    print(f"service config: {prepared['n']} of {tried['inputs']} prepared (site, keys, engine) without error")


def test_a_key_holding_a_newline_is_named_on_one_line(tmp_path: Path) -> None:
    """Found by the fuzzer: ``"\\n" = []`` in a node config made a two-line error."""
    path = tmp_path / "node.toml"
    path.write_text(NODE_EXAMPLE.read_text() + '\n"\\n" = []\n"tab\\there" = 1\n', encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_node_config(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "unknown key" in message
    assert "\\n" in message  # the key, shown escaped
