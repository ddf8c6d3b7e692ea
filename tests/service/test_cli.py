"""The cellwatch command line, run as a user runs it: real processes, exit status, stdout and stderr."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from sdr.recording import SigMFWriter, write_raw_cu8
from service.commands.common import output_stream
from tests.conftest import DEMO_SITE, REPO

CELLWATCH = shutil.which("cellwatch", path=str(Path(sys.executable).parent))


def cellwatch(*args: object, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert CELLWATCH
    result = subprocess.run([CELLWATCH, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stderr}")
    return result


def _noise(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.05 * (rng.standard_normal(n) + 1j * rng.standard_normal(n))).astype(np.complex64)


def test_info_on_a_sigmf_cu8_recording(tmp_path: Path) -> None:
    with SigMFWriter(tmp_path / "rec", datatype="cu8", sample_rate_hz=2.4e6, center_freq_hz=902_400_000,
                     t_start_s=1767648600.0, sensor_id="A1-S1") as writer:
        writer.write(_noise(1_200_000))
    out = cellwatch("info", tmp_path / "rec.sigmf-meta").stdout
    assert "902.400000 MHz" in out and "2.4 MS/s" in out and "0.5 s" in out
    data = json.loads(cellwatch("info", "--json", tmp_path / "rec.sigmf-data").stdout)
    assert data["sample_rate_hz"] == 2.4e6 and data["center_freq_hz"] == 902_400_000
    assert data["duration_s"] == pytest.approx(0.5)


def test_info_on_a_raw_cu8_named_like_rtl_433(tmp_path: Path) -> None:
    path = tmp_path / "g001_902.4M_2.4M.cu8"
    write_raw_cu8(path, _noise(480_000))
    data = json.loads(cellwatch("info", "--json", path).stdout)
    assert data["sample_rate_hz"] == 2.4e6 and data["center_freq_hz"] == 902_400_000
    assert data["duration_s"] == pytest.approx(0.2)
    other = tmp_path / "capture.cu8"
    write_raw_cu8(other, _noise(1_000_000))
    data = json.loads(cellwatch("info", "--json", other, "--rate", "1M", "--freq", "837M").stdout)
    assert data["sample_rate_hz"] == 1e6 and data["center_freq_hz"] == 837_000_000 and data["duration_s"] == pytest.approx(1.0)


def test_truncated_or_malformed_recordings_exit_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "odd.cu8"
    path.write_bytes(b"\x80" * 1001)  # an odd byte count: a cut I/Q pair
    result = cellwatch("info", path, "--rate", "2.4M", "--freq", "902M", check=False)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "odd.cu8" in result.stderr
    meta = tmp_path / "bad.sigmf-meta"
    meta.write_text("{not json")
    (tmp_path / "bad.sigmf-data").write_bytes(b"\x80" * 100)
    result = cellwatch("info", meta, check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "bad.sigmf-meta" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_site_summary(tmp_path: Path) -> None:
    data = json.loads(cellwatch("info", "--json", DEMO_SITE).stdout)
    text = cellwatch("info", DEMO_SITE).stdout
    assert "64 cells" in text and "12 sensors" in text
    assert data  # the JSON summary parses


def test_broken_site_exits_2_naming_the_field(tmp_path: Path) -> None:
    text = DEMO_SITE.read_text(encoding="utf-8")
    broken = text.replace('{ id = "A-1-03", wing = "A"', '{ id = "A-1-03", wing = "Q"', 1)
    assert broken != text
    path = tmp_path / "broken.toml"
    path.write_text(broken, encoding="utf-8")
    result = cellwatch("info", path, check=False)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "broken.toml" in line and ".wing" in line and "'Q'" in line


def test_simulate_detect_eval_chain(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    cellwatch("simulate", "--site", DEMO_SITE, "--scenario", REPO / "recordings/scenarios/gsm_call.toml",
              "--out", out, "--duration", "1.0", "--seed", "2")
    assert (out / "A1-S1.sigmf-meta").exists() and (out / "truth.jsonl").exists()
    cellwatch("detect", out / "A1-S1.sigmf-meta", "--out", out / "det.jsonl")
    lines = (out / "det.jsonl").read_text().splitlines()
    assert len(lines) > 100  # ~217 bursts a second of a GSM call
    assert {json.loads(x)["sensor_id"] for x in lines} == {"A1-S1"}
    score = json.loads(cellwatch("eval", "detect", "--truth", out / "truth.jsonl", out / "det.jsonl", "--json").stdout)
    assert score["probability_of_detection_above_floor"] > 0.9
    assert score["n_false_alarms"] == 0


def test_simulate_rejects_a_scenario_naming_an_unknown_cell(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('[[phones]]\nid = "p"\ncell = "X-9-99"\n', encoding="utf-8")
    result = cellwatch("simulate", "--site", DEMO_SITE, "--scenario", scenario, "--out", tmp_path / "o", check=False)
    assert result.returncode == 2 and "phones[0].cell" in result.stderr and "s.toml" in result.stderr


def _subcommand_paths(parser, prefix=()):
    """Every command and sub-command of the parser, as argument tuples."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _subcommand_paths(sub, (*prefix, name))


