"""Records that cross process boundaries: round trips and field-named rejections."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsp.detector import Burst, detections_of
from dsp.errors import InputError
from dsp.iq import cu8_to_complex64
from dsp.records import (
    BandHealth,
    Detection,
    Heartbeat,
    IQBlock,
    decimal_round,
    detection_from_values,
    frozen_builder,
)

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@given(t=finite, f=st.floats(min_value=1e6, max_value=6e9), p=finite, snr=finite,
       tech=st.sampled_from(["gsm", "lte", "nr", "umts", "unknown"]),
       rssi=st.none() | finite, seq=st.none() | st.integers(0, 2**53))
def test_detection_round_trips_through_its_wire_form(t, f, p, snr, tech, rssi, seq) -> None:
    d = Detection("A1-S1", t, 5e-4, f, 2e5, p, snr, tech, rssi_dbm=rssi, seq=seq, flags=("clipped",))
    assert Detection.from_json(d.to_json()) == d
    assert "rssi_dbm" in d.to_dict()  # part of the contract even when null


def test_wire_form_is_pinned() -> None:
    """Field order, nulls and flags of the JSON every sensor sends (DESIGN.md "Detection")."""
    d = Detection("A1", 1.5, 5e-4, 9e8, 2e5, -30.0, 12.0, "gsm", seq=3, flags=("clipped",), session_id="A1:1")
    assert d.to_json() == ('{"v":1,"sensor_id":"A1","t_start_s":1.5,"duration_s":0.0005,"freq_hz":900000000.0,'
                           '"bandwidth_hz":200000.0,"power_dbfs":-30.0,"snr_db":12.0,"tech":"gsm","rssi_dbm":null,'
                           '"seq":3,"flags":["clipped"],"session_id":"A1:1"}')
    assert Detection.from_json(d.to_json()) == d


def _burst(**changes: object) -> Burst:
    fields = dict(t_start_s=1_700_000_000.123456789, duration_s=5.46123456e-4, freq_hz=900_212_345.678,
                  bandwidth_hz=251_234.567, power_dbfs=-31.23456, snr_db=12.34567, noise_dbfs_hz=-100.0,
                  sample_start=100, sample_count=1311, clipped=False, n_frames=6, n_cells=30, flatness=0.45,
                  gmsk_line_ratio=20.0, center_freq_hz=900_000_000, gain_db=28.0)
    return Burst(**{**fields, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(("changes", "flags"), [
    ({}, ()),
    ({"clipped": True, "truncated": True}, ("clipped", "truncated")),
    ({"split": "time"}, ("split_time",)),
    ({"split": "frequency", "clipped": True}, ("clipped", "split_frequency")),
])
def test_a_burst_record_is_rounded_and_flagged(changes: dict, flags: tuple[str, ...]) -> None:
    b = _burst(**changes)
    d = b.to_detection("A1-S1", "gsm", session_id="s1", seq=4, rssi_dbm=-60.0, channel="arfcn 1 slot-phase 0")
    assert d == Detection("A1-S1", round(b.t_start_s, 7), round(b.duration_s, 7), round(b.freq_hz, 1),
                          round(b.bandwidth_hz, 1), round(b.power_dbfs, 2), round(b.snr_db, 2), "gsm", -60.0, 4,
                          100, 1311, "arfcn 1 slot-phase 0", flags, 28.0, "s1")
    assert d.duration_s == 5.461e-4 and d.freq_hz == 900_212_345.7 and d.snr_db == 12.35


@pytest.mark.parametrize(("change", "field"), [
    ({"sensor_id": ""}, "sensor_id"),
    ({"tech": "wifi"}, "tech"),
    ({"duration_s": -1.0}, "duration_s"),
    ({"freq_hz": "900M"}, "freq_hz"),
    ({"snr_db": True}, "snr_db"),
    ({"colour": "red"}, "colour"),
    ({"v": 99}, "v"),
    ({"flags": "clipped"}, "flags"),
    ({"snr_db": float("nan")}, "snr_db"),
    ({"seq": 2**63}, "seq"),
    ({"sample_count": 12.0}, "sample_count"),
])
def test_a_bad_field_is_named(change: dict, field: str) -> None:
    good = Detection("A1-S1", 1.0, 5e-4, 9e8, 2e5, -30.0, 12.0, "gsm").to_dict()
    with pytest.raises(InputError) as exc:
        Detection.from_dict({**good, **change})
    assert exc.value.field == field


def test_missing_field_and_non_objects_are_rejected() -> None:
    good = Detection("A1-S1", 1.0, 5e-4, 9e8, 2e5, -30.0, 12.0, "gsm").to_dict()
    del good["power_dbfs"]
    with pytest.raises(InputError, match="power_dbfs: missing"):
        Detection.from_dict(good)
    with pytest.raises(InputError):
        Detection.from_json("[1, 2]")
    with pytest.raises(InputError, match="not valid JSON"):
        Detection.from_json("{")


def test_heartbeat_round_trip_keeps_zero_values() -> None:
    hb = Heartbeat("A1", 10.0, "running", 5, 1, 0.002,
                   (BandHealth("B20", -52.0, 0.0, 8.5), BandHealth("GSM900", -50.0, 0.35, 8.5)), seq=3)
    back = Heartbeat.from_dict(hb.to_dict())
    assert back == hb
    assert back.bands[0].watched_fraction == 0.0  # a band not watched at all is not "100 % watched"


def test_frozen_builder_makes_what_the_constructor_makes() -> None:
    values = ("s1", 1.5, 0.000546, 902.4e6, 250e3, -40.25, 21.5, "gsm", None, 7, 1200, 1310, "arfcn 62 slot-phase 3",
              ("clipped",), 28.0, "s1:4")
    built = detection_from_values(values)
    assert built == Detection(*values)
    assert built.to_dict() == Detection(*values).to_dict()
    with pytest.raises(AttributeError):
        built.snr_db = 0.0  # type: ignore[misc]  # still frozen
    burst_values = (1.0, 5e-4, 902e6, 2.5e5, -30.0, 20.0, -110.0, 100, 1200, False, 5, 40, 0.5, None, 902_000_000,
                    True, 28.0, "time")
    assert frozen_builder(Burst)(burst_values) == Burst(*burst_values)
    with pytest.raises(ValueError):
        detection_from_values(values[:-1])  # every field must be given


def test_frozen_builder_refuses_a_class_with_post_init() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True, slots=True)
    class Checked:
        x: float

        def __post_init__(self) -> None:
            if self.x < 0:
                raise ValueError("negative")

    with pytest.raises(TypeError):
        frozen_builder(Checked)


def _same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1.0, a) == math.copysign(1.0, b))


@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.floats(-2e9, 2e9), min_size=1, max_size=50),
       ndigits=st.sampled_from([0, 1, 2, 7]))
def test_decimal_round_is_pythons_round(values, ndigits) -> None:
    got = decimal_round(np.array(values), ndigits)
    assert all(_same_float(g, round(v, ndigits)) for g, v in zip(got, values, strict=True))


def test_decimal_round_is_pythons_round_at_ties_and_beside_them() -> None:
    """Halfway cases are where a scaled product can round the other way than the exact value."""
    rng = np.random.default_rng(11)
    for ndigits in (1, 2, 7):
        for magnitude in (1e-6, 1.0, 1e3, 9e8, 1.8e9, 1e12):
            x = rng.uniform(-magnitude, magnitude, 20_000)
            ties = (np.round(x * 10.0**ndigits) + 0.5) / 10.0**ndigits
            values = np.concatenate((x, ties, np.nextafter(ties, np.inf), np.nextafter(ties, -np.inf)))
            got = np.array(decimal_round(values, ndigits))
            want = np.array([round(float(v), ndigits) for v in values])
            assert np.array_equal(got.view(np.int64), want.view(np.int64)), (ndigits, magnitude)


def test_detections_of_a_batch_are_each_bursts_record() -> None:
    rng = np.random.default_rng(12)
    bursts = []
    for i in range(200):
        bursts.append(Burst(
            t_start_s=float(1_795_997_760.0 + rng.uniform(0, 10)) if i % 2 else float(rng.uniform(0, 10)),
            duration_s=float(rng.uniform(1e-4, 1e-2)), freq_hz=float(rng.uniform(880e6, 1.8e9)),
            bandwidth_hz=float(rng.uniform(1e5, 2e6)), power_dbfs=float(rng.uniform(-90, 0)),
            snr_db=float(rng.uniform(-5, 60)), noise_dbfs_hz=-150.0, sample_start=int(rng.integers(0, 10**9)),
            sample_count=int(rng.integers(100, 10**5)), clipped=bool(i % 3 == 0), n_frames=5, n_cells=40,
            flatness=0.5, gmsk_line_ratio=None, center_freq_hz=900_000_000, truncated=bool(i % 5 == 0),
            gain_db=None if i % 7 == 0 else 28.0, split=("", "time", "frequency")[(i // 3) % 3]))
    techs = [("gsm", "lte", "unknown")[i % 3] for i in range(200)]
    sessions = [None if i % 4 == 0 else f"A1:{i}" for i in range(200)]
    channels = [None if i % 2 else f"arfcn {i} slot-phase 1" for i in range(200)]
    got = detections_of(bursts, "A1", techs, sessions, channels)
    want = [b.to_detection("A1", t, session_id=s, channel=c)
            for b, t, s, c in zip(bursts, techs, sessions, channels, strict=True)]
    assert got == want
    assert [d.to_json() for d in got] == [d.to_json() for d in want]  # the wire text too (floats stay floats)
    assert {d.flags for d in got} >= {(), ("clipped",), ("split_time",), ("clipped", "split_time"), ("clipped", "truncated")}
    assert detections_of([], "A1", [], [], []) == []


def test_a_block_of_cu8_bytes_makes_its_samples_only_when_asked() -> None:
    """A dongle's block carries its bytes: its length and any span of samples come without
    converting the whole block; the samples, once asked for, are the one converter's and are
    kept; a copy with a field changed keeps the bytes; a block needs samples or bytes."""
    raw = np.random.default_rng(3).integers(0, 256, 2 * 1000, dtype=np.uint8)
    block = IQBlock.from_cu8(raw, 900_000_000, 2.4e6, 1.0e9, sensor_id="A1-S1", sample_index=5)
    assert block.n_samples == 1000 and block.duration_s == pytest.approx(1000 / 2.4e6)
    with pytest.raises(AttributeError):
        object.__getattribute__(block, "samples")  # not made by the above
    assert np.array_equal(block.samples_in(10, 20), cu8_to_complex64(raw)[10:20])
    with pytest.raises(AttributeError):
        object.__getattribute__(block, "samples")  # nor by a span
    assert np.array_equal(block.samples, cu8_to_complex64(raw)) and block.samples is block.samples
    moved = replace(block, n_dropped=3)
    assert moved.cu8 is raw and moved.n_dropped == 3 and np.array_equal(moved.samples, block.samples)
    plain = IQBlock(cu8_to_complex64(raw), 900_000_000, 2.4e6, 1.0e9)
    assert plain.cu8 is None and plain.n_samples == 1000 and np.array_equal(plain.samples_in(3, 7), plain.samples[3:7])
    with pytest.raises(TypeError, match="samples or cu8"):
        IQBlock(None, 900_000_000, 2.4e6, 1.0e9)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="even number"):
        IQBlock.from_cu8(raw[:3], 900_000_000, 2.4e6, 1.0e9)
