// One event: where and how sure, what was heard by which sensor, the candidates, the
// spectrogram of its bursts, the workflow (acknowledge, search request, close) and the
// evidence export with the SHA-256 of each file.

import { api, query } from "../api.js";
import {
  bar, debounce, fmtAgo, fmtBytes, fmtDateTime, fmtDb, fmtDuration, fmtFreq, fmtInt, fmtNumber, fmtPct, h, placeLabel,
  replace, statusBadge, techLabel, toast, wingFloorLabel,
} from "../dom.js";
import { t, tk } from "../i18n.js";
import { FloorPlan, nearestCell } from "../plan.js";
import { sha256Hex } from "../sha256.js";
import { drawSpectrogram } from "../spectrogram.js";
import { hasRole, on, state, upsertEvent } from "../store.js";
import { readZip } from "../zip.js";

const OUTCOMES = ["phone_found", "nothing_found", "false_alarm"];
const RSSI_FLOOR_DBM = -110;
const RSSI_CEIL_DBM = -30;

let eventId = null;
let detail = null;
let manifest = null;
let els = null;
let offs = [];
let refetch = null;

const enc = encodeURIComponent;

function rssiFraction(dbm) {
  return dbm === null || dbm === undefined ? 0 : (dbm - RSSI_FLOOR_DBM) / (RSSI_CEIL_DBM - RSSI_FLOOR_DBM);
}

function row(label, value, id) {
  return [h("dt", {}, label), h("dd", { id }, value)];
}

// -- the parts that follow the event -------------------------------------------------------

function renderHeader() {
  const ev = detail;
  replace(els.title, placeLabel(ev));
  replace(els.subtitle,
    ev.zone && !ev.cell ? `${tk("kind", (state.places.get(ev.zone) || {}).kind || "zone")} · ` : "",
    wingFloorLabel(ev.wing, ev.floor));
  replace(els.status, statusBadge(ev.status),
    h("span", { class: "pill" }, `${t("event.confidence")} ${fmtPct(ev.confidence)}`),
    ev.priority !== "alert" ? h("span", { class: "pill" }, tk("priority", ev.priority)) : null);
}

function renderSummary() {
  const ev = detail;
  replace(els.summary,
    row(t("event.tech"), techLabel(ev.tech)),
    row(t("event.freq"), fmtFreq(ev.freq_hz)),
    row(t("event.channel"), ev.channel || "—"),
    row(t("event.start"), fmtDateTime(ev.t_start_s)),
    row(t("event.end"), fmtDateTime(ev.t_end_s)),
    row(t("event.duration"), fmtDuration(ev.t_end_s - ev.t_start_s)),
    row(t("event.bursts"), fmtInt(ev.n_bursts)),
    row(t("event.detections"), fmtInt(ev.n_detections)),
    row(t("event.first_seen"), fmtDateTime(ev.created_s)),
    row(t("event.last_update"), `${fmtDateTime(ev.updated_s)} (${fmtAgo(ev.updated_s)})`),
    row(t("event.id"), h("code", {}, ev.event_id)));
}

/** Where a sensor is, the way staff say it: "by A-1-05" rather than "A-1-corridor". */
export function doorLabel(site) {
  const door = nearestCell(state.places.values(), site);
  return door ? t("hunt.near", { cell: door }) : site.place_id;
}

function renderSensors() {
  const sensors = [...detail.sensors].sort((a, b) => (b.rssi_dbm ?? -999) - (a.rssi_dbm ?? -999));
  if (!sensors.length) {
    replace(els.sensors, h("p", { class: "muted" }, t("event.no_sensors")));
    return;
  }
  replace(els.sensors, h("table", { class: "table", id: "event-sensors" },
    h("thead", {}, h("tr", {},
      h("th", {}, t("sensor.id")), h("th", {}, t("sensor.where")), h("th", { class: "num" }, t("sensor.rssi")),
      h("th", { class: "num" }, t("event.bursts")), h("th", { class: "bar-col" }, ""))),
    h("tbody", {}, sensors.map((sensor, i) => {
      const site = state.siteSensors.get(sensor.sensor_id);
      return h("tr", { class: i === 0 ? "strongest" : null, "data-sensor-id": sensor.sensor_id },
        h("td", {}, sensor.sensor_id),
        h("td", {}, site ? doorLabel(site) : "—"),
        h("td", { class: "num" }, fmtDb(sensor.rssi_dbm, "dBm")),
        h("td", { class: "num" }, fmtInt(sensor.n_bursts)),
        h("td", { class: "bar-col" }, bar(rssiFraction(sensor.rssi_dbm), "bar-rssi")));
    }))));
}

