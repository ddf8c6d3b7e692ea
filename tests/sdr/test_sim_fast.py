"""The live simulated dongle's cheap renderer (``render = "fast"``): the receiver model's exact
statistics from a replayed noise bank, bursts at the powers, times and frequencies of the exact
renderer, overloads and drops counted as before; and the receiver model split it relies on."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from calibration.site import load_site
from dsp.errors import InputError
from dsp.iq import cu8_to_complex64
from dsp.records import IQBlock
from sdr.receiver import NoiseBank, ReceiverConfig, RtlSdrModel, noise_floor_dbfs
from sdr.scenario import load_scenario
from sdr.simulate import Simulation
from sdr.sources import STOPPED, create_source, open_source
from sdr.sources.sim import SKIP_BELOW_SNR_DB, FastRenderer, SimSource
from tests.conftest import DEMO_SITE

RATE = 2.4e6
SCENARIO_TEXT = """
name = "fast_test"
duration_s = 0.6
sensors = ["A1-S1", "B2-S3"]
[receiver]
center_freq_hz = 902.4e6
ppm_spread = 2.0
[[phones]]
id = "near"
cell = "A-1-02"
tech = "gsm"
activity = "call"
established = true
arfcn = 58
timeslot = 3
tx_power_dbm = 20.0
[[phones]]
id = "lte"
cell = "A-1-12"
tech = "lte"
activity = "data"
carrier_freq_hz = 903.4e6
carrier_n_rb = 15
tx_power_dbm = 15.0
"""


@pytest.fixture(scope="module")
def scenario_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fast") / "fast.toml"
    path.write_text(SCENARIO_TEXT)
    return path


def _blocks(scenario: Path, sensor: str, render: str, seed: int = 2, **options: object) -> tuple[list[IQBlock], SimSource]:
    with open_source(f"sim:{DEMO_SITE}:{scenario}:{sensor}", seed=seed, realtime=False, timestamps="scenario",
                     loop=False, render=render, block_samples=48_000, **options) as source:
        blocks = list(source.blocks())
        assert source.state == STOPPED
    assert isinstance(source, SimSource)
    return blocks, source


def _power_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.abs(x) ** 2)))


@pytest.mark.parametrize("drop_probability", [0.0, 0.2])
def test_process_is_adc_noise_then_digitize_then_drops(drop_probability: float) -> None:
    """The split used by the noise bank leaves ``process`` byte for byte as it was."""
    config = ReceiverConfig(gain_db=28.0, ppm_error=7.5, drop_probability=drop_probability)
    signal = (np.exp(2j * np.pi * 0.013 * np.arange(50_000)) * 3e-5).astype(np.complex64)
    whole = RtlSdrModel(config, RATE, 902.4e6, np.random.default_rng(4))
    parts = RtlSdrModel(config, RATE, 902.4e6, np.random.default_rng(4))
    raw, n_lost = whole.process(signal, 12_345)
    expected = parts.digitize(signal, 12_345, parts.adc_noise(signal.size))
    keep = parts.drop_transfers(12_345, signal.size)
    if keep is not None:
        expected = expected.reshape(-1, 2)[keep].reshape(-1)
    assert np.array_equal(raw, expected)
    assert n_lost == (0 if keep is None else signal.size - int(keep.sum()))
    assert (n_lost > 0) == (drop_probability > 0)
    assert whole.n_dropped_samples == parts.n_dropped_samples == n_lost


@pytest.mark.parametrize("gain_db", [14.4, 40.2])
def test_noise_bank_idle_output_has_the_models_noise_floor(gain_db: float) -> None:
    config = ReceiverConfig(gain_db=gain_db)
    bank = NoiseBank(RtlSdrModel(config, RATE, 902.4e6, np.random.default_rng(1)), 1 << 19,
                     np.random.default_rng(2), max_block=4096)
    idle = bank.idle
    assert np.array_equal(idle, cu8_to_complex64(bank.idle_cu8)) and idle.size == (1 << 19) + 4096
    assert np.array_equal(idle[: 4096], idle[1 << 19:])  # wrapped: any offset reads a whole block
    at_rails = np.count_nonzero((bank.idle_cu8 == 0) | (bank.idle_cu8 == 255))
    assert bank.idle_rails[-1] == at_rails and bank.idle_rails.size == idle.size + 1
    measured_db = 10 * np.log10(np.mean(np.abs(idle - idle.mean()) ** 2))
    assert measured_db == pytest.approx(noise_floor_dbfs(config, RATE), abs=0.05)
    offsets = {bank.offset() for _ in range(50)}
    assert len(offsets) > 45 and all(0 <= o < 1 << 19 for o in offsets)


def test_fast_matches_exact_in_noise_floor_burst_levels_and_time_axis(scenario_path: Path) -> None:
    exact, _ = _blocks(scenario_path, "A1-S1", "exact")
    fast, source = _blocks(scenario_path, "A1-S1", "fast")
    assert source.render_mode == "fast"
    assert [(b.sample_index, b.n_samples, b.t_start_s, b.center_freq_hz, b.gain_db) for b in exact] == \
        [(b.sample_index, b.n_samples, b.t_start_s, b.center_freq_hz, b.gain_db) for b in fast]
    x_exact = np.concatenate([b.samples for b in exact])
    x_fast = np.concatenate([b.samples for b in fast])
    assert not np.array_equal(x_exact, x_fast)  # other noise, other data bits
    sim = source.simulation
    position = sim.sensor_ids.index("A1-S1")
    busy = np.zeros(x_fast.size, bool)
    levels = []
    for item in sim.bursts:
        busy[item.start_sample:item.end_sample] = True
        snr_db = item.rx_power_dbm[position] - sim.noise_dbm(position, item.burst.bandwidth_hz)
        if item.burst.kind == "gsm_normal" and snr_db > 25:
            # the useful part of the burst (ramps excluded): same power in both renderers
            span = slice(item.start_sample + 60, item.end_sample - 60)
            levels.append((_power_db(x_exact[span]), _power_db(x_fast[span])))
    assert len(levels) > 50
    differences = np.array([a - b for a, b in levels])
    assert abs(np.mean(differences)) < 0.1 and np.max(np.abs(differences)) < 1.0
    quiet_exact, quiet_fast = x_exact[~busy], x_fast[~busy]
    assert _power_db(quiet_fast - quiet_fast.mean()) == pytest.approx(_power_db(quiet_exact - quiet_exact.mean()),
                                                                      abs=0.05)
    assert abs(quiet_fast.mean() - quiet_exact.mean()) < 1e-3  # the same DC offset and LO leakage


def test_fast_is_reproducible_and_the_seed_matters(scenario_path: Path) -> None:
    a, _ = _blocks(scenario_path, "A1-S1", "fast", seed=3)
    b, _ = _blocks(scenario_path, "A1-S1", "fast", seed=3)
    c, _ = _blocks(scenario_path, "A1-S1", "fast", seed=4)
    assert all(np.array_equal(x.samples, y.samples) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[3].samples, c[3].samples)


def test_overloads_and_drops_are_counted_as_the_exact_renderer_counts_them(scenario_path: Path) -> None:
    blocks, source = _blocks(scenario_path, "A1-S1", "fast", gain_db=40.2)  # a phone next door clips at 40 dB
    recount = sum(source._is_overloaded(b) for b in blocks)
    assert source.n_overloads == recount > 0
    lossy = scenario_path.with_name("lossy.toml")
    lossy.write_text(SCENARIO_TEXT.replace("ppm_spread = 2.0", "ppm_spread = 2.0\ndrop_probability = 0.1"))
    blocks, source = _blocks(lossy, "A1-S1", "fast")
    assert source.n_dropped_samples == sum(b.n_dropped for b in blocks) > 0
    for x, y in itertools.pairwise(blocks):
        assert y.sample_index == x.sample_index + x.n_samples + y.n_dropped


def test_a_far_sensor_renders_only_the_bursts_it_can_hear(scenario_path: Path) -> None:
    sim = Simulation(load_site(DEMO_SITE), load_scenario(scenario_path), seed=2)
    near = FastRenderer(sim, sim.sensor_ids.index("A1-S1"), 902_400_000, None, 65_536, 2)
    far = FastRenderer(sim, sim.sensor_ids.index("B2-S3"), 902_400_000, None, 65_536, 2)
    in_band = [b for b in sim.bursts if abs(b.burst.freq_hz - 902.4e6) - b.burst.bandwidth_hz / 2 < RATE / 2]
    assert len(sim.bursts) > len(in_band)  # the LTE carrier's upper PUCCH edge is out of the 2.4 MHz
    assert near.n_bursts == len(in_band) > far.n_bursts
    position = sim.sensor_ids.index("B2-S3")
    heard = {id(item) for item in far._items}
    for item in sim.bursts:
        if id(item) not in heard:
            assert item.rx_power_dbm[position] - sim.noise_dbm(position, item.burst.bandwidth_hz) < SKIP_BELOW_SNR_DB
    # retuned: GSM 58 is 3.4 MHz away, out of band; the noise bank and burst table are the same
    retuned = FastRenderer(sim, 0, 905_000_000, None, 65_536, 2, table=near.table, bank=near.bank)
    assert all(item.burst.tech == "lte" for item in retuned._items) and retuned.n_bursts > 0
    assert retuned.bank is near.bank and retuned.table is near.table


def test_render_mode_follows_real_time_unless_told(scenario_path: Path) -> None:
    spec = f"sim:{DEMO_SITE}:{scenario_path}:A1-S1"
    assert create_source(spec, realtime=True).render_mode == "fast"  # type: ignore[attr-defined]
    assert create_source(spec, realtime=False).render_mode == "exact"  # type: ignore[attr-defined]
    assert create_source(spec, realtime=True, render="exact").render_mode == "exact"  # type: ignore[attr-defined]
    with pytest.raises(InputError) as error:
        create_source(spec, render="quick")
    assert error.value.field == "render"
