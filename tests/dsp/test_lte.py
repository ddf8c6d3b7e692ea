"""Physics of the LTE uplink waveforms (TS 36.211) and the shape of the activity schedules."""

from __future__ import annotations

import collections
import itertools
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from dsp import lte, nr
from dsp.errors import InputError
from dsp.waveform import TxBurst, render_burst

CARRIER_HZ = 710e6


def psd(x: np.ndarray, fs: float, nperseg: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    f, p = signal.welch(x, fs, nperseg=min(nperseg, x.size), return_onesided=False, detrend=False)
    order = np.argsort(f)
    return f[order], p[order]


def occupied_band(x: np.ndarray, fs: float, share: float = 0.99) -> tuple[float, float]:
    """(width, centre) of the band holding ``share`` of the power."""
    f, p = psd(x, fs, 4096)
    c = np.cumsum(p) / p.sum()
    lo = f[np.searchsorted(c, (1 - share) / 2)]
    hi = f[np.searchsorted(c, 1 - (1 - share) / 2)]
    return float(hi - lo), float((hi + lo) / 2)


def papr_db(x: np.ndarray, percentile: float = 99.9) -> float:
    power = np.abs(x.astype(np.complex128)) ** 2
    return float(10 * np.log10(np.percentile(power, percentile) / power.mean()))


def mean_power(x: np.ndarray) -> float:
    return float(np.mean(np.abs(x.astype(np.complex128)) ** 2))


@pytest.mark.parametrize(
    ("n_rb", "start_rb", "fs"), [(1, 3, 2.4e6), (1, 47, 2.4e6), (4, 20, 2.4e6), (12, 30, 7.68e6)]
)
def test_pusch_power_stays_in_its_allocation(n_rb: int, start_rb: int, fs: float) -> None:
    burst = lte.pusch_burst(0.0, CARRIER_HZ, 50, start_rb, n_rb, n_subframes=20)
    rx_offset_hz = 150e3
    x = render_burst(burst, np.random.default_rng(1), fs, burst.freq_hz - rx_offset_hz)
    f, p = psd(x, fs)
    rel = np.abs(f - rx_offset_hz)
    half = n_rb * lte.RB_BANDWIDTH_HZ / 2
    # Edge subcarriers' sinc main lobes spill up to 15 kHz past the allocation: half an RB
    # of guard, then the out-of-allocation power must be 25 dB down (in-band emission).
    outside = p[rel > half + 90e3].sum() / p.sum()
    assert 10 * np.log10(outside) < -25.0
    assert p[rel <= half].sum() / p.sum() > 0.95


def test_sc_fdma_papr_is_below_ofdm() -> None:
    """DFT spreading (§5.3.3) is what keeps an LTE phone's envelope low; NR CP-OFDM lacks it."""
    fs = 7.68e6
    rng = np.random.default_rng(2)
    lte_burst = lte.pusch_burst(0.0, CARRIER_HZ, 50, 10, 12, n_subframes=30, modulation="qpsk")
    nr_burst = nr.pusch_burst(0.0, CARRIER_HZ, 52, 10, 12, n_slots=30, modulation="qpsk")
    sc_fdma = render_burst(lte_burst, rng, fs, lte_burst.freq_hz)
    ofdm = render_burst(nr_burst, rng, fs, nr_burst.freq_hz)
    assert papr_db(ofdm) - papr_db(sc_fdma) > 1.5


def test_sc_fdma_symbols_demodulate_to_qpsk() -> None:
    """FFT of one symbol's body, inverse DFT of the allocation: the QPSK data come back.

    This checks the DFT spreading, the subcarrier mapping with the +Δf/2 shift, and that
    the transmit windowing leaves every FFT window intact.
    """
    fs = 7.68e6  # 512 × 15 kHz: symbol 0's body is samples 40..551 (CP = 160·Ts)
    n_rb, start_rb = 6, 10
    burst = lte.pusch_burst(0.0, CARRIER_HZ, 50, start_rb, n_rb, modulation="qpsk")
    rx_hz = burst.freq_hz + lte.SUBCARRIER_SPACING_HZ / 2  # subcarriers on FFT bins
    x = render_burst(burst, np.random.default_rng(3), fs, rx_hz)
    spectrum = np.fft.fft(x[40 : 40 + 512])
    f_rel = np.fft.fftfreq(512, 1 / fs)
    m = 12 * n_rb
    first_sc_hz = burst.freq_hz - m / 2 * lte.SUBCARRIER_SPACING_HZ + 7.5e3 - rx_hz
    bins = np.rint((first_sc_hz + 15e3 * np.arange(m)) / 15e3).astype(int) % 512
    assert np.allclose(f_rel[bins[:3]], first_sc_hz + 15e3 * np.arange(3))
    d = np.fft.ifft(spectrum[bins], norm="ortho")
    assert np.std(np.abs(d)) / np.mean(np.abs(d)) < 1e-3
    quartic = d**4 / np.abs(d) ** 4  # QPSK: all four points map to the same phase
    assert np.abs(np.mean(quartic)) > 0.999
    others = np.delete(np.abs(spectrum), bins)
    assert np.max(others) < 1e-3 * np.max(np.abs(spectrum[bins]))


def test_prach_occupies_about_1_08_mhz_centred_on_its_block() -> None:
    burst = lte.prach_burst(0.0, CARRIER_HZ, 50, 4, root=22, cyclic_shift=26)
    assert burst.duration_s == pytest.approx(903.125e-6)
    for fs in (2.4e6, 7.68e6):
        x = render_burst(burst, np.random.default_rng(4), fs, burst.freq_hz - 200e3)
        width, centre = occupied_band(x, fs)
        assert width == pytest.approx(1.08e6, rel=0.10)
        assert centre == pytest.approx(200e3, abs=15e3)
        assert mean_power(x) == pytest.approx(1.0, rel=1e-4)


def test_prach_spectrum_is_the_zadoff_chu_dft() -> None:
    """Its body is exactly one 839-point ZC sequence on 1.25 kHz subcarriers (flat spectrum)."""
    fs = 1.92e6  # body = 1536 samples after a 198-sample CP
    burst = lte.prach_burst(0.0, CARRIER_HZ, 6, 0, root=1, cyclic_shift=0)
    x = render_burst(burst, np.random.default_rng(5), fs, burst.freq_hz)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft(x[198 : 198 + 1536])))
    occupied = spectrum[spectrum > 0.1 * spectrum.max()]
    assert occupied.size == lte.PRACH_N_ZC
    assert np.std(occupied) / np.mean(occupied) < 0.01


