"""The node's IQ snippets over real ZeroMQ (loopback) and a real SQLite outbox.

* replaying the GSM call, the node sends the bursts it is allowed to (``[snippets]``), each
  the recording's own bytes around the burst, linked to a detection it also sent;
* ``enabled = false`` sends none; a service that keeps no snippets refuses them for good and
  the node does not keep resending them;
* with the service away, the snippets wait in the outbox and go out with the next start.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from calibration.config import validate
from dsp.records import Detection, Heartbeat
from dsp.snippets import IQSnippet
from dsp.wire import SenderStatus
from sdr.node import Node
from sdr.node_config import NodeConfig, build_setup
from sdr.sender import DetectionSender
from service.detection_log import DetectionLog
from service.ingest import IngestServer
from tests.conftest import REPO

GSM_CALL = REPO / "recordings" / "gsm_call" / "A1-S1.sigmf-meta"
NODE = "A1-S1"


class MemoryStore:
    """A DetectionStore that also keeps snippets (once per node, stream and seq)."""

    def __init__(self) -> None:
        self.detections: dict[tuple[str, str, int], Detection] = {}
        self.snippets: dict[tuple[str, str, int], IQSnippet] = {}
        self.lock = threading.Lock()

    def store_detections(self, node_id: str, stream_id: str, detections: Sequence[Detection]) -> int:
        return self._put(self.detections, node_id, stream_id, detections)

    def store_snippets(self, node_id: str, stream_id: str, snippets: Sequence[IQSnippet]) -> int:
        return self._put(self.snippets, node_id, stream_id, snippets)

    def _put(self, table: dict[tuple[str, str, int], Any], node_id: str, stream_id: str, items: Sequence[Any]) -> int:
        with self.lock:
            new = [i for i in items if (node_id, stream_id, i.seq) not in table]
            table.update(((node_id, stream_id, i.seq), i) for i in new)
            return len(new)

    def store_heartbeat(self, node_id: str, heartbeat: Heartbeat, sender: SenderStatus) -> None:
        pass


def _setup(endpoint: str, tmp: Path, flush_timeout_s: float = 5.0, **snippets: Any) -> Any:
    config = {"node_id": NODE, "heartbeat_s": 0.2,
              "service": {"endpoint": endpoint, "outbox": str(tmp / "outbox.sqlite"), "insecure": True,
                          "flush_timeout_s": flush_timeout_s},
              "sources": [{"spec": f"replay:{GSM_CALL}", "options": {"realtime": False}}], "snippets": snippets}
    return build_setup(validate(NodeConfig, config, "test"), "test", tmp)


def _recording(sample_index: int, n_bytes: int) -> bytes:
    with open(GSM_CALL.with_suffix(".sigmf-data"), "rb") as f:
        f.seek(2 * sample_index)
        return f.read(n_bytes)


def test_the_node_sends_rate_limited_snippets_of_its_own_detections(tmp_path: Path) -> None:
    store = MemoryStore()
    with IngestServer(store, bind="tcp://127.0.0.1:*", insecure=True) as ingest:
        stats = Node(_setup(ingest.endpoint, tmp_path, first_per_session=3, margin_s=1e-3)).run()
    snippets = list(store.snippets.values())
    keys = {(d.sensor_id, d.t_start_s, d.freq_hz): d for d in store.detections.values()}
    sessions = {d.session_id for d in keys.values()}
    assert stats.n_pending_at_exit == 0 and len(keys) == stats.n_detections > 50
    assert len(snippets) == stats.n_snippets == 3 * len(sessions)  # first 3 of each session
    for s in snippets:
        detection = keys[s.key]  # each illustrates a detection the service has
        assert s.burst_offset == 2400 and s.burst_samples == detection.sample_count  # 1 ms margin
        assert s.sample_index == detection.sample_start - 2400
        assert s.data == _recording(s.sample_index, len(s.data))
        assert s.gain_db == detection.gain_db == 14.4 and s.session_id == detection.session_id
    assert sorted(s.seq for s in snippets) == list(range(1, len(snippets) + 1))


def test_disabled_snippets_are_not_sent_and_a_service_without_them_is_not_pestered(tmp_path: Path) -> None:
    store = MemoryStore()
    with IngestServer(store, bind="tcp://127.0.0.1:*", insecure=True) as ingest:
        stats = Node(_setup(ingest.endpoint, tmp_path / "off", enabled=False)).run()
    assert stats.n_snippets == 0 and not store.snippets and len(store.detections) == stats.n_detections

    log = DetectionLog(tmp_path / "log.sqlite")  # a store that keeps no snippets
    try:
        with IngestServer(log, bind="tcp://127.0.0.1:*", insecure=True) as ingest:
            stats = Node(_setup(ingest.endpoint, tmp_path)).run()
            assert ingest.stats().n_snippets_rejected == stats.n_snippets > 0
        with DetectionSender("tcp://127.0.0.1:1", NODE, tmp_path / "outbox.sqlite", insecure=True) as sender:
            assert sender.outbox.n_snippets_pending == 0  # refused for good: forgotten, not resent forever
            assert sender.outbox.snippet_stats().n_rejected == stats.n_snippets
        assert log.count(NODE) == stats.n_detections
    finally:
        log.close()


def test_snippets_wait_in_the_outbox_for_the_service(tmp_path: Path) -> None:
    store = MemoryStore()
    with IngestServer(store, bind="tcp://127.0.0.1:*", insecure=True) as ingest:
        endpoint = ingest.endpoint
    stats = Node(_setup(endpoint, tmp_path, flush_timeout_s=0.2)).run()  # nobody listens there any more
    assert stats.n_snippets > 0 and not store.snippets
    with IngestServer(store, bind=endpoint, insecure=True), \
            DetectionSender(endpoint, NODE, tmp_path / "outbox.sqlite", insecure=True) as sender:
        assert sender.outbox.n_snippets_pending == stats.n_snippets
        assert sender.flush(10.0)
    assert len(store.snippets) == stats.n_snippets and len(store.detections) == stats.n_detections
