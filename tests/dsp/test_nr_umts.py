"""Physics of the NR (TS 38.211) and UMTS (TS 25.213) uplink waveforms and their schedules."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
from scipy import signal

from dsp import lte, nr, umts
from dsp.errors import InputError
from dsp.waveform import render_burst

N28_CARRIER_HZ = 720e6


def psd(x: np.ndarray, fs: float, nperseg: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    f, p = signal.welch(x, fs, nperseg=min(nperseg, x.size), return_onesided=False, detrend=False)
    order = np.argsort(f)
    return f[order], p[order]


def mean_power(x: np.ndarray) -> float:
    return float(np.mean(np.abs(x.astype(np.complex128)) ** 2))


# --- NR ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_rb", "start_rb", "fs"), [(1, 2, 2.4e6), (6, 30, 2.4e6), (25, 20, 7.68e6)]
)
def test_nr_pusch_stays_in_its_resource_blocks(n_rb: int, start_rb: int, fs: float) -> None:
    burst = nr.pusch_burst(0.0, N28_CARRIER_HZ, 52, start_rb, n_rb, n_slots=10)
    x = render_burst(burst, np.random.default_rng(1), fs, burst.freq_hz + 100e3)
    f, p = psd(x, fs)
    rel = np.abs(f + 100e3)
    half = n_rb * lte.RB_BANDWIDTH_HZ / 2
    assert 10 * np.log10(p[rel > half + 90e3].sum() / p.sum()) < -25.0
    assert p[rel <= half].sum() / p.sum() > 0.95
    assert mean_power(x) == pytest.approx(1.0, rel=1e-3)
    centroid = float(np.sum(f * p) / p.sum())
    assert centroid == pytest.approx(-100e3, abs=3e3)


def test_nr_grid_has_no_half_subcarrier_shift() -> None:
    """Subcarrier N/2 sits on the carrier frequency (§5.4), 7.5 kHz below LTE's grid."""
    nr_centre = nr.allocation_center_hz(N28_CARRIER_HZ, 52, 26, 1)
    lte_centre = lte.allocation_center_hz(N28_CARRIER_HZ, 52, 26, 1)
    assert lte_centre - nr_centre == pytest.approx(7.5e3)
    fs = 7.68e6
    burst = nr.pusch_burst(0.0, N28_CARRIER_HZ, 52, 26, 1, dmrs_additional_position=0)
    x = render_burst(burst, np.random.default_rng(2), fs, N28_CARRIER_HZ)
    # Symbol 1's body: 512 samples after its cyclic prefix (symbol 0: 40 + 512, CP 36).
    body = np.abs(np.fft.fft(x[40 + 512 + 36 : 40 + 512 + 36 + 512]))
    occupied = np.flatnonzero(body > 0.01 * body.max())
    assert occupied.tolist() == list(range(12))  # subcarriers 0..11 of RB 26 = bins 0..11


def test_nr_dmrs_uses_every_other_subcarrier_with_3_db_boost() -> None:
    fs = 7.68e6
    burst = nr.pusch_burst(
        0.0, N28_CARRIER_HZ, 52, 10, 4, dmrs_symbol=2, dmrs_additional_position=0
    )
    x = render_burst(burst, np.random.default_rng(3), fs, N28_CARRIER_HZ)
    starts = [0, 40 + 512]
    starts.append(starts[-1] + 36 + 512)
    dmrs_body = np.abs(np.fft.fft(x[starts[2] + 36 : starts[2] + 36 + 512])) ** 2
    data_body = np.abs(np.fft.fft(x[starts[1] + 36 : starts[1] + 36 + 512])) ** 2
    k0 = (10 * 12 - 26 * 12) % 512
    alloc = (k0 + np.arange(48)) % 512
    assert dmrs_body[alloc[1::2]].max() < 1e-4 * dmrs_body[alloc[0::2]].min()
    assert np.sum(dmrs_body[alloc]) == pytest.approx(np.sum(data_body[alloc]), rel=1e-3)
    assert np.mean(dmrs_body[alloc[0::2]]) / np.mean(data_body[alloc]) == pytest.approx(
        2.0, rel=0.01
    )


