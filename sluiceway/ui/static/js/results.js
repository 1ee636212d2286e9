// The log lines: newest first, coloured by level, local timestamps, label chips that add a
// filter, and a click-to-expand view with parsed fields and "show context".
// Rows are built as HTML strings in chunks and handled by one delegated listener, so 5,000
// lines render in a few frames; CSS `content-visibility` keeps off-screen rows cheap.
import { el, clear, fmtNumber } from "./dom.js";
import { nsToMs } from "./api.js";
import { formatTime } from "./timerange.js";
import { levelOf, entryFields } from "./fields.js";

const CHUNK = 800;
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

// A live tail frame carries structured metadata among the labels (Loki's tail is not
// categorized); `detected_level` shows as the row's colour, not as a selector chip.
function tailChips(e) {
  return Object.keys(e.labels).filter((k) => k !== "detected_level").sort();
}

// Loki streams -> flat entries, newest first (ties keep stream order).
export function flatten(streams) {
  const out = [];
  for (const s of streams) {
    const labels = s.stream;
    for (const v of s.values) out.push(makeEntry(labels, v[0], v[1], v[2]));
  }
  out.sort((a, b) => (a.tsNs === b.tsNs ? 0 : BigInt(b.tsNs) > BigInt(a.tsNs) ? 1 : -1));
  return out;
}

// `extra` is the optional third value element (categorize-labels): structured metadata
// (where the server's `detected_level` is) and parsed labels.
export function makeEntry(labels, tsNs, line, extra) {
  const all = extra && typeof extra === "object" ? { ...extra.structuredMetadata, ...extra.parsed, ...labels } : labels;
  return { labels, tsNs, tsMs: nsToMs(tsNs), line, extra, level: levelOf(all, line) };
}

// `|= "text"` terms from the query, to highlight in lines.
export function highlightTerms(query) {
  const terms = [];
  for (const m of query.matchAll(/\|=\s*("(?:[^"\\]|\\.)*"|`[^`]*`)/g)) {
    let t = m[1];
    try { t = t.startsWith("`") ? t.slice(1, -1) : JSON.parse(t); } catch { continue; }
    if (t) terms.push(t);
  }
  return terms;
}

function highlight(line, re) {
  if (!re) return esc(line);
  let out = "", last = 0;
  for (const m of line.matchAll(re)) {
    out += esc(line.slice(last, m.index)) + "<mark>" + esc(m[0]) + "</mark>";
    last = m.index + m[0].length;
  }
  return out + esc(line.slice(last));
}

