"""The streaming burst detector against signals whose truth is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy import stats

from dsp import lte
from dsp.detector import (
    DEFAULT_TEMPLATES,
    Burst,
    BurstDetector,
    DetectorConfig,
    _best_segments,
    _Epoch,
    _Workspace,
)
from dsp.errors import InputError
from dsp.gsm import NORMAL_BURST_DURATION_S, TDMA_FRAME_S
from dsp.iq import complex64_to_cu8, cu8_to_complex64
from dsp.noise import NoiseFloorTracker, min_statistics_bias
from dsp.records import Detection, IQBlock
from dsp.waveform import TxBurst, render_burst
from tests.dsp.box_reference import _box_dilate, _Doubling

FS = 2.4e6
FC = 900_000_000
T0 = 1_700_000_000.0
NOISE_DBFS = -40.0  # total noise power over the 2.4 MHz band


def noise(duration_s: float, seed: int, power_dbfs: float = NOISE_DBFS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * FS))
    sigma = np.float32(math.sqrt(10 ** (power_dbfs / 10) / 2))
    return (rng.standard_normal(2 * n, dtype=np.float32) * sigma).view(np.complex64)


def add(x: np.ndarray, burst: TxBurst, snr_db: float, rng: np.random.Generator, ref_bw_hz: float = 200e3) -> float:
    """Add ``burst`` at ``snr_db`` (in ``ref_bw_hz`` of the -40 dBFS white noise); returns its power in dBFS."""
    power = 10 ** ((NOISE_DBFS + snr_db) / 10) * ref_bw_hz / FS
    samples = render_burst(burst, rng, FS, FC) * np.float32(math.sqrt(power))
    i0 = int(round(burst.t_start_s * FS))
    m = min(samples.shape[0], x.shape[0] - i0)
    x[i0 : i0 + m] += samples[:m]
    return 10 * math.log10(power)


def gsm(t_s: float, offset_hz: float) -> TxBurst:
    return TxBurst(t_s, NORMAL_BURST_DURATION_S, FC + offset_hz, 200e3, "gsm", "gsm_normal")


def detect(x: np.ndarray, block: int = 100_000, config: DetectorConfig | None = None, **kw) -> tuple[list[Burst], BurstDetector]:
    det = BurstDetector(config or DetectorConfig(), FS, FC)
    out: list[Burst] = []
    for i in range(0, x.shape[0], block):
        out += det.process(IQBlock(x[i : i + block], FC, FS, T0 + i / FS, sample_index=i, **kw))
    out += det.flush()
    return out, det


def matching(bursts: list[Burst], truth: TxBurst, tol_s: float = 100e-6) -> list[Burst]:
    return [b for b in bursts if b.t_start_s - T0 < truth.t_end_s + tol_s and b.t_end_s - T0 > truth.t_start_s - tol_s
            and abs(b.freq_hz - truth.freq_hz) < truth.bandwidth_hz / 2 + 100e3]


# -- building blocks ---------------------------------------------------------------------


def test_sliding_sums_match_convolution() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(500).astype(np.float32)
    ws = _Workspace()
    for step in (1, 7):
        sums = _Doubling(a, step, ws, f"t{step}")
        for width in (1, 2, 5, 19, 58, 3):  # levels shared across widths, reused out of order
            got = sums.sums(width)
            want = np.array([a[i : i + width * step : step].sum() for i in range(a.size - (width - 1) * step)])
            np.testing.assert_allclose(got, want, rtol=1e-5)


def test_box_dilate_paints_every_box() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        hits = rng.random((int(rng.integers(1, 15)), int(rng.integers(1, 15)))) < 0.1
        k, b = int(rng.integers(1, 6)), int(rng.integers(1, 7))
        want = np.zeros((hits.shape[0] + k - 1, hits.shape[1] + b - 1), dtype=bool)
        for r, c in zip(*np.nonzero(hits), strict=True):
            want[r : r + k, c : c + b] = True
        assert np.array_equal(_box_dilate(hits, k, b), want)


def test_best_segments_is_the_maximum_sum_segment() -> None:
    v = np.random.default_rng(2).standard_normal((40, 25))
    start, stop = _best_segments(v)
    for i in range(40):
        best = max((v[i, a:b].sum(), a, b) for a in range(25) for b in range(a + 1, 26))
        assert (best[1], best[2]) == (start[i], stop[i])


def test_min_statistics_bias_makes_the_floor_unbiased() -> None:
    """Gamma(4) cells of mean 4: the bias-corrected quantile of group minima reads 4."""
    rng = np.random.default_rng(3)
    for dof in (1.0, 3.2, 4.0):
        tracker = NoiseFloorTracker(8, [dof] * 8, n_sum=2, n_min=8, window_frames=20000, warmup_frames=2000,
                                    update_frames=1000)
        tracker.push(rng.gamma(dof, 1.0, size=(20000, 8)).astype(np.float32))
        assert tracker.floor is not None
        assert np.mean(tracker.floor) == pytest.approx(dof, rel=0.02)  # unbiased
        np.testing.assert_allclose(tracker.floor, dof, rtol=0.12)
    # the bias factor turns the median of minima of 8 pair sums (Gamma(8)) into the mean (4)
    assert min_statistics_bias(4, 2, 8, 0.5) * stats.gamma.ppf(1 - 0.5 ** (1 / 8), 8) == pytest.approx(4.0)


def test_noise_floor_right_with_half_the_cells_busy() -> None:
    """Half the columns carry bursts 10 dB up for 50 % of the time: the floor stays within 0.5 dB."""
    rng = np.random.default_rng(4)
    n_frames, n_cols = 30000, 16
    cells = rng.gamma(4.0, 1.0, size=(n_frames, n_cols))
    busy = np.zeros((n_frames, n_cols), dtype=bool)
    frame = 0
    while frame < n_frames:  # bursts of 3-12 frames (0.3-1.3 ms) with 50 % duty in columns 0..7
        length = int(rng.integers(3, 13))
        busy[frame : frame + length, :8] = True
        frame += 2 * length
    cells[busy] *= 11.0
    tracker = NoiseFloorTracker(n_cols, [4.0] * n_cols, window_frames=9375, warmup_frames=2400, update_frames=1000)
    tracker.push(cells.astype(np.float32), busy)
    assert tracker.floor is not None
    error_db = 10 * np.log10(tracker.floor / 4.0)
    assert np.all(np.abs(error_db) < 0.5), error_db
    blind = NoiseFloorTracker(n_cols, [4.0] * n_cols, window_frames=9375, warmup_frames=2400, update_frames=1000)
    blind.push(cells.astype(np.float32))  # without the detector's help plain minima read ~1 dB high
    assert np.all(10 * np.log10(blind.floor[:8] / 4.0) > 0.5)


def test_detector_floor_right_with_half_the_band_busy() -> None:
    """Band-limited bursts 10 dB up cover -1..0 MHz half of the time: the floor stays put."""
    rng = np.random.default_rng(25)
    x = noise(3.0, 26)
    n = x.shape[0]
    busy = np.zeros(n, dtype=bool)
    i = int(0.3 * FS)
    while i < n:  # bursts of 0.5-3 ms, as long as the gaps between them
        length = int(rng.uniform(0.5e-3, 3e-3) * FS)
        busy[i : i + length] = True
        i += 2 * length
    spectrum = np.fft.fft(noise(3.0, 27, NOISE_DBFS + 10 + 10 * math.log10(2.4)))
    freqs = np.fft.fftfreq(n, d=1 / FS)
    spectrum[(freqs < -1.0e6) | (freqs > 0.0)] = 0.0
    x += np.where(busy, np.fft.ifft(spectrum), 0.0).astype(np.complex64)
    bursts, det = detect(x, block=262_144)
    assert len(bursts) > 500  # the bursts were seen (and painted, so kept out of the floor)
    floor = det.noise_floor_dbfs_hz
    expected = NOISE_DBFS - 10 * math.log10(FS)
    freqs_col = det.column_freqs_hz
    inside = (freqs_col > -0.95e6) & (freqs_col < -0.05e6)
    assert np.all(np.abs(floor[inside] - expected) < 0.5), floor[inside] - expected
    assert np.all(np.abs(floor[(freqs_col > 0.1e6) & (freqs_col < 1.0e6)] - expected) < 0.3)


# -- configuration -----------------------------------------------------------------------


def test_config_errors_name_the_field() -> None:
    with pytest.raises(InputError, match=r"detector\.fft_size"):
        DetectorConfig(fft_size=300)
    with pytest.raises(InputError, match=r"detector\.pfa"):
        DetectorConfig(pfa=0.5)
    with pytest.raises(InputError, match=r"detector\.colour"):
        DetectorConfig.from_dict({"colour": "red"})
    assert DetectorConfig.from_dict({"pfa": 1e-8}).pfa == 1e-8


def test_thresholds_follow_the_gamma_law() -> None:
    det = BurstDetector(DetectorConfig(tukey_alpha=0.0), FS, FC)
    for test in det.box_tests:  # rectangular window: exact Gamma(K·B·G)
        assert test.dof == pytest.approx(test.n_frames * test.n_columns * 4)
        assert stats.gamma.sf(test.threshold, test.dof) == pytest.approx(test.pfa, rel=1e-3)
    tapered = BurstDetector(DetectorConfig(), FS, FC)
    assert all(t.dof < t.n_frames * t.n_columns * 4 for t in tapered.box_tests)
    assert 0.8 < tapered.effective_dof(20) / 20 < 1.0


def _expected_false_alarms_per_frame(det: BurstDetector) -> float:
    return sum(((det.n_columns - t.n_columns) // t.stride + 1) * t.pfa for t in det.box_tests)


def test_template_weights_share_the_false_alarm_budget() -> None:
    """fa_weight moves the per-test Pfa between templates; the union bound stays pfa × tests."""
    weights = {"gsm_normal": 0.5, "gsm_access": 0.25, "lte_1rb": 1.5, "lte_4rb": 2.0, "lte_12rb": 2.5,
               "lte_12rb_10f": 2.5}
    equal = BurstDetector(DetectorConfig(templates=tuple(t[:3] for t in DEFAULT_TEMPLATES)), FS, FC)
    lte_first = tuple((*t[:3], weights.get(t[0], 1.0)) for t in DEFAULT_TEMPLATES)
    weighted = BurstDetector(DetectorConfig(templates=lte_first), FS, FC)
    defaults = {t.name: t.pfa for t in BurstDetector(DetectorConfig(), FS, FC).box_tests}
    assert defaults["lte_12rb"] == pytest.approx(3 * defaults["gsm_normal"])  # the default: 12 RB boxes weigh 3
    n_tests_per_frame = equal.tests_per_second * equal.frame_s
    for det in (equal, weighted):
        assert _expected_false_alarms_per_frame(det) == pytest.approx(det.config.pfa * n_tests_per_frame, rel=1e-9)
    assert all(t.pfa == pytest.approx(equal.config.pfa) for t in equal.box_tests)
    pfa = {t.name: t.pfa for t in weighted.box_tests}
    assert pfa["lte_12rb"] == pytest.approx(10 * pfa["gsm_access"]) and pfa["lte_1rb"] == pytest.approx(3 * pfa["gsm_normal"])
    assert pfa["gsm_normal"] < weighted.config.pfa < pfa["lte_4rb"]
    with pytest.raises(InputError, match=r"detector\.templates\[0\]"):
        DetectorConfig(templates=(("x", 1e-3, 180e3, 0.0),))


def test_block_for_another_frequency_is_refused() -> None:
    det = BurstDetector(DetectorConfig(), FS, FC)
    with pytest.raises(InputError, match="center_freq_hz"):
        det.process(IQBlock(noise(0.01, 0), FC + 1, FS, T0))


# -- bursts --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gsm_scene() -> tuple[np.ndarray, list[TxBurst], list[float]]:
    rng = np.random.default_rng(5)
    x = noise(1.0, 6)
    truth, powers = [], []
    for i in range(24):
        # ≥ 150 kHz from DC: the DC guard (±10 kHz) hides a share of a burst sitting on it
        offset = rng.uniform(0.15e6, 1.0e6) * rng.choice((-1, 1))
        b = gsm(0.35 + i * 0.025 + rng.uniform(0, 1e-3), offset)
        powers.append(add(x, b, 20.0, rng))
        truth.append(b)
    return x, truth, powers


def test_gsm_bursts_measured_in_time_frequency_and_power(gsm_scene) -> None:
    x, truth, powers = gsm_scene
    bursts, det = detect(x)
    assert len(bursts) == len(truth)
    for b, want_power in zip(truth, powers, strict=True):
        (got,) = matching(bursts, b)
        assert abs(got.t_start_s - T0 - b.t_start_s) < 20e-6
        assert abs(got.t_end_s - T0 - b.t_end_s) < 20e-6
        assert abs(got.freq_hz - b.freq_hz) < 10e3
        assert abs(got.power_dbfs - want_power) < 0.5
        assert 200e3 < got.bandwidth_hz < 330e3  # GMSK BT 0.3: 99 % in ~250 kHz
        assert got.gmsk_line_ratio is not None and got.gmsk_line_ratio > 15
        assert 17.0 < got.snr_db < 21.0  # 20 dB in 200 kHz, over the ~250 kHz occupied band
        assert not got.clipped
        assert got.sample_start == round((got.t_start_s - T0) * FS)
    assert det.stats.n_bursts == len(truth)


def test_consecutive_gsm_frames_stay_separate_bursts() -> None:
    rng = np.random.default_rng(7)
    x = noise(0.6, 8)
    truth = [gsm(0.4 + k * TDMA_FRAME_S, 250e3) for k in range(12)]
    for b in truth:
        add(x, b, 15.0, rng)
    bursts, _ = detect(x)
    assert len(bursts) == 12
    assert all(0.5e-3 < b.duration_s < 0.6e-3 for b in bursts)
    gaps = np.diff([b.t_start_s for b in bursts])
    np.testing.assert_allclose(gaps, TDMA_FRAME_S, atol=10e-6)


def test_lte_subframes_are_never_split_in_frequency() -> None:
    rng = np.random.default_rng(9)
    x = noise(0.6, 10)
    truth = [lte.pusch_burst(0.35 + i * 0.02, FC, 25, 7 + i % 4, 6, n_subframes=3) for i in range(8)]
    for b in truth:
        add(x, b, 10.0, rng, ref_bw_hz=b.bandwidth_hz)
    bursts, _ = detect(x)
    for b in truth:
        found = matching(bursts, b)
        assert 1 <= len(found) <= 3
        for got in found:
            assert got.bandwidth_hz > 0.8 * b.bandwidth_hz
            assert abs(got.freq_hz - b.freq_hz) < 90e3
        assert abs(min(g.t_start_s for g in found) - T0 - b.t_start_s) < 30e-6


def test_noise_alone_gives_no_detection() -> None:
    bursts, det = detect(noise(20.0, 11), block=262_144)
    assert bursts == []
    assert det.stats.n_frames == 187_500


def test_carrier_and_dc_spike_are_not_bursts() -> None:
    x = noise(5.0, 12)
    t = np.arange(x.shape[0]) / FS
    per_bin = 10 ** (NOISE_DBFS / 10) / 256
    x += ((0.02 + 0.005 * np.sin(2 * np.pi * 0.3 * t)) * np.exp(0.3j)).astype(np.complex64)  # drifting DC offset
    x += (math.sqrt(per_bin * 1e4) * np.exp(2j * np.pi * 350e3 * t)).astype(np.complex64)  # CW 40 dB over a bin
    phase = 2 * np.pi * np.cumsum(3e3 * np.sin(2 * np.pi * 0.7 * t)) / FS  # slowly wobbling FM carrier
    x += (math.sqrt(per_bin * 100) * np.exp(1j * (2 * np.pi * -620e3 * t + phase))).astype(np.complex64)
    bursts, _ = detect(x, block=262_144)
    assert bursts == []


def test_doubling_amplitude_adds_6_db_and_frequency_shifts_carry_through() -> None:
    results = []
    for gain, shift in ((1.0, 0.0), (2.0, 0.0), (1.0, 137e3)):
        rng = np.random.default_rng(13)
        x = noise(0.5, 14)
        b = gsm(0.4, 300e3 + shift)
        power = 10 ** ((NOISE_DBFS + 25) / 10) * 200e3 / FS
        s = render_burst(b, rng, FS, FC) * np.float32(gain * math.sqrt(power))
        i0 = int(round(b.t_start_s * FS))
        x[i0 : i0 + s.shape[0]] += s
        (got,) = detect(x)[0]
        results.append(got)
    assert results[1].power_dbfs - results[0].power_dbfs == pytest.approx(6.02, abs=0.15)
    assert results[2].freq_hz - results[0].freq_hz == pytest.approx(137e3, abs=1e3)


def test_clipping_is_flagged() -> None:
    rng = np.random.default_rng(15)
    x = noise(0.5, 16)
    b = gsm(0.4, -200e3)
    i0 = int(round(b.t_start_s * FS))
    s = render_burst(b, rng, FS, FC) * np.float32(1.3)
    x[i0 : i0 + s.shape[0]] += s
    x = (np.clip(x.real, -1, 1) + 1j * np.clip(x.imag, -1, 1)).astype(np.complex64)
    (got,) = detect(x)[0]
    assert got.clipped
    assert "clipped" in got.to_detection("A1").flags


def test_weak_gsm_bursts_near_theory_are_detected() -> None:
    """2 dB above the ideal energy detector's Pd = 0.9 point (Urkowitz, 546 µs × 200 kHz)."""
    rng = np.random.default_rng(17)
    x = noise(1.0, 18)
    truth = [gsm(0.35 + i * 0.016 + rng.uniform(0, 1e-3), rng.uniform(-0.9e6, 0.9e6)) for i in range(40)]
    for b in truth:
        add(x, b, 1.5, rng)
    bursts, _ = detect(x)
    found = sum(bool(matching(bursts, b)) for b in truth)
    assert found >= 36


