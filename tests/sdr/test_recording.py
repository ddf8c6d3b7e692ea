"""Recording I/O: SigMF round trips, streaming blocks, raw files and the errors a user can cause."""

from __future__ import annotations

import json
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import sigmf
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.errors import InputError
from dsp.iq import cu8_to_complex64
from sdr.recording import (
    SAMPLE_FORMATS,
    SigMFWriter,
    format_utc_iso,
    open_recording,
    parse_rtl433_name,
    parse_utc_iso,
    write_raw_cu8,
    write_raw_file,
)

RATE_HZ = 2.4e6
FREQ_HZ = 902_400_000
T0_S = 1_714_564_800.123456  # 2024-05-01T12:00:00.123456Z

# worst-case error of one component after quantization: half a step
QUANTIZATION = {"cu8": 0.5 / 127.5 + 1e-6, "ci16_le": 0.5 / 32768 + 1e-7, "cf32_le": 0.0}


def _signal(n: int, seed: int = 0, amplitude: float = 0.2) -> np.ndarray:
    """Noise plus a tone, kept inside full scale so fixed point does not clip."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = amplitude * (rng.standard_normal(n) + 1j * rng.standard_normal(n)) + 0.3 * np.exp(2j * np.pi * 0.01 * t)
    return (np.clip(x.real, -0.99, 0.99) + 1j * np.clip(x.imag, -0.99, 0.99)).astype(np.complex64)


def _write(base: Path, x: np.ndarray, datatype: str = "cu8", **kwargs) -> Path:
    options = {"sample_rate_hz": RATE_HZ, "center_freq_hz": FREQ_HZ, "t_start_s": T0_S} | kwargs
    with SigMFWriter(base, datatype=datatype, **options) as writer:
        writer.write(x)
    return base


# -- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", list(SAMPLE_FORMATS))
def test_sigmf_round_trip_every_datatype(tmp_path: Path, datatype: str) -> None:
    x = _signal(10_000, seed=1)
    base = tmp_path / "A1-S1"
    with SigMFWriter(
        base, datatype=datatype, sample_rate_hz=RATE_HZ, center_freq_hz=FREQ_HZ, t_start_s=T0_S,
        sensor_id="A1-S1", gain_db=28.0, description="round trip", hw="RTL-SDR Blog V4",
        extra_global={"cellwatch:scenario": "unit"},
    ) as writer:
        writer.write(x[:3333])  # several writes: the dataset is appended to
        writer.annotate(500, 1200, freq_lower_hz=902.3e6, freq_upper_hz=902.5e6, label="gsm",
                        comment="phone-1", extra={"cellwatch:tech": "gsm"})
        writer.write(x[3333:])
        writer.annotate(100, 50, label="first")  # out of order: sorted on close

    recording = open_recording(base.with_suffix(".sigmf-meta"))
    info = recording.info
    assert (info.format, info.datatype) == ("sigmf", datatype)
    assert info.sample_rate_hz == RATE_HZ
    assert info.center_freq_hz == FREQ_HZ and isinstance(info.center_freq_hz, int)
    assert info.t_start_s == pytest.approx(T0_S, abs=1e-6) and info.t_start_known
    assert info.n_samples == x.size
    assert info.duration_s == pytest.approx(x.size / RATE_HZ)
    assert (info.sensor_id, info.gain_db, info.description, info.hw) == ("A1-S1", 28.0, "round trip", "RTL-SDR Blog V4")
    assert info.extensions["cellwatch:scenario"] == "unit"
    assert [a.sample_start for a in info.annotations] == [100, 500]
    gsm = info.annotations[1]
    assert (gsm.sample_count, gsm.freq_lower_hz, gsm.freq_upper_hz, gsm.label, gsm.comment) == (
        1200, 902.3e6, 902.5e6, "gsm", "phone-1")
    assert gsm.extra == {"cellwatch:tech": "gsm"}

    y = recording.read()
    assert y.dtype == np.complex64
    error = np.max(np.abs(np.concatenate([(y - x).real, (y - x).imag])))
    assert error <= QUANTIZATION[datatype]

    # the sigmf library accepts what we wrote, checksum included
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. undeclared extension namespaces
        handle = sigmf.fromfile(str(base.with_suffix(".sigmf-meta")), skip_checksum=False, autoscale=False)
        handle.validate()
    assert handle.sample_count == x.size
    assert handle.get_captures()[0]["core:datetime"] == "2024-05-01T12:00:00.123456Z"


def test_cu8_round_trip_is_the_dongle_converter(tmp_path: Path) -> None:
    """cu8 bytes are read back through dsp.iq.cu8_to_complex64, not sigmf's (b - 128) / 128."""
    raw = np.random.default_rng(2).integers(0, 256, 2 * 4000, dtype=np.uint8)
    base = tmp_path / "bytes"
    with SigMFWriter(base, sample_rate_hz=RATE_HZ, center_freq_hz=FREQ_HZ, t_start_s=0.0) as writer:
        writer.write_raw(raw.tobytes())
    recording = open_recording(base)
    assert np.array_equal(recording.read(), cu8_to_complex64(raw))
    stored = np.concatenate([b.data for b in recording.raw_blocks(999)])
    assert np.array_equal(stored, raw)
    # its blocks carry the bytes as stored (the detector reads them), samples made from them
    blocks = list(recording.blocks(999))
    assert all(b.cu8 is not None for b in blocks)
    assert np.array_equal(np.concatenate([b.cu8 for b in blocks]), raw)
    assert np.array_equal(np.concatenate([b.samples for b in blocks]), cu8_to_complex64(raw))


