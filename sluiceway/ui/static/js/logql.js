// Just enough LogQL text handling for the UI: tell log queries from metric queries, find
// the stream selector, and add a label matcher to it. The server stays the real parser;
// these work on text so the user's formatting and comments survive an edit.

// Strip `#` comments that are not inside strings, for the checks below.
function withoutComments(q) {
  let out = "", inStr = null;
  for (let i = 0; i < q.length; i++) {
    const c = q[i];
    if (inStr) {
      out += c;
      if (c === "\\" && inStr !== "`") { out += q[++i] ?? ""; continue; }
      if (c === inStr) inStr = null;
    } else if (c === '"' || c === "`") { inStr = c; out += c; }
    else if (c === "#") { while (i < q.length && q[i] !== "\n") i++; out += "\n"; }
    else out += c;
  }
  return out;
}

// A log query starts with its stream selector; anything else (a function, an aggregation,
// a number, a parenthesis) is a metric query.
export function isLogQuery(q) {
  return withoutComments(q).trim().startsWith("{");
}

export const quote = (v) => '"' + String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';

export function selectorOf(labels) {
  return "{" + Object.entries(labels).map(([k, v]) => `${k}=${quote(v)}`).join(", ") + "}";
}

// Index range [open, close] of the first top-level `{...}` selector, or null.
export function findSelector(q) {
  let inStr = null, start = -1;
  for (let i = 0; i < q.length; i++) {
    const c = q[i];
    if (inStr) {
      if (c === "\\" && inStr !== "`") { i++; continue; }
      if (c === inStr) inStr = null;
      continue;
    }
    if (c === "#") { while (i < q.length && q[i] !== "\n") i++; continue; }
    if (c === '"' || c === "`") inStr = c;
    else if (c === "{" && start < 0) start = i;
    else if (c === "}" && start >= 0) return [start, i];
  }
  return null;
}

// Add (or replace) `name op "value"` in the query's stream selector. Clicking `app=api`
// twice must not add it twice; clicking `level=warn` after `level=error` narrows to warn.
export function addMatcher(query, name, value, op = "=") {
  const q = query.trim() ? query : "{}";
  const sel = findSelector(q);
  const matcher = `${name}${op}${quote(value)}`;
  if (!sel) return `{${matcher}} ${q}`.trim();
  const [a, b] = sel;
  const inner = q.slice(a + 1, b);
  const esc = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const existing = new RegExp(`(^|,)\\s*${esc}\\s*(=~|!~|!=|=)\\s*("(?:[^"\\\\]|\\\\.)*"|\`[^\`]*\`)\\s*(?=,|$)`);
  let next;
  if (existing.test(inner)) {
    next = inner.replace(existing, (_m, lead) => `${lead}${lead ? " " : ""}${matcher}`);
  } else {
    next = inner.trim() ? `${inner.replace(/\s+$/, "")}, ${matcher}` : matcher;
  }
  return q.slice(0, a + 1) + next + q.slice(b);
}

// Append `| name="value"` (after `| parser` when given; `op` "!=" excludes). A query with
// a comment gets the filter on a new line, where the comment cannot swallow it. Names are
// sanitised the way Loki's parsers sanitise extracted keys.
export function appendFilter(query, name, value, parser = null, op = "=") {
  const key = name.replace(/[^A-Za-z0-9_]/g, "_").replace(/^(\d)/, "_$1");
  const sep = withoutComments(query) !== query ? "\n" : " ";
  return `${query.trimEnd()}${sep}${parser ? `| ${parser} ` : ""}| ${key}${op}${quote(value)}`;
}

// Append a line filter (`|=`, `!=`, or the pattern match `|>` / `!>` of a pattern).
export function appendLineFilter(query, op, text) {
  const sep = withoutComments(query) !== query ? "\n" : " ";
  return `${query.trimEnd()}${sep}${op} ${quote(text)}`;
}

// The stream selector of a query, as written (`{app="a"}` of `{app="a"} |= "x"`).
export function selectorText(query) {
  const q = withoutComments(query);
  const sel = findSelector(q);
  return sel ? q.slice(sel[0], sel[1] + 1) : "";
}

// How many lines of `logQuery` in the last `rangeSeconds` have each value of a field, as an
// instant query: the `topk` most frequent values, or with `topk` 0 the lines with the field
// at all. `parsers` (json, logfmt) are those that found the field; their errors are dropped
// so lines of another format do not fail the count.
export function fieldCountQuery(logQuery, name, parsers, rangeSeconds, topk = 0) {
  const stages = (parsers ?? []).map((p) => ` | ${p}`).join("") +
    (parsers?.length ? " | drop __error__, __error_details__" : "");
  const inner = `count_over_time(${withoutComments(logQuery).trim()}${stages} | ${name}!="" [${rangeSeconds}s])`;
  return topk ? `topk(${topk}, sum by (${name}) (${inner}))` : `sum(${inner})`;
}

// Does the pipeline already extract fields (so `level` may be a label already)?
export function hasParser(q) {
  const code = withoutComments(q).replace(/"(?:[^"\\]|\\.)*"|`[^`]*`/g, '""'); // not inside strings
  return /\|\s*(json|logfmt|regexp|pattern|unpack)\b/.test(code);
}

// The whole log query wrapped as a per-level count, for the volume histogram: by the
// server's `detected_level` (and a `level` label, for servers that detect none).
// `parser` (json, logfmt) is appended after comments are gone, so a `#` cannot swallow it.
export function volumeQuery(logQuery, stepSeconds, parser = null) {
  const q = withoutComments(logQuery).trim() + (parser ? ` | ${parser}` : "");
  return `sum by (detected_level, level) (count_over_time(${q} [${stepSeconds}s]))`;
}
