// Time range: a pair of strings kept in the URL ("now-1h".."now" or epoch milliseconds),
// resolved to absolute milliseconds only when a query runs, so a shared relative link
// shows the recent past of whoever opens it, and an absolute one shows exactly that window.
import { el } from "./dom.js";

export const PRESETS = [
  ["5m", "Last 5 minutes"], ["15m", "Last 15 minutes"], ["1h", "Last hour"],
  ["6h", "Last 6 hours"], ["24h", "Last 24 hours"], ["7d", "Last 7 days"],
];
const UNIT_MS = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };

export function parseDuration(s) {
  const m = /^(\d+(?:\.\d+)?)([smhdw])$/.exec(String(s).trim());
  return m ? Number(m[1]) * UNIT_MS[m[2]] : null;
}

function resolvePoint(s, now) {
  if (s === "now" || s === "" || s == null) return now;
  const rel = /^now-(.+)$/.exec(s);
  if (rel) {
    const d = parseDuration(rel[1]);
    if (d !== null) return now - d;
  }
  if (/^\d+$/.test(s)) return Number(s);
  const t = Date.parse(s);
  return Number.isNaN(t) ? null : t;
}

export function resolve(range, now = Date.now()) {
  const startMs = resolvePoint(range.from, now);
  const endMs = resolvePoint(range.to, now);
  if (startMs === null || endMs === null || startMs >= endMs) {
    return { startMs: now - 3600e3, endMs: now };
  }
  return { startMs, endMs };
}

export const isRelative = (range) => String(range.from).startsWith("now") && range.to === "now";

// A datetime-local input wants local time without a zone: "2026-11-23T18:40".
function toLocalInput(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// Local time, or UTC (`utc`: the log list's time zone toggle).
export function formatTime(ms, withDate = true, utc = false) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const [y, mo, day, h, mi, s] = utc
    ? [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()]
    : [d.getFullYear(), d.getMonth(), d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds()];
  const time = `${pad(h)}:${pad(mi)}:${pad(s)}.${pad(d.getMilliseconds(), 3)}`;
  return withDate ? `${y}-${pad(mo + 1)}-${pad(day)} ${time}` : time;
}

export function describe(range) {
  if (isRelative(range)) {
    const p = PRESETS.find(([k]) => `now-${k}` === range.from);
    return p ? p[1] : `Last ${range.from.slice(4)}`;
  }
  const { startMs, endMs } = resolve(range);
  return `${formatTime(startMs).slice(0, 19)} → ${formatTime(endMs).slice(0, 19)}`;
}

// The picker: preset buttons, an absolute from/to popover, and refresh.
// `onChange(range)` gets the new {from, to}; `onRefresh()` re-runs with the same range.
export function timePicker({ getRange, onChange, onRefresh }) {
  const label = el("span", { class: "tp-label" });
  const presets = PRESETS.map(([k]) =>
    el("button", { type: "button", class: "tp-preset", "data-range": k,
      onclick: () => onChange({ from: `now-${k}`, to: "now" }) }, k));
  const fromIn = el("input", { type: "datetime-local", step: "1", "aria-label": "from" });
  const toIn = el("input", { type: "datetime-local", step: "1", "aria-label": "to" });
  const pop = el("form", { class: "tp-pop", hidden: true,
    onsubmit: (e) => {
      e.preventDefault();
      const a = Date.parse(fromIn.value), b = Date.parse(toIn.value);
      if (Number.isNaN(a) || Number.isNaN(b) || a >= b) { toIn.setCustomValidity("must be after from"); toIn.reportValidity(); return; }
      toIn.setCustomValidity("");
      pop.hidden = true;
      onChange({ from: String(a), to: String(b) });
    } },
    el("label", {}, "From", fromIn), el("label", {}, "To", toIn),
    el("button", { type: "submit", class: "primary" }, "Apply"));
  const custom = el("button", { type: "button", class: "tp-custom", title: "Absolute time range",
    onclick: () => {
      const { startMs, endMs } = resolve(getRange());
      fromIn.value = toLocalInput(startMs);
      toIn.value = toLocalInput(endMs);
      pop.hidden = !pop.hidden;
    } }, label);
  const refresh = el("button", { type: "button", class: "tp-refresh", title: "Refresh (re-run the query)",
    onclick: () => onRefresh() }, "↻");
  const root = el("div", { class: "timepicker" },
    el("div", { class: "tp-presets" }, presets), custom, refresh, pop);
  function update() {
    const r = getRange();
    label.textContent = describe(r);
    for (const b of presets) b.classList.toggle("active", r.to === "now" && r.from === `now-${b.dataset.range}`);
  }
  update();
  return { root, update };
}