def test_writer_is_deterministic(tmp_path: Path) -> None:
    x = _signal(5000, seed=3)
    for name in ("a", "b"):
        with SigMFWriter(tmp_path / name, sample_rate_hz=RATE_HZ, center_freq_hz=FREQ_HZ, t_start_s=T0_S,
                         sensor_id="S") as writer:
            writer.write(x)
            writer.annotate(10, 20, label="x")
    for suffix in (".sigmf-meta", ".sigmf-data"):
        assert (tmp_path / f"a{suffix}").read_bytes() == (tmp_path / f"b{suffix}").read_bytes()


def test_writer_trims_annotations_to_the_samples_written(tmp_path: Path) -> None:
    base = tmp_path / "cut"
    with SigMFWriter(base, sample_rate_hz=RATE_HZ, center_freq_hz=FREQ_HZ, t_start_s=0.0) as writer:
        writer.annotate(900, 500, label="cut by the end")
        writer.annotate(2000, 10, label="never recorded")
        writer.write(np.zeros(1000, dtype=np.complex64))
    annotations = open_recording(base).info.annotations
    assert [(a.sample_start, a.sample_count, a.label) for a in annotations] == [(900, 100, "cut by the end")]


def test_metadata_is_written_when_recording_is_interrupted(tmp_path: Path) -> None:
    base = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt), SigMFWriter(base, sample_rate_hz=RATE_HZ,
                                                        center_freq_hz=FREQ_HZ, t_start_s=T0_S) as writer:
        writer.write(np.full(700, 0.5, dtype=np.complex64))
        raise KeyboardInterrupt
    assert open_recording(base).info.n_samples == 700


@pytest.mark.parametrize("name", ["rec", "rec.sigmf-meta", "rec.sigmf-data"])
def test_sigmf_opens_from_base_meta_or_data_name(tmp_path: Path, name: str) -> None:
    _write(tmp_path / "rec", _signal(100))
    info = open_recording(tmp_path / name).info
    assert (info.n_samples, info.sensor_id) == (100, "rec")
    assert info.meta_path == str(tmp_path / "rec.sigmf-meta")


def test_utc_time_round_trip() -> None:
    assert format_utc_iso(T0_S) == "2024-05-01T12:00:00.123456Z"
    assert parse_utc_iso("2024-05-01T12:00:00.123456Z") == pytest.approx(T0_S, abs=1e-6)
    assert parse_utc_iso("2024-05-01T12:00:00Z") == 1_714_564_800.0
    assert parse_utc_iso("2024-05-01T14:00:00+02:00") == 1_714_564_800.0
    assert parse_utc_iso("2024-05-01T12:00:00.1234567Z") - 1_714_564_800.0 == pytest.approx(0.1234567, abs=1e-7)
    with pytest.raises(ValueError, match="UTC"):
        parse_utc_iso("2024-05-01T12:00:00")  # no zone: would silently be local time


