"""Per-column noise floor by minimum statistics, robust to busy channels and cheap to run.

A plain mean over time is dragged up by every burst, and a per-bin median over a second
of frames costs half of a naive detector's time. Minimum statistics (R. Martin, "Noise
power spectral density estimation based on optimal smoothing and minimum statistics",
IEEE Trans. Speech Audio Proc. 9(5), 2001) does the same job cheaply:

1. consecutive frames are summed in pairs (``n_sum`` frames) to tighten the distribution;
2. the minimum of each group of ``n_min`` such sums is kept — one number per column per
   group, and it is noise whenever a single sum of the group is free of signal, which is
   why a GSM slot (1/8 duty) or an LTE subframe pattern hardly moves it;
3. each minimum times an exact bias factor estimates the mean cell power; the floor is
   a quantile (default the median) of these estimates over the last ``window_s``.

Cells the detector has painted as bursts are left out of the minima, and the bias
factor used is the one for the number of sums actually left in the group: every
group's estimate then has the same median, so a channel busy half of the time (which
would push plain minima up by ~1 dB) still reads its noise.

The bias factor is analytic: with a rectangular window the FFT bins of white Gaussian
noise are independent, so a cell summing ``g`` bins is Gamma(g) distributed (a tapered
window correlates neighbouring bins: ``g`` is then the moment-matched shape), a sum of
``n_sum`` cells is Gamma(n_sum·g), and the ``q`` quantile of the minimum of ``n_min`` of
them is the ``1 - (1-q)^(1/n_min)`` quantile of that Gamma law (:func:`min_statistics_bias`).

The window sets how fast the floor follows a change: a step down is tracked once more
than ``1 - q`` of the window holds the new level (half a second for the median of a 1 s
window); a step up paints everything, and once fewer than a quarter of the window's
groups have a clean estimate the plain minima take over (~0.75 s). A gain change the
receiver announces starts the estimate afresh (:meth:`NoiseFloorTracker.restart`): how
the noise follows the tuner gain is not known here (at low and medium gain an RTL-SDR's
floor is mostly ADC noise, which no tuner gain moves), so scaling the old floor by the
nominal ratio would leave it up to ~10 dB low after a step down. The estimate
updates every ``update_frames`` frames, so its cost (one selection per column over the
ring of group estimates, :func:`dsp.fastgrid.row_quantiles`) is paid a few times a
second, not per frame.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt
from scipy import stats

from dsp import fastgrid

FloatArray = npt.NDArray[np.float32]


@functools.lru_cache(maxsize=4096)  # a detector needs ~100 (every column DOF x n_min): ~3 ms each start
def min_statistics_bias(dof: float, n_sum: int, n_min: int, quantile: float) -> float:
    """Mean of one cell divided by the ``quantile`` of group minima (see the module docstring).

    ``dof``: Gamma shape of one cell (its number of independent complex bins, or the
    moment-matched equivalent when a window correlates the bins); ``n_sum``: cells summed
    before taking minima; ``n_min``: sums per minimum. The returned factor turns the
    observed quantile of minima into the mean noise power of *one* cell.
    """
    if dof <= 0:
        return 1.0
    p = 1.0 - (1.0 - quantile) ** (1.0 / n_min)
    x = float(stats.gamma.ppf(p, dof * n_sum))
    return dof / x


class NoiseFloorTracker:
    """Streaming minimum-statistics floor of ``n_columns`` cells per frame.

    Feed ``(n_frames, n_columns)`` cell powers with :meth:`push` (any number of frames;
    partial groups are carried). :attr:`floor` is the estimated mean noise power of one
    cell per column (float64, ``(n_columns,)``), or ``None`` until ``warmup_frames``
    frames have been seen. The estimate changes only inside :meth:`push`, at the first
    group boundary after every ``update_frames`` frames, so it depends on the frame
    sequence alone, never on how it was batched.
    """

    MIN_CLEAN_FRACTION = 0.25  # of the window: below, a column is "all signal" (a level change)

    def __init__(
        self,
        n_columns: int,
        dofs: npt.ArrayLike,
        *,
        n_sum: int = 2,
        n_min: int = 8,
        window_frames: int = 9375,
        quantile: float = 0.5,
        warmup_frames: int = 2400,
        update_frames: int = 1024,
    ) -> None:
        self.n_columns = int(n_columns)
        self.dofs = np.asarray(dofs, dtype=np.float64).reshape(self.n_columns)
        self.n_sum = int(n_sum)
        self.n_min = int(n_min)
        self.group_frames = self.n_sum * self.n_min
        self.quantile = float(quantile)
        self.n_groups = max(1, int(math.ceil(window_frames / self.group_frames)))
        self.warmup_groups = max(1, int(math.ceil(warmup_frames / self.group_frames)))
        self.update_groups = max(1, int(round(update_frames / self.group_frames)))
        # bias[n, c]: turns the minimum of n (of n_min) usable sums of column c into an
        # estimate of the mean cell power whose ``quantile`` is that mean
        self._bias = np.ones((self.n_min + 1, self.n_columns), dtype=np.float64)
        for d in np.unique(self.dofs):
            cols = self.dofs == d
            for n in range(1, self.n_min + 1):
                self._bias[n, cols] = min_statistics_bias(float(d), self.n_sum, n, self.quantile)
        self.floor: npt.NDArray[np.float64] | None = None
        self._since_update: int
        self._carry: FloatArray
        self._carry_busy: npt.NDArray[np.bool_]
        self.restart()

    @property
    def n_groups_seen(self) -> int:
        return self._n_filled

    def push(self, cells: FloatArray, busy: npt.NDArray[np.bool_] | None = None) -> None:
        """Consume ``(n_frames, n_columns)`` cell powers (not modified).

        ``busy`` marks cells known to hold a signal (the detector's painted bursts):
        they are left out of the minima, and each group's minimum is corrected for the
        number of sums it was taken over, so a channel busy half of the time still reads
        its noise. Groups with no free sum carry no clean estimate; when fewer than
        ``MIN_CLEAN_FRACTION`` of the window has one, the column is all signal — a level
        change (gain step, carrier switching on) that the floor must follow — and the
        plain minima take over.
        """
        if cells.shape[0] == 0:
            return
        cells = np.asarray(cells, dtype=np.float32)  # the sums and minima are float32 (no copy if already)
        if busy is None:
            busy = np.zeros(cells.shape, dtype=bool)
        if self._carry.shape[0]:
            data = np.concatenate((self._carry, cells))
            flags = np.concatenate((self._carry_busy, busy))
        else:
            data, flags = cells, busy
        n_groups = data.shape[0] // self.group_frames
        used = n_groups * self.group_frames
        self._carry = data[used:].copy()
        self._carry_busy = flags[used:].copy()
        if n_groups == 0:
            return
        # sums, minima over all sums (raw) and over the unpainted ones (clean), bias factors:
        # one fused pass over the frames (dsp.fastgrid), the float32 values numpy gave
        raw = np.empty((n_groups, self.n_columns), dtype=np.float32)
        clean = np.empty((n_groups, self.n_columns), dtype=np.float32)
        fastgrid.group_minima(data[:used], flags[:used], self.n_sum, self.n_min, self._bias, raw, clean)
        # Write group by group in order, updating the estimate at the same group indices
        # whatever the batching (groups are few: a loop over them is cheap).
        start = 0
        while start < n_groups:
            if self._n_filled < self.warmup_groups:
                step = min(n_groups - start, self.warmup_groups - self._n_filled)
            else:
                step = min(n_groups - start, self.update_groups - self._since_update)
            self._write(clean[start : start + step], raw[start : start + step])
            start += step
            if self._n_filled < self.warmup_groups:
                continue
            self._since_update += step
            if self.floor is None or self._since_update >= self.update_groups:
                self._since_update = 0
                self._estimate()

    def estimate_now(self) -> None:
        """Estimate from whatever groups were seen (a stream shorter than the warm-up)."""
        if self._n_filled:
            self._since_update = 0
            self._estimate()

    def restart(self) -> None:
        """Forget every frame seen: :attr:`floor` is ``None`` until a new warm-up is done.

        For a receiver change (an announced gain step) whose effect on the noise is not
        known: the nominal gain ratio moves only the share of the noise that comes
        before the tuner gain, and a floor left too low paints the whole band.
        """
        self._clean = np.full((self.n_columns, self.n_groups), np.inf, dtype=np.float32)
        self._raw = np.zeros((self.n_columns, self.n_groups), dtype=np.float32)
        self._n_filled = 0
        self._next = 0
        self._since_update = 0
        self._carry = np.zeros((0, self.n_columns), dtype=np.float32)
        self._carry_busy = np.zeros((0, self.n_columns), dtype=bool)
        self.floor = None

    def _write(self, clean: FloatArray, raw: FloatArray) -> None:
        n = clean.shape[0]
        # at most two slices of the ring (it wraps once: n <= update or warm-up groups < ring)
        done = 0
        while done < n:
            at = (self._next + done) % self.n_groups
            take = min(n - done, self.n_groups - at)
            self._clean[:, at : at + take] = clean[done : done + take].T
            self._raw[:, at : at + take] = raw[done : done + take].T
            done += take
        self._next = int((self._next + n) % self.n_groups)
        self._n_filled = min(self.n_groups, self._n_filled + n)

    def _estimate(self) -> None:
        """Quantile of the clean estimates; where painting left too few (a level change
        paints everything), the quantile of the plain ones, and the clean ring restarts."""
        n = self._n_filled
        # the quantile of each column's finite clean estimates (inf: no free sum); the last
        # floor brackets it, which spares a partition of the whole ring (dsp.fastgrid)
        guess = self.floor if self.floor is not None else np.full(self.n_columns, np.nan)
        value = np.empty(self.n_columns, dtype=np.float64)
        n_finite = np.empty(self.n_columns, dtype=np.int64)
        fastgrid.row_quantiles(self._clean, n, self.quantile, guess, value, n_finite)
        starved = n_finite < self.MIN_CLEAN_FRACTION * n
        if starved.any():
            raw = self._raw[:, :n] if n < self.n_groups else self._raw
            kr = min(raw.shape[1] - 1, int(self.quantile * raw.shape[1]))
            value[starved] = np.partition(raw[starved], kr, axis=1)[:, kr]
            self._clean[starved] = np.inf  # old clean values are of the old level: forget them
        self.floor = value
