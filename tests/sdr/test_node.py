"""The node runtime end to end: real ZeroMQ (CURVE and insecure) to an IngestServer, real SQLite.

* over a replay source it delivers exactly the detections ``cellwatch detect`` finds in the
  same recording, and its heartbeats carry the band's noise floor as the recording holds it;
* scanning a simulated sensor, every detection falls in a UTC-aligned watch window of the
  channel that holds the phone, each tuning with its own pipeline;
* a source that cannot be reached leaves the node running (heartbeats say ``retrying``)
  while the other source keeps detecting, and the watched fraction is measured;
* SIGTERM stops the ``cellwatch node`` process cleanly with nothing left undelivered;
* a bad config exits with status 2 and one line naming the field.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calibration.config import validate
from dsp.records import Detection, Heartbeat
from dsp.wire import SenderStatus
from sdr.node import Node
from sdr.node_config import NodeConfig, build_setup
from sdr.recording import open_recording
from service.cli import main as cellwatch
from service.commands.node import example_config_text
from service.detection_log import DetectionLog
from service.ingest import IngestServer
from service.keys import create_keypair, load_allowed_keys, load_keypair
from tests.conftest import DEMO_SITE, REPO

GSM_CALL = REPO / "recordings" / "gsm_call" / "A1-S1.sigmf-meta"  # ARFCN 62, tuned to 902.4 MHz
NODE = "A1-S1"
CALL_SCENARIO = """
name = "node_test"
duration_s = 6.0
sensors = ["A1-S1"]
[receiver]
center_freq_hz = 902.4e6
[[phones]]                 # ARFCN 62: 902.4 MHz
id = "p1"
cell = "A-1-03"
tech = "gsm"
activity = "call"
established = true
arfcn = 62
timeslot = 3
tx_power_dbm = 5.0
"""


class Recorder:
    """A DetectionStore that keeps every heartbeat besides storing everything in a DetectionLog."""

    def __init__(self, path: Path) -> None:
        self.log = DetectionLog(path)
        self.heartbeats: list[Heartbeat] = []

    def store_detections(self, node_id: str, stream_id: str, detections: Sequence[Detection]) -> int:
        return self.log.store_detections(node_id, stream_id, detections)

    def store_heartbeat(self, node_id: str, heartbeat: Heartbeat, sender: SenderStatus) -> None:
        self.heartbeats.append(heartbeat)
        self.log.store_heartbeat(node_id, heartbeat, sender)


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "call.toml"
    path.write_text(CALL_SCENARIO)
    return path


def _config(endpoint: str, tmp_path: Path, sources: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    service = {"endpoint": endpoint, "outbox": str(tmp_path / "outbox.sqlite"), "insecure": True}
    service.update(extra.pop("service", {}))
    return {"node_id": NODE, "heartbeat_s": 0.1, "service": service, "sources": sources, **extra}


def _setup(config: dict[str, Any], base: Path) -> Any:
    return build_setup(validate(NodeConfig, config, "test"), "test", base)


def _plain(detections: list[Detection]) -> list[dict[str, Any]]:
    out = []
    for d in detections:
        obj = d.to_dict()
        obj.pop("seq", None)
        out.append(obj)
    return out


def test_replay_node_delivers_what_detect_finds_with_curve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server_public, server_secret = create_keypair(tmp_path / "service", "service")
    _, node_secret = create_keypair(tmp_path / "nodes", NODE)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / f"{NODE}.key").write_bytes((tmp_path / "nodes" / f"{NODE}.key").read_bytes())
    recorder = Recorder(tmp_path / "log.sqlite")
    with IngestServer(recorder, bind="tcp://127.0.0.1:*", server_keys=load_keypair(server_secret),
                      allowed_keys=load_allowed_keys(allowed)) as ingest:
        config = _config(ingest.endpoint, tmp_path, [{"spec": f"replay:{GSM_CALL}", "options": {"realtime": True}}],
                         service={"insecure": False, "server_key": str(server_public), "node_key": str(node_secret)})
        stats = Node(_setup(config, tmp_path)).run()  # returns when the recording ends
    assert cellwatch(["detect", str(GSM_CALL), "--out", str(tmp_path / "detect.jsonl")]) == 0
    capsys.readouterr()
    expected = [json.loads(line) for line in (tmp_path / "detect.jsonl").read_text().splitlines()]
    stored = [s.detection for s in recorder.log.detections(NODE)]
    assert len(expected) > 20  # the call's bursts in 0.4 s
    assert _plain(stored) == expected  # same detections, same values, same order
    assert sorted(d.seq for d in stored) == list(range(1, len(expected) + 1))  # type: ignore[type-var]
    assert stats.n_detections == len(expected) and stats.n_pending_at_exit == 0
    assert all(d.gain_db is not None and d.power_dbfs < 0 for d in stored)

    beats = recorder.heartbeats
    assert len(beats) >= 3 and beats[-1].source_state == "stopped"
    assert any(b.source_state == "running" for b in beats)
    floors = [b.bands[0] for b in beats if b.bands]
    assert floors and floors[-1].band == "GSM-900" and floors[-1].revisit_s == 0.0
    samples = open_recording(GSM_CALL).read(0, 960_000)
    noise = np.median(np.abs(samples - samples.mean()) ** 2) / math.log(2.0)  # exponential: median = ln2 x mean
    assert floors[-1].noise_floor_dbfs == pytest.approx(10 * math.log10(noise), abs=1.0)
    recorder.log.close()


# where in the 0.48 s cycle the stream starts; from 0.41 the warm-up pass ends 19 ms before the
# phone channel's slot does (a retune there would settle past it: the node must go on to the next)
@pytest.mark.parametrize("phase_s", [0.13, 0.41])
def test_scanning_node_watches_the_phones_channel_in_its_utc_windows(tmp_path: Path, scenario: Path,
                                                                     phase_s: float) -> None:
    recorder = Recorder(tmp_path / "log.sqlite")
    block_s = 24_000 / 2.4e6
    with IngestServer(recorder, bind="tcp://127.0.0.1:*", insecure=True) as ingest:
        config = _config(ingest.endpoint, tmp_path, [{
            "spec": f"sim:{DEMO_SITE}:{scenario}:A1-S1",
            "options": {"realtime": False, "loop": False, "seed": 2, "block_samples": 24_000, "settle_s": 0.02,
                        "start_utc": 1_795_997_760.0 + phase_s}}],
            scan={"dwell_s": 0.1, "settle_s": 0.02},
            bands=[{"name": "LO", "low_mhz": 897.0, "high_mhz": 901.0}, {"name": "HI", "low_mhz": 901.0, "high_mhz": 905.0}])
        setup = _setup(config, tmp_path)
        stats = Node(setup).run()
    schedule = setup.sources[0].schedule
    assert [c.center_freq_hz for c in schedule.channels] == [898_000_000, 900_000_000, 902_000_000, 904_000_000]
    assert schedule.cycle_s == pytest.approx(0.48)
    (window_start, window_end), = schedule.watch_windows(schedule.channels[2])
    detections = [s.detection for s in recorder.log.detections(NODE)]
    per_source = stats.per_source[0]
    warm_end = per_source["warmup_done_s"]  # a first pass stays on each channel until its noise floor is known
    assert warm_end is not None
    assert len(detections) > 50
    settle_s = 0.02
    for d in detections:
        assert 901e6 <= d.freq_hz <= 903e6  # the phone (and its I/Q image) in the 902 MHz channel only
        if d.t_start_s > warm_end:
            position = d.t_start_s % schedule.cycle_s
            # a warm-up that ends on this channel inside its slot needs no retune, so no settling:
            # the first visit may listen from the slot's start
            early_s = settle_s if d.t_start_s < warm_end + schedule.cycle_s else 0.0
            assert window_start - early_s - 1e-3 <= position <= window_end + block_s, (position, warm_end)
    visits = {math.floor(d.t_start_s / schedule.cycle_s) for d in detections if d.t_start_s > warm_end}
    assert len(visits) >= 0.9 * (detections[-1].t_start_s - warm_end) / schedule.cycle_s  # every cycle
    assert per_source["n_pipelines"] == 4  # one per tuning, kept between visits
    # hops up to the last detection, give or take the cycle (4 hops) the node may scan after it
    assert stats.n_hops == pytest.approx(4 + (detections[-1].t_start_s - warm_end) / 0.12, abs=5)
    assert per_source["n_settle_samples"] == pytest.approx(stats.n_hops * 0.02 * 2.4e6, rel=0.05)
    assert per_source["n_dropped_samples"] == 0
    last = recorder.heartbeats[-1]
    assert {b.band for b in last.bands} == {"LO", "HI"}
    for band in last.bands:  # a source faster than real time reports the plan's share
        assert band.watched_fraction == pytest.approx(2 * 0.1 / 0.48 / 2, rel=1e-3)
        assert band.revisit_s == pytest.approx(0.48)
    recorder.log.close()


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_node_survives_a_source_that_cannot_be_reached(tmp_path: Path, scenario: Path) -> None:
    recorder = Recorder(tmp_path / "log.sqlite")
    port = _refused_port()
    with IngestServer(recorder, bind="tcp://127.0.0.1:*", insecure=True) as ingest:
        config = _config(ingest.endpoint, tmp_path, [
            {"spec": f"rtl_tcp://127.0.0.1:{port}", "gain_db": 20.0, "center_freq_hz": 902.4e6},
            {"spec": f"sim:{DEMO_SITE}:{scenario}:A1-S1", "center_freq_hz": 902.4e6,
             "options": {"seed": 3, "block_samples": 24_000}},
        ], heartbeat_s=0.3)
        node = Node(_setup(config, tmp_path))
        thread = threading.Thread(target=node.run)
        thread.start()
        time.sleep(2.5)
        node.request_stop()
        stopped_at = time.monotonic()
        thread.join(10.0)
        assert not thread.is_alive() and time.monotonic() - stopped_at < 3.0
    beats = recorder.heartbeats
    running = [b for b in beats[:-1] if b.bands]
    assert running and all(b.source_state == "retrying" for b in beats[:-1])
    assert f"rtl_tcp://127.0.0.1:{port}=retrying" in beats[-2].message and "cannot connect" in beats[-2].message
    assert beats[-1].source_state == "stopped"
    assert recorder.log.count(NODE) > 50  # the simulated dongle kept detecting meanwhile
    # the sim watches 2 MHz of GSM-900's 35 all the time, the unreachable dongle nothing
    watched = [b.bands[0].watched_fraction for b in running[1:]]
    assert np.median(watched) == pytest.approx(2.0 / 35.0, rel=0.2)
    recorder.log.close()


def test_sigterm_stops_the_node_cleanly(tmp_path: Path, scenario: Path) -> None:
    recorder = Recorder(tmp_path / "log.sqlite")
    with IngestServer(recorder, bind="tcp://127.0.0.1:*", insecure=True) as ingest:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "node", "--source", f"sim:{DEMO_SITE}:{scenario}:A1-S1",
             "--freq", "902.4M", "-o", "seed=4", "--node-id", NODE, "--service", ingest.endpoint, "--insecure",
             "--outbox", str(tmp_path / "outbox.sqlite"), "--heartbeat", "0.5"],
            cwd=REPO, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.monotonic() + 20
            while recorder.log.count(NODE) == 0 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
            assert recorder.log.count(NODE) > 0
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert "node_stopping signal=SIGTERM" in err and "0 detections left in the outbox" in err
        n_reported = int(err.rsplit(f"node {NODE}: ", 1)[1].split(" detections")[0])
        time.sleep(0.2)
        assert recorder.log.count(NODE) == n_reported  # flushed detector, everything delivered
    assert recorder.heartbeats[-1].source_state == "stopped"
    recorder.log.close()


def test_the_example_config_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(example_config_text())
    assert cellwatch(["node", "--config", str(path), "--check"]) == 0


GOOD = """
node_id = "A1-S1"
[service]
endpoint = "tcp://127.0.0.1:5557"
insecure = true
[[sources]]
spec = "rtlsdr:0"
gain_db = 28.0
"""


@pytest.mark.parametrize(("change", "field"), [
    (("gain_db = 28.0", ""), "sources[0].gain_db"),  # AGC refused
    (("gain_db = 28.0", 'gain_db = "loud"'), "sources[0].gain_db"),
    (('node_id = "A1-S1"', 'node_id = "A1/S1"'), "node_id"),
    (("insecure = true", ""), "service"),  # no keys and not insecure
    (('endpoint = "tcp://127.0.0.1:5557"', 'endpoint = "127.0.0.1"'), "service.endpoint"),
    (("[[sources]]", "[scan]\ndwel_s = 0.1\n[[sources]]"), "scan.dwel_s"),
    (("[[sources]]", "[[bands]]\nname = \"B3\"\nlow_mhz = 1710\nhigh_mhz = 1785\n[[sources]]"), "bands[0]"),
    (("gain_db = 28.0", "gain_db = 28.0\noptions = { loop = true }"), "sources[0].options.loop"),
    (("gain_db = 28.0", 'gain_db = 28.0\nbands = ["B7"]'), "sources[0].bands[0]"),
    (('spec = "rtlsdr:0"', 'spec = "hackrf:0"'), "sources[0].spec"),
    (("[[sources]]", "[detector]\npfa = 0.5\n[[sources]]"), "detector.pfa"),
])
def test_bad_config_exits_2_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             change: tuple[str, str], field: str) -> None:
    path = tmp_path / "node.toml"
    assert change[0] in GOOD
    path.write_text(GOOD.replace(change[0], change[1], 1))
    assert cellwatch(["node", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}: {field}:" in err, err


def test_good_config_checks_and_flags_need_their_companions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.toml"
    path.write_text(GOOD)
    assert cellwatch(["node", "--config", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "76 channels" in out and "cycle 8.56 s" in out
    assert cellwatch(["node", "--source", "rtlsdr:0", "--node-id", NODE, "--service", "tcp://127.0.0.1:1",
                      "--insecure"]) == 2
    assert "--gain" in capsys.readouterr().err
    assert cellwatch(["node", "--source", "sim:demo_prison:A1-S1", "--node-id", NODE]) == 2
    assert "--service: required" in capsys.readouterr().err
