// The only module that knows URLs: Loki's HTTP API plus Sluiceway's pipeline and ruler
// endpoints.
// Everything returns parsed `data` or throws an ApiError with the server's own message,
// because Loki's 400 text (e.g. "parse error at line 1, col 11: ...") is the best error
// message the user can get.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
    // Loki reports parse errors as "parse error at line L, col C: ..."; keep the position
    // so the editor can point at it.
    const m = /line (\d+), col (\d+)/.exec(message);
    this.position = m ? { line: Number(m[1]), col: Number(m[2]) } : null;
  }
}

// The tenant (X-Scope-OrgID) to query as; empty means the server's default tenant.
// Kept per browser: it is who you are looking as, not part of a shared view.
const TENANT_KEY = "sluiceway.tenant";
export function getTenant() {
  try { return localStorage.getItem(TENANT_KEY) || ""; } catch { return ""; }
}
export function setTenant(t) {
  try { localStorage.setItem(TENANT_KEY, t.trim()); } catch { /* private mode */ }
}

async function get(path, params = {}, { signal, headers: extra } = {}) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") qs.set(k, String(v));
  }
  const url = qs.toString() ? `${path}?${qs}` : path;
  let resp;
  try {
    const headers = { Accept: "application/json", ...extra };
    const tenant = getTenant();
    if (tenant) headers["X-Scope-OrgID"] = tenant;
    resp = await fetch(url, { signal, headers });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `cannot reach the server: ${err.message}`);
  }
  const text = await resp.text();
  if (!resp.ok) {
    // FastAPI's own 404s are JSON ({"detail": ...}); Loki's errors are plain text.
    let msg = text.trim();
    try { msg = JSON.parse(text).detail ?? msg; } catch { /* plain text */ }
    throw new ApiError(resp.status, msg || `${resp.status} ${resp.statusText}`);
  }
  const body = JSON.parse(text);
  return body.data !== undefined ? body.data : body;
}

// Nanosecond timestamps travel as strings: ms * 1e6 is exact only as a BigInt.
export const msToNs = (ms) => (BigInt(Math.floor(ms)) * 1000000n).toString();
export const nsToMs = (ns) => Number(BigInt(ns) / 1000n) / 1000;

// `startNs`/`endNs` (strings) win over the ms bounds when a caller needs exact nanoseconds.
// `categorize` asks for Loki's third value element (structured metadata, parsed labels).
export function queryRange({ query, startMs, endMs, startNs, endNs, limit, direction = "backward", step, categorize }, opts = {}) {
  const headers = categorize ? { "X-Loki-Response-Encoding-Flags": "categorize-labels" } : undefined;
  return get("loki/api/v1/query_range", {
    query, start: startNs ?? msToNs(startMs), end: endNs ?? msToNs(endMs), limit, direction, step,
  }, { ...opts, headers });
}

export function labels({ startMs, endMs, query }, opts) {
  return get("loki/api/v1/labels", { start: msToNs(startMs), end: msToNs(endMs), query }, opts);
}

export function labelValues(name, { startMs, endMs, query }, opts) {
  return get(`loki/api/v1/label/${encodeURIComponent(name)}/values`,
    { start: msToNs(startMs), end: msToNs(endMs), query }, opts);
}

export function volume({ query, startMs, endMs, targetLabels, aggregateBy }, opts) {
  return get("loki/api/v1/index/volume", {
    query, start: msToNs(startMs), end: msToNs(endMs), targetLabels, aggregateBy,
  }, opts);
}

export function volumeRange({ query, startMs, endMs, step, targetLabels }, opts) {
  return get("loki/api/v1/index/volume_range", {
    query, start: msToNs(startMs), end: msToNs(endMs), step, targetLabels,
  }, opts);
}

// An instant query (metric): `time` in ms.
export function instantQuery({ query, timeMs }, opts = {}) {
  return get("loki/api/v1/query", { query, time: msToNs(timeMs) }, opts);
}

// Loki's detected fields of a log query: the newest `lineLimit` lines, their structured
// metadata and JSON/logfmt fields, with type and number of distinct values.
export function detectedFields({ query, startMs, endMs, lineLimit }, opts) {
  return get("loki/api/v1/detected_fields", {
    query, start: msToNs(startMs), end: msToNs(endMs), line_limit: lineLimit,
  }, opts);
}

// Patterns of the streams a selector matches (Loki's pattern ingester): `data` is a list
// of {pattern, level, samples: [[unix s, lines], ...]}.
export function patterns({ query, startMs, endMs, step }, opts) {
  return get("loki/api/v1/patterns", {
    query, start: msToNs(startMs), end: msToNs(endMs), step,
  }, opts);
}

export function pipeline(opts) {
  return get("sluiceway/api/v1/pipeline", {}, opts);
}

// The ledger: every numbered line stored, lost (hop, reason), in flight, or unexplained.
export function ledger(params = {}, opts) {
  return get("sluiceway/api/v1/ledger", params, opts);
}

// The ruler: rule groups with their state (Loki's /prometheus/api/v1/rules shape) and
// what the Alerts page shows besides (files not loaded, Alertmanager, remote write).
export function rules(opts) {
  return get("prometheus/api/v1/rules", {}, opts);
}

export function rulerStatus(opts) {
  return get("sluiceway/api/v1/ruler", {}, opts);
}

export function buildInfo(opts) {
  return get("loki/api/v1/status/buildinfo", {}, opts);
}

// The tail websocket URL, relative to the page so a reverse proxy prefix keeps working.
export function tailUrl({ query, startMs, startNs, limit = 100, delayFor = 0 }) {
  const u = new URL("loki/api/v1/tail", document.baseURI);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  u.searchParams.set("query", query);
  u.searchParams.set("start", startNs ?? msToNs(startMs));
  u.searchParams.set("limit", String(limit));
  if (delayFor) u.searchParams.set("delay_for", String(delayFor));
  // Browsers cannot set headers on a websocket; the tenant goes as a parameter instead
  // (read by the server when no X-Scope-OrgID header is present).
  const tenant = getTenant();
  if (tenant) u.searchParams.set("orgId", tenant);
  return u.toString();
}
