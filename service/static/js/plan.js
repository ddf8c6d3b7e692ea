// The site plan as SVG, one floor at a time, drawn from /api/site: cells, zones, walls,
// sensors. Metres in, metres out: the SVG's user unit is the metre, y flipped so north
// is up. Views colour places through classes (lit cells, heat map levels).

import { s, clear } from "./dom.js";
import { t, tk } from "./i18n.js";

const PAD_M = 1.2;

function pointsAttr(points, maxY) {
  return points.map(([x, y]) => `${x.toFixed(2)},${(maxY - y).toFixed(2)}`).join(" ");
}

function shortLabel(place) {
  const parts = place.id.split("-");
  return place.kind === "cell" && parts.length > 1 ? parts[parts.length - 1] : place.id;
}

/** The floors and wings of a site, for the selectors. */
export function floorsOf(site) {
  return [...site.floors].sort((a, b) => a - b);
}

/** The floor to show first: the lowest floor with cells. */
export function defaultFloor(site) {
  const withCells = site.places.filter((p) => p.kind === "cell").map((p) => p.floor);
  return withCells.length ? Math.min(...withCells) : floorsOf(site)[0];
}

export function placesOn(site, floor, wing) {
  return site.places.filter((p) => p.floor === floor && (wing === "all" || p.wing === wing));
}

function bboxOf(pointLists) {
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  for (const points of pointLists) {
    for (const [x, y] of points) {
      minX = Math.min(minX, x); minY = Math.min(minY, y); maxX = Math.max(maxX, x); maxY = Math.max(maxY, y);
    }
  }
  return { minX, minY, maxX, maxY };
}

function inBox(points, box) {
  return points.every(([x, y]) => x >= box.minX - 0.01 && x <= box.maxX + 0.01 && y >= box.minY - 0.01 && y <= box.maxY + 0.01);
}