# -- streaming -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_scene() -> tuple[np.ndarray, list[Burst]]:
    rng = np.random.default_rng(19)
    x = noise(0.9, 20)
    for i in range(20):
        add(x, gsm(0.3 + i * 0.0131, rng.uniform(-1e6, 1e6)), rng.uniform(5, 30), rng)
    for i in range(10):
        b = lte.pusch_burst(0.31 + i * 0.05, FC, 25, 3 + i, 4, n_subframes=3)
        add(x, b, 8.0, rng, ref_bw_hz=b.bandwidth_hz)
    return x, detect(x, block=x.shape[0])[0]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(1000, 400_000), min_size=1, max_size=12))
def test_detections_do_not_depend_on_block_sizes(mixed_scene, sizes: list[int]) -> None:
    x, reference = mixed_scene
    assert len(reference) >= 25
    det = BurstDetector(DetectorConfig(), FS, FC)
    got: list[Burst] = []
    i = 0
    k = 0
    while i < x.shape[0]:
        n = sizes[k % len(sizes)]
        got += det.process(IQBlock(x[i : i + n], FC, FS, T0 + i / FS, sample_index=i))
        i += n
        k += 1
    got += det.flush()
    assert got == reference


@pytest.fixture(scope="module")
def cu8_scene(mixed_scene) -> tuple[np.ndarray, list[Burst]]:
    """The mixed scene as a dongle's bytes, and its bursts detected from the samples they convert to."""
    x, _ = mixed_scene
    data = complex64_to_cu8(x * np.float32(4.0))
    return data, detect(cu8_to_complex64(data), block=x.shape[0])[0]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(1000, 400_000), st.booleans()), min_size=1, max_size=12))
