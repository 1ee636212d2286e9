// The Explore page: wires the editor, time picker, histogram, log list, metric chart and
// live tail together. It owns the "run a query" flow and the URL state; each part only
// renders what it is given.
import { el, fmtNumber, fmtBytes } from "./dom.js";
import * as api from "./api.js";
import { queryEditor, remember } from "./editor.js";
import { timePicker, resolve } from "./timerange.js";
import { histogram, pickStep, fromMatrix, fromEntries } from "./histogram.js";
import { resultsList, flatten } from "./results.js";
import { lineId, DEDUP_MODES } from "./logview.js";
import { metricChart } from "./chart.js";
import { liveTail } from "./tail.js";
import { fieldsSidebar } from "./sidebar.js";
import { patternsView } from "./patterns.js";
import { isLogQuery, hasParser, addMatcher, appendFilter, appendLineFilter, selectorOf, volumeQuery } from "./logql.js";
import * as route from "./route.js";

const LIMITS = [100, 500, 1000, 5000];
const DEFAULT_LIMIT = 1000;
const CONTEXT_LINES = 10;
const LINK_AROUND_MS = 5 * 60e3; // a live line's link: the five minutes before (or after) it

// The view a URL describes: the query, its range and limit, the tab, the order and dedup
// of the lines, live mode and a linked line.
function viewOf(params) {
  const dedup = params.get("dedup");
  return {
    query: params.get("query") ?? "",
    from: params.get("from") ?? "now-1h",
    to: params.get("to") ?? "now",
    limit: Number(params.get("limit")) || DEFAULT_LIMIT,
    tab: params.get("tab") === "patterns" ? "patterns" : "logs",
    order: params.get("order") === "oldest" ? "oldest" : "newest",
    dedup: DEDUP_MODES.includes(dedup) ? dedup : "none",
    live: params.get("live") === "1",
    line: params.get("line") || undefined,
  };
}

