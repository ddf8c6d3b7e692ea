// A spectrogram (time across, frequency up, power as colour) on a canvas, from the
// service's JSON: {t_s: [n_t], freq_hz: [n_f], power_db: [n_t][n_f] (or [n_f][n_t])}.

import { fmtNumber } from "./dom.js";

// Perceptually uniform dark-to-bright stops (viridis), interpolated to 256 entries.
const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const LUT = (() => {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (STOPS.length - 1);
    const k = Math.min(STOPS.length - 2, Math.floor(x));
    const f = x - k;
    for (let c = 0; c < 3; c++) lut[3 * i + c] = STOPS[k][c] + f * (STOPS[k + 1][c] - STOPS[k][c]);
  }
  return lut;
})();

/** The matrix as rows of time, whichever way the service sent it. */
export function timeMajor(data) {
  const nT = data.t_s.length;
  const nF = data.freq_hz.length;
  const rows = data.power_db;
  if (rows.length === nT && (rows[0] || []).length === nF) return rows;
  if (rows.length === nF && (rows[0] || []).length === nT) {
    return Array.from({ length: nT }, (_, i) => rows.map((row) => row[i]));
  }
  throw new Error(`power_db is ${rows.length} x ${(rows[0] || []).length}, axes are ${nT} and ${nF}`);
}

function percentile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))];
}

/** Draw and return the colour scale used: {lo_db, hi_db}. */
export function drawSpectrogram(canvas, data) {
  const rows = timeMajor(data);
  const nT = rows.length;
  const nF = data.freq_hz.length;
  const values = rows.flat().filter(Number.isFinite).sort((a, b) => a - b);
  if (!nT || !nF || !values.length) throw new Error("empty spectrogram");
  const lo = percentile(values, 0.05);
  const hi = Math.max(lo + 1, values[values.length - 1]);

  const image = new ImageData(nT, nF);
  for (let i = 0; i < nT; i++) {
    for (let j = 0; j < nF; j++) {
      const v = rows[i][j];
      const k = Number.isFinite(v) ? Math.round(255 * Math.min(1, Math.max(0, (v - lo) / (hi - lo)))) : 0;
      const p = 4 * ((nF - 1 - j) * nT + i); // frequency up
      image.data[p] = LUT[3 * k];
      image.data[p + 1] = LUT[3 * k + 1];
      image.data[p + 2] = LUT[3 * k + 2];
      image.data[p + 3] = 255;
    }
  }
  const raw = document.createElement("canvas");
  raw.width = nT;
  raw.height = nF;
  raw.getContext("2d").putImageData(image, 0, 0);

  const dpr = window.devicePixelRatio || 1;
  const cssWidth = canvas.clientWidth || 640;
  const cssHeight = canvas.clientHeight || 240;
  canvas.width = Math.round(cssWidth * dpr);
  canvas.height = Math.round(cssHeight * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const m = { left: 82, right: 14, top: 8, bottom: 30 };
  const w = cssWidth - m.left - m.right;
  const hgt = cssHeight - m.top - m.bottom;
  ctx.fillStyle = "#0b1117";
  ctx.fillRect(0, 0, cssWidth, cssHeight);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(raw, m.left, m.top, w, hgt);

  // Axes: time in ms from the first column, frequency as offset from the centre in kHz.
  ctx.strokeStyle = "#5b6b78";
  ctx.fillStyle = "#c9d4dc";
  ctx.font = "12px system-ui, sans-serif";
  ctx.strokeRect(m.left + 0.5, m.top + 0.5, w, hgt);
  const t0 = data.t_s[0];
  const spanMs = 1000 * (data.t_s[nT - 1] - t0);
  ctx.textBaseline = "top";
  for (let k = 0; k <= 4; k++) {
    const x = m.left + (k / 4) * w;
    ctx.textAlign = k === 0 ? "left" : k === 4 ? "right" : "center";
    ctx.fillText(`${fmtNumber((k / 4) * spanMs, spanMs < 10 ? 1 : 0)} ms`, x, m.top + hgt + 6);
  }
  const center = data.center_freq_hz || 0;
  const f0 = data.freq_hz[0];
  const f1 = data.freq_hz[nF - 1];
  const absolute = Math.abs(f0) > 1e6; // absolute frequencies: show them relative to the centre
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let k = 0; k <= 4; k++) {
    const f = f0 + (k / 4) * (f1 - f0);
    const offsetKhz = (absolute ? f - center : f) / 1e3;
    const y = m.top + hgt - (k / 4) * hgt;
    ctx.fillText(`${offsetKhz > 0 ? "+" : ""}${fmtNumber(offsetKhz, 0)} kHz`, m.left - 6, y);
  }
  // The burst the detector found, as a dashed box (times and frequencies are absolute).
  const b = data.burst;
  const tSpan = data.t_s[nT - 1] - t0;
  if (b && tSpan > 0 && f1 !== f0) {
    const x0 = m.left + ((b.t_start_s - t0) / tSpan) * w;
    const x1 = m.left + ((b.t_start_s + b.duration_s - t0) / tSpan) * w;
    const yOf = (f) => m.top + hgt - ((f - f0) / (f1 - f0)) * hgt;
    const y0 = yOf(b.freq_hz + b.bandwidth_hz / 2);
    const y1 = yOf(b.freq_hz - b.bandwidth_hz / 2);
    const left = Math.max(m.left, Math.min(x0, x1));
    const right = Math.min(m.left + w, Math.max(x0, x1));
    const top = Math.max(m.top, Math.min(y0, y1));
    const bottom = Math.min(m.top + hgt, Math.max(y0, y1));
    if (right > left && bottom > top) {
      ctx.setLineDash([5, 4]);
      ctx.strokeStyle = "#ffffff";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(left, top, right - left, bottom - top);
      ctx.setLineDash([]);
    }
  }
  return { lo_db: lo, hi_db: hi };
}
