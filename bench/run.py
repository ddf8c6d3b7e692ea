"""``python -m bench.run [--quick] [--only NAME...]``: run the detector benchmarks, print a summary.

Each benchmark writes its JSON and PNG into ``--out`` (default ``bench/results/``);
this entry point adds ``summary.json`` (merged with the sections of earlier runs that
were not re-run) and prints one compact table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, write_json

log = logging.getLogger(__name__)

BENCHMARKS = ("sensitivity", "false_alarms", "throughput", "localization", "dense_events", "node_cpu",
              "service_ingest", "load")
_MODULES = {"sensitivity": "detect_sensitivity", "false_alarms": "detect_false_alarms",
            "throughput": "detect_throughput", "localization": "localization", "dense_events": "dense_events",
            "node_cpu": "node_cpu", "service_ingest": "service_ingest", "load": "load"}


def _runner(name: str) -> Callable[..., dict[str, Any]]:
    module = importlib.import_module(f"bench.{_MODULES[name]}")
    run: Callable[..., dict[str, Any]] = module.run
    return run


def summarize(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """The few figures of one benchmark that go into ``summary.json``."""
    head = {"mode": result.get("mode", "full"), "created_utc": result.get("created_utc", "")}
    if name == "sensitivity":
        return {**head, "waveforms": {
            w: {"gap_db_at_pd90": e.get("gap_db_at_pd90"),
                "gap_db_at_pd90_ci95": e.get("gap_db_at_pd90_ci95"),
                "snr_db_at_pd90": e.get("snr_db_at_pd90"),
                "theory_snr_db_at_pd90": e["theory_snr_db_at_pd90"],
                "rtl_sdr_gap_db_at_pd90": e.get("rtl_sdr", {}).get("gap_db_at_pd90")}
            for w, e in result["waveforms"].items()}}
    if name == "false_alarms":
        return {**head, "hours": result["observed_s"] / 3600.0, "n_false_alarms": result["n_false_alarms"],
                "false_alarms_per_hour": result["false_alarms_per_hour"],
                "false_alarms_per_hour_ci95": result["false_alarms_per_hour_ci95"],
                "steady_hours": result["steady"]["hours"],
                "steady_n_false_alarms": result["steady"]["n_false_alarms"],
                "steady_false_alarms_per_hour": result["steady"]["false_alarms_per_hour"],
                "n_false_alarms_after_gain_steps": result["after_gain_steps"]["n_false_alarms"],
                "observed_pfa_at_configured": result["per_test_pfa"]["observed_pfa_at_configured"],
                "steady_observed_pfa_at_configured": result["per_test_pfa_steady"]["observed_pfa_at_configured"],
                "configured_pfa": result["per_test_pfa"]["configured_pfa"]}
    module = importlib.import_module(f"bench.{_MODULES[name]}")
    if name != "throughput" and hasattr(module, "summarize"):  # the benchmark knows its own figures
        return {**head, **module.summarize(result)}
    if name != "throughput":  # the other benchmarks: their top-level figures
        return {**head, **{k: v for k, v in result.items() if isinstance(v, int | float | str) and k not in head}}
    return {**head, "real_time_factor": result["pipeline"]["real_time_factor"],
            "idle_real_time_factor": result["idle_band"]["real_time_factor"],
            "detections_per_s": result["pipeline"]["detections_per_s"],
            "fraction_of_bare_fft_power": result["fraction_of_bare_fft_power"],
            "bare_fft_power_msps": result["bare_fft_power"]["best_msps"],
            "peak_traced_mb": result["memory"]["peak_traced_mb"]}


def _gap(value: float | None) -> str:
    return "  n/a " if value is None else f"{value:+5.2f}"


def format_summary(summary: dict[str, Any]) -> str:
    lines = []
    sens = summary.get("sensitivity")
    if sens:
        lines.append(f"Sensitivity ({sens['mode']}): SNR gap to the ideal energy detector at Pd 0.9 (goal <= 1.5 dB)")
        lines.append(f"  {'waveform':<16} {'gap dB':>7} {'95 % interval':>14} {'RTL gap':>8} {'Pd0.9 at':>9} "
                     f"{'theory':>7}")
        for w, e in sens["waveforms"].items():
            at = "   n/a" if e["snr_db_at_pd90"] is None else f"{e['snr_db_at_pd90']:6.2f}"
            ci = e.get("gap_db_at_pd90_ci95")
            interval = "n/a" if not ci else f"{ci[0]:.2f}-{ci[1]:.2f}"
            lines.append(f"  {w:<16} {_gap(e['gap_db_at_pd90']):>7} {interval:>14} "
                         f"{_gap(e['rtl_sdr_gap_db_at_pd90']):>8} {at:>9} {e['theory_snr_db_at_pd90']:7.2f}")
    fa = summary.get("false_alarms")
    if fa:
        lo, hi = fa["false_alarms_per_hour_ci95"] or (float("nan"), float("nan"))
        lines.append(f"False alarms ({fa['mode']}): {fa['n_false_alarms']} in {fa['hours']:.3f} h = "
                     f"{fa['false_alarms_per_hour']:.2f}/h (95 % {lo:.2f}-{hi:.2f}; goal < 1/h), "
                     f"{fa['n_false_alarms_after_gain_steps']} of them within 2 s after a gain step")
        steady = fa["steady_false_alarms_per_hour"]
        lines.append(f"  steady state: {fa['steady_n_false_alarms']} in {fa['steady_hours']:.3f} h = "
                     f"{float('nan') if steady is None else steady:.2f}/h; per-test Pfa observed "
                     f"{fa['steady_observed_pfa_at_configured']:.2g} (all: {fa['observed_pfa_at_configured']:.2g}) "
                     f"vs configured {fa['configured_pfa']:.2g}")
    tp = summary.get("throughput")
    if tp:
        lines.append(f"Throughput ({tp['mode']}): {tp['real_time_factor']:.1f}x real time on one core with "
                     f"{tp['detections_per_s']:.0f} detections/s ({tp['idle_real_time_factor']:.1f}x idle; goal >= 40x), "
                     f"{100 * tp['fraction_of_bare_fft_power']:.0f} % of bare FFT+power "
                     f"({tp['bare_fft_power_msps']:.0f} MS/s); peak traced memory {tp['peak_traced_mb']:.1f} MB")
    for name, section in summary.items():
        module_name = _MODULES.get(name)
        if name in ("sensitivity", "false_alarms", "throughput") or module_name is None:
            continue
        module = importlib.import_module(f"bench.{module_name}")
        if hasattr(module, "format_summary") and hasattr(module, "summarize"):
            try:
                lines.append(module.format_summary(section))
            except KeyError:  # a section written by an older version of that benchmark
                lines.append(f"{name}: summary from an older run, rerun it")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny versions (seconds): a smoke test, not figures")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=[*BENCHMARKS, "false-alarms"],
                        help=f"run only these ({', '.join(BENCHMARKS)})")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder (default bench/results)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    names = [n.replace("-", "_") for n in (args.only or BENCHMARKS)]
    summary_path = args.out / "summary.json"
    summary: dict[str, Any] = {}
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text())
        except ValueError:
            log.warning("summary unreadable, rewriting path=%s", summary_path)
    for name in BENCHMARKS:
        if name not in names:
            continue
        started = time.perf_counter()
        log.info("benchmark start name=%s quick=%s", name, args.quick)
        kwargs: dict[str, Any] = {"out_dir": args.out, "quick": args.quick}
        if name != "service_ingest":
            kwargs["seed"] = args.seed
        result = _runner(name)(**kwargs)
        summary[name] = summarize(name, result)
        summary[name]["wall_s"] = time.perf_counter() - started
        log.info("benchmark done name=%s wall_s=%.1f", name, summary[name]["wall_s"])
        write_json(summary_path, summary)
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
