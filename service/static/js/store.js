// What the dashboard knows: the user, the site plan, the events and sensors seen so far,
// kept current by the service's live feed (Server-Sent Events on /api/live).

import { api, query } from "./api.js";

export const OPEN_STATUSES = ["new", "acknowledged", "escalated"];

export const state = {
  me: null, // {username, role}
  site: null, // /api/site
  places: new Map(), // place id -> place (with kind, wing, floor, polygon, centroid)
  siteSensors: new Map(), // sensor id -> site sensor (position, wing, floor, place_id)
  events: new Map(), // event id -> the API's event summary
  sensors: new Map(), // sensor id -> the API's sensor health
  offlineAfterS: null,
  live: "off", // off | connecting | live | reconnecting
};

const listeners = new Map();

export function on(type, fn) {
  if (!listeners.has(type)) listeners.set(type, new Set());
  listeners.get(type).add(fn);
  return () => listeners.get(type).delete(fn);
}

export function emit(type, data) {
  for (const fn of listeners.get(type) || []) {
    try {
      fn(data);
    } catch (err) {
      console.warn("listener failed", type, err); // one broken view must not stop the others
    }
  }
}

const ROLE_RANK = { viewer: 0, operator: 1, admin: 2 };

export function hasRole(role) {
  return state.me !== null && ROLE_RANK[state.me.role] >= ROLE_RANK[role];
}

// -- loading -----------------------------------------------------------------------------

export async function loadSite() {
  const site = await api("/api/site");
  state.site = site;
  state.places = new Map(site.places.map((p) => [p.id, p]));
  state.siteSensors = new Map(site.sensors.map((sensor) => [sensor.id, sensor]));
  emit("site", site);
  return site;
}

const MAX_CACHED_EVENTS = 5000;

/** A console left open for weeks: forget the oldest closed events (the API still has them). */
function prune() {
  const closed = [...state.events.values()].filter((ev) => ev.status === "closed").sort((a, b) => a.updated_s - b.updated_s);
  for (const ev of closed.slice(0, Math.max(0, state.events.size - MAX_CACHED_EVENTS + 500))) state.events.delete(ev.event_id);
}

const STATUS_FIELDS = ["status", "outcome", "note", "status_by", "status_changed_s"];

/** Merge a copy of an event into what is known: live messages and API answers may cross.
 * Located data follows ``revision`` (bumped by every engine update), the workflow fields
 * follow ``status_changed_s`` (an operator's action does not bump the revision). */
export function upsertEvent(ev) {
  const old = state.events.get(ev.event_id);
  if (!old) {
    state.events.set(ev.event_id, ev);
    if (state.events.size > MAX_CACHED_EVENTS) prune();
    return ev;
  }
  const merged = { ...(ev.revision >= old.revision ? ev : old) };
  const statusFrom = (ev.status_changed_s || 0) >= (old.status_changed_s || 0) ? ev : old;
  for (const key of STATUS_FIELDS) merged[key] = statusFrom[key];
  state.events.set(ev.event_id, merged);
  return merged;
}

export async function loadEvents(params) {
  const body = await api(`/api/events${query({ limit: 500, ...params })}`);
  for (const ev of body.items) upsertEvent(ev);
  emit("events", null);
  return body;
}

export async function loadOpenEvents() {
  return loadEvents({ status: OPEN_STATUSES });
}

export async function loadSensors() {
  const body = await api("/api/sensors");
  const before = state.sensors;
  state.offlineAfterS = body.offline_after_s;
  state.sensors = new Map(body.items.map((sensor) => [sensor.sensor_id, { ...sensor, fetched_ms: Date.now() }]));
  // A change this refresh sees first is announced here (the live feed's message then finds
  // nothing new): whichever path sees a sensor go offline or deaf, staff hear it once.
  for (const [id, sensor] of state.sensors) {
    const old = before.get(id);
    if (old && (old.state !== sensor.state || old.source_state !== sensor.source_state)) emit("sensor", { sensor, old });
  }
  emit("sensors", null);
  return body;
}

export async function loadMe() {
  state.me = await api("/api/me", { quiet401: true });
  return state.me;
}

/** Seconds since a sensor's last heartbeat, counting the time since the list was fetched. */
export function heartbeatAgeS(sensor) {
  if (sensor.heartbeat_age_s === null || sensor.heartbeat_age_s === undefined) return null;
  return sensor.heartbeat_age_s + (Date.now() - (sensor.fetched_ms || Date.now())) / 1000;
}

/** Offline sensors that were heard before: each is an alert (a blind spot on the plan). */
export function offlineSensors() {
  return [...state.sensors.values()].filter((sensor) => sensor.state === "offline" && sensor.last_heartbeat_s !== null);
}

/** Is this online sensor deaf: its node alive, its radio not running (a dongle unplugged, retrying)? */
export function isDeaf(sensor) {
  return sensor.state === "online" && Boolean(sensor.source_state)
    && sensor.source_state !== "running" && sensor.source_state !== "stopped";
}

/** Deaf sensors: each is an alert too (a blind spot, though the node still reports). */
export function deafSensors() {
  return [...state.sensors.values()].filter(isDeaf);
}

// -- the live feed -------------------------------------------------------------------------

let source = null;
let lastId = null;
let retryTimer = null;

function setLive(value) {
  state.live = value;
  emit("live", value);
}

function handle(type, fn) {
  source.addEventListener(type, (message) => {
    if (message.lastEventId) lastId = message.lastEventId;
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    fn(data);
  });
}

export function startLive() {
  stopLive();
  setLive("connecting");
  const url = lastId === null ? "/api/live" : `/api/live${query({ last_event_id: lastId })}`;
  source = new EventSource(url);
  source.onopen = () => setLive("live");
  source.onerror = () => {
    if (source && source.readyState === EventSource.CLOSED) {
      // Refused (session gone) or the service is away: check the session, then try again.
      setLive("reconnecting");
      source.close();
      source = null;
      clearTimeout(retryTimer);
      retryTimer = setTimeout(async () => {
        try {
          await loadMe();
          startLive();
          emit("resync", null);
        } catch (err) {
          if (err.status === 401) emit("unauthorized", null);
          else retryTimer = setTimeout(startLive, 3000);
        }
      }, 2000);
    } else {
      setLive("reconnecting"); // EventSource reconnects by itself and resumes with Last-Event-ID
    }
  };
  handle("event.created", (data) => {
    const ev = upsertEvent(data.event);
    emit("event", { ev, created: true });
  });
  handle("event.updated", (data) => {
    const ev = upsertEvent(data.event);
    emit("event", { ev, created: false });
  });
  handle("event.detections", (data) => emit("detections", data));
  handle("sensor.health", (data) => {
    const old = state.sensors.get(data.sensor.sensor_id);
    const sensor = { ...data.sensor, fetched_ms: Date.now() };
    state.sensors.set(sensor.sensor_id, sensor);
    emit("sensor", { sensor, old });
  });
}

export function stopLive() {
  clearTimeout(retryTimer);
  if (source) source.close();
  source = null;
  setLive("off");
}

export function forget() {
  stopLive();
  lastId = null;
  state.me = null;
  state.events.clear();
  state.sensors.clear();
}
