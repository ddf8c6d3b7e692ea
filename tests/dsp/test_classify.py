"""Technology classification and session grouping, on measured features and real waveforms."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from dsp import gsm, lte, umts
from dsp.classify import (
    ClassifierConfig,
    SessionConfig,
    SessionTracker,
    classify,
    label_bursts,
)
from dsp.detector import Burst, BurstDetector, DetectorConfig
from dsp.iq import cu8_to_complex64
from dsp.records import IQBlock
from dsp.waveform import TxBurst, render_burst

FS = 2.4e6
FC = 900_000_000
T0 = 1_700_000_000.0


def burst(t_s: float = 0.0, duration_s: float = 0.55e-3, freq_hz: float = 900.2e6, bandwidth_hz: float = 250e3,
          *, snr_db: float = 15.0, flatness: float = 0.45, line: float = 0.0) -> Burst:
    return Burst(t_start_s=t_s, duration_s=duration_s, freq_hz=freq_hz, bandwidth_hz=bandwidth_hz,
                 power_dbfs=-40.0 + snr_db, snr_db=snr_db, noise_dbfs_hz=-100.0, sample_start=0,
                 sample_count=round(duration_s * FS), clipped=False, n_frames=6, n_cells=30,
                 flatness=flatness, gmsk_line_ratio=line, center_freq_hz=FC)


# -- per-burst rules -------------------------------------------------------------------------


def test_rules_on_measured_features() -> None:
    assert classify(burst(line=20.0), FS).tech == "gsm"
    assert classify(burst(duration_s=0.05, bandwidth_hz=2.3e6, flatness=0.8), FS).tech == "umts"
    assert classify(burst(duration_s=71e-6, bandwidth_hz=1.4e6), FS).tech == "lte"  # SRS
    assert classify(burst(duration_s=1e-3, bandwidth_hz=720e3, flatness=0.7), FS).tech == "lte"
    # a PUCCH slot is GSM-sized, but at 15 dB a GMSK burst would show its lines
    pucch = classify(burst(duration_s=0.5e-3, bandwidth_hz=210e3, line=4.0, flatness=0.8), FS)
    assert pucch.tech == "lte"
    assert "no GMSK lines" in pucch.reason
    weak = burst(snr_db=5.0, line=5.0)
    assert classify(weak, FS).tech == "gsm"  # bell-shaped, lines not expected at 5 dB
    assert classify(burst(snr_db=5.0, flatness=0.8), FS).tech == "lte"
    assert classify(burst(snr_db=5.0, flatness=0.8), FS, on_gsm_grid=True).tech == "gsm"
    assert classify(burst(duration_s=40e-6, bandwidth_hz=150e3), FS).tech == "unknown"


def test_nr_only_where_the_operator_says_so() -> None:
    lte_like = burst(duration_s=1e-3, bandwidth_hz=720e3, freq_hz=710e6, flatness=0.7)
    assert classify(lte_like, FS).tech == "lte"
    config = ClassifierConfig(nr_ranges_hz=((703e6, 733e6),))
    assert classify(lte_like, FS, config).tech == "nr"


# -- sessions ----------------------------------------------------------------------------------


def gsm_call_as_bursts(arfcn: int, timeslot: int, seed: int, duration_s: float = 2.0, **kw) -> list[Burst]:
    """A GSM call's schedule turned into measured bursts with realistic edge jitter."""
    rng = np.random.default_rng(seed)
    out = []
    for tx in gsm.call_bursts(0.0, duration_s, arfcn, timeslot, rng, **kw):
        out.append(burst(tx.t_start_s + rng.normal(0, 15e-6), freq_hz=tx.freq_hz + rng.normal(0, 3e3),
                         snr_db=8.0, line=rng.uniform(3, 9), flatness=rng.uniform(0.3, 0.6)))
    return out


def test_one_gsm_call_is_one_session_and_two_calls_are_two() -> None:
    one = label_bursts(gsm_call_as_bursts(50, 2, seed=1), FS)
    assert {x.tech for x in one} == {"gsm"}
    assert len({x.session_id for x in one}) == 1
    assert one[0].channel is not None and one[0].channel.startswith("arfcn 50")
    two = label_bursts(gsm_call_as_bursts(50, 2, seed=2) + gsm_call_as_bursts(52, 5, seed=3), FS)
    sessions = Counter(x.session_id for x in two)
    assert len(sessions) == 2
    assert all(n > 300 for n in sessions.values())


def test_a_hopping_call_stays_one_session() -> None:
    bursts = gsm_call_as_bursts(50, 4, seed=4, hopping_arfcns=[48, 50, 53, 57], hsn=0)
    assert len({round((b.freq_hz - 890e6) / 200e3) for b in bursts}) == 4
    labelled = label_bursts(bursts, FS)
    assert len({x.session_id for x in labelled}) == 1


