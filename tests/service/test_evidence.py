"""Evidence end to end: a node replays a bundled recording into a live service over ZeroMQ; the
event it makes has IQ snippets, a spectrogram and an evidence export.

* the spectrogram shows the burst's energy at the right frequency offset and time;
* the snippet read back from the export with the ``sigmf`` library holds exactly the
  recording's bytes at that offset, and ``sha256sum -c SHA256SUMS`` passes on the unzipped
  export; the zip is the same bytes every time, its manifest matches it, and the export is
  in the audit log (a viewer may do all of it);
* the node's rate limit holds (the first 2 bursts of each session, nothing more in 0.4 s);
* snippets wait in the node's outbox while the service is down and arrive once after it
  restarts on the same database;
* a malformed snippet message is logged and dropped (a bad item is refused alone), and the
  ingest keeps storing;
* a database made before snippets gains the table (migration 2).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sqlite3
import subprocess
import zipfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
import zmq
from sigmf.sigmffile import fromfile

from calibration.config import validate
from dsp.records import Detection
from dsp.snippets import IQSnippet
from dsp.wire import Ack, ErrorReply, decode_message, encode_snippet_items
from sdr.node import Node
from sdr.node_config import NodeConfig, build_setup
from sdr.sender import DetectionSender
from service.evidence import spectrogram
from service.ingest import IngestServer
from service.store import MIGRATIONS, metadata, migrate, open_store
from tests.conftest import REPO
from tests.service.harness import StandInEngine, live_server, make_settings, wait_for

GSM_CALL = REPO / "recordings" / "gsm_call" / "A1-S1.sigmf-meta"  # ARFCN 62 at 902.4 MHz, the tuning itself
GSM_DATA = GSM_CALL.with_suffix(".sigmf-data")
NODE = "A1-S1"
STREAM = "00112233445566778899aabbccddeeff"


def _node_setup(endpoint: str, tmp: Path, **snippets: Any) -> Any:
    config = {"node_id": NODE, "heartbeat_s": 0.2,
              "service": {"endpoint": endpoint, "outbox": str(tmp / "outbox.sqlite"), "insecure": True},
              "sources": [{"spec": f"replay:{GSM_CALL}", "options": {"realtime": False}}],
              "snippets": snippets}
    return build_setup(validate(NodeConfig, config, "test"), "test", tmp)


def _recording_bytes(sample_index: int, n_bytes: int) -> bytes:
    with open(GSM_DATA, "rb") as f:
        f.seek(2 * sample_index)
        return f.read(n_bytes)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A live service fed by a node replaying the GSM call; yields (server, viewer headers, node stats, tmp)."""
    tmp = tmp_path_factory.mktemp("evidence")
    settings = make_settings(tmp, ingest=True)
    with live_server(settings, StandInEngine()) as server:
        server.add_user("vera", "viewer")
        headers = server.login("vera")
        stats = Node(_node_setup(server.services.ingest.endpoint, tmp)).run()
        store = server.services.store
        wait_for(lambda: store.get_event("T1") is not None and len(store.event_snippet_refs("T1")) == stats.n_snippets,
                 10.0, "the event and its snippets")
        wait_for(lambda: store.event_detections("T1")[0] == stats.n_detections, 10.0, "all detections in the event")
        yield server, headers, stats, tmp


def test_node_sends_the_first_bursts_of_each_session_and_no_more(replayed: Any) -> None:
    server, _, stats, _ = replayed
    store = server.services.store
    _, dets = store.event_detections("T1", 10_000)
    sessions: dict[str | None, list[Detection]] = {}
    for d in sorted((s.detection for s in dets), key=lambda d: d.t_start_s):
        sessions.setdefault(d.session_id, []).append(d)
    snippets = [s.snippet for s in store.event_snippets("T1")]
    expected = sorted((d.sensor_id, d.t_start_s, d.freq_hz) for ds in sessions.values() for d in ds[:2])
    assert len(dets) > 50  # the call: 216 bursts a second, 0.4 s
    assert sorted(s.key for s in snippets) == expected  # the first 2 of each session, none after (10 s apart)
    assert stats.n_snippets == len(expected) and stats.snippet_reasons["taken"] == len(expected)
    assert stats.snippet_reasons["rate_limited"] == stats.n_detections - len(expected)
    assert all(s.n_samples == 2 * 1200 + s.burst_samples for s in snippets if s.burst_offset == 1200)


