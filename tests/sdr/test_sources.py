"""Radio sources: pyrtlsdr's real code path against a fake librtlsdr, rtl_tcp against a loopback
server, replay, the loss-finding clock, and source specs.

One synthetic cu8 recording (noise, a steady tone, tone bursts) is served three ways: by
the fake librtlsdr through ``rtlsdr.RtlSdr`` (in a subprocess, since pyrtlsdr binds its
library once per process), by a test rtl_tcp server, and by replaying the file. All must
yield exactly the same complex64 samples at the same sample indexes. The helpers
:func:`collect_blocks` and :func:`run_fake_rtlsdr` return the blocks, so further checks
(detections) can compare sources the same way.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dsp.errors import InputError
from dsp.records import IQBlock
from sdr.recording import SigMFWriter, open_recording
from sdr.sources import (
    LiveClock,
    Source,
    SourceError,
    create_source,
    open_source,
    parse_source_spec,
)
from sdr.sources.base import FrequencyShifter, rtl2832_sample_rate_hz, split_ppm
from sdr.sources.replay import ReplaySource
from sdr.sources.rtltcp import encode_command
from tests.sdr.rtltcp_server import RtlTcpTestServer

REPO = Path(__file__).resolve().parents[2]
FAKE_DIR = Path(__file__).resolve().parent / "fake_librtlsdr"
RATE_HZ = 240_000  # an RTL2832U rate (225001-300000) low enough to play in real time cheaply
FREQ_HZ = 900_000_000
T0_S = 1_714_564_800.25
BUFFER = 8192  # samples per USB transfer / chunk
N_BUFFERS = 30
N_SAMPLES = BUFFER * N_BUFFERS  # 1.024 s
TONE_HZ = 50_000.0
SERIAL = "00000001"
LIVE = {"sample_rate_hz": RATE_HZ, "center_freq_hz": FREQ_HZ, "gain_db": 27.5, "buffer_samples": BUFFER}
TCP = {**LIVE, "server_buffer_bytes": 2 * BUFFER}  # the test server writes 16 KiB at a time


def _synthetic(n: int, seed: int = 7) -> np.ndarray:
    """Noise, a steady tone at +50 kHz and 10 ms tone bursts at -60 kHz every 100 ms."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE_HZ
    x = 0.05 * (rng.standard_normal(n) + 1j * rng.standard_normal(n)) + 0.2 * np.exp(2j * np.pi * TONE_HZ * t)
    on = (t % 0.1) >= 0.02
    on &= (t % 0.1) < 0.03
    x = x + on * 0.5 * np.exp(-2j * np.pi * 60_000.0 * t)
    return x.astype(np.complex64)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("sources") / "T1"
    with SigMFWriter(base, sample_rate_hz=RATE_HZ, center_freq_hz=FREQ_HZ, t_start_s=T0_S,
                     sensor_id="T1", gain_db=28.0) as writer:
        writer.write(_synthetic(N_SAMPLES))
    return writer.meta_path


@pytest.fixture(scope="module")
def reference(recording: Path) -> np.ndarray:
    return open_recording(recording).read()


@pytest.fixture(scope="module")
def data_bytes(recording: Path) -> bytes:
    return Path(open_recording(recording).info.data_path).read_bytes()


# -- helpers ------------------------------------------------------------------------------------


def collect_blocks(source: Source, n_samples: int, timeout_s: float = 10.0, *, idle_s: float | None = None,
                   consumer_sleep_s: float = 0.0) -> list[IQBlock]:
    """Blocks from an opened source until ``n_samples`` were delivered (or ``idle_s`` without one)."""
    blocks: list[IQBlock] = []
    delivered = 0
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    while delivered < n_samples and time.monotonic() < deadline:
        block = source.read_block(timeout_s=0.05)
        if block is None:
            if idle_s is not None and blocks and time.monotonic() - last > idle_s:
                break
            if source.state == "stopped":
                break
            continue
        last = time.monotonic()
        blocks.append(block)
        delivered += block.n_samples
        if consumer_sleep_s:
            time.sleep(consumer_sleep_s)
    return blocks


def check_contiguous(blocks: list[IQBlock], first_index: int = 0) -> None:
    """Every block starts where the previous ended plus what was dropped in between."""
    expected = first_index
    for block in blocks:
        assert block.sample_index == expected + block.n_dropped, (block.sample_index, expected, block.n_dropped)
        expected = block.sample_index + block.n_samples


def concatenate(blocks: list[IQBlock]) -> np.ndarray:
    return np.concatenate([b.samples for b in blocks]) if blocks else np.zeros(0, np.complex64)


@dataclass
class FakeRun:
    blocks: list[IQBlock]
    info: dict[str, Any]
    calls: list[tuple[str, int]]

    @property
    def samples(self) -> np.ndarray:
        return concatenate(self.blocks)


