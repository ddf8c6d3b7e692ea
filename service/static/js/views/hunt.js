// The "hunt" view for a tablet carried down the corridor: for one event, one big bar per
// sensor, fed live by the bursts of that event's channel (event.detections messages),
// sensors in the order of the corridor, the hottest one named with the door it faces.

import { api } from "../api.js";
import { fmtNumber, fmtPct, fmtFreq, h, placeLabel, replace, techLabel, wingFloorLabel } from "../dom.js";
import { t } from "../i18n.js";
import { nearestCell as nearestCellOf } from "../plan.js";
import { OPEN_STATUSES, on, state, upsertEvent } from "../store.js";

const SPAN_DB = 40; // the bars show the top 40 dB: the differences between doors, not the absolute level
const STALE_MS = 8000;
const SMOOTHING = 0.5; // weight of the newest burst group in the displayed level

let eventId = null;
let ev = null;
let levels = new Map(); // sensor id -> {value, unit, atMs, n, live}
let sensorIds = [];
let els = null;
let offs = [];
let tick = null;
let lastBurstMs = null;

const enc = encodeURIComponent;

function nearestCell(sensor) {
  return nearestCellOf(state.places.values(), sensor);
}

function chooseSensors() {
  const heard = new Set(ev.sensors.map((x) => x.sensor_id));
  for (const id of levels.keys()) heard.add(id);
  const onFloor = [...state.siteSensors.values()].filter((x) => x.floor === ev.floor && (!ev.wing || x.wing === ev.wing));
  const ids = new Set([...onFloor.map((x) => x.id), ...heard]);
  sensorIds = [...ids].sort((a, b) => {
    const sa = state.siteSensors.get(a);
    const sb = state.siteSensors.get(b);
    if (!sa || !sb) return sa ? -1 : sb ? 1 : a.localeCompare(b);
    return (sa.wing || "").localeCompare(sb.wing || "") || sa.floor - sb.floor || sa.position[0] - sb.position[0];
  });
}

function take(sensorId, value, unit, atMs, n, live) {
  if (value === null || value === undefined || !Number.isFinite(value)) return;
  const prev = levels.get(sensorId);
  const fresh = prev && prev.unit === unit && prev.live && atMs - prev.atMs < STALE_MS;
  levels.set(sensorId, {
    value: fresh ? SMOOTHING * value + (1 - SMOOTHING) * prev.value : value,
    unit, atMs, n: (fresh ? prev.n : 0) + (n || 0), live,
  });
}

function onDetections(msg) {
  if (!ev) return;
  const sameChannel = ev.channel && msg.channel === ev.channel && Math.abs(msg.freq_hz - ev.freq_hz) < 1e5;
  if (msg.event_id !== eventId && !sameChannel) return;
  const now = Date.now();
  if (lastBurstMs === null) { // live levels from now on: the stored ones (maybe another unit) go
    for (const [id, level] of levels) if (!level.live) levels.delete(id);
  }
  lastBurstMs = now;
  const useDbm = msg.sensors.some((x) => x.rssi_dbm !== null && x.rssi_dbm !== undefined);
  for (const x of msg.sensors) {
    take(x.sensor_id, useDbm ? x.rssi_dbm : x.power_dbfs, useDbm ? "dBm" : "dBFS", now, x.n_bursts, true);
  }
  if (msg.sensors.some((x) => !sensorIds.includes(x.sensor_id))) chooseSensors();
  renderBars();
}

function renderBars() {
  if (!els || !ev) return;
  const now = Date.now();
  // The hottest among the sensors hearing the phone now; else among the last levels known.
  const isFresh = (level) => level.live && now - level.atMs <= STALE_MS;
  const anyFresh = sensorIds.some((id) => levels.has(id) && isFresh(levels.get(id)));
  let hottest = null;
  const top = new Map(); // unit -> highest level shown
  for (const id of sensorIds) {
    const level = levels.get(id);
    if (!level) continue;
    top.set(level.unit, Math.max(top.get(level.unit) ?? -Infinity, level.value));
    if (anyFresh && !isFresh(level)) continue;
    if (!hottest || level.value > hottest.value) hottest = { id, value: level.value };
  }
  replace(els.bars, sensorIds.map((id) => {
    const level = levels.get(id);
    const site = state.siteSensors.get(id);
    const stale = !level || !level.live || now - level.atMs > STALE_MS;
    const fill = h("div", { class: "hunt-fill" });
    let fraction = 0;
    if (level) {
      const hi = top.get(level.unit) + 2;
      fraction = Math.min(1, Math.max(0.02, (level.value - (hi - SPAN_DB)) / SPAN_DB));
    }
    fill.style.height = `${Math.round(100 * fraction)}%`;
    const door = site ? nearestCell(site) : null;
    return h("div", {
      class: ["hunt-bar", hottest && hottest.id === id ? "hottest" : null, stale ? "stale" : "live"],
      "data-sensor-id": id,
    },
    h("div", { class: "hunt-value" }, level ? `${fmtNumber(level.value, 0)} ${level.unit}` : "—"),
    h("div", { class: "hunt-track" }, fill),
    h("div", { class: "hunt-name" }, id),
    h("div", { class: "hunt-door" }, door ? t("hunt.near", { cell: door }) : ""));
  }));
  if (hottest) {
    const site = state.siteSensors.get(hottest.id);
    const door = site ? nearestCell(site) : null;
    replace(els.hottest, h("span", { class: "hot-label" }, t("hunt.hottest")), " ",
      h("strong", { id: "hunt-hottest" }, hottest.id), door ? ` — ${t("hunt.near", { cell: door })}` : "");
  } else {
    replace(els.hottest, t("hunt.waiting"));
  }
  replace(els.lastBurst, lastBurstMs
    ? t("hunt.last_burst", { s: Math.round((now - lastBurstMs) / 1000) })
    : t("hunt.no_live_yet"));
}