def test_sessions_expire_and_state_is_bounded() -> None:
    tracker = SessionTracker(FS, config=SessionConfig(max_sessions=16))
    for i in range(200):  # 200 one-off LTE bursts far apart in frequency and time
        tracker.update([burst(t_s=i * 0.01, duration_s=1e-3, bandwidth_hz=180e3, freq_hz=700e6 + i * 1e6, flatness=0.8)])
        assert tracker.n_active <= 16
    tracker.update([burst(t_s=100.0, duration_s=1e-3, bandwidth_hz=180e3, flatness=0.8)])
    assert tracker.n_active == 1  # everything older than its expiry is gone
    ids = [x.session_id for x in tracker.update([burst(t_s=100.01, duration_s=1e-3, bandwidth_hz=180e3, flatness=0.8)])]
    assert ids == ["s201"]


def test_detections_are_the_labelled_bursts_records() -> None:
    """The pipeline's shortcut gives what labelling and then making records gives."""
    rng = np.random.default_rng(9)
    bursts = gsm_call_as_bursts(50, 2, seed=5, duration_s=1.0) + gsm_call_as_bursts(
        60, 4, seed=6, duration_s=1.0, hopping_arfcns=[60, 63, 66, 69], hsn=0)
    bursts += [burst(t_s=float(t), duration_s=1e-3, bandwidth_hz=float(rng.choice([180e3, 540e3, 1.08e6])),
                     freq_hz=float(rng.uniform(880e6, 915e6)), flatness=0.8, line=float(rng.uniform(0, 12)))
               for t in rng.uniform(0.0, 1.0, 300)]
    bursts.sort(key=lambda b: b.t_start_s)
    labelled = SessionTracker(FS, prefix="A1:").update(bursts)
    assert {x.tech for x in labelled} >= {"gsm", "lte"}
    assert SessionTracker(FS, prefix="A1:").detections(bursts, "A1") == [x.to_detection("A1") for x in labelled]


# -- end to end on the simulator's waveforms ------------------------------------------------------


def scene(truth: list[tuple[TxBurst, float]], duration_s: float, seed: int) -> list[Burst]:
    rng = np.random.default_rng(seed)
    n = int(duration_s * FS)
    sigma2 = 1e-4
    x = (rng.standard_normal(2 * n, dtype=np.float32) * np.float32(math.sqrt(sigma2 / 2))).view(np.complex64)
    for tx, snr_db in truth:
        s = render_burst(tx, rng, FS, FC)
        power = 10 ** (snr_db / 10) * sigma2 / FS * max(tx.bandwidth_hz, 200e3)
        i0 = int(round(tx.t_start_s * FS))
        m = min(s.shape[0], n - i0)
        x[i0 : i0 + m] += s[:m] * np.float32(math.sqrt(power))
    det = BurstDetector(DetectorConfig(), FS, FC)
    out = []
    for i in range(0, n, 262_144):
        out += det.process(IQBlock(x[i : i + 262_144], FC, FS, T0 + i / FS, sample_index=i))
    return out + det.flush()


def truth_tech(b: Burst, truth: list[tuple[TxBurst, float]]) -> str:
    t = b.t_start_s - T0
    techs = {tx.tech for tx, _ in truth if tx.t_start_s - 1e-4 < t + b.duration_s and t < tx.t_end_s + 1e-4
             and abs(tx.freq_hz - b.freq_hz) < (tx.bandwidth_hz + b.bandwidth_hz) / 2}
    return techs.pop() if len(techs) == 1 else "mixed"


@pytest.mark.parametrize("snr_db", [6.0, 15.0])
def test_a_gsm_call_is_gsm_and_one_session(snr_db: float) -> None:
    rng = np.random.default_rng(5)
    truth = [(TxBurst(tx.t_start_s, tx.duration_s, FC + 500e3, tx.bandwidth_hz, tx.tech, tx.kind, params=tx.params),
              snr_db) for tx in gsm.call_bursts(0.3, 1.5, 50, 3, rng)]
    labelled = SessionTracker(FS).update(sorted(scene(truth, 1.9, 6), key=lambda b: b.t_start_s))
    assert len(labelled) >= 0.97 * len(truth)
    techs = Counter(x.tech for x in labelled)
    assert techs["gsm"] >= 0.98 * len(labelled), techs
    sessions = Counter(x.session_id for x in labelled if x.tech == "gsm")
    assert sessions.most_common(1)[0][1] >= 0.95 * len(labelled)  # one call, one session


