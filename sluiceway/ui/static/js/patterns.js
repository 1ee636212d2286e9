// The patterns tab: the recurring shapes of the query's streams (Loki's /patterns, mined
// from recent lines per stream and level), the most frequent first, each with its level,
// its share of the lines and how it spread over the range. A click keeps only its lines
// (`|> "pattern"`), Alt-click drops them (`!> "pattern"`).
import { el, clear, fmtNumber, LEVEL_COLORS } from "./dom.js";
import * as api from "./api.js";
import { selectorText } from "./logql.js";
import { detectedLevel } from "./fields.js";

// The pattern's text with its placeholders marked.
function patternText(p) {
  const out = el("span", { class: "ptext" });
  p.split("<_>").forEach((part, i) => {
    if (i) out.append(el("span", { class: "ph", title: "varies" }, "<_>"));
    if (part) out.append(part);
  });
  return out;
}

// Bars of the pattern's lines per step across the whole range.
function spark(samples, startMs, endMs, step, color) {
  const w = 160, h = 22;
  const t0 = startMs / 1000, span = Math.max(1, endMs / 1000 - t0);
  const max = Math.max(1, ...samples.map((s) => s[1]));
  const bw = Math.max(1, (w * step) / span - 0.5);
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("class", "pspark");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  for (const [t, n] of samples) {
    if (!n) continue;
    const r = document.createElementNS(svgNS, "rect");
    const bh = Math.max(1, (h * n) / max);
    r.setAttribute("x", String(Math.max(0, Math.min(w - bw, ((t - t0) / span) * w))));
    r.setAttribute("y", String(h - bh));
    r.setAttribute("width", String(bw));
    r.setAttribute("height", String(bh));
    r.setAttribute("fill", color);
    svg.append(r);
  }
  return svg;
}

export function patternsView({ onPattern }) {
  const list = el("div", { class: "patterns-list", "data-testid": "patterns-list" });
  const stats = el("span", { class: "results-stats" });
  const root = el("section", { class: "patterns panel", "data-testid": "patterns" },
    el("div", { class: "panel-head" }, el("h2", {}, "Patterns"), stats,
      el("span", { class: "muted small" }, "mined from recent lines per stream; at least 30 lines each")),
    list);
  let seq = 0;

  async function load({ query, range, step }, signal) {
    const my = ++seq;
    clear(list);
    stats.textContent = "";
    list.dataset.state = "loading";
    list.append(el("div", { class: "empty" }, "Loading patterns…"));
    const selector = selectorText(query);
    let data;
    try {
      data = await api.patterns({ query: selector, ...range, step: Math.max(10, step) }, { signal });
    } catch (err) {
      if (err.name === "AbortError" || my !== seq) return;
      clear(list);
      list.dataset.state = "error";
      const why = err.status === 404 ? "This server has no pattern ingester (pattern_ingester.enabled is off)." : err.message;
      list.append(el("div", { class: "empty" }, why));
      return;
    }
    if (my !== seq) return;
    clear(list);
    const found = Array.isArray(data) ? data : [];
    list.dataset.state = "done";
    list.dataset.count = String(found.length);
    const totals = found.map((p) => p.samples.reduce((s, x) => s + x[1], 0));
    const all = totals.reduce((a, b) => a + b, 0);
    stats.textContent = found.length ? `${found.length} pattern${found.length === 1 ? "" : "s"} · ${fmtNumber(all)} lines` : "";
    if (!found.length) {
      list.append(el("div", { class: "empty" }, `No patterns for ${selector || "this query"} in this range: patterns need at least 30 similar lines, from the last hours.`));
      return;
    }
    found.forEach((p, i) => {
      const level = detectedLevel(p.level);
      const pct = all ? (100 * totals[i]) / all : 0;
      list.append(el("div", { class: `pattern-row lvl-${level}`, "data-level": level, "data-pattern": p.pattern },
        el("span", { class: "lvl", title: p.level }),
        el("span", { class: "pcount", title: `${totals[i]} lines` }, fmtNumber(totals[i])),
        el("span", { class: "ppct" }, `${pct < 1 ? "<1" : Math.round(pct)}%`),
        spark(p.samples, range.startMs, range.endMs, Math.max(10, step), LEVEL_COLORS[level] ?? LEVEL_COLORS.unknown),
        patternText(p.pattern),
        el("span", { class: "pactions" },
          el("button", { type: "button", class: "ghost small", "data-action": "include", title: "Only lines of this pattern",
            onclick: () => onPattern(p.pattern, "|>") }, "show"),
          el("button", { type: "button", class: "ghost small", "data-action": "exclude", title: "Lines of every other pattern",
            onclick: () => onPattern(p.pattern, "!>") }, "hide"))));
    });
  }

  function reset() {
    seq++;
    clear(list);
    stats.textContent = "";
    delete list.dataset.state;
  }

  return { root, load, reset, set hidden(v) { root.hidden = v; } };
}