def test_snippets_hold_the_recordings_bytes_and_the_burst(replayed: Any) -> None:
    server, _, _, _ = replayed
    store = server.services.store
    by_id = {d.id: d.detection for d in store.event_detections("T1", 10_000)[1]}
    for stored in store.event_snippets("T1"):
        s = stored.snippet
        detection = by_id[stored.ref.detection_id]
        assert s.key == (detection.sensor_id, detection.t_start_s, detection.freq_hz)
        assert s.sample_index is not None and s.datatype == "cu8" and s.center_freq_hz == 902_400_000
        assert s.data == _recording_bytes(s.sample_index, len(s.data))  # as the node received them
        assert s.t_start_s + s.burst_offset / s.sample_rate_hz == pytest.approx(s.detection_t_start_s, abs=1e-6)
        assert s.burst_offset == 1200  # 0.5 ms at 2.4 MS/s before the burst
        assert s.burst_samples == detection.sample_count  # the burst as the detector measured it ...
        assert 500e-6 < s.burst_samples / s.sample_rate_hz < 700e-6  # ... a normal burst (546 µs, edges ±50 µs)
        assert stored.data_sha256 == hashlib.sha256(s.data).hexdigest()


def test_spectrogram_shows_the_burst_at_its_frequency_and_time(replayed: Any) -> None:
    server, headers, _, _ = replayed
    with server.client(headers=headers) as c:
        r = c.get("/api/events/T1/spectrogram")
        assert r.status_code == 200, r.text
        body = r.json()
        assert c.get("/api/events/T1/spectrogram", params={"sensor_id": NODE}).json() == body
        missing = c.get("/api/events/T1/spectrogram", params={"sensor_id": "B2-S3"})
        assert missing.status_code == 404 and "B2-S3" in missing.json()["detail"]
        assert c.get("/api/events/nope/spectrogram").status_code == 404
    assert {"sensor_id", "center_freq_hz", "sample_rate_hz", "t_s", "freq_hz", "power_db"} <= set(body)
    assert body["sensor_id"] == NODE and body["center_freq_hz"] == 902_400_000 and body["sensors"] == [NODE]
    t_s, freqs_hz = np.array(body["t_s"]), np.array(body["freq_hz"])
    power = np.array(body["power_db"])
    assert power.shape == (t_s.size, freqs_hz.size) and t_s.size <= 128 and freqs_hz.size <= 128
    assert np.all(np.diff(t_s) > 0) and np.all(np.diff(freqs_hz) > 0)
    burst = body["burst"]
    t0, t1 = burst["t_start_s"], burst["t_start_s"] + burst["duration_s"]
    inside = (t_s > t0 + 60e-6) & (t_s < t1 - 60e-6)  # rows whose frames (53 µs) lie in the burst
    before = t_s < t0 - 60e-6
    assert inside.sum() > 10 and before.sum() > 5
    linear = 10.0 ** (power / 10.0)
    excess = linear[inside].mean(axis=0) - linear[before].mean(axis=0)
    centroid_hz = float(np.sum(excess * freqs_hz) / np.sum(excess))
    assert centroid_hz == pytest.approx(burst["freq_hz"], abs=25e-3 * 1e6)  # ARFCN 62 sits on the tuning
    band = np.abs(freqs_hz - burst["freq_hz"]) < 100e3
    level_db = 10 * np.log10(linear[:, band].mean(axis=1))
    noise_db = float(np.median(level_db[before]))
    assert float(np.median(level_db[inside])) > noise_db + 15.0  # the burst stands out ...
    plateau_db = float(np.median(level_db[inside]))
    onset_s = t_s[np.argmax(level_db > 0.5 * (noise_db + plateau_db))]  # frames half in the burst
    assert onset_s == pytest.approx(_truth_start_s(t0), abs=30e-6)  # where the simulator put it (rows: 26.7 µs)
    far = np.abs(freqs_hz - burst["freq_hz"]) > 400e3
    assert float(10 * np.log10(linear[inside][:, far].mean())) < noise_db + 3.0  # and only in its band


