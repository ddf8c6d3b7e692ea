"""Planned FFTW row transforms against numpy's FFT."""

from __future__ import annotations

import numpy as np
import pytest

from dsp.transforms import RowFFT


def _rows(rng: np.random.Generator, m: int, n: int) -> np.ndarray:
    return (rng.standard_normal((m, n)) + 1j * rng.standard_normal((m, n))).astype(np.complex64)


@pytest.mark.parametrize(("m", "n"), [(1, 256), (17, 512), (56, 1024), (300, 256)])
def test_forward_and_inverse_match_numpy(m: int, n: int) -> None:
    """Any batch size (rows are bucketed): the same spectra as numpy, and back."""
    rng = np.random.default_rng(m)
    x = _rows(rng, m, n)
    fft = RowFFT()
    fft.rows(m, n)[:] = x
    spectra = fft.forward(m, n)
    assert spectra.shape == (m, n) and spectra.dtype == np.complex64
    ref = np.fft.fft(x.astype(np.complex128), axis=1)
    assert np.max(np.abs(spectra - ref)) < 1e-4 * np.max(np.abs(ref))
    back = fft.inverse(m, n)  # from the spectra buffer into the rows
    assert np.max(np.abs(back - x)) < 1e-5 * np.max(np.abs(x))


def test_zero_padded_fft_and_copying_ifft() -> None:
    rng = np.random.default_rng(1)
    x = _rows(rng, 9, 300)
    fft = RowFFT()
    got = fft.fft(x, 1024)
    ref = np.fft.fft(x.astype(np.complex128), 1024, axis=1)
    assert np.max(np.abs(got - ref)) < 1e-4 * np.max(np.abs(ref))
    again = fft.ifft(got)
    assert np.max(np.abs(again[:, :300] - x)) < 1e-5 and np.max(np.abs(again[:, 300:])) < 1e-5
    fft.fft(_rows(rng, 9, 1024))  # the same buffers, reused
    assert np.max(np.abs(got - ref)) < 1e-4 * np.max(np.abs(ref))  # fft() returned a copy


def test_an_edited_spectrum_filters_in_place() -> None:
    """Forward, zero the bins outside a band, inverse: a band filter with nothing copied."""
    n = 512
    t = np.arange(n)
    tone_in = np.exp(2j * np.pi * 20 * t / n)
    tone_out = np.exp(2j * np.pi * 200 * t / n)
    fft = RowFFT()
    fft.rows(3, n)[:] = (tone_in + tone_out).astype(np.complex64)
    spectra = fft.forward(3, n)
    spectra[:, 64:] = 0.0
    filtered = fft.inverse(3, n)
    assert np.max(np.abs(filtered - tone_in)) < 1e-4


def test_plans_are_bounded() -> None:
    fft = RowFFT(max_bytes=3 * 8 * 1024 * 8 * 2)  # three (rows, spectra) pairs of 8 rows (5, bucketed) x 1024 points
    for n in (1024, 1024 + 64, 1024 + 128, 1024 + 192, 1024 + 256):
        fft.rows(5, n)[:] = 1.0
        fft.forward(5, n)
    assert len(fft._buffers) == 2  # the budget holds two of the larger ones
    assert list(fft._buffers) == [(-1, 1024 + 192), (-1, 1024 + 256)]  # the least recently used went first
    fft.rows(5, 64)[:] = 1.0  # an evicted shape is planned again
    assert np.allclose(fft.forward(5, 64)[:, 0], 64.0)


def test_rejects_a_shorter_transform() -> None:
    with pytest.raises(ValueError, match="shorter"):
        RowFFT().fft(np.zeros((2, 100), np.complex64), 64)


def test_each_thread_has_its_own_instance() -> None:
    import threading

    mine = RowFFT.for_this_thread()
    assert RowFFT.for_this_thread() is mine
    seen: list[RowFFT] = []
    worker = threading.Thread(target=lambda: seen.append(RowFFT.for_this_thread()))
    worker.start()
    worker.join()
    assert seen and seen[0] is not mine


def test_one_pair_of_buffers_serves_every_batch_size_and_a_row_is_the_same_in_any_batch() -> None:
    """Rows are transformed alone: the measurement's results must not depend on how many bursts
    a batch holds (the buffers grow; a batch of k rows transforms its first 16-row bucket)."""
    rng = np.random.default_rng(3)
    row = _rows(rng, 1, 512)
    fft = RowFFT()
    spectra, signals = [], []
    for m in (1, 5, 17, 100, 333, 900, 40):
        others = _rows(rng, m, 512)
        others[m // 2] = row[0]
        fft.rows(m, 512)[:] = others
        spectra.append(fft.forward(m, 512)[m // 2].copy())
        fft.spectra(m, 512)[:] = fft.spectra(m, 512) / np.float32(512)
        signals.append(fft.inverse(m, 512, prescaled=True)[m // 2].copy())
    assert all(np.array_equal(s.view(np.uint32), spectra[0].view(np.uint32)) for s in spectra)
    assert all(np.array_equal(s.view(np.uint32), signals[0].view(np.uint32)) for s in signals)
    assert len(fft._buffers) == 1 and fft._buffers[(-1, 512)].rows.shape[0] >= 900