function renderCandidates() {
  const ev = detail;
  const items = ev.candidates.length ? ev.candidates : [];
  replace(els.candidates, items.length ? h("ol", { class: "candidates", id: "event-candidates" }, items.map((c) => {
    const place = state.places.get(c.place);
    return h("li", { "data-place": c.place, class: c.place === (ev.cell || ev.zone) ? "chosen" : null },
      h("span", { class: "cand-place" }, c.place,
        place && place.kind !== "cell" ? h("small", {}, ` ${tk("kind", place.kind)}`) : ""),
      bar(c.p, "bar-p"),
      h("span", { class: "num" }, fmtPct(c.p)));
  })) : h("p", { class: "muted" }, t("event.no_candidates")));
  // The candidates on the plan of the event's floor.
  const floor = ev.floor ?? (state.places.get((items[0] || {}).place) || {}).floor;
  if (floor === undefined || floor === null || !state.site) {
    replace(els.miniPlan);
    return;
  }
  const plan = new FloorPlan({ sensors: true });
  plan.render(state.site, floor, ev.wing || "all");
  for (const c of items) {
    const level = Math.min(5, Math.max(1, Math.ceil(c.p * 5)));
    plan.style(c.place, ["cand", `cand-${level}`, c.place === (ev.cell || ev.zone) ? "chosen" : null], fmtPct(c.p),
      "on-dark");
  }
  for (const sensor of ev.sensors) plan.setSensorState(sensor.sensor_id, "heard");
  replace(els.miniPlan, plan.svg);
}

function renderWorkflow() {
  const ev = detail;
  if (!ev || !els) return;
  const canAct = hasRole("operator");
  els.ack.disabled = !canAct || ev.status !== "new";
  els.escalate.disabled = !canAct || !["new", "acknowledged"].includes(ev.status);
  els.close.disabled = !canAct || ev.status === "closed" || !els.outcome.value;
  els.outcome.disabled = !canAct || ev.status === "closed";
  els.note.disabled = !canAct || ev.status === "closed";
  els.closedNote.hidden = ev.status !== "closed";
  if (ev.status === "closed") {
    replace(els.closedNote, t("workflow.closed_as", { outcome: t(`outcome.${ev.outcome}`), user: ev.status_by || "—" }));
  }
  if (ev.actions === undefined) { // shown from the live summary: the history is on its way
    replace(els.actions, h("p", { class: "muted" }, t("common.loading")));
    return;
  }
  const actions = ev.actions;
  replace(els.actions, actions.length ? h("table", { class: "table", id: "event-actions" },
    h("thead", {}, h("tr", {}, h("th", {}, t("workflow.when")), h("th", {}, t("workflow.who")),
      h("th", {}, t("workflow.action")), h("th", {}, t("workflow.note")))),
    h("tbody", {}, [...actions].reverse().map((a) => h("tr", { "data-action": a.action },
      h("td", {}, fmtDateTime(a.t_s)),
      h("td", { class: "who" }, a.username),
      h("td", {}, t(`action.${a.action}`), a.outcome ? ` — ${t(`outcome.${a.outcome}`)}` : ""),
      h("td", { class: "note" }, a.note || "")))))
    : h("p", { class: "muted" }, t("workflow.no_actions")));
}

function renderAll() {
  renderHeader();
  renderSummary();
  renderSensors();
  renderCandidates();
  renderWorkflow();
}

async function load() {
  const id = eventId;
  try {
    const body = await api(`/api/events/${enc(id)}?detections_limit=0`);
    if (id !== eventId || !els) return;
    detail = body;
    upsertEvent(body);
    els.body.hidden = false;
    els.missing.hidden = true;
    renderAll();
  } catch (err) {
    if (!els || id !== eventId) return;
    if (err.status === 404) {
      els.body.hidden = true;
      els.missing.hidden = false;
    } else if (err.status !== 401) {
      toast(t("error.generic", { detail: err.message }), "error");
    }
  }
}