def test_wide_carrier_renders_only_its_in_band_share() -> None:
    """100 RBs (18 MHz) through a 2.4 MHz receiver: the 159 subcarriers inside ±1.2 MHz carry 159/1200.

    The share is of the realized resource-element energy, so it wanders by ~1 % with the data.
    """
    burst = lte.pusch_burst(0.0, CARRIER_HZ, 100, 0, 100, n_subframes=4)
    rng = np.random.default_rng(6)
    narrow = render_burst(burst, rng, 2.4e6, CARRIER_HZ + 7.5e3)
    assert mean_power(narrow) == pytest.approx(159 / 1200, rel=0.04)
    f, p = psd(narrow, 2.4e6, 256)
    band = np.abs(f) < 1.0e6
    assert np.max(p[band]) / np.min(p[band]) < 2.5  # flat: the whole receiver band is data
    wide = render_burst(burst, rng, 30.72e6, CARRIER_HZ)
    assert mean_power(wide) == pytest.approx(1.0, rel=1e-4)
    # A receiver straddling the allocation's lower edge sees the part above it.
    half_in = render_burst(burst, rng, 2.4e6, CARRIER_HZ - 9e6)
    assert mean_power(half_in) == pytest.approx(80 / 1200, rel=0.05)
    assert not np.any(render_burst(burst, rng, 2.4e6, CARRIER_HZ + 20e6))