export class FloorPlan {
  /** options: onPlaceClick(placeId), labels (bool), sensors (bool), sensorState(id) -> class. */
  constructor(options = {}) {
    this.options = { labels: true, sensors: true, ...options };
    this.svg = s("svg", { class: "plan", role: "img", preserveAspectRatio: "xMidYMid meet" });
    this.placeEls = new Map();
    this.sensorEls = new Map();
    this.floor = null;
    this.wing = "all";
    this.svg.addEventListener("click", (e) => this.click(e));
    this.svg.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") this.click(e);
    });
  }

  click(e) {
    const target = e.target.closest("[data-place]");
    if (target && this.options.onPlaceClick) {
      e.preventDefault();
      this.options.onPlaceClick(target.dataset.place);
    }
  }

  render(site, floor, wing = "all") {
    this.floor = floor;
    this.wing = wing;
    clear(this.svg);
    this.placeEls.clear();
    this.sensorEls.clear();
    const places = placesOn(site, floor, wing);
    if (!places.length) return;
    const box = bboxOf(places.map((p) => p.polygon));
    const walls = site.walls.filter((w) => w.floor === floor && (wing === "all" || inBox(w.points, box)));
    const all = bboxOf([...places.map((p) => p.polygon), ...walls.map((w) => w.points)]);
    const maxY = all.maxY;
    this.svg.setAttribute("viewBox", [all.minX - PAD_M, -PAD_M, all.maxX - all.minX + 2 * PAD_M,
      all.maxY - all.minY + 2 * PAD_M].map((v) => v.toFixed(2)).join(" "));
    this.svg.setAttribute("aria-label", t("plan.aria", { floor }));
    this.svg.dataset.floor = String(floor);

    const zones = s("g", { class: "zones" });
    const cells = s("g", { class: "cells" });
    const labels = s("g", { class: "labels", "aria-hidden": "true" });
    const ordered = [...places].sort((a, b) => b.area_m2 - a.area_m2); // big zones under small ones
    for (const place of ordered) {
      const isCell = place.kind === "cell";
      const el = s("polygon", {
        class: ["place", isCell ? "cell" : `zone zone-${place.kind}`],
        points: pointsAttr(place.polygon, maxY),
        "data-place": place.id,
        "data-kind": place.kind,
        tabindex: isCell ? "0" : null,
        role: isCell ? "button" : null,
        "aria-label": isCell ? t("plan.cell_aria", { id: place.id }) : null,
      }, s("title", {}, isCell ? place.id : `${place.id} (${tk("kind", place.kind)})`));
      (isCell ? cells : zones).append(el);
      this.placeEls.set(place.id, el);
      if (this.options.labels) labels.append(this.label(place, maxY));
    }
    const wallGroup = s("g", { class: "walls", "aria-hidden": "true" });
    for (const wall of walls) {
      wallGroup.append(s("polyline", {
        class: ["wall", wall.material ? `wall-${wall.material}` : null],
        points: pointsAttr(wall.points, maxY),
        "stroke-width": (0.06 + wall.loss_db / 110).toFixed(3),
      }));
    }
    this.svg.append(zones, cells, wallGroup, labels);
    if (this.options.sensors) {
      const sensors = s("g", { class: "sensors" });
      for (const sensor of site.sensors.filter((x) => x.floor === floor && (wing === "all" || x.wing === wing))) {
        const [x, y] = sensor.position;
        const g = s("g", { class: "sensor", "data-sensor": sensor.id },
          s("title", {}, sensor.id),
          s("circle", { cx: x.toFixed(2), cy: (maxY - y).toFixed(2), r: "0.42" }),
          s("text", { x: x.toFixed(2), y: (maxY - y - 0.75).toFixed(2), "text-anchor": "middle" }, sensor.id));
        sensors.append(g);
        this.sensorEls.set(sensor.id, g);
      }
      this.svg.append(sensors);
    }
  }

  /** The place's name at its centroid; a zone's kind only where it fits, at the left of long zones. */
  label(place, maxY) {
    const isCell = place.kind === "cell";
    const text = isCell ? shortLabel(place) : tk("kind", place.kind);
    const xs = place.polygon.map((p) => p[0]);
    const ys = place.polygon.map((p) => p[1]);
    const width = Math.max(...xs) - Math.min(...xs);
    const height = Math.max(...ys) - Math.min(...ys);
    let [x, y] = place.centroid;
    let anchor = "middle";
    let size = isCell ? 1.15 : 0.95;
    if (!isCell) {
      size = Math.min(size, (0.9 * width) / (0.6 * text.length), 0.8 * height);
      if (width > 4 * height) { // a corridor: at its west end, clear of the sensors along it
        x = Math.min(...xs) + 0.4;
        anchor = "start";
        size = Math.min(0.95, 0.7 * height);
      }
    }
    const el = s("text", {
      class: isCell ? "cell-label" : "zone-label",
      x: x.toFixed(2), y: (maxY - y).toFixed(2), "text-anchor": anchor, "dominant-baseline": "central",
      "data-label-for": place.id, "data-default": text, "font-size": size.toFixed(2),
    }, text);
    if (!isCell && size < 0.45) el.classList.add("hidden-label");
    return el;
  }

  /** Give a place a set of classes (removing those of the previous call) and an optional badge. */
  style(placeId, classes, badge, labelClass = "on-lit") {
    const el = this.placeEls.get(placeId);
    if (!el) return;
    for (const cls of el.dataset.extra ? el.dataset.extra.split(" ") : []) el.classList.remove(cls);
    const list = classes.filter(Boolean);
    for (const cls of list) el.classList.add(cls);
    el.dataset.extra = list.join(" ");
    const label = this.svg.querySelector(`[data-label-for="${CSS.escape(placeId)}"]`);
    if (label) {
      label.classList.remove("on-lit", "on-dark");
      if (list.length > 0 && labelClass) label.classList.add(labelClass);
      label.textContent = badge === undefined ? label.dataset.default : badge;
    }
  }

  setSensorState(sensorId, stateName) {
    const el = this.sensorEls.get(sensorId);
    if (!el) return;
    el.classList.remove("online", "offline", "deaf", "unknown");
    el.classList.add(stateName || "unknown");
  }
}

/** The cell nearest a sensor on its floor (and wing): the door an officer stands at. */
export function nearestCell(places, sensor) {
  let best = null;
  let bestD = Infinity;
  for (const place of places) {
    if (place.kind !== "cell" || place.floor !== sensor.floor || (sensor.wing && place.wing !== sensor.wing)) continue;
    const d = Math.hypot(place.centroid[0] - sensor.position[0], place.centroid[1] - sensor.position[1]);
    if (d < bestD) {
      bestD = d;
      best = place.id;
    }
  }
  return best;
}
