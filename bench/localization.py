"""Localization accuracy versus shadowing, for the plan's model, a wrong plan and the oracle; locator speed.

**Data.** Received powers are drawn by the simulator's own channel
(:class:`sdr.simulate.Simulation`: placement uniform in the place, the site's
deterministic path loss, static log-normal shadowing of ``sigma`` dB with 1.5 m
correlation, Rician K = 3 dB fading per burst, the receivers' noise), but no IQ is
rendered: each burst at each sensor whose true SNR reaches 6 dB becomes a detection
carrying the true received power (:func:`service.locate.detections_from_truth`).
Detector errors are therefore left out; the full chain with the detector is checked
by the tests on a short rendered scenario. Each trial is a scenario of ``n_phones``
phones in random places (cells, and some zones: corridors, offices, stairs, yard,
street), GSM calls of 0.5 s on distinct channel/timeslot pairs at a random fixed
power in 5-25 dBm, and a few LTE data sessions on distinct carriers; all phones
transmit four at a time (in different places, on different channels), batches 65 s
apart, so correlation (bursts -> transmissions -> events) is exercised as in an evening.

**Locators**, fed the same detections through the same :class:`service.events.EventEngine`:

* ``plan``: the site as its file describes it, default settings (static sigma learnt from
  the transmissions themselves, empirical Bayes, starting at 6 dB).
* ``wrong_walls``: the site with every wall's loss off by 4 dB (random sign per wall):
  the plan a real building deviates from.
* ``oracle``: the simulator's true deterministic model and the true shadowing sigma, fixed:
  the best a locator can do on these data from the plan (the issue's oracle).
* ``survey``: the plan plus a simulated site survey (:func:`simulated_survey`: a transmitter
  at 12 points of every place, through the simulator's own shadowing field): what the
  calibration step buys, since static shadowing is what limits the plan and the oracle.

Scored with ``cellwatch eval locate``'s scorer (:func:`service.commands.evaluate.score_events`):
% correct cell or zone, % correct wing and floor, % within the top 3, Brier and ECE of the
confidence; per truth transmission that some sensor heard.

**Installations** (``density``): the same building with 3-16 omnidirectional sensors per
corridor (:func:`with_corridor_sensors`, any site with corridor zones) and with the
door-antenna installation (``demo_prison_doors.toml``: a patch antenna above each cell door,
aimed into the cell): % correct cell of the plan and the oracle, at 4 dB shadowing.

**Receiver gain.** The sensors' sensitivity decides how many of them hear a phone; the
default scenario gain (14.4 dB: full scale at -29 dBm, no clipping next door) puts the
detection threshold near -85 dBm (8-bit quantization noise dominates), 28 dB near -97 dBm.
Both are run on the demo prison at every sigma.

**Speed**: :meth:`service.locate.Locator.locate_many` on one core (transmissions/s for a
batch and one at a time) and the whole engine (detections/s from detections to events).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, RESULTS_DIR, header, one_core, pyplot, save_figure, write_json
from calibration.site import Site, Wall, load_site
from sdr.scenario import Scenario
from sdr.simulate import Simulation
from service.commands.evaluate import score_events
from service.events import EngineConfig, EventEngine
from service.locate import Locator, LocatorConfig, Survey, detections_from_truth

log = logging.getLogger(__name__)

DEMO_SITE = REPO / "calibration" / "sites" / "demo_prison.toml"
DOORS_SITE = REPO / "calibration" / "sites" / "demo_prison_doors.toml"
SENSORS_PER_CORRIDOR = (3, 4, 6, 8, 12, 16)
ANNEX_SITE = REPO / "tests" / "data" / "sites" / "annex.toml"
SIGMAS_DB = (2.0, 4.0, 6.0, 8.0)
WALL_ERROR_DB = 4.0
LTE_CARRIERS_HZ = (731.0e6, 846.5e6, 1747.5e6)
VARIANTS = ("plan", "wrong_walls", "oracle", "survey")
SURVEY_TX_DBM = 30.0  # the survey transmitter
SURVEY_RX_MIN_DBM = -90.0  # what a survey receiver still measures reliably
CONCURRENT = 4  # phones active at once
BATCH_SPACING_S = 65.0


def perturbed_site(site: Site, error_db: float, rng: np.random.Generator) -> Site:
    """The same site with every wall's loss off by ``error_db`` (random sign per wall)."""
    walls = tuple(Wall(floor=w.floor, points=w.points, loss_db=max(0.0, w.loss_db + error_db * rng.choice([-1.0, 1.0])),
                       material=w.material) for w in site.walls)
    return Site(name=site.name, source=f"{site.source} (walls off by {error_db:g} dB)",
                floor_height_m=site.floor_height_m, floor_loss_db=site.floor_loss_db, wings=site.wings,
                cells=site.cells, zones=site.zones, walls=walls, sensors=site.sensors,
                propagation=site.propagation, materials=site.materials, wing_names=site.wing_names)


