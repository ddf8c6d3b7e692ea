"""IQ snippets: the record and its wire form, the rate limit, and cutting bursts out of the ring."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.errors import InputError
from dsp.iq import cu8_to_complex64
from dsp.records import Detection, IQBlock
from dsp.snippets import (
    MAX_SNIPPET_SAMPLES,
    NO_POSITION,
    NOT_IN_RING,
    RATE_LIMITED,
    TAKEN,
    IQRing,
    IQSnippet,
    SnippetCutter,
    SnippetPolicy,
    SnippetRateLimiter,
)
from dsp.wire import (
    MAX_MESSAGE_BYTES,
    SnippetBatch,
    decode_message,
    encode_message,
    encode_snippet_items,
)

RATE = 2.4e6
CENTER = 902_400_000
T0 = 1.7e9
STREAM = "0123456789abcdef0123456789abcdef"
FRAME_S = 120.0 / 26e3  # a GSM TDMA frame, 4.615 ms


def snippet(**over: object) -> IQSnippet:
    fields: dict[str, object] = {
        "sensor_id": "A1-S1", "t_start_s": T0, "center_freq_hz": CENTER, "sample_rate_hz": RATE,
        "data": bytes(range(256)) * 20, "detection_t_start_s": T0 + 5e-4, "detection_freq_hz": 902.4e6,
        "burst_offset": 1200, "burst_samples": 1310, "burst_bandwidth_hz": 250e3, "gain_db": 28.0,
        "tech": "gsm", "session_id": "A1-S1:3", "sample_index": 4242, "seq": 7}
    fields.update(over)
    return IQSnippet(**fields)  # type: ignore[arg-type]


def detection(t_s: float, *, session: str | None = "A1-S1:1", sample_start: int | None = 0,
              sample_count: int | None = 1310, freq_hz: float = 902.4e6) -> Detection:
    return Detection("A1-S1", t_s, sample_count / RATE if sample_count else 546e-6, freq_hz, 250e3, -30.0, 20.0,
                     "gsm", sample_start=sample_start, sample_count=sample_count, session_id=session)


# -- record and wire ---------------------------------------------------------------------------


@settings(deadline=None)
@given(data=st.integers(1, 300).flatmap(lambda n: st.binary(min_size=2 * n, max_size=2 * n)),
       t_s=st.floats(1e9, 2e9), gain=st.one_of(st.none(), st.floats(0.0, 49.6)), seq=st.integers(1, 2**40))
def test_wire_form_round_trips(data: bytes, t_s: float, gain: float | None, seq: int) -> None:
    n = len(data) // 2
    s = snippet(data=data, t_start_s=t_s, gain_db=gain, seq=seq, burst_offset=0, burst_samples=n)
    back = IQSnippet.from_json(s.to_json())
    assert back.to_dict() == s.to_dict() and back.data == data and back.n_samples == n
    assert back.key == ("A1-S1", T0 + 5e-4, 902.4e6)


@pytest.mark.parametrize(("change", "field"), [
    ({"data_b64": "not base64!"}, "data_b64"),
    ({"data_b64": "AA=="}, "data_b64"),  # one byte: half a sample
    ({"data_b64": ""}, "data_b64"),
    ({"burst_samples": 5000}, "burst_samples"),  # past the end of the samples
    ({"burst_offset": -1}, "burst_samples"),
    ({"datatype": "cf32_le"}, "datatype"),
    ({"tech": "wifi"}, "tech"),
    ({"center_freq_hz": 902.4e6}, "center_freq_hz"),  # integer Hz
    ({"sample_rate_hz": 0}, "sample_rate_hz"),
    ({"t_start_s": None}, "t_start_s"),
    ({"v": 2}, "v"),
    ({"colour": "red"}, "colour"),
    ({"sensor_id": ""}, "sensor_id"),
])
def test_bad_fields_are_named(change: dict[str, object], field: str) -> None:
    obj = {**snippet().to_dict(), **change}
    with pytest.raises(InputError) as err:
        IQSnippet.from_dict(obj)
    assert err.value.field == field


def test_an_oversized_snippet_is_refused_before_decoding() -> None:
    obj = snippet().to_dict()
    obj["data_b64"] = "AAAA" * ((2 * MAX_SNIPPET_SAMPLES + 300) // 3)
    with pytest.raises(InputError, match="more than"):
        IQSnippet.from_dict(obj)


def test_snippet_batches_travel_in_their_own_message_type() -> None:
    items = [snippet(seq=1), snippet(seq=2, data=b"\x80\x7f" * 50, burst_offset=0, burst_samples=50)]
    message = encode_message(SnippetBatch("A1-S1", STREAM, tuple(items)))
    assert encode_snippet_items("A1-S1", STREAM, [s.to_json() for s in items]) == message  # spliced, same bytes
    decoded = decode_message(message)
    assert isinstance(decoded, SnippetBatch) and decoded.seqs == (1, 2)
    assert [s.to_dict() for s in decoded.snippets] == [s.to_dict() for s in items]
    bad = {**items[1].to_dict(), "data_b64": "???"}
    decoded = decode_message(encode_snippet_items("A1-S1", STREAM, [items[0].to_json(), json.dumps(bad)]))
    assert isinstance(decoded, SnippetBatch) and decoded.seqs == (1,)
    assert [r.seq for r in decoded.rejected] == [2] and "data_b64" in decoded.rejected[0].reason


def test_a_snippet_message_never_exceeds_the_message_limit() -> None:
    big = snippet(data=b"\x01" * (2 * MAX_SNIPPET_SAMPLES), burst_samples=100).to_json()
    assert len(big) < MAX_MESSAGE_BYTES // 2  # two full snippets fit one message ...
    encode_snippet_items("A1-S1", STREAM, [big, big])
    with pytest.raises(ValueError, match="over"):  # ... three do not, and the sender never makes one
        encode_snippet_items("A1-S1", STREAM, [big, big, big])


# -- rate limit ---------------------------------------------------------------------------------


def _run(limiter: SnippetRateLimiter, dets: list[Detection]) -> list[Detection]:
    taken = []
    for d in dets:
        if limiter.allows(d):
            limiter.record(d)
            taken.append(d)
    return taken


def test_a_call_gives_its_first_two_bursts_then_one_every_interval() -> None:
    call = [detection(T0 + i * FRAME_S) for i in range(int(60.0 / FRAME_S))]  # 60 s, one burst a frame
    taken = _run(SnippetRateLimiter(SnippetPolicy(first_per_session=2, interval_s=10.0)), call)
    starts = [d.t_start_s - T0 for d in taken]
    assert starts[:2] == pytest.approx([0.0, FRAME_S], abs=1e-6)
    assert len(taken) == 7  # 0, 1 frame, then ~10, 20, 30, 40, 50 s
    assert all(10.0 <= b - a < 10.0 + FRAME_S for a, b in itertools.pairwise(starts[1:]))


def test_the_node_wide_cap_holds_whatever_the_sessions() -> None:
    many = [detection(T0 + 0.1 * i, session=f"A1-S1:{i}") for i in range(1200)]  # 120 s of new sessions
    taken = _run(SnippetRateLimiter(SnippetPolicy(max_per_minute=60)), many)
    times = np.array([d.t_start_s for d in taken])
    for t in times:  # no 60 s window holds more than 60
        assert np.count_nonzero((times > t - 60.0) & (times <= t)) <= 60
    assert len(taken) >= 119  # and the cap is used


def test_sessions_expire_and_state_stays_bounded() -> None:
    policy = SnippetPolicy(first_per_session=1, interval_s=1000.0, session_ttl_s=30.0, max_sessions=50)
    limiter = SnippetRateLimiter(policy)
    assert len(_run(limiter, [detection(T0), detection(T0 + 1.0)])) == 1
    assert len(_run(limiter, [detection(T0 + 100.0)])) == 1  # quiet for longer than the ttl: a new session
    _run(limiter, [detection(T0 + 200.0 + i * 1e-3, session=str(i)) for i in range(500)])
    assert limiter.n_sessions <= 50


def test_a_stream_clock_that_jumps_back_starts_afresh() -> None:
    limiter = SnippetRateLimiter(SnippetPolicy(first_per_session=1, interval_s=10.0))
    assert len(_run(limiter, [detection(T0 + 100.0), detection(T0 + 101.0)])) == 1
    assert len(_run(limiter, [detection(T0)])) == 1  # a replay restarted from its beginning


# -- cutting ------------------------------------------------------------------------------------


def _stream_bytes(n_samples: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, 2 * n_samples, dtype=np.uint8).tobytes()


def _blocks(raw: bytes, sizes: list[int], *, first_index: int = 0, center: int = CENTER,
            as_bytes: bool = False) -> list[IQBlock]:
    """Blocks of samples, or (``as_bytes``) of the cu8 bytes themselves, as a dongle's are."""
    out, pos = [], 0
    for size in sizes:
        chunk = np.frombuffer(raw[2 * pos : 2 * (pos + size)], dtype=np.uint8)
        make = IQBlock.from_cu8 if as_bytes else lambda b, *a, **k: IQBlock(cu8_to_complex64(b), *a, **k)
        out.append(make(chunk, center, RATE, T0 + (first_index + pos) / RATE, sensor_id="A1-S1",
                        sample_index=first_index + pos, gain_db=28.0))
        pos += size
    return out


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(100, 9000), min_size=4, max_size=12), as_bytes=st.booleans())
def test_the_snippet_holds_the_bytes_received_whatever_the_block_length(sizes: list[int], as_bytes: bool) -> None:
    n = sum(sizes)
    raw = _stream_bytes(n)
    cutter = SnippetCutter(SnippetPolicy(margin_s=0.5e-3, ring_s=1.0))
    start = n // 2
    count = min(1310, n - start)
    for block in _blocks(raw, sizes, as_bytes=as_bytes):
        cutter.observe(block)
    (s,) = cutter.cut([detection(T0 + start / RATE, sample_start=start, sample_count=count)], CENTER)
    margin = 1200
    first, stop = max(0, start - margin), min(n, start + count + margin)
    assert s.data == raw[2 * first : 2 * stop]  # cu8 -> complex64 -> cu8 is exact
    assert (s.sample_index, s.burst_offset, s.burst_samples) == (first, start - first, count)
    assert s.t_start_s == pytest.approx(T0 + first / RATE, abs=1e-6)
    assert (s.center_freq_hz, s.gain_db, s.tech, s.session_id) == (CENTER, 28.0, "gsm", "A1-S1:1")