export function explorePage(params) {
  const state = viewOf(params);
  let inflight = null;
  let lastRange = null; // the range the shown lines were fetched for (a line's link keeps it)

  // Completion lists depend on the time range; cache them per range until the next run.
  let cache = { names: null, values: new Map() };
  const complete = {
    names() {
      cache.names ??= api.labels(resolve(state)).catch(() => []);
      return cache.names;
    },
    values(name) {
      if (!cache.values.has(name)) cache.values.set(name, api.labelValues(name, resolve(state)).catch(() => []));
      return cache.values.get(name);
    },
  };

  const editor = queryEditor({ value: state.query, complete, onRun: (q) => { state.query = q; run(true); } });
  const picker = timePicker({
    getRange: () => state,
    onChange: (r) => { Object.assign(state, r); picker.update(); run(true); },
    onRefresh: () => run(false),
  });
  const limitSel = el("select", { "aria-label": "line limit", title: "Maximum lines to fetch",
    onchange: () => { state.limit = Number(limitSel.value); run(true); } },
    LIMITS.map((n) => el("option", { value: n, selected: n === state.limit }, `${n} lines`)));
  const info = el("span", { class: "query-info", "data-testid": "query-info" });

  const zoom = (a, b) => { state.from = String(Math.floor(a)); state.to = String(Math.ceil(b)); picker.update(); run(true); };
  const hist = histogram({ onZoom: zoom });
  const chart = metricChart({ onZoom: zoom });
  const results = resultsList({
    onChip: (name, value, op) => { editor.value = addMatcher(editor.value, name, value, op); run(true); },
    // A field the UI parsed from the line (json/logfmt) needs that parser in the query first.
    onField: (name, value, kind) => {
      const parser = (kind === "json" || kind === "logfmt") && !hasParser(editor.value) ? kind : null;
      editor.value = appendFilter(editor.value, name, value, parser);
      run(true);
    },
    fetchContext,
    onView: (v, before) => {
      state.order = v.order;
      state.dedup = v.dedup;
      // Oldest first is the other end of the range: a new query (live lines turn round).
      if (v.order !== before.order && !tail.active && state.query) run(true);
      else route.update("explore", routeParams(), false);
    },
    linkFor,
  });
  results.setView({ order: state.order, dedup: state.dedup });
  // Fields of the lines (sidebar) and their patterns (a tab beside the lines).
  const sidebar = fieldsSidebar({
    onValue: (f, value, op) => {
      const parser = f.parsers?.length && !hasParser(editor.value) ? f.parsers[0] : null;
      editor.value = appendFilter(editor.value, f.label, value, parser, op);
      run(true);
    },
  });
  const patterns = patternsView({
    onPattern: (pattern, op) => {
      editor.value = appendLineFilter(editor.value, op, pattern);
      showTab("logs");
      run(true);
    },
  });
  const tabButtons = ["logs", "patterns"].map((t) => el("button", { type: "button", role: "tab",
    class: "tab", "data-tab": t, onclick: () => { showTab(t); route.update("explore", routeParams(), false); if (t === "patterns") loadPatterns(); } },
  t === "logs" ? "Logs" : "Patterns"));
  const tabs = el("div", { class: "tabs", role: "tablist" }, tabButtons);
  let lastLogRun = null; // {query, range, step}: what the patterns tab shows when opened

  function showTab(t) {
    state.tab = t;
    for (const b of tabButtons) b.classList.toggle("active", b.dataset.tab === t);
    results.hidden = t !== "logs";
    patterns.hidden = t !== "patterns";
  }

  function loadPatterns() {
    if (lastLogRun && !lastLogRun.patternsLoaded) {
      lastLogRun.patternsLoaded = true;
      patterns.load(lastLogRun);
    }
  }

  function logsView(on) {
    sidebar.hidden = !on;
    tabs.hidden = !on;
    if (on) showTab(state.tab);
    else { patterns.hidden = true; results.hidden = false; }
  }

  // Live mode is kept in the URL (`live=1`), so a link opened while live shows what it
  // describes, and a live link opens live.
  const tail = liveTail({
    onStart: () => {
      inflight?.abort(); // a query still loading must not paint over the tail
      logsView(false);
      hist.hidden = true; chart.hide(); results.hidden = false;
      info.textContent = "";
      results.showMessage("Waiting for new lines…");
      results.startLive();
      state.query = editor.value.trim();
      state.live = true;
      state.line = undefined;
      route.update("explore", routeParams(), false);
    },
    onEntries: (batch) => results.addLive(batch),
    onStop: () => { state.live = false; run(false); },
  });
  function stopLive() {
    tail.dispose();
    state.live = false;
  }
  tail.queryGetter = () => editor.value;

  const root = el("div", { class: "explore" },
    el("div", { class: "toolbar panel" }, editor.root,
      el("div", { class: "toolbar-row" }, picker.root, limitSel, tail.root, el("span", { class: "spacer" }), info)),
    hist.root, chart.root,
    el("div", { class: "explore-body" }, sidebar.root,
      el("div", { class: "explore-main" }, tabs, results.root, patterns.root)));

  // With no query yet: the label names of the range, then a name's values; a value click
  // starts the query {name="value"}. At 3 a.m. nobody remembers the label names.
  function labelBrowser() {
    const box = el("div", { class: "label-browser", "data-testid": "label-browser" },
      el("p", { class: "muted" }, "Type a LogQL query and press Enter, or start from a label:"));
    const names = el("div", { class: "lb-names" });
    const values = el("div", { class: "lb-values" });
    box.append(names, values);
    complete.names().then((list) => {
      if (!list.length) names.append(el("span", { class: "muted" }, "No labels in this time range yet. Push some logs, or widen the range."));
      for (const n of list.filter((x) => !x.startsWith("__"))) {
        names.append(el("button", { type: "button", class: "chip", "data-name": n, onclick: async (ev) => {
          for (const b of names.children) b.classList.toggle("active", b === ev.currentTarget);
          values.replaceChildren(el("span", { class: "muted" }, "loading…"));
          // Biggest first, by bytes in the range (index/volume), so the noisy app is one click away.
          const [vals, bytes] = await Promise.all([complete.values(n), volumeBy(n)]);
          const sorted = [...vals].sort((a, b) => (bytes.get(b) ?? -1) - (bytes.get(a) ?? -1) || a.localeCompare(b));
          values.replaceChildren(...sorted.slice(0, 200).map((v) => el("button", { type: "button", class: "chip", "data-value": v,
            onclick: () => { editor.value = selectorOf({ [n]: v }); run(true); } },
          n, "=", el("b", {}, v), bytes.has(v) ? el("span", { class: "lb-bytes" }, fmtBytes(bytes.get(v))) : null)));
        } }, n));
      }
    });
    return box;
  }

  async function volumeBy(name) {
    try {
      const d = await api.volume({ query: `{${name}=~".+"}`, ...resolve(state), targetLabels: name, aggregateBy: "series" });
      return new Map(d.result.map((r) => [r.metric[name], Number(r.value[1])]));
    } catch {
      return new Map(); // an older server without index/volume: alphabetical order
    }
  }

  async function fetchContext(e) {
    const query = selectorOf(e.labels);
    const [b, a] = await Promise.all([
      api.queryRange({ query, startNs: api.msToNs(e.tsMs - 86400e3), endNs: e.tsNs, limit: CONTEXT_LINES, direction: "backward" }),
      api.queryRange({ query, startNs: (BigInt(e.tsNs) + 1n).toString(), endNs: api.msToNs(Date.now() + 60e3), limit: CONTEXT_LINES, direction: "forward" }),
    ]);
    const before = flatten(b.result).reverse();
    const after = flatten(a.result).reverse();
    return { before, after };
  }

  function routeParams() {
    return { query: state.query, from: state.from, to: state.to,
      limit: state.limit === DEFAULT_LIMIT ? undefined : state.limit,
      tab: state.tab === "patterns" ? "patterns" : undefined,
      order: state.order === "oldest" ? "oldest" : undefined,
      dedup: state.dedup === "none" ? undefined : state.dedup,
      live: state.live ? "1" : undefined,
      line: state.live ? undefined : state.line };
  }

  // A link that opens this view at line `e`: the range the lines were fetched for (so
  // the same lines come back), or for a live line the minutes before (or after) it; never
  // live, so it shows that line.
  function linkFor(e) {
    let from, to;
    if (!state.live && lastRange && e.tsMs >= lastRange.startMs && e.tsMs <= lastRange.endMs) {
      from = Math.floor(lastRange.startMs);
      to = Math.max(Math.ceil(lastRange.endMs), Math.floor(e.tsMs) + 1);
    } else if (state.order === "oldest") {
      from = Math.floor(e.tsMs); to = Math.floor(e.tsMs) + LINK_AROUND_MS;
    } else {
      from = Math.floor(e.tsMs) - LINK_AROUND_MS; to = Math.floor(e.tsMs) + 1;
    }
    const params = { ...routeParams(), from: String(from), to: String(to), live: undefined,
      line: lineId(e), tab: undefined };
    return location.href.split("#")[0] + route.href("explore", params);
  }

  // `push`: the user asked for a new view (a linked line no longer applies).
  async function run(push) {
    const query = editor.value.trim();
    state.query = query;
    if (push) state.line = undefined;
    route.update("explore", routeParams(), push);
    cache = { names: null, values: new Map() };
    editor.clearError();
    lastLogRun = null;
    patterns.reset();
    if (!query) {
      hist.hidden = true; chart.hide();
      logsView(false);
      results.hidden = false;
      results.showMessage(labelBrowser());
      info.textContent = "";
      return;
    }
    if (tail.active) {
      if (isLogQuery(query)) { tail.start(query); return; }
      stopLive(); // a metric query cannot be tailed: leave live mode and run it
      route.update("explore", routeParams(), false);
    }
    remember(query);
    inflight?.abort();
    const ctl = new AbortController();
    inflight = ctl;
    const range = resolve(state);
    const t0 = performance.now();
    info.textContent = "running…";
    root.classList.add("loading");
    try {
      if (isLogQuery(query)) await runLogs(query, range, ctl.signal);
      else await runMetric(query, range, ctl.signal);
      if (ctl.signal.aborted) return;
    } catch (err) {
      if (err.name === "AbortError") return;
      editor.showError(err);
      info.textContent = "";
      hist.hidden = true;
      chart.hide();
      logsView(false);
      results.hidden = false;
      results.showMessage("");
      return;
    } finally {
      if (inflight === ctl) root.classList.remove("loading");
    }
    info.textContent = `${info.dataset.summary} · ${Math.round(performance.now() - t0)} ms`;
  }

  function summarize(data) {
    const s = data.stats?.summary;
    const n = s?.totalLinesProcessed;
    if (!s) {
      info.dataset.summary = "done";
      return;
    }
    // Blocks read come as Loki's chunk counters (downloaded); ours add the blocks their
    // token filters ruled out and those counted from block metadata (Loki: referenced
    // and not downloaded).
    const store = data.stats?.querier?.store ?? {};
    const read = store.totalChunksDownloaded ?? 0;
    const skipped = s.totalBlocksSkippedByFilter ?? ((store.totalChunksRef ?? 0) - read);
    const fromMeta = s.totalBlocksFromMetadata ?? 0;
    const blocks = `${fmtNumber(read)} block${read === 1 ? "" : "s"}` + (skipped > 0 ? ` (+${fmtNumber(skipped)} skipped)` : "")
      + (fromMeta > 0 ? ` (+${fmtNumber(fromMeta)} counted from metadata)` : "");
    info.dataset.summary = `${fmtNumber(n)} line${n === 1 ? "" : "s"} / ${fmtBytes(s.totalBytesProcessed)} scanned · ${blocks} · server ${Math.round((s.execTime ?? 0) * 1000)} ms`;
    info.title = [
      `bytes processed: ${fmtBytes(s.totalBytesProcessed)} (${fmtBytes(s.bytesProcessedPerSecond ?? 0)}/s)`,
      `lines processed: ${fmtNumber(n)}, after line filters: ${fmtNumber(s.totalPostFilterLines ?? 0)}`,
      `blocks read: ${fmtNumber(read)}, skipped by filters: ${fmtNumber(Math.max(skipped, 0))}, counted from metadata: ${fmtNumber(fromMeta)}`,
      `time splits: ${fmtNumber(s.splits ?? 0)}`,
    ].join("\n");
  }

  async function runLogs(query, range, signal) {
    chart.hide();
    hist.hidden = false;
    logsView(true);
    const step = pickStep(range.startMs, range.endMs);
    lastLogRun = { query, range, step, patternsLoaded: false };
    sidebar.load({ query, range, lineLimit: state.limit }, signal);
    if (state.tab === "patterns") loadPatterns();
    const volume = api.queryRange({ query: volumeQuery(query, step), ...range, step }, { signal })
      .then((d) => ({ ok: d.resultType === "matrix", d }), (e) => ({ ok: false, e }));
    // categorize-labels: stream labels stay apart from parsed labels and structured metadata,
    // so a chip never puts a parsed label into the stream selector (where it matches nothing).
    const oldest = state.order === "oldest";
    const data = await api.queryRange({ query, ...range, limit: state.limit, direction: oldest ? "forward" : "backward", categorize: true }, { signal });
    if (data.resultType !== "streams") throw new api.ApiError(0, `expected log lines, got a ${data.resultType} result`);
    const entries = flatten(data.result, oldest);
    lastRange = range;
    results.show(entries, { query, limit: state.limit, link: state.line });
    summarize(data);
    const v = await volume;
    if (signal.aborted) return;
    if (v.ok) {
      const result = await levelsFromFields(query, v.d.result, entries, range, step, signal);
      if (signal.aborted) return;
      hist.render(fromMatrix(result, range.startMs, range.endMs, step), step, "metric");
    }
    else if (entries.length) hist.render(fromEntries(entries, range.startMs, range.endMs, step), step, "lines");
    else hist.showMessage("No lines in this time range.");
  }

  // No `level` label in the counts, but the lines carry a level field (JSON or logfmt) and
  // the query has no parser: count again with one, so the bars still split by level.
  async function levelsFromFields(query, result, entries, range, step, signal) {
    if (result.some((s) => s.metric.level || s.metric.detected_level) || hasParser(query)) return result;
    if (!entries.some((e) => e.level !== "unknown" && !("level" in e.labels))) return result;
    const json = entries.filter((e) => e.line.trimStart().startsWith("{")).length > entries.length / 2;
    try {
      const d = await api.queryRange({ query: volumeQuery(query, step, json ? "json" : "logfmt"), ...range, step }, { signal });
      return d.resultType === "matrix" && d.result.some((s) => s.metric.level) ? d.result : result;
    } catch {
      return result;
    }
  }

  async function runMetric(query, range, signal) {
    hist.hidden = true;
    logsView(false);
    results.hidden = true;
    const step = pickStep(range.startMs, range.endMs, 200);
    const data = await api.queryRange({ query, ...range, step, limit: state.limit }, { signal });
    if (data.resultType === "streams") {
      // The heuristic guessed wrong (e.g. a comment first); show lines after all.
      chart.hide();
      logsView(true);
      showTab("logs");
      lastRange = range;
      results.show(flatten(data.result, state.order === "oldest"), { query, limit: state.limit });
    } else {
      chart.render(data);
    }
    summarize(data);
  }

  // Back/forward, edited and opened links land here without rebuilding the page. A link
  // opened while live shows its own view: live only if it says so.
  function load(p) {
    const next = viewOf(p);
    const same = next.query === state.query && next.from === state.from && next.to === state.to &&
      next.limit === state.limit && next.order === state.order && next.line === state.line;
    if (next.live && isLogQuery(next.query)) {
      if (tail.active && next.query === state.query) {
        Object.assign(state, { order: next.order, dedup: next.dedup });
        results.setView(next);
        return;
      }
      Object.assign(state, next);
      editor.value = next.query;
      picker.update();
      results.setView(next);
      tail.start(next.query);
      return;
    }
    const wasLive = tail.active;
    if (wasLive) stopLive();
    if (same && !wasLive) {
      if (next.dedup !== state.dedup) { state.dedup = next.dedup; results.setView(next); }
      if (next.tab !== state.tab && isLogQuery(next.query)) { showTab(next.tab); if (next.tab === "patterns") loadPatterns(); }
      return;
    }
    Object.assign(state, next, { live: false });
    editor.value = next.query;
    picker.update();
    results.setView(next);
    run(false);
  }

  // "/" jumps to the query from anywhere on the page, as in most log and search tools.
  function onKey(ev) {
    const typing = ev.target.closest?.("input, textarea, select, [contenteditable]");
    if (ev.key === "/" && !typing && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
      ev.preventDefault();
      editor.input.focus();
      editor.input.select();
    }
  }
  document.addEventListener("keydown", onKey);

  if (state.live && isLogQuery(state.query)) tail.start(state.query);
  else { state.live = false; run(false); }
  requestAnimationFrame(() => editor.input.focus());
  return { root, load, destroy() { document.removeEventListener("keydown", onKey); tail.dispose(); inflight?.abort(); } };
}
