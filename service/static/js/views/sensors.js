// Sensor health: is each node's radio alive, when did it last report, how noisy is each
// band, how much of the band it watches, what it lost. An offline sensor is a blind spot.

import { fmtAgo, fmtDb, fmtDuration, fmtInt, fmtNumber, fmtPct, h, replace, wingFloorLabel } from "../dom.js";
import { t, tk } from "../i18n.js";
import { heartbeatAgeS, loadSensors, on, state } from "../store.js";
import { doorLabel } from "./event.js";

let els = null;
let offs = [];
let tick = null;

function bands(sensor) {
  if (!sensor.bands.length) return "—";
  return h("ul", { class: "bands" }, sensor.bands.map((b) => h("li", {},
    h("span", { class: "band-name" }, b.band), " ", fmtDb(b.noise_floor_dbfs, "dBFS"))));
}

function coverage(sensor) {
  if (!sensor.bands.length) return "—";
  return h("ul", { class: "bands" }, sensor.bands.map((b) => h("li", {},
    h("span", { class: "band-name" }, b.band), " ", fmtPct(b.watched_fraction),
    b.revisit_s > 0 ? ` · ${t("sensor.revisit", { s: fmtNumber(b.revisit_s, 1) })}` : "")));
}

/** Only what was lost: a healthy sensor reads "none". */
function losses(sensor) {
  if (sensor.last_heartbeat_s === null) return "—";
  const parts = [];
  if (sensor.n_dropped_samples) parts.push(t("sensor.dropped_samples", { n: fmtInt(sensor.n_dropped_samples) }));
  if (sensor.n_overload_blocks) parts.push(t("sensor.overloads", { n: fmtInt(sensor.n_overload_blocks) }));
  const d = sensor.delivery;
  if (d && d.n_pending) parts.push(t("sensor.pending", { n: fmtInt(d.n_pending) }));
  if (d && d.n_overflow_dropped) parts.push(t("sensor.outbox_dropped", { n: fmtInt(d.n_overflow_dropped) }));
  if (d && d.n_write_failures) parts.push(t("sensor.write_failures", { n: fmtInt(d.n_write_failures) }));
  if (d && d.n_rejected + d.n_invalid) parts.push(t("sensor.rejected", { n: fmtInt(d.n_rejected + d.n_invalid) }));
  return parts.length ? h("ul", { class: "bands" }, parts.map((p) => h("li", {}, p))) : t("sensor.no_losses");
}

function heartbeat(sensor) {
  const age = heartbeatAgeS(sensor);
  if (age === null) return t("sensor.never");
  return t("sensor.ago_s", { s: fmtDuration(age) });
}

function render() {
  if (!els) return;
  const items = [...state.sensors.values()];
  const nOnline = items.filter((x) => x.state === "online").length;
  const nNever = items.filter((x) => x.last_heartbeat_s === null).length;
  const nOffline = items.length - nOnline - nNever;
  replace(els.summary,
    h("span", { class: "pill pill-ok" }, t("sensor.n_online", { n: nOnline })),
    h("span", { class: ["pill", nOffline ? "pill-alert" : null] }, t("sensor.n_offline", { n: nOffline })),
    nNever ? h("span", { class: "pill" }, t("sensor.n_never", { n: nNever })) : null,
    state.offlineAfterS !== null ? h("span", { class: "muted" }, t("sensor.offline_rule", { s: fmtNumber(state.offlineAfterS, 0) }))
      : null);
  replace(els.table, h("table", { class: "table sensors-table", id: "sensors-table" },
    h("thead", {}, h("tr", {},
      ["sensor.id", "sensor.where", "sensor.state", "sensor.last_heartbeat", "sensor.node", "sensor.source",
        "sensor.noise_floor", "sensor.coverage", "sensor.losses", "sensor.last_detection", "sensor.clock"]
        .map((k) => h("th", {}, t(k))))),
    h("tbody", {}, items.map((x) => h("tr", {
      "data-sensor-id": x.sensor_id, "data-state": x.state, "data-heard": String(x.last_heartbeat_s !== null),
      class: x.last_heartbeat_s === null ? "row-never" : `row-${x.state}`,
    },
      h("td", {}, h("strong", {}, x.sensor_id), x.in_site ? "" : h("small", { class: "muted" }, ` ${t("sensor.not_in_site")}`)),
      h("td", {}, wingFloorLabel(x.wing, x.floor), x.in_site ? h("div", { class: "muted" }, doorLabel(x)) : ""),
      h("td", {}, x.last_heartbeat_s === null ? h("span", { class: "badge" }, t("sensor.never"))
        : h("span", { class: ["badge", `status-${x.state}`] }, t(`sensor.${x.state}`))),
      h("td", { class: "hb" }, heartbeat(x)),
      h("td", {}, x.node_id || "—"),
      h("td", { class: "source" }, x.source_state ? tk("source", x.source_state) : "—",
        x.message ? h("div", { class: "muted message", title: x.message }, x.message) : ""),
      h("td", {}, bands(x)),
      h("td", {}, coverage(x)),
      h("td", {}, losses(x)),
      h("td", {}, x.last_detection_s ? fmtAgo(x.last_detection_s) : "—"),
      h("td", {}, x.clock_offset_s === null ? "—" : `${fmtNumber(1000 * x.clock_offset_s, 1)} ms`))))));
}

export default {
  mount(host) {
    els = { summary: h("div", { class: "summary-line", id: "sensors-summary" }), table: h("div", { class: "table-scroll" }) };
    host.append(h("section", { class: "card", "aria-labelledby": "sensors-title" },
      h("div", { class: "card-head" }, h("h1", { id: "sensors-title" }, t("sensors.title")), els.summary),
      h("p", { class: "muted" }, t("sensors.intro")),
      els.table));
    render();
    loadSensors().catch(() => {});
    offs = [on("sensors", render), on("sensor", render)];
    tick = setInterval(render, 2000);
  },
  unmount() {
    for (const off of offs) off();
    offs = [];
    clearInterval(tick);
    els = null;
  },
};
