// An optional beep for new alerts, made with WebAudio (no sound file to ship).
// Off by default; the audio context starts on a click, as browsers require.

const STORAGE_KEY = "cellwatch.sound";
let enabled = localStorage.getItem(STORAGE_KEY) === "on";
let context = null;

function ensureContext() {
  if (!context) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    context = new Ctx();
  }
  if (context.state === "suspended") context.resume();
  return context;
}

// Browsers only let audio start from a user gesture: wake the context on the first click.
document.addEventListener("pointerdown", () => {
  if (enabled) ensureContext();
}, { once: true });

export function isEnabled() {
  return enabled;
}

export function setEnabled(on) {
  enabled = Boolean(on);
  localStorage.setItem(STORAGE_KEY, enabled ? "on" : "off");
  if (enabled) {
    ensureContext();
    beep("alert");
  }
}

/** Two short tones: high for a phone alert, low for a sensor going offline. */
export function beep(kind = "alert") {
  if (!enabled || !context || context.state !== "running") return;
  const freqHz = kind === "alert" ? 880 : 440;
  const t0 = context.currentTime + 0.01;
  for (const offsetS of [0, 0.22]) {
    const osc = context.createOscillator();
    const gain = context.createGain();
    osc.type = "sine";
    osc.frequency.value = freqHz;
    gain.gain.setValueAtTime(0.0001, t0 + offsetS);
    gain.gain.exponentialRampToValueAtTime(0.25, t0 + offsetS + 0.01);
    gain.gain.exponentialRampToValueAtTime(0.0001, t0 + offsetS + 0.15);
    osc.connect(gain).connect(context.destination);
    osc.start(t0 + offsetS);
    osc.stop(t0 + offsetS + 0.16);
  }
}
