// Strings: French first, English on request. Every visible text comes from
// /static/i18n/<lang>.json; the HTML skeleton marks its texts with data-i18n.

const LANGS = ["fr", "en"];
const STORAGE_KEY = "cellwatch.lang";
let lang = "fr";
let dict = {};
const listeners = new Set();

export function currentLang() {
  return lang;
}

export function locale() {
  return lang === "fr" ? "fr-FR" : "en-GB";
}

export function t(key, vars) {
  let text = Object.prototype.hasOwnProperty.call(dict, key) ? dict[key] : key;
  if (vars) text = text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
  return text;
}

export function has(key) {
  return Object.prototype.hasOwnProperty.call(dict, key);
}

/** Translate the marked elements under root (text, placeholder, title, aria-label). */
export function translateTree(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll("[data-i18n-aria-label]")) el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
}

export function onLangChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function preferredLang() {
  const stored = localStorage.getItem(STORAGE_KEY);
  return LANGS.includes(stored) ? stored : "fr";
}

export async function setLang(next) {
  if (!LANGS.includes(next)) next = "fr";
  const response = await fetch(`/static/i18n/${next}.json`, { cache: "no-cache" });
  if (!response.ok) throw new Error(`strings for ${next}: HTTP ${response.status}`);
  dict = await response.json();
  lang = next;
  localStorage.setItem(STORAGE_KEY, next);
  document.documentElement.lang = next;
  translateTree(document);
  document.title = t("app.title");
  for (const btn of document.querySelectorAll("[data-lang]")) btn.setAttribute("aria-pressed", String(btn.dataset.lang === next));
  for (const fn of listeners) fn(next);
}

/** The translation of prefix.value when there is one, else the value as it is (open vocabularies). */
export function tk(prefix, value) {
  const key = `${prefix}.${value}`;
  return has(key) ? t(key) : String(value);
}
