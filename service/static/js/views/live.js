// The control-room view: the floor plan with the cells where a phone is located lit up,
// and the live alert list (phone alerts and offline sensors) with its filters.

import { h, replace, fmtTime, fmtAgo, fmtPct, nowS, perFrame, placeLabel, statusBadge, techLabel, wingFloorLabel }
  from "../dom.js";
import { t, tk } from "../i18n.js";
import { FloorPlan, defaultFloor, floorsOf } from "../plan.js";
import { OPEN_STATUSES, deafSensors, isDeaf, loadEvents, offlineSensors, on, state } from "../store.js";

const PERIODS_S = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, all: null };
const TECHS = ["gsm", "lte", "nr", "umts", "unknown"];
const STATUS_CHOICES = ["open", "new", "acknowledged", "escalated", "closed", "all"];
const STATUS_RANK = { new: 0, acknowledged: 1, escalated: 2, closed: 3 };
const MAX_ITEMS = 200;

// Kept across visits and language changes.
const filters = { wing: "", floor: "", tech: "", status: "open", period: "24h", zones: false };
let planFloor = null;
let planWing = "all";

let plan = null;
let els = null;
let offs = [];
let tick = null;
const fresh = new Set();

export function confidenceClass(confidence) {
  if (confidence === null || confidence === undefined) return "conf-low";
  return confidence >= 0.7 ? "conf-high" : confidence >= 0.4 ? "conf-mid" : "conf-low";
}

/** How long ago the event was last heard, on the service's clock (updated_s). */
export function recencyClass(ev) {
  const ageS = nowS() - Math.max(ev.updated_s || 0, ev.created_s || 0);
  return ageS < 30 ? "age-active" : ageS < 600 ? "age-recent" : ageS < 3600 ? "age-old" : "age-stale";
}

function matches(ev) {
  if (filters.wing && ev.wing !== filters.wing) return false;
  if (filters.floor !== "" && String(ev.floor) !== filters.floor) return false;
  if (filters.tech && ev.tech !== filters.tech) return false;
  if (filters.status === "open") {
    if (!OPEN_STATUSES.includes(ev.status)) return false;
  } else if (filters.status !== "all" && ev.status !== filters.status) {
    return false;
  }
  const periodS = PERIODS_S[filters.period];
  if (periodS && ev.t_end_s < nowS() - periodS) return false;
  if (!filters.zones && ev.priority !== "alert") return false;
  return true;
}

function apiParams() {
  const periodS = PERIODS_S[filters.period];
  return {
    wing: filters.wing || undefined,
    floor: filters.floor === "" ? undefined : filters.floor,
    tech: filters.tech || undefined,
    status: filters.status === "open" ? OPEN_STATUSES : filters.status === "all" ? undefined : filters.status,
    since: periodS ? Math.floor(nowS() - periodS) : undefined,
    priority: filters.zones ? undefined : "alert",
  };
}

// -- the plan ------------------------------------------------------------------------------

/** The most recent open event of each place. */
function openByPlace() {
  const byPlace = new Map();
  for (const ev of state.events.values()) {
    const place = ev.cell || ev.zone;
    if (!place || !OPEN_STATUSES.includes(ev.status)) continue;
    const prev = byPlace.get(place);
    if (!prev || ev.t_end_s > prev.t_end_s) byPlace.set(place, ev);
  }
  return byPlace;
}

function stylePlan() {
  if (!plan || !state.site) return;
  const byPlace = openByPlace();
  for (const [id, el] of plan.placeEls) {
    const ev = byPlace.get(id);
    if (!ev) {
      plan.style(id, []);
      delete el.dataset.eventId;
      continue;
    }
    plan.style(id, [ev.cell ? "lit" : "lit-zone", confidenceClass(ev.confidence), recencyClass(ev), `st-${ev.status}`]);
    el.dataset.eventId = ev.event_id;
    el.querySelector("title").textContent = `${id} — ${t(`status.${ev.status}`)} — ${t("event.confidence")} ${fmtPct(ev.confidence)}`;
  }
  for (const id of plan.sensorEls.keys()) {
    const sensor = state.sensors.get(id);
    const heard = sensor && sensor.last_heartbeat_s !== null;
    plan.setSensorState(id, !heard ? "unknown" : isDeaf(sensor) ? "deaf" : sensor.state);
  }
  // Open phone alerts per floor, on the floor buttons.
  const perFloor = new Map();
  for (const ev of byPlace.values()) {
    if (ev.cell) perFloor.set(ev.floor, (perFloor.get(ev.floor) || 0) + 1);
  }
  for (const btn of els.floors.querySelectorAll("[data-floor]")) {
    const n = perFloor.get(Number(btn.dataset.floor)) || 0;
    btn.querySelector(".count").textContent = n ? String(n) : "";
    btn.classList.toggle("has-alerts", n > 0);
  }
}

