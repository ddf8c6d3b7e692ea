"""The RTL-SDR receiver model, checked from its cu8 output as a dongle's bytes would be."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.iq import clipped_fraction_cu8, cu8_to_complex64, mean_power_dbfs
from sdr.receiver import (
    R820T_GAINS_DB,
    SAMPLES_PER_TRANSFER,
    ReceiverConfig,
    RtlSdrModel,
    dbfs_to_dbm,
    dbm_to_dbfs,
    frequency_error_hz,
    full_scale_dbm,
    image_rejection_db,
    noise_floor_dbfs,
)

RATE_HZ = 2.4e6
CENTER_HZ = 902.4e6
CLEAN = {
    "dc_offset_lsb": 0.0,
    "lo_leakage_dbm": -300.0,
    "iq_amplitude_db": 0.0,
    "iq_phase_deg": 0.0,
}


def model(seed: int = 1, **config) -> RtlSdrModel:
    return RtlSdrModel(ReceiverConfig(**config), RATE_HZ, CENTER_HZ, np.random.default_rng(seed))


def tone(power_dbm: float, offset_hz: float, n: int, t0: int = 0) -> np.ndarray:
    t = np.arange(t0, t0 + n) / RATE_HZ
    return (math.sqrt(10.0 ** (power_dbm / 10.0)) * np.exp(2j * np.pi * offset_hz * t)).astype(
        np.complex64
    )


def spectrum_db(samples: np.ndarray, n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Averaged Blackman-Harris periodogram (power per bin, dB, coherent gain removed), fftshifted."""
    frames = samples[: samples.size // n_fft * n_fft].reshape(-1, n_fft)
    window = np.blackman(n_fft)
    spec = np.fft.fftshift(np.fft.fft(frames * window, axis=1), axes=1)
    power = np.mean(np.abs(spec) ** 2, axis=0) / np.sum(window) ** 2
    freqs = np.fft.fftshift(np.fft.fftfreq(n_fft, 1.0 / RATE_HZ))
    return freqs, 10.0 * np.log10(power)


# ----------------------------------------------------------------- levels
def test_noise_floor_is_where_noise_figure_and_gain_put_it():
    # A hot calibration constant keeps thermal noise ~25 dB above the quantization noise.
    config = {**CLEAN, "gain_db": 40.2, "noise_figure_db": 6.5, "dbfs_at_0db_gain_dbm": -30.0}
    raw, _ = model(**config).process(np.zeros(480_000, np.complex64), 0)
    measured_dbfs = 10.0 * math.log10(np.var(cu8_to_complex64(raw)))
    expected_dbfs = -173.98 + 6.5 + 10.0 * math.log10(RATE_HZ) + 40.2 - (-30.0)  # kTB·F + gain
    assert measured_dbfs == pytest.approx(expected_dbfs, abs=1.0)
    assert noise_floor_dbfs(ReceiverConfig(**config), RATE_HZ, thermal_only=True) == pytest.approx(
        expected_dbfs, abs=0.05
    )


@pytest.mark.parametrize("gain_db", [0.0, 28.0, 49.6])
def test_analytic_noise_floor_matches_the_bytes_at_any_gain(gain_db):
    receiver = model(gain_db=gain_db)
    raw, _ = receiver.process(np.zeros(240_000, np.complex64), 0)
    measured_dbfs = 10.0 * math.log10(np.var(cu8_to_complex64(raw)))
    assert measured_dbfs == pytest.approx(receiver.noise_floor_dbfs, abs=0.15)


def test_noise_floor_at_high_gain_sits_where_dongles_show_it():
    high = noise_floor_dbfs(ReceiverConfig(gain_db=49.6), RATE_HZ)
    low = noise_floor_dbfs(ReceiverConfig(gain_db=0.0), RATE_HZ)
    assert -40.0 <= high <= -30.0
    assert -53.0 <= low <= -43.0  # the ADC's own floor, whatever the antenna sees
    assert full_scale_dbm(ReceiverConfig(gain_db=0.0)) == pytest.approx(-15.0)


def test_tone_level_follows_the_calibration_relation_and_the_gain_offset():
    power_dbm, gain_db = -60.0, 28.0
    levels = {}
    for offset_db in (0.0, 3.0):
        receiver = model(gain_db=gain_db, gain_offset_db=offset_db, **CLEAN)
        raw, _ = receiver.process(tone(power_dbm, 250e3, 200_000), 0)
        levels[offset_db] = mean_power_dbfs(cu8_to_complex64(raw))
        expected = dbm_to_dbfs(power_dbm, gain_db, offset_db)
        assert levels[offset_db] == pytest.approx(expected, abs=0.2)
        assert dbfs_to_dbm(levels[offset_db], gain_db, offset_db) == pytest.approx(
            power_dbm, abs=0.2
        )
    assert levels[3.0] - levels[0.0] == pytest.approx(3.0, abs=0.1)


def test_calibration_relation_round_trips_arrays():
    dbm = np.array([-90.0, -40.5, 0.0])
    dbfs = dbm_to_dbfs(dbm, 33.8, -1.2, -17.0)
    np.testing.assert_allclose(dbfs, dbm + 33.8 - 1.2 + 17.0)
    np.testing.assert_allclose(dbfs_to_dbm(dbfs, 33.8, -1.2, -17.0), dbm, atol=1e-9)


def test_burst_above_full_scale_clips_and_one_below_does_not():
    config = ReceiverConfig(gain_db=28.0)
    n = 50_000
    strong, _ = model(gain_db=28.0).process(tone(full_scale_dbm(config) + 10.0, 100e3, n), 0)
    weak, _ = model(gain_db=28.0).process(tone(full_scale_dbm(config) - 20.0, 100e3, n), 0)
    assert clipped_fraction_cu8(strong) > 0.3
    assert strong.min() == 0 and strong.max() == 255
    assert clipped_fraction_cu8(weak) == 0.0


# ----------------------------------------------------------------- spectrum
@pytest.mark.parametrize("ppm_error", [-25.0, 40.0])
def test_crystal_error_shifts_a_tone_by_center_times_ppm(ppm_error):
    n_fft, offset_hz = 65_536, 200e3
    raw, _ = model(ppm_error=ppm_error, **CLEAN).process(tone(-60.0, offset_hz, n_fft), 0)
    freqs, power_db = spectrum_db(cu8_to_complex64(raw), n_fft)
    expected_hz = offset_hz - CENTER_HZ * ppm_error * 1e-6
    assert frequency_error_hz(CENTER_HZ, ppm_error) == pytest.approx(-CENTER_HZ * ppm_error * 1e-6)
    assert abs(freqs[np.argmax(power_db)] - expected_hz) <= RATE_HZ / n_fft


def test_iq_imbalance_leaves_an_image_at_the_image_rejection_level():
    n_fft = 16_384
    offset_hz = 2048 * RATE_HZ / n_fft  # on a bin: no leakage into the image bin
    amplitude_db, phase_deg = 0.5, 2.0
    config = {**CLEAN, "iq_amplitude_db": amplitude_db, "iq_phase_deg": phase_deg}
    raw, _ = model(gain_db=28.0, **config).process(tone(-50.0, offset_hz, 8 * n_fft), 0)
    freqs, power_db = spectrum_db(cu8_to_complex64(raw), n_fft)
    at = {f: power_db[np.argmin(np.abs(freqs - f))] for f in (offset_hz, -offset_hz)}
    # The textbook figure for gain ratio g and phase error phi.
    g, phi = 10.0 ** (amplitude_db / 20.0), math.radians(phase_deg)
    textbook_db = 10.0 * math.log10(
        (1 + 2 * g * math.cos(phi) + g * g) / (1 - 2 * g * math.cos(phi) + g * g)
    )
    assert image_rejection_db(amplitude_db, phase_deg) == pytest.approx(textbook_db, abs=0.01)
    assert at[offset_hz] - at[-offset_hz] == pytest.approx(textbook_db, abs=1.0)
    assert 30.0 < image_rejection_db(0.2, 1.0) < 45.0  # the defaults: a typical dongle


def test_dc_spike_at_zero_hz_and_none_without_offset_or_leakage():
    n_fft = 1024
    quiet = np.zeros(200 * n_fft, np.complex64)
    for config, present in (({}, True), (CLEAN, False)):
        raw, _ = model(gain_db=28.0, **config).process(quiet, 0)
        freqs, power_db = spectrum_db(cu8_to_complex64(raw), n_fft)
        spike_db = power_db[n_fft // 2] - np.median(power_db)
        assert freqs[n_fft // 2] == 0.0
        assert (spike_db > 20.0) if present else (spike_db < 3.0)


def test_lo_leakage_grows_with_gain():
    n_fft = 1024
    quiet = np.zeros(100 * n_fft, np.complex64)
    spikes = []
    for gain_db in (38.6, 49.6):
        raw, _ = model(gain_db=gain_db, dc_offset_lsb=0.0).process(quiet, 0)
        _, power_db = spectrum_db(cu8_to_complex64(raw), n_fft)
        spikes.append(power_db[n_fft // 2])
    assert spikes[1] - spikes[0] == pytest.approx(11.0, abs=1.5)


# ----------------------------------------------------------------- drops and streaming
def test_dropped_transfers_are_removed_and_counted():
    n = 100 * SAMPLES_PER_TRANSFER
    receiver = model(drop_probability=0.25)
    raw, n_lost = receiver.process(np.zeros(n, np.complex64), 0)
    assert n_lost % SAMPLES_PER_TRANSFER == 0
    assert raw.size == 2 * (n - n_lost)
    assert receiver.n_dropped_samples == n_lost
    assert receiver.n_dropped_transfers == n_lost // SAMPLES_PER_TRANSFER
    assert 10 <= receiver.n_dropped_transfers <= 40  # 25 expected
    never = model(drop_probability=0.0)
    raw, n_lost = never.process(np.zeros(n, np.complex64), 0)
    assert n_lost == 0 and raw.size == 2 * n and never.n_dropped_transfers == 0


def test_a_dropped_transfer_takes_exactly_its_samples():
    # Transfers alternate between two levels: a drop that cut anywhere but a transfer
    # boundary would leave a 16 KiB chunk holding both.
    receiver = model(seed=3, drop_probability=0.3, **CLEAN, gain_db=49.6, dbfs_at_0db_gain_dbm=0.0)
    amplitude = np.repeat(
        np.arange(40) % 2 * 0.5 + 0.25, SAMPLES_PER_TRANSFER
    )  # alternating levels
    scale = 10.0 ** (-(49.6 - 0.0) / 20.0)
    raw, n_lost = receiver.process((amplitude * scale).astype(np.complex64), 0)
    kept = cu8_to_complex64(raw).real.reshape(-1, SAMPLES_PER_TRANSFER).mean(axis=1)
    assert len(kept) == 40 - n_lost // SAMPLES_PER_TRANSFER
    levels = np.round(kept * 4) / 4
    assert set(levels.tolist()) <= {0.25, 0.75}


def test_same_seed_same_bytes_other_seed_other_bytes():
    signal = tone(-45.0, 300e3, 100_000)
    a, _ = model(seed=7, ppm_error=12.5).process(signal, 0)
    b, _ = model(seed=7, ppm_error=12.5).process(signal, 0)
    c, _ = model(seed=8, ppm_error=12.5).process(signal, 0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=60_000), min_size=1, max_size=6))
def test_any_block_split_gives_the_same_bytes(cuts):
    n = 4 * SAMPLES_PER_TRANSFER + 1234
    signal = tone(-40.0, -170e3, n)
    config = {"ppm_error": 33.3, "drop_probability": 0.3, "gain_db": 28.0}
    whole_model = model(seed=11, **config)
    whole, whole_lost = whole_model.process(signal, 0)
    split_model = model(seed=11, **config)
    bounds = sorted({0, n, *(c % n for c in cuts)})
    parts, lost = [], 0
    for start, stop in itertools.pairwise(bounds):
        raw, n_lost = split_model.process(signal[start:stop], start)
        parts.append(raw)
        lost += n_lost
    assert np.array_equal(np.concatenate(parts), whole)
    assert lost == whole_lost
    assert split_model.n_dropped_transfers == whole_model.n_dropped_transfers


def test_process_leaves_its_input_alone():
    signal = tone(-50.0, 10e3, 5000)
    before = signal.copy()
    model(ppm_error=20.0).process(signal, 0)
    assert np.array_equal(signal, before)


# ----------------------------------------------------------------- config
def test_gain_snaps_to_the_nearest_r820t_step():
    assert len(R820T_GAINS_DB) == 29
    assert ReceiverConfig(gain_db=30.0).gain_db == 29.7
    assert ReceiverConfig(gain_db=49.6).gain_db == 49.6
    assert ReceiverConfig(gain_db=0.3).gain_db == 0.0
    for bad in (-3.0, 60.0, math.nan):
        with pytest.raises(ValueError):
            ReceiverConfig(gain_db=bad)
    with pytest.raises(ValueError):
        ReceiverConfig(drop_probability=1.5)


def test_defaults_are_those_of_a_typical_dongle():
    config = ReceiverConfig()
    assert 5.0 <= config.noise_figure_db <= 8.0
    assert 0.5 <= abs(config.dc_offset_lsb) <= 2.0
    assert config.gain_db in R820T_GAINS_DB
