"""GSM uplink bursts: standard tables, GMSK physics, power-vs-time, schedules.

The waveform is checked from the outside, as a receiver would: the bits are recovered
with a phase demodulator written here (not the module's), the spectrum with a Welch
PSD, the envelope from |x|, the timing from the schedule's records.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from dsp import gsm
from dsp.errors import InputError
from dsp.waveform import TxBurst, render_burst

RATE_HZ = 2.4e6
T_BIT_S = 6.0 / 1625000.0

# TS 45.002 §5.2.3 as printed in the standard (one string per TSC).
STANDARD_TSC = (
    "00100101110000100010010111",
    "00101101110111100010110111",
    "01000011101110100100001110",
    "01000111101101000100011110",
    "00011010111001000001101011",
    "01001110101100000100111010",
    "10100111110110001010011111",
    "11101111000100101110111100",
)


def _demodulate(samples: np.ndarray, sample_rate_hz: float, first_bit_s: float, n_bits: int) -> np.ndarray:
    """Bits back from a GMSK burst: phase turn over each bit → α, then undo the differential code."""
    phase = np.unwrap(np.angle(samples.astype(np.complex128)))
    t_s = np.arange(samples.size) / sample_rate_hz
    edges_s = first_bit_s + np.arange(n_bits + 1) * T_BIT_S
    turns = np.diff(np.interp(edges_s, t_s, phase))
    encoded = (turns < 0).astype(np.uint8)  # α = -1 ⇔ d̂ = 1
    bits = np.empty(n_bits, dtype=np.uint8)
    previous = 1  # TS 45.004 §2.2: dummy bits d = 1 before the burst
    for i, e in enumerate(encoded):  # 148 bits, not samples
        previous = bits[i] = e ^ previous
    return bits


def _normal(**params: object) -> TxBurst:
    return TxBurst(0.0, gsm.NORMAL_BURST_DURATION_S, 902.4e6, 200e3, "gsm", "gsm_normal", params=dict(params))


def _psd(samples: np.ndarray, sample_rate_hz: float, nperseg: int) -> tuple[np.ndarray, np.ndarray]:
    freqs_hz, psd = signal.welch(samples, fs=sample_rate_hz, nperseg=nperseg, return_onesided=False)
    order = np.argsort(freqs_hz)
    return freqs_hz[order], psd[order]


def _occupied_band_hz(freqs_hz: np.ndarray, psd: np.ndarray, fraction: float = 0.99) -> tuple[float, float]:
    cumulative = np.cumsum(psd) / np.sum(psd)
    tail = (1.0 - fraction) / 2.0
    return float(freqs_hz[np.searchsorted(cumulative, tail)]), float(freqs_hz[np.searchsorted(cumulative, 1.0 - tail)])


# --- standard tables --------------------------------------------------------------------


def test_training_sequences_are_the_standards() -> None:
    table = ["".join(str(b) for b in row) for row in gsm.TRAINING_SEQUENCES]
    assert table == list(STANDARD_TSC)
    assert gsm.TRAINING_SEQUENCES[0].tolist() == [0, 0, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 1, 1, 1]
    assert gsm.TRAINING_SEQUENCES[1][20] == 1  # gr-gsm has 0 here


@pytest.mark.parametrize("tsc", range(8))
def test_training_sequence_has_the_design_autocorrelation(tsc: int) -> None:
    # Each TSC is a 16-bit core with 5-bit cyclic extensions: correlating the 26 bits with
    # the core gives 16 at the centre and exactly 0 for shifts ±1..±5.
    s = 1.0 - 2.0 * gsm.TRAINING_SEQUENCES[tsc]
    core = s[5:21]
    correlation = [float(np.dot(s[5 + shift:21 + shift], core)) for shift in range(-5, 6)]
    assert correlation == [0.0] * 5 + [16.0] + [0.0] * 5
    assert np.array_equal(s[:5], s[16:21]) and np.array_equal(s[21:], s[5:10])


def test_the_gr_gsm_bit_flip_breaks_the_design_property() -> None:
    s = 1.0 - 2.0 * gsm.TRAINING_SEQUENCES[1]
    s[20] = -s[20]
    core = s[5:21]
    sidelobes = [float(np.dot(s[5 + shift:21 + shift], core)) for shift in (-5, -4, -3, -2, -1)]
    assert any(value != 0.0 for value in sidelobes)


def test_access_burst_sequences() -> None:
    assert "".join(map(str, gsm.ACCESS_SYNC_BITS)) == "01001011011111111001100110101010001111000"
    assert gsm.ACCESS_EXTENDED_TAIL_BITS.tolist() == [0, 0, 1, 1, 1, 0, 1, 0]


def test_burst_bit_layouts() -> None:
    rng = np.random.default_rng(0)
    normal = gsm.normal_burst_bits(rng, tsc=5, stealing=1)
    assert normal.size == 148
    assert normal[:3].tolist() == [0, 0, 0] and normal[145:].tolist() == [0, 0, 0]
    assert normal[60] == normal[87] == 1
    assert np.array_equal(normal[61:87], gsm.TRAINING_SEQUENCES[5])
    access = gsm.access_burst_bits(rng)
    assert access.size == 88
    assert np.array_equal(access[:8], gsm.ACCESS_EXTENDED_TAIL_BITS)
    assert np.array_equal(access[8:49], gsm.ACCESS_SYNC_BITS)
    assert access[85:].tolist() == [0, 0, 0]
    assert 8 <= int(access[49:85].sum()) <= 28  # random coded bits, not a constant


# --- frequencies and timing ---------------------------------------------------------------


@given(st.integers(1, 124))
def test_p_gsm_uplink_frequency(n: int) -> None:
    assert gsm.uplink_freq_hz(n) == 890_000_000 + 200_000 * n
    assert gsm.downlink_freq_hz(n) == gsm.uplink_freq_hz(n) + 45_000_000
    assert gsm.arfcn_for_uplink_freq_hz(gsm.uplink_freq_hz(n) + 20e3) == n


def test_other_bands_and_invalid_arfcns() -> None:
    assert gsm.uplink_freq_hz(975) == 880_200_000
    assert gsm.uplink_freq_hz(1023) == 889_800_000
    assert gsm.uplink_freq_hz(0) == 890_000_000
    assert gsm.uplink_freq_hz(512) == 1_710_200_000
    assert gsm.uplink_freq_hz(885) == 1_784_800_000
    assert gsm.downlink_freq_hz(512) == 1_805_200_000
    assert gsm.arfcn_for_uplink_freq_hz(880.2e6) == 975
    assert gsm.arfcn_for_uplink_freq_hz(1747.4e6) == 698
    assert gsm.arfcn_for_uplink_freq_hz(902.5e6) is None  # between channels
    for bad in (-1, 125, 511, 886, 954, 1024, 3.0):
        with pytest.raises(ValueError, match="arfcn"):
            gsm.uplink_freq_hz(bad)  # type: ignore[arg-type]


def test_tdma_timing_constants() -> None:
    assert gsm.TDMA_FRAME_S == pytest.approx(4.615385e-3, rel=1e-6)
    assert gsm.TIMESLOT_S == pytest.approx(576.923e-6, rel=1e-5)
    assert gsm.TIMESLOT_S / gsm.BIT_PERIOD_S == pytest.approx(156.25)
    assert gsm.NORMAL_BURST_DURATION_S < gsm.TIMESLOT_S  # ramps fit the guard period
    assert (gsm.N_NORMAL_BURST_BITS + gsm.NORMAL_GUARD_BITS) * gsm.BIT_PERIOD_S == pytest.approx(gsm.TIMESLOT_S)
    assert (gsm.N_ACCESS_BURST_BITS + gsm.ACCESS_GUARD_BITS) * gsm.BIT_PERIOD_S == pytest.approx(gsm.TIMESLOT_S)


# --- GMSK ---------------------------------------------------------------------------------


def test_gmsk_phase_matches_a_brute_force_modulator() -> None:
    # Reference: NRZ at 256 samples a bit, convolved with the sampled Gaussian, integrated.
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2, 148).astype(np.uint8)
    oversampling, pad = 256, 10
    d = np.concatenate((np.ones(pad, np.uint8), bits, np.ones(pad, np.uint8)))
    alpha = 1.0 - 2.0 * (d ^ np.concatenate(([1], d[:-1])))
    sigma_bits = math.sqrt(math.log(2.0)) / (2.0 * math.pi * 0.3)
    taps = np.arange(-5 * oversampling, 5 * oversampling + 1) / oversampling
    gaussian = np.exp(-(taps**2) / (2.0 * sigma_bits**2))
    frequency = np.convolve(np.repeat(alpha, oversampling), gaussian / gaussian.sum(), mode="same")
    phase = np.concatenate(([0.0], np.cumsum(frequency))) * (np.pi / 2.0) / oversampling
    t_ref_s = (np.arange(phase.size) - pad * oversampling) * T_BIT_S / oversampling

    n = 1350
    computed = gsm.gmsk_phase_rad(bits, RATE_HZ, n, gsm.RAMP_LEAD_S)
    expected = np.interp(np.arange(n) / RATE_HZ - gsm.RAMP_LEAD_S, t_ref_s, phase)
    error = computed - expected
    assert np.max(np.abs(error - error.mean())) < 1e-3


def test_pulse_integral_turns_the_phase_by_a_quarter_cycle_per_bit() -> None:
    q = gsm.gmsk_phase_integral(np.array([-4.0, 0.0, 4.0]) * T_BIT_S)
    assert q == pytest.approx([0.0, 0.5, 1.0], abs=1e-9)


@pytest.mark.parametrize("rate_hz", [1.0e6, 2.048e6, 2.4e6, 3.2e6])
def test_every_bit_comes_back_at_any_sample_rate(rate_hz: float) -> None:
    burst = _normal(tsc=3)
    samples = gsm.render(burst, np.random.default_rng(11), rate_hz, 0.0)
    expected_bits = gsm.normal_burst_bits(np.random.default_rng(11), tsc=3)
    assert samples.dtype == np.complex64
    assert samples.size == math.ceil(burst.duration_s * rate_hz)
    recovered = _demodulate(samples, rate_hz, gsm.RAMP_LEAD_S, 148)
    assert np.array_equal(recovered, expected_bits)
    assert np.array_equal(recovered[61:87], gsm.TRAINING_SEQUENCES[3])


def test_access_burst_bits_come_back() -> None:
    burst = TxBurst(0.0, gsm.ACCESS_BURST_DURATION_S, 902.4e6, 200e3, "gsm", "gsm_access")
    samples = gsm.render(burst, np.random.default_rng(5), RATE_HZ, 0.0)
    expected_bits = gsm.access_burst_bits(np.random.default_rng(5))
    assert samples.size == math.ceil(gsm.ACCESS_BURST_DURATION_S * RATE_HZ)
    assert np.array_equal(_demodulate(samples, RATE_HZ, gsm.RAMP_LEAD_S, 88), expected_bits)


def test_training_sequence_correlates_where_it_was_put() -> None:
    # Correlate the discriminator output with that of a reference GMSK-modulated TSC.
    tsc = 6
    samples = gsm.render(_normal(tsc=tsc), np.random.default_rng(2), RATE_HZ, 0.0).astype(np.complex128)
    discriminator = np.angle(samples[1:] * np.conj(samples[:-1]))
    reference = gsm.modulate(gsm.TRAINING_SEQUENCES[tsc], RATE_HZ).astype(np.complex128)
    ref_disc = np.angle(reference[1:] * np.conj(reference[:-1]))
    # Keep bits 1..25 of the reference: bit 0's frequency depends on the bit before it.
    first = math.ceil((gsm.RAMP_LEAD_S + 1 * T_BIT_S) * RATE_HZ)
    last = math.floor((gsm.RAMP_LEAD_S + 25 * T_BIT_S) * RATE_HZ)
    template = ref_disc[first:last]
    correlation = np.correlate(discriminator, template, mode="valid")
    expected_lag = first + 61 * T_BIT_S * RATE_HZ
    assert abs(int(np.argmax(correlation)) - expected_lag) <= 1.0
    # A wrong TSC does not produce a peak that high.
    wrong = gsm.render(_normal(tsc=(tsc + 1) % 8), np.random.default_rng(2), RATE_HZ, 0.0).astype(np.complex128)
    wrong_disc = np.angle(wrong[1:] * np.conj(wrong[:-1]))
    assert np.max(np.correlate(wrong_disc, template, mode="valid")) < 0.8 * np.max(correlation)


def test_occupied_bandwidth_is_about_250_khz() -> None:
    rng = np.random.default_rng(7)
    bursts = [gsm.render(_normal(), rng, RATE_HZ, 0.0) for _ in range(150)]
    freqs_hz, psd = _psd(np.concatenate(bursts), RATE_HZ, 2048)
    low_hz, high_hz = _occupied_band_hz(freqs_hz, psd)
    assert 225e3 <= high_hz - low_hz <= 275e3
    assert abs(low_hz + high_hz) / 2 < 3e3
    # The 400 kHz point of the spectrum mask: far below the in-band level.
    inband = np.mean(psd[np.abs(freqs_hz) < 50e3])
    assert np.mean(psd[np.abs(np.abs(freqs_hz) - 400e3) < 10e3]) < inband * 10 ** (-50 / 10)


@pytest.mark.parametrize("offset_hz", [-550e3, 300e3])
def test_offset_moves_the_spectrum(offset_hz: float) -> None:
    rng = np.random.default_rng(8)
    samples = np.concatenate([gsm.render(_normal(), rng, RATE_HZ, offset_hz) for _ in range(100)])
    freqs_hz, psd = _psd(samples, RATE_HZ, 1024)
    centroid_hz = float(np.sum(freqs_hz * psd) / np.sum(psd))
    low_hz, high_hz = _occupied_band_hz(freqs_hz, psd)
    assert abs(centroid_hz - offset_hz) < 3e3
    assert abs((low_hz + high_hz) / 2 - offset_hz) < 3e3
    smooth = np.convolve(psd, np.ones(21) / 21, mode="same")
    assert abs(freqs_hz[np.argmax(smooth)] - offset_hz) < 25e3


def test_content_beyond_nyquist_is_not_aliased() -> None:
    rng = np.random.default_rng(9)
    samples = np.concatenate([gsm.render(_normal(), rng, RATE_HZ, 1.15e6) for _ in range(40)])
    freqs_hz, psd = _psd(samples, RATE_HZ, 1024)
    wrapped = np.sum(psd[(freqs_hz > -1.19e6) & (freqs_hz < -1.05e6)])
    kept = np.sum(psd[freqs_hz > 1.05e6])
    assert wrapped < 1e-3 * kept
    gone = gsm.render(_normal(), rng, RATE_HZ, 2.0e6)
    assert np.mean(np.abs(gone) ** 2) < 1e-6


# --- power versus time --------------------------------------------------------------------


@pytest.mark.parametrize("rate_hz", [1.0e6, 2.4e6])
def test_constant_envelope_and_unit_power_in_the_active_part(rate_hz: float) -> None:
    samples = gsm.render(_normal(), np.random.default_rng(1), rate_hz, 123e3)
    magnitude = np.abs(samples)
    plateau = magnitude[magnitude > 0.999]
    assert plateau.size >= 0.95 * 542.8e-6 * rate_hz
    assert np.std(plateau) / np.mean(plateau) < 0.01
    assert np.mean(plateau**2) == pytest.approx(1.0, abs=1e-3)


def test_active_duration_and_time_mask() -> None:
    # Measured on a 48 MS/s rendering so the edges are resolved to 21 ns.
    rate_hz = 48e6
    power = np.abs(gsm.render(_normal(), np.random.default_rng(4), rate_hz, 0.0)).astype(np.float64) ** 2

    def width_s(level_db: float) -> float:
        above = np.flatnonzero(power >= 10 ** (-level_db / 10))
        return (above[-1] - above[0] + 1) / rate_hz

    # Useful part (147 bits, TS 45.005 Annex B) within -1 dB; the whole 148 bits above -3 dB.
    assert width_s(1.0) == pytest.approx(147 * T_BIT_S, abs=0.2e-6)
    assert width_s(3.0) == pytest.approx(148 * T_BIT_S, abs=0.2e-6)
    assert 541e-6 <= width_s(3.0) <= 548e-6  # "a ~543 µs burst"
    # Upper mask: below -30 dB 18 µs and below -6 dB 10 µs before the useful part.
    t_s = np.arange(power.size) / rate_hz
    useful_start_s = gsm.RAMP_LEAD_S + 0.5 * T_BIT_S
    assert np.all(power[t_s < useful_start_s - 18e-6] <= 10 ** (-30 / 10))
    assert np.all(power[t_s < useful_start_s - 10e-6] <= 10 ** (-6 / 10))
    assert power[0] == 0.0 and power[-1] < 1e-6


def test_render_burst_dispatches_here_and_validates() -> None:
    burst = _normal(tsc=2)
    samples = render_burst(burst, np.random.default_rng(0), RATE_HZ, 902.4e6)
    assert samples.size == math.ceil(burst.duration_s * RATE_HZ)
    with pytest.raises(ValueError):
        gsm.render(TxBurst(0.0, 1e-3, 0.0, 200e3, "gsm", "gsm_sync"), np.random.default_rng(0), RATE_HZ, 0.0)
    with pytest.raises(InputError, match="tsc"):
        gsm.render(_normal(tsc=8), np.random.default_rng(0), RATE_HZ, 0.0)


# --- schedules ----------------------------------------------------------------------------


def test_call_sends_one_burst_per_frame_in_its_timeslot_except_the_idle_frame() -> None:
    t0_s, timeslot = 2.0, 3
    bursts = gsm.call_bursts(t0_s, 1.2, 62, timeslot, np.random.default_rng(1), tsc=4)
    starts_s = np.array([b.t_start_s for b in bursts])
    fn = np.array([b.params["fn"] for b in bursts])
    assert np.all(starts_s >= t0_s) and np.all(starts_s < t0_s + 1.2)
    # Every burst sits in timeslot 3 of a TDMA frame, 4.615 ms apart.
    frame_index = (starts_s - t0_s - timeslot * gsm.TIMESLOT_S) / gsm.TDMA_FRAME_S
    assert np.allclose(frame_index, np.round(frame_index), atol=1e-6)
    gaps = np.diff(np.round(frame_index).astype(int))
    assert set(gaps.tolist()) <= {1, 2}
    assert np.all((fn % 26) != 25)  # the idle frame
    assert np.all(np.diff(fn) == gaps)
    # 25 of 26 frames: 24 traffic + 1 SACCH (TS 45.002 §7 Table 1).
    assert len(bursts) == pytest.approx(1.2 / gsm.TDMA_FRAME_S * 25 / 26, abs=1.5)
    channels = np.array([b.params["channel"] for b in bursts])
    assert np.all((channels == "sacch") == (fn % 26 == 12))
    full = fn[np.isin(fn // 26, fn[fn % 26 == 0] // 26) & np.isin(fn // 26, fn[fn % 26 == 24] // 26)]
    per_multiframe = np.bincount(full // 26 - full.min() // 26)
    assert set(per_multiframe[per_multiframe > 0].tolist()) == {25}
    first = bursts[0]
    assert first.tech == "gsm" and first.kind == "gsm_normal"
    assert first.freq_hz == 890.0e6 + 0.2e6 * 62 and first.bandwidth_hz == 200e3
    assert first.params["arfcn"] == 62 and first.params["timeslot"] == 3 and first.params["tsc"] == 4
    assert first.params["session"] == "call"
    assert first.duration_s == gsm.NORMAL_BURST_DURATION_S


def test_dtx_keeps_sacch_and_sid_frames_only_during_pauses() -> None:
    plain = gsm.call_bursts(0.0, 20.0, 10, 1, np.random.default_rng(5))
    dtx = gsm.call_bursts(0.0, 20.0, 10, 1, np.random.default_rng(5), dtx=True)
    fn_plain = {b.params["fn"] for b in plain}
    fn_dtx = np.array([b.params["fn"] for b in dtx])
    assert set(fn_dtx.tolist()) <= fn_plain
    assert 0.3 * len(plain) < len(dtx) < 0.8 * len(plain)
    must = {f for f in fn_plain if f % 26 == 12 or 52 <= f % 104 <= 59}
    assert must <= set(fn_dtx.tolist())
    # Traffic outside the SID frames comes in talk spurts, not scattered frames.
    speech = np.sort([f for f in fn_dtx.tolist() if f % 26 != 12 and not 52 <= f % 104 <= 59])
    n_spurts = 1 + int(np.count_nonzero(np.diff(speech) > 30))
    assert 2 <= n_spurts <= 20


def test_hopping_follows_the_mobile_allocation() -> None:
    allocation = [20, 5, 60, 33]
    bursts = gsm.call_bursts(0.0, 3.0, 5, 2, np.random.default_rng(3), hopping_arfcns=allocation, hsn=17)
    arfcns = np.array([b.params["arfcn"] for b in bursts])
    assert set(arfcns.tolist()) == set(allocation)
    counts = np.bincount([sorted(allocation).index(a) for a in arfcns], minlength=4)
    assert counts.min() > 0.15 * len(bursts)
    assert all(b.freq_hz == gsm.uplink_freq_hz(b.params["arfcn"]) for b in bursts)
    assert np.count_nonzero(np.diff(arfcns)) > 0.5 * len(bursts)  # it hops


def test_hopping_sequence_generator() -> None:
    fn = np.arange(0, 2048 * 26 * 51, 97)
    cyclic = gsm.hopping_index(fn, 5, hsn=0, maio=2)
    assert np.array_equal(cyclic, (fn + 2) % 5)
    for n in (1, 2, 3, 7, 8, 64):
        mai = gsm.hopping_index(fn, n, hsn=45)
        assert mai.min() >= 0 and mai.max() < n
        if n > 1:
            assert np.bincount(mai, minlength=n).min() > 0.5 * fn.size / n
        # Different MAIOs never collide: that is how a cell shares one allocation.
        others = np.stack([gsm.hopping_index(fn, n, hsn=45, maio=m) for m in range(n)])
        assert all(len(set(column)) == n for column in others.T[:50].tolist())
    assert not np.array_equal(gsm.hopping_index(fn, 8, hsn=1), gsm.hopping_index(fn, 8, hsn=2))


def test_rach_bursts_are_access_bursts_spread_by_s_and_t() -> None:
    rng = np.random.default_rng(2)
    bursts = gsm.rach_bursts(10.0, 40, rng, n=4, tx_integer=10)
    assert len(bursts) == 4
    assert all(b.kind == "gsm_access" and b.params["timeslot"] == 0 for b in bursts)
    assert all(b.duration_s == gsm.ACCESS_BURST_DURATION_S for b in bursts)
    assert all(0 <= b.params["bsic"] <= 63 for b in bursts)
    slots = np.array([(b.t_start_s - 10.0) / gsm.TDMA_FRAME_S for b in bursts])
    assert np.allclose(slots, np.round(slots), atol=1e-6)
    assert 0 <= round(slots[0]) < 10
    assert np.all((np.diff(np.round(slots)) >= 109) & (np.diff(np.round(slots)) <= 118))  # S=109, T=10
    combined = gsm.rach_bursts(0.0, 40, np.random.default_rng(4), n=30, tx_integer=3, combined_ccch=True)
    fn = np.array([b.params["fn"] for b in combined])
    assert set((fn % 51).tolist()) <= {4, 5, *range(14, 37), 45, 46}
    with pytest.raises(InputError):
        gsm.rach_bursts(0.0, 40, rng, tx_integer=13)


def test_sdcch_exchange_uses_four_consecutive_frames_per_multiframe() -> None:
    bursts = gsm.sdcch_bursts(1.0, 100, 1, np.random.default_rng(6), n_messages=10, subchannel=2)
    sdcch = [b for b in bursts if b.params["channel"] == "sdcch"]
    sacch = [b for b in bursts if b.params["channel"] == "sacch"]
    assert len(sdcch) == 40
    fn = np.array([b.params["fn"] for b in sdcch])
    assert set((fn % 51).tolist()) == {23, 24, 25, 26}  # 15 + 4k .. 18 + 4k, k = 2
    blocks = fn.reshape(10, 4)
    assert np.all(np.diff(blocks, axis=1) == 1)
    assert np.all(np.diff(blocks[:, 0]) == 51)  # one block a multiframe: 235.4 ms
    # SACCH/8 of sub-channel 2: uplink frames 55..58 of every 102, whole blocks only.
    sacch_fn = np.array([b.params["fn"] for b in sacch])
    assert len(sacch) in (16, 20) and set((sacch_fn % 102).tolist()) == {55, 56, 57, 58}
    assert np.all(np.diff(sacch_fn.reshape(-1, 4), axis=1) == 1)
    starts_s = np.array([b.t_start_s for b in bursts])
    assert np.all(np.diff(starts_s) > 0)
    assert 2.0 < starts_s[-1] - starts_s[0] < 2.4  # a ~2 s exchange
    phase = (starts_s - 1.0 - gsm.TIMESLOT_S) / gsm.TDMA_FRAME_S
    assert np.allclose(phase, np.round(phase), atol=1e-6)


def test_schedules_reject_bad_channels() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="arfcn"):
        gsm.call_bursts(0.0, 1.0, 200, 0, rng)
    with pytest.raises(InputError, match="timeslot"):
        gsm.call_bursts(0.0, 1.0, 20, 8, rng)
    with pytest.raises(InputError, match="tsc"):
        gsm.sdcch_bursts(0.0, 20, 1, rng, tsc=9)
    with pytest.raises(InputError, match="hopping_arfcns"):
        gsm.call_bursts(0.0, 1.0, 20, 0, rng, hopping_arfcns=[20, 130])


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 0.5))
def test_call_schedule_is_reproducible_and_in_its_window(seed: int, duration_s: float) -> None:
    first = gsm.call_bursts(5.0, duration_s, 1, 7, np.random.default_rng(seed), dtx=True)
    again = gsm.call_bursts(5.0, duration_s, 1, 7, np.random.default_rng(seed), dtx=True)
    assert first == again
    assert all(5.0 <= b.t_start_s < 5.0 + duration_s for b in first)
    assert all(b.t_end_s <= b.t_start_s + gsm.TIMESLOT_S for b in first)
