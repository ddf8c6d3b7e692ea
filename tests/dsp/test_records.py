"""Records that cross process boundaries: round trips and field-named rejections."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsp.errors import InputError
from dsp.records import BandHealth, Detection, Heartbeat

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@given(t=finite, f=st.floats(min_value=1e6, max_value=6e9), p=finite, snr=finite,
       tech=st.sampled_from(["gsm", "lte", "nr", "umts", "unknown"]),
       rssi=st.none() | finite, seq=st.none() | st.integers(0, 2**53))
def test_detection_round_trips_through_its_wire_form(t, f, p, snr, tech, rssi, seq) -> None:
    d = Detection("A1-S1", t, 5e-4, f, 2e5, p, snr, tech, rssi_dbm=rssi, seq=seq, flags=("clipped",))
    assert Detection.from_json(d.to_json()) == d
    assert "rssi_dbm" in d.to_dict()  # part of the contract even when null


@pytest.mark.parametrize(("change", "field"), [
    ({"sensor_id": ""}, "sensor_id"),
    ({"tech": "wifi"}, "tech"),
    ({"duration_s": -1.0}, "duration_s"),
    ({"freq_hz": "900M"}, "freq_hz"),
    ({"snr_db": True}, "snr_db"),
    ({"colour": "red"}, "colour"),
    ({"v": 99}, "v"),
    ({"flags": "clipped"}, "flags"),
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