@example([(100_000, True), (100_000, False)])  # bytes buffered when samples come: converted
@example([(100_000, False), (100_000, True)])  # samples buffered when bytes come
def test_bytes_and_samples_give_the_same_bursts_in_any_blocks(cu8_scene, blocks: list[tuple[int, bool]]) -> None:
    """A dongle's blocks carry their cu8 bytes, which the detector windows and gathers from
    directly; blocks of samples, or a stream switching between the two kinds mid-epoch,
    give the same bursts, to the bit."""
    data, reference = cu8_scene
    assert len(reference) >= 25
    det = BurstDetector(DetectorConfig(), FS, FC)
    got: list[Burst] = []
    i = k = 0
    n_total = data.shape[0] // 2
    while i < n_total:
        n, as_bytes = blocks[k % len(blocks)]
        raw = data[2 * i : 2 * min(i + n, n_total)]
        block = (IQBlock.from_cu8(raw, FC, FS, T0 + i / FS, sample_index=i) if as_bytes
                 else IQBlock(cu8_to_complex64(raw), FC, FS, T0 + i / FS, sample_index=i))
        got += det.process(block)
        i += n
        k += 1
    got += det.flush()
    assert got == reference


def test_dropped_samples_close_bursts_and_time_stays_right() -> None:
    rng = np.random.default_rng(21)
    x = noise(1.2, 22)
    b1, b2 = gsm(0.5, 100e3), gsm(0.9, -300e3)
    add(x, b1, 20.0, rng)
    add(x, b2, 20.0, rng)
    det = BurstDetector(DetectorConfig(), FS, FC)
    cut = int(0.6 * FS)
    gap = 5000  # samples lost between the two blocks
    out = det.process(IQBlock(x[:cut], FC, FS, T0, sample_index=0))
    rest = x[cut + gap :]
    out += det.process(IQBlock(rest, FC, FS, T0 + (cut + gap) / FS, sample_index=cut + gap, n_dropped=gap))
    out += det.flush()
    assert det.stats.n_gaps == 1
    assert len(out) == 2
    for got, b in zip(out, (b1, b2), strict=True):
        assert abs(got.t_start_s - T0 - b.t_start_s) < 20e-6


