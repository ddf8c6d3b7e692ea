"""``cellwatch info`` summaries: rate, centre, duration, levels and clipping from one pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dsp.errors import InputError
from sdr.recording import SigMFWriter, write_raw_cu8
from sdr.recording_info import format_recording_summary, summarize_recording

RATE_HZ = 2.4e6
FREQ_HZ = 902_400_000
T0_S = 1_714_564_800.25
N = 240_000  # 0.1 s
CLIP_START, CLIP_LEN = 50_000, 1_200


def _noise_with_clipped_segment(seed: int = 0) -> np.ndarray:
    """Noise at -23 dBFS that never reaches full scale, and one segment driven hard into the rails."""
    rng = np.random.default_rng(seed)
    x = (0.05 * (rng.standard_normal(N) + 1j * rng.standard_normal(N))).astype(np.complex64)
    x[CLIP_START:CLIP_START + CLIP_LEN] = 1.6 - 1.4j  # both I and Q past full scale
    return x


def test_info_on_cu8_sigmf(tmp_path: Path) -> None:
    x = _noise_with_clipped_segment()
    base = tmp_path / "A1-S1"
    with SigMFWriter(base, sample_rate_hz=RATE_HZ, center_freq_hz=FREQ_HZ, t_start_s=T0_S, sensor_id="A1-S1",
                     gain_db=33.8, description="corridor A1") as writer:
        writer.write(x)
        writer.annotate(CLIP_START, CLIP_LEN, label="overload")
        writer.annotate(10, 100, label="gsm")
        writer.annotate(1000, 100, label="gsm")

    summary = summarize_recording(tmp_path / "A1-S1.sigmf-meta")
    assert (summary["format"], summary["datatype"]) == ("sigmf", "cu8")
    assert summary["sample_rate_hz"] == RATE_HZ and summary["center_freq_hz"] == FREQ_HZ
    assert summary["duration_s"] == pytest.approx(0.1) and summary["n_samples"] == N
    assert summary["t_start"] == "2024-05-01T12:00:00.250000Z"
    assert (summary["sensor_id"], summary["gain_db"]) == ("A1-S1", 33.8)
    # every I and Q byte of the segment sits on a rail, nothing else does
    assert summary["clipped_percent"] == pytest.approx(100.0 * CLIP_LEN / N)
    assert summary["n_annotations"] == 3 and summary["annotation_labels"] == {"gsm": 2, "overload": 1}
    # noise power 2 * 0.05^2 = -23.0 dBFS is what the middle of the frame distribution reads
    assert summary["frame_power_percentiles_dbfs"]["50"] == pytest.approx(-23.0, abs=0.1)
    assert summary["frame_power_percentiles_dbfs"]["1"] < summary["frame_power_percentiles_dbfs"]["50"]
    assert summary["peak_power_dbfs"] == pytest.approx(10 * np.log10(2.0), abs=1e-3)  # both rails: +3 dBFS
    assert summary["checksum"] == "ok"
    json.dumps(summary)  # `cellwatch info --json` prints it as is

    text = format_recording_summary(summary)
    assert "902.400000 MHz" in text and "2.4 MS/s" in text
    assert "2024-05-01T12:00:00.250000Z" in text
    assert "0.5000 % of I/Q values" in text and "lower the gain" in text

    data = tmp_path / "A1-S1.sigmf-data"
    raw = bytearray(data.read_bytes())
    raw[0] ^= 0xFF
    data.write_bytes(bytes(raw))
    assert summarize_recording(base)["checksum"] == "mismatch"


def test_info_on_raw_cu8(tmp_path: Path) -> None:
    x = _noise_with_clipped_segment(seed=1)
    path = write_raw_cu8(tmp_path / "g001_902.4M_2.4M.cu8", x)
    summary = summarize_recording(path)
    assert (summary["format"], summary["sample_rate_hz"], summary["center_freq_hz"]) == ("cu8", 2.4e6, FREQ_HZ)
    assert summary["duration_s"] == pytest.approx(0.1)
    assert summary["clipped_percent"] == pytest.approx(100.0 * CLIP_LEN / N)
    assert summary["t_start"] is None and summary["checksum"] == "not checked"
    assert "unknown" in format_recording_summary(summary)
    # the CLI passes --rate/--freq as None when not given
    explicit = summarize_recording(path, sample_rate_hz=1.2e6, center_freq_hz=None)
    assert explicit["duration_s"] == pytest.approx(0.2)


def test_info_needs_rate_for_unnamed_raw(tmp_path: Path) -> None:
    path = write_raw_cu8(tmp_path / "capture.cu8", np.zeros(10, np.complex64))
    with pytest.raises(InputError, match="--rate"):
        summarize_recording(path, sample_rate_hz=None, center_freq_hz=None)


@pytest.mark.parametrize("amplitude", [0.01, 0.1, 0.5])
def test_levels_of_a_tone_in_cf32(tmp_path: Path, amplitude: float) -> None:
    """A tone of amplitude A reads 20·log10(A) dBFS; doubling it adds 6.02 dB; DC offset is measured."""
    t = np.arange(120_000)
    dc = 0.02 - 0.01j
    levels = []
    for scale in (1.0, 2.0):
        tone = (scale * (amplitude * np.exp(2j * np.pi * 0.013 * t) + dc)).astype(np.complex64)
        base = tmp_path / f"tone{scale}"
        with SigMFWriter(base, datatype="cf32_le", sample_rate_hz=RATE_HZ, center_freq_hz=FREQ_HZ,
                         t_start_s=0.0) as writer:
            writer.write(tone)
        summary = summarize_recording(base)
        levels.append(summary["mean_power_dbfs"])
        assert summary["dc_offset_i"] == pytest.approx(scale * dc.real, abs=1e-5)
        assert summary["dc_offset_q"] == pytest.approx(scale * dc.imag, abs=1e-5)
        assert summary["frame_power_percentiles_dbfs"]["50"] == pytest.approx(summary["mean_power_dbfs"], abs=0.1)
    assert levels[0] == pytest.approx(10 * np.log10(amplitude**2 + abs(dc) ** 2), abs=0.01)
    assert levels[1] - levels[0] == pytest.approx(20 * np.log10(2.0), abs=1e-3)


def test_clipping_of_float_data_counts_full_scale_components(tmp_path: Path) -> None:
    x = np.full(10_000, 0.1 + 0.1j, dtype=np.complex64)
    x[:100] = 1.0 + 0.1j  # I at full scale only: 100 of 20 000 components
    base = tmp_path / "f"
    with SigMFWriter(base, datatype="cf32_le", sample_rate_hz=1e6, center_freq_hz=FREQ_HZ, t_start_s=0.0) as w:
        w.write(x)
    assert summarize_recording(base)["clipped_percent"] == pytest.approx(0.5)


def test_summary_does_not_depend_on_block_size(tmp_path: Path) -> None:
    path = write_raw_cu8(tmp_path / "g001_902.4M_2.4M.cu8", _noise_with_clipped_segment(seed=2))
    small = summarize_recording(path, n_samples_per_block=5_000)
    large = summarize_recording(path, n_samples_per_block=1_000_000)
    for key in ("mean_power_dbfs", "peak_power_dbfs", "dc_offset_i", "dc_offset_q"):
        assert small[key] == pytest.approx(large[key], abs=1e-9)
    assert small["clipped_percent"] == large["clipped_percent"]
    assert small["frame_power_percentiles_dbfs"] == large["frame_power_percentiles_dbfs"]


def test_empty_recording(tmp_path: Path) -> None:
    base = tmp_path / "empty"
    with SigMFWriter(base, sample_rate_hz=RATE_HZ, center_freq_hz=FREQ_HZ, t_start_s=T0_S):
        pass
    summary = summarize_recording(base)
    assert summary["n_samples"] == 0 and summary["mean_power_dbfs"] is None
    assert summary["clipped_percent"] == 0.0
    assert "n/a" in format_recording_summary(summary)
