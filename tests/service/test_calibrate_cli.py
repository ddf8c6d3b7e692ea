"""``cellwatch calibrate``: each step as an installer runs it, on simulated recordings, and its errors.

Run in process through :func:`service.cli.main` (the same argument parsing, handlers and
error handling as the installed command), plus one real process for the exit status.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from calibration.gain import CalibrationTable
from calibration.site import load_site
from sdr.scenario import Scenario
from sdr.simulate import Simulation
from service.cli import main
from tests.conftest import ANNEX_SITE, DEMO_SITE

CELLWATCH = shutil.which("cellwatch", path=str(Path(sys.executable).parent))
SENSORS = ["A1-S1", "A1-S2", "B1-S1"]


def run(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> tuple[Path, Path, Simulation]:
    """A quiet band at high gain (for the noise method) and two GSM cells (for the crystals), same dongles."""
    demo = load_site(DEMO_SITE)
    root = tmp_path_factory.mktemp("calibrate")
    receiver = {"gain_spread_db": 2.0, "ppm_spread": 30.0}
    quiet = {"name": "quiet", "duration_s": 0.15, "sensors": SENSORS,
             "receiver": {**receiver, "center_freq_hz": 925.0e6, "gain_db": 49.6}}
    cells = {"name": "cells", "duration_s": 0.3, "sensors": SENSORS,
             "receiver": {**receiver, "center_freq_hz": 939.2e6, "gain_db": 28.0},
             "downlink": [{"id": "south", "arfcn": 20, "power_dbm": 60.0, "position": [14.0, -40.0], "floor": 0},
                          {"id": "north", "arfcn": 22, "power_dbm": 60.0, "position": [14.0, 70.0], "floor": 0}]}
    Simulation(demo, Scenario.model_validate(quiet), seed=4).run(root / "quiet")
    sim = Simulation(demo, Scenario.model_validate(cells), seed=4)
    sim.run(root / "cells")
    return root / "quiet", root / "cells", sim


def test_gain_ppm_and_check_on_simulated_dongles(recordings, tmp_path, capsys) -> None:
    quiet, cells, sim = recordings
    cal = tmp_path / "cal.toml"
    code, out, _ = run(capsys, "calibrate", "gain", "--noise-figure", "6.5", "--calibration", cal,
                       *sorted(quiet.glob("*.sigmf-meta")))
    assert code == 0 and "=> stored" in out and f"updated {cal}" in out
    code, out, _ = run(capsys, "calibrate", "ppm", "--arfcn", 20, "--arfcn", 22, "--calibration", cal,
                       *sorted(cells.glob("*.sigmf-meta")))
    assert code == 0 and "FCCH ARFCN 20" in out and "FCCH ARFCN 22" in out
    table = CalibrationTable.from_file(cal)
    for position, sensor_id in enumerate(sim.sensor_ids):
        truth = sim.receiver_configs[position]
        assert table.get(sensor_id).gain_offset_db == pytest.approx(truth.gain_offset_db, abs=1.0)
        assert table.get(sensor_id).ppm_error == pytest.approx(truth.ppm_error, abs=0.5)
    assert cal.read_text().count("# ") >= 2 * len(SENSORS)  # one history line per measurement
    assert all(table.get(s).offsets for s in sim.sensor_ids)  # an entry per band and gain step measured
    code, out, _ = run(capsys, "calibrate", "check", "--calibration", cal, "--fail-on-drift", "--arfcn", 20,
                       "--arfcn", 22, *sorted(quiet.glob("*.sigmf-meta")), *sorted(cells.glob("*.sigmf-meta")))
    assert code == 0 and "DRIFT" not in out and "0 beyond tolerance" in out
    # a dongle swapped since: its gain is 3 dB off what the file says, its crystal 5 ppm
    text = cal.read_text()
    old = table.get("A1-S2")
    text = text.replace(f"gain_offset_db = {old.gain_offset_db:.3f}".rstrip("0").rstrip("."),
                        f"gain_offset_db = {old.gain_offset_db + 3.0:.3f}")
    text = text.replace(f"ppm_error = {old.ppm_error:.3f}".rstrip("0").rstrip("."), f"ppm_error = {old.ppm_error + 5.0:.3f}")
    cal.write_text(text)
    code, out, _ = run(capsys, "calibrate", "check", "--calibration", cal, "--fail-on-drift", "--arfcn", 20,
                       "--arfcn", 22, *sorted(quiet.glob("*.sigmf-meta")), *sorted(cells.glob("*.sigmf-meta")))
    assert code == 3
    drifted = [line for line in out.splitlines() if "DRIFT" in line]
    assert drifted and all(line.startswith("A1-S2") for line in drifted)
    assert {"noise floor", "crystal"} <= {" ".join(line.split()[1:3]) if "noise" in line else line.split()[1]
                                          for line in drifted}


def test_walk_simulate_detect_survey_locate(tmp_path, capsys) -> None:
    """The rendered path, on three places: plan -> scenario -> IQ -> detector -> survey -> locator."""
    plan, walk = tmp_path / "plan.toml", tmp_path / "walk.toml"
    code, out, _ = run(capsys, "calibrate", "walk", "--site", DEMO_SITE, "--places", "A-1-02,A-1-10,B-1-03",
                       "--points", 2, "--dwell", 0.2, "--plan-out", plan, "--scenario-out", walk)
    assert code == 0 and "6 stops in 3 places" in out
    assert run(capsys, "simulate", "--site", DEMO_SITE, "--scenario", walk, "--out", tmp_path / "sim")[0] == 0
    detections = tmp_path / "detections.jsonl"
    assert run(capsys, "detect", *sorted((tmp_path / "sim").glob("*.sigmf-meta")), "--out", detections)[0] == 0
    fingerprints, fitted, cal = tmp_path / "survey.toml", tmp_path / "fitted.toml", tmp_path / "cal.toml"
    code, out, _ = run(capsys, "calibrate", "survey", "--site", DEMO_SITE, "--plan", plan, "--out", fingerprints,
                       "--fitted-site", fitted, "--calibration-out", cal, "--wall-mode", "material", detections)
    assert code == 0, out
    assert "model fit:" in out and "residual sigma" in out and "walls: cell_front" in out
    assert f"wrote {fingerprints}" in out and f"wrote {fitted}" in out
    assert "A-1-02" in fingerprints.read_text()
    assert load_site(fitted).name == load_site(DEMO_SITE).name
    code, _, err = run(capsys, "locate", "--site", fitted, "--survey", fingerprints, "--calibration", cal,
                       detections, "--out", tmp_path / "events.jsonl")
    assert code == 0 and "events" in err


def test_plan_on_the_annex_writes_a_site_with_the_proposal(tmp_path, capsys) -> None:
    out_site = tmp_path / "proposed.toml"
    code, out, _ = run(capsys, "calibrate", "plan", "--site", ANNEX_SITE, "--sensors", 5, "--spacing", 2,
                       "--phones", 300, "--out", out_site)
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith(("current", "naive", "proposal"))}
    assert set(lines) == {"current", "naive", "proposal"}
    site = load_site(out_site)
    assert len(site.sensors) == 5 and all("corridor" in s.place_id for s in site.sensors)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(("files", "args", "expected"), [
    ({"walk.toml": '[[stops]]\nplace = "Z-9-99"\nstart = 0\nend = 1\n', "d.jsonl": ""},
     ["survey", "--site", DEMO_SITE, "--plan", "@walk.toml", "@d.jsonl"], "walk.toml: stops[0].place: no cell or zone"),
    ({"notes.csv": "place,start\nA-1-01,0\n", "d.jsonl": ""},
     ["survey", "--site", DEMO_SITE, "--plan", "@notes.csv", "@d.jsonl"], "notes.csv: column 'end': missing"),
    ({"walk.toml": '[[stops]]\nplace = "A-1-01"\nstart = "2026-01-05T08:00:00Z"\nend = "2026-01-05T08:00:10Z"\n',
      "d.jsonl": '{"sensor_id": "A1-S1", "t_start_s": 1, "duration_s": 0, "freq_hz": 9e8, "bandwidth_hz": 1}\n'},
     ["survey", "--site", DEMO_SITE, "--plan", "@walk.toml", "@d.jsonl"], "d.jsonl: line 1.power_dbfs: missing"),
    ({"beacon.toml": '[[references]]\nfreq_hz = 903e6\nplace = "A-1-01"\n', "d.jsonl": ""},
     ["gain", "--site", DEMO_SITE, "--reference", "@beacon.toml", "@d.jsonl"],
     "beacon.toml: references[0].tx_power_dbm: missing"),
    ({"cal.toml": "[sensors.A1-S1]\ngain_offset_db = 99\n", "r.cu8": ""},
     ["check", "--calibration", "@cal.toml", "@r.cu8"], "cal.toml: sensors.A1-S1.gain_offset_db: must lie in"),
    ({}, ["plan", "--site", ANNEX_SITE, "--sensors", "0"], "--sensors: must be at least 1"),
    ({}, ["plan", "--site", ANNEX_SITE, "--sensors", "3", "--zones", "attic"], "zones: no zone of kind attic"),
    ({"r.cu8": ""}, ["ppm", "@r.cu8"], "--arfcn: give the ARFCN"),
    ({"r.cu8": ""}, ["ppm", "--arfcn", "300", "@r.cu8"], "--arfcn: ARFCN 300 is not"),
])
def test_bad_input_is_one_line_naming_file_and_field(tmp_path, capsys, files, args, expected) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    argv = [tmp_path / a[1:] if isinstance(a, str) and a.startswith("@") else a for a in args]
    code, _, err = run(capsys, "calibrate", *argv)
    assert code == 2
    line = _one_line(err)
    assert line.startswith("cellwatch calibrate: ") and expected in line, line


def test_exit_status_of_a_real_process(tmp_path) -> None:
    assert CELLWATCH
    plan = tmp_path / "walk.toml"
    plan.write_text('start_utc = "2026-01-05T08:00:00Z"\n[[stops]]\nplace = "A-1-01"\nstart = 0\nend = -1\n')
    (tmp_path / "d.jsonl").write_text("")
    result = subprocess.run([CELLWATCH, "calibrate", "survey", "--site", str(DEMO_SITE), "--plan", str(plan),
                             str(tmp_path / "d.jsonl")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert _one_line(result.stderr) == f"cellwatch calibrate: {plan}: stops[0].end: must be after start"
    help_text = subprocess.run([CELLWATCH, "calibrate", "survey", "--help"], capture_output=True, text=True,
                               timeout=120).stdout
    assert "fingerprints" in help_text and "--fitted-site" in help_text and "robust least squares" in help_text
