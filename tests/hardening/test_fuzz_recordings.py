"""Fuzzing the recording readers: damaged SigMF metadata and data, odd raw files.

A valid SigMF recording (cu8, two captures, two annotations) is damaged by hypothesis:
its metadata mutated node by node (wrong datatype, huge or negative sample rates, sizes
and offsets, garbage dates, NaN, wrong types, deleted keys) or replaced by random bytes;
its data file cut to any length; raw ``.cu8`` files named with odd rates and frequencies.

* :func:`sdr.recording.open_recording` and reading every block either work or raise
  :class:`~dsp.errors.InputError` naming the file, never any other exception;
* ``cellwatch info`` and ``cellwatch detect`` (the real entry point, in this process)
  exit 0, or 2 with one line on stderr naming the file; never 1 (internal error).

Each test prints how many inputs it tried.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsp.errors import InputError
from sdr.recording import open_recording
from tests.hardening.fuzzing import REPLACEMENTS, check_one_line_error, dump_json, mutated, run_cli

N_SAMPLES = 24_000  # 10 ms at 2.4 MS/s
N_OPEN_EXAMPLES = 500
N_CLI_EXAMPLES = 120

BASE_META: dict[str, Any] = {
    "global": {"core:datatype": "cu8", "core:sample_rate": 2.4e6, "core:version": "1.2.0", "core:num_channels": 1,
               "core:offset": 0, "cellwatch:sensor_id": "A1-S1", "cellwatch:gain_db": 30.0,
               "core:extensions": [{"name": "cellwatch", "version": "1.0.0", "optional": True}]},
    "captures": [{"core:sample_start": 0, "core:frequency": 902_400_000, "core:datetime": "2026-01-05T21:30:00.000000Z"},
                 {"core:sample_start": 12_000, "core:frequency": 902_400_000,
                  "core:datetime": "2026-01-05T21:30:00.005000Z"}],
    "annotations": [{"core:sample_start": 1000, "core:sample_count": 1300, "core:freq_lower_edge": 902.3e6,
                     "core:freq_upper_edge": 902.5e6, "core:label": "gsm_normal"},
                    {"core:sample_start": 15000, "core:sample_count": 1300}],
}
OPTIONAL_KEYS = ["core:dataset", "core:header_bytes", "core:trailing_bytes", "core:metadata_only", "core:sha512",
                 "core:global_index", "core:hw", "core:geolocation", "core:collection", "core:description"]
RAW_TOKENS = ["902.4M", "2.4M", "0M", "-2.4M", "1e400M", "nanM", "infM", "2.4G", "9999G", "1k", "abc", "", "0.000001M"]


def _data() -> bytes:
    rng = np.random.default_rng(0)
    return (127.5 + 20 * rng.standard_normal(2 * N_SAMPLES)).clip(0, 255).astype(np.uint8).tobytes()


DATA = _data()


@st.composite
def damaged_recording(draw: st.DrawFn) -> dict[str, Any]:
    """What to write: {"name": file to open, "files": {name: bytes}}."""
    kind = draw(st.sampled_from(("meta", "meta", "meta", "key", "data", "garbage", "raw", "missing")))
    meta = dump_json(BASE_META)
    data = DATA
    if kind == "meta":
        meta = dump_json(draw(mutated(BASE_META)), ensure_ascii=draw(st.booleans()))
    elif kind == "key":  # a SigMF key the base does not use, with a hostile value
        doc = json.loads(meta)
        section = draw(st.sampled_from(("global", "captures")))
        target = doc["global"] if section == "global" else doc["captures"][0]
        target[draw(st.sampled_from(OPTIONAL_KEYS))] = draw(REPLACEMENTS | st.integers(-100, 100_000))
        meta = dump_json(doc)
    elif kind == "data":
        data = DATA[: draw(st.integers(0, len(DATA)))]
    elif kind == "garbage":
        meta = draw(st.binary(max_size=400) | st.sampled_from([b"", b"[]", b"null", b"{}", b'{"global": 1}',
                                                               b"\xff\xfe{", b"{" * 10000]))
    elif kind == "raw":
        name = f"g001_{draw(st.sampled_from(RAW_TOKENS))}_{draw(st.sampled_from(RAW_TOKENS))}.cu8"
        return {"name": name, "files": {name: DATA[: draw(st.integers(0, 4001))]}}
    else:
        return {"name": "rec.sigmf-meta", "files": {"rec.sigmf-meta": meta}}  # the data file is missing
    opened = draw(st.sampled_from(("rec.sigmf-meta", "rec.sigmf-data", "rec")))
    return {"name": opened, "files": {"rec.sigmf-meta": meta, "rec.sigmf-data": data}}


def _write(folder: Path, case: dict[str, Any]) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for name, content in case["files"].items():
        (folder / name).write_bytes(content)
    return folder / case["name"]


def test_base_recording_is_valid(tmp_path: Path) -> None:
    path = _write(tmp_path / "r", {"name": "rec.sigmf-meta", "files": {"rec.sigmf-meta": dump_json(BASE_META),
                                                                         "rec.sigmf-data": DATA}})
    recording = open_recording(path)
    assert recording.n_samples == N_SAMPLES and recording.info.center_freq_hz == 902_400_000
    assert sum(b.n_samples for b in recording.blocks(8192)) == N_SAMPLES


def test_open_recording_raises_only_input_errors_naming_the_file(tmp_path: Path) -> None:
    tried = {"inputs": 0, "opened": 0, "refused": 0, "refused_reading": 0}
    fields: set[str] = set()

    @settings(max_examples=N_OPEN_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(damaged_recording())
    def check(case: dict[str, Any]) -> None:
        tried["inputs"] += 1
        path = _write(tmp_path / "r", case)
        try:
            recording = open_recording(path)
        except InputError as exc:
            tried["refused"] += 1
            fields.add(str(exc.field))
            # the recording's metadata, or the data file it names (whose error names the metadata)
            named = exc.source and Path(exc.source).name.startswith(Path(case["name"]).stem.split(".")[0])
            assert named or (exc.source and Path(exc.source).parent == path.parent and ".sigmf-meta" in str(exc)), exc
            return
        tried["opened"] += 1
        n = 0
        try:
            for block in recording.blocks(8192):
                assert np.isfinite(block.samples).all() and block.samples.dtype == np.complex64
                n += block.n_samples
        except InputError as exc:  # e.g. the data file changed size after opening: still named
            tried["refused_reading"] += 1
            assert exc.source
            return
        assert n == recording.n_samples

    check()
    print(f"\nopen_recording: {tried['inputs']} damaged recordings, {tried['opened']} opened and read, "
          f"{tried['refused']} refused naming the file ({len(fields)} different fields), "
          f"{tried['refused_reading']} refused while reading")
    assert tried["refused"] > 0 and tried["opened"] > 0


@pytest.mark.parametrize("command", ["info", "detect"])
def test_info_and_detect_exit_2_with_one_line_naming_the_file(tmp_path: Path, command: str) -> None:
    tried = {"inputs": 0, "ok": 0, "refused": 0}

    @settings(max_examples=N_CLI_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(damaged_recording())
    def check(case: dict[str, Any]) -> None:
        tried["inputs"] += 1
        path = _write(tmp_path / "r", case)
        args = [command, path] + (["--out", tmp_path / "out.jsonl"] if command == "detect" else [])
        ran = run_cli(*args)
        if ran.code == 0:
            tried["ok"] += 1
            return
        tried["refused"] += 1
        check_one_line_error(ran, command, path.parent.name + "/")

    check()
    print(f"\ncellwatch {command}: {tried['inputs']} damaged recordings, {tried['ok']} exit 0, "
          f"{tried['refused']} exit 2 with one line naming the file")
    assert tried["refused"] > 0


@pytest.mark.parametrize(("edit", "field"), [
    (lambda m: m["global"].update({"core:datatype": "ri8"}), "core:datatype"),
    (lambda m: m["global"].update({"core:sample_rate": -2.4e6}), "core:sample_rate"),
    (lambda m: m["global"].update({"core:sample_rate": 1e300}), "core:sample_rate"),
    (lambda m: m["captures"][1].update({"core:sample_start": 10**15}), "captures[1]"),
    (lambda m: m["captures"][0].update({"core:datetime": "yesterday"}), "core:datetime"),
    (lambda m: m["global"].update({"core:num_channels": 2**40}), "core:num_channels"),
    (lambda m: m["global"].update({"core:dataset": "../../etc/passwd"}), "core:dataset"),
])
def test_named_damage_names_the_field(tmp_path: Path, edit: Any, field: str) -> None:
    meta = json.loads(json.dumps(BASE_META))
    edit(meta)
    path = _write(tmp_path / "r", {"name": "rec.sigmf-meta", "files": {"rec.sigmf-meta": dump_json(meta),
                                                                         "rec.sigmf-data": DATA}})
    for command in ("info", "detect"):
        check_one_line_error(run_cli(command, path), command, field)


@pytest.mark.parametrize("dataset", ["é", "A" * 300, "\ud800x.sigmf-data", "a\x00b", "sub/rec.sigmf-data"])
def test_odd_dataset_names_are_refused_or_missing_with_the_file_named(tmp_path: Path, dataset: str) -> None:
    """Names hypothesis found: a missing file, too long, a lone surrogate, a NUL, a path."""
    meta = json.loads(dump_json(BASE_META))
    meta["global"]["core:dataset"] = dataset
    path = _write(tmp_path / "r", {"name": "rec.sigmf-meta", "files": {
        "rec.sigmf-meta": json.dumps(meta).encode("utf-8", "surrogatepass"), "rec.sigmf-data": DATA}})
    with pytest.raises(InputError) as caught:
        open_recording(path)
    assert caught.value.source and "rec.sigmf-meta" in str(caught.value)