def test_pusch_render_time_scales_with_receiver_not_carrier() -> None:
    burst = lte.pusch_burst(0.0, CARRIER_HZ, 100, 0, 100, n_subframes=1000)
    render_burst(burst, np.random.default_rng(7), 2.4e6, CARRIER_HZ)  # warm caches
    start = time.perf_counter()
    x = render_burst(burst, np.random.default_rng(7), 2.4e6, CARRIER_HZ)
    assert time.perf_counter() - start < 1.0
    assert x.size == 2_400_000 and x.dtype == np.complex64


@pytest.mark.parametrize("fs", [2.4e6, 2.048e6, 7.68e6])
@pytest.mark.parametrize(
    "burst",
    [
        lte.pusch_burst(5.0, CARRIER_HZ, 25, 8, 5, n_subframes=3, modulation="16qam"),
        lte.pusch_burst(5.0, CARRIER_HZ, 25, 8, 4, n_subframes=2, srs=True),
        lte.pucch_burst(5.0, CARRIER_HZ, 25, resource=2, slot=1, pucch_format="2"),
        lte.pucch_burst(5.0, CARRIER_HZ, 6, resource=1, pucch_format="1a", shortened=True),
        lte.srs_burst(5.0, CARRIER_HZ, 25, 4, 8),
        lte.prach_burst(5.0, CARRIER_HZ, 25, 2),
    ],
    ids=["pusch", "pusch-srs", "pucch-slot", "pucch-subframe", "srs", "prach"],
)
def test_bursts_have_unit_power_and_contract_length(burst: TxBurst, fs: float) -> None:
    centre = lte.allocation_center_hz(
        CARRIER_HZ, burst.params["carrier_n_rb"], 0, burst.params["carrier_n_rb"]
    )
    x = render_burst(
        burst, np.random.default_rng(8), fs, centre if burst.bandwidth_hz > 1.5e6 else burst.freq_hz
    )
    assert x.dtype == np.complex64
    assert x.size == math.ceil(burst.duration_s * fs)
    assert mean_power(x) == pytest.approx(1.0, rel=2e-3)


@settings(max_examples=15, deadline=None)
@given(offset_hz=st.floats(-700e3, 700e3))
def test_offset_moves_the_spectrum(offset_hz: float) -> None:
    burst = lte.pusch_burst(0.0, CARRIER_HZ, 50, 20, 2, n_subframes=5)
    x = render_burst(burst, np.random.default_rng(9), 2.4e6, burst.freq_hz - offset_hz)
    f, p = psd(x, 2.4e6, 1024)
    centroid = float(np.sum(f * p) / np.sum(p))
    assert centroid == pytest.approx(offset_hz, abs=6e3)
    assert mean_power(x) == pytest.approx(1.0, rel=1e-3)