def scenario(site: Site, n_phones: int, sigma_db: float, gain_db: float, rng: np.random.Generator,
             concurrent: int = CONCURRENT) -> dict[str, Any]:
    """``n_phones`` phones in random places on distinct channels, ``concurrent`` at a time,
    each batch ``BATCH_SPACING_S`` after the previous one (more than an event's gap)."""
    zones = [z.id for z in site.zones]
    cells = [c.id for c in site.cells]
    channels = rng.permutation(124 * 8)[:n_phones]
    phones = []
    n_lte = 0
    for i in range(n_phones):
        in_zone = rng.random() < 0.2 and zones
        where = {"zone": str(rng.choice(zones))} if in_zone else {"cell": str(rng.choice(cells))}
        power = float(np.round(rng.uniform(5.0, 25.0), 1))
        start = {"start_s": float((i // concurrent) * BATCH_SPACING_S)}
        if n_lte < len(LTE_CARRIERS_HZ) and rng.random() < 0.1:
            phones.append({"id": f"p{i}", **where, **start, "tech": "lte", "activity": "data", "duration_s": 0.5,
                           "carrier_freq_hz": LTE_CARRIERS_HZ[n_lte], "carrier_n_rb": 25, "tx_power_dbm": power})
            n_lte += 1
            continue
        arfcn, slot = 1 + int(channels[i]) // 8, int(channels[i]) % 8
        phones.append({"id": f"p{i}", **where, **start, "tech": "gsm", "activity": "call", "established": True,
                       "duration_s": 0.5, "arfcn": arfcn, "timeslot": slot, "tx_power_dbm": power})
    duration_s = ((n_phones - 1) // concurrent) * BATCH_SPACING_S + 0.6
    return {"name": "bench-localization", "duration_s": duration_s, "receiver": {"gain_db": gain_db},
            "propagation": {"shadowing_sigma_db": sigma_db}, "phones": phones}


def simulated_survey(site: Site, sim: Simulation, rng: np.random.Generator, n_points: int = 12,
                     n_bursts: int = 20) -> Survey:
    """A site survey of the simulated building: a transmitter at up to ``n_points`` points of
    every place, ``n_bursts`` bursts each, received powers from the simulator's own channel
    (its deterministic loss, *its* shadowing field, fading); fingerprints are the mean loss and
    its spread over the points. Pairs too weak for the survey receiver keep the model."""
    n_sensors = len(site.sensors)
    loss = np.full((len(site.places), n_sensors), np.nan)
    spread = np.full_like(loss, np.nan)
    sensors = np.arange(n_sensors)
    freq_hz = 902.4e6
    for index, place in enumerate(site.places):
        xy = site.sample_points(index, spacing_m=1.0)
        if xy.shape[0] > n_points:
            xy = xy[rng.choice(xy.shape[0], n_points, replace=False)]
        xyz = np.column_stack([xy, np.full(xy.shape[0], float(site.z_m(place.floor, 1.2)))])
        tx = np.repeat(xyz, n_sensors, axis=0)
        rx = np.tile(sensors, xy.shape[0])
        static = (sim.model.mean_path_loss_db(site, tx, rx, freq_hz) + sim.shadowing.sample(rx, tx)).reshape(-1, n_sensors)
        fading = rng.standard_normal((xy.shape[0], n_sensors)) * 5.0 / math.sqrt(n_bursts)
        measured = static + fading
        heard = SURVEY_TX_DBM - measured.max(axis=0) >= SURVEY_RX_MIN_DBM
        loss[index, heard] = measured.mean(axis=0)[heard]
        spread[index, heard] = np.maximum(measured.std(axis=0)[heard], 1.5)
    return Survey(loss_db=loss, spread_db=spread, freq_hz=freq_hz, source="simulated survey")


def with_corridor_sensors(site: Site, per_corridor: int) -> Site:
    """The site with its sensors replaced by ``per_corridor`` omnidirectional ones in each corridor
    zone: evenly along its long axis, 0.3 m inside alternate long walls, 2.6 m high (any site)."""
    from calibration.propagation import CORRIDOR_KIND
    from calibration.site import Sensor

    sensors = []
    for zone in (z for z in site.zones if z.kind == CORRIDOR_KIND):
        poly = np.asarray(zone.polygon)
        lo, hi = poly.min(axis=0), poly.max(axis=0)
        along = int(np.argmax(hi - lo))
        across = 1 - along
        steps = lo[along] + (np.arange(per_corridor) + 0.5) * (hi[along] - lo[along]) / per_corridor
        for k, t in enumerate(steps):
            xy = np.empty(2)
            xy[along] = t
            xy[across] = lo[across] + 0.3 if (k + zone.floor) % 2 else hi[across] - 0.3
            sensors.append(Sensor(id=f"{zone.id}-S{k + 1}", wing=zone.wing, floor=zone.floor, position=xy,
                                  height_m=2.6, place_id=zone.id))
    return Site(name=f"{site.name} ({per_corridor} per corridor)", source=site.source,
                floor_height_m=site.floor_height_m, floor_loss_db=site.floor_loss_db, wings=site.wings,
                cells=site.cells, zones=site.zones, walls=site.walls, sensors=tuple(sensors),
                propagation=site.propagation, materials=site.materials, wing_names=site.wing_names)


def density(site_path: Path, gain_db: float, sigma_db: float, n_trials: int, n_phones: int,
            seed: int) -> dict[str, Any]:
    """% correct cell (phones in cells) of the plan and the oracle against omnidirectional sensors
    per corridor, beside the door-antenna installation: what installation reaches cell level."""
    base = load_site(site_path)
    rows = []
    layouts: list[tuple[str, Site, int | None]] = [(f"{n} per corridor", with_corridor_sensors(base, n), n)
                                                   for n in SENSORS_PER_CORRIDOR]
    layouts.append(("door antennas", load_site(DOORS_SITE), None))
    for label, site, per_corridor in layouts:
        scores: dict[str, list[dict[str, Any]]] = {"plan": [], "oracle": []}
        for trial in range(n_trials):
            rng = np.random.default_rng(seed * 1000 + trial)
            spec = scenario(site, n_phones, sigma_db, gain_db, rng)
            sim = Simulation(site, Scenario.model_validate(spec), seed=seed * 1000 + trial)
            truth = sim.truth_records()
            detections = detections_from_truth(truth)
            oracle = EngineConfig(locator=LocatorConfig(sigma_static_db=max(sigma_db, 0.5)), learn_sigma=False)
            for name, config in (("plan", EngineConfig()), ("oracle", oracle)):
                scores[name].append(score_events(truth, locate_events(site, detections, config)))
        row = {"layout": label, "per_corridor": per_corridor, "n_sensors": len(site.sensors),
               **{name: _pool(values) for name, values in scores.items()}}
        log.info("localization density %s: plan %.1f%% oracle %.1f%% correct cell", label,
                 row["plan"]["pct_correct_cell_cell_phones"] or 0.0, row["oracle"]["pct_correct_cell_cell_phones"] or 0.0)
        rows.append(row)
    return {"site": base.name, "gain_db": gain_db, "sigma_db": sigma_db, "n_trials": n_trials,
            "n_phones_per_trial": n_phones, "rows": rows}


def plot_density(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    rows = [r for r in result["rows"] if r["per_corridor"] is not None]
    n = [r["per_corridor"] for r in rows]
    for name, style in (("plan", "o-"), ("oracle", "^:")):
        ax.plot(n, [r[name]["pct_correct_cell_cell_phones"] for r in rows], style, label=f"{name}, omni corridor sensors")
    doors = [r for r in result["rows"] if r["per_corridor"] is None]
    for r in doors:
        ax.plot([16], [r["plan"]["pct_correct_cell_cell_phones"]], "r*", markersize=12,
                label="plan, door antennas (16 per corridor)")
    ax.axhline(90.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("sensors per corridor")
    ax.set_ylabel("% correct cell (phones in cells)")
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{result['site']}: shadowing {result['sigma_db']:g} dB, gain {result['gain_db']:g} dB", fontsize=10)
    return save_figure(fig, path)


def locate_events(site: Site, detections: list[Any], config: EngineConfig,
                  survey: Survey | None = None) -> list[dict[str, Any]]:
    engine = EventEngine(site, config=config, survey=survey)
    engine.mark_listening([s.id for s in site.sensors])
    events = {e.event_id: e for e in engine.add(detections)}
    events.update({e.event_id: e for e in engine.flush()})
    return [e.to_dict() for e in events.values()]


def trial_scores(site: Site, sigma_db: float, gain_db: float, n_phones: int, seed: int) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    spec = scenario(site, n_phones, sigma_db, gain_db, rng)
    sim = Simulation(site, Scenario.model_validate(spec), seed=seed)
    truth = sim.truth_records()
    detections = detections_from_truth(truth)
    configs = {
        "plan": (site, EngineConfig(), None),
        "wrong_walls": (perturbed_site(site, WALL_ERROR_DB, rng), EngineConfig(), None),
        "oracle": (site, EngineConfig(locator=LocatorConfig(sigma_static_db=max(sigma_db, 0.5)), learn_sigma=False),
                   None),
        "survey": (site, EngineConfig(), simulated_survey(site, sim, rng)),
    }
    out = {}
    for name, (belief, config, survey) in configs.items():
        events = locate_events(belief, detections, config, survey)
        out[name] = score_events(truth, events)
    return out


def _pool(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-transmission figures pooled over trials (weighted by matched transmissions)."""
    n = np.array([s["n_matched"] for s in scores], dtype=float)
    total = max(float(n.sum()), 1.0)

    def mean(key: str) -> float | None:
        values = [(s[key], k) for s, k in zip(scores, n, strict=True) if s[key] is not None]
        return sum(v * k for v, k in values) / max(sum(k for _, k in values), 1.0) if values else None

    cells = np.array([s["n_cell_phones"] for s in scores], dtype=float)
    cell_pct = [(s["pct_correct_cell_cell_phones"], k) for s, k in zip(scores, cells, strict=True)
                if s["pct_correct_cell_cell_phones"] is not None]
    return {
        "n_transmissions": int(total),
        "n_missed": int(sum(s["n_missed"] for s in scores)),
        "pct_correct_place": mean("pct_correct_place"),
        "pct_correct_wing_floor": mean("pct_correct_wing_floor"),
        "pct_truth_in_top3": mean("pct_truth_in_top3"),
        "pct_correct_cell_cell_phones": (sum(v * k for v, k in cell_pct) / max(sum(k for _, k in cell_pct), 1.0))
        if cell_pct else None,
        "mean_confidence": mean("mean_confidence"),
        "brier": mean("brier"),
        "ece": mean("ece"),
        "zone_phones_blamed_on_a_cell": int(sum(len(s["zone_phones_blamed_on_a_cell"]) for s in scores)),
        "n_zone_phones": int(sum(s["n_zone_phones"] for s in scores)),
        "n_spurious_events": int(sum(s["per_event"]["n_spurious"] for s in scores)),
    }


def accuracy(site_path: Path, gain_db: float, sigmas: tuple[float, ...], n_trials: int, n_phones: int,
             seed: int) -> dict[str, Any]:
    site = load_site(site_path)
    rows = []
    for sigma in sigmas:
        started = time.perf_counter()
        per_variant: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for trial in range(n_trials):
            scores = trial_scores(site, sigma, gain_db, n_phones, seed=seed * 1000 + trial)
            for name in VARIANTS:
                per_variant[name].append(scores[name])
        row: dict[str, Any] = {"sigma_db": sigma, **{name: _pool(per_variant[name]) for name in VARIANTS}}
        rows.append(row)
        log.info("localization site=%s gain_db=%g sigma_db=%g plan=%.1f%% oracle=%.1f%% wall=%.1f s", site.name,
                 gain_db, sigma, row["plan"]["pct_correct_place"] or 0.0, row["oracle"]["pct_correct_place"] or 0.0,
                 time.perf_counter() - started)
    return {"site": site.name, "site_file": str(site_path.relative_to(REPO)), "gain_db": gain_db,
            "n_cells": len(site.cells), "n_zones": len(site.zones), "n_sensors": len(site.sensors),
            "n_trials": n_trials, "n_phones_per_trial": n_phones, "rows": rows}


def speed(site_path: Path, n_observations: int, seed: int) -> dict[str, Any]:
    """Locator and engine throughput on one core, on observations drawn from a simulation."""
    site = load_site(site_path)
    rng = np.random.default_rng(seed)
    spec = scenario(site, 64, 4.0, 28.0, rng, concurrent=64)
    truth = Simulation(site, Scenario.model_validate(spec), seed=seed).truth_records()
    detections = detections_from_truth(truth)
    with one_core() as cpu:
        EventEngine(site).add(detections[:2000])  # imports and first-use costs out of the timing
        engine = EventEngine(site)
        engine.mark_listening([s.id for s in site.sensors])
        started = time.perf_counter()
        engine.add(detections)
        engine.flush(engine.grouper.watermark_s + 1.0)  # every burst handed on, no transmission closed yet
        observations = [tr.observation(engine.config.locator) for tr in engine.tracker.open]
        engine.flush()
        engine_s = time.perf_counter() - started
        batch = [observations[i % len(observations)] for i in range(n_observations)]
        locator: Locator = engine.locator
        locator.locate_many(batch[:10])  # tables built, caches warm
        started = time.perf_counter()
        locator.locate_many(batch)
        batch_s = time.perf_counter() - started
        single = batch[: max(1, n_observations // 10)]
        started = time.perf_counter()
        for obs in single:
            locator.locate(obs)
        single_s = time.perf_counter() - started
        started = time.perf_counter()
        fresh = Locator(site)
        fresh.locate(batch[0])
        table_s = time.perf_counter() - started
    return {
        "cpu": cpu, "site": site.name, "n_places": len(site.places), "n_points": locator.n_points,
        "n_sensors": len(site.sensors),
        "batch_transmissions_per_s": n_observations / batch_s,
        "single_transmissions_per_s": len(single) / single_s,
        "table_build_s": table_s,
        "engine_detections_per_s": len(detections) / engine_s,
        "engine_note": "from detections to events, loss tables built (one band) included",
        "engine_n_detections": len(detections),
    }


def plot(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    panels = result["accuracy"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.2), squeeze=False)
    styles = {"plan": ("C0", "o-"), "wrong_walls": ("C1", "s--"), "oracle": ("C2", "^:"), "survey": ("C3", "d-.")}
    for ax, panel in zip(axes[0], panels, strict=True):
        sig = [r["sigma_db"] for r in panel["rows"]]
        for name in VARIANTS:
            color, style = styles[name]
            ax.plot(sig, [r[name]["pct_correct_place"] for r in panel["rows"]], style, color=color,
                    label=f"{name}: cell/zone")
            ax.plot(sig, [r[name]["pct_correct_wing_floor"] for r in panel["rows"]], style, color=color, alpha=0.45,
                    label=f"{name}: wing+floor")
        ax.set_title(f"{panel['site']} (gain {panel['gain_db']:g} dB)", fontsize=10)
        ax.set_xlabel("shadowing sigma (dB)")
        ax.set_ylabel("% correct")
        ax.set_ylim(0, 101)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle("Localization accuracy (true received powers as detections)")
    return save_figure(fig, path)


def run(out_dir: Path = RESULTS_DIR, quick: bool = False, seed: int = 1) -> dict[str, Any]:
    sigmas = (4.0,) if quick else SIGMAS_DB
    n_trials = 1 if quick else 4
    n_phones = 24 if quick else 60
    started = time.perf_counter()
    panels = [
        accuracy(DEMO_SITE, 14.4, sigmas, n_trials, n_phones, seed),
        accuracy(DEMO_SITE, 28.0, sigmas, n_trials, n_phones, seed),
        accuracy(DOORS_SITE, 14.4, sigmas, n_trials, n_phones, seed),
        accuracy(ANNEX_SITE, 14.4, sigmas, n_trials, max(12, n_phones // 2), seed),
    ]
    result = {
        **header("localization", quick),
        "data": "truth received powers as detections (true SNR >= 6 dB), no IQ rendered",
        "wall_error_db": WALL_ERROR_DB,
        "accuracy": panels,
        "density": density(DEMO_SITE, 28.0, 4.0, 1 if quick else 2, n_phones, seed),
        "speed": speed(DEMO_SITE, 500 if quick else 5000, seed),
        "wall_s": None,
    }
    result["wall_s"] = time.perf_counter() - started
    write_json(out_dir / "localization.json", result)
    plot(result, out_dir / "localization.png")
    plot_density(result["density"], out_dir / "localization_density.png")
    return result


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The few figures that go into ``summary.json``."""
    out: dict[str, Any] = {"mode": result["mode"], "created_utc": result["created_utc"]}
    for panel in result["accuracy"]:
        key = f"{Path(panel['site_file']).stem}_gain{panel['gain_db']:g}"
        out[key] = {f"sigma{r['sigma_db']:g}": {name: [r[name]["pct_correct_place"], r[name]["pct_correct_wing_floor"]]
                                                  for name in VARIANTS} for r in panel["rows"]}
    out["density_pct_correct_cell"] = {r["layout"]: [r["plan"]["pct_correct_cell_cell_phones"],
                                                      r["oracle"]["pct_correct_cell_cell_phones"]]
                                       for r in result["density"]["rows"]}
    out["batch_transmissions_per_s"] = result["speed"]["batch_transmissions_per_s"]
    out["engine_detections_per_s"] = result["speed"]["engine_detections_per_s"]
    return out


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"Localization ({summary['mode']}): % correct cell-or-zone / wing+floor  [plan | walls ±4 dB | oracle | survey]"]
    for key, rows in summary.items():
        if not isinstance(rows, dict) or key == "density_pct_correct_cell":
            continue
        for sigma, variants in rows.items():
            parts = " | ".join("n/a" if v[0] is None else f"{v[0]:5.1f}/{v[1]:5.1f}" for v in variants.values())
            lines.append(f"  {key:<22} {sigma:<9} {parts}")
    if "density_pct_correct_cell" in summary:
        lines.append("  % correct cell (plan / oracle) by installation, sigma 4 dB: " + ", ".join(
            f"{k} {v[0]:.0f}/{v[1]:.0f}" for k, v in summary["density_pct_correct_cell"].items()))
    lines.append(f"  locator: {summary['batch_transmissions_per_s']:.0f} transmissions/s (batch, one core); "
                 f"engine {summary['engine_detections_per_s']:.0f} detections/s")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m bench.localization", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    print(format_summary(summarize(run(args.out, args.quick, args.seed))))
