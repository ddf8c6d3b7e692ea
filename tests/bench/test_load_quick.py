"""The load benchmark (bench/load.py) end to end in a short version: real nodes, real service, figures.

20 nodes with the real node delivery code (durable outbox, CURVE, acks) against a real
``cellwatch serve`` for two rate steps of 5 s, GSM calls on the site's sensors at real
time meanwhile. Asserted: nothing lost or duplicated, every step's figures measured,
RSS sampled, JSON and PNG written. Rates, "held" and latencies are printed, not asserted:
they measure the machine (shared with the test run) as much as the code; `make bench` has them.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.load import run


def test_load_quick_loses_nothing_and_writes_its_figures(tmp_path: Path) -> None:
    result = run(tmp_path / "out", quick=True, n_nodes=20, tmp=tmp_path / "work", step_s=5.0)
    totals = result["totals"]
    assert totals["nothing_lost"] and totals["all_flushed"], totals
    assert totals["n_stored"] == totals["n_load_offered"] + totals["n_call_detections"] > 0
    assert totals["n_duplicate_keys"] == 0 and totals["n_seq_gaps"] == 0 and totals["n_refused_at_node"] == 0
    assert [s["target_per_s"] for s in result["steps"]] == [200.0, 800.0]
    for step in result["steps"]:
        assert step["offered_per_s"] > 0 and step["acked_per_s"] > 0 and isinstance(step["held"], bool), step
    assert result["live_latency_s"]["n"] > 0 and result["live_latency_p50_s"] > 0
    assert result["rss_mb_max"] > 10 and len(result["timeline"]) >= 8
    saved = json.loads((tmp_path / "out" / "load.json").read_text())
    assert saved["mode"] == "quick" and saved["largest_load_held_per_s"] == result["largest_load_held_per_s"]
    assert (tmp_path / "out" / "load.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for s in result["steps"]:
        print(f"\nload quick: {s['target_per_s']:.0f}/s from 20 nodes -> {s['acked_per_s']:.0f}/s stored and acked, "
              f"live feed p50 {s['live_latency_p50_s']}, p99 {s['live_latency_p99_s']} s, "
              f"service {s['service_cpu_cores']:.2f} cores, {s['service_rss_mb_max']:.0f} MB")
    print(f"totals {totals}")