def test_nr_prach_band_and_power() -> None:
    burst = nr.prach_burst(0.0, N28_CARRIER_HZ, 52, 2)
    x = render_burst(burst, np.random.default_rng(4), 2.4e6, burst.freq_hz)
    f, p = psd(x, 2.4e6, 1024)
    c = np.cumsum(p) / p.sum()
    lo, hi = f[np.searchsorted(c, 0.005)], f[np.searchsorted(c, 0.995)]
    assert hi - lo == pytest.approx(1.08e6, rel=0.1)
    assert (hi + lo) / 2 == pytest.approx(0.0, abs=15e3)
    assert mean_power(x) == pytest.approx(1.0, rel=1e-4)


def test_nr_session_on_the_slot_grid() -> None:
    t0 = 3.0
    bursts = nr.data_session_bursts(t0, 30.0, N28_CARRIER_HZ, 52, np.random.default_rng(5))
    assert {b.kind for b in bursts} == {"nr_pusch", "nr_prach"}
    assert all(b.tech == "nr" and b.params["session"] == "data" for b in bursts)
    for b in bursts:
        rel_ms = (b.t_start_s - t0) / 1e-3
        assert rel_ms == pytest.approx(round(rel_ms), abs=1e-6)
    pusch = sorted((b.t_start_s, b.t_end_s) for b in bursts if b.kind == "nr_pusch")
    assert all(a[1] <= b[0] + 1e-9 for a, b in itertools.pairwise(pusch))
    assert bursts[0].kind == "nr_prach"
    with pytest.raises(InputError, match="carrier_n_rb"):
        nr.data_session_bursts(t0, 1.0, N28_CARRIER_HZ, 50, np.random.default_rng(5))


# --- UMTS --------------------------------------------------------------------------------


def test_umts_occupies_about_4_7_mhz() -> None:
    fs = 7.68e6
    bursts = umts.call_bursts(0.0, 0.2, 2787, np.random.default_rng(6))
    x = np.concatenate(
        [render_burst(b, np.random.default_rng(k), fs, b.freq_hz) for k, b in enumerate(bursts)]
    )
    assert mean_power(x) == pytest.approx(1.0, rel=1e-3)
    f, p = psd(x, fs, 4096)
    flat = np.median(p[np.abs(f) < 1.0e6])
    above = f[p > flat * 10 ** (-26 / 10)]
    assert above.max() - above.min() == pytest.approx(4.68e6, rel=0.03)  # −26 dB bandwidth
    c = np.cumsum(p) / p.sum()
    obw = f[np.searchsorted(c, 0.995)] - f[np.searchsorted(c, 0.005)]
    assert 3.9e6 < obw < 4.5e6  # 99 % occupied bandwidth of RRC 0.22 at 3.84 Mcps


def test_umts_fills_a_dongle_band_with_its_flat_part() -> None:
    fs = 2.4e6
    burst = umts.dpch_burst(0.0, 897.4e6, duration_s=0.05)
    x = render_burst(burst, np.random.default_rng(7), fs, burst.freq_hz)
    assert x.size == 120_000
    assert mean_power(x) == pytest.approx(2.4 / 3.84, rel=0.01)  # flat RRC region only
    f, p = psd(x, fs, 1024)
    band = np.abs(f) < 1.1e6
    assert np.max(p[band]) / np.min(p[band]) < 2.0
    # 2 MHz off-centre: the receiver sees the carrier's upper skirt only.
    edge = render_burst(burst, np.random.default_rng(7), fs, burst.freq_hz + 2e6)
    grid = np.linspace(-2.4e6, 2.4e6, 100_001)
    psd_rc = umts.raised_cosine_psd(grid)
    share = psd_rc[np.abs(grid - 2e6) < 1.2e6].sum() / psd_rc.sum()
    assert mean_power(edge) == pytest.approx(share, rel=0.01)
    assert not np.any(render_burst(burst, np.random.default_rng(7), fs, burst.freq_hz + 4e6))


