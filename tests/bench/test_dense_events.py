"""The dense-scene benchmark's scoring: an alert in a place where no phone is counts
against the chain, an alert on a phone's place does not (the chain itself runs in
tests/service/test_locate_cli.py, the full benchmark in ``make bench``)."""

from __future__ import annotations

from typing import Any

from bench.dense_events import score_run

T0 = 1_767_648_600.0


def _burst(k: int, cell: str) -> dict[str, Any]:
    return {"phone_id": "a", "session_id": "a:call", "tech": "gsm", "kind": "gsm_normal",
            "t_start_s": T0 + k * 4.615e-3, "duration_s": 546e-6, "freq_hz": 902.4e6, "bandwidth_hz": 200e3,
            "cell": cell, "zone": None, "wing": "A", "floor": 1, "snr_db": {"A1-S1": 30.0}}


def _event(cell: str | None, zone: str | None, n_bursts: int, priority: str = "alert") -> dict[str, Any]:
    return {"event_id": f"ev-{cell or zone}-{n_bursts}", "t_start_s": T0, "t_end_s": T0 + 0.5, "tech": "gsm",
            "freq_hz": 902.4e6, "n_bursts": n_bursts, "cell": cell, "zone": zone, "wing": "A", "floor": 1,
            "priority": priority, "confidence": 0.9, "candidates": [{"place": cell or zone, "p": 0.9}]}


def test_an_alert_where_no_phone_is_counts_and_the_phones_own_does_not() -> None:
    truth = [_burst(k, "A-1-05") for k in range(100)]
    clean = score_run(truth, [_event("A-1-05", None, 100)])
    assert clean["n_phones"] == 1 and clean["n_events"] == 1 and clean["n_alerts_without_phone"] == 0
    assert clean["n_extra_events"] == 0 and clean["pct_correct_place"] == 100.0

    # a fragment beside the call, alerting in the next cell; a low-priority zone event is no alert
    noisy = score_run(truth, [_event("A-1-05", None, 80), _event("A-1-06", None, 20),
                              _event(None, "A-1-corridor", 3, priority="low")])
    assert noisy["n_events"] == 3 and noisy["n_alerts"] == 2 and noisy["n_extra_events"] == 2
    assert noisy["n_alerts_without_phone"] == 1 and noisy["n_extra_alerts_without_phone"] == 1
    assert noisy["alerts_without_phone"] == [{"place": "A-1-06", "n_bursts": 20, "phone_event": False}]

    # the phone's own event placed in the next cell: an alert without a phone, but no extra one
    misplaced = score_run(truth, [_event("A-1-06", None, 100)])
    assert misplaced["n_alerts_without_phone"] == 1 and misplaced["n_extra_alerts_without_phone"] == 0
    assert misplaced["pct_correct_place"] == 0.0
