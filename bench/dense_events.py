"""Events per phone in a dense scene, through the whole chain: is every alert a phone?

A correct place for each phone is not enough: an alert beside it, in a cell where no
phone is, sends staff to search the wrong cell. This benchmark renders a dense scene —
two GSM calls on adjacent timeslots of one ARFCN in two wings, a third call two ARFCNs
away, an LTE data session on a carrier over them
(``tests/data/scenarios/two_calls_one_arfcn.toml``) — for two installations of the demo
prison: door antennas (``demo_prison_doors.toml``, 64 sensors, gain 14.4 dB) and three
omni sensors per corridor (``demo_prison.toml``, gain 28 dB), several seeds each, and runs
exactly what a user runs: ``cellwatch simulate`` -> ``cellwatch detect`` -> ``cellwatch
locate`` -> the scorer of ``cellwatch eval locate``.

Per run: the phones (truth transmissions some sensor heard), the events and alerts, the
**alerts in a place without a phone** (the figure that matters to staff), the events
beyond one per phone (fragments), and % of phones in the right cell or zone. An alert
without a phone is either a phone's own event placed in the wrong cell (a localization
error: with corridor sensors, often the facing cell) or an *extra* alert beside the
phone's event (a fragment of its bursts): the two are counted apart.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS_DIR, header, pyplot, save_figure, write_json
from service.commands.evaluate import score_events, truth_transmissions

log = logging.getLogger(__name__)

SCENARIO = REPO / "tests" / "data" / "scenarios" / "two_calls_one_arfcn.toml"
SITES = (  # (label, site file, receiver gain dB)
    ("door antennas", REPO / "calibration" / "sites" / "demo_prison_doors.toml", 14.4),
    ("3 omni sensors per corridor", REPO / "calibration" / "sites" / "demo_prison.toml", 28.0),
)


def _cellwatch(*args: object) -> None:
    """``cellwatch ARGS`` from the code this benchmark imports (a checkout on PYTHONPATH too)."""
    result = subprocess.run([sys.executable, "-m", "service.cli", *map(str, args)], capture_output=True, text=True,
                            timeout=900, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"cellwatch {args[0]} failed ({result.returncode}): {result.stderr[-2000:]}")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def one_run(work: Path, site_path: Path, gain_db: float, seed: int) -> dict[str, Any]:
    """simulate -> detect -> locate -> score one seed; the figures of :func:`score_run`."""
    scenario = work / "scenario.toml"
    scenario.write_text(SCENARIO.read_text().replace("gain_db = 28.0", f"gain_db = {gain_db}"))
    _cellwatch("simulate", "--site", site_path, "--scenario", scenario, "--out", work / "sim", "--seed", seed)
    _cellwatch("detect", *sorted((work / "sim").glob("*.sigmf-meta")), "--out", work / "detections.jsonl")
    _cellwatch("locate", "--site", site_path, work / "detections.jsonl", "--out", work / "events.jsonl")
    return score_run(_jsonl(work / "sim" / "truth.jsonl"), _jsonl(work / "events.jsonl"))


def score_run(truth: list[dict[str, Any]], events: list[dict[str, Any]]) -> dict[str, Any]:
    """Alerts in places without a phone, fragments, and the scorer's figures for one run."""
    phones = [t for t in truth_transmissions(truth, 10.0) if t["audible"]]
    places = {t["place"] for t in phones}
    score = score_events(truth, events)
    alerts = [e for e in events if e.get("priority") == "alert"]
    wrong = [e for e in alerts if (e.get("cell") or e.get("zone")) not in places]
    per_event = score["per_event"]
    headline = set(per_event["matched_event_ids"])
    extra = [e for e in wrong if str(e.get("event_id")) not in headline]  # beside a phone's own event
    n_bursts = sum(int(e.get("n_bursts") or 0) for e in events)
    return {
        "n_phones": len(phones),
        "n_events": len(events),
        "n_alerts": len(alerts),
        "n_alerts_without_phone": len(wrong),
        "n_extra_alerts_without_phone": len(extra),
        "alerts_without_phone": [{"place": e.get("cell") or e.get("zone"), "n_bursts": e.get("n_bursts"),
                                  "phone_event": str(e.get("event_id")) in headline} for e in wrong],
        "n_extra_events": max(len(events) - len(phones), 0),
        "n_event_bursts": n_bursts,
        "pct_correct_place": score["pct_correct_place"],
        "pct_correct_wing_floor": score["pct_correct_wing_floor"],
        "n_missed": score["n_missed"],
        "n_spurious_events": per_event["n_spurious"],
    }