// -- workflow ------------------------------------------------------------------------------

async function act(action) {
  const note = els.note.value.trim() || undefined;
  const body = action === "close" ? { outcome: els.outcome.value, note } : note ? { note } : undefined;
  for (const b of [els.ack, els.escalate, els.close]) b.disabled = true;
  try {
    const ev = await api(`/api/events/${enc(eventId)}/${action}`, { method: "POST", body });
    upsertEvent(ev);
    els.note.value = "";
    toast(t(`workflow.done_${action}`, { user: state.me.username }), "ok");
  } catch (err) {
    if (err.status === 409) toast(t("workflow.conflict"), "error");
    else if (err.status === 403) toast(t("workflow.forbidden"), "error");
    else if (err.status !== 401) toast(t("error.generic", { detail: err.message }), "error");
  }
  await load();
}

function workflowCard() {
  els.note = h("textarea", { id: "wf-note", rows: "2", maxlength: "2000", placeholder: t("workflow.note_placeholder") });
  els.ack = h("button", { type: "button", class: "primary", id: "btn-ack", onclick: () => act("acknowledge") },
    t("workflow.acknowledge"));
  els.escalate = h("button", { type: "button", class: "warn", id: "btn-escalate", onclick: () => act("escalate") },
    t("workflow.escalate"));
  els.outcome = h("select", { id: "wf-outcome", onchange: () => renderWorkflow() },
    h("option", { value: "" }, t("workflow.choose_outcome")),
    OUTCOMES.map((o) => h("option", { value: o }, t(`outcome.${o}`))));
  els.close = h("button", { type: "button", id: "btn-close", onclick: () => act("close") }, t("workflow.close"));
  els.closedNote = h("p", { class: "closed-note", hidden: true });
  els.actions = h("div", { class: "actions-history" });
  const canAct = hasRole("operator");
  return h("section", { class: "card workflow-card", "aria-labelledby": "wf-title" },
    h("h2", { id: "wf-title" }, t("workflow.title")),
    h("p", { class: "acting-as", id: "acting-as" },
      canAct ? t("workflow.acting_as", { user: state.me.username, role: t(`role.${state.me.role}`) })
        : t("workflow.read_only", { user: state.me.username })),
    els.closedNote,
    h("div", { class: "workflow", hidden: !canAct },
      h("label", { class: "stack" }, h("span", {}, t("workflow.note")), els.note),
      h("div", { class: "buttons" }, els.ack, els.escalate),
      h("div", { class: "buttons close-row" },
        h("label", { class: "filter" }, h("span", {}, t("workflow.outcome")), els.outcome), els.close)),
    h("h3", {}, t("workflow.history")),
    els.actions);
}

// -- spectrogram and evidence ----------------------------------------------------------------

async function loadSpectrogram(hasSnippet, sensorId) {
  if (!hasSnippet) {
    replace(els.spectro, h("p", { class: "muted no-iq", id: "no-iq" }, t("spectrogram.none")));
    return;
  }
  try {
    const data = await api(`/api/events/${enc(eventId)}/spectrogram${query({ sensor_id: sensorId })}`);
    if (!els) return;
    const canvas = h("canvas", { class: "spectrogram", id: "spectrogram", role: "img",
      "aria-label": t("spectrogram.aria", { sensor: data.sensor_id }) });
    const caption = h("p", { class: "muted caption" });
    let picker = null;
    if ((data.sensors || []).length > 1) {
      const select = h("select", { id: "spectro-sensor", onchange: (e) => loadSpectrogram(true, e.target.value) },
        data.sensors.map((id) => h("option", { value: id }, id)));
      select.value = data.sensor_id;
      picker = h("label", { class: "filter" }, h("span", {}, t("spectrogram.sensor")), select);
    }
    replace(els.spectro, picker, canvas, caption);
    const scale = drawSpectrogram(canvas, data);
    replace(caption, t("spectrogram.caption", {
      sensor: data.sensor_id, center: fmtFreq(data.center_freq_hz), rate: fmtNumber(data.sample_rate_hz / 1e6, 2),
      lo: fmtNumber(scale.lo_db, 0), hi: fmtNumber(scale.hi_db, 0),
    }), data.burst ? ` ${t("spectrogram.burst_box")}` : "");
  } catch (err) {
    if (!els) return;
    replace(els.spectro, h("p", { class: "muted no-iq", id: "no-iq" },
      err.status === 404 ? t("spectrogram.none") : t("error.generic", { detail: err.message })));
  }
}

