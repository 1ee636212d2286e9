// Metric query results (matrix, vector, scalar) as a time-series chart with a legend.
// Series are aligned on the union of their timestamps; a missing point is a gap, not a zero,
// because Loki omits steps with no data and drawing them as 0 would invent a value.
import { el, clear, fmtNumber, PALETTE } from "./dom.js";
import { makePlot, axes } from "./plot.js";

export function seriesName(metric) {
  const parts = Object.entries(metric).map(([k, v]) => `${k}="${v}"`);
  return parts.length ? `{${parts.join(", ")}}` : "{}";
}

// Normalise Loki's metric result types to [{metric, values: [[sec, number]]}].
export function toSeries(data) {
  if (data.resultType === "matrix") {
    return data.result.map((s) => ({ metric: s.metric, values: s.values.map(([t, v]) => [Number(t), Number(v)]) }));
  }
  if (data.resultType === "vector") {
    return data.result.map((s) => ({ metric: s.metric, values: [[Number(s.value[0]), Number(s.value[1])]] }));
  }
  if (data.resultType === "scalar") {
    return [{ metric: {}, values: [[Number(data.result[0]), Number(data.result[1])]] }];
  }
  return [];
}

export function metricChart({ onZoom }) {
  const plotBox = el("div", { class: "chart-plot" });
  const title = el("span", { class: "chart-note" });
  const root = el("section", { class: "chart panel", "data-testid": "metric-chart", hidden: true },
    el("div", { class: "panel-head" }, el("h2", {}, "Metric"), title), plotBox);
  let current = null;

  function render(data) {
    current?.destroy();
    current = null;
    clear(plotBox);
    const list = toSeries(data);
    root.dataset.series = String(list.length);
    root.hidden = false;
    if (!list.length) {
      title.textContent = "";
      plotBox.append(el("div", { class: "empty" }, "The query matched no series in this time range."));
      return;
    }
    const times = [...new Set(list.flatMap((s) => s.values.map((v) => v[0])))].sort((a, b) => a - b);
    const index = new Map(times.map((t, i) => [t, i]));
    const series = [{}];
    const cols = [times];
    list.forEach((s, i) => {
      const col = new Array(times.length).fill(null);
      for (const [t, v] of s.values) col[index.get(t)] = v;
      cols.push(col);
      const color = PALETTE[i % PALETTE.length];
      series.push({ label: seriesName(s.metric), stroke: color, width: 1.6, fill: list.length === 1 ? color + "22" : undefined,
        points: { show: times.length < 40, size: 4 }, value: (_u, v) => (v == null ? "–" : fmtNumber(v)) });
    });
    title.textContent = `${list.length} series · ${times.length} points`;
    current = makePlot(plotBox, {
      height: 320, series, axes: axes(fmtNumber), scales: { x: { time: true } },
      legend: { live: true }, padding: [10, 18, 0, 0],
    }, cols, onZoom);
  }

  function hide() { root.hidden = true; current?.destroy(); current = null; clear(plotBox); }

  return { root, render, hide };
}
