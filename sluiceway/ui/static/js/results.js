// The log lines: newest (or oldest) first, coloured by level, timestamps in local time or
// UTC, label chips that add a filter, consecutive duplicates folded (Grafana's modes),
// JSON lines prettified on demand, and a click-to-expand view with parsed fields, "show
// context" and a link to the line. The shown lines download as text or JSON.
// Rows are built as HTML strings in chunks and handled by one delegated listener, so 5,000
// lines render in a few frames; CSS `content-visibility` keeps off-screen rows cheap.
import { el, clear, fmtNumber } from "./dom.js";
import { nsToMs } from "./api.js";
import { formatTime } from "./timerange.js";
import { levelOf, entryFields } from "./fields.js";
import { DEDUP_MODES, DEDUP_TEXT, DEDUP_HELP, dedupRows, dedupKey, prettyJson, jsonTokens,
  lineId, rfc3339Nano, linesAsText, linesAsJson } from "./logview.js";

const CHUNK = 800;
const LIVE_CAP = 2000; // rows a live list keeps
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

// A live tail frame carries structured metadata among the labels (Loki's tail is not
// categorized); `detected_level` shows as the row's colour, not as a selector chip.
function tailChips(e) {
  return Object.keys(e.labels).filter((k) => k !== "detected_level").sort();
}

// Loki streams -> flat entries, newest first (ties keep stream order); `oldestFirst` for
// the other way round.
export function flatten(streams, oldestFirst = false) {
  const out = [];
  for (const s of streams) {
    const labels = s.stream;
    for (const v of s.values) out.push(makeEntry(labels, v[0], v[1], v[2]));
  }
  const sign = oldestFirst ? -1 : 1;
  out.sort((a, b) => (a.tsNs === b.tsNs ? 0 : BigInt(b.tsNs) > BigInt(a.tsNs) ? sign : -sign));
  return out;
}