def test_every_command_has_a_help_that_renders(capsys) -> None:
    """argparse formats help lazily: a stray % in a help string only fails when a user asks."""
    from service.cli import build_parser, main

    paths = list(_subcommand_paths(build_parser()))
    assert ("eval", "locate") in paths and ("calibrate", "survey") in paths and ("demo",) in paths
    for path in paths:
        with pytest.raises(SystemExit) as done:
            main([*path, "--help"])
        assert done.value.code == 0, path
        assert "usage: cellwatch " + " ".join(path) in capsys.readouterr().out


def test_an_error_quoting_a_huge_value_stays_one_short_line() -> None:
    from dsp.errors import InputError
    from service.correlate import CorrelatorConfig

    with pytest.raises(InputError) as caught:
        CorrelatorConfig.from_dict({"transmission_gap_s": "A" * 5000}, "fuzzed.toml")
    line = str(caught.value)
    assert line.startswith("fuzzed.toml: correlation.transmission_gap_s: expected a finite number")
    assert len(line) < 400 and "\n" not in line


def test_a_path_with_a_nul_or_of_5000_characters_is_one_short_error_line() -> None:
    from calibration.config import read_toml
    from calibration.site import load_site
    from dsp.errors import InputError

    for reader in (load_site, read_toml):
        with pytest.raises(InputError) as caught:
            reader("site\x00.toml")
        assert "NUL byte" in str(caught.value) and "\x00" not in str(caught.value)
        with pytest.raises(InputError) as caught:
            reader("/tmp/" + "A" * 5000)
        assert len(str(caught.value)) < 700 and "\n" not in str(caught.value)


def test_detect_follows_a_hopping_recording_across_its_retunes(tmp_path: Path) -> None:
    """A node that hops writes one capture per tuning: each tuning gets its own pipeline
    (was: one pipeline planned for the first capture, and an error naming no file)."""
    from sdr.recording import open_recording

    call = open_recording(REPO / "recordings/gsm_call/A1-S1.sigmf-meta")
    x = np.concatenate([b.samples for b in call.blocks(1 << 18)])
    half = x.shape[0] // 2
    first_hz, second_hz = call.info.center_freq_hz, call.info.center_freq_hz + 10_000_000
    with SigMFWriter(tmp_path / "hop", datatype="cu8", sample_rate_hz=call.info.sample_rate_hz,
                     center_freq_hz=first_hz, t_start_s=call.info.t_start_s, sensor_id="A1-S1") as writer:
        writer.write(x[:half])
        writer.start_capture(center_freq_hz=second_hz)  # the same air, heard 10 MHz higher: the call moves with it
        writer.write(x[half:])
    cellwatch("detect", tmp_path / "hop.sigmf-meta", "--out", tmp_path / "det.jsonl")
    detections = [json.loads(line) for line in (tmp_path / "det.jsonl").read_text().splitlines()]
    t_retune = call.info.t_start_s + half / call.info.sample_rate_hz
    before = [d for d in detections if d["t_start_s"] + d["duration_s"] <= t_retune]
    after = [d for d in detections if d["t_start_s"] >= t_retune]
    assert len(before) > 10 and len(after) > 10
    offsets_hz = {round(d["freq_hz"] - first_hz, -5) for d in before}
    assert {round(d["freq_hz"] - second_hz, -5) for d in after} <= offsets_hz  # same channels, 10 MHz up
    sessions_before = {d["session_id"] for d in before if d.get("session_id")}
    sessions_after = {d["session_id"] for d in after if d.get("session_id")}
    assert sessions_before and sessions_after and not sessions_before & sessions_after


def test_detect_names_the_recording_the_detector_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Whatever in a recording the detector refuses (its readers let nothing such through
    today), the one error line names the file, not only the detector's field."""
    from dsp.errors import InputError
    from dsp.pipeline import DetectionPipeline
    from service.cli import main

    with SigMFWriter(tmp_path / "rec", datatype="cu8", sample_rate_hz=2.4e6, center_freq_hz=902_400_000,
                     t_start_s=1767648600.0, sensor_id="A1-S1") as writer:
        writer.write(_noise(300_000))

    def refuse(self: DetectionPipeline, block: object) -> list[object]:
        raise InputError(None, "center_freq_hz", "refused")

    monkeypatch.setattr(DetectionPipeline, "process", refuse)
    assert main(["detect", str(tmp_path / "rec.sigmf-meta"), "--out", str(tmp_path / "det.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rec.sigmf" in err[0] and "center_freq_hz: refused" in err[0], err


def test_output_to_a_device_or_pipe_is_written_in_place(tmp_path: Path) -> None:
    """``--out /dev/null`` (or a named pipe) must not be renamed over: as root, the atomic
    write replaced /dev/null itself with a regular file, for every program on the machine."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    with output_stream(fifo) as out:
        out.write('{"a": 1}\n')
    reader.join(5.0)
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still the pipe
    assert received == ['{"a": 1}\n'] and not (tmp_path / "pipe.part").exists()
    # a regular file is still written atomically
    with output_stream(tmp_path / "out.jsonl") as out:
        out.write("x\n")
    assert (tmp_path / "out.jsonl").read_text() == "x\n" and not (tmp_path / "out.jsonl.part").exists()