def test_spectrogram_of_a_tone_peaks_at_its_offset() -> None:
    rate, offset_hz, n = 2.4e6, 300e3, 4000
    tone = 0.9 * np.exp(2j * np.pi * offset_hz * np.arange(n) / rate)
    data = np.clip(np.rint(np.stack([tone.real, tone.imag], axis=1).ravel() * 127.5 + 127.5), 0, 255)
    snippet = IQSnippet(NODE, 1.7e9, 902_400_000, rate, data.astype(np.uint8).tobytes(), 1.7e9, 902.7e6, 0, n)
    spec = spectrogram(snippet)
    peak_hz = spec.freq_hz[np.argmax(spec.power_db.mean(axis=0))]
    assert abs(peak_hz - (902.4e6 + offset_hz)) <= 0.5 * rate / 128  # within half a bin
    assert float(spec.power_db.max()) == pytest.approx(20 * np.log10(0.9), abs=1.5)  # ~0 dBFS tone, window scaled
    assert spec.t_s[0] == pytest.approx(1.7e9 + 64 / rate)


def _unzip(blob: bytes, where: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        assert archive.testzip() is None
        archive.extractall(where)
        return {name: archive.read(name) for name in archive.namelist()}


def test_evidence_export_verifies_and_reads_back_with_sigmf(replayed: Any, tmp_path: Path) -> None:
    server, headers, stats, _ = replayed
    store = server.services.store
    with server.client(headers=headers) as c:
        manifest = c.get("/api/events/T1/evidence/manifest").json()
        r = c.get("/api/events/T1/evidence")
        again = c.get("/api/events/T1/evidence")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == 'attachment; filename="cellwatch-evidence-T1.zip"'
    assert again.content == r.content  # deterministic: same event, same bytes
    assert manifest["zip_sha256"] == hashlib.sha256(r.content).hexdigest()

    files = _unzip(r.content, tmp_path)
    assert [f["name"] for f in manifest["files"]] == list(files)
    for f in manifest["files"]:
        assert (f["sha256"], f["bytes"]) == (hashlib.sha256(files[f["name"]]).hexdigest(), len(files[f["name"]]))
    sums = dict(reversed(line.split("  ", 1)) for line in files["SHA256SUMS"].decode().splitlines())
    assert set(sums) == set(files) - {"SHA256SUMS"}
    check = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr

    event = json.loads(files["event.json"])
    assert event["event"]["event_id"] == "T1" and event["candidates"] == [{"place": "A-1-01", "p": 0.9}]
    assert event["n_snippets"] == event["n_snippets_included"] == stats.n_snippets
    lines = files["detections.jsonl"].decode().splitlines()
    assert len(lines) == event["n_detections"] == stats.n_detections
    assert {Detection.from_json(line).sensor_id for line in lines} == {NODE}  # DESIGN.md's form, readable back

    metas = sorted(name for name in files if name.endswith(".sigmf-meta"))
    assert len(metas) == stats.n_snippets
    by_start = {s.snippet.t_start_s: s.snippet for s in store.event_snippets("T1")}
    for name in metas:
        handle = fromfile(str(tmp_path / name), autoscale=False)  # checks the sha512 too
        glob = handle.get_global_info()
        capture = handle.get_captures()[0]
        assert glob["core:datatype"] == "cu8" and glob["core:sample_rate"] == 2.4e6 and "RTL-SDR" in glob["core:hw"]
        assert capture["core:frequency"] == 902_400_000
        snippet = min(by_start.values(), key=lambda s: abs(s.t_start_s - _utc(capture["core:datetime"])))
        raw = handle.read_samples()
        assert snippet.sample_index is not None
        expected = np.frombuffer(_recording_bytes(snippet.sample_index, 2 * raw.size), dtype=np.uint8)
        assert np.array_equal(raw.real, expected[0::2]) and np.array_equal(raw.imag, expected[1::2])
        (annotation,) = handle.get_annotations()
        assert annotation["core:sample_start"] == snippet.burst_offset and annotation["core:label"] == "gsm"
        assert annotation["core:freq_lower_edge"] < snippet.detection_freq_hz < annotation["core:freq_upper_edge"]

    rows = [row for row in store.list_audit(action="event.evidence_export")[1] if row.target == "T1"]
    assert len(rows) == 2 and {row.actor for row in rows} == {"vera"}  # one per download, not for the manifest
    assert rows[0].details["zip_sha256"] == manifest["zip_sha256"]
    assert store.verify_audit_chain().ok


def _truth_start_s(t_s: float) -> float:
    """UTC start of the recording's true burst nearest ``t_s`` (its SigMF annotations are the truth)."""
    meta = json.loads(GSM_CALL.read_text())
    t0_s = _utc(meta["captures"][0]["core:datetime"])
    starts_s = [t0_s + a["core:sample_start"] / meta["global"]["core:sample_rate"] for a in meta["annotations"]]
    return min(starts_s, key=lambda start: abs(start - t_s))


def _utc(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def test_an_event_without_snippets_has_no_spectrogram_but_exports(replayed: Any, tmp_path: Path) -> None:
    server, headers, _, _ = replayed
    store = server.services.store
    late = [Detection("A1-S2", 1.8e9 + 0.01 * i, 546e-6, 903.0e6, 200e3, -40.0, 12.0, "gsm", seq=i + 1)
            for i in range(3)]
    store.store_detections("A1-S2", STREAM, late)
    wait_for(lambda: store.get_event("T2") is not None and store.event_detections("T2")[0] == 3, 10.0, "event T2")
    with server.client(headers=headers) as c:
        r = c.get("/api/events/T2/spectrogram")
        assert r.status_code == 404 and r.json() == {"detail": "event 'T2' has no IQ snippet"}
        export = c.get("/api/events/T2/evidence")
        assert c.get("/api/events/T9/evidence").status_code == 404
        assert c.get("/api/events/T9/evidence/manifest").status_code == 404
    files = _unzip(export.content, tmp_path)
    assert sorted(files) == ["SHA256SUMS", "detections.jsonl", "event.json"]
    assert json.loads(files["event.json"])["n_snippets"] == 0


def _snippet(i: int, sensor_id: str = NODE) -> IQSnippet:
    data = _recording_bytes(1000 * i, 2 * 3700)
    return IQSnippet(sensor_id, 1.7e9 + i, 902_400_000, 2.4e6, data, 1.7e9 + i + 5e-4, 902.4e6, 1200, 1300,
                     200e3, 14.4, tech="gsm", sample_index=1000 * i)


def test_snippets_wait_in_the_outbox_and_arrive_once_after_a_service_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    outbox = tmp_path / "outbox.sqlite"
    store = open_store(url)
    ingest = IngestServer(store, bind="tcp://127.0.0.1:*", insecure=True).start()
    endpoint = ingest.endpoint
    sender = DetectionSender(endpoint, NODE, outbox, insecure=True, ack_timeout_s=0.2, max_ack_timeout_s=0.5)
    assert sender.submit_snippets([_snippet(i) for i in range(3)]) == [1, 2, 3]
    assert sender.flush(10.0)
    ingest.stop()
    store.close()  # the service is down ...
    assert sender.submit_snippets([_snippet(i) for i in range(3, 8)]) == [4, 5, 6, 7, 8]
    sender.pump(0.5)
    assert sender.stats().n_snippets_pending == 5
    sender.close()  # ... and the node restarts meanwhile: its outbox keeps them
    store = open_store(url)
    ingest = IngestServer(store, bind=endpoint, insecure=True).start()
    try:
        with DetectionSender(endpoint, NODE, outbox, insecure=True) as sender:
            assert sender.flush(10.0)
            assert sender.stats().n_snippets_acked == 5
        with sqlite3.connect(tmp_path / "db.sqlite") as conn:
            rows = conn.execute("SELECT seq, data FROM snippets ORDER BY seq").fetchall()
        assert [seq for seq, _ in rows] == list(range(1, 9))  # each once
        assert [bytes(data) for _, data in rows] == [_snippet(i).data for i in range(8)]
        assert ingest.stats().n_snippets_stored == 5
    finally:
        ingest.stop()
        store.close()


def _exchange(sock: zmq.Socket[bytes], payload: bytes) -> Any:
    sock.send(payload)
    assert sock.poll(5000), "no reply"
    return decode_message(sock.recv())


def test_a_malformed_snippet_message_is_logged_and_dropped_and_ingest_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        with caplog.at_level(logging.WARNING, "service.ingest"), \
                IngestServer(store, bind="tcp://127.0.0.1:*", insecure=True) as ingest:
            sock.connect(ingest.endpoint)
            head = {"v": 1, "type": "snippets", "node_id": NODE, "stream_id": STREAM}
            for bad in (json.dumps({**head, "items": "not a list"}),
                        json.dumps({**head, "items": [{"seq": 1, "data_b64": "AAAA"}]})[:-7],  # cut short
                        json.dumps({**head, "items": [{"sensor_id": NODE}]})):  # no seq: cannot be acked
                assert isinstance(_exchange(sock, bad.encode()), ErrorReply)
            good = _snippet(0)
            bad_item = {**_snippet(1).to_dict(), "seq": 2, "data_b64": "not base64!"}
            foreign = {**_snippet(2, sensor_id="B1-S1").to_dict(), "seq": 3}
            reply = _exchange(sock, encode_snippet_items(NODE, STREAM, [good.to_json()[:-1] + ',"seq":1}',
                                                                        json.dumps(bad_item)]))
            assert isinstance(reply, Ack) and reply.seqs == (1,) and [r.seq for r in reply.rejected] == [2]
            assert "data_b64" in reply.rejected[0].reason
            assert isinstance(_exchange(sock, encode_snippet_items(NODE, STREAM, [json.dumps(foreign)])), ErrorReply)
            again = _exchange(sock, encode_snippet_items(NODE, STREAM, [json.dumps({**_snippet(3).to_dict(), "seq": 4})]))
            assert isinstance(again, Ack) and again.seqs == (4,)  # still storing
            stats = ingest.stats()
        assert (stats.n_malformed, stats.n_impersonation, stats.n_snippets_stored, stats.n_snippets_rejected) \
            == (3, 1, 2, 1)
        assert "message dropped" in caplog.text and "snippets refused" in caplog.text
        with sqlite3.connect(tmp_path / "db.sqlite") as conn:
            assert conn.execute("SELECT seq FROM snippets ORDER BY seq").fetchall() == [(1,), (4,)]
    finally:
        sock.close()
        context.term()
        store.close()


def make_v1_database(engine: sa.Engine) -> None:
    """What version 1 of the schema alone made (before IQ snippets)."""
    with engine.begin() as conn:
        metadata.create_all(conn, tables=[metadata.tables["schema_version"]])
        MIGRATIONS[0].apply(conn)
        conn.execute(metadata.tables["schema_version"].insert().values(version=1, applied_s=0.0, description="v1"))


def test_a_database_from_before_snippets_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    make_v1_database(engine)
    assert migrate(engine) == 2
    engine.dispose()
    with open_store(f"sqlite:///{path}") as store:
        assert store.store_snippets(NODE, STREAM, [replace(_snippet(0), seq=1)]) == 1
        assert store.store_snippets(NODE, STREAM, [replace(_snippet(0), seq=1)]) == 0  # once per (node, stream, seq)