@pytest.mark.parametrize("snr_db", [6.0, 15.0])
def test_lte_waveforms_are_lte(snr_db: float) -> None:
    """VoLTE (PUSCH, PUCCH at the carrier edge, SRS), PUSCH on 1/4/12 RB and PRACH."""
    rng = np.random.default_rng(7)
    carrier_hz = FC - 600e3  # 15 RB: -1.95 .. +0.75 MHz, the upper PUCCH edge in band
    truth = [(tx, snr_db) for tx in lte.voice_call_bursts(0.3, 1.5, carrier_hz, 15, rng)
             if abs(tx.freq_hz - FC) + tx.bandwidth_hz / 2 < 1.15e6]
    for i in range(12):
        t = 0.3 + i * 0.12 + 0.0007
        truth.append((lte.pusch_burst(t, carrier_hz, 15, (6, 9, 3)[i % 3], (1, 4, 12)[i % 3]), snr_db))
        truth.append((lte.prach_burst(t + 0.05, carrier_hz, 15, 7), snr_db))
    labelled = label_bursts(scene(truth, 1.9, 8), FS)
    confusion = Counter((truth_tech(x.burst, truth), x.tech) for x in labelled)
    lte_total = sum(n for (t, _), n in confusion.items() if t == "lte")
    assert lte_total > 60, confusion
    assert confusion[("lte", "lte")] / lte_total > 0.9, confusion
    assert confusion[("lte", "gsm")] / lte_total < 0.05, confusion


def test_a_umts_call_fills_the_band() -> None:
    rng = np.random.default_rng(7)
    truth = [(tx, 10.0) for tx in umts.call_bursts(0.3, 0.2, FC + 0.2e6, rng)]
    labelled = label_bursts(scene(truth, 0.6, 8), FS)
    assert labelled
    assert Counter(x.tech for x in labelled).most_common(1)[0][0] == "umts"


# -- the bundled recordings ------------------------------------------------------------------------

RECORDINGS = Path(__file__).resolve().parents[2] / "recordings"


def read_cu8_sigmf(meta_path: Path) -> tuple[np.ndarray, float, int, float]:
    """Samples, rate, centre and UTC start of a single-capture cu8 SigMF recording."""
    meta = json.loads(meta_path.read_text())
    capture = meta["captures"][0]
    raw = np.fromfile(meta_path.with_suffix(".sigmf-data"), dtype=np.uint8)
    t0 = datetime.fromisoformat(capture["core:datetime"].replace("Z", "+00:00")).timestamp()
    return cu8_to_complex64(raw), float(meta["global"]["core:sample_rate"]), int(capture["core:frequency"]), t0


@pytest.mark.skipif(not RECORDINGS.is_dir(), reason="bundled recordings absent")
@pytest.mark.parametrize("name", ["noise_only", "gsm_call", "sms", "lte_data", "two_phones", "interferer"])
def test_bundled_recordings(name: str) -> None:
    """Every truth burst above 10 dB SNR is found with its technology; nothing else is."""
    folder = RECORDINGS / name
    truth = [json.loads(line) for line in (folder / "truth.jsonl").read_text().splitlines() if line.strip()]
    for meta_path in sorted(folder.glob("*.sigmf-meta")):
        sensor = meta_path.name.split(".")[0]
        x, rate, centre, t0 = read_cu8_sigmf(meta_path)
        det = BurstDetector(DetectorConfig(), rate, centre)
        tracker = SessionTracker(rate)
        labelled = []
        for i in range(0, x.shape[0], 100_000):
            labelled += tracker.update(det.process(IQBlock(x[i : i + 100_000], centre, rate, t0 + i / rate, sample_index=i)))
        labelled += tracker.update(det.flush())
        for t in truth:
            if t["snr_db"].get(sensor, -99.0) < 10.0 or abs(t["freq_hz"] - centre) - t["bandwidth_hz"] / 2 > 0.45 * rate:
                continue  # weak, or outside what the receiver sees
            found = [x for x in labelled if x.burst.t_start_s < t["t_start_s"] + t["duration_s"] + 1e-4
                     and x.burst.t_end_s > t["t_start_s"] - 1e-4
                     and abs(x.burst.freq_hz - t["freq_hz"]) < max(t["bandwidth_hz"], x.burst.bandwidth_hz) / 2 + 50e3]
            assert found, (sensor, t["kind"], t["t_start_s"] - t0)
            assert any(x.tech == t["tech"] for x in found), (sensor, t["kind"], [x.reason for x in found])
        for x in labelled:  # no false alarm: every detection overlaps a transmission in time
            assert any(x.burst.t_start_s < t["t_start_s"] + t["duration_s"] + 1e-4
                       and x.burst.t_end_s > t["t_start_s"] - 1e-4 for t in truth), x.burst
        if name == "interferer":  # the 901.7 MHz carrier is never a burst
            assert not [x for x in labelled if abs(x.burst.freq_hz - 901.7e6) < 50e3]