function drawPlan() {
  plan.render(state.site, planFloor, planWing);
  for (const btn of els.floors.querySelectorAll("[data-floor]")) {
    btn.setAttribute("aria-pressed", String(Number(btn.dataset.floor) === planFloor));
  }
  stylePlan();
}

function onPlaceClick(placeId) {
  const el = plan.placeEls.get(placeId);
  if (el && el.dataset.eventId) location.hash = `#/event/${encodeURIComponent(el.dataset.eventId)}`;
  else if (el && el.dataset.kind === "cell") location.hash = `#/history/${encodeURIComponent(placeId)}`;
}

function planCard() {
  const site = state.site;
  if (planFloor === null || !site.floors.includes(planFloor)) planFloor = defaultFloor(site);
  els.floors = h("div", { class: "segmented", role: "group", "aria-label": t("plan.floor_choice") },
    floorsOf(site).map((f) => h("button", {
      type: "button", class: "seg", "data-floor": String(f),
      onclick: () => { planFloor = f; drawPlan(); },
    }, t("place.floor", { floor: f }), h("span", { class: "count" }))));
  const wing = h("select", { id: "plan-wing", "aria-label": t("plan.wing_choice"),
    onchange: (e) => { planWing = e.target.value; drawPlan(); } },
  h("option", { value: "all" }, t("plan.all_wings")),
  site.wings.map((w) => h("option", { value: w.id }, w.name ? `${w.name} (${w.id})` : t("place.wing", { wing: w.id }))));
  wing.value = planWing;
  const legend = h("div", { class: "legend" },
    h("span", { class: "legend-item" }, h("span", { class: "swatch conf-high" }), t("legend.conf_high")),
    h("span", { class: "legend-item" }, h("span", { class: "swatch conf-mid" }), t("legend.conf_mid")),
    h("span", { class: "legend-item" }, h("span", { class: "swatch conf-low" }), t("legend.conf_low")),
    h("span", { class: "legend-item" }, h("span", { class: "swatch pulse" }), t("legend.active")),
    h("span", { class: "legend-item" }, h("span", { class: "swatch faded" }), t("legend.older")),
    h("span", { class: "legend-item" }, h("span", { class: "swatch sensor-on" }), t("legend.sensor_on")),
    h("span", { class: "legend-item" }, h("span", { class: "swatch sensor-off" }), t("legend.sensor_off")),
    h("span", { class: "legend-item" }, h("span", { class: "swatch sensor-unknown" }), t("legend.sensor_unknown")));
  return h("section", { class: "card plan-card", "aria-labelledby": "plan-title" },
    h("div", { class: "card-head" },
      h("h2", { id: "plan-title" }, t("plan.title")),
      h("div", { class: "toolbar" }, els.floors, wing)),
    h("div", { class: "plan-host", id: "plan-host" }, plan.svg),
    legend);
}

// -- the alert list ------------------------------------------------------------------------

function select(id, labelKey, value, options, onchange) {
  const el = h("select", { id, onchange: (e) => onchange(e.target.value) },
    options.map(([v, text]) => h("option", { value: v }, text)));
  el.value = value;
  return h("label", { class: "filter" }, h("span", {}, t(labelKey)), el);
}

function filtersForm() {
  const site = state.site;
  const refilter = (key) => (value) => {
    filters[key] = value;
    refresh();
  };
  const zones = h("input", { type: "checkbox", id: "f-zones", onchange: (e) => refilter("zones")(e.target.checked) });
  zones.checked = filters.zones;
  return h("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
    select("f-wing", "filter.wing", filters.wing, [["", t("filter.any")], ...site.wings.map((w) => [w.id, w.id])],
      refilter("wing")),
    select("f-floor", "filter.floor", filters.floor,
      [["", t("filter.any")], ...floorsOf(site).map((f) => [String(f), String(f)])], refilter("floor")),
    select("f-tech", "filter.tech", filters.tech, [["", t("filter.any")], ...TECHS.map((x) => [x, techLabel(x)])],
      refilter("tech")),
    select("f-status", "filter.status", filters.status, STATUS_CHOICES.map((x) => [x, t(`filter.status_${x}`)]),
      refilter("status")),
    select("f-period", "filter.period", filters.period, Object.keys(PERIODS_S).map((x) => [x, t(`period.${x}`)]),
      refilter("period")),
    h("label", { class: "filter check" }, zones, h("span", {}, t("filter.zones"))));
}

