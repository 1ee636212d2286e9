// How the log list shows lines, as pure functions: deduplication (Grafana's modes),
// prettified JSON, a line's id for links, timestamps in UTC or local time, and the shown
// lines as text or JSON for a download. No DOM here, so the browser tests call them as
// they are served.

export const DEDUP_MODES = ["none", "exact", "numbers", "signature"];
export const DEDUP_TEXT = {
  none: "No dedup",
  exact: "Exact",
  numbers: "Numbers",
  signature: "Signature",
};
export const DEDUP_HELP = {
  none: "Show every line",
  exact: "Hide consecutive lines that are the same except for ISO timestamps in them",
  numbers: "Hide consecutive lines that differ only in their digits",
  signature: "Hide consecutive lines with the same punctuation and spacing (letters, digits and _ aside)",
};

// ISO 8601 timestamps with a fraction of a second, as Grafana's exact mode ignores them.
const ISO_STAMP = /\d{4}-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d:[0-6]\d[,.]\d+(?:[+-][0-2]\d:[0-5]\d|Z)/g;

// What two lines are compared by in each mode.
export function dedupKey(line, mode) {
  switch (mode) {
    case "exact": return line.replace(ISO_STAMP, "");
    case "numbers": return line.replace(/\d/g, "");
    case "signature": return line.replace(/\w/g, "");
    default: return null;
  }
}

// Consecutive duplicates fold into the first line of their run (in the shown order),
// which carries how many it hides: `duplicates`. Rows are copies; `rows` is untouched.
export function dedupRows(rows, mode) {
  if (!DEDUP_MODES.includes(mode) || mode === "none") return rows.map((r) => ({ ...r, duplicates: 0 }));
  const out = [];
  let lastKey = null;
  for (const r of rows) {
    const key = dedupKey(r.line, mode);
    if (out.length && key === lastKey) out[out.length - 1].duplicates++;
    else { out.push({ ...r, duplicates: 0 }); lastKey = key; }
  }
  return out;
}

// A JSON object or array, indented; null for anything else (a plain line stays as it is).
export function prettyJson(line) {
  const t = line.trim();
  if (!(t.startsWith("{") && t.endsWith("}")) && !(t.startsWith("[") && t.endsWith("]"))) return null;
  try {
    const v = JSON.parse(t);
    return v && typeof v === "object" ? JSON.stringify(v, null, 2) : null;
  } catch {
    return null;
  }
}

// Tokens of an indented JSON text, for colouring: [kind, text] with kind key, string,
// number, literal (true, false, null) or punct (everything between).
export function jsonTokens(text) {
  const out = [];
  const re = /("(?:[^"\\]|\\.)*")(\s*:)?|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|\b(true|false|null)\b/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) out.push(["punct", text.slice(last, m.index)]);
    if (m[1] !== undefined) {
      out.push([m[2] ? "key" : "string", m[1]]);
      if (m[2]) out.push(["punct", m[2]]);
    } else if (m[3] !== undefined) out.push(["number", m[3]]);
    else out.push(["literal", m[4]]);
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(["punct", text.slice(last)]);
  return out;
}

// FNV-1a, 32 bits: short and stable, enough to tell lines of one nanosecond apart.
function fnv1a(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export function labelsText(labels) {
  return "{" + Object.keys(labels).sort().map((k) => `${k}=${JSON.stringify(labels[k])}`).join(", ") + "}";
}

// A line's id in a link: its nanosecond timestamp and a hash of its text (not of its
// labels: a live tail's lines carry structured metadata among them, a query's do not).
export function lineId(e) {
  return `${e.tsNs}-${fnv1a(e.line).toString(36)}`;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

// RFC 3339 with all nine digits of the nanoseconds; in UTC ("Z") or in the browser's
// local time with its offset.
export function rfc3339Nano(tsNs, utc) {
  const ns = BigInt(tsNs);
  const ms = Number(ns / 1000000n);
  const frac = String(((ns % 1000000000n) + 1000000000n) % 1000000000n).padStart(9, "0");
  const d = new Date(ms);
  if (utc) {
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T` +
      `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${frac}Z`;
  }
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? "+" : "-";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${frac}` +
    `${sign}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
}

// The shown lines as text: time, stream labels and line, tab-separated, one per line
// (a folded run says how many lines it hides).
export function linesAsText(rows, utc) {
  return rows.map((r) => `${rfc3339Nano(r.tsNs, utc)}\t${labelsText(r.labels)}\t${r.line}` +
    (r.duplicates ? `\t(+${r.duplicates} duplicates)` : "")).join("\n") + (rows.length ? "\n" : "");
}

// The shown lines as JSON: one object per line, with what the server sent beside it.
export function linesAsJson(rows, utc) {
  return JSON.stringify(rows.map((r) => {
    const o = { timestamp: r.tsNs, time: rfc3339Nano(r.tsNs, utc), labels: r.labels, line: r.line };
    if (r.extra?.structuredMetadata && Object.keys(r.extra.structuredMetadata).length) o.structuredMetadata = r.extra.structuredMetadata;
    if (r.extra?.parsed && Object.keys(r.extra.parsed).length) o.parsed = r.extra.parsed;
    if (r.duplicates) o.duplicates = r.duplicates;
    return o;
  }), null, 2) + "\n";
}
