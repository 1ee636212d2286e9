// What a line says about itself: its level and its fields (one list per line).
// The level is the server's `detected_level` (Loki's discover_log_levels: the one rule the
// histogram, patterns and detected fields use too); only a server that sends none gets a
// guess from the labels and the line. Cheap enough to run on 5,000 lines.

const LEVEL_ALIASES = {
  err: "error", error: "error", eror: "error", fatal: "fatal", crit: "critical", critical: "critical",
  panic: "critical", emerg: "critical", alert: "critical",
  warn: "warn", warning: "warn", info: "info", inf: "info", information: "info", notice: "info",
  debug: "debug", dbg: "debug", trace: "trace",
};
const LEVEL_LABELS = ["level", "severity", "lvl", "loglevel"];
// level=..., "level":"...", or a bare upper-case word near the start of the line.
const LEVEL_IN_LINE = /(?:\b(?:level|lvl|severity)\b["']?\s*[=:]\s*["']?([A-Za-z]+))|(?:^|[\s[(|])(ERROR|ERR|WARN|WARNING|INFO|DEBUG|TRACE|FATAL|CRITICAL|PANIC)(?=[\s\]):|])/;

export function normalizeLevel(v) {
  if (!v) return null;
  return LEVEL_ALIASES[String(v).toLowerCase()] ?? null;
}

// The levels `detected_level` takes (Loki's); any other value it may carry (a level label
// such as "notice" is kept as it is) counts as unknown, as in Loki's patterns.
const DETECTED = new Set(["trace", "debug", "info", "warn", "error", "critical", "fatal", "unknown"]);
export function detectedLevel(v) {
  return DETECTED.has(v) ? v : "unknown";
}

export function levelOf(labels, line) {
  // The server's detected level decides when there is one.
  if (labels.detected_level) return detectedLevel(labels.detected_level);
  for (const k of LEVEL_LABELS) {
    const l = normalizeLevel(labels[k]);
    if (l) return l;
  }
  const m = LEVEL_IN_LINE.exec(line.length > 400 ? line.slice(0, 400) : line);
  return m ? normalizeLevel(m[1] || m[2]) ?? "unknown" : "unknown";
}

// Loki's name for an extracted key: characters other than letters, digits and `_`
// become `_`, a leading digit gets a `_` in front.
export function sanitizeKey(k) {
  const key = k.trim().replace(/[^A-Za-z0-9_]/g, "_");
  return /^[0-9]/.test(key) ? "_" + key : key;
}

// Nested JSON keys joined with `_`, as Loki's `| json` names them; arrays and nulls skipped.
function flatten(obj, prefix, out) {
  for (const [k, v] of Object.entries(obj)) {
    const part = sanitizeKey(k);
    const key = prefix && part ? `${prefix}_${part}` : prefix || part;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, key, out);
    else if (v !== null && !Array.isArray(v) && key) out.push([key, typeof v === "string" ? v : JSON.stringify(v)]);
  }
  return out;
}

// logfmt: key=value, key="quoted value"; a line with no `=` pairs yields nothing.
const LOGFMT_PAIR = /([A-Za-z_][\w.\-/]*)=("(?:[^"\\]|\\.)*"|[^\s]*)/g;

export function parseFields(line) {
  const t = line.trim();
  if (t.startsWith("{")) {
    try {
      const obj = JSON.parse(t);
      if (obj && typeof obj === "object") return { format: "json", fields: flatten(obj, "", []) };
    } catch { /* not JSON; try logfmt */ }
  }
  const fields = [];
  for (const m of t.matchAll(LOGFMT_PAIR)) {
    let v = m[2];
    if (v.startsWith('"')) { try { v = JSON.parse(v); } catch { v = v.slice(1, -1); } }
    fields.push([sanitizeKey(m[1]), v]);
  }
  return fields.length ? { format: "logfmt", fields } : { format: null, fields: [] };
}

// One field list per line: stream labels, structured metadata (with detected_level), the
// fields the query's own parsers extracted, and — for fields no parser of the query
// extracted — the line's own JSON or logfmt fields, named as Loki's parsers would name
// them (`_extracted` when a stream label has the name). Each name appears once.
// kind: "label" | "metadata" | "parsed" | "json" | "logfmt".
export function entryFields(e) {
  if (e.fields) return e.fields;
  const out = [], seen = new Set();
  const add = (kind, name, value) => {
    if (seen.has(name)) return;
    seen.add(name);
    out.push({ kind, name, value: String(value) });
  };
  const extra = e.extra && typeof e.extra === "object" ? e.extra : {};
  for (const [k, v] of Object.entries(e.labels)) add("label", k, v);
  for (const [k, v] of Object.entries(extra.structuredMetadata ?? {})) add("metadata", k, v);
  for (const [k, v] of Object.entries(extra.parsed ?? {})) add("parsed", k, v);
  const parsed = parseFields(e.line);
  for (const [k, v] of parsed.fields) {
    const name = k in e.labels ? `${k}_extracted` : k;
    if (v !== "" || parsed.format === "json") add(parsed.format, name, v);
  }
  e.fields = out;
  return out;
}
