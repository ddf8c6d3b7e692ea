"""The bundled recordings through the detection pipeline: what the issue's checks ask of the detector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsp.pipeline import DetectionPipeline
from dsp.records import Detection
from dsp.scoring import score_detections
from sdr.recording import open_recording
from tests.conftest import REPO

RECORDINGS = REPO / "recordings"


def _detect(folder: Path, block_size: int = 262144) -> tuple[list[Detection], list[dict], dict]:
    meta = json.loads((folder / "simulation.json").read_text())
    truth = [json.loads(x) for x in (folder / "truth.jsonl").read_text().splitlines()]
    detections: list[Detection] = []
    for sensor in meta["sensors"]:
        recording = open_recording(folder / f"{sensor}.sigmf-meta")
        info = recording.info
        pipeline = DetectionPipeline(info.sensor_id, info.sample_rate_hz, info.center_freq_hz)
        detections += list(pipeline.run(recording.blocks(block_size)))
    return detections, truth, meta


def _band(meta: dict) -> tuple[float, float]:
    half = meta["sample_rate_hz"] / 2
    return meta["center_freq_hz"] - half, meta["center_freq_hz"] + half


def test_noise_only_yields_nothing() -> None:
    detections, _, _ = _detect(RECORDINGS / "noise_only")
    assert detections == []


@pytest.mark.parametrize("name", ["gsm_call", "sms", "lte_data", "two_phones", "interferer"])
def test_every_burst_above_10_db_is_detected_with_its_technology(name: str) -> None:
    detections, truth, meta = _detect(RECORDINGS / name)
    score = score_detections(truth, detections, meta["sensors"], meta["duration_s"], band_hz=_band(meta),
                             snr_floor_db=10.0)
    assert score.n_truth_above > 0
    assert score.n_detected_above == score.n_truth_above, f"missed {score.n_truth_above - score.n_detected_above}"
    wrong = {pair: n for pair, n in score.confusion.items() if pair[0] != pair[1]}
    assert not wrong, wrong
    assert score.n_false_alarms == 0


def test_the_continuous_carrier_is_not_reported() -> None:
    detections, _, _ = _detect(RECORDINGS / "interferer")
    carrier_hz = 901.7e6
    assert not [d for d in detections if abs(d.freq_hz - carrier_hz) < 30e3 and d.bandwidth_hz < 50e3]
    assert not [d for d in detections if d.duration_s > 0.05 and abs(d.freq_hz - carrier_hz) < 100e3]


def test_two_phones_are_two_channels() -> None:
    detections, _, _ = _detect(RECORDINGS / "two_phones")
    by_sensor = {s: {round((d.freq_hz - 890e6) / 200e3) for d in detections if d.sensor_id == s}
                 for s in ("A1-S2", "B2-S2")}
    assert 60 in by_sensor["A1-S2"] and 64 in by_sensor["B2-S2"]


@pytest.mark.parametrize("block_size", [1000, 4097, 65536, 10**6])
def test_detections_do_not_depend_on_block_size(block_size: int) -> None:
    reference, _, _ = _detect(RECORDINGS / "gsm_call")
    other, _, _ = _detect(RECORDINGS / "gsm_call", block_size)
    assert [d.to_dict() for d in other] == [d.to_dict() for d in reference]