export function resultsList({ onChip, onField, fetchContext }) {
  const common = el("div", { class: "common-labels" });
  const stats = el("span", { class: "results-stats" });
  const wrapToggle = el("input", { type: "checkbox", checked: true, onchange: () => list.classList.toggle("nowrap", !wrapToggle.checked) });
  const list = el("div", { class: "log-list", role: "list", "data-testid": "log-list" });
  const root = el("section", { class: "results panel" },
    el("div", { class: "panel-head" }, el("h2", {}, "Logs"), stats,
      el("label", { class: "toggle" }, wrapToggle, "Wrap lines")),
    common, list);

  let entries = [], varying = [], termRe = null, renderSeq = 0;

  function chipHtml(name, value) {
    return `<button type="button" class="chip" data-name="${esc(name)}" data-value="${esc(value)}" title="Click: add ${esc(name)}=&quot;${esc(value)}&quot; to the query · Alt-click: exclude it">${esc(name)}=<b>${esc(value)}</b></button>`;
  }

  function rowHtml(e, i, keys = varying) {
    const chips = keys.filter((k) => k in e.labels).map((k) => chipHtml(k, e.labels[k])).join("");
    return `<div class="log-row lvl-${e.level}" role="listitem" data-i="${i}">` +
      `<span class="lvl" title="${e.level}"></span>` +
      `<time datetime="${new Date(e.tsMs).toISOString()}" title="${esc(e.tsNs)} ns">${formatTime(e.tsMs)}</time>` +
      (chips ? `<span class="chips">${chips}</span>` : "") +
      `<span class="line">${highlight(e.line, termRe)}</span></div>`;
  }

  // Labels every stream shares go above the list once; only the differing ones on rows.
  function splitLabels() {
    const counts = new Map();
    const seen = new Set();
    for (const e of entries) {
      if (seen.has(e.labels)) continue;
      seen.add(e.labels);
      for (const [k, v] of Object.entries(e.labels)) {
        const key = k + "\u0000" + v;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    }
    const streams = seen.size;
    const shared = [], vary = new Set();
    for (const [key, n] of counts) {
      const [k, v] = key.split("\u0000");
      if (n === streams) shared.push([k, v]); else vary.add(k);
    }
    return { shared: shared.sort(), vary: [...vary].sort(), streams };
  }

  function renderChunks(from, seq) {
    if (seq !== renderSeq) return;
    const end = Math.min(entries.length, from + CHUNK);
    let html = "";
    for (let i = from; i < end; i++) html += rowHtml(entries[i], i);
    list.insertAdjacentHTML("beforeend", html);
    if (end < entries.length) requestAnimationFrame(() => renderChunks(end, seq));
    else list.dataset.rendered = String(entries.length);
  }

  function show(newEntries, { query = "", limit = null } = {}) {
    entries = newEntries;
    const terms = highlightTerms(query);
    termRe = terms.length ? new RegExp(terms.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "g") : null;
    const { shared, vary, streams } = splitLabels();
    varying = vary;
    clear(common);
    if (shared.length) common.insertAdjacentHTML("beforeend", `<span class="muted">Common labels</span>` + shared.map(([k, v]) => chipHtml(k, v)).join(""));
    stats.textContent = `${fmtNumber(entries.length)} line${entries.length === 1 ? "" : "s"} · ${streams} stream${streams === 1 ? "" : "s"}` +
      (limit && entries.length >= limit ? ` · limit ${limit} reached, narrow the range to see more` : "");
    list.dataset.count = String(entries.length);
    list.dataset.rendered = "0";
    clear(list);
    renderSeq++;
    if (!entries.length) {
      list.append(el("div", { class: "empty" }, "No lines match this query in this time range."));
      list.dataset.rendered = "0";
      return;
    }
    renderChunks(0, renderSeq);
  }

  // Live tail: `newEntries` come oldest first (arrival order); newest lines go on top; keep at most `cap` rows so a chatty stream cannot
  // grow the page without bound.
  function prepend(newEntries, cap = 2000) {
    if (!newEntries.length) return;
    list.querySelector(".empty")?.remove();
    const base = entries.length;
    entries = entries.concat(newEntries);
    let html = "";
    // Tail rows show all their labels: there is no result set yet to tell shared from varying.
    for (let i = newEntries.length - 1; i >= 0; i--) {
      html += rowHtml(newEntries[i], base + i, tailChips(newEntries[i]));
    }
    list.insertAdjacentHTML("afterbegin", html);
    while (list.childElementCount > cap) list.lastElementChild.remove();
    if (entries.length > cap * 5) {
      // A long tail: forget what is no longer on screen, and re-render once so row indexes
      // match again. Keeps memory bounded however long the tail runs.
      entries = entries.slice(-cap);
      let all = "";
      for (let i = entries.length - 1; i >= 0; i--) all += rowHtml(entries[i], i, tailChips(entries[i]));
      list.innerHTML = all;
    }
    list.dataset.count = String(list.childElementCount);
    stats.textContent = `${fmtNumber(list.childElementCount)} lines (live)`;
  }

  // One list of fields per line (`entryFields`): stream labels filter in the selector;
  // everything else as a label filter after the pipeline (`kind` tells the page which
  // parser, if any, the query still needs).
  function details(e) {
    const box = el("div", { class: "log-details" });
    const table = el("table", { class: "fields" });
    for (const { kind, name: k, value: v } of entryFields(e)) {
      table.append(el("tr", { "data-kind": kind },
        el("td", { class: "field-kind" }, kind), el("th", {}, k), el("td", {}, v),
        el("td", {}, el("button", { type: "button", class: "ghost small", title: kind === "label"
          ? `Add ${k}="${v}" to the stream selector` : `Add | ${k}="${v}" to the query`,
        onclick: () => (kind === "label" ? onChip(k, v, "=") : onField(k, v, kind)) }, "+ filter"))));
    }
    const ctxBox = el("div", { class: "context" });
    box.append(table, el("div", { class: "detail-actions" },
      el("button", { type: "button", class: "ghost small", "data-action": "context",
        onclick: () => loadContext(e, ctxBox) }, "Show context"),
      el("button", { type: "button", class: "ghost small",
        onclick: () => navigator.clipboard?.writeText(e.line) }, "Copy line"),
      el("span", { class: "muted" }, `${e.tsNs} ns · level ${e.level}`)), ctxBox);
    return box;
  }

  async function loadContext(e, box) {
    clear(box);
    box.append(el("div", { class: "muted" }, "Loading lines around this one…"));
    try {
      const { before, after } = await fetchContext(e);
      clear(box);
      const row = (x, self) => el("div", { class: `ctx-row lvl-${x.level}${self ? " self" : ""}` },
        el("time", {}, formatTime(x.tsMs)), el("span", { class: "line" }, x.line));
      box.append(el("div", { class: "muted" }, `Context in ${Object.entries(e.labels).map(([k, v]) => `${k}="${v}"`).join(", ")} (oldest first)`),
        ...before.map((x) => row(x, false)), row(e, true), ...after.map((x) => row(x, false)));
    } catch (err) {
      clear(box);
      box.append(el("div", { class: "query-error" }, `Could not load context: ${err.message}`));
    }
  }

  list.addEventListener("click", (ev) => {
    if (ev.target.closest(".label-browser")) return; // has its own buttons
    const chip = ev.target.closest(".chip");
    if (chip) { onChip(chip.dataset.name, chip.dataset.value, ev.altKey ? "!=" : "="); return; }
    if (ev.target.closest(".log-details")) return;
    if (window.getSelection()?.toString()) return; // selecting text is not a click
    const row = ev.target.closest(".log-row");
    if (!row) return;
    const open = row.nextElementSibling?.classList.contains("log-details");
    if (open) { row.nextElementSibling.remove(); row.classList.remove("open"); return; }
    row.classList.add("open");
    row.after(details(entries[Number(row.dataset.i)]));
  });
  common.addEventListener("click", (ev) => {
    const chip = ev.target.closest(".chip");
    if (chip) onChip(chip.dataset.name, chip.dataset.value, ev.altKey ? "!=" : "=");
  });

  function showMessage(text) {
    entries = [];
    clear(common); clear(list);
    stats.textContent = "";
    list.dataset.count = "0";
    if (text) list.append(typeof text === "string" ? el("div", { class: "empty" }, text) : text);
  }

  return { root, show, prepend, showMessage, set hidden(v) { root.hidden = v; } };
}
