"""The simulator: deterministic bytes, truth consistent with what the recordings hold."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from calibration.site import load_site
from dsp.errors import InputError
from sdr.receiver import dbm_to_dbfs
from sdr.recording import open_recording
from sdr.scenario import Scenario
from sdr.simulate import Simulation
from tests.conftest import DEMO_SITE

GSM_CALL = {
    "name": "t",
    "duration_s": 0.3,
    "sensors": ["A1-S1", "A1-S2", "B1-S1"],
    "receiver": {"center_freq_hz": 902.4e6},
    "phones": [{"id": "p1", "cell": "A-1-03", "tech": "gsm", "activity": "call", "established": True,
                "arfcn": 62, "timeslot": 3, "tx_power_dbm": 10.0}],
}


@pytest.fixture(scope="module")
def demo():
    return load_site(DEMO_SITE)


def _run(demo, spec: dict, out: Path, seed: int = 3) -> Simulation:
    sim = Simulation(demo, Scenario.model_validate(spec), seed=seed)
    sim.run(out)
    return sim


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_and_other_seed_differs(demo, tmp_path: Path) -> None:
    _run(demo, GSM_CALL, tmp_path / "a", seed=5)
    _run(demo, GSM_CALL, tmp_path / "b", seed=5)
    _run(demo, GSM_CALL, tmp_path / "c", seed=6)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_truth_records_follow_the_contract(demo, tmp_path: Path) -> None:
    sim = _run(demo, GSM_CALL, tmp_path)
    lines = (tmp_path / "truth.jsonl").read_text().splitlines()
    assert len(lines) == len(sim.bursts) > 50  # ~217 bursts/s of a TCH/F call
    record = json.loads(lines[0])
    for key in ("phone_id", "session_id", "tech", "t_start_s", "duration_s", "freq_hz", "bandwidth_hz",
                "tx_power_dbm", "cell", "zone", "wing", "floor", "position"):
        assert key in record
    assert record["cell"] == "A-1-03" and record["wing"] == "A" and record["floor"] == 1
    assert record["freq_hz"] == pytest.approx(890.0e6 + 0.2e6 * 62)
    starts = np.array([json.loads(x)["t_start_s"] for x in lines])
    frame_s = 0.120 / 26
    # one burst per TDMA frame in one timeslot: spacing is a whole number of frames
    gaps = np.diff(starts) / frame_s
    assert np.allclose(gaps, np.round(gaps), atol=1e-3)
    assert (demo.locate(np.array([record["position"]]), 1)[0]) == demo.place_index("A-1-03")


def test_received_power_in_recording_matches_truth(demo, tmp_path: Path) -> None:
    sim = _run(demo, GSM_CALL, tmp_path)
    truth = [json.loads(x) for x in (tmp_path / "truth.jsonl").read_text().splitlines()]
    for position, sensor_id in enumerate(["A1-S1", "A1-S2"]):
        config = sim.receiver_configs[position]
        rec = open_recording(tmp_path / f"{sensor_id}.sigmf-meta")
        samples = rec.read(0, rec.info.n_samples)
        # noise power from the median of |x|^2 (exponential for complex Gaussian noise): bursts fill
        # one timeslot in eight, so they do not move the median much
        noise_fs = np.median(np.abs(samples - samples.mean()) ** 2) / np.log(2.0)
        rate = rec.info.sample_rate_hz
        t0 = rec.info.t_start_s
        measured, expected = [], []
        for burst in truth:
            start = int(round((burst["t_start_s"] - t0) * rate)) + int(15e-6 * rate)  # skip the ramp
            stop = start + int(520e-6 * rate)
            if stop > len(samples):
                continue
            chunk = samples[start:stop] - samples.mean()
            power_fs = max(np.mean(np.abs(chunk) ** 2) - noise_fs, 1e-12)
            measured.append(10 * np.log10(power_fs))
            expected.append(dbm_to_dbfs(burst["rx_power_dbm"][sensor_id], config.gain_db, config.gain_offset_db,
                                        config.dbfs_at_0db_gain_dbm))
        error = np.array(measured) - np.array(expected)
        assert len(error) > 50
        # the truth's received power (with its fading) is what the recording holds
        assert abs(np.median(error)) < 0.5, sensor_id
        # and that received power is the transmit power minus the model's path loss and shadowing,
        # spread only by fast fading (Rician, a few dB)
        static = np.array([b["tx_power_dbm"] - b["rx_power_dbm"][sensor_id] for b in truth])
        loss = sim.mean_path_loss_db(sim.bursts[0].placement.xyz, 902.4e6)[position]
        shadow = sim.shadowing.sample(np.array([sim.sensor_indices[position]]), sim.bursts[0].placement.xyz[None, :])[0]
        fading = -(static - loss - shadow)
        assert abs(np.mean(10 ** (fading / 10)) - 1.0) < 0.25  # unit-mean fading power
        assert 1.0 < np.std(fading) < 8.0


def test_other_wing_hears_much_less(demo, tmp_path: Path) -> None:
    sim = _run(demo, GSM_CALL, tmp_path)
    rx = np.array([b.rx_power_dbm for b in sim.bursts])
    assert np.median(rx[:, 0]) > np.median(rx[:, 2]) + 30  # A1-S1 vs B1-S1 across the yard


def test_scenario_naming_an_unknown_cell_is_refused(demo) -> None:
    spec = json.loads(json.dumps(GSM_CALL))
    spec["phones"][0]["cell"] = "Z-9-99"
    with pytest.raises(InputError, match=r"phones\[0\]\.cell"):
        Simulation(demo, Scenario.model_validate(spec), scenario_source="s.toml")