def test_umts_offset_moves_the_spectrum() -> None:
    fs = 7.68e6
    burst = umts.dpch_burst(0.0, 897.4e6, duration_s=0.02)
    for offset_hz in (-1.0e6, 0.0, 0.73e6):
        x = render_burst(burst, np.random.default_rng(8), fs, burst.freq_hz - offset_hz)
        f, p = psd(x, fs, 1024)
        assert np.sum(f * p) / np.sum(p) == pytest.approx(offset_hz, abs=30e3)


def test_scrambling_code_properties() -> None:
    code = umts.long_scrambling_code(12345)
    assert code.shape == (38_400,)
    assert np.allclose(np.abs(code), math.sqrt(2))
    # Chip pairs (2m, 2m+1) differ by ±90°, never 180° (HPSK-like decimation, §4.3.2.1).
    ratio = code[1::2] / code[0::2]
    assert np.allclose(np.abs(ratio.real), 0.0, atol=1e-6)
    assert abs(np.mean(code.real)) < 0.02 and abs(np.mean(code.imag)) < 0.02
    other = umts.long_scrambling_code(54321)
    assert abs(np.vdot(code, other)) / 38_400 / 2 < 0.03
    # Jumping the shift registers ahead equals running them.
    state = np.zeros(25, dtype=np.uint8)
    state[0] = 1
    state[24] = 1
    run = umts._lfsr_bits(state, umts._X_TAPS, 1_000 + 25)
    jumped = (umts._jump(umts._X_TAPS, 1_000) @ state) % 2
    assert np.array_equal(run[1_000 : 1_000 + 25], jumped)


def test_ovsf_codes_are_orthogonal() -> None:
    codes = np.array([umts.ovsf_code(16, k) for k in range(16)], dtype=np.int64)
    assert np.array_equal(codes @ codes.T, 16 * np.eye(16, dtype=np.int64))
    assert umts.ovsf_code(4, 1).tolist() == [1, 1, -1, -1]
    assert umts.ovsf_code(256, 0).tolist() == [1] * 256


def test_uarfcn_helper() -> None:
    assert umts.uarfcn_to_uplink_hz(2712) == pytest.approx(882.4e6)
    assert umts.uarfcn_to_uplink_hz(9612) == pytest.approx(1922.4e6)
    with pytest.raises(InputError, match="uarfcn"):
        umts.uarfcn_to_uplink_hz(3000)


def test_call_is_contiguous_frames_with_dtx() -> None:
    bursts = umts.call_bursts(7.0, 20.0, 897.4e6, np.random.default_rng(9))
    assert len(bursts) == 2000
    starts = np.array([b.t_start_s for b in bursts])
    assert np.allclose(np.diff(starts), 0.01)
    assert starts[0] == pytest.approx(7.0)
    assert all(
        b.tech == "umts" and b.kind == "umts_dpch" and b.params["session"] == "voice"
        for b in bursts
    )
    silent = [b for b in bursts if not b.params["dpdch"]]
    talking = [b for b in bursts if b.params["dpdch"]]
    assert silent and talking
    assert silent[0].power_offset_db == pytest.approx(
        10 * math.log10((8 / 15) ** 2 / ((8 / 15) ** 2 + 1))
    )
    assert all(b.power_offset_db == 0.0 for b in talking)


def test_umts_render_is_fast_enough_for_calls() -> None:
    bursts = umts.call_bursts(0.0, 1.0, 897.4e6, np.random.default_rng(10))
    render_burst(bursts[0], np.random.default_rng(10), 2.4e6, bursts[0].freq_hz)
    start = time.perf_counter()
    for b in bursts:
        render_burst(b, np.random.default_rng(10), 2.4e6, b.freq_hz)
    assert time.perf_counter() - start < 1.0