/** The files of the evidence: the service's manifest (current state) or an exported archive. */
function renderFiles(files, zipHash, exported) {
  replace(els.manifest,
    h("p", { class: "muted files-origin", id: "evidence-origin" }, exported
      ? t("evidence.exported_at", { when: fmtDateTime(exported.t_s), user: state.me.username })
      : t("evidence.current")),
    h("div", { class: "manifest-scroll" }, h("table", { class: "table hashes", id: "evidence-manifest", "data-origin": exported ? "export" : "manifest" },
      h("thead", {}, h("tr", {}, h("th", {}, t("evidence.file")), h("th", { class: "num" }, t("evidence.size")),
        h("th", {}, "SHA-256"), exported ? h("th", {}, t("evidence.check")) : null)),
      h("tbody", {}, files.map((f) => h("tr", { "data-file": f.name },
        h("td", { class: "file-name" }, f.name),
        h("td", { class: "num" }, fmtBytes(f.bytes)),
        h("td", {}, h("code", { class: "sha256" }, f.sha256)),
        exported ? h("td", { class: ["check", f.check === true ? "ok" : f.check === false ? "bad" : "index"] },
          f.check === true ? t("evidence.match") : f.check === false ? t("evidence.mismatch") : t("evidence.index"))
          : null))))),
    h("p", { class: "zip-hash" }, t("evidence.zip_hash"), " ", h("code", { class: "sha256", id: "zip-sha256" }, zipHash)));
}

/** "hash  name" lines (sha256sum's format, "*" before the name in binary mode). */
function parseSums(bytes) {
  const sums = new Map();
  for (const line of new TextDecoder().decode(bytes).split("\n")) {
    const m = line.match(/^([0-9a-f]{64}) [ *](.+)$/);
    if (m) sums.set(m[2], m[1]);
  }
  return sums;
}

