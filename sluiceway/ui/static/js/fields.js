// What a line says about itself: its level and its parsed fields (JSON or logfmt).
// Used for colouring and the expanded view; cheap enough to run on 5,000 lines.

const LEVEL_ALIASES = {
  err: "error", error: "error", eror: "error", fatal: "fatal", crit: "critical", critical: "critical",
  panic: "critical", emerg: "critical", alert: "critical",
  warn: "warn", warning: "warn", info: "info", inf: "info", information: "info", notice: "info",
  debug: "debug", dbg: "debug", trace: "trace",
};
const LEVEL_LABELS = ["level", "detected_level", "severity", "lvl", "loglevel"];
// level=..., "level":"...", or a bare upper-case word near the start of the line.
const LEVEL_IN_LINE = /(?:\b(?:level|lvl|severity)\b["']?\s*[=:]\s*["']?([A-Za-z]+))|(?:^|[\s[(|])(ERROR|ERR|WARN|WARNING|INFO|DEBUG|TRACE|FATAL|CRITICAL|PANIC)(?=[\s\]):|])/;

export function normalizeLevel(v) {
  if (!v) return null;
  return LEVEL_ALIASES[String(v).toLowerCase()] ?? null;
}

export function levelOf(labels, line) {
  for (const k of LEVEL_LABELS) {
    const l = normalizeLevel(labels[k]);
    if (l) return l;
  }
  const m = LEVEL_IN_LINE.exec(line.length > 400 ? line.slice(0, 400) : line);
  return m ? normalizeLevel(m[1] || m[2]) ?? "unknown" : "unknown";
}

function flatten(obj, prefix, out) {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}_${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, key, out);
    else out.push([key, typeof v === "string" ? v : JSON.stringify(v)]);
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
    fields.push([m[1], v]);
  }
  return fields.length ? { format: "logfmt", fields } : { format: null, fields: [] };
}
