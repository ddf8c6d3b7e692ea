"""``cellwatch locate`` and ``cellwatch eval locate``: the whole chain, its accuracy, its errors.

Two kinds of checks (issue 6, "Checked by"):

* the chain as a user runs it, through the real detector, on a short rendered scenario:
  ``cellwatch simulate`` -> ``cellwatch detect`` -> ``cellwatch locate`` -> ``cellwatch eval
  locate``, compared with the oracle (``cellwatch locate --from-truth``: the same locator fed
  the simulator's true received powers, so detector errors do not count);
* accuracy on many phone positions, fed the true received powers (no IQ rendered: fast),
  against the oracle with the true shadowing sigma.

Two installations of the same building (4 dB shadowing, see bench/localization.py for
every sigma):

* ``demo_prison.toml``, 3 omnidirectional sensors per corridor: the wing and floor are
  right for essentially every phone, the cell for about 40-60 % of them, and the plan is
  within a few points of the oracle, which is the bound: corridor sensors hear facing and
  neighbouring cells within 1-4 dB of each other, less than the shadowing.
* ``demo_prison_doors.toml``, a patch antenna above every cell door aimed into the cell:
  the issue's 90 % correct cell, also when the plan's walls are 4 dB off.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.localization import perturbed_site
from calibration.site import load_site
from sdr.scenario import Scenario
from sdr.simulate import Simulation
from service.commands.evaluate import score_events
from service.events import EngineConfig, EventEngine
from service.locate import LocatorConfig, detections_from_truth
from tests.conftest import DEMO_SITE, REPO

DOORS_SITE = DEMO_SITE.parent / "demo_prison_doors.toml"

CELLWATCH = shutil.which("cellwatch", path=str(Path(sys.executable).parent))

SCENARIO = (REPO / "tests" / "data" / "scenarios" / "two_calls_one_arfcn.toml").read_text()


def cellwatch(*args: object, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert CELLWATCH
    result = subprocess.run([CELLWATCH, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stderr}")
    return result


def _chain(out: Path, site: Path, gain_db: float = 28.0) -> dict[str, Any]:
    """simulate -> detect -> locate (and the oracle) -> eval locate."""
    (out / "scenario.toml").write_text(SCENARIO.replace("gain_db = 28.0", f"gain_db = {gain_db}"))
    cellwatch("simulate", "--site", site, "--scenario", out / "scenario.toml", "--out", out / "sim", "--seed", 2)
    cellwatch("detect", *sorted((out / "sim").glob("*.sigmf-meta")), "--out", out / "detections.jsonl")
    located = cellwatch("locate", "--site", site, out / "detections.jsonl", "--out", out / "events.jsonl")
    cellwatch("locate", "--site", site, "--from-truth", out / "sim" / "truth.jsonl", "--out", out / "oracle.jsonl")
    scores = {name: json.loads(cellwatch("eval", "locate", "--truth", out / "sim" / "truth.jsonl",
                                         out / f"{name}.jsonl", "--json").stdout)
              for name in ("events", "oracle")}
    text = cellwatch("eval", "locate", "--truth", out / "sim" / "truth.jsonl", out / "events.jsonl").stdout
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    return {"out": out, "scores": scores, "text": text, "events": events, "stderr": located.stderr}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _chain(tmp_path_factory.mktemp("chain"), DEMO_SITE)


@pytest.fixture(scope="module")
def doors_chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # door antennas hear the next cell's phone at -40 dBm: a lower gain keeps it below full scale
    return _chain(tmp_path_factory.mktemp("doors"), DOORS_SITE, gain_db=14.4)


def test_two_simultaneous_phones_give_two_events_in_the_right_places(chain: dict[str, Any]) -> None:
    """Corridor sensors: the right wing and floor, the true cell or the one facing it first
    (they differ by 1-4 dB at every sensor; the door antennas below tell them apart)."""
    on_arfcn_62 = [e for e in chain["events"]
                   if e["tech"] == "gsm" and abs(e["freq_hz"] - 902.4e6) < 100e3 and e["n_bursts"] > 100]
    assert sorted((e["wing"], e["floor"]) for e in on_arfcn_62) == [("A", 1), ("B", 2)]
    for event in on_arfcn_62:
        truth = "A-1-05" if event["wing"] == "A" else "B-2-13"
        assert truth in [c["place"] for c in event["candidates"][:2]]
    assert all(e["priority"] == "alert" for e in on_arfcn_62)


def test_the_chain_is_as_good_as_the_oracle(chain: dict[str, Any]) -> None:
    detected, oracle = chain["scores"]["events"], chain["scores"]["oracle"]
    assert detected["n_missed"] == 0 and detected["n_matched"] == 4
    assert detected["pct_correct_wing_floor"] == 100.0
    # four transmissions: "within 5 points" of the oracle is "at most one more miss" here
    assert detected["pct_correct_place"] >= oracle["pct_correct_place"] - 25.0
    assert detected["zone_phones_blamed_on_a_cell"] == []
    # no alert that matches no transmission (receiver artefacts end up low priority, if at all)
    assert detected["per_event"]["n_spurious"] == 0
    assert "correct cell or zone" in chain["text"] and "ECE" in chain["text"]
    assert "events" in chain["stderr"] and "transmissions" in chain["stderr"]


def test_door_antennas_put_every_phone_of_the_chain_in_its_cell(doors_chain: dict[str, Any]) -> None:
    """The same scene rendered for the 64 door antennas, through the real detector."""
    detected = doors_chain["scores"]["events"]
    assert detected["n_missed"] == 0 and detected["n_matched"] == 4
    assert detected["pct_correct_place"] == 100.0 and detected["per_event"]["n_spurious"] == 0
    on_arfcn_62 = [e for e in doors_chain["events"]
                   if e["tech"] == "gsm" and abs(e["freq_hz"] - 902.4e6) < 100e3 and e["n_bursts"] > 100]
    assert sorted(e["cell"] for e in on_arfcn_62) == ["A-1-05", "B-2-13"]
    # no alert sends staff to a cell without a phone: the bursts of the calls (two on adjacent
    # timeslots of one ARFCN) stay in their calls' events, not in fragments beside them
    alerts = [e for e in doors_chain["events"] if e["priority"] == "alert"]
    assert sorted(e["cell"] for e in alerts) == ["A-1-05", "A-2-10", "B-1-12", "B-2-13"], [
        (e["cell"] or e["zone"], e["n_bursts"]) for e in doors_chain["events"]]


def test_event_records_follow_design(chain: dict[str, Any]) -> None:
    for event in chain["events"]:
        for key in ("event_id", "t_start_s", "t_end_s", "tech", "freq_hz", "n_bursts", "sensors", "wing",
                    "floor", "cell", "zone", "confidence", "candidates"):
            assert key in event
        assert (event["cell"] is None) != (event["zone"] is None)
        assert 0.0 < event["confidence"] <= 1.0


# ------------------------------------------------------------------ accuracy, many positions
def _accuracy(site_path: Path, sigma_db: float, seed: int, wall_error_db: float = 0.0) -> dict[str, dict[str, Any]]:
    """Every cell of the demo prison (and a few zones), 0.5 s GSM calls, eight at a time.

    ``plan``: the site file's model; ``oracle``: the same with the true sigma, fixed;
    ``wrong_walls``: the plan with every wall's loss ``wall_error_db`` off (random sign)."""
    site = load_site(site_path)
    rng = np.random.default_rng(seed)
    places = [c.id for c in site.cells] + ["A-1-staff", "B-2-corridor", "yard", "street"]
    phones = []
    for i, place in enumerate(rng.permutation(places)):
        key = "cell" if place in {c.id for c in site.cells} else "zone"
        phones.append({"id": f"p{i}", key: str(place), "tech": "gsm", "activity": "call", "established": True,
                       "arfcn": 1 + (i % 8) * 15, "timeslot": i % 8, "duration_s": 0.5,
                       "tx_power_dbm": float(rng.uniform(5.0, 25.0)), "start_s": float((i // 8) * 70.0)})
    spec = {"name": "positions", "duration_s": 70.0 * (len(phones) // 8) + 1.0, "receiver": {"gain_db": 28.0},
            "propagation": {"shadowing_sigma_db": sigma_db}, "phones": phones}
    truth = Simulation(site, Scenario.model_validate(spec), seed=seed).truth_records()
    detections = detections_from_truth(truth)
    out = {}
    beliefs = [("plan", site, EngineConfig()),
               ("oracle", site, EngineConfig(locator=LocatorConfig(sigma_static_db=sigma_db), learn_sigma=False))]
    if wall_error_db:
        beliefs.append(("wrong_walls", perturbed_site(site, wall_error_db, rng), EngineConfig()))
    for name, belief, config in beliefs:
        engine = EventEngine(belief, config=config)
        engine.mark_listening([s.id for s in site.sensors])
        events = {e.event_id: e for e in engine.add(detections)}
        events.update({e.event_id: e for e in engine.flush()})
        out[name] = score_events(truth, [e.to_dict() for e in events.values()])
    return out


@pytest.fixture(scope="module")
def accuracy() -> dict[str, dict[str, Any]]:
    return _accuracy(DEMO_SITE, 4.0, seed=11)


@pytest.fixture(scope="module")
def doors_accuracy() -> dict[str, dict[str, Any]]:
    return _accuracy(DOORS_SITE, 4.0, seed=11, wall_error_db=4.0)


def test_wing_and_floor_are_right_and_the_plan_is_within_5_points_of_the_oracle(accuracy) -> None:
    plan, oracle = accuracy["plan"], accuracy["oracle"]
    print(f"4 dB shadowing: plan {plan['pct_correct_place']:.1f} % cell/zone, "
          f"{plan['pct_correct_wing_floor']:.1f} % wing+floor, {plan['pct_truth_in_top3']:.1f} % top 3; "
          f"oracle {oracle['pct_correct_place']:.1f} % / {oracle['pct_correct_wing_floor']:.1f} %")
    assert plan["n_matched"] >= 60 and plan["n_missed"] <= 2  # the street phone may be inaudible
    assert plan["pct_correct_wing_floor_cell_phones"] >= 99.0
    assert plan["pct_correct_place"] >= oracle["pct_correct_place"] - 5.0
    assert plan["pct_correct_place"] >= 35.0  # 64 cells: chance is 1.6 %, a corridor's 16 cells 6 %
    assert plan["pct_truth_in_top3"] >= 70.0
    assert plan["zone_phones_blamed_on_a_cell"] == [] or all(
        b["zone"] not in ("street", "yard") for b in plan["zone_phones_blamed_on_a_cell"])
    # the confidence: with the true sigma (oracle) it is calibrated (says p, right about p of
    # the time); the plan's 6 dB sigma, chosen to survive a wrong plan, makes it cautious:
    # never more confident than it is right
    assert oracle["ece"] < 0.15
    assert plan["pct_correct_place"] / 100.0 >= plan["mean_confidence"] - 0.05


def test_issue_target_of_90_percent_correct_cell_with_door_antennas(doors_accuracy) -> None:
    plan, oracle, wrong = doors_accuracy["plan"], doors_accuracy["oracle"], doors_accuracy["wrong_walls"]
    print(f"door antennas, 4 dB shadowing: plan {plan['pct_correct_cell_cell_phones']:.1f} % cell, "
          f"walls 4 dB off {wrong['pct_correct_cell_cell_phones']:.1f} %, "
          f"oracle {oracle['pct_correct_cell_cell_phones']:.1f} %")
    assert plan["n_matched"] >= 60
    assert plan["pct_correct_cell_cell_phones"] >= 90.0
    assert plan["pct_correct_wing_floor_cell_phones"] >= 99.0
    assert plan["pct_correct_place"] >= oracle["pct_correct_place"] - 5.0
    assert wrong["pct_correct_cell_cell_phones"] >= 90.0
    assert plan["zone_phones_blamed_on_a_cell"] == [] or all(
        b["zone"] not in ("street", "yard") for b in plan["zone_phones_blamed_on_a_cell"])


def test_corridor_sensors_alone_cannot_reach_the_cell_target(accuracy) -> None:
    """Why the door antennas: with 3 omnidirectional sensors per corridor even the oracle
    (true model, true sigma) stays far below 90 % correct cell."""
    assert accuracy["oracle"]["pct_correct_cell_cell_phones"] < 80.0


# ------------------------------------------------------------------ user errors
def test_bad_inputs_exit_2_with_one_line(tmp_path: Path) -> None:
    detections = tmp_path / "d.jsonl"
    detections.write_text(json.dumps({"sensor_id": "Z9-S9", "t_start_s": 1.0, "duration_s": 5e-4, "freq_hz": 9e8,
                                      "bandwidth_hz": 2e5, "power_dbfs": -30.0, "snr_db": 20.0}) + "\n")
    result = cellwatch("locate", "--site", DEMO_SITE, detections, check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "d.jsonl: line 1.sensor_id" in result.stderr and "Traceback" not in result.stderr

    good = tmp_path / "ok.jsonl"
    good.write_text(json.dumps({"sensor_id": "A1-S1", "t_start_s": 1.0, "duration_s": 5e-4, "freq_hz": 9e8,
                                "bandwidth_hz": 2e5, "power_dbfs": -30.0, "snr_db": 20.0, "gain_db": 20.0}) + "\n")
    calibration = tmp_path / "cal.toml"
    calibration.write_text("[sensors.A1-S1]\ngain_offset = 1.0\n")
    result = cellwatch("locate", "--site", DEMO_SITE, "--calibration", calibration, good, check=False)
    assert result.returncode == 2 and "cal.toml: sensors.A1-S1.gain_offset: unknown key" in result.stderr

    survey = tmp_path / "survey.json"
    survey.write_text(json.dumps({"places": {"Q-9-99": {"sensors": {}}}}))
    result = cellwatch("locate", "--site", DEMO_SITE, "--survey", survey, good, check=False)
    assert result.returncode == 2 and "survey.json: places.Q-9-99" in result.stderr

    result = cellwatch("locate", "--site", DEMO_SITE, check=False)
    assert result.returncode == 2 and "DETECTIONS" in result.stderr

    events = tmp_path / "events.jsonl"
    events.write_text('{"t_start_s": 1.0}\n')
    truth = tmp_path / "truth.jsonl"
    truth.write_text("")
    result = cellwatch("eval", "locate", "--truth", truth, events, check=False)
    assert result.returncode == 2 and "events.jsonl: line 1.t_end_s: missing" in result.stderr


def test_one_calibrated_detection_makes_an_event_only_with_company(tmp_path: Path) -> None:
    """A lone burst is no event (min_event_bursts); a short call is, with its calibrated levels."""
    rows = []
    for k in range(6):
        for sensor, dbfs in (("A1-S1", -25.0), ("A1-S2", -40.0), ("A1-S3", -45.0)):
            rows.append({"sensor_id": sensor, "t_start_s": 1767648600.0 + k * 0.120 / 26, "duration_s": 5.46e-4,
                         "freq_hz": 902.4e6, "bandwidth_hz": 2.5e5, "power_dbfs": dbfs, "snr_db": 30.0,
                         "gain_db": 28.0, "tech": "gsm"})
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    assert cellwatch("locate", "--site", DEMO_SITE, path).stdout == ""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    calibration = tmp_path / "cal.toml"
    calibration.write_text("[sensors.A1-S1]\ngain_offset_db = 2.0\n")
    (event,) = [json.loads(x) for x in cellwatch("locate", "--site", DEMO_SITE, "--calibration", calibration,
                                                  path).stdout.splitlines()]
    levels = {s["sensor_id"]: s["rssi_dbm"] for s in event["sensors"]}
    assert levels == {"A1-S1": pytest.approx(-25.0 - 28.0 - 2.0 - 15.0), "A1-S2": pytest.approx(-40.0 - 28.0 - 15.0),
                      "A1-S3": pytest.approx(-45.0 - 28.0 - 15.0)}
    assert event["n_bursts"] == 6 and event["wing"] == "A"  # only A1 sensors in the input: no floor evidence