# -- blocks -------------------------------------------------------------------------------------


def test_blocks_match_one_read_and_carry_time_and_index(tmp_path: Path) -> None:
    n = 10_007  # prime: no block size divides it
    x = _signal(n, seed=4)
    base = _write(tmp_path / "blocks", x, datatype="ci16_le", sensor_id="B-2", gain_db=12.5)
    recording = open_recording(base)
    whole = recording.read()
    blocks = list(recording.blocks(1024))
    assert [b.n_samples for b in blocks] == [1024] * 9 + [n - 9 * 1024]
    assert np.array_equal(np.concatenate([b.samples for b in blocks]), whole)
    for i, block in enumerate(blocks):
        assert block.sample_index == i * 1024
        assert block.t_start_s == pytest.approx(T0_S + i * 1024 / RATE_HZ, abs=1e-6)
        assert (block.center_freq_hz, block.sample_rate_hz, block.sensor_id, block.gain_db) == (
            FREQ_HZ, RATE_HZ, "B-2", 12.5)
        assert block.n_dropped == 0
    window = list(recording.blocks(1000, start_sample=2500, n_samples=2100))
    assert [b.sample_index for b in window] == [2500, 3500, 4500]
    assert np.array_equal(np.concatenate([b.samples for b in window]), whole[2500:4600])
    assert window[1].t_start_s == pytest.approx(T0_S + 3500 / RATE_HZ, abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(block=st.integers(1, 3000), start=st.integers(0, 2000))
def test_any_block_size_gives_the_same_samples(tmp_path_factory: pytest.TempPathFactory, block: int,
                                                start: int) -> None:
    base = tmp_path_factory.getbasetemp() / "prop"
    if not (base.parent / "prop.sigmf-meta").exists():
        _write(base, _signal(2999, seed=5))
    recording = open_recording(base)
    expected = recording.read(start_sample=min(start, 2999))
    parts = [b.samples for b in recording.blocks(block, start_sample=min(start, 2999))]
    got = np.concatenate(parts) if parts else np.zeros(0, np.complex64)
    assert np.array_equal(got, expected)
    assert all(b.n_samples <= block for b in recording.blocks(block, start_sample=min(start, 2999)))


def test_blocks_never_read_the_whole_file(tmp_path: Path) -> None:
    """Peak memory while streaming stays near one block, far below the file's size."""
    n = 500_000  # 1 MB of cu8, 4 MB as complex64
    write_raw_cu8(tmp_path / "g001_902.4M_2.4M.cu8", np.zeros(n, dtype=np.complex64))
    recording = open_recording(tmp_path / "g001_902.4M_2.4M.cu8")
    tracemalloc.start()
    try:
        total = sum(b.n_samples for b in recording.blocks(4096))
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == n
    assert peak_bytes < 200_000


def test_multiple_captures_retune_and_time_gap(tmp_path: Path) -> None:
    base = tmp_path / "hop"
    x = _signal(3000, seed=6)
    gap_s = 0.010
    with SigMFWriter(base, datatype="cf32_le", sample_rate_hz=RATE_HZ, center_freq_hz=FREQ_HZ,
                     t_start_s=T0_S) as writer:
        writer.write(x[:1000])
        writer.start_capture(center_freq_hz=1_747_800_000)  # retune, continuous time
        writer.write(x[1000:2000])
        writer.start_capture(t_start_s=writer.t_next_s + gap_s)  # lost samples, same tuning
        writer.write(x[2000:])
        writer.start_capture(center_freq_hz=1)  # nothing written after: dropped on close
    recording = open_recording(base)
    captures = recording.info.captures
    assert [(c.sample_start, c.center_freq_hz) for c in captures] == [
        (0, FREQ_HZ), (1000, 1_747_800_000), (2000, 1_747_800_000)]
    n_gap = round(gap_s * RATE_HZ)
    assert abs(captures[2].n_dropped - n_gap) <= 3  # core:datetime carries 1 µs = 2.4 samples
    blocks = list(recording.blocks(700))
    assert [b.sample_index for b in blocks] == [0, 700, 1000, 1700, 2000, 2700]  # never across a boundary
    assert [b.center_freq_hz for b in blocks] == [FREQ_HZ] * 2 + [1_747_800_000] * 4
    assert blocks[2].t_start_s == pytest.approx(T0_S + 1000 / RATE_HZ, abs=1e-6)
    assert blocks[4].t_start_s == pytest.approx(T0_S + 2000 / RATE_HZ + gap_s, abs=1e-6)
    assert [b.n_dropped for b in blocks] == [0, 0, 0, 0, captures[2].n_dropped, 0]
    assert np.array_equal(np.concatenate([b.samples for b in blocks]), x.astype(np.complex64))
    assert recording.time_of_sample(2500) == pytest.approx(T0_S + 2500 / RATE_HZ + gap_s, abs=1e-6)


def test_arguments_override_sensor_and_start_time(tmp_path: Path) -> None:
    base = _write(tmp_path / "rec", _signal(100), sensor_id="from-meta")
    info = open_recording(base, sensor_id="cli", t_start_s=1000.0).info
    assert (info.sensor_id, info.t_start_s) == ("cli", 1000.0)
    assert next(open_recording(base, t_start_s=1000.0).blocks(10, start_sample=50)).t_start_s == pytest.approx(
        1000.0 + 50 / RATE_HZ)


# -- raw files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("g001_902.4M_2.4M.cu8", (902_400_000, 2.4e6)),
        ("g005_433.92M_250k.cu8", (433_920_000, 250e3)),
        ("g012_868.3M_1024k.cs16", (868_300_000, 1.024e6)),
        ("dcs_1.7478G_2.048M.cfile", (1_747_800_000, 2.048e6)),
        ("A1-S1_832MHz_2.4Msps.cu8", (832_000_000, 2.4e6)),
        ("capture.cu8", None),
        ("g001_902.4M.cu8", None),
        ("g001_902.4m_2.4m.cu8", None),  # m would be milli
    ],
)
def test_rtl433_name_parsing(name: str, expected: tuple[int, float] | None) -> None:
    assert parse_rtl433_name(name) == expected