def test_unknown_gain_step_is_followed_and_known_one_is_applied() -> None:
    x = noise(4.0, 23)
    step = int(1.5 * FS)
    x[step:] *= np.float32(2.0)  # +6 dB, not announced
    det = BurstDetector(DetectorConfig(), FS, FC)
    floors = []
    for i in range(0, x.shape[0], 240_000):
        det.process(IQBlock(x[i : i + 240_000], FC, FS, T0 + i / FS, sample_index=i))
        floors.append(det.noise_floor_dbfs_hz)
    expected = NOISE_DBFS - 10 * math.log10(FS)
    assert np.all(np.abs(floors[12][10:-10] - expected) < 0.5)  # 1.2 s: before the step
    assert np.all(np.abs(floors[-1][10:-10] - expected - 6.02) < 0.5)  # 2.5 s after it
    # a step the node announces through gain_db: the floor is measured afresh at the new level
    det2 = BurstDetector(DetectorConfig(), FS, FC)
    y = noise(2.0, 24)
    det2.process(IQBlock(y[: int(FS)], FC, FS, T0, sample_index=0, gain_db=20.0))
    before = det2.noise_floor_dbfs_hz
    out = det2.process(IQBlock(y[int(FS) :] * np.float32(2.0), FC, FS, T0 + 1.0, sample_index=int(FS), gain_db=26.0))
    out += det2.flush()
    assert out == []
    assert np.all(np.abs(det2.noise_floor_dbfs_hz[10:-10] - before[10:-10] - 6.0) < 0.5)


