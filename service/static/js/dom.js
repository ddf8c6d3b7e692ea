// DOM helpers and formatters shared by every view. No innerHTML anywhere: text goes in
// as text nodes, so a place name or a note can never inject markup.

import { t, locale } from "./i18n.js";

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (key === "text") el.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "style") throw new Error("inline styles are refused by the CSP: use a class");
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h("button", {class: "primary", onclick: fn}, "text", child, ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  return append(el, children);
}

/** An SVG element, same call as h(). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  return append(el, children);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function replace(el, ...children) {
  clear(el);
  return append(el, children);
}

// -- time: the service's clock (from the Date header of its answers), not the browser's ------

let offsetS = 0;

export function noteServerDate(header) {
  const ms = Date.parse(header || "");
  if (Number.isFinite(ms)) offsetS = ms / 1000 + 0.5 - Date.now() / 1000; // the header is truncated to seconds
}

export function nowS() {
  return Date.now() / 1000 + (Math.abs(offsetS) > 2 ? offsetS : 0);
}

// -- formatters ----------------------------------------------------------------------------

const DASH = "—";

export function fmtTime(tS) {
  if (tS === null || tS === undefined) return DASH;
  return new Date(tS * 1000).toLocaleTimeString(locale(), { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function fmtDateTime(tS) {
  if (tS === null || tS === undefined) return DASH;
  return new Date(tS * 1000).toLocaleString(locale(), {
    day: "2-digit", month: "2-digit", year: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

export function fmtShortDate(tS) {
  return new Date(tS * 1000).toLocaleString(locale(), { day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" });
}

export function fmtAgo(tS) {
  if (tS === null || tS === undefined) return DASH;
  const ageS = Math.max(0, nowS() - tS);
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: "auto", style: "short" });
  if (ageS < 5) return t("time.just_now");
  if (ageS < 60) return rtf.format(-Math.round(ageS), "second");
  if (ageS < 3600) return rtf.format(-Math.round(ageS / 60), "minute");
  if (ageS < 86400) return rtf.format(-Math.round(ageS / 3600), "hour");
  return rtf.format(-Math.round(ageS / 86400), "day");
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return DASH;
  const nf = new Intl.NumberFormat(locale(), { maximumFractionDigits: seconds < 10 ? 1 : 0 });
  if (seconds < 60) return `${nf.format(seconds)} s`;
  const m = Math.floor(seconds / 60);
  return `${m} min ${Math.round(seconds - 60 * m)} s`;
}

export function fmtNumber(v, digits = 1) {
  if (v === null || v === undefined || !Number.isFinite(v)) return DASH;
  return new Intl.NumberFormat(locale(), { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v);
}

export function fmtInt(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return DASH;
  return new Intl.NumberFormat(locale()).format(v);
}

export function fmtPct(p) {
  if (p === null || p === undefined || !Number.isFinite(p)) return DASH;
  return new Intl.NumberFormat(locale(), { style: "percent", maximumFractionDigits: 0 }).format(p);
}

export function fmtFreq(hz) {
  if (hz === null || hz === undefined) return DASH;
  return `${fmtNumber(hz / 1e6, 3)} MHz`;
}

export function fmtDb(v, unit) {
  return v === null || v === undefined ? DASH : `${fmtNumber(v, 1)} ${unit}`;
}

export function fmtBytes(n) {
  if (n < 1024) return `${fmtInt(n)} ${t("unit.bytes")}`;
  if (n < 1024 * 1024) return `${fmtNumber(n / 1024, 1)} ${t("unit.kib")}`;
  return `${fmtNumber(n / 1048576, 1)} ${t("unit.mib")}`;
}

/** "A-1-03" for a cell, the zone's translated kind and id for a zone. */
export function placeLabel(ev) {
  if (ev.cell) return ev.cell;
  if (ev.zone) return ev.zone;
  return t("place.unknown");
}

export function wingFloorLabel(wing, floor) {
  const parts = [];
  if (wing) parts.push(t("place.wing", { wing }));
  if (floor !== null && floor !== undefined) parts.push(t("place.floor", { floor }));
  return parts.join(" · ");
}

export function statusBadge(status) {
  return h("span", { class: ["badge", `status-${status}`], "data-status": status }, t(`status.${status}`));
}

export function techLabel(tech) {
  return t(`tech.${tech}`);
}

/** A horizontal bar for a value in [0, 1] (width set through the CSSOM, which the CSP allows). */
export function bar(fraction, cls) {
  const fill = h("span", { class: "bar-fill" });
  fill.style.width = `${Math.round(100 * Math.min(1, Math.max(0, fraction || 0)))}%`;
  return h("span", { class: ["bar", cls] }, fill);
}

export function debounce(fn, waitMs) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), waitMs);
  };
}

/** Coalesce calls to one per animation frame. */
export function perFrame(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; fn(); });
  };
}

export function toast(message, kind = "info") {
  const host = document.getElementById("toasts");
  const el = h("div", { class: ["toast", `toast-${kind}`], role: kind === "error" ? "alert" : "status" }, message);
  host.append(el);
  setTimeout(() => el.classList.add("leaving"), 4500);
  setTimeout(() => el.remove(), 5000);
}