def test_raw_cu8_from_name(tmp_path: Path) -> None:
    x = _signal(4801, seed=7)
    path = write_raw_cu8(tmp_path / "g001_902.4M_2.4M.cu8", x)
    recording = open_recording(path)
    info = recording.info
    assert (info.format, info.datatype, info.center_freq_hz, info.sample_rate_hz) == ("cu8", "cu8", 902_400_000, 2.4e6)
    assert info.n_samples == 4801 and info.duration_s == pytest.approx(4801 / 2.4e6)
    assert (info.t_start_s, info.t_start_known, info.sensor_id) == (0.0, False, "g001_902.4M_2.4M")
    assert np.array_equal(recording.read(), cu8_to_complex64(np.fromfile(path, dtype=np.uint8)))
    assert np.max(np.abs(recording.read() - x)) <= QUANTIZATION["cu8"] * np.sqrt(2)


def test_raw_cu8_with_explicit_rate_and_freq(tmp_path: Path) -> None:
    path = write_raw_cu8(tmp_path / "capture.cu8", _signal(1000))
    info = open_recording(path, sample_rate_hz=1.024e6, center_freq_hz=845e6, t_start_s=T0_S).info
    assert (info.sample_rate_hz, info.center_freq_hz, info.t_start_s, info.t_start_known) == (
        1.024e6, 845_000_000, T0_S, True)
    # explicit values win over the name
    named = write_raw_cu8(tmp_path / "g001_902.4M_2.4M.cu8", _signal(10))
    assert open_recording(named, sample_rate_hz=2.048e6).info.sample_rate_hz == 2.048e6


def test_cfile_and_cs16(tmp_path: Path) -> None:
    x = _signal(2000, seed=8).astype(np.complex64)
    x.tofile(tmp_path / "gr_902.4M_2.4M.cfile")
    recording = open_recording(tmp_path / "gr_902.4M_2.4M.cfile")
    assert (recording.info.format, recording.info.datatype) == ("cfile", "cf32_le")
    assert np.array_equal(recording.read(), x)
    explicit = tmp_path / "gnuradio.cf32"
    x.tofile(explicit)
    assert open_recording(explicit, sample_rate_hz=1e6, center_freq_hz=7e8).info.center_freq_hz == 700_000_000
    cs16 = write_raw_file(tmp_path / "g001_868.3M_1M.cs16", x)
    y = open_recording(cs16).read()
    assert np.max(np.abs(y - x)) <= QUANTIZATION["ci16_le"] * np.sqrt(2)