def test_to_detection_round_trips_the_wire_form(gsm_scene) -> None:
    x, _, _ = gsm_scene
    burst = detect(x[: int(0.5 * FS)])[0][0]
    det = burst.to_detection("A1-S1", "gsm", session_id="s1", seq=3, channel="arfcn 50")
    back = Detection.from_json(det.to_json())
    assert back == det
    assert back.sample_count == burst.sample_count
    assert back.t_start_s == pytest.approx(burst.t_start_s, abs=1e-6)


def test_bursts_during_the_warm_up_are_not_lost_and_tiny_streams_are_fine() -> None:
    rng = np.random.default_rng(27)
    x = noise(0.2, 28)  # shorter than the 0.25 s warm-up
    b = gsm(0.03, 400e3)
    add(x, b, 20.0, rng)
    (got,) = detect(x)[0]
    assert abs(got.t_start_s - T0 - b.t_start_s) < 20e-6
    det = BurstDetector(DetectorConfig(), FS, FC)
    assert det.process(IQBlock(np.zeros(0, np.complex64), FC, FS, T0)) == []
    assert det.process(IQBlock(noise(0.001, 29), FC, FS, T0)) == []
    assert det.flush() == []
    assert det.flush() == []


def test_iq_imbalance_image_is_not_a_burst() -> None:
    """A 45 dB burst at -400 kHz and its image 35 dB down at +400 kHz (I/Q mismatch): one burst."""
    rng = np.random.default_rng(31)
    x = noise(0.5, 32)
    b = gsm(0.4, -400e3)
    clean = np.zeros_like(x)
    add(clean, b, 45.0, rng)
    x += clean + np.conj(clean) * np.float32(10 ** (-35 / 20))
    bursts, det = detect(x)
    assert len(bursts) == 1
    assert abs(bursts[0].freq_hz - b.freq_hz) < 10e3
    assert det.stats.rejected["image_or_alias"] == 1