def run_fake_rtlsdr(
    lib_dir: Path,
    work_dir: Path,
    data_path: str | Path,
    *,
    spec: str = f"rtlsdr:{SERIAL}",
    options: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    **config: Any,
) -> FakeRun:
    """Run ``open_source(spec, **options)`` over the fake dongle in a subprocess; return its blocks."""
    log_path = work_dir / "fake_calls.log"
    log_path.unlink(missing_ok=True)
    config_path, out_path = work_dir / "driver.json", work_dir / "driver.npz"
    config_path.write_text(json.dumps({"repo": str(REPO), "spec": spec, "options": options or {}, **config}))
    environment = {
        **os.environ,
        "LD_LIBRARY_PATH": str(lib_dir),
        "FAKE_RTLSDR_FILE": str(data_path),
        "FAKE_RTLSDR_SERIAL": SERIAL,
        "FAKE_RTLSDR_LOG": str(log_path),
        **(env or {}),
    }
    done = subprocess.run([sys.executable, str(FAKE_DIR / "driver.py"), str(config_path), str(out_path)],
                          env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = np.load(out_path)
    info = json.loads(str(out["info"]))
    blocks, start = [], 0
    for k, n in enumerate(out["n_samples"]):
        gain = float(out["gain_db"][k])
        blocks.append(IQBlock(
            samples=out["samples"][start : start + n], center_freq_hz=int(out["center_freq_hz"][k]),
            sample_rate_hz=info.get("sample_rate_hz", RATE_HZ), t_start_s=float(out["t_start_s"][k]),
            sample_index=int(out["sample_index"][k]), gain_db=None if math.isnan(gain) else gain,
            n_dropped=int(out["n_dropped"][k]),
        ))
        start += n
    calls = []
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            name, value = line.split()
            calls.append((name, int(value)))
    return FakeRun(blocks, info, calls)


def _peak_hz(samples: np.ndarray, near_hz: float) -> float:
    """Frequency of the strongest bin within 5 kHz of ``near_hz``, refined by a parabola."""
    n = samples.size
    spectrum = np.abs(np.fft.fft(samples * np.hanning(n))) ** 2
    freqs = np.fft.fftfreq(n, 1 / RATE_HZ)
    window = np.flatnonzero(np.abs(freqs - near_hz) < 5_000)
    k = window[np.argmax(spectrum[window])]
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    return float(freqs[k] + 0.5 * (a - c) / (a - 2 * b + c) * RATE_HZ / n)


# -- rtlsdr: pyrtlsdr's real code path against the fake librtlsdr --------------------------


def test_rtlsdr_yields_the_recordings_samples(fake_librtlsdr: Path, tmp_path: Path, recording: Path,
                                              reference: np.ndarray) -> None:
    run = run_fake_rtlsdr(fake_librtlsdr, tmp_path, open_recording(recording).info.data_path,
                          spec="rtlsdr:0", options=LIVE, idle_s=0.3)
    assert run.info["library"] == str(fake_librtlsdr / "librtlsdr.so")
    assert run.info["device_class"] == "rtlsdr.rtlsdr.RtlSdr"
    assert np.array_equal(run.samples, reference)  # same bytes, same converter
    check_contiguous(run.blocks)
    assert all(b.n_dropped == 0 for b in run.blocks)
    assert run.info["stats"]["n_dropped_samples"] == 0
    # opened by index, the serial is read so a reconnection finds the same dongle
    assert run.info["serial"] == SERIAL and run.info["sensor_id"] == SERIAL
    # the settings reached librtlsdr: manual gain snapped to the R820T's 28.0 dB step
    assert ("set_sample_rate", RATE_HZ) in run.calls
    assert ("set_center_freq", FREQ_HZ) in run.calls
    assert run.calls.index(("set_tuner_gain_mode", 1)) < run.calls.index(("set_tuner_gain", 280))
    assert ("set_agc_mode", 0) in run.calls and ("set_bias_tee", 0) in run.calls
    assert not [c for c in run.calls if c[0] == "set_freq_correction"]  # ppm 0: never set
    assert {b.gain_db for b in run.blocks} == {28.0} and run.info["gain_db"] == 28.0
    assert {b.center_freq_hz for b in run.blocks} == {FREQ_HZ}


@pytest.mark.parametrize(("ppm", "tuner_ppm"), [(2.4, 2), (-0.3, None)])
def test_rtlsdr_fractional_ppm_is_mixed_in_dsp(fake_librtlsdr: Path, tmp_path: Path, recording: Path,
                                               reference: np.ndarray, ppm: float, tuner_ppm: int | None) -> None:
    run = run_fake_rtlsdr(fake_librtlsdr, tmp_path, open_recording(recording).info.data_path,
                          options={**LIVE, "ppm": ppm}, idle_s=0.3)
    corrections = [value for name, value in run.calls if name == "set_freq_correction"]
    assert corrections == ([] if tuner_ppm is None else [tuner_ppm])
    fraction_ppm = ppm - (tuner_ppm or 0)
    shift_hz = _peak_hz(run.samples, TONE_HZ) - _peak_hz(reference, TONE_HZ)
    assert shift_hz == pytest.approx(FREQ_HZ * fraction_ppm * 1e-6, abs=0.5)
    np.testing.assert_allclose(np.abs(run.samples), np.abs(reference), atol=1e-5)  # a mix: phase only


@pytest.mark.parametrize("unplug_rc", [-4, 0])
def test_rtlsdr_survives_an_unplug(fake_librtlsdr: Path, tmp_path: Path, recording: Path,
                                   reference: np.ndarray, unplug_rc: int) -> None:
    absent_s = 0.3
    run = run_fake_rtlsdr(
        fake_librtlsdr, tmp_path, open_recording(recording).info.data_path,
        options={**LIVE, "backoff_s": 0.05}, n_delivered=N_SAMPLES, timeout_s=10,
        env={"FAKE_RTLSDR_REALTIME": "1", "FAKE_RTLSDR_UNPLUG_AFTER": str(10 * BUFFER * 2),
             "FAKE_RTLSDR_UNPLUG_RC": str(unplug_rc), "FAKE_RTLSDR_ABSENT_S": str(absent_s)},
    )
    states = run.info["states"]
    assert "retrying" in states and states[states.index("retrying") + 1] == "running"
    assert run.info["stats"]["n_outages"] == 1
    assert any("source_lost" in line for line in run.info["log"])
    assert any("source_resumed" in line for line in run.info["log"])
    assert [name for name, _ in run.calls].count("open") == 2  # reopened (by serial)
    # every byte the dongle sent arrived once, in order; the outage is one counted gap
    assert np.array_equal(run.samples, reference)
    check_contiguous(run.blocks)
    gaps = [(k, b.n_dropped) for k, b in enumerate(run.blocks) if b.n_dropped]
    assert len(gaps) == 1
    k, gap = gaps[0]
    assert sum(b.n_samples for b in run.blocks[:k]) == 10 * BUFFER
    assert absent_s * RATE_HZ <= gap <= (absent_s + 1.0) * RATE_HZ
    assert run.info["stats"]["n_dropped_samples"] == gap
    before, after = run.blocks[k - 1], run.blocks[k]
    # the gap in time is the gap in samples (up to the clock refining its latency floor)
    assert after.t_start_s - before.t_end_s == pytest.approx(gap / RATE_HZ, abs=0.01)


def test_rtlsdr_finds_samples_lost_on_the_usb_side(fake_librtlsdr: Path, tmp_path: Path, recording: Path,
                                                  reference: np.ndarray) -> None:
    n_lost = 4 * BUFFER  # 137 ms: the USB host fell behind and the dongle's FIFO overflowed
    run = run_fake_rtlsdr(
        fake_librtlsdr, tmp_path, open_recording(recording).info.data_path, options=LIVE,
        n_delivered=N_SAMPLES - n_lost, timeout_s=10,
        env={"FAKE_RTLSDR_REALTIME": "1", "FAKE_RTLSDR_LOSE_AT": str(10 * BUFFER * 2),
             "FAKE_RTLSDR_LOSE_BYTES": str(n_lost * 2)},
    )
    assert np.array_equal(run.samples, np.concatenate([reference[: 10 * BUFFER], reference[14 * BUFFER :]]))
    check_contiguous(run.blocks)
    gaps = [(k, b.n_dropped) for k, b in enumerate(run.blocks) if b.n_dropped]
    assert [k for k, _ in gaps] == [10]  # found from arrival times alone, at the right block
    assert abs(gaps[0][1] - n_lost) <= 0.005 * RATE_HZ  # sized to within 5 ms
    assert run.info["stats"]["n_dropped_samples"] == gaps[0][1]
    assert any("samples_lost" in line for line in run.info["log"])


def test_rtlsdr_tune_retunes_the_running_dongle(fake_librtlsdr: Path, tmp_path: Path, recording: Path,
                                                reference: np.ndarray) -> None:
    new_freq_hz = 902_400_000
    run = run_fake_rtlsdr(
        fake_librtlsdr, tmp_path, open_recording(recording).info.data_path,
        options={**LIVE, "settle_s": 0.03}, n_delivered=20 * BUFFER, env={"FAKE_RTLSDR_REALTIME": "1"},
        tune={"after_blocks": 4, "center_freq_hz": new_freq_hz},
    )
    assert [v for name, v in run.calls if name == "set_center_freq"][-1] == new_freq_hz
    assert run.info["tune_s"] >= 0.03
    check_contiguous(run.blocks)
    freqs = [b.center_freq_hz for b in run.blocks]
    switch = freqs.index(new_freq_hz)
    assert switch >= 4 and set(freqs[switch:]) == {new_freq_hz}
    assert run.blocks[switch].n_dropped == run.info["stats"]["n_settle_samples"] >= 0.9 * 0.03 * RATE_HZ
    assert run.info["stats"]["n_dropped_samples"] == 0
    for block in run.blocks:
        assert np.array_equal(block.samples, reference[block.sample_index : block.sample_index + block.n_samples])


def test_rtlsdr_slow_consumer_overflow_is_counted(fake_librtlsdr: Path, tmp_path: Path, recording: Path,
                                                  reference: np.ndarray) -> None:
    run = run_fake_rtlsdr(fake_librtlsdr, tmp_path, open_recording(recording).info.data_path,
                          options={**LIVE, "queue_s": 0.05}, consumer_sleep_s=0.03, idle_s=0.5)
    delivered = sum(b.n_samples for b in run.blocks)
    dropped = run.info["stats"]["n_dropped_samples"]
    assert dropped > 0 and delivered + dropped == N_SAMPLES  # every sample delivered or counted
    check_contiguous(run.blocks)
    for block in run.blocks:  # indexes stay true across drops
        assert np.array_equal(block.samples, reference[block.sample_index : block.sample_index + block.n_samples])


def test_rtlsdr_agc_only_when_allowed(fake_librtlsdr: Path, tmp_path: Path, recording: Path) -> None:
    with pytest.raises(InputError, match="dBm") as refused:
        create_source("rtlsdr:0", sample_rate_hz=RATE_HZ, center_freq_hz=FREQ_HZ, gain_db=None)
    assert refused.value.field == "gain_db"
    run = run_fake_rtlsdr(fake_librtlsdr, tmp_path, open_recording(recording).info.data_path,
                          options={**LIVE, "gain_db": None, "allow_agc": True, "bias_tee": True},
                          n_delivered=BUFFER)
    assert ("set_tuner_gain_mode", 0) in run.calls and ("set_bias_tee", 1) in run.calls
    assert run.info["gain_db"] is None and run.blocks[0].gain_db is None  # levels are not calibrated


@pytest.mark.parametrize(("spec", "message"), [("rtlsdr:NOPE", "serial 'NOPE'"), ("rtlsdr:3", "index 3")])
def test_rtlsdr_missing_dongle_is_a_source_error(fake_librtlsdr: Path, tmp_path: Path, recording: Path,
                                                 spec: str, message: str) -> None:
    run = run_fake_rtlsdr(fake_librtlsdr, tmp_path, open_recording(recording).info.data_path,
                          spec=spec, options=LIVE)
    assert run.info["error"] == "SourceError"
    assert message in run.info["message"]


def test_pyrtlsdr_is_imported_only_by_the_rtlsdr_source(recording: Path) -> None:
    code = (
        "import sys\n"
        "from sdr.sources import open_source\n"
        "import sdr.sources.rtlsdr, sdr.sources.rtltcp\n"
        f"source = open_source('replay:{recording}', realtime=False)\n"
        "assert sum(b.n_samples for b in source.blocks()) > 0\n"
        "assert 'rtlsdr' not in sys.modules and 'pyrtlsdrlib' not in sys.modules, 'pyrtlsdr was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.hardware
def test_rtlsdr_real_dongle_streams_without_loss() -> None:
    with open_source("rtlsdr:0", sample_rate_hz=2_400_000, center_freq_hz=FREQ_HZ, gain_db=20.0) as source:
        blocks = collect_blocks(source, 2_400_000 * 3)
        assert source.n_dropped_samples == 0 and source.state == "running"
    check_contiguous(blocks)
    assert sum(b.n_samples for b in blocks) >= 2_400_000 * 3
    assert abs(blocks[0].t_start_s - time.time()) < 5.0


# -- rtl_tcp against a loopback server ------------------------------------------------------


def test_rtltcp_yields_the_recordings_samples(data_bytes: bytes, reference: np.ndarray) -> None:
    with RtlTcpTestServer(data_bytes) as server:
        with open_source(server.spec, **TCP, ppm=-3.0, bias_tee=True) as source:
            blocks = collect_blocks(source, N_SAMPLES)
            assert source.gain_db == 28.0
        assert server.commands == [
            (0x02, RATE_HZ), (0x01, FREQ_HZ), (0x05, 2**32 - 3), (0x03, 1), (0x04, 280), (0x08, 0), (0x0E, 1),
        ]
    assert np.array_equal(concatenate(blocks), reference)
    check_contiguous(blocks)
    assert {b.gain_db for b in blocks} == {28.0} and {b.center_freq_hz for b in blocks} == {FREQ_HZ}
    # a whole ppm is the tuner's: the blocks carry the bytes as received (the detector reads them)
    assert b"".join(b.cu8.tobytes() for b in blocks if b.cu8 is not None) == data_bytes[: 2 * N_SAMPLES]


def test_rtltcp_reconnects_when_the_server_drops(data_bytes: bytes, reference: np.ndarray) -> None:
    with RtlTcpTestServer(data_bytes, drop_after_bytes=10 * BUFFER * 2) as server:
        with open_source(server.spec, **TCP, backoff_s=0.05) as source:
            states: list[str] = []
            stop = threading.Event()

            def watch() -> None:
                while not stop.is_set():
                    if not states or states[-1] != source.state:
                        states.append(source.state)
                    time.sleep(0.001)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            blocks = collect_blocks(source, N_SAMPLES)
            stop.set()
            watcher.join()
            assert source.n_outages == 1 and "closed" in (source.last_error or "")
        assert server.n_connections == 2
        assert server.commands_named(0x01) == [FREQ_HZ, FREQ_HZ]  # settings sent again
    assert "retrying" in states
    assert np.array_equal(concatenate(blocks), reference)
    check_contiguous(blocks)
    gaps = [k for k, b in enumerate(blocks) if b.n_dropped]
    assert len(gaps) == 1 and sum(b.n_samples for b in blocks[: gaps[0]]) == 10 * BUFFER


def test_rtltcp_slow_consumer_overflow_is_counted(data_bytes: bytes, reference: np.ndarray) -> None:
    with RtlTcpTestServer(data_bytes) as server:
        source = open_source(server.spec, **TCP, queue_s=0.05)
        blocks = collect_blocks(source, N_SAMPLES, idle_s=0.5, consumer_sleep_s=0.03)
        source.close()
        blocks += collect_blocks(source, N_SAMPLES, timeout_s=1.0)  # held chunks flushed at close
    delivered = sum(b.n_samples for b in blocks)
    assert source.n_dropped_samples > 0 and delivered + source.n_dropped_samples == N_SAMPLES
    check_contiguous(blocks)
    for block in blocks:
        assert np.array_equal(block.samples, reference[block.sample_index : block.sample_index + block.n_samples])


def test_rtltcp_finds_samples_the_server_lost(data_bytes: bytes, reference: np.ndarray) -> None:
    n_lost = 4 * BUFFER
    with RtlTcpTestServer(data_bytes, realtime=True, chunk_bytes=2 * BUFFER, lose_at_bytes=10 * BUFFER * 2,
                          lose_bytes=2 * n_lost) as server:
        with open_source(server.spec, **TCP) as source:
            blocks = collect_blocks(source, N_SAMPLES - n_lost)
    assert np.array_equal(concatenate(blocks), np.concatenate([reference[: 10 * BUFFER], reference[14 * BUFFER :]]))
    gaps = [(k, b.n_dropped) for k, b in enumerate(blocks) if b.n_dropped]
    assert [k for k, _ in gaps] == [10]
    assert abs(gaps[0][1] - n_lost) <= 0.005 * RATE_HZ
    check_contiguous(blocks)


def test_rtltcp_tune_discards_the_settling_samples(data_bytes: bytes, reference: np.ndarray) -> None:
    settle_s = 0.05
    new_freq_hz = 901_000_000
    with RtlTcpTestServer(data_bytes, realtime=True, chunk_bytes=2 * BUFFER) as server:
        with open_source(server.spec, **TCP, settle_s=settle_s) as source:
            before = collect_blocks(source, 8 * BUFFER)
            t_tune = time.monotonic()
            source.tune(new_freq_hz)
            tune_s = time.monotonic() - t_tune
            assert source.center_freq_hz == new_freq_hz
            after = collect_blocks(source, 12 * BUFFER)
            n_settle, n_faults = source.n_settle_samples, source.n_dropped_samples
        assert server.commands_named(0x01) == [FREQ_HZ, new_freq_hz]
    blocks = before + after
    check_contiguous(blocks)
    assert tune_s >= settle_s
    assert n_faults == 0 and n_settle >= 0.9 * settle_s * RATE_HZ
    assert sum(b.n_dropped for b in blocks) == n_settle  # the discarded span, once
    freqs = [b.center_freq_hz for b in blocks]
    switch = freqs.index(new_freq_hz)
    assert set(freqs[:switch]) == {FREQ_HZ} and set(freqs[switch:]) == {new_freq_hz}
    assert blocks[switch].n_dropped == n_settle  # discarded between the two frequencies
    for block in blocks:  # what is kept is exactly what the radio sent at those indexes
        assert np.array_equal(block.samples, reference[block.sample_index : block.sample_index + block.n_samples])


def test_rtltcp_refuses_what_is_not_an_rtl_tcp_server(data_bytes: bytes) -> None:
    with RtlTcpTestServer(data_bytes, magic=b"HTTP") as server:
        with pytest.raises(SourceError, match="not an rtl_tcp server"):
            open_source(server.spec, **LIVE)
        port = server.port
    with pytest.raises(SourceError, match="cannot connect"):
        open_source(f"rtl_tcp://127.0.0.1:{port}", **LIVE, connect_timeout_s=1.0)


def test_rtltcp_commands_are_five_bytes_big_endian() -> None:
    assert encode_command(0x01, 900_000_000) == b"\x01" + (900_000_000).to_bytes(4, "big")
    assert encode_command(0x05, -3) == b"\x05\xff\xff\xff\xfd"  # two's complement, as rtl_tcp casts it


# -- replay --------------------------------------------------------------------------------


def test_replay_fast_equals_the_recording(recording: Path) -> None:
    expected = list(open_recording(recording).blocks(BUFFER))
    t0 = time.monotonic()
    with open_source(f"replay:{recording}", realtime=False, block_samples=BUFFER) as source:
        blocks = list(source.blocks())
        assert source.state == "stopped"
    assert time.monotonic() - t0 < 0.3 * N_SAMPLES / RATE_HZ
    assert len(blocks) == len(expected)
    for got, want in zip(blocks, expected, strict=True):
        assert np.array_equal(got.samples, want.samples)
        assert (got.sample_index, got.t_start_s, got.center_freq_hz, got.gain_db, got.sensor_id) == (
            want.sample_index, want.t_start_s, want.center_freq_hz, want.gain_db, want.sensor_id)


def test_replay_realtime_takes_the_recordings_duration(recording: Path) -> None:
    t0 = time.monotonic()
    with open_source(f"replay:{recording}", realtime=True, block_samples=BUFFER) as source:
        n = sum(b.n_samples for b in source.blocks())
    assert n == N_SAMPLES
    assert time.monotonic() - t0 >= 0.95 * N_SAMPLES / RATE_HZ


def test_replay_loop_continues_index_and_time(recording: Path, reference: np.ndarray) -> None:
    with open_source(f"replay:{recording}", realtime=False, loop=True, block_samples=10_000) as source:
        blocks = collect_blocks(source, 3 * N_SAMPLES)
    check_contiguous(blocks)
    assert all(b.n_dropped == 0 for b in blocks)
    for a, b in itertools.pairwise(blocks):
        assert b.t_start_s == pytest.approx(a.t_end_s, abs=1e-6)
    samples = concatenate(blocks)
    assert np.array_equal(samples[2 * N_SAMPLES : 3 * N_SAMPLES], reference)


def test_replay_now_restamps_to_the_wall_clock(recording: Path) -> None:
    with open_source(f"replay:{recording}", realtime=False, timestamps="now") as source:
        t_now = time.time()
        first = source.read_block()
    assert first is not None and abs(first.t_start_s - t_now) < 0.5


def test_replay_reports_the_recordings_gaps_and_overloads(tmp_path: Path) -> None:
    x = _synthetic(4 * BUFFER)
    x[100:200] = 1.5 + 1.5j  # clipped at the rails
    with SigMFWriter(tmp_path / "gap", sample_rate_hz=RATE_HZ, center_freq_hz=FREQ_HZ, t_start_s=T0_S) as writer:
        writer.write(x[: 2 * BUFFER])
        writer.start_capture(t_start_s=writer.t_next_s + 0.01)  # 2400 samples lost while recording
        writer.write(x[2 * BUFFER :])
    with open_source(f"replay:{writer.meta_path}", realtime=False, block_samples=BUFFER) as source:
        blocks = list(source.blocks())
        assert source.n_dropped_samples == 2400 and source.n_overloads == 1
    assert [b.n_dropped for b in blocks] == [0, 0, 2400, 0]
    check_contiguous(blocks)
    assert blocks[2].t_start_s == pytest.approx(blocks[1].t_end_s + 0.01, abs=2e-6)


def test_replay_cannot_be_retuned(recording: Path) -> None:
    with open_source(f"replay:{recording}", realtime=False) as source:
        source.tune(FREQ_HZ)  # where it already is: nothing to do
        assert not source.can_tune
        with pytest.raises(InputError, match="cannot be retuned"):
            source.tune(FREQ_HZ + 1_000_000)


# -- the clock that stamps live chunks and finds losses ---------------------------------------


def _arrivals(n_chunks: int, chunk: int, rate: float, *, latency_s: float = 0.002, jitter_s: float = 0.0,
              lost_after: int | None = None, n_lost: int = 0, crystal_ppm: float = 0.0,
              seed: int = 1) -> list[tuple[int, float]]:
    """(chunk number, arrival time) of a radio whose samples are taken from t = 100 s on."""
    rng = np.random.default_rng(seed)
    true_rate = rate * (1 + crystal_ppm * 1e-6)
    out = []
    for k in range(n_chunks):
        end_index = (k + 1) * chunk + (n_lost if lost_after is not None and k >= lost_after else 0)
        out.append((k, 100.0 + end_index / true_rate + latency_s + rng.uniform(0, jitter_s)))
    return out


def _run_clock(clock: LiveClock, arrivals: list[tuple[int, float]], chunk: int) -> list[Any]:
    out = []
    for _, t in arrivals:
        out += clock.push(np.zeros(2 * chunk, np.uint8), t)
    return out + clock.flush()


@pytest.mark.parametrize("jitter_s", [0.0, 0.004])
def test_clock_steady_stream_has_no_losses_and_true_times(jitter_s: float) -> None:
    rate, chunk = 100_000.0, 1000
    clock = LiveClock(rate, hold_s=0.1, loss_threshold_s=0.02, utc_offset=lambda: 1e9)
    chunks = _run_clock(clock, _arrivals(500, chunk, rate, jitter_s=jitter_s), chunk)
    assert [c.sample_index for c in chunks] == [k * chunk for k in range(500)]
    assert clock.n_lost_samples == 0
    truth = 1e9 + 100.0 + np.arange(500) * chunk / rate
    errors = np.array([c.t_start_s for c in chunks]) - truth
    assert np.all(np.abs(errors - 0.002) < jitter_s + 1e-6)  # late by the latency floor, never by jitter
    assert np.ptp(np.diff(errors)) < 1e-6 or jitter_s  # equal steps: jitter does not move timestamps


@pytest.mark.parametrize("jitter_s", [0.0, 0.004])
def test_clock_finds_and_sizes_a_loss(jitter_s: float) -> None:
    rate, chunk, n_lost = 100_000.0, 1000, 7_000
    clock = LiveClock(rate, hold_s=0.1, loss_threshold_s=0.02, utc_offset=lambda: 0.0)
    chunks = _run_clock(clock, _arrivals(300, chunk, rate, jitter_s=jitter_s, lost_after=120, n_lost=n_lost), chunk)
    steps = np.diff([c.sample_index for c in chunks]) - chunk
    assert list(np.flatnonzero(steps)) == [119]  # the gap sits before chunk 120
    assert abs(steps[119] - n_lost) <= jitter_s * rate + 1
    assert clock.n_losses == 1 and clock.n_lost_samples == steps[119]


def test_clock_stall_then_catch_up_is_not_a_loss() -> None:
    rate, chunk = 100_000.0, 1000
    arrivals = _arrivals(400, chunk, rate)
    stall_end = arrivals[130][1]
    arrivals = [(k, max(t, stall_end) if 100 <= k <= 130 else t) for k, t in arrivals]  # 0.3 s stall
    clock = LiveClock(rate, hold_s=0.1, loss_threshold_s=0.02, utc_offset=lambda: 0.0)
    chunks = _run_clock(clock, arrivals, chunk)
    assert [c.sample_index for c in chunks] == [k * chunk for k in range(400)]
    assert clock.n_lost_samples == 0


@pytest.mark.parametrize("crystal_ppm", [-80.0, 80.0])
def test_clock_follows_crystal_drift_without_false_losses(crystal_ppm: float) -> None:
    rate, chunk = 100_000.0, 5000
    n_chunks = 4000  # 200 s: 16 ms of drift, near the loss threshold
    arrivals = _arrivals(n_chunks, chunk, rate, crystal_ppm=crystal_ppm, jitter_s=0.002)
    clock = LiveClock(rate, hold_s=0.25, loss_threshold_s=0.02, utc_offset=lambda: 0.0)
    chunks = _run_clock(clock, arrivals, chunk)
    assert clock.n_lost_samples == 0
    last = chunks[-1]
    true_t = 100.0 + last.sample_index / (rate * (1 + crystal_ppm * 1e-6))
    assert abs(last.t_start_s - true_t) < 0.006


def test_clock_places_a_new_session_by_the_wall_clock() -> None:
    rate, chunk = 100_000.0, 1000
    clock = LiveClock(rate, hold_s=0.0, loss_threshold_s=0.02, utc_offset=lambda: 0.0)
    first = _run_clock(clock, _arrivals(50, chunk, rate), chunk)
    clock.start_session()  # reopened 0.5 s after the last chunk's samples ended
    t_first = 100.0 + 50 * chunk / rate + 0.5 + chunk / rate + 0.002
    resumed = clock.push(np.zeros(2 * chunk, np.uint8), t_first)
    assert resumed[0].sample_index - (first[-1].sample_index + chunk) == pytest.approx(0.5 * rate, abs=2)
    assert clock.n_lost_samples == resumed[0].sample_index - 50 * chunk


# -- DSP helpers ---------------------------------------------------------------------------------


def test_fractional_shift_is_phase_continuous_across_blocks() -> None:
    x = _synthetic(20_000)
    shifter = FrequencyShifter(RATE_HZ)
    whole = shifter.apply(x, 1_000_000, 360.0)
    parts = np.concatenate([shifter.apply(x[:7_000], 1_000_000, 360.0), shifter.apply(x[7_000:], 1_007_000, 360.0)])
    np.testing.assert_allclose(parts, whole, atol=2e-6)
    assert split_ppm(2.4) == (2, pytest.approx(0.4)) and split_ppm(-0.3) == (0, pytest.approx(-0.3))


def test_rtl2832_rates_follow_librtlsdr() -> None:
    assert rtl2832_sample_rate_hz(2_400_000) == 2_400_000.0
    assert rtl2832_sample_rate_hz(240_000) == 240_000.0
    assert rtl2832_sample_rate_hz(250_000) == pytest.approx(250_000.0004, abs=1e-4)


# -- specs and settings --------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "fields"), [
    ("rtlsdr", {"kind": "rtlsdr", "index": 0}),
    ("rtlsdr:0", {"kind": "rtlsdr", "index": 0}),
    ("rtlsdr:12", {"kind": "rtlsdr", "index": 12}),
    ("rtlsdr:00000001", {"kind": "rtlsdr", "serial": "00000001"}),
    ("rtlsdr:A1-S1", {"kind": "rtlsdr", "serial": "A1-S1"}),
    ("rtlsdr:serial=7", {"kind": "rtlsdr", "serial": "7"}),
    ("rtlsdr:index=3", {"kind": "rtlsdr", "index": 3}),
    ("rtl_tcp://pi-corridor:1235", {"kind": "rtl_tcp", "host": "pi-corridor", "port": 1235}),
    ("rtl_tcp://10.0.0.7", {"kind": "rtl_tcp", "host": "10.0.0.7", "port": 1234}),
    ("rtl_tcp://[::1]:1234", {"kind": "rtl_tcp", "host": "::1", "port": 1234}),
    ("replay:/data/a:b.sigmf-meta", {"kind": "replay", "path": "/data/a:b.sigmf-meta"}),
])
def test_specs_parse(spec: str, fields: dict[str, Any]) -> None:
    parsed = parse_source_spec(spec)
    for name, value in fields.items():
        assert getattr(parsed, name) == value


