// The audit log (admins): who did what and when, newest first, with the hash chain that
// shows nothing was removed or altered.

import { api, query } from "../api.js";
import { fmtDateTime, h, replace } from "../dom.js";
import { t, tk } from "../i18n.js";

const PAGE = 100;

const filters = { actor: "", action: "" };
let els = null;
let items = [];
let total = 0;

function actionLabel(action) {
  return tk("audit.action", action);
}

function details(d) {
  const parts = Object.entries(d || {}).filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
  return parts.join(" · ");
}

function render() {
  if (!els) return;
  replace(els.count, t("audit.count", { shown: items.length, total }));
  replace(els.table, h("table", { class: "table audit-table", id: "audit-table" },
    h("thead", {}, h("tr", {}, ["audit.when", "audit.actor", "audit.action", "audit.target", "audit.details", "audit.hash"]
      .map((k) => h("th", {}, t(k))))),
    h("tbody", {}, items.map((r) => h("tr", { "data-action": r.action, "data-target": r.target || "", "data-actor": r.actor },
      h("td", {}, fmtDateTime(r.t_s)),
      h("td", { class: "who" }, r.actor),
      h("td", {}, actionLabel(r.action), h("div", { class: "muted mono" }, r.action)),
      h("td", {}, r.target ? (r.action.startsWith("event.")
        ? h("a", { href: `#/event/${encodeURIComponent(r.target)}` }, r.target) : r.target) : "—"),
      h("td", { class: "details" }, details(r.details)),
      h("td", {}, h("code", { class: "hash", title: r.hash }, r.hash.slice(0, 12))))))));
  els.more.hidden = items.length >= total;
}

async function load(append) {
  try {
    const body = await api(`/api/audit${query({
      actor: filters.actor || undefined, action: filters.action || undefined, limit: PAGE, offset: append ? items.length : 0,
    })}`);
    if (!els) return;
    items = append ? items.concat(body.items) : body.items;
    total = body.total;
    render();
  } catch (err) {
    if (els && err.status !== 401) replace(els.verdict, t("error.generic", { detail: err.message }));
  }
}

async function verify() {
  els.verify.disabled = true;
  try {
    const v = await api("/api/audit/verify");
    if (!els) return;
    els.verdict.className = `verdict ${v.ok ? "ok" : "bad"}`;
    replace(els.verdict, v.ok ? t("audit.chain_ok", { n: v.n_rows, head: v.head_hash.slice(0, 16) })
      : t("audit.chain_bad", { id: v.first_bad_id, problem: v.problem || "" }));
  } catch (err) {
    if (els && err.status !== 401) replace(els.verdict, t("error.generic", { detail: err.message }));
  } finally {
    if (els) els.verify.disabled = false;
  }
}

export default {
  mount(host) {
    items = [];
    total = 0;
    const actor = h("input", { id: "audit-actor", maxlength: "64", value: filters.actor, placeholder: t("audit.actor") });
    const action = h("input", { id: "audit-action", maxlength: "64", value: filters.action, placeholder: "event.acknowledge" });
    els = {
      count: h("span", { class: "muted" }),
      table: h("div", { class: "table-scroll" }),
      more: h("button", { type: "button", onclick: () => load(true) }, t("common.more")),
      verify: h("button", { type: "button", id: "audit-verify", onclick: verify }, t("audit.verify")),
      verdict: h("p", { class: "verdict", "aria-live": "polite" }),
    };
    host.append(h("section", { class: "card", "aria-labelledby": "audit-title" },
      h("div", { class: "card-head" }, h("h1", { id: "audit-title" }, t("audit.title")), els.count),
      h("p", { class: "muted" }, t("audit.intro")),
      h("form", { class: "filters", onsubmit: (e) => {
        e.preventDefault();
        filters.actor = actor.value.trim();
        filters.action = action.value.trim();
        load(false);
      } },
      h("label", { class: "filter" }, h("span", {}, t("audit.actor")), actor),
      h("label", { class: "filter" }, h("span", {}, t("audit.action")), action),
      h("button", { type: "submit" }, t("common.apply")),
      els.verify),
      els.verdict, els.table, els.more));
    load(false);
  },
  unmount() {
    els = null;
  },
};