def test_pucch_hops_between_carrier_edges() -> None:
    fs = 15.36e6
    for resource in (0, 1, 3):
        rbs = [lte.pucch_rb(resource, slot, 50) for slot in (0, 1)]
        assert sorted(rbs) == [resource // 2, 49 - resource // 2]
        for slot in (0, 1):
            burst = lte.pucch_burst(0.0, CARRIER_HZ, 50, resource=resource, slot=slot)
            assert burst.t_start_s == pytest.approx(slot * 0.5e-3)
            assert burst.freq_hz == pytest.approx(
                lte.allocation_center_hz(CARRIER_HZ, 50, rbs[slot], 1)
            )
            x = render_burst(burst, np.random.default_rng(10), fs, CARRIER_HZ)
            f, p = psd(x, fs, 1024)
            assert np.sum(f * p) / np.sum(p) == pytest.approx(burst.freq_hz - CARRIER_HZ, abs=20e3)
    whole = lte.pucch_burst(0.0, CARRIER_HZ, 50, resource=0)
    assert whole.duration_s == pytest.approx(1e-3)
    assert whole.bandwidth_hz == pytest.approx(50 * lte.RB_BANDWIDTH_HZ)


def test_srs_is_a_comb_in_the_last_symbol() -> None:
    fs = 7.68e6
    burst = lte.srs_burst(0.0, CARRIER_HZ, 50, 8, 16, srs_comb=1)
    assert burst.t_end_s == pytest.approx(1e-3)
    rx_hz = burst.freq_hz + 7.5e3
    x = render_burst(burst, np.random.default_rng(11), fs, rx_hz)
    body = np.abs(np.fft.fft(x[36 : 36 + 512])) ** 2  # CP 144·Ts = 36 samples
    f_rel = np.fft.fftfreq(512, 1 / fs)
    first = burst.freq_hz - burst.bandwidth_hz / 2 + 7.5e3 + 15e3 - rx_hz  # comb 1: odd subcarriers
    on = np.rint((first + 30e3 * np.arange(96)) / 15e3).astype(int) % 512
    off = (on - 1) % 512
    assert np.allclose(f_rel[on[:2]], first + 30e3 * np.arange(2))
    assert body[on].min() > 1e3 * body[off].max()


def test_earfcn_helper() -> None:
    assert lte.earfcn_to_uplink_hz(27210) == pytest.approx(703e6)
    assert lte.earfcn_to_uplink_hz(27460) == pytest.approx(728e6)
    assert lte.earfcn_to_uplink_hz(24300) == pytest.approx(847e6)
    assert lte.earfcn_to_uplink_hz(21450) == pytest.approx(880e6)
    assert lte.earfcn_to_uplink_hz(19575) == pytest.approx(1747.5e6)
    for band, (low, high) in lte.LTE_UPLINK_BANDS.items():
        for earfcn in range(18000, 28000, 7):
            try:
                f = lte.earfcn_to_uplink_hz(earfcn)
            except InputError:
                continue
            if lte.earfcn_band(earfcn) == band:
                assert low <= f < high
    with pytest.raises(InputError, match="earfcn"):
        lte.earfcn_to_uplink_hz(6300)  # a downlink EARFCN


def test_bad_params_are_input_errors() -> None:
    rng = np.random.default_rng(12)
    with pytest.raises(InputError, match="n_rb"):
        render_burst(lte.pusch_burst(0.0, CARRIER_HZ, 50, 0, 7), rng, 2.4e6, CARRIER_HZ)
    with pytest.raises(InputError, match="start_rb"):
        render_burst(lte.pusch_burst(0.0, CARRIER_HZ, 50, 48, 4), rng, 2.4e6, CARRIER_HZ)
    with pytest.raises(InputError, match="carrier_n_rb"):
        lte.data_session_bursts(0.0, 1.0, CARRIER_HZ, 42, rng)


def gold_reference(c_init: int, length: int) -> np.ndarray:
    x1 = [1] + [0] * 30
    x2 = [(c_init >> i) & 1 for i in range(31)]
    for n in range(1600 + length):
        x1.append((x1[n + 3] + x1[n]) % 2)
        x2.append((x2[n + 3] + x2[n + 2] + x2[n + 1] + x2[n]) % 2)
    return np.array([(x1[n + 1600] + x2[n + 1600]) % 2 for n in range(length)])


def test_gold_sequence_matches_the_bitwise_definition() -> None:
    inits = [0, 1, 0x5A5A5, 2**31 - 1]
    fast = lte.gold_sequence(inits, 300)
    for row, c_init in zip(fast, inits, strict=True):
        assert np.array_equal(row, gold_reference(c_init, 300))


def test_reference_sequences_are_unit_modulus_and_low_papr() -> None:
    for length in (12, 24, 36, 72, 600):
        for group in (0, 17, 29):
            r = lte.base_sequence(length, group, alpha_rad=2 * np.pi * 3 / 12)
            assert np.allclose(np.abs(r), 1.0)
            time_domain = np.fft.ifft(r, 8 * length)
            assert papr_db(time_domain, 100.0) < 6.0  # random OFDM would reach ~10 dB
    assert lte.base_sequence(12, 0)[0] == pytest.approx(np.exp(-1j * np.pi / 4))  # φ(0) = −1


SCHEDULES = {
    "data": lambda rng: lte.data_session_bursts(
        12.5, 40.0, CARRIER_HZ, 50, rng, mean_rate_kbps=80.0
    ),
    "voice": lambda rng: lte.voice_call_bursts(12.5, 20.0, CARRIER_HZ, 25, rng),
    "sms": lambda rng: lte.sms_bursts(12.5, 3.0, CARRIER_HZ, 15, rng),
    "idle": lambda rng: lte.idle_update_bursts(12.5, 3600.0, CARRIER_HZ, 6, rng, period_s=600.0),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedules_sit_on_the_subframe_grid(name: str) -> None:
    t0 = 12.5
    bursts = SCHEDULES[name](np.random.default_rng(13))
    kinds = {b.kind for b in bursts}
    assert {"lte_prach", "lte_pusch", "lte_pucch"} <= kinds
    assert all(b.tech == "lte" and b.params["session"] == name for b in bursts)
    for b in bursts:
        rel_ms = (b.t_start_s - t0) / 1e-3
        if b.kind in ("lte_pusch", "lte_prach"):
            assert rel_ms == pytest.approx(round(rel_ms), abs=1e-6)
            assert (
                b.duration_s / 1e-3 == pytest.approx(round(b.duration_s / 1e-3), abs=1e-9)
                or b.kind == "lte_prach"
            )
        elif b.kind == "lte_pucch":
            assert rel_ms - 0.5 * b.params["slot"] == pytest.approx(
                round(rel_ms - 0.5 * b.params["slot"]), abs=1e-6
            )
        else:
            end_ms = (b.t_end_s - t0) / 1e-3
            assert end_ms == pytest.approx(round(end_ms), abs=1e-6)
    # One carrier, no two PUSCH bursts overlap, and no PUCCH shares a subframe with PUSCH.
    pusch = sorted((b.t_start_s, b.t_end_s) for b in bursts if b.kind == "lte_pusch")
    assert all(a[1] <= b[0] + 1e-9 for a, b in itertools.pairwise(pusch))
    busy = {round((t - t0) / 1e-3) + k for t, e in pusch for k in range(round((e - t) / 1e-3))}
    pucch_sf = {
        math.floor((b.t_start_s - t0) / 1e-3 + 1e-6) for b in bursts if b.kind == "lte_pucch"
    }
    assert not busy & pucch_sf


def test_voice_call_sends_a_frame_every_20_ms_while_talking() -> None:
    bursts = lte.voice_call_bursts(0.0, 30.0, CARRIER_HZ, 50, np.random.default_rng(14))
    pusch = [b for b in bursts if b.kind == "lte_pusch"]
    allocations = collections.Counter((b.params["start_rb"], b.params["n_rb"]) for b in pusch)
    (start_rb, n_rb), _ = allocations.most_common(1)[0]  # the semi-persistent voice grant
    assert 1 <= n_rb <= 3
    voice = [b for b in pusch if (b.params["start_rb"], b.params["n_rb"]) == (start_rb, n_rb)]
    gaps_ms = np.round(np.diff([b.t_start_s for b in voice]) / 1e-3).astype(int)
    # Speech frames on a 20 ms grid, SID every 160 ms, HARQ retransmissions 8, 16 ms after.
    assert np.mean(gaps_ms == 20) > 0.4
    offsets_ms = np.round((np.array([b.t_start_s for b in voice]) - voice[0].t_start_s) / 1e-3)
    assert np.all(np.isin(offsets_ms.astype(int) % 20, [0, 8, 16, 4]))
    assert np.max(gaps_ms) <= 160
    assert len(voice) > 400


def test_data_session_rate_and_idle_gaps() -> None:
    rng = np.random.default_rng(15)
    bursts = lte.data_session_bursts(0.0, 120.0, CARRIER_HZ, 50, rng, mean_rate_kbps=100.0)
    starts = np.array(sorted(b.t_start_s for b in bursts))
    # Reading time and DRX leave long silences: the phone is not on the air all the time.
    assert np.max(np.diff(starts)) > 0.3
    airtime = sum(b.duration_s for b in bursts if b.kind == "lte_pusch")
    assert 0.5 < airtime < 60.0
    sms = lte.sms_bursts(0.0, 3.0, CARRIER_HZ, 50, rng)
    assert lte.sms_bursts(0.0, 0.2, CARRIER_HZ, 50, rng)[-1].t_end_s <= 0.2 + 1e-9
    assert 0.5 < max(b.t_end_s for b in sms) < 2.5
