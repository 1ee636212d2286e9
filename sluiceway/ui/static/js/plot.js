// Shared uPlot setup: dark-theme axes, sizing that follows the container, and drag-to-zoom.
// The histogram and the metric chart both build on this so they look and behave alike.
import uPlot from "../vendor/uPlot.esm.js";

const AXIS = { stroke: "#8d97a8", grid: { stroke: "rgba(141,151,168,0.12)", width: 1 },
  ticks: { stroke: "rgba(141,151,168,0.25)", width: 1 }, font: "11px var(--font-ui, system-ui)" };

export function axes(yFormat) {
  return [
    { ...AXIS },
    { ...AXIS, size: 52, values: (_u, vals) => vals.map(yFormat) },
  ];
}

// Create a plot that resizes with `container`; `onZoom(startMs, endMs)` gets drag selections.
export function makePlot(container, opts, data, onZoom) {
  const width = Math.max(200, container.clientWidth);
  const plot = new uPlot({
    width, ...opts,
    cursor: { drag: { x: Boolean(onZoom), y: false, setScale: false }, ...(opts.cursor || {}) },
    hooks: {
      ...(opts.hooks || {}),
      setSelect: [(u) => {
        if (!onZoom || u.select.width < 4) return;
        const a = u.posToVal(u.select.left, "x");
        const b = u.posToVal(u.select.left + u.select.width, "x");
        u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        onZoom(a * 1000, b * 1000);
      }],
    },
  }, data, container);
  const ro = new ResizeObserver(() => {
    const w = Math.max(200, container.clientWidth);
    if (Math.abs(w - plot.width) > 1) plot.setSize({ width: w, height: opts.height });
  });
  ro.observe(container);
  return { plot, destroy() { ro.disconnect(); plot.destroy(); } };
}

export { uPlot };
