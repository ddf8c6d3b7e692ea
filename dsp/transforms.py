"""Complex FFTs along the rows of 2-D arrays: planned, in-place FFTW transforms (pyfftw).

The detector's transforms are batches of rows of 256 to 2048 points: the grid (an epoch
of 1024 frames of 256 samples) and the per-burst band filters and GMSK line spectra.
FFTW ran them 2-2.7x faster than scipy's pocketfft on this machine, and the FFTs were
the largest single cost of the pipeline once the rest was compiled
(``bench/detect_throughput.py``).

Copies cost as much as the transforms at these sizes (a band filter is 0.5-1 MB of
rows), so each length has two aligned buffers the caller works in: :meth:`RowFFT.rows`
(signals) and :meth:`RowFFT.spectra`; :meth:`RowFFT.forward` transforms the first into
the second and :meth:`RowFFT.inverse` back (a forward, an edit of the spectrum and an
inverse move nothing). Not in place: FFTW's in-place plans made with ``FFTW_ESTIMATE``
ran 2.5x slower here, and measured ones take 50-150 ms to plan per shape. A plan
is made once per (rows, points, direction) with ``FFTW_ESTIMATE`` (~0.2 ms; no timing
runs, so results do not depend on the machine's load at start-up). Batch sizes vary from
call to call, so rows are rounded up to a bucket of 16 (the extra rows are transformed
too, and ignored), planned over the first rows of the length's buffers, which grow to
the largest batch: a busy band holds ~7 pairs, ~23 MB (one pair per bucket of 64 rows
held 65 MB and transformed 4x the extra rows). A row's transform does not depend on the
batch it is in (tested), so neither do the detections. Buffers up to a memory budget
are kept, the least recently used evicted. :meth:`RowFFT.for_this_thread` gives
the detectors of one thread one set of plans and buffers (a node scanning many channels, a
command detecting many files); they never run at the same time, and no view outlives the
measurement that asked for it. Threads never share one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyfftw

ComplexArray = npt.NDArray[np.complex64]


def _bucket(n_rows: int) -> int:
    """Rows of the transform that serves ``n_rows``: powers of two up to 16 (the few long band
    filters of short bursts: 2048 points, ~4 rows a call), multiples of 16 beyond (the rows
    past the caller's are transformed too: at most 15 of them)."""
    if n_rows <= 16:
        return 1 << max(n_rows - 1, 0).bit_length()
    return -(-n_rows // 16) * 16


@dataclass(slots=True)
class _Buffer:
    rows: ComplexArray  # aligned (capacity, n_points): signals
    spectra: ComplexArray  # aligned (capacity, n_points): their FFTs
    forward: dict[int, pyfftw.FFTW] = field(default_factory=dict)  # rows -> spectra of the first k rows, by k
    inverse: dict[int, pyfftw.FFTW] = field(default_factory=dict)  # spectra -> rows


class RowFFT:
    """Forward and inverse complex64 FFTs of rows between two buffers per length (numpy's
    scaling: the inverse is divided by the length). A view returned by any method but
    :meth:`fft` and :meth:`ifft` is valid until the next call for the same length.

    The buffers of a length grow to the most rows asked for; a transform of k rows is a plan
    over the buffers' first ``_bucket(k)`` rows (views: one pair of buffers serves every
    batch size, and plans cost no memory to speak of)."""

    _local = threading.local()

    @classmethod
    def for_this_thread(cls) -> RowFFT:
        """The calling thread's instance (made on first use)."""
        fft: RowFFT | None = getattr(cls._local, "fft", None)
        if fft is None:
            fft = cls._local.fft = cls()
        return fft

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._buffers: OrderedDict[tuple[int, int], _Buffer] = OrderedDict()
        self._n_bytes = 0

    def _buffer(self, n_rows: int, n_points: int, exact: bool = False) -> tuple[_Buffer, int]:
        """The buffers for ``n_rows`` of ``n_points`` and the rows transformed (``exact``: a buffer
        of its own, exactly ``n_rows``: the grid's fixed batch)."""
        rows = n_rows if exact else _bucket(n_rows)
        key = (n_rows if exact else -1, n_points)
        buf = self._buffers.get(key)
        if buf is not None and buf.rows.shape[0] >= rows:
            self._buffers.move_to_end(key)
            return buf, rows
        capacity = rows
        if buf is not None:  # too few rows: replaced by a pair half as large again (few regrowths)
            capacity = max(rows, -(-(3 * buf.rows.shape[0] // 2) // 16) * 16)
            self._n_bytes -= buf.rows.nbytes + buf.spectra.nbytes
            del self._buffers[key]
        shape = (capacity, n_points)
        buf = _Buffer(pyfftw.empty_aligned(shape, dtype=np.complex64), pyfftw.empty_aligned(shape, dtype=np.complex64))
        buf.rows[:] = 0.0  # the rows past a caller's are transformed too: keep them finite
        buf.spectra[:] = 0.0
        self._buffers[key] = buf
        self._n_bytes += buf.rows.nbytes + buf.spectra.nbytes
        while self._n_bytes > self.max_bytes and len(self._buffers) > 1:
            _, old = self._buffers.popitem(last=False)
            self._n_bytes -= old.rows.nbytes + old.spectra.nbytes
        return buf, rows

    def rows(self, n_rows: int, n_points: int, exact: bool = False) -> ComplexArray:
        """The aligned (n_rows, n_points) signal rows to fill before :meth:`forward`
        (``exact``: a buffer of exactly ``n_rows``, for a large batch of fixed size)."""
        return self._buffer(n_rows, n_points, exact)[0].rows[:n_rows]

    def spectra(self, n_rows: int, n_points: int) -> ComplexArray:
        """The aligned (n_rows, n_points) spectrum rows to fill before :meth:`inverse`."""
        return self._buffer(n_rows, n_points)[0].spectra[:n_rows]

    def forward(self, n_rows: int, n_points: int, exact: bool = False) -> ComplexArray:
        """FFT of :meth:`rows` into :meth:`spectra`; returns the spectra."""
        buf, rows = self._buffer(n_rows, n_points, exact)
        _planned(buf.forward, rows, buf.rows, buf.spectra, "FFTW_FORWARD")()
        return buf.spectra[:n_rows]

    def inverse(self, n_rows: int, n_points: int, prescaled: bool = False) -> ComplexArray:
        """Inverse FFT of :meth:`spectra` into :meth:`rows`; returns the signals.

        Scaled by 1/n, as numpy's and scipy's ifft: pyFFTW multiplies the output after the
        transform (an extra pass over every row transformed). ``prescaled``: the caller has
        multiplied the spectra by 1/n already (while writing them; for a power-of-two n the
        result is the same to the bit), and that pass is skipped."""
        buf, rows = self._buffer(n_rows, n_points)
        _planned(buf.inverse, rows, buf.spectra, buf.rows, "FFTW_BACKWARD")(normalise_idft=not prescaled)
        return buf.rows[:n_rows]

    def fft(self, x: npt.NDArray[np.complexfloating], n_points: int | None = None) -> ComplexArray:
        """FFT of each row of ``x`` zero padded to ``n_points``: a new array (for occasional use)."""
        n_rows, width = x.shape
        n = width if n_points is None else n_points
        if n < width:
            raise ValueError(f"n_points {n} is shorter than the rows ({width})")
        rows = self.rows(n_rows, n)
        rows[:, :width] = x
        rows[:, width:] = 0.0
        return self.forward(n_rows, n).copy()

    def ifft(self, x: npt.NDArray[np.complexfloating]) -> ComplexArray:
        """Inverse FFT of each row of ``x``: a new array (for occasional use)."""
        n_rows, n = x.shape
        self.spectra(n_rows, n)[:] = x
        return self.inverse(n_rows, n).copy()


def _planned(plans: dict[int, pyfftw.FFTW], rows: int, src: ComplexArray, dst: ComplexArray,
             direction: str) -> pyfftw.FFTW:
    """The plan of ``plans`` over the first ``rows`` rows of ``src`` -> ``dst``, made on first use."""
    plan = plans.get(rows)
    if plan is None:
        plan = plans[rows] = pyfftw.FFTW(src[:rows], dst[:rows], axes=(1,), direction=direction,
                                         flags=("FFTW_ESTIMATE",), threads=1)
    return plan