// Display preferences of this browser (not part of a shared link): the time zone of the
// timestamps and prettified JSON.
const PREFS_KEY = "sluiceway.logview";
function loadPrefs() {
  try { return { utc: false, pretty: false, ...JSON.parse(localStorage.getItem(PREFS_KEY) || "{}") }; } catch { return { utc: false, pretty: false }; }
}
function savePrefs(p) {
  try { localStorage.setItem(PREFS_KEY, JSON.stringify({ utc: p.utc, pretty: p.pretty })); } catch { /* private mode */ }
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function stamp(d = new Date()) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
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

// `onView({order, dedup})`: the user changed the order or the dedup mode (both kept in the
// URL by the page); `linkFor(entry)`: the URL that opens this view at that line.
export function resultsList({ onChip, onField, fetchContext, onView = () => {}, linkFor = null }) {
  const prefs = loadPrefs();
  const view = { order: "newest", dedup: "none" };
  const common = el("div", { class: "common-labels" });
  const stats = el("span", { class: "results-stats", "data-testid": "results-stats" });
  const wrapToggle = el("input", { type: "checkbox", checked: true, onchange: () => list.classList.toggle("nowrap", !wrapToggle.checked) });
  const orderBtn = el("button", { type: "button", class: "ghost small", "data-testid": "order",
    title: "Newest or oldest lines first (oldest first asks the server for the start of the range)",
    onclick: () => setView({ order: view.order === "newest" ? "oldest" : "newest" }, true) });
  const dedupSel = el("select", { class: "small", "data-testid": "dedup", "aria-label": "deduplication",
    title: "Fold consecutive duplicate lines (Grafana's modes)",
    onchange: () => setView({ dedup: dedupSel.value }, true) },
  DEDUP_MODES.map((m) => el("option", { value: m, title: DEDUP_HELP[m] }, DEDUP_TEXT[m])));
  const tzBtn = el("button", { type: "button", class: "ghost small", "data-testid": "tz",
    title: "Show times in UTC or in this browser's time zone",
    onclick: () => { prefs.utc = !prefs.utc; savePrefs(prefs); syncControls(); rerender(); } });
  const prettyToggle = el("input", { type: "checkbox", "data-testid": "pretty-json", checked: prefs.pretty,
    onchange: () => { prefs.pretty = prettyToggle.checked; savePrefs(prefs); rerender(); } });
  const dlTxt = el("button", { type: "button", class: "ghost small", "data-testid": "download-txt",
    title: "Download the shown lines as text: time, labels and line, tab-separated",
    onclick: () => download(`sluiceway-logs-${stamp()}.txt`, linesAsText(shownRows(), prefs.utc), "text/plain;charset=utf-8") }, "⤓ txt");
  const dlJson = el("button", { type: "button", class: "ghost small", "data-testid": "download-json",
    title: "Download the shown lines as JSON",
    onclick: () => download(`sluiceway-logs-${stamp()}.json`, linesAsJson(shownRows(), prefs.utc), "application/json") }, "⤓ JSON");
  const list = el("div", { class: "log-list", role: "list", "data-testid": "log-list" });
  const root = el("section", { class: "results panel" },
    el("div", { class: "panel-head" }, el("h2", {}, "Logs"), stats,
      el("div", { class: "view-controls" }, orderBtn, dedupSel, tzBtn,
        el("label", { class: "toggle" }, prettyToggle, "Pretty JSON"),
        el("label", { class: "toggle" }, wrapToggle, "Wrap lines"),
        el("span", { class: "downloads", title: "Download the shown lines" }, dlTxt, dlJson))),
    common, list);

  // `chron`: the lines, oldest first, as the server sent them. `store`: the rows built from
  // them (deduplicated copies), by the index a row element carries in `data-i`; `shown`:
  // the rows in display order (a live list's order is its DOM order).
  let chron = [], store = [], shown = [], live = false, limitNote = "";
  let varying = [], termRe = null, renderSeq = 0, pendingLink = null;

  function syncControls() {
    orderBtn.textContent = view.order === "newest" ? "Newest first" : "Oldest first";
    orderBtn.dataset.order = view.order;
    dedupSel.value = view.dedup;
    tzBtn.textContent = prefs.utc ? "UTC" : "Local time";
    tzBtn.dataset.tz = prefs.utc ? "utc" : "local";
  }
  syncControls();

  // The page sets the order and dedup mode from the URL; `notify`: the user did.
  function setView(v, notify = false) {
    const before = { ...view };
    if (v.order === "newest" || v.order === "oldest") view.order = v.order;
    if (DEDUP_MODES.includes(v.dedup)) view.dedup = v.dedup;
    syncControls();
    if (before.order === view.order && before.dedup === view.dedup) return;
    // A live list turns round and folds again at once; otherwise the page decides (a new
    // order means a new query: the other end of the range).
    if (live || before.order === view.order) rerender();
    if (notify) onView({ ...view }, before);
  }

  function chipHtml(name, value) {
    return `<button type="button" class="chip" data-name="${esc(name)}" data-value="${esc(value)}" title="Click: add ${esc(name)}=&quot;${esc(value)}&quot; to the query · Alt-click: exclude it">${esc(name)}=<b>${esc(value)}</b></button>`;
  }

  function lineHtml(e) {
    const pretty = prefs.pretty ? prettyJson(e.line) : null;
    if (pretty === null) return `<span class="line">${highlight(e.line, termRe)}</span>`;
    return `<span class="line json">` +
      jsonTokens(pretty).map(([k, t]) => (k === "punct" ? highlight(t, termRe) : `<span class="j-${k}">${highlight(t, termRe)}</span>`)).join("") +
      `</span>`;
  }

  function dupsHtml(r) {
    return r.duplicates ? `<span class="dups" title="${r.duplicates} more line${r.duplicates === 1 ? "" : "s"} like this one right after it (dedup: ${view.dedup})">${r.duplicates + 1}×</span>` : "";
  }

  function rowHtml(r, i, keys = varying) {
    const chips = keys.filter((k) => k in r.labels).map((k) => chipHtml(k, r.labels[k])).join("");
    return `<div class="log-row lvl-${r.level}" role="listitem" data-i="${i}">` +
      `<span class="lvl" title="${r.level}"></span>` +
      `<time datetime="${new Date(r.tsMs).toISOString()}" title="${esc(rfc3339Nano(r.tsNs, !prefs.utc))}">${formatTime(r.tsMs, true, prefs.utc)}</time>` +
      (chips ? `<span class="chips">${chips}</span>` : "") +
      lineHtml(r) + dupsHtml(r) + `</div>`;
  }

  // Labels every stream shares go above the list once; only the differing ones on rows.
  function splitLabels() {
    const counts = new Map();
    const seen = new Set();
    for (const e of chron) {
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

  const rowKeys = (r) => (live ? tailChips(r) : varying);

  function renderChunks(from, seq) {
    if (seq !== renderSeq) return;
    const end = Math.min(shown.length, from + CHUNK);
    let html = "";
    for (let i = from; i < end; i++) html += rowHtml(shown[i], i, rowKeys(shown[i]));
    list.insertAdjacentHTML("beforeend", html);
    if (pendingLink && pendingLink.index < end) markLinked();
    if (end < shown.length) requestAnimationFrame(() => renderChunks(end, seq));
    else list.dataset.rendered = String(shown.length);
  }

  function updateStats() {
    const n = live ? list.querySelectorAll(".log-row").length : shown.length;
    if (live) {
      stats.textContent = `${fmtNumber(n)} lines (live)`;
    } else {
      const lines = chron.length, hidden = lines - shown.length, { streams } = splitLabels();
      stats.textContent = `${fmtNumber(lines)} line${lines === 1 ? "" : "s"} · ${streams} stream${streams === 1 ? "" : "s"}` +
        (hidden ? ` · ${fmtNumber(shown.length)} shown, ${fmtNumber(hidden)} duplicate${hidden === 1 ? "" : "s"} folded` : "") + limitNote;
    }
    list.dataset.count = String(n);
  }

  // Everything shown again from `chron` (order, dedup, time zone or pretty JSON changed).
  function rerender() {
    if (!chron.length) return;
    const ordered = view.order === "oldest" ? chron : [...chron].reverse();
    shown = dedupRows(ordered, view.dedup);
    store = shown.slice();
    clear(list);
    renderSeq++;
    list.dataset.rendered = "0";
    if (live) {
      list.innerHTML = shown.slice(0, LIVE_CAP).map((r, i) => rowHtml(r, i, tailChips(r))).join("");
      list.dataset.rendered = String(list.childElementCount);
    } else {
      renderChunks(0, renderSeq);
    }
    updateStats();
  }

  function shownAt(row) {
    return store[Number(row.dataset.i)];
  }

  // The rows as shown: what a download holds.
  function shownRows() {
    return live ? [...list.querySelectorAll(".log-row")].map(shownAt) : shown;
  }

  function show(newEntries, { query = "", limit = null, link = null } = {}) {
    live = false;
    // `newEntries` come in the view's order (`flatten`); kept oldest first.
    chron = view.order === "newest" ? [...newEntries].reverse() : [...newEntries];
    const terms = highlightTerms(query);
    termRe = terms.length ? new RegExp(terms.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "g") : null;
    const { shared, vary } = splitLabels();
    varying = vary;
    clear(common);
    if (shared.length) common.insertAdjacentHTML("beforeend", `<span class="muted">Common labels</span>` + shared.map(([k, v]) => chipHtml(k, v)).join(""));
    limitNote = limit && chron.length >= limit
      ? ` · limit ${limit} reached, narrow the range to see ${view.order === "oldest" ? "later" : "earlier"} lines` : "";
    shown = []; store = [];
    clear(list);
    renderSeq++;
    list.dataset.rendered = "0";
    pendingLink = null;
    if (!chron.length) {
      updateStats();
      list.append(el("div", { class: "empty" }, "No lines match this query in this time range."));
      return;
    }
    const ordered = view.order === "oldest" ? chron : [...chron].reverse();
    shown = dedupRows(ordered, view.dedup);
    store = shown;
    if (link) {
      const index = shown.findIndex((r) => lineId(r) === link);
      pendingLink = { index };
      if (index < 0) limitNote += " · the linked line is not among these lines";
    }
    updateStats();
    renderChunks(0, renderSeq);
  }

  // The linked line: marked, opened and scrolled to once its row is in the list.
  function markLinked() {
    const { index } = pendingLink;
    pendingLink = null;
    if (index < 0) return;
    const row = list.querySelector(`.log-row[data-i="${index}"]`);
    if (!row) return;
    row.classList.add("linked", "open");
    row.after(details(shownAt(row)));
    requestAnimationFrame(() => row.scrollIntoView({ block: "center" }));
  }

  // Live tail: an empty list that grows at the newest end (the top, or the bottom when
  // oldest first); at most LIVE_CAP rows stay, so a chatty stream cannot grow the page.
  function startLive() {
    live = true;
    chron = []; store = []; shown = [];
    varying = []; termRe = null; limitNote = "";
    clear(common);
    updateStats();
  }

  // `batch`: new lines, oldest first. A line that repeats the newest row (dedup on) takes
  // its place at the head of the run, as a full list would show it.
  function addLive(batch) {
    if (!batch.length) return;
    list.querySelector(".empty")?.remove();
    chron = chron.concat(batch);
    const newest = view.order === "newest";
    const rows = dedupRows(newest ? [...batch].reverse() : batch, view.dedup);
    const edgeEl = newest ? list.querySelector(".log-row") : lastRow();
    const edge = edgeEl ? shownAt(edgeEl) : null;
    if (edge && view.dedup !== "none") {
      const joinAt = newest ? rows.length - 1 : 0;
      const r = rows[joinAt];
      if (dedupKey(r.line, view.dedup) === dedupKey(edge.line, view.dedup)) {
        if (newest) {  // the new line leads the run; the old head goes
          r.duplicates += edge.duplicates + 1;
          if (edgeEl.nextElementSibling?.classList.contains("log-details")) edgeEl.nextElementSibling.remove();
          edgeEl.remove();
        } else {  // the run's head stays; it hides one more
          edge.duplicates += r.duplicates + 1;
          edgeEl.outerHTML = rowHtml(edge, Number(edgeEl.dataset.i), tailChips(edge));
          rows.shift();
        }
      }
    }
    let html = "";
    for (const r of rows) {
      store.push(r);
      html += rowHtml(r, store.length - 1, tailChips(r));
    }
    list.insertAdjacentHTML(newest ? "afterbegin" : "beforeend", html);
    let n = list.querySelectorAll(".log-row").length;
    while (n > LIVE_CAP) {
      const far = newest ? lastRow() : list.querySelector(".log-row");
      if (far.nextElementSibling?.classList.contains("log-details")) far.nextElementSibling.remove();
      far.remove();
      n--;
    }
    if (chron.length > LIVE_CAP * 5) {
      // A long tail: forget what is no longer on screen, and build the rows once more so
      // the store holds only them. Keeps memory bounded however long the tail runs.
      chron = chron.slice(-LIVE_CAP);
      rerender();
    }
    updateStats();
  }

  function lastRow() {
    const rows = list.querySelectorAll(".log-row");
    return rows.length ? rows[rows.length - 1] : null;
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
    const linkBox = el("input", { type: "text", readonly: true, class: "link-box", "data-testid": "line-link", hidden: true,
      "aria-label": "link to this line", onfocus: (ev) => ev.target.select() });
    const copyLink = linkFor && el("button", { type: "button", class: "ghost small", "data-action": "copy-link",
      title: "Copy a link that opens this view at this line",
      onclick: async () => {
        const url = linkFor(e);
        linkBox.value = url;
        linkBox.hidden = false;
        try {
          await navigator.clipboard.writeText(url);
          copyLink.textContent = "Link copied";
        } catch {
          copyLink.textContent = "Copy the link:"; // no clipboard (a page not on https): select it
          linkBox.focus();
        }
      } }, "Copy link");
    box.append(table, el("div", { class: "detail-actions" },
      el("button", { type: "button", class: "ghost small", "data-action": "context",
        onclick: () => loadContext(e, ctxBox) }, "Show context"),
      el("button", { type: "button", class: "ghost small",
        onclick: () => navigator.clipboard?.writeText(e.line) }, "Copy line"),
      copyLink, linkBox,
      el("span", { class: "muted" }, `${e.tsNs} ns · level ${e.level}` +
        (e.duplicates ? ` · ${e.duplicates} duplicate${e.duplicates === 1 ? "" : "s"} folded after it` : ""))), ctxBox);
    return box;
  }

  async function loadContext(e, box) {
    clear(box);
    box.append(el("div", { class: "muted" }, "Loading lines around this one…"));
    try {
      const { before, after } = await fetchContext(e);
      clear(box);
      const row = (x, self) => el("div", { class: `ctx-row lvl-${x.level}${self ? " self" : ""}` },
        el("time", {}, formatTime(x.tsMs, true, prefs.utc)), el("span", { class: "line" }, x.line));
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
    row.after(details(shownAt(row)));
  });
  common.addEventListener("click", (ev) => {
    const chip = ev.target.closest(".chip");
    if (chip) onChip(chip.dataset.name, chip.dataset.value, ev.altKey ? "!=" : "=");
  });

  function showMessage(text) {
    live = false;
    chron = []; store = []; shown = [];
    clear(common); clear(list);
    stats.textContent = "";
    list.dataset.count = "0";
    if (text) list.append(typeof text === "string" ? el("div", { class: "empty" }, text) : text);
  }

  return {
    root, show, startLive, addLive, showMessage, setView,
    get view() { return { ...view }; },
    set hidden(v) { root.hidden = v; },
  };
}