# -- errors a user can cause --------------------------------------------------------------------


def _meta(path: Path) -> dict:
    return json.loads(path.read_text())


def _rewrite_meta(base: Path, change) -> Path:
    meta_path = base.with_name(base.name + ".sigmf-meta")
    meta = _meta(meta_path)
    change(meta)
    meta_path.write_text(json.dumps(meta))
    return meta_path


def test_truncated_cu8_odd_byte_count(tmp_path: Path) -> None:
    path = tmp_path / "g001_902.4M_2.4M.cu8"
    path.write_bytes(bytes(2001))
    with pytest.raises(InputError, match="1 byte left over") as err:
        open_recording(path)
    assert err.value.source == str(path)
    base = _write(tmp_path / "sig", _signal(100))
    with open(tmp_path / "sig.sigmf-data", "ab") as f:
        f.write(b"\x01")
    with pytest.raises(InputError, match="1 byte left over"):
        open_recording(base)


def test_truncated_ci16_stray_bytes(tmp_path: Path) -> None:
    base = _write(tmp_path / "ci16", _signal(100), datatype="ci16_le")
    with open(tmp_path / "ci16.sigmf-data", "ab") as f:
        f.write(b"\x01\x02\x03")
    with pytest.raises(InputError, match=r"4-byte ci16_le samples: 3 bytes left over") as err:
        open_recording(base)
    assert err.value.source == str(tmp_path / "ci16.sigmf-data")


def test_data_shorter_than_annotations_claim(tmp_path: Path) -> None:
    base = tmp_path / "short"
    with SigMFWriter(base, sample_rate_hz=RATE_HZ, center_freq_hz=FREQ_HZ, t_start_s=0.0) as writer:
        writer.write(np.zeros(1000, np.complex64))
        writer.annotate(900, 100, label="end")
    data = tmp_path / "short.sigmf-data"
    data.write_bytes(data.read_bytes()[: 2 * 950])  # lost the last 50 samples
    with pytest.raises(InputError, match=r"holds only 950 samples \(100 bytes short") as err:
        open_recording(base)
    assert err.value.field == "annotations[0]"


def test_data_shorter_than_captures_claim(tmp_path: Path) -> None:
    base = _write(tmp_path / "cap", _signal(100))
    _rewrite_meta(base, lambda m: m["captures"].append(
        {"core:sample_start": 500, "core:frequency": 9e8, "core:datetime": "2024-05-01T12:00:01Z"}))
    with pytest.raises(InputError, match="starts at sample 500") as err:
        open_recording(base)
    assert err.value.field == "captures[1].core:sample_start"


def test_duplicate_capture_start_is_contradictory(tmp_path: Path) -> None:
    base = _write(tmp_path / "dup", _signal(100))
    _rewrite_meta(base, lambda m: m["captures"].append({"core:sample_start": 0, "core:frequency": 1.8e9}))
    with pytest.raises(InputError) as err:
        open_recording(base)
    assert err.value.field == "captures[1].core:sample_start"


def test_missing_meta_or_data(tmp_path: Path) -> None:
    base = _write(tmp_path / "pair", _signal(10))
    (tmp_path / "pair.sigmf-meta").unlink()
    with pytest.raises(InputError, match="metadata file missing") as err:
        open_recording(tmp_path / "pair.sigmf-data")
    assert err.value.source == str(tmp_path / "pair.sigmf-meta")
    with pytest.raises(InputError, match="metadata file missing"):
        open_recording(base)

    _write(tmp_path / "lonely", _signal(10))
    (tmp_path / "lonely.sigmf-data").unlink()
    with pytest.raises(InputError, match=r"data file .* missing") as err:
        open_recording(tmp_path / "lonely.sigmf-meta")
    assert err.value.source == str(tmp_path / "lonely.sigmf-data")
    with pytest.raises(InputError, match="no such file"):
        open_recording(tmp_path / "nothing")