@pytest.mark.parametrize(("spec", "message"), [
    ("", "empty source"),
    ("sdr:0", "unknown source kind 'sdr'"),
    ("rtlsdr:", "serial number or an index"),
    ("rtlsdr:serial=", "rtlsdr:serial=SERIAL"),
    ("rtl_tcp:host:1234", "rtl_tcp://HOST:PORT"),
    ("rtl_tcp://host:port", "port must be a number"),
    ("rtl_tcp://host:70000", "port must be a number"),
    ("rtl_tcp://:1234", "host is missing"),
    ("rtl_tcp://host:1234/path", "nothing else"),
    ("replay:", "replay:PATH"),
])
def test_bad_specs_are_clear_input_errors(spec: str, message: str) -> None:
    with pytest.raises(InputError, match="source") as error:
        parse_source_spec(spec)
    assert message in str(error.value)


@pytest.mark.parametrize(("spec", "options", "field", "message"), [
    ("rtlsdr:0", {"center_freq_hz": FREQ_HZ, "gain_db": 20.0}, "sample_rate_hz", "required"),
    ("rtlsdr:0", {**LIVE, "sample_rate_hz": 500_000}, "sample_rate_hz", "outside the RTL2832U"),
    ("rtlsdr:0", {**LIVE, "center_freq_hz": None}, "center_freq_hz", "required"),
    ("rtlsdr:0", {**LIVE, "center_freq_hz": 900.5e6 + 0.5}, "center_freq_hz", "whole Hz"),
    ("rtl_tcp://h:1", {**LIVE, "ppm": float("nan")}, "ppm", "within"),
    ("rtl_tcp://h:1", {**LIVE, "buffer_samples": 1000}, "buffer_samples", "multiple of 256"),
    ("rtl_tcp://h:1", {**LIVE, "loop": True}, "loop", "not an option"),
    ("replay:x.cu8", {"gain_db": 20.0}, "gain_db", "when it was made"),
    ("replay:x.cu8", {"timestamps": "gps"}, "timestamps", "recording, now"),
])
def test_bad_settings_name_the_field(spec: str, options: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InputError) as error:
        create_source(spec, **options)
    assert error.value.field == field and message in str(error.value)


def test_replay_of_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing"):
        open_source(f"replay:{tmp_path / 'missing.sigmf-meta'}")
    assert isinstance(create_source(f"replay:{tmp_path / 'later.cu8'}"), ReplaySource)  # opened only by open()