def test_margins_are_clipped_to_what_was_received_and_long_bursts_are_cut() -> None:
    raw = _stream_bytes(20_000)
    cutter = SnippetCutter(SnippetPolicy(margin_s=0.5e-3, first_per_session=10, max_samples=3000))
    for block in _blocks(raw, [5000] * 4):
        cutter.observe(block)
    early, long_ = cutter.cut([detection(T0, sample_start=300, sample_count=1000),
                               detection(T0 + 0.001, sample_start=8000, sample_count=9000)], CENTER)
    assert (early.sample_index, early.burst_offset, early.n_samples) == (0, 300, 300 + 1000 + 1200)
    assert (long_.sample_index, long_.n_samples, long_.burst_offset) == (6800, 3000, 1200)
    assert long_.burst_samples == 1800 and long_.data == raw[2 * 6800 : 2 * 9800]


def test_missing_samples_give_no_snippet_and_say_why() -> None:
    raw = _stream_bytes(40_000)
    blocks = _blocks(raw, [10_000] * 4)
    gap = replace(blocks[2], sample_index=blocks[2].sample_index + 500, n_dropped=500)  # 500 samples lost
    retuned = replace(blocks[3], center_freq_hz=CENTER + 2_000_000, sample_index=gap.sample_index + 10_000)
    policy = SnippetPolicy(first_per_session=100, ring_s=0.01)  # 24,000 samples: the first block goes
    cutter = SnippetCutter(policy)
    for block in (blocks[0], blocks[1], gap, retuned):
        cutter.observe(block)
    assert cutter.ring.n_samples <= 24_000 + 10_000 and cutter.ring.n_blocks == 3
    cases = [detection(T0, sample_start=2000),  # evicted from the ring
             detection(T0 + 0.01, sample_start=19_500, sample_count=800),  # runs into the gap
             detection(T0 + 0.02, sample_start=31_000),  # on another tuning: not this pipeline's samples
             detection(T0 + 0.03, sample_start=None, sample_count=None),
             detection(T0 + 0.04, sample_start=12_000)]  # fine
    got = cutter.cut(cases, CENTER)
    assert [s.sample_index for s in got] == [12_000 - 1200]
    assert dict(cutter.counts) == {TAKEN: 1, NOT_IN_RING: 3, NO_POSITION: 1, RATE_LIMITED: 0}
    assert cutter.cut([detection(T0 + 0.05, sample_start=31_000)], CENTER + 2_000_000)  # that one's own