def test_malformed_json_meta(tmp_path: Path) -> None:
    base = _write(tmp_path / "bad", _signal(10))
    meta_path = tmp_path / "bad.sigmf-meta"
    meta_path.write_text(meta_path.read_text()[:-20])
    with pytest.raises(InputError, match=r"not valid JSON \(.*line \d+ column \d+") as err:
        open_recording(base)
    assert err.value.source == str(meta_path)
    meta_path.write_text('{"global": {"core:datatype": "cu8", "core:version": "1.2.0", "core:sample_rate": NaN},'
                         ' "captures": [], "annotations": []}')
    with pytest.raises(InputError, match="NaN is not JSON"):
        open_recording(base)
    meta_path.write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        open_recording(base)


@pytest.mark.parametrize("datatype", ["ci8", "cu16_le", "rf32_le", "cf32_be", "cu12"])
def test_unknown_datatype_names_core_datatype(tmp_path: Path, datatype: str) -> None:
    base = _write(tmp_path / "dt", _signal(10))
    _rewrite_meta(base, lambda m: m["global"].update({"core:datatype": datatype}))
    with pytest.raises(InputError, match="not supported") as err:
        open_recording(base)
    assert err.value.field == "global.core:datatype"
    assert "core:datatype" in str(err.value) and datatype in str(err.value)


def test_missing_sample_rate(tmp_path: Path) -> None:
    base = _write(tmp_path / "norate", _signal(10))
    _rewrite_meta(base, lambda m: m["global"].pop("core:sample_rate"))
    with pytest.raises(InputError, match="missing") as err:
        open_recording(base)
    assert err.value.field == "global.core:sample_rate"
    assert open_recording(base, sample_rate_hz=1e6).info.sample_rate_hz == 1e6  # the argument fills it


def test_contradicting_arguments_are_refused(tmp_path: Path) -> None:
    base = _write(tmp_path / "c", _signal(10))
    with pytest.raises(InputError, match="metadata says") as err:
        open_recording(base, sample_rate_hz=1e6)
    assert err.value.field == "global.core:sample_rate"
    with pytest.raises(InputError, match="metadata says") as err:
        open_recording(base, center_freq_hz=1.8e9)
    assert err.value.field == "captures[0].core:frequency"
    assert open_recording(base, sample_rate_hz=RATE_HZ, center_freq_hz=FREQ_HZ).info.n_samples == 10


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m["global"].update({"core:sample_rate": -1}), "global.core:sample_rate"),
        (lambda m: m["global"].update({"core:sample_rate": 5e11}), "global.core:sample_rate"),
        (lambda m: m["global"].pop("core:datatype"), "global.core:datatype"),
        (lambda m: m["captures"][0].update({"core:frequency": -9e8}), "captures[0].core:frequency"),
        (lambda m: m["captures"][0].pop("core:frequency"), "captures[0].core:frequency"),
        (lambda m: m["captures"][0].update({"core:datetime": "yesterday"}), "captures[0].core:datetime"),
        (lambda m: m["captures"][0].update({"core:sample_start": "0"}), "captures[0].core:sample_start"),
        (lambda m: m["global"].update({"core:num_channels": 2}), "global.core:num_channels"),
        (lambda m: m["global"].update({"cellwatch:gain_db": "high"}), "global.cellwatch:gain_db"),
        (lambda m: m.pop("captures"), "captures"),
    ],
)
def test_invalid_metadata_names_the_field(tmp_path: Path, change, field: str) -> None:
    base = _write(tmp_path / "inv", _signal(10))
    meta_path = _rewrite_meta(base, change)
    with pytest.raises(InputError) as err:
        open_recording(base)
    assert err.value.field == field
    assert err.value.source == str(meta_path)


