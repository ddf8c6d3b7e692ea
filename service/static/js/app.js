// The dashboard's entry point: language, login, header, the live feed and the views.

import { api, setUnauthorizedHandler } from "./api.js";
import { clear, toast } from "./dom.js";
import { onLangChange, preferredLang, setLang, t } from "./i18n.js";
import * as sound from "./sound.js";
import {
  emit, forget, hasRole, isDeaf, loadMe, loadOpenEvents, loadSensors, loadSite, on, startLive, state,
} from "./store.js";
import audit from "./views/audit.js";
import eventView from "./views/event.js";
import history from "./views/history.js";
import hunt from "./views/hunt.js";
import live from "./views/live.js";
import sensors from "./views/sensors.js";

const VIEWS = { live, event: eventView, history, hunt, sensors, audit };
const USER_HINT = "cellwatch.user"; // ask /api/me at start only if someone logged in here before
const SENSORS_REFRESH_MS = 10_000;
const EVENTS_RESYNC_MS = 60_000;

const $ = (id) => document.getElementById(id);
let current = null;
let timers = [];

function parseHash() {
  const [, name = "live", ...rest] = (location.hash || "#/live").split("/");
  return { name: name || "live", params: rest.map(decodeURIComponent) };
}

function route() {
  if (!state.me) return;
  const { name, params } = parseHash();
  if (!VIEWS[name] || (name === "audit" && !hasRole("admin")) || (name === "event" && !params[0])) {
    location.hash = "#/live";
    return;
  }
  if (current && current.view.unmount) current.view.unmount();
  const host = $("view-app");
  clear(host);
  host.dataset.view = name;
  current = { name, view: VIEWS[name], params };
  VIEWS[name].mount(host, params);
  const active = name === "event" ? "live" : name;
  for (const link of $("nav").querySelectorAll("a")) {
    if (link.dataset.view === active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  window.scrollTo(0, 0);
}

function remount() {
  if (current) route();
}

// -- header --------------------------------------------------------------------------------

function renderHeader() {
  const loggedIn = state.me !== null;
  $("nav").hidden = !loggedIn;
  $("whoami").hidden = !loggedIn;
  $("logout").hidden = !loggedIn;
  $("sound-toggle").hidden = !loggedIn;
  $("live-status").hidden = !loggedIn;
  for (const el of document.querySelectorAll("[data-role]")) el.hidden = !hasRole(el.dataset.role);
  if (loggedIn) {
    $("who-name").textContent = state.me.username;
    $("who-role").textContent = t(`role.${state.me.role}`);
  }
  $("site-name").textContent = state.site ? state.site.name : "";
  const on_ = sound.isEnabled();
  $("sound-toggle").textContent = on_ ? t("sound.on") : t("sound.off");
  $("sound-toggle").setAttribute("aria-pressed", String(on_));
  renderLive(state.live);
}

function renderLive(value) {
  $("live-status").dataset.state = value;
  $("live-text").textContent = t(`live.${value}`);
}

// -- login ---------------------------------------------------------------------------------

function showLogin(message) {
  for (const timer of timers) clearInterval(timer);
  timers = [];
  if (current && current.view.unmount) current.view.unmount();
  current = null;
  forget();
  clear($("view-app"));
  $("view-app").hidden = true;
  $("view-login").hidden = false;
  const error = $("login-error");
  error.hidden = !message;
  error.textContent = message || "";
  renderHeader();
  $("login-username").focus();
}

async function enter() {
  await Promise.all([loadSite(), loadOpenEvents(), loadSensors()]);
  startLive();
  timers.push(setInterval(() => loadSensors().catch(() => {}), SENSORS_REFRESH_MS));
  timers.push(setInterval(() => loadOpenEvents().catch(() => {}), EVENTS_RESYNC_MS));
  $("view-login").hidden = true;
  $("view-app").hidden = false;
  renderHeader();
  route();
}

async function login(e) {
  e.preventDefault();
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  const button = $("login-submit");
  button.disabled = true;
  $("login-error").hidden = true;
  try {
    const body = await api("/api/auth/login", { method: "POST", body: { username, password }, quiet401: true });
    localStorage.setItem(USER_HINT, body.user.username);
    $("login-password").value = "";
    state.me = body.user;
    await enter();
  } catch (err) {
    const error = $("login-error");
    error.hidden = false;
    error.textContent = err.status === 401 ? t("login.bad") : err.status === 429 ? t("login.too_many")
      : t("error.generic", { detail: err.message });
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  try {
    await api("/api/auth/logout", { method: "POST", quiet401: true });
  } catch {
    // the session is gone either way
  }
  localStorage.removeItem(USER_HINT);
  showLogin();
}

// -- start ---------------------------------------------------------------------------------

async function boot() {
  await setLang(preferredLang());
  for (const btn of document.querySelectorAll("[data-lang]")) btn.addEventListener("click", () => setLang(btn.dataset.lang));
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("sound-toggle").addEventListener("click", () => {
    sound.setEnabled(!sound.isEnabled());
    renderHeader();
  });
  onLangChange(() => {
    renderHeader();
    remount();
  });
  on("live", renderLive);
  on("unauthorized", () => showLogin(t("login.expired")));
  on("event", ({ ev, created }) => {
    if (created && ev.priority === "alert") sound.beep("alert");
  });
  on("sensor", ({ sensor, old }) => {
    if (sensor.state === "offline" && old && old.state === "online") {
      sound.beep("sensor");
      toast(t("sensor.went_offline", { id: sensor.sensor_id }), "error");
    } else if (old && isDeaf(sensor) && !isDeaf(old)) {
      sound.beep("sensor");
      toast(t("sensor.went_deaf", { id: sensor.sensor_id }), "error");
    }
  });
  setUnauthorizedHandler(() => emit("unauthorized", null));
  window.addEventListener("hashchange", route);

  if (localStorage.getItem(USER_HINT)) {
    try {
      await loadMe();
      await enter();
    } catch {
      showLogin();
    }
  } else {
    showLogin();
  }
  document.body.classList.remove("booting");
  document.body.dataset.ready = "true";
}

boot().catch((err) => {
  document.body.classList.remove("booting");
  toast(t("error.generic", { detail: err.message }), "error");
});
