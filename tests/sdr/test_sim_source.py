"""The live simulated sensor: the same samples as ``cellwatch simulate`` when not retuned,
retuning moves the bursts where physics puts them, real-time pacing, loops, lag and errors."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest

from calibration.site import load_site
from dsp.errors import InputError
from dsp.records import IQBlock
from sdr.recording import open_recording
from sdr.scenario import Scenario, load_scenario
from sdr.simulate import Simulation
from sdr.sources import STOPPED, SourceError, create_source, open_source, parse_source_spec
from sdr.sources.sim import SimSource
from tests.conftest import ANNEX_SITE, DEMO_SITE

RATE = 2.4e6
SCENARIO_TEXT = """
name = "sim_source_test"
duration_s = 2.0
sensors = ["A1-S1", "A1-S2"]
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
tx_power_dbm = 10.0
[[interferers]]
id = "carrier"
kind = "cw"
freq_hz = 901.7e6
power_dbm = -30.0
zone = "A-1-corridor"
"""


@pytest.fixture(scope="module")
def scenario_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "call.toml"
    path.write_text(SCENARIO_TEXT)
    return path


@pytest.fixture(scope="module")
def spec(scenario_path: Path) -> str:
    return f"sim:{DEMO_SITE}:{scenario_path}:A1-S1"


def _read(source: SimSource, n_samples: int, timeout_s: float = 20.0) -> list[IQBlock]:
    blocks, n = [], 0
    deadline = time.monotonic() + timeout_s
    while n < n_samples:
        block = source.read_block(0.5)
        if block is None:
            if source.state == STOPPED or time.monotonic() > deadline:
                break
            continue
        blocks.append(block)
        n += block.n_samples
    return blocks


def _check_contiguous(blocks: list[IQBlock]) -> None:
    for a, b in itertools.pairwise(blocks):
        assert b.sample_index == a.sample_index + a.n_samples + b.n_dropped
        assert b.t_start_s == pytest.approx(a.t_start_s + (b.sample_index - a.sample_index) / RATE, abs=1e-6)


@pytest.mark.parametrize("sensor", ["A1-S1", "A1-S2"])
def test_same_samples_as_the_simulators_recording(tmp_path: Path, scenario_path: Path, sensor: str) -> None:
    scenario = load_scenario(scenario_path)
    Simulation(load_site(DEMO_SITE), scenario, seed=5, duration_s=0.3).run(tmp_path)
    recording = open_recording(tmp_path / f"{sensor}.sigmf-meta")
    expected = recording.read(0, recording.info.n_samples)
    with open_source(f"sim:{DEMO_SITE}:{scenario_path}:{sensor}", seed=5, realtime=False, timestamps="scenario",
                     loop=False, duration_s=0.3, block_samples=50_000) as source:
        blocks = list(source.blocks())
        assert source.state == STOPPED
    got = np.concatenate([b.samples for b in blocks])
    assert np.array_equal(got, expected)
    assert blocks[0].t_start_s == recording.info.t_start_s and blocks[0].sample_index == 0
    assert blocks[0].center_freq_hz == recording.info.center_freq_hz == 902_400_000
    assert blocks[0].gain_db == recording.info.gain_db and blocks[0].sensor_id == sensor
    _check_contiguous(blocks)


def _spectrum_peak_hz(samples: np.ndarray) -> float:
    n = 4096
    frames = samples[: len(samples) // n * n].reshape(-1, n)
    power = np.mean(np.abs(np.fft.fftshift(np.fft.fft(frames - frames.mean(), axis=1), axes=1)) ** 2, axis=0)
    freqs = np.fft.fftshift(np.fft.fftfreq(n, 1 / RATE))
    power[np.abs(freqs) < 20e3] = 0.0  # DC spike
    return float(freqs[int(np.argmax(power))])


def test_retuning_moves_the_phone_where_physics_puts_it(spec: str) -> None:
    """The call at 902.4 MHz is out of a 905 MHz tuning (2.6 MHz off) and at +400 kHz of 902.0 MHz."""
    with open_source(spec, seed=1, realtime=False, center_freq_hz=905_000_000, settle_s=0.01) as source:
        away = np.concatenate([b.samples for b in _read(source, int(0.1 * RATE))])
        source.tune(902_000_000)
        blocks = _read(source, int(0.1 * RATE))
        assert source.n_settle_samples == int(0.01 * RATE)
        assert source.n_dropped_samples == 0  # settling is not a fault
    assert blocks[0].center_freq_hz == 902_000_000 and blocks[0].n_dropped == int(0.01 * RATE)
    near = np.concatenate([b.samples for b in blocks])
    # noise only before, the phone's bursts (1 slot in 8) after: ~10 dB more power on average
    assert np.mean(np.abs(near - near.mean()) ** 2) > 3 * np.mean(np.abs(away - away.mean()) ** 2)
    assert _spectrum_peak_hz(near) == pytest.approx(400e3, abs=40e3)


def test_realtime_pacing_and_now_timestamps(spec: str) -> None:
    with open_source(spec, seed=1, realtime=True, block_samples=24_000) as source:
        t_open = time.time()  # scenario second 0 is when the source opened (after building the simulation)
        started = time.monotonic()
        blocks = _read(source, int(0.3 * RATE))
        elapsed = time.monotonic() - started
    assert 0.27 <= elapsed < 1.5
    assert blocks[0].t_start_s == pytest.approx(t_open, abs=0.05)
    assert blocks[-1].t_end_s == pytest.approx(time.time(), abs=0.1)  # handed over when its last sample is due
    _check_contiguous(blocks)


def test_shared_start_utc_puts_late_processes_at_the_same_scenario_time(spec: str) -> None:
    start = time.time() - 1.0  # scenario second 0 was a second ago: a node opened now starts at second 1
    with open_source(spec, seed=1, realtime=True, start_utc=start, block_samples=24_000) as source:
        block = _read(source, 1)[0]
    assert block.t_start_s == pytest.approx(time.time(), abs=0.1)  # on the wall clock ...
    assert block.t_start_s - start > 1.0 and block.sample_index == 0  # ... as far into the scenario as time went


def test_loop_continues_time_and_index_and_no_loop_stops(spec: str) -> None:
    with open_source(spec, seed=1, realtime=False, duration_s=0.1, loop=True, timestamps="scenario") as source:
        blocks = _read(source, int(0.25 * RATE))
    assert sum(b.n_samples for b in blocks) >= int(0.25 * RATE)
    _check_contiguous(blocks)
    assert all(b.n_dropped == 0 for b in blocks)
    with open_source(spec, seed=1, realtime=False, duration_s=0.1, loop=False) as source:
        assert sum(b.n_samples for b in source.blocks()) == int(0.1 * RATE)
        assert source.state == STOPPED


def test_falling_behind_skips_ahead_and_counts_the_loss(spec: str) -> None:
    with open_source(spec, seed=1, realtime=True, max_lag_s=0.1, block_samples=24_000) as source:
        first = _read(source, 1)
        time.sleep(0.4)  # a consumer (or a renderer) that stalled
        later = _read(source, 1)
        assert source.n_dropped_samples == later[0].n_dropped > int(0.2 * RATE)
    assert later[0].sample_index == first[-1].sample_index + first[-1].n_samples + later[0].n_dropped


def test_spec_parsing() -> None:
    parsed = parse_source_spec("sim:demo_prison:A1-S1")
    assert (parsed.kind, parsed.site, parsed.scenario, parsed.sensor) == ("sim", "demo_prison", None, "A1-S1")
    parsed = parse_source_spec("sim:site.toml:calls.toml:B2-S2")
    assert (parsed.site, parsed.scenario, parsed.sensor) == ("site.toml", "calls.toml", "B2-S2")
    source = create_source("sim:demo_prison:B2-S2")  # bundled site and its bundled scenario
    assert isinstance(source, SimSource) and source.can_tune and source.realtime


@pytest.mark.parametrize(("spec", "options", "field"), [
    ("sim:demo_prison", {}, "source"),
    ("sim:demo_prison:A1-S1:extra:x", {}, "source"),
    ("sim:no_such_site:A1-S1", {}, "site"),
    (f"sim:{ANNEX_SITE}:A1-S1", {}, "scenario"),  # no bundled scenario named like this site
    ("sim:demo_prison:Z9-S9", {}, "sensor"),
    ("sim:demo_prison:A1-S1", {"ppm": 3.0}, "ppm"),
    ("sim:demo_prison:A1-S1", {"sample_rate_hz": 2.048e6}, "sample_rate_hz"),
    ("sim:demo_prison:A1-S1", {"timestamps": "gps"}, "timestamps"),
    ("sim:demo_prison:A1-S1", {"start_utc": "yesterday"}, "start_utc"),
    ("sim:demo_prison:A1-S1", {"bias_tee": True}, "bias_tee"),
])
def test_bad_specs_and_options_name_the_field(spec: str, options: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as error:
        create_source(spec, **options)  # type: ignore[arg-type]
    assert error.value.field == field


def test_a_scenario_restricted_to_other_sensors_is_refused(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('sensors = ["A1-S2"]\nduration_s = 0.1\n')
    with pytest.raises(InputError, match="unknown sensor 'A1-S1'"):
        create_source(f"sim:{DEMO_SITE}:{scenario}:A1-S1")
    Scenario.model_validate({"sensors": ["A1-S2"]})  # the file itself is a valid scenario
    assert not issubclass(InputError, SourceError)