def test_announced_gain_steps_down_give_no_false_alarm_and_bursts_after_them_are_found() -> None:
    """An announced step is measured afresh, never scaled: at low gain an RTL-SDR's noise is
    ADC noise that the tuner gain does not move, and a floor scaled down by the nominal
    10 dB painted the whole band about half a second after each step down (issue 4)."""
    rng = np.random.default_rng(31)
    gains_db = (30.0, 20.0, 30.0, 20.0, 10.0)  # a 2 s segment each, steps of 10 dB
    segment = int(2.0 * FS)
    # (seconds after each step, offset) of the GSM bursts: inside the held warm-up, and after it
    truth = [gsm(k * 2.0 + dt, off) for k in range(1, len(gains_db)) for dt, off in ((0.1, 300e3), (0.5, -420e3))]
    for follows_gain in (False, True):  # ADC-limited receiver, then one whose noise follows the gain
        x = noise(2.0 * len(gains_db), 32)
        for k, g in enumerate(gains_db):
            if follows_gain:
                x[k * segment : (k + 1) * segment] *= np.float32(10 ** ((g - gains_db[0]) / 20))
        quiet = x.copy()
        for b in truth:
            k = int(b.t_start_s // 2.0)
            level_db = gains_db[k] - gains_db[0] if follows_gain else 0.0
            add(x, b, 20.0 + level_db, rng)
        for signal_present, stream in ((False, quiet), (True, x)):
            det = BurstDetector(DetectorConfig(), FS, FC)
            out: list[Burst] = []
            for i in range(0, stream.shape[0], 120_000):  # 50 ms blocks, as a node sends them
                g = gains_db[i // segment]
                out += det.process(IQBlock(stream[i : i + 120_000], FC, FS, T0 + i / FS, sample_index=i, gain_db=g))
            out += det.flush()
            if not signal_present:
                assert out == [], f"false alarms, noise follows gain: {follows_gain}"
                continue
            assert len(out) == len(truth)
            for b in truth:
                (got,) = matching(out, b)
                assert abs(got.t_start_s - T0 - b.t_start_s) < 20e-6


def test_normalize_follows_floor_and_carrier_mask() -> None:
    """The per-column constants are cached between epochs: a new floor estimate or carrier
    mask must still reach the cells (cell = raw · dof / floor + (G - dof), masked columns G)."""
    det = BurstDetector(DetectorConfig(), FS, FC)
    g = det.config.bins_per_cell
    raw = np.random.default_rng(7).gamma(4.0, 1.0, (16, det.n_columns)).astype(np.float32)

    def normalized(floor: np.ndarray) -> np.ndarray:
        epoch = _Epoch(first_frame=0, sample_start=0, iq=np.zeros(0, np.complex64),
                       power=np.zeros((16, det.config.fft_size), np.float32), peak=np.zeros(16, np.float32),
                       cells=None, mask=np.zeros((16, det.n_columns), bool), floor=None)
        det._normalize(epoch, raw, floor)
        assert epoch.cells is not None and np.array_equal(epoch.floor, floor)
        return epoch.cells.copy()

    def expected(floor: np.ndarray) -> np.ndarray:
        usable = (det.column_dofs > 0) & ~det.carrier_mask
        dofs = np.where(usable, det.column_dofs, 0)
        scale = np.where(usable, dofs / floor, 0.0).astype(np.float32)
        return raw * scale + (g - dofs).astype(np.float32)

    floor = np.full(det.n_columns, 2.0)
    assert np.array_equal(normalized(floor), expected(floor))
    assert np.array_equal(normalized(floor), expected(floor))  # cached constants, same cells
    det.carrier_mask[5] = True  # in place: the cache compares contents
    cells = normalized(floor)
    assert np.array_equal(cells, expected(floor)) and np.all(cells[:, 5] == g)
    new_floor = np.linspace(1.0, 3.0, det.n_columns)
    assert np.array_equal(normalized(new_floor), expected(new_floor))