function renderHead() {
  replace(els.head,
    h("div", { class: "hunt-title" },
      h("h1", {}, t("hunt.title_for", { place: placeLabel(ev) })),
      h("p", { class: "subtitle" }, [wingFloorLabel(ev.wing, ev.floor), techLabel(ev.tech), fmtFreq(ev.freq_hz),
        ev.channel ? t("hunt.channel", { channel: ev.channel }) : null, `${t("event.confidence")} ${fmtPct(ev.confidence)}`]
        .filter(Boolean).join(" · "))),
    h("a", { class: "button", href: `#/event/${enc(ev.event_id)}` }, t("hunt.to_event")));
}

function pickerRow() {
  const open = [...state.events.values()].filter((x) => OPEN_STATUSES.includes(x.status) && x.priority === "alert")
    .sort((a, b) => b.t_start_s - a.t_start_s);
  if (ev && !open.some((x) => x.event_id === ev.event_id)) open.unshift(ev);
  const picker = h("select", { id: "hunt-event", onchange: (e) => { location.hash = `#/hunt/${enc(e.target.value)}`; } },
    open.map((x) => h("option", { value: x.event_id },
      `${placeLabel(x)} · ${techLabel(x.tech)} · ${fmtFreq(x.freq_hz)} · ${t(`status.${x.status}`)}`)));
  if (ev) picker.value = ev.event_id;
  return h("label", { class: "filter" }, h("span", {}, t("hunt.event")), picker);
}

async function load() {
  const id = eventId;
  try {
    const body = await api(`/api/events/${enc(id)}?detections_limit=0`);
    if (!els || id !== eventId) return;
    ev = upsertEvent(body);
    for (const x of ev.sensors) {
      if (!levels.has(x.sensor_id)) take(x.sensor_id, x.rssi_dbm, "dBm", Date.now(), x.n_bursts, false);
    }
    chooseSensors();
    replace(els.picker, pickerRow());
    renderHead();
    renderBars();
  } catch (err) {
    if (els && err.status === 404) replace(els.head, h("p", { class: "error" }, t("event.not_found", { id })));
  }
}

export default {
  mount(host, params) {
    eventId = params[0] || null;
    ev = null;
    levels = new Map();
    sensorIds = [];
    lastBurstMs = null;
    els = {
      picker: h("div", { class: "hunt-picker" }),
      head: h("div", { class: "hunt-head" }),
      hottest: h("div", { class: "hunt-hottest", "aria-live": "polite" }),
      bars: h("div", { class: "hunt-bars", id: "hunt-bars" }),
      lastBurst: h("p", { class: "muted hunt-last" }),
    };
    host.append(h("div", { class: "hunt-view" }, els.picker, els.head, els.hottest, els.bars, els.lastBurst,
      h("p", { class: "muted hint" }, t("hunt.hint"))));
    if (!eventId) {
      const latest = [...state.events.values()].filter((x) => OPEN_STATUSES.includes(x.status) && x.priority === "alert")
        .sort((a, b) => b.updated_s - a.updated_s)[0];
      if (latest) {
        location.replace(`#/hunt/${enc(latest.event_id)}`);
        return;
      }
      replace(els.head, h("p", { class: "muted" }, t("hunt.nothing_open")));
      return;
    }
    offs = [
      on("detections", onDetections),
      on("event", ({ ev: changed }) => {
        if (ev && changed.event_id === eventId) {
          ev = changed;
          renderHead();
        }
      }),
    ];
    tick = setInterval(renderBars, 1000);
    load();
  },
  unmount() {
    for (const off of offs) off();
    offs = [];
    clearInterval(tick);
    els = null;
  },
};