def run(out_dir: Path = RESULTS_DIR, quick: bool = False, seed: int = 1,
        seeds: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Every installation at seeds ``seed + 1`` onwards (2 quick, 6 full); write
    ``dense_events.json`` and ``.png``."""
    seeds = seeds or tuple(range(seed + 1, seed + (3 if quick else 7)))
    result: dict[str, Any] = {**header("dense_events", quick), "scenario": str(SCENARIO.relative_to(REPO)),
                              "seeds": list(seeds), "installations": []}
    for label, site_path, gain_db in SITES:
        runs = []
        for seed in seeds:
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="cellwatch-dense-") as tmp:
                figures = one_run(Path(tmp), site_path, gain_db, seed)
            runs.append({"seed": seed, **figures})
            log.info("dense_events site=%r seed=%d phones=%d events=%d alerts=%d without_phone=%d correct=%.0f%% "
                     "wall=%.1f s", label, seed, figures["n_phones"], figures["n_events"], figures["n_alerts"],
                     figures["n_alerts_without_phone"], figures["pct_correct_place"], time.perf_counter() - started)
        n_phones = sum(r["n_phones"] for r in runs)
        result["installations"].append({
            "label": label, "site_file": str(site_path.relative_to(REPO)), "gain_db": gain_db, "runs": runs,
            "n_phones": n_phones,
            "events_per_phone": sum(r["n_events"] for r in runs) / max(n_phones, 1),
            "n_alerts_without_phone": sum(r["n_alerts_without_phone"] for r in runs),
            "n_extra_alerts_without_phone": sum(r["n_extra_alerts_without_phone"] for r in runs),
            "n_runs_with_alert_without_phone": sum(1 for r in runs if r["n_alerts_without_phone"]),
            "pct_correct_place": sum(r["pct_correct_place"] * r["n_phones"] for r in runs) / max(n_phones, 1),
        })
    write_json(out_dir / "dense_events.json", result)
    plot(result, out_dir / "dense_events.png")
    return result


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    return {i["label"]: {k: i[k] for k in ("events_per_phone", "n_alerts_without_phone",
                                             "n_extra_alerts_without_phone", "n_runs_with_alert_without_phone",
                                             "pct_correct_place")}
            for i in result["installations"]}


def format_summary(section: dict[str, Any]) -> str:
    lines = [f"Dense scene ({section['mode']}), whole chain: events per phone, alerts where no phone is"]
    for label, figures in section.items():
        if isinstance(figures, dict):
            lines.append(f"  {label:<28} {figures['events_per_phone']:.2f} events/phone, "
                         f"{figures['n_alerts_without_phone']} alerts without a phone "
                         f"({figures['n_extra_alerts_without_phone']} beside a phone's own event; "
                         f"{figures['n_runs_with_alert_without_phone']} runs), "
                         f"{figures['pct_correct_place']:.0f} % right place")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    installations = result["installations"]
    fig, axes = plt.subplots(1, len(installations), figsize=(5.5 * len(installations), 3.6), squeeze=False)
    for ax, inst in zip(axes[0], installations, strict=True):
        seeds = [str(r["seed"]) for r in inst["runs"]]
        x = range(len(seeds))
        ax.bar([i - 0.27 for i in x], [r["n_phones"] for r in inst["runs"]], 0.27, label="phones")
        ax.bar(list(x), [r["n_events"] for r in inst["runs"]], 0.27, label="events")
        ax.bar([i + 0.27 for i in x], [r["n_alerts_without_phone"] for r in inst["runs"]], 0.27,
               label="alerts where no phone is", color="tab:red")
        ax.bar([i + 0.27 for i in x], [r["n_extra_alerts_without_phone"] for r in inst["runs"]], 0.27,
               label="... of them beside a phone's event", color="darkred")
        ax.set_xticks(list(x), seeds)
        ax.set_xlabel("seed")
        ax.set_title(f"{inst['label']}: {inst['pct_correct_place']:.0f} % right place", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("count")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Dense scene (2 calls on adjacent timeslots, 1 call, 1 LTE session), whole chain")
    return save_figure(fig, path)
