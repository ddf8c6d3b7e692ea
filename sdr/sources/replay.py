"""A recording played back as if it were a radio: SigMF or raw files through :func:`open_recording`.

Pacing: ``realtime=True`` hands each block over when the recording's sample clock,
started against the monotonic clock at the first read, reaches the block's last sample,
as a dongle would; ``realtime=False`` as fast as the consumer reads.

Timestamps: ``timestamps="recording"`` keeps the recording's own UTC (its
``core:datetime`` plus the sample offset), so replayed detections line up with the
truth file; ``"now"`` restamps the stream as if it started at the first read, for a live
demo.

Indexes: ``sample_index`` counts samples since the stream started, gaps included: a
capture whose ``core:datetime`` jumps forward (samples were lost when it was recorded)
advances the index by the gap, reported as ``n_dropped``. With ``loop=True`` the
recording restarts and ``sample_index`` and time keep going from where it ended.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Iterator

import numpy as np

from dsp.errors import InputError
from dsp.iq import clipped_fraction_cu8
from dsp.records import IQBlock
from sdr.recording import (
    DEFAULT_BLOCK_SAMPLES,
    Capture,
    Recording,
    open_recording,
    raw_to_block,
)
from sdr.sources.base import OVERLOAD_FRACTION, RUNNING, STOPPED, Source

logger = logging.getLogger(__name__)

TIMESTAMP_MODES = ("recording", "now")
FULL_SCALE = 0.9999  # a component at least this large sits at the ADC rail


class ReplaySource(Source):
    """Plays a recording block by block; see the module docstring for pacing and time."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        spec: str | None = None,
        sensor_id: str | None = None,
        sample_rate_hz: float | None = None,
        center_freq_hz: float | None = None,
        realtime: bool = True,
        loop: bool = False,
        timestamps: str = "recording",
        block_samples: int = DEFAULT_BLOCK_SAMPLES,
        overload_fraction: float = OVERLOAD_FRACTION,
    ) -> None:
        spec = spec or f"replay:{os.fspath(path)}"
        super().__init__(spec, sensor_id or "")
        if timestamps not in TIMESTAMP_MODES:
            raise InputError(spec, "timestamps", f"must be one of {', '.join(TIMESTAMP_MODES)}, got {timestamps!r}")
        if isinstance(block_samples, bool) or not isinstance(block_samples, int) or block_samples < 1:
            raise InputError(spec, "block_samples", f"must be a positive integer, got {block_samples!r}")
        self._path = os.fspath(path)
        self._sensor_id_given = sensor_id
        self._rate_hint = sample_rate_hz
        self._freq_hint = center_freq_hz
        self._realtime = bool(realtime)
        self._loop = bool(loop)
        self._timestamps = timestamps
        self._block_samples = block_samples
        self._overload_fraction = overload_fraction
        self._recording: Recording | None = None
        self._stop = threading.Event()
        self._generator: Iterator[tuple[IQBlock, int]] | None = None
        self._next: tuple[IQBlock, int] | None = None
        self._t0_monotonic = 0.0
        self._t0_utc = 0.0
        self._center_freq_hz = 0
        self._next_index = 0

    @property
    def recording(self) -> Recording:
        if self._recording is None:
            self._recording = self._open_recording()
        return self._recording

    @property
    def sample_rate_hz(self) -> float:
        return self.recording.info.sample_rate_hz

    @property
    def center_freq_hz(self) -> int:
        return self._center_freq_hz or self.recording.info.center_freq_hz

    @property
    def gain_db(self) -> float | None:
        return self.recording.info.gain_db

    @property
    def can_tune(self) -> bool:
        return False

    def _open_recording(self) -> Recording:
        recording = open_recording(
            self._path, sample_rate_hz=self._rate_hint, center_freq_hz=self._freq_hint, sensor_id=self._sensor_id_given
        )
        self._sensor_id = recording.info.sensor_id
        return recording

    def open(self) -> None:
        if self._state != STOPPED:
            return
        self._recording = self._open_recording()
        self._stop.clear()
        self._generator = self._generate(self._recording)
        self._next = None
        self._next_index = 0
        self._center_freq_hz = self._recording.info.center_freq_hz
        self._state = RUNNING
        logger.info("replay_open source=%s realtime=%s loop=%s timestamps=%s n_samples=%d",
                    self._spec, self._realtime, self._loop, self._timestamps, self._recording.n_samples)

    def close(self) -> None:
        self._stop.set()
        self._state = STOPPED
        generator, self._generator = self._generator, None
        self._next = None
        if generator is not None:
            try:
                generator.close()  # type: ignore[attr-defined]
            except ValueError:  # closing from another thread while it runs: it stops at its next block
                pass

    def read_block(self, timeout_s: float | None = None) -> IQBlock | None:
        if self._state != RUNNING or self._generator is None:
            return None
        if self._next is None:
            try:
                self._next = next(self._generator)
            except StopIteration:
                self._state = STOPPED
                return None
        block, due_index = self._next
        if self._realtime:
            remaining_s = self._t0_monotonic + due_index / block.sample_rate_hz - time.monotonic()
            if timeout_s is not None and remaining_s > timeout_s:
                self._stop.wait(timeout_s)
                return None
            if remaining_s > 0 and self._stop.wait(remaining_s):
                return None
        self._next = None
        self._center_freq_hz = block.center_freq_hz
        self._count(dropped=block.n_dropped)
        return block

    def tune(self, center_freq_hz: int) -> None:
        if center_freq_hz == self.center_freq_hz:
            return
        raise InputError(
            self._spec, "center_freq_hz",
            f"a recording cannot be retuned to {center_freq_hz} Hz: it holds {self.center_freq_hz} Hz",
        )

    def _generate(self, recording: Recording) -> Iterator[tuple[IQBlock, int]]:
        """(block, stream index its last sample is due at), loop after loop."""
        info = recording.info
        rate = info.sample_rate_hz
        captures = info.captures or (Capture(0, info.center_freq_hz, info.t_start_s),)
        dropped_before = list(itertools.accumulate(c.n_dropped for c in captures))
        span = info.n_samples + dropped_before[-1]  # stream samples one pass covers
        self._t0_monotonic = time.monotonic()
        self._t0_utc = time.time()
        for loop_index in itertools.count():
            if loop_index and (not self._loop or info.n_samples == 0):
                return
            for raw in recording.raw_blocks(self._block_samples):
                if self._stop.is_set():
                    return
                index = loop_index * span + raw.sample_index + dropped_before[raw.capture_index]
                if self._timestamps == "recording":
                    t_start_s = recording.time_of_sample(raw.sample_index) + loop_index * span / rate
                else:
                    t_start_s = self._t0_utc + index / rate
                block = raw_to_block(
                    raw.data, info.datatype,
                    center_freq_hz=captures[raw.capture_index].center_freq_hz,
                    sample_rate_hz=rate,
                    t_start_s=t_start_s,
                    sensor_id=self._sensor_id,
                    sample_index=index,
                    gain_db=info.gain_db,
                    n_dropped=index - self._next_index,
                )
                if self._is_overloaded(block):
                    self._count(overloads=1)
                self._next_index = index + raw.n_samples
                yield block, self._next_index

    def _is_overloaded(self, block: IQBlock) -> bool:
        if block.n_samples == 0:
            return False
        if block.cu8 is not None:
            fraction = clipped_fraction_cu8(block.cu8)
        else:
            components = block.samples.view(np.float32)
            fraction = np.count_nonzero(np.abs(components) >= FULL_SCALE) / components.size
        return bool(fraction > self._overload_fraction) and math.isfinite(fraction)
