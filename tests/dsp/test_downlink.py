"""GSM downlink test signals: FCCH tone where and when TS 45.002 puts it, any block split, unit power."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp import downlink, gsm

RATE = 2.4e6


def _tone_hz(x: np.ndarray) -> float:
    """Frequency of a (near) pure tone from the mean phase step."""
    z = x.astype(np.complex128)
    return float(np.angle(np.sum(z[1:] * np.conj(z[:-1]))) * RATE / (2 * np.pi))


def test_fcch_frequency_is_the_carrier_plus_a_quarter_bit_rate() -> None:
    assert downlink.FCCH_OFFSET_HZ == pytest.approx(1625e3 / 24)
    assert downlink.fcch_frequency_hz(20) == pytest.approx(939.0e6 + 1625e3 / 24)
    assert downlink.fcch_frequency_hz(1) == pytest.approx(935.2e6 + 67708.333, abs=0.01)


def test_fcch_bursts_are_pure_tones_in_frames_0_10_20_30_40_of_timeslot_0() -> None:
    carrier = downlink.BcchCarrier(RATE, 0.0, seed=4)
    frame = gsm.TDMA_FRAME_S * RATE
    x = carrier.render(0, int(52 * frame))
    inside = slice(60, 1300)  # bits 0..147 of timeslot 0, away from the edges
    for fn in range(52):
        start = int(np.ceil(fn * frame))
        segment = x[start:start + 1400][inside]
        steps = segment[1:].astype(np.complex128) * np.conj(segment[:-1])
        coherence = abs(np.mean(steps / np.abs(steps)))
        if fn % 51 in downlink.FCCH_FRAMES:
            assert _tone_hz(segment) == pytest.approx(downlink.FCCH_OFFSET_HZ, abs=0.5)
            assert coherence > 0.9999
        else:  # GMSK data turns the phase both ways: no steady tone
            assert abs(_tone_hz(segment) - downlink.FCCH_OFFSET_HZ) > 5e3
    assert carrier.fcch_starts_s(0.25) == pytest.approx(np.array([0, 10, 20, 30, 40, 51]) * gsm.TDMA_FRAME_S)


def test_the_sch_burst_carries_its_extended_training_sequence() -> None:
    bits = downlink.BcchCarrier(RATE, 0.0, seed=1).frame_bits(1)  # frame 1: SCH
    assert bits.size == downlink.FRAME_BITS == 1250
    assert np.array_equal(bits[42:106], downlink.SCH_SYNC_BITS)
    assert np.all(bits[:3] == 0)
    normal = downlink.BcchCarrier(RATE, 0.0, seed=1, bcc=5).frame_bits(2)
    slot1 = int(downlink.SLOT_BITS[0])
    assert np.array_equal(normal[slot1 + 61:slot1 + 87], gsm.TRAINING_SEQUENCES[5])


@settings(max_examples=15, deadline=None)
@given(cut=st.integers(1, 40000), start=st.integers(0, 200000))
def test_any_block_split_gives_the_same_samples(cut: int, start: int) -> None:
    carrier = downlink.BcchCarrier(RATE, 150e3, seed=9)
    whole = carrier.render(start, 40001)
    other = downlink.BcchCarrier(RATE, 150e3, seed=9)  # a fresh plan: no cache shared
    parts = np.concatenate([other.render(start + cut, 40001 - cut), other.render(start, cut)])
    assert np.array_equal(whole, np.concatenate([parts[40001 - cut:], parts[:40001 - cut]]))


def test_unit_power_and_shift_moves_the_spectrum() -> None:
    base = downlink.BcchCarrier(RATE, 0.0, seed=2).render(0, 240000)
    shifted = downlink.BcchCarrier(RATE, 300e3, seed=2).render(0, 240000)
    assert np.mean(np.abs(base) ** 2) == pytest.approx(1.0, abs=1e-4)

    def centroid(x: np.ndarray) -> float:
        p = np.abs(np.fft.fft(x.astype(np.complex128))) ** 2
        f = np.fft.fftfreq(x.size, 1 / RATE)
        return float(np.sum(p * f) / np.sum(p))

    assert centroid(shifted) - centroid(base) == pytest.approx(300e3, abs=2e3)


def test_tone_is_continuous_across_blocks() -> None:
    whole = downlink.tone(12345.0, RATE, 1000, 5000, phase_rad=0.3)
    parts = np.concatenate([downlink.tone(12345.0, RATE, 1000, 1234, 0.3), downlink.tone(12345.0, RATE, 2234, 3766, 0.3)])
    assert np.allclose(whole, parts, atol=1e-6)
    assert _tone_hz(whole) == pytest.approx(12345.0, abs=0.01)


def test_render_block_skips_channels_outside_the_band() -> None:
    assert downlink.render_block("gsm_bcch", 1.15e6, RATE, 0, 100) is None  # its 200 kHz would alias
    assert downlink.render_block("cw", 1.25e6, RATE, 0, 100) is None
    assert downlink.render_block("gsm_bcch", -1.0e6, RATE, 0, 100).shape == (100,)
    with pytest.raises(ValueError, match="unknown downlink kind"):
        downlink.render_block("lte", 0.0, RATE, 0, 10)
