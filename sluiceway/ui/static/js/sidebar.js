// The fields sidebar: what the query's lines carry besides stream labels — structured
// metadata (with `detected_level`) and JSON/logfmt fields — as Loki's detected_fields
// lists them (from the newest lines), and, for a field opened, how its values are spread
// over the whole time range (counted by the server, not from the fetched lines).
import { el, clear, fmtNumber, LEVEL_COLORS } from "./dom.js";
import * as api from "./api.js";
import { fieldCountQuery } from "./logql.js";

const TOP = 10;

function sortFields(fields) {
  // The level first, then metadata, then the rest by name.
  const rank = (f) => (f.label === "detected_level" ? 0 : f.parsers ? 2 : 1);
  return [...fields].sort((a, b) => rank(a) - rank(b) || a.label.localeCompare(b.label));
}

export function fieldsSidebar({ onValue }) {
  const list = el("div", { class: "fields-list" });
  const note = el("span", { class: "muted small" });
  const root = el("aside", { class: "fields-sidebar panel", "data-testid": "fields-sidebar" },
    el("div", { class: "panel-head" }, el("h2", {}, "Fields"), note), list);
  let seq = 0, current = null;

  async function load({ query, range, lineLimit }, signal) {
    const my = ++seq;
    current = { query, range };
    clear(list);
    note.textContent = "";
    list.append(el("div", { class: "muted small" }, "loading…"));
    let data;
    try {
      data = await api.detectedFields({ query, ...range, lineLimit }, { signal });
    } catch (err) {
      if (err.name === "AbortError" || my !== seq) return;
      clear(list);
      list.append(el("div", { class: "muted small" }, `No fields: ${err.message}`));
      return;
    }
    if (my !== seq) return;
    clear(list);
    const fields = sortFields(data.fields ?? []);
    root.dataset.count = String(fields.length);
    note.textContent = fields.length ? `newest ${fmtNumber(lineLimit)} lines` : "";
    if (!fields.length) {
      list.append(el("div", { class: "muted small" }, "The lines carry no structured metadata and are neither JSON nor logfmt."));
      return;
    }
    for (const f of fields) list.append(fieldRow(f));
  }

  function fieldRow(f) {
    const values = el("div", { class: "field-values", hidden: true });
    const kind = f.parsers ? f.parsers.join(", ") : "metadata";
    const head = el("button", { type: "button", class: "field-name", "data-field": f.label,
      title: `${f.label}: ${f.type}, ${f.cardinality} distinct value${f.cardinality === 1 ? "" : "s"} (${kind}) — click for its values`,
      onclick: () => {
        values.hidden = !values.hidden;
        row.classList.toggle("open", !values.hidden);
        if (!values.hidden && !values.dataset.loaded) distribution(f, values);
      } },
    el("span", { class: "fname" }, f.label),
    el("span", { class: "ftype" }, f.type),
    el("span", { class: "fcard" }, fmtNumber(f.cardinality)));
    const row = el("div", { class: "field-row", "data-field": f.label, "data-kind": kind }, head, values);
    return row;
  }

  // The spread of a field's values in the range: its `TOP` most frequent values (the
  // server's count over every line of the range) and their share of the lines holding it.
  async function distribution(f, box) {
    const { query, range } = current;
    box.dataset.loaded = "1";
    box.replaceChildren(el("div", { class: "muted small" }, "counting…"));
    const secs = Math.max(1, Math.ceil((range.endMs - range.startMs) / 1000));
    const at = { timeMs: range.endMs };
    try {
      const [top, all] = await Promise.all([
        api.instantQuery({ query: fieldCountQuery(query, f.label, f.parsers, secs, TOP), ...at }),
        api.instantQuery({ query: fieldCountQuery(query, f.label, f.parsers, secs), ...at }),
      ]);
      const total = Number(all.result?.[0]?.value?.[1] ?? 0);
      const rows = (top.result ?? []).map((r) => [r.metric[f.label] ?? "", Number(r.value[1])])
        .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
      box.replaceChildren(...rows.map(([v, n]) => valueRow(f, v, n, total)));
      const shown = rows.reduce((s, [, n]) => s + n, 0);
      if (total > shown) box.append(el("div", { class: "muted small" }, `${fmtNumber(total - shown)} more lines with other values`));
      if (!rows.length) box.append(el("div", { class: "muted small" }, "No line in the range has it."));
      box.dataset.total = String(total);
    } catch (err) {
      delete box.dataset.loaded;
      box.replaceChildren(el("div", { class: "query-error small" }, err.message));
    }
  }

  function valueRow(f, value, n, total) {
    const pct = total ? (100 * n) / total : 0;
    return el("button", { type: "button", class: "value-row", "data-value": value,
      title: `Click: only lines with ${f.label}="${value}" · Alt-click: without them`,
      onclick: (ev) => onValue(f, value, ev.altKey ? "!=" : "=") },
    // detected_level's values in their level colours, as in the histogram and the lines
    el("span", { class: "vbar", style: { width: `${pct.toFixed(1)}%`,
      ...(f.label === "detected_level" && LEVEL_COLORS[value] ? { background: `${LEVEL_COLORS[value]}40` } : {}) } }),
    el("span", { class: "vname" }, value === "" ? "(empty)" : value),
    el("span", { class: "vcount" }, `${fmtNumber(n)} · ${pct < 1 && pct > 0 ? "<1" : Math.round(pct)}%`));
  }

  function showMessage(text) {
    seq++;
    clear(list);
    note.textContent = "";
    if (text) list.append(el("div", { class: "muted small" }, text));
  }

  return { root, load, showMessage, set hidden(v) { root.hidden = v; } };
}