/** A sensor as an alert: offline (silent) or deaf (its node reports, its radio is down). */
function sensorAlertItem(sensor) {
  const deaf = sensor.state !== "offline";
  const meta = deaf ? (sensor.message ? ` · ${sensor.message}` : "")
    : ` · ${t("alerts.last_heartbeat", { ago: fmtAgo(sensor.last_heartbeat_s) })}`;
  return h("li", { class: ["alert-item", "sensor-alert", deaf ? "deaf" : null], "data-sensor-id": sensor.sensor_id },
    h("a", { href: "#/sensors", class: "alert-link" },
      h("div", { class: "alert-line" },
        h("strong", { class: "alert-place" }, t(deaf ? "alerts.sensor_deaf" : "alerts.sensor_offline",
          { id: sensor.sensor_id })),
        h("span", { class: "badge status-offline" }, deaf ? tk("source", sensor.source_state) : t("sensor.offline"))),
      h("div", { class: "alert-meta" }, wingFloorLabel(sensor.wing, sensor.floor), meta)));
}

function eventItem(ev) {
  return h("li", {
    class: ["alert-item", `prio-${ev.priority}`, confidenceClass(ev.confidence), recencyClass(ev),
      fresh.has(ev.event_id) ? "fresh" : null],
    "data-event-id": ev.event_id, "data-status": ev.status, "data-place": ev.cell || ev.zone || "",
  },
  h("a", { href: `#/event/${encodeURIComponent(ev.event_id)}`, class: "alert-link" },
    h("div", { class: "alert-line" },
      h("span", { class: "conf-dot", "aria-hidden": "true" }),
      h("strong", { class: "alert-place" }, placeLabel(ev)),
      statusBadge(ev.status)),
    h("div", { class: "alert-meta" },
      [wingFloorLabel(ev.wing, ev.floor), techLabel(ev.tech), `${t("event.confidence")} ${fmtPct(ev.confidence)}`,
        t("alerts.bursts", { n: ev.n_bursts })].filter(Boolean).join(" · ")),
    h("div", { class: "alert-time" },
      h("time", {}, fmtTime(ev.t_start_s)), " · ", t("alerts.heard", { ago: fmtAgo(ev.updated_s) }),
      ev.status_by && ev.status !== "new" ? ` · ${t("alerts.by", { user: ev.status_by })}` : "")));
}

function renderList() {
  if (!els) return;
  const items = [...state.events.values()].filter(matches)
    .sort((a, b) => (STATUS_RANK[a.status] - STATUS_RANK[b.status]) || (b.t_start_s - a.t_start_s))
    .slice(0, MAX_ITEMS);
  const inWing = (sensor) => !filters.wing || sensor.wing === filters.wing;
  const sensorsDown = offlineSensors().filter(inWing);
  const sensorsDeaf = deafSensors().filter(inWing);
  const nNew = items.filter((ev) => ev.status === "new").length;
  els.count.textContent = nNew ? t("alerts.n_new", { n: nNew }) : "";
  els.count.hidden = !nNew;
  if (!items.length && !sensorsDown.length && !sensorsDeaf.length) {
    replace(els.list, h("li", { class: "empty" }, t("alerts.none")));
    return;
  }
  replace(els.list, [...sensorsDown, ...sensorsDeaf].map(sensorAlertItem), items.map(eventItem));
}

const render = perFrame(() => {
  renderList();
  stylePlan();
});

async function refresh() {
  try {
    await loadEvents(apiParams());
  } catch (err) {
    if (err.status !== 401) els.error.textContent = t("error.generic", { detail: err.message });
  }
  render();
}

function alertsCard() {
  els.count = h("span", { class: "pill pill-alert", id: "alert-count" });
  els.list = h("ul", { class: "alert-list", id: "alert-list", "aria-live": "polite" });
  els.error = h("p", { class: "error", role: "alert" });
  return h("section", { class: "card alerts-card", "aria-labelledby": "alerts-title" },
    h("div", { class: "card-head" }, h("h2", { id: "alerts-title" }, t("alerts.title")), els.count),
    filtersForm(), els.error, els.list);
}

export default {
  mount(host) {
    els = {};
    plan = new FloorPlan({ onPlaceClick });
    host.append(h("div", { class: "live-grid" }, planCard(), alertsCard()));
    drawPlan();
    renderList();
    refresh();
    offs = [
      on("event", ({ ev, created }) => {
        if (created) {
          fresh.add(ev.event_id);
          setTimeout(() => fresh.delete(ev.event_id), 8000);
        }
        render();
      }),
      on("events", render),
      on("sensors", render),
      on("sensor", render),
      on("resync", refresh),
    ];
    tick = setInterval(render, 5000);
  },
  unmount() {
    for (const off of offs) off();
    offs = [];
    clearInterval(tick);
    plan = null;
    els = null;
  },
};
