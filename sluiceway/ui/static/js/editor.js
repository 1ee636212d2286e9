// The LogQL editor: a textarea with label-name/value completion, query history and an
// error panel that points at the column the server's parser complained about.
// Enter runs the query (the common case is one line); Shift+Enter adds a newline.
import { el, clear } from "./dom.js";
import { highlightLogQL } from "./highlight.js";

const HISTORY_KEY = "sluiceway.history";
const HISTORY_MAX = 50;

export function loadHistory() {
  try { return JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]"); } catch { return []; }
}

export function remember(query) {
  const q = query.trim();
  if (!q) return;
  const h = loadHistory().filter((e) => e.q !== q);
  h.unshift({ q, t: Date.now() });
  try { localStorage.setItem(HISTORY_KEY, JSON.stringify(h.slice(0, HISTORY_MAX))); } catch { /* private mode */ }
}

// Where the cursor is, in LogQL terms: completing a label name, a label value, or nothing.
export function completionContext(text, cursor) {
  const before = text.slice(0, cursor);
  let depth = 0, inStr = null, strStart = -1;
  for (let i = 0; i < before.length; i++) {
    const c = before[i];
    if (inStr) {
      if (c === "\\" && inStr === '"') { i++; continue; }
      if (c === inStr) inStr = null;
      continue;
    }
    if (c === '"' || c === "`") { inStr = c; strStart = i; }
    else if (c === "{") depth++;
    else if (c === "}") depth = Math.max(0, depth - 1);
  }
  if (depth === 0) return null;
  if (inStr) {
    const m = /([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*$/.exec(before.slice(0, strStart));
    if (!m) return null;
    return { kind: "value", name: m[1], op: m[2], from: strStart, prefix: before.slice(strStart + 1), quoted: true };
  }
  const v = /([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*$/.exec(before);
  if (v) return { kind: "value", name: v[1], op: v[2], from: cursor, prefix: "", quoted: false };
  const n = /(^|[{,])\s*([A-Za-z_]\w*)?$/.exec(before);
  if (n) {
    const prefix = n[2] || "";
    return { kind: "name", from: cursor - prefix.length, prefix };
  }
  return null;
}

function escapeValue(v, op) {
  const s = op === "=~" || op === "!~" ? v.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") : v;
  return s.replace(/\\/g, "\\\\").replace(/"/g, '\\"');
}

// `complete.names()` and `complete.values(name)` return promises of string arrays.
export function queryEditor({ value = "", onRun, complete }) {
  const input = el("textarea", {
    class: "query-input", rows: 1, spellcheck: "false", autocapitalize: "off",
    "aria-label": "LogQL query", placeholder: '{app="api"} |= "error"   (Enter to run, Shift+Enter for a new line)',
  });
  input.value = value;
  const shadow = el("pre", { class: "query-shadow", "aria-hidden": "true" });
  const menu = el("ul", { class: "completion", role: "listbox", hidden: true });
  const errorBox = el("div", { class: "query-error", role: "alert", hidden: true });
  const historyList = el("ul", { class: "history-list", hidden: true });
  const historyBtn = el("button", { type: "button", class: "ghost", title: "Query history",
    onclick: () => toggleHistory() }, "History ▾");
  const runBtn = el("button", { type: "button", class: "primary run", onclick: () => run() }, "Run query");

  let items = [], active = 0, ctx = null, seq = 0;

  function autosize() {
    shadow.innerHTML = highlightLogQL(input.value);
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight + 2, 240) + "px";
    shadow.scrollTop = input.scrollTop;
  }

  function run() {
    closeMenu();
    historyList.hidden = true;
    onRun(input.value);
  }

  async function updateMenu() {
    const mine = ++seq; // any newer call, even one that closes the menu, wins
    const here = completionContext(input.value, input.selectionStart);
    if (!here || input.selectionStart !== input.selectionEnd) { ctx = null; return closeMenu(); }
    let all;
    try {
      all = here.kind === "name" ? await complete.names() : await complete.values(here.name);
    } catch { all = []; }
    if (mine !== seq) return;
    ctx = here;
    const p = ctx.prefix.toLowerCase();
    items = all.filter((s) => s.toLowerCase().includes(p))
      .sort((a, b) => (b.toLowerCase().startsWith(p) - a.toLowerCase().startsWith(p)) || a.localeCompare(b))
      .slice(0, 60);
    if (!items.length || (items.length === 1 && items[0] === ctx.prefix)) return closeMenu();
    active = 0;
    renderMenu();
  }

  function renderMenu() {
    clear(menu);
    menu.append(el("li", { class: "completion-head" }, ctx.kind === "name" ? "label names" : `values of ${ctx.name}`));
    items.forEach((s, i) => menu.append(el("li", {
      role: "option", class: i === active ? "active" : "", "data-value": s,
      onmousedown: (e) => { e.preventDefault(); accept(i); },
    }, s)));
    menu.hidden = false;
  }

  function closeMenu() { menu.hidden = true; items = []; }

  function accept(i) {
    const choice = items[i];
    const text = input.value, cur = input.selectionStart;
    let insert, end = cur;
    if (ctx.kind === "name") {
      insert = `${choice}=`;
      // Swallow the rest of the identifier under the cursor.
      end = cur + (/^\w*/.exec(text.slice(cur))[0].length);
    } else {
      insert = `"${escapeValue(choice, ctx.op)}"`;
      if (ctx.quoted) {
        const rest = /^((?:[^"\\]|\\.)*)"?/.exec(text.slice(cur));
        end = cur + rest[0].length;
      }
    }
    input.value = text.slice(0, ctx.from) + insert + text.slice(end);
    const pos = ctx.from + insert.length;
    input.setSelectionRange(pos, pos);
    closeMenu();
    autosize();
    if (ctx.kind === "name") updateMenu(); // go straight on to its values
  }

  function toggleHistory() {
    if (!historyList.hidden) { historyList.hidden = true; return; }
    clear(historyList);
    const h = loadHistory();
    if (!h.length) historyList.append(el("li", { class: "muted" }, "No queries yet"));
    for (const e of h) {
      historyList.append(el("li", { title: new Date(e.t).toLocaleString(),
        onclick: () => { input.value = e.q; autosize(); run(); } }, e.q));
    }
    historyList.hidden = false;
  }

  input.addEventListener("input", () => { autosize(); updateMenu(); });
  input.addEventListener("click", () => updateMenu());
  input.addEventListener("scroll", () => { shadow.scrollTop = input.scrollTop; });
  input.addEventListener("blur", () => setTimeout(closeMenu, 150));
  input.addEventListener("keydown", (e) => {
    if (!menu.hidden && items.length) {
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        active = (active + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
        renderMenu();
        return;
      }
      if (e.key === "Tab" || (e.key === "Enter" && !e.shiftKey)) { e.preventDefault(); accept(active); return; }
      if (e.key === "Escape") { e.preventDefault(); closeMenu(); return; }
    }
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); run(); }
    else if (e.key === " " && e.ctrlKey) { e.preventDefault(); updateMenu(); }
  });
  document.addEventListener("click", (e) => {
    if (!historyList.contains(e.target) && e.target !== historyBtn) historyList.hidden = true;
  });

  // Show the server's message, and under the offending line a caret at its column.
  function showError(err) {
    clear(errorBox);
    errorBox.append(el("strong", {}, err.status === 400 ? "Query error" : "Error"), " ", err.message);
    if (err.position) {
      const lines = input.value.split("\n");
      const line = lines[err.position.line - 1];
      if (line !== undefined) {
        const col = Math.max(1, Math.min(err.position.col, line.length + 1));
        errorBox.append(el("pre", { class: "caret-view", title: "click to put the cursor there",
          onclick: () => {
            const off = lines.slice(0, err.position.line - 1).reduce((n, l) => n + l.length + 1, 0) + col - 1;
            input.focus();
            input.setSelectionRange(off, off);
          } }, line + "\n" + " ".repeat(col - 1) + "^"));
      }
    }
    errorBox.hidden = false;
  }

  function clearError() { errorBox.hidden = true; clear(errorBox); }

  const root = el("div", { class: "editor" },
    el("div", { class: "editor-row" },
      el("div", { class: "editor-field" }, shadow, input, menu),
      el("div", { class: "editor-actions" }, runBtn,
        el("div", { class: "history" }, historyBtn, historyList))),
    errorBox);
  requestAnimationFrame(autosize);

  return {
    root, input, showError, clearError, run,
    get value() { return input.value; },
    set value(v) { input.value = v; autosize(); },
  };
}