def test_raw_file_without_rate_or_freq(tmp_path: Path) -> None:
    path = write_raw_cu8(tmp_path / "capture.cu8", _signal(10))
    with pytest.raises(InputError, match=r"pass --rate and --freq, or name it like g001_902.4M_2.4M.cu8"):
        open_recording(path)
    with pytest.raises(InputError, match="centre frequency"):
        open_recording(path, sample_rate_hz=2.4e6)
    with pytest.raises(InputError, match="positive sample rate"):
        open_recording(path, sample_rate_hz=-2.4e6, center_freq_hz=9e8)
    with pytest.raises(InputError, match="beyond any receiver"):
        open_recording(path, sample_rate_hz=2.4e12, center_freq_hz=9e8)


def test_unknown_file_types(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="unknown recording type"):
        open_recording(tmp_path / "notes.txt")
    (tmp_path / "x.sigmf").write_bytes(b"")
    with pytest.raises(InputError, match="archives"):
        open_recording(tmp_path / "x.sigmf")


def test_block_arguments_are_checked(tmp_path: Path) -> None:
    recording = open_recording(_write(tmp_path / "args", _signal(100)))
    with pytest.raises(InputError, match="n_samples_per_block"):
        recording.blocks(0)
    with pytest.raises(InputError, match="outside"):
        recording.blocks(10, start_sample=101)
    with pytest.raises(InputError, match="past the end"):
        recording.blocks(10, start_sample=50, n_samples=51)


def test_writer_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="datatype"):
        SigMFWriter(tmp_path / "w", datatype="ci8", sample_rate_hz=RATE_HZ, center_freq_hz=FREQ_HZ, t_start_s=0.0)
    with pytest.raises(ValueError, match="owns"):
        SigMFWriter(tmp_path / "w", sample_rate_hz=RATE_HZ, center_freq_hz=FREQ_HZ, t_start_s=0.0,
                    extra_global={"core:sample_rate": 1.0})
    with SigMFWriter(tmp_path / "w", datatype="ci16_le", sample_rate_hz=RATE_HZ, center_freq_hz=FREQ_HZ,
                     t_start_s=0.0) as writer:
        with pytest.raises(ValueError, match="whole number"):
            writer.write_raw(b"\x00\x01\x02")
        with pytest.raises(ValueError, match="both"):
            writer.annotate(0, 1, freq_lower_hz=1.0)
        with pytest.raises(ValueError, match="cellwatch:"):
            writer.annotate(0, 1, extra={"tech": "gsm"})


def test_every_cu8_byte_converts_to_its_exact_sample_value() -> None:
    """(b - 127.5) / 127.5 in float32 for all 256 byte values, as I and as Q."""
    from dsp.iq import cu8_to_complex64

    values = np.arange(256, dtype=np.uint8)
    raw = np.column_stack([values, values[::-1]]).ravel()
    samples = cu8_to_complex64(raw.tobytes())
    expected = (values.astype(np.float32) - np.float32(127.5)) / np.float32(127.5)
    assert samples.dtype == np.complex64 and samples.shape == (256,)
    np.testing.assert_array_equal(samples.real, expected)
    np.testing.assert_array_equal(samples.imag, expected[::-1])
    assert samples.real[0] == -1.0 and samples.real[255] == 1.0


def test_sample_counts_written_as_floats(tmp_path: Path) -> None:
    """Found by the recording fuzzer: ``core:sample_start`` 50.0 passed the SigMF schema and
    crashed the block loop. A whole number is taken as such; a fraction is refused, named."""
    base = _write(tmp_path / "f", _signal(100))
    _rewrite_meta(base, lambda m: m["captures"].append({"core:sample_start": 50.0, "core:frequency": 1.8e9}))
    recording = open_recording(base)
    assert [b.n_samples for b in recording.blocks(1000)] == [50, 50]
    _rewrite_meta(base, lambda m: m["captures"][1].update({"core:sample_start": 50.5}))
    with pytest.raises(InputError) as err:  # the schema or the reader: either names the field
        open_recording(base)
    assert err.value.field == "captures[1].core:sample_start"
    _rewrite_meta(base, lambda m: (m["captures"][1].update({"core:sample_start": 50.0}),
                                   m["annotations"].append({"core:sample_start": 10.0, "core:sample_count": 20.0})))
    (annotation,) = open_recording(base).info.annotations
    assert (annotation.sample_start, annotation.sample_count) == (10, 20)
    assert isinstance(annotation.sample_start, int) and isinstance(annotation.sample_count, int)
