"""Per-column noise floor by minimum statistics, robust to busy channels and cheap to run.

A plain mean over time is dragged up by every burst, and a per-bin median over a second
of frames costs half of a naive detector's time. Minimum statistics (R. Martin, "Noise
power spectral density estimation based on optimal smoothing and minimum statistics",
IEEE Trans. Speech Audio Proc. 9(5), 2001) does the same job cheaply:

1. consecutive frames are summed in pairs (``n_sum`` frames) to tighten the distribution;
2. the minimum of each group of ``n_min`` such sums is kept — one number per column per
   group, and it is noise whenever a single sum of the group is free of signal, which is
   why a GSM slot (1/8 duty) or an LTE subframe pattern hardly moves it;
3. the floor is a quantile (default the median) of the group minima of the last
   ``window_s`` seconds, times an exact bias factor.

The bias factor is analytic: with a rectangular window the FFT bins of white Gaussian
noise are independent, so a cell summing ``g`` bins is Gamma(g) distributed (a tapered
window correlates neighbouring bins: ``g`` is then the moment-matched shape), a sum of
``n_sum`` cells is Gamma(n_sum·g), and the ``q`` quantile of the minimum of ``n_min`` of
them is the ``1 - (1-q)^(1/n_min)`` quantile of that Gamma law (:func:`min_statistics_bias`).

The window sets how fast the floor follows a change: a step is tracked once more than
``1 - q`` of the window holds the new level (half a second for the median of a 1 s window).
The estimate updates every ``update_frames`` frames, so its cost (one partial sort of a
``(n_columns, n_groups)`` array) is paid a few times a second, not per frame.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats

FloatArray = npt.NDArray[np.float32]


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
        bias = {float(d): min_statistics_bias(float(d), self.n_sum, self.n_min, self.quantile) for d in np.unique(self.dofs)}
        self._bias = np.array([bias[float(d)] for d in self.dofs], dtype=np.float64)
        self._ring = np.zeros((self.n_columns, self.n_groups), dtype=np.float32)
        self._n_filled = 0
        self._next = 0
        self._since_update = 0
        self._carry = np.zeros((0, self.n_columns), dtype=np.float32)
        self.floor: npt.NDArray[np.float64] | None = None

    @property
    def n_groups_seen(self) -> int:
        return self._n_filled

    def push(self, cells: FloatArray) -> None:
        """Consume ``(n_frames, n_columns)`` cell powers (not modified)."""
        if cells.shape[0] == 0:
            return
        data = np.concatenate((self._carry, cells)) if self._carry.shape[0] else cells
        n_groups = data.shape[0] // self.group_frames
        used = n_groups * self.group_frames
        self._carry = data[used:].copy()
        if n_groups == 0:
            return
        sums = data[0:used:self.n_sum].copy() if self.n_sum > 1 else data[:used]
        for j in range(1, self.n_sum):
            sums += data[j:used:self.n_sum]
        minima = sums.reshape(n_groups, self.n_min, self.n_columns).min(axis=1)  # (n_groups, n_columns)
        # Write group by group in order, updating the estimate at the same group indices
        # whatever the batching (groups are few: a loop over them is cheap).
        start = 0
        while start < n_groups:
            if self._n_filled < self.warmup_groups:
                step = min(n_groups - start, self.warmup_groups - self._n_filled)
            else:
                step = min(n_groups - start, self.update_groups - self._since_update)
            self._write(minima[start : start + step])
            start += step
            if self._n_filled < self.warmup_groups:
                continue
            self._since_update += step
            if self.floor is None or self._since_update >= self.update_groups:
                self._since_update = 0
                self._estimate()

    def scale(self, factor: float) -> None:
        """Multiply the state by ``factor`` (a known receiver gain change, linear power)."""
        self._ring *= np.float32(factor)
        self._carry = self._carry * np.float32(factor)
        if self.floor is not None:
            self.floor = self.floor * factor

    def _write(self, minima: FloatArray) -> None:
        n = minima.shape[0]
        idx = (self._next + np.arange(n)) % self.n_groups
        self._ring[:, idx] = minima.T
        self._next = int((self._next + n) % self.n_groups)
        self._n_filled = min(self.n_groups, self._n_filled + n)

    def _estimate(self) -> None:
        ring = self._ring[:, : self._n_filled] if self._n_filled < self.n_groups else self._ring
        k = min(ring.shape[1] - 1, int(self.quantile * ring.shape[1]))
        value = np.partition(ring, k, axis=1)[:, k].astype(np.float64)
        self.floor = value * self._bias
