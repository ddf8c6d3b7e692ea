"""Reference box sums and painting in numpy: the detector's box tests before they were compiled
(:func:`dsp.labelling.box_tests` must give the same numbers and the same painted cells)."""

from __future__ import annotations

import numpy as np

from dsp.detector import BoolArray, FloatArray, _Workspace


class _Doubling:
    """Sliding sums of many widths over one flat array, sharing the power-of-two levels.

    ``sums(width)[i] = sum(a[i + d*step] for d < width)``; the levels a, a+a[step:], ...
    are built once and every width is the sum of at most log2(width) of them, so the
    templates' widths (5, 10, 14, 29 ...) cost a handful of contiguous additions in all.
    The box tests now run compiled (:func:`dsp.labelling.box_tests`, the same float32
    additions in the same order); this is their numpy meaning, which the tests check them against.
    """

    def __init__(self, a: FloatArray, step: int, ws: _Workspace, name: str) -> None:
        self.a = a
        self.step = step
        self.ws = ws
        self.name = name
        self.levels: dict[int, FloatArray] = {1: a}

    def level(self, span: int) -> FloatArray:
        got = self.levels.get(span)
        if got is None:
            half = span // 2
            prev = self.level(half)
            length = prev.shape[0] - half * self.step
            got = self.ws.get(f"{self.name}L{span}", max(length, 0))
            np.add(prev[:length], prev[half * self.step : half * self.step + length], out=got)
            self.levels[span] = got
        return got

    def sums(self, width: int) -> FloatArray:
        n_out = self.a.shape[0] - (width - 1) * self.step
        if n_out <= 0:
            return np.zeros(0, dtype=np.float32)
        if width == 1:
            return self.a
        out = self.ws.get(f"{self.name}W{width}", n_out)
        offset = 0
        started = False
        span = 1 << (width.bit_length() - 1)
        while span:
            if width & span:
                part = self.level(span)[offset * self.step : offset * self.step + n_out]
                if started:
                    out += part
                else:
                    out[:] = part
                    started = True
                offset += span
            span >>= 1
        return out


def _box_dilate(hits: BoolArray, n_rows: int, n_cols: int) -> BoolArray:
    """Cells covered by boxes of n_rows × n_cols whose top-left corners are ``hits``.

    Doubling OR over the flattened array (contiguous operands, like :class:`_Doubling`);
    the output is wide enough that no shift wraps into the next row. The numpy meaning of
    the painting in :func:`dsp.labelling.box_tests`, kept for its tests.
    """
    rows, cols = hits.shape
    width = cols + n_cols - 1
    grid = np.zeros((rows + n_rows - 1, width), dtype=bool)
    grid[:rows, :cols] = hits
    flat = grid.ravel()
    for span, step in ((n_cols, 1), (n_rows, width)):
        covered = 1
        while covered < span:
            shift = min(covered, span - covered) * step
            flat[shift:] |= flat[:-shift].copy()
            covered += shift // step
    return grid
