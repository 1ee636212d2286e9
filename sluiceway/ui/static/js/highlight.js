// LogQL syntax colouring for the editor. The textarea keeps the text (and the caret); a
// <pre> behind it shows the same text coloured. Tokens only: it never judges validity,
// the server's parser does that.

const FUNCTIONS = new Set([
  "rate", "rate_counter", "count_over_time", "bytes_rate", "bytes_over_time", "absent_over_time",
  "sum_over_time", "avg_over_time", "max_over_time", "min_over_time", "first_over_time",
  "last_over_time", "stdvar_over_time", "stddev_over_time", "quantile_over_time",
  "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "sort",
  "sort_desc", "approx_topk", "label_replace", "vector", "duration", "duration_seconds", "bytes", "ip",
]);
const KEYWORDS = new Set([
  "by", "without", "json", "logfmt", "regexp", "pattern", "unpack", "line_format", "label_format",
  "unwrap", "drop", "keep", "decolorize", "and", "or", "unless", "on", "ignoring", "group_left",
  "group_right", "offset", "bool",
]);
// comment | string | range | operator | identifier | number | punctuation
const TOKEN = /(#[^\n]*)|("(?:[^"\\\n]|\\.)*"?|`[^`]*`?)|(\[[^\]\n]*\]?)|(\|=|!=|\|~|!~|=~|\|>|!>|==|>=|<=|[=<>|+\-*/%^])|([A-Za-z_][A-Za-z0-9_]*)|(\d+(?:\.\d+)?[a-zA-Z]*)|([{}(),])/g;

const esc = (s) => s.replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]);

export function highlightLogQL(text) {
  let out = "", last = 0;
  for (const m of text.matchAll(TOKEN)) {
    out += esc(text.slice(last, m.index));
    last = m.index + m[0].length;
    let cls = null;
    if (m[1]) cls = "c";
    else if (m[2]) cls = "s";
    else if (m[3]) cls = "r";
    else if (m[4]) cls = m[4].startsWith("|") || m[4].startsWith("!") ? "f" : "o";
    else if (m[5]) {
      const rest = text.slice(last);
      if (/^\s*(=~|!~|!=|=(?!=))/.test(rest)) cls = "l";
      else if (FUNCTIONS.has(m[5]) && /^\s*(\(|by\b|without\b)/.test(rest)) cls = "fn";
      else if (KEYWORDS.has(m[5])) cls = "k";
    } else if (m[6]) cls = "n";
    else if (m[7]) cls = "p";
    out += cls ? `<span class="hl-${cls}">${esc(m[0])}</span>` : esc(m[0]);
  }
  // A trailing newline needs content after it, or the <pre> is one line short.
  return out + esc(text.slice(last)) + "\n";
}
