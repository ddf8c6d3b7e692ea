"""IQ blocks in, detection records out: detector, classifier and session grouping in one plan.

The same object runs in ``cellwatch detect`` (recordings), in a sensor node (live
sources) and in the benchmarks, so that a recording replayed offline yields exactly
the detections the node would have sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from operator import attrgetter

from dsp.classify import SessionTracker
from dsp.detector import Burst, BurstDetector, DetectorConfig
from dsp.records import Detection, IQBlock

_start_then_freq = attrgetter("t_start_s", "freq_hz")  # the order bursts are labelled in


class DetectionPipeline:
    """One receiver's stream: ``process(block)`` returns the detections finished so far.

    Session ids are prefixed with the sensor id so they stay unique across sensors
    (``session_prefix`` for several pipelines of one sensor).
    """

    def __init__(self, sensor_id: str, sample_rate_hz: float, center_freq_hz: int,
                 config: DetectorConfig | None = None, session_prefix: str | None = None) -> None:
        self.sensor_id = sensor_id
        self.detector = BurstDetector(config or DetectorConfig(), sample_rate_hz, center_freq_hz)
        self.sessions = SessionTracker(sample_rate_hz, prefix=session_prefix or f"{sensor_id}:")
        self.n_detections = 0

    def _records(self, bursts: list[Burst]) -> list[Detection]:
        out = self.sessions.detections(sorted(bursts, key=_start_then_freq), self.sensor_id)
        self.n_detections += len(out)
        return out

    def process(self, block: IQBlock) -> list[Detection]:
        return self._records(self.detector.process(block))

    def flush(self) -> list[Detection]:
        return self._records(self.detector.flush())

    def run(self, blocks: Iterable[IQBlock]) -> Iterator[Detection]:
        """Every detection of a finite stream of blocks, the last ones after the stream ends."""
        for block in blocks:
            yield from self.process(block)
        yield from self.flush()
