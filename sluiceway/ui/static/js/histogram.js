// The log-volume histogram: stacked bars per level over the whole time range.
// Preferred source is the server (`sum by (detected_level, level) (count_over_time(<query>
// [step]))`: the level every other view shows, or a `level` label from older servers), which
// counts every matching line; when that fails it falls back to bucketing the lines already
// fetched, and says so, because a partial count must never look like a complete one.
import { el, clear, fmtNumber, LEVEL_COLORS } from "./dom.js";
import { makePlot, axes, uPlot } from "./plot.js";
import { normalizeLevel, levelOf, detectedLevel } from "./fields.js";

const STACK_ORDER = ["critical", "fatal", "error", "warn", "info", "debug", "trace", "unknown"];
const NICE_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
  21600, 43200, 86400];

// About `bars` buckets across the range, on a step a human would pick.
export function pickStep(startMs, endMs, bars = 80) {
  const raw = (endMs - startMs) / 1000 / bars;
  return NICE_STEPS.find((s) => s >= raw) ?? Math.ceil(raw / 86400) * 86400;
}

function buckets(startMs, endMs, step) {
  const t0 = Math.floor(startMs / 1000 / step) * step;
  const n = Math.max(1, Math.ceil((endMs / 1000 - t0) / step));
  return { t0, n, times: Array.from({ length: n }, (_, i) => t0 + i * step) };
}

// From a matrix answer: one series per level (metric.detected_level, else metric.level,
// or "unknown").
export function fromMatrix(result, startMs, endMs, step) {
  const { t0, n, times } = buckets(startMs, endMs, step);
  const byLevel = new Map();
  for (const s of result) {
    const m = s.metric;
    const level = m.detected_level ? detectedLevel(m.detected_level)
      : normalizeLevel(m.level) ?? (m.level ? m.level : "unknown");
    const counts = byLevel.get(level) ?? new Array(n).fill(0);
    for (const [t, v] of s.values) {
      // A point at t counts the window (t-step, t]: it belongs to the bucket that ends at t.
      const i = Math.min(n - 1, Math.max(0, Math.round((t - t0) / step) - 1));
      counts[i] += Number(v);
    }
    byLevel.set(level, counts);
  }
  return { times, byLevel };
}

// From fetched log entries [{tsMs, labels, line}].
export function fromEntries(entries, startMs, endMs, step) {
  const { t0, n, times } = buckets(startMs, endMs, step);
  const byLevel = new Map();
  for (const e of entries) {
    const level = e.level ?? levelOf(e.labels, e.line);
    const counts = byLevel.get(level) ?? new Array(n).fill(0);
    const i = Math.floor((e.tsMs / 1000 - t0) / step);
    if (i >= 0 && i < n) counts[i] += 1;
    byLevel.set(level, counts);
  }
  return { times, byLevel };
}

export function histogram({ onZoom }) {
  const plotBox = el("div", { class: "histogram-plot" });
  const legend = el("div", { class: "histogram-legend" });
  const note = el("span", { class: "histogram-note" });
  const root = el("section", { class: "histogram panel", "data-testid": "histogram" },
    el("div", { class: "panel-head" }, el("h2", {}, "Log volume"), legend, note), plotBox);
  let current = null;

  function render({ times, byLevel }, step, source) {
    current?.destroy();
    current = null;
    clear(plotBox);
    clear(legend);
    const levels = [...byLevel.keys()].sort((a, b) => {
      const ia = STACK_ORDER.indexOf(a), ib = STACK_ORDER.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
    });
    // Stack by pre-summing; draw the tallest (cumulative) first so lower bands paint over it.
    const cum = [];
    let acc = new Array(times.length).fill(0);
    for (const lv of levels) {
      acc = acc.map((v, i) => v + byLevel.get(lv)[i]);
      cum.push(acc);
    }
    let total = 0;
    for (const lv of levels) {
      const sum = byLevel.get(lv).reduce((a, b) => a + b, 0);
      total += sum;
      legend.append(el("span", { class: "legend-item", "data-level": lv },
        el("i", { style: { background: LEVEL_COLORS[lv] ?? LEVEL_COLORS.unknown } }), `${lv} ${fmtNumber(sum)}`));
    }
    root.dataset.total = String(total);
    root.dataset.source = source;
    root.dataset.bars = String(times.filter((_, i) => acc[i] > 0).length);
    note.textContent = source === "metric" ? `${fmtNumber(total)} lines · ${step}s buckets`
      : `${fmtNumber(total)} lines · counted from the lines shown (server count unavailable)`;
    note.classList.toggle("warn", source !== "metric");
    const order = levels.map((_, i) => i).reverse();
    const bars = uPlot.paths.bars({ size: [0.85, 40], gap: 1 });
    const series = [{ value: (_u, v) => (v == null ? "" : new Date(v * 1000).toLocaleString()) }];
    const data = [times];
    for (const i of order) {
      const lv = levels[i];
      const color = LEVEL_COLORS[lv] ?? LEVEL_COLORS.unknown;
      series.push({ label: lv, stroke: color, fill: color + "cc", width: 0, paths: bars, points: { show: false },
        value: (_u, _v, _s, idx) => (idx == null ? "" : fmtNumber(byLevel.get(lv)[idx])) });
      data.push(cum[i]);
    }
    current = makePlot(plotBox, {
      height: 120, legend: { show: false }, series, axes: axes(fmtNumber),
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max) * 1.05] } },
      padding: [6, 18, 0, 0],
    }, data, onZoom);
    plotBox.title = "Drag to zoom into a time range";
  }

  function showMessage(text) {
    current?.destroy();
    current = null;
    clear(plotBox);
    clear(legend);
    note.textContent = "";
    root.dataset.source = "none";
    plotBox.append(el("div", { class: "empty small" }, text));
  }

  return { root, render, showMessage, set hidden(v) { root.hidden = v; } };
}