def test_a_burst_that_was_missed_keeps_its_sessions_share() -> None:
    raw = _stream_bytes(10_000)
    cutter = SnippetCutter(SnippetPolicy(first_per_session=1, interval_s=100.0))
    for block in _blocks(raw, [10_000]):
        cutter.observe(block)
    assert cutter.cut([detection(T0, sample_start=50_000)], CENTER) == []  # not in the ring
    assert len(cutter.cut([detection(T0 + 0.005, sample_start=5000)], CENTER)) == 1  # still gets its first
    assert cutter.cut([detection(T0 + 0.01, sample_start=6000)], CENTER) == []
    assert cutter.counts[RATE_LIMITED] == 1


def test_the_ring_is_bounded_by_its_duration_plus_one_block() -> None:
    ring = IQRing(0.05)  # 120,000 samples
    raw = _stream_bytes(7000)
    for i in range(200):
        ring.append(IQBlock(cu8_to_complex64(raw), CENTER, RATE, T0 + i * 7000 / RATE, "A1-S1", i * 7000))
        assert ring.n_samples < 120_000 + 7000
    assert ring.n_samples >= 120_000


def test_bad_policies_are_refused_naming_the_setting() -> None:
    with pytest.raises(InputError) as err:
        SnippetPolicy(ring_s=0.0)
    assert err.value.field == "snippets.ring_s"