function saveBlob(buffer, name) {
  const url = URL.createObjectURL(new Blob([buffer], { type: "application/zip" }));
  const link = h("a", { href: url, download: name, class: "visually-hidden" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Export: fetch the archive once, check and hash it here, show those hashes, save that very file.
 * The evidence of an event still going on grows between two requests: what is shown after an
 * export is always the archive that was saved, checked against its own SHA256SUMS. */
async function exportEvidence() {
  els.exportButton.disabled = true;
  els.verdict.className = "verdict";
  replace(els.verdict, t("evidence.exporting"));
  try {
    const response = await fetch(`/api/events/${enc(eventId)}/evidence`, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const announced = response.headers.get("x-content-sha256");
    const disposition = response.headers.get("content-disposition") || "";
    const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || `cellwatch-evidence-${eventId}.zip`;
    const buffer = await response.arrayBuffer();
    const zipHash = await sha256Hex(buffer);
    const entries = await readZip(buffer);
    const sums = entries.has("SHA256SUMS") ? parseSums(entries.get("SHA256SUMS")) : new Map();
    const files = [];
    for (const [fileName, bytes] of entries) {
      const sha256 = await sha256Hex(bytes);
      files.push({ name: fileName, bytes: bytes.length, sha256, check: fileName === "SHA256SUMS" ? null : sums.get(fileName) === sha256 });
    }
    if (!els) return;
    renderFiles(files, zipHash, { t_s: Date.now() / 1000 });
    const nOk = files.filter((f) => f.check === true).length;
    const nChecked = files.filter((f) => f.check !== null).length;
    const allOk = nOk === nChecked && nChecked > 0 && (!announced || announced === zipHash);
    els.verdict.className = `verdict ${allOk ? "ok" : "bad"}`;
    replace(els.verdict, allOk ? t("evidence.verified", { n: nOk })
      : t("evidence.not_verified", { n: nOk, total: nChecked }),
    announced && announced !== zipHash ? ` ${t("evidence.zip_mismatch")}` : "");
    saveBlob(buffer, name);
  } catch (err) {
    if (!els) return;
    els.verdict.className = "verdict bad";
    replace(els.verdict, t("error.generic", { detail: err.message }));
  } finally {
    if (els) els.exportButton.disabled = false;
  }
}

async function loadEvidence() {
  try {
    manifest = await api(`/api/events/${enc(eventId)}/evidence/manifest`);
  } catch (err) {
    if (!els) return;
    replace(els.evidence, h("p", { class: "muted" },
      err.status === 404 ? t("evidence.none") : t("error.generic", { detail: err.message })));
    loadSpectrogram(false);
    return;
  }
  if (!els) return;
  els.exportButton = h("button", { type: "button", class: "primary", id: "evidence-export", onclick: exportEvidence },
    t("evidence.download"));
  els.verdict = h("p", { class: "verdict", id: "evidence-verdict", "aria-live": "polite" });
  els.manifest = h("div", { class: "manifest" });
  replace(els.evidence,
    h("p", { class: "muted" }, t("evidence.intro")),
    h("div", { class: "buttons" }, els.exportButton),
    els.verdict, els.manifest);
  renderFiles(manifest.files, manifest.zip_sha256, null);
  loadSpectrogram(manifest.files.some((f) => f.name.endsWith(".sigmf-data")));
}

// -- the view ------------------------------------------------------------------------------

export default {
  mount(host, params) {
    eventId = params[0] || "";
    detail = null;
    manifest = null;
    els = {};
    els.title = h("h1", { id: "event-place" });
    els.subtitle = h("p", { class: "subtitle" });
    els.status = h("div", { class: "status-line", id: "event-status" });
    els.summary = h("dl", { class: "facts", id: "event-summary" });
    els.sensors = h("div", {});
    els.candidates = h("div", {});
    els.miniPlan = h("div", { class: "mini-plan" });
    els.spectro = h("div", { class: "spectro-host" }, h("p", { class: "muted" }, t("common.loading")));
    els.evidence = h("div", {}, h("p", { class: "muted" }, t("common.loading")));
    els.missing = h("p", { class: "card error", hidden: true }, t("event.not_found", { id: eventId }));
    els.body = h("div", { class: "event-grid" },
      h("section", { class: "card", "aria-labelledby": "sum-title" }, h("h2", { id: "sum-title" }, t("event.summary")),
        els.summary),
      workflowCard(),
      h("section", { class: "card", "aria-labelledby": "sens-title" },
        h("h2", { id: "sens-title" }, t("event.sensors_heard")), els.sensors),
      h("section", { class: "card", "aria-labelledby": "cand-title" },
        h("h2", { id: "cand-title" }, t("event.candidates")), els.candidates, els.miniPlan),
      h("section", { class: "card", "aria-labelledby": "spec-title" },
        h("h2", { id: "spec-title" }, t("spectrogram.title")), els.spectro),
      h("section", { class: "card", "aria-labelledby": "evid-title" },
        h("h2", { id: "evid-title" }, t("evidence.title")), els.evidence));
    host.append(h("div", { class: "event-view", "data-event-id": eventId },
      h("div", { class: "event-head" },
        h("a", { href: "#/live", class: "back" }, t("common.back")),
        h("div", { class: "event-title" }, els.title, els.subtitle, els.status),
        h("a", { class: "button", id: "btn-hunt", href: `#/hunt/${enc(eventId)}` }, t("hunt.open"))),
      els.missing, els.body));
    refetch = debounce(load, 1500);
    const known = state.events.get(eventId);
    if (known) { // what is already known shows at once (language switch, back and forth)
      detail = known;
      renderAll();
    }
    offs = [on("event", ({ ev }) => {
      if (ev.event_id === eventId) refetch();
    })];
    load();
    loadEvidence();
  },
  unmount() {
    for (const off of offs) off();
    offs = [];
    els = null;
    detail = null;
  },
};
