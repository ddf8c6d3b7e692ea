"""The node's durable outbox: numbering that never repeats, durability, bounded size, disk full;
the IQ snippet queue beside the detections."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from dsp.errors import InputError
from dsp.records import Detection
from dsp.snippets import IQSnippet
from sdr.outbox import Outbox, OutboxFullError

REPO = Path(__file__).resolve().parents[2]


def detections(n: int, start: int = 0) -> list[Detection]:
    return [Detection("A1-S1", 1.7e9 + i * 0.01, 546e-6, 902.4e6, 200e3, -30.0 - i % 7, 15.0, "gsm",
                      sample_start=i, seq=999) for i in range(start, start + n)]


def test_seqs_are_persistent_and_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with Outbox(path, "A1-S1") as box:
        assert box.append(detections(3)) == [1, 2, 3]
        stream = box.stream_id
        assert box.forget([1, 2, 3]) == 3
        assert box.n_pending == 0
    with Outbox(path, "A1-S1") as box:
        # empty outbox, reopened: numbering continues (SQLite's rowid would restart at 1)
        assert box.append(detections(2, start=3)) == [4, 5]
        assert box.stream_id == stream
        assert box.last_seq == 5
        assert box.stats().n_acked == 3


def test_pending_returns_the_stored_detections_with_their_seq(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite", "A1-S1") as box:
        sent = detections(10)
        box.append(sent)
        got = box.pending(limit=4, after_seq=3)
        assert [d.seq for d in got] == [4, 5, 6, 7]
        assert got[0] == replace(sent[3], seq=4)  # seq replaced, all else intact
        assert box.forget([4, 5, 99]) == 2  # unknown seqs are ignored
        assert [d.seq for d in box.pending(limit=100)] == [1, 2, 3, 6, 7, 8, 9, 10]


def test_rejected_and_acked_are_counted_separately_and_persist(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox(path, "A1-S1") as box:
        box.append(detections(5))
        box.forget([1, 2])
        box.forget([3], rejected=True)
    with Outbox(path, "A1-S1") as box:
        stats = box.stats()
        assert (stats.n_acked, stats.n_rejected, stats.n_pending, stats.next_seq) == (2, 1, 2, 6)
        assert stats.oldest_pending_s is not None


def test_an_outbox_belongs_to_one_node(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    Outbox(path, "A1-S1").close()
    with pytest.raises(InputError, match="belongs to node 'A1-S1'"):
        Outbox(path, "A1-S2")


def test_a_file_that_is_not_an_outbox_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(InputError, match=r"o\.sqlite"):
        Outbox(path, "A1-S1")


@pytest.mark.parametrize(("policy", "kept"), [("drop_oldest", list(range(6, 16))), ("drop_newest", list(range(1, 11)))])
def test_full_outbox_drops_by_policy_and_counts(tmp_path: Path, policy: str, kept: list[int],
                                                caplog: pytest.LogCaptureFixture) -> None:
    with Outbox(tmp_path / "o.sqlite", "A1-S1", max_pending=10, when_full=policy) as box:  # type: ignore[arg-type]
        box.append(detections(8))
        assert box.append(detections(7, start=8)) == list(range(9, 16))  # seqs consumed either way
        assert [d.seq for d in box.pending(100)] == kept
        assert box.n_pending == 10
        assert box.stats().n_overflow_dropped == 5
    assert "discarded" in caplog.text


def test_disk_full_raises_and_leaves_the_outbox_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox(path, "A1-S1", max_bytes=64 * 1024) as box:  # SQLite max_page_count: SQLITE_FULL like a full disk
        box.append(detections(10))
        with pytest.raises(OutboxFullError, match="full"):
            for i in range(1000):
                box.append(detections(50, start=10 + 50 * i))
        n_pending, last_seq = box.n_pending, box.last_seq
        with pytest.raises(OutboxFullError):
            box.append(detections(50))
        assert (box.n_pending, box.last_seq) == (n_pending, last_seq)  # rolled back, no seq consumed
        box.forget(range(1, last_seq + 1))  # acks still work when full, and free room
        assert box.append(detections(1)) == [last_seq + 1]
    with Outbox(path, "A1-S1") as box:
        assert box.last_seq == last_seq + 1 and box.n_pending == 1


def test_uses_wal_and_full_synchronous(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, "A1-S1")
    try:
        assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        other = sqlite3.connect(path)
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        other.close()
    finally:
        box.close()


def test_append_is_durable_when_it_returns_even_if_the_process_dies(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    code = (
        "import os, signal, sys\n"
        "from sdr.outbox import Outbox\n"
        "from tests.sdr.test_outbox import detections\n"
        f"box = Outbox({str(path)!r}, 'A1-S1')\n"
        "for i in range(20):\n"
        "    box.append(detections(5, start=5 * i))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, timeout=30)
    assert result.returncode == -9, result.stderr.decode()
    with Outbox(path, "A1-S1") as box:
        got = box.pending(1000)
        assert [d.seq for d in got] == list(range(1, 101))
        assert [d.sample_start for d in got] == list(range(100))


def test_concurrent_appends_get_distinct_contiguous_seqs(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite", "A1-S1") as box:
        results: list[list[int]] = []

        def worker() -> None:
            for _ in range(20):
                results.append(box.append(detections(3)))

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seqs = sorted(s for r in results for s in r)
        assert seqs == list(range(1, 241))
        assert all(r == list(range(r[0], r[0] + 3)) for r in results)  # each call's seqs are contiguous


# -- IQ snippets: a second queue in the same file ------------------------------------------------


def snippets(n: int, start: int = 0) -> list[IQSnippet]:
    return [IQSnippet("A1-S1", 1.7e9 + i, 902_400_000, 2.4e6, bytes([i % 256, 255 - i % 256]) * 3700,
                      1.7e9 + i + 5e-4, 902.4e6, 1200, 1300, seq=999) for i in range(start, start + n)]


def test_snippets_have_their_own_numbering_and_stream(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox(path, "A1-S1") as box:
        assert box.append(detections(3)) == [1, 2, 3]
        assert box.append_snippets(snippets(2)) == [1, 2]  # not 4, 5: a gap in either would mean a loss
        assert box.snippet_stream_id != box.stream_id
        stream, snippet_stream = box.stream_id, box.snippet_stream_id
        got = box.pending_snippets(10)
        assert [s.seq for s in got] == [1, 2] and got[1].data == snippets(2)[1].data
        assert box.forget_snippets([1]) == 1
        assert (box.n_pending, box.n_snippets_pending) == (3, 1)
    with Outbox(path, "A1-S1") as box:  # all of it survives a restart
        assert (box.stream_id, box.snippet_stream_id) == (stream, snippet_stream)
        assert box.append_snippets(snippets(1)) == [3]
        assert [seq for seq, _ in box.pending_snippets_json(10)] == [2, 3]
        assert box.snippet_stats().n_acked == 1 and box.stats().n_acked == 0


def test_an_outbox_from_before_snippets_gains_the_queue_and_keeps_its_detections(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    db = sqlite3.connect(path, isolation_level=None)  # the layout this file had before snippets
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("CREATE TABLE pending (seq INTEGER PRIMARY KEY, submitted_s REAL NOT NULL, payload TEXT NOT NULL)")
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("schema", "1"), ("node_id", "A1-S1"), ("stream_id", "ab" * 16),
                                                       ("next_seq", "8"), ("n_acked", "5"),
                                                       ("n_overflow_dropped", "0"), ("n_rejected", "0")])
    db.executemany("INSERT INTO pending VALUES (?, 0, ?)",
                   [(6 + i, replace(d, seq=6 + i).to_json()) for i, d in enumerate(detections(2))])
    db.close()
    with Outbox(path, "A1-S1") as box:
        assert box.stream_id == "ab" * 16 and [d.seq for d in box.pending(10)] == [6, 7]
        assert box.append(detections(1)) == [8]
        assert box.append_snippets(snippets(1)) == [1]


def test_snippets_are_capped_oldest_first(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite", "A1-S1", max_snippets_pending=3) as box:
        box.append_snippets(snippets(5))
        assert [s.seq for s in box.pending_snippets(10)] == [3, 4, 5]
        assert box.snippet_stats().n_overflow_dropped == 2


def test_detections_take_the_room_of_waiting_snippets_when_the_file_is_full(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite", "A1-S1", max_bytes=512 * 1024) as box:
        with pytest.raises(OutboxFullError):
            for i in range(1000):
                box.append_snippets(snippets(4, start=4 * i))
        n_snippets = box.n_snippets_pending
        assert n_snippets > 20
        for i in range(20):  # ~50 kB of detections: room is made by dropping snippets
            box.append(detections(50, start=50 * i))
        assert box.n_pending == 1000 and box.n_snippets_pending < n_snippets
        assert box.snippet_stats().n_overflow_dropped == n_snippets - box.n_snippets_pending
