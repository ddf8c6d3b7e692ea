// History: where phones were located over 24 h / 7 days / 30 days as a heat map on the
// plan, the cells to search next (ranked by the service, with the evidence behind each
// rank and its activity over time), and the events of one cell.

import { api, query } from "../api.js";
import {
  fmtAgo, fmtDateTime, fmtInt, fmtNumber, fmtPct, fmtShortDate, h, nowS, replace, statusBadge, techLabel, wingFloorLabel,
} from "../dom.js";
import { t } from "../i18n.js";
import { FloorPlan, defaultFloor, floorsOf } from "../plan.js";
import { state } from "../store.js";

const PERIODS = { "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };
const N_EVIDENCE_LINKS = 5;

let period = "24h";
let floor = null;
let wing = "all";
let selected = null;
let els = null;
let plan = null;
let activity = [];
let ranking = null;

const enc = encodeURIComponent;

function heatLevel(n, max) {
  if (!n || !max) return 0;
  return Math.max(1, Math.min(6, Math.ceil((6 * n) / max)));
}

function styleHeat() {
  if (!plan) return;
  const byPlace = new Map(activity.map((a) => [a.place, a]));
  const max = Math.max(0, ...activity.filter((a) => a.kind === "cell").map((a) => a.n_events));
  for (const id of plan.placeEls.keys()) {
    const a = byPlace.get(id);
    const level = a && a.kind === "cell" ? heatLevel(a.n_events, max) : 0;
    plan.style(id, [level ? `heat-${level}` : null, id === selected ? "selected" : null], undefined,
      level >= 4 ? "on-lit" : "on-dark");
    const title = plan.placeEls.get(id).querySelector("title");
    if (title) title.textContent = a ? `${id} — ${t("history.n_events", { n: a.n_events })}` : id;
  }
}

function drawPlan() {
  plan.render(state.site, floor, wing);
  for (const btn of els.floors.querySelectorAll("[data-floor]")) {
    btn.setAttribute("aria-pressed", String(Number(btn.dataset.floor) === floor));
  }
  styleHeat();
}

function heatStrip(counts, max, binS, sinceS) {
  return h("div", { class: "heat-strip", role: "img", "aria-label": t("history.activity_aria") },
    counts.map((n, i) => h("span", {
      class: `heat-cell heat-${heatLevel(n, max)}`,
      title: `${fmtShortDate(sinceS + i * binS)} — ${t("history.n_events", { n })}`,
    })));
}

function renderRanking() {
  if (!ranking) return;
  if (!ranking.items.length) {
    replace(els.ranking, h("p", { class: "muted" }, t("history.no_events")));
    return;
  }
  const max = Math.max(1, ...ranking.items.flatMap((r) => r.activity));
  replace(els.ranking,
    h("p", { class: "muted" }, t("history.ranking_rule", { half: fmtNumber(ranking.half_life_s / 3600, 0) })),
    h("div", { class: "table-scroll" }, h("table", { class: "table ranking", id: "ranking-table" },
      h("thead", {}, h("tr", {},
        h("th", { class: "num" }, "#"), h("th", {}, t("history.cell")), h("th", { class: "num" }, t("history.score")),
        h("th", { class: "num" }, t("history.events")), h("th", {}, t("history.last_seen")),
        h("th", { class: "num" }, t("history.confidence")), h("th", {}, t("history.searches")),
        h("th", {}, t("history.activity", { period: t(`period.${ranking.period}`) })), h("th", {}, t("history.evidence")))),
      h("tbody", {}, ranking.items.map((r) => h("tr", {
        "data-place": r.place, class: r.place === selected ? "selected" : null,
      },
      h("td", { class: "num rank" }, String(r.rank)),
      h("td", {}, h("a", { href: `#/history/${enc(r.place)}`, class: "cell-link" }, r.place),
        h("div", { class: "muted" }, wingFloorLabel(r.wing, r.floor))),
      h("td", { class: "num" }, fmtNumber(r.score, 2)),
      h("td", { class: "num" }, fmtInt(r.n_events), r.n_open ? h("div", { class: "muted" }, t("history.n_open", { n: r.n_open })) : ""),
      h("td", {}, fmtAgo(r.last_seen_s), h("div", { class: "muted" }, r.techs.map(techLabel).join(", "))),
      h("td", { class: "num" }, fmtPct(r.max_confidence), h("div", { class: "muted" }, t("history.mean", { p: fmtPct(r.mean_confidence) }))),
      h("td", {}, r.last_search
        ? [t(`outcome.${r.last_search.outcome}`), h("div", { class: "muted" }, `${fmtAgo(r.last_search.t_s)} · ${r.last_search.by || "—"}`)]
        : t("history.never_searched"),
      r.n_phone_found + r.n_nothing_found + r.n_false_alarm
        ? h("div", { class: "muted" }, t("history.outcomes", { found: r.n_phone_found, nothing: r.n_nothing_found, false_alarm: r.n_false_alarm }))
        : ""),
      h("td", {}, heatStrip(r.activity, max, ranking.bin_s, ranking.since_s)),
      h("td", {}, h("div", { class: "evidence-links" }, r.event_ids.slice(0, N_EVIDENCE_LINKS).map((id) =>
        h("a", { href: `#/event/${enc(id)}`, class: "chip" }, id))))))))),
    ranking.truncated ? h("p", { class: "muted" }, t("history.truncated", { n: ranking.n_events_considered })) : null);
}

async function renderCell() {
  if (!selected) {
    replace(els.cell, h("p", { class: "muted" }, t("history.pick_cell")));
    return;
  }
  const cell = selected;
  replace(els.cellTitle, t("history.cell_events", { cell }));
  try {
    const body = await api(`/api/cells/${enc(cell)}/history${query({ since: Math.floor(nowS() - PERIODS[period]), limit: 200 })}`);
    if (!els || cell !== selected) return;
    replace(els.cell, body.items.length ? h("table", { class: "table", id: "cell-history" },
      h("thead", {}, h("tr", {}, ["event.start", "event.tech", "event.confidence", "event.bursts", "event.status", "workflow.outcome"]
        .map((k) => h("th", {}, t(k))))),
      h("tbody", {}, body.items.map((ev) => h("tr", { "data-event-id": ev.event_id },
        h("td", {}, h("a", { href: `#/event/${enc(ev.event_id)}` }, fmtDateTime(ev.t_start_s))),
        h("td", {}, techLabel(ev.tech)),
        h("td", {}, fmtPct(ev.confidence)),
        h("td", {}, fmtInt(ev.n_bursts)),
        h("td", {}, statusBadge(ev.status)),
        h("td", {}, ev.outcome ? t(`outcome.${ev.outcome}`) : "—")))))
      : h("p", { class: "muted" }, t("history.cell_quiet", { period: t(`period.${period}`) })));
  } catch (err) {
    if (els) replace(els.cell, h("p", { class: "error" }, err.status === 404 ? t("history.no_such_cell", { cell })
      : t("error.generic", { detail: err.message })));
  }
}

async function load() {
  const sinceS = Math.floor(nowS() - PERIODS[period]);
  for (const btn of els.periods.querySelectorAll("[data-period]")) {
    btn.setAttribute("aria-pressed", String(btn.dataset.period === period));
  }
  try {
    const [act, rank] = await Promise.all([
      api(`/api/cells${query({ since: sinceS })}`),
      api(`/api/cells/ranking${query({ period })}`),
    ]);
    if (!els) return;
    activity = act.items;
    ranking = rank;
    styleHeat();
    renderRanking();
  } catch (err) {
    if (els && err.status !== 401) replace(els.ranking, h("p", { class: "error" }, t("error.generic", { detail: err.message })));
  }
  renderCell();
}

export default {
  mount(host, params) {
    selected = params[0] || null;
    const site = state.site;
    if (selected && state.places.has(selected)) {
      floor = state.places.get(selected).floor;
    }
    if (floor === null || !site.floors.includes(floor)) floor = defaultFloor(site);
    els = {};
    plan = new FloorPlan({
      sensors: false,
      onPlaceClick: (id) => {
        if (state.places.get(id).kind === "cell") location.hash = `#/history/${enc(id)}`;
      },
    });
    els.periods = h("div", { class: "segmented", role: "group", "aria-label": t("history.period") },
      Object.keys(PERIODS).map((p) => h("button", {
        type: "button", class: "seg", "data-period": p,
        onclick: () => { period = p; load(); },
      }, t(`period.${p}`))));
    els.floors = h("div", { class: "segmented", role: "group", "aria-label": t("plan.floor_choice") },
      floorsOf(site).map((f) => h("button", {
        type: "button", class: "seg", "data-floor": String(f), onclick: () => { floor = f; drawPlan(); },
      }, t("place.floor", { floor: f }))));
    const wingSelect = h("select", { "aria-label": t("plan.wing_choice"), onchange: (e) => { wing = e.target.value; drawPlan(); } },
      h("option", { value: "all" }, t("plan.all_wings")),
      site.wings.map((w) => h("option", { value: w.id }, w.name ? `${w.name} (${w.id})` : w.id)));
    wingSelect.value = wing;
    els.ranking = h("div", {}, h("p", { class: "muted" }, t("common.loading")));
    els.cellTitle = h("h2", { id: "cell-title" }, t("history.cell_events_none"));
    els.cell = h("div", {});
    host.append(h("div", { class: "history-view" },
      h("div", { class: "view-head" }, h("h1", {}, t("history.title")), els.periods),
      h("div", { class: "history-grid" },
        h("section", { class: "card", "aria-labelledby": "heat-title" },
          h("div", { class: "card-head" }, h("h2", { id: "heat-title" }, t("history.heatmap")),
            h("div", { class: "toolbar" }, els.floors, wingSelect)),
          h("div", { class: "plan-host heat" }, plan.svg),
          h("div", { class: "legend" }, h("span", {}, t("history.fewer")),
            [1, 2, 3, 4, 5, 6].map((k) => h("span", { class: `swatch heat-${k}` })), h("span", {}, t("history.more")))),
        h("section", { class: "card", "aria-labelledby": "cell-title" }, els.cellTitle, els.cell)),
      h("section", { class: "card", "aria-labelledby": "rank-title" },
        h("h2", { id: "rank-title" }, t("history.ranking")), els.ranking)));
    drawPlan();
    load();
  },
  unmount() {
    els = null;
    plan = null;
  },
};
