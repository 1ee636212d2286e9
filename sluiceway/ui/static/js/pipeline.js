// The Pipeline page: every agent and in-app client that heartbeats to this server, live.
// Built for an outage: each card leads with one status word (BLOCKING, DROPPING, SPILLING,
// BACKEND DOWN, STALE, OK) and a queue-fill bar, so block, drop and spill show at a glance;
// the numbers underneath say how much and how fast. Cards come worst first; reporters that
// went silent share one collapsed row.
//
// One page, two data sources: the server's `/sluiceway/api/v1/pipeline` (the `#/pipeline`
// tab), and the same endpoint on an agent's own listen address, where `pipeline.html`
// shows it alone (`standalone`), so the view keeps working while the server is down.
//
// What it shows is what the heartbeat says (sluiceway.model.Heartbeat), in lines: the
// memory queue against its capacity (never more), what waits on disk against the spill's
// cap (a spill backlog never reads as an empty queue), and for an agent's files how far
// behind each is and whether its reader waits for room.
import { el, clear, fmtNumber, fmtBytes } from "./dom.js";
import * as api from "./api.js";

const POLL_MS = 1000;
const HISTORY_POINTS = 300;
const POLICY_TEXT = {
  block: "producers wait when full",
  drop: "lines are discarded when full",
  spill: "overflow goes to disk when full",
};

const clamp = (x) => Math.max(0, Math.min(1, x));

// Memory fill: the worse of the line count and the byte budget.
export function memoryFillOf(q = {}) {
  const a = q.capacity ? (q.depth ?? 0) / q.capacity : 0;
  const b = q.max_bytes ? (q.bytes ?? 0) / q.max_bytes : 0;
  return clamp(Math.max(a, b));
}

// Disk fill: the spill's bytes against its cap.
export function diskFillOf(q = {}) {
  return q.spill_max_bytes ? clamp((q.spill_bytes ?? 0) / q.spill_max_bytes) : 0;
}

// The queue's fill includes what waits on disk: the worse of memory and disk.
export function fillOf(q = {}) {
  return Math.max(memoryFillOf(q), diskFillOf(q));
}

// Lines waiting on disk (or on their way there): a backlog is never an empty queue.
export function diskLinesOf(q = {}) {
  return q.spill_lines ?? 0;
}

// Files whose reader waits for room in the queue, furthest behind first.
export function waitingFiles(rep) {
  return (rep.files ?? []).filter((f) => f.waiting);
}

// One word for the card, worst first; `rates` are per-second deltas since the last heartbeat.
export function statusOf(rep, rates) {
  const [cls, word, reason] = primaryStatus(rep, rates);
  // The word names the worst thing; the line under it also lists what else is going on,
  // e.g. BACKEND DOWN · spilling 300/s to disk.
  const memFull = memoryFillOf(rep.queue) >= 0.999;
  const effects = [];
  if (word !== "STALE") {
    if (memFull && !/full/.test(reason)) effects.push(`queue full (${rep.queue?.when_full})`);
    if ((rates.spilled ?? 0) > 0 && word !== "SPILLING") effects.push(`spilling ${fmtNumber(rates.spilled)}/s to disk`);
    const losing = (rates.lost ?? 0) || (rates.dropped ?? 0);
    if (losing > 0 && word !== "DROPPING") effects.push(`losing ${fmtNumber(losing)} lines/s`);
  }
  return [cls, word, [reason, ...effects].join(" · ")];
}

// Worst first: blocking or dropping, backend down, spilling (and the other amber words),
// stale, ok. The collapsed row of stale reporters takes rank 3 among the cards.
export function rankOf(word) {
  if (word === "BLOCKING" || word === "DROPPING") return 0;
  if (word === "BACKEND DOWN") return 1;
  if (word === "STALE") return 3;
  if (word === "OK") return 4;
  return 2;
}

// "40 / 120 in the last 5 / 60 min · 300 since it started": from the short history of the
// reporter's lost-line total that the page's source keeps (absent from an older server).
export function lostWindowText(rep) {
  const r = rep.lost_recent;
  if (!r) return "";
  const total = rep.lines?.lost ?? 0;
  return `${fmtNumber(r["5m"] ?? 0)} / ${fmtNumber(r["60m"] ?? 0)} in the last 5 / 60 min · ${fmtNumber(total)} since it started`;
}

// Who waits when the queue is full: the file readers, or the application itself.
function waiterText(rep) {
  const files = waitingFiles(rep);
  if (!files.length) return rep.kind === "client" ? "the application is waiting" : "the input is waiting";
  const behind = files.reduce((a, f) => a + (f.lag_lines ?? 0), 0);
  const which = files.length === 1 ? "file reader waiting" : `${files.length} file readers waiting`;
  return behind ? `${which}, ${fmtNumber(behind)} lines behind` : which;
}

function primaryStatus(rep, rates) {
  const q = rep.queue ?? {};
  const memFull = memoryFillOf(q) >= 0.999;
  const waiting = (q.waiting_s ?? 0) > 0 || waitingFiles(rep).length > 0;
  const policy = q.when_full;
  const onDisk = diskLinesOf(q) > 0 || (q.spill_bytes ?? rep.spill_bytes ?? 0) > 0;
  if (rep.stale) return ["stale", "STALE", `no heartbeat for ${fmtAge(rep.age_s)}`];
  const losing = Math.max(rates.lost ?? 0, rates.dropped ?? 0);
  if (losing > 0) return ["bad", "DROPPING", `losing ${fmtNumber(losing)} lines/s right now`];
  if (policy === "block" && (waiting || memFull)) return ["bad", "BLOCKING", `queue full: ${waiterText(rep)}`];
  if (policy === "drop" && memFull) return ["bad", "DROPPING", "queue full: new lines are discarded"];
  if (rep.backend && rep.backend.ok === false) return ["bad", "BACKEND DOWN", rep.backend.last_error || "cannot ship"];
  if ((rates.spilled ?? 0) > 0 || (memFull && policy === "spill" && !waiting)) return ["warn", "SPILLING", "overflow is going to disk"];
  if (onDisk) return ["warn", "DRAINING SPILL", `${fmtNumber(diskLinesOf(q))} lines (${fmtBytes(q.spill_bytes ?? rep.spill_bytes ?? 0)}) waiting on disk`];
  if (waiting) return ["warn", "READER WAITING", `the backend takes lines slower than they come: ${waiterText(rep)}`];
  if (fillOf(q) >= 0.5) return ["warn", "FILLING", "the queue is more than half full"];
  return ["ok", "OK", "shipping normally"];
}

function fmtAge(s) {
  if (s == null) return "–";
  if (s < 90) return `${Math.round(s)}s`;
  if (s < 5400) return `${Math.round(s / 60)}m`;
  return `${(s / 3600).toFixed(1)}h`;
}

// "14 / 16 MiB": both numbers in the unit of the budget, so they compare at a glance.
function bytesOf(used, max) {
  const [unit, div] = max >= 2 ** 30 ? ["GiB", 2 ** 30] : max >= 2 ** 20 ? ["MiB", 2 ** 20] : max >= 1024 ? ["KiB", 1024] : ["B", 1];
  const f = (n) => {
    const v = n / div;
    if (n > 0 && v < 0.1) return "<0.1";
    return v >= 10 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1);
  };
  return `${f(used)} / ${f(max)} ${unit}`;
}

function drawSpark(canvas, points) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (!w || !h) return;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  // Guide lines at 50% and 100% fill.
  g.strokeStyle = "rgba(141,151,168,0.18)";
  g.setLineDash([3, 3]);
  for (const f of [0.5, 1]) { g.beginPath(); g.moveTo(0, h - f * (h - 2) - 1); g.lineTo(w, h - f * (h - 2) - 1); g.stroke(); }
  g.setLineDash([]);
  if (points.length < 2) return;
  // The window grows with what this page has seen (the server keeps only the last
  // heartbeat), from 20 s up to HISTORY_POINTS polls.
  const t1 = points[points.length - 1].t, t0 = Math.min(points[0].t, t1 - 20e3);
  const x = (t) => ((t - t0) / (t1 - t0)) * (w - 2) + 1;
  const y = (f) => h - f * (h - 2) - 1;
  const last = points[points.length - 1].fill;
  const color = last >= 0.9 ? "#f25c54" : last >= 0.5 ? "#f2a93b" : "#4fb3ff";
  g.beginPath();
  g.moveTo(x(points[0].t), h);
  for (const p of points) g.lineTo(x(p.t), y(p.fill));
  g.lineTo(x(t1), h);
  g.closePath();
  g.fillStyle = color + "33";
  g.fill();
  g.beginPath();
  points.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p.fill)) : g.moveTo(x(p.t), y(p.fill))));
  g.strokeStyle = color;
  g.lineWidth = 1.5;
  g.stroke();
}

function stat(label, testid) {
  const value = el("span", { class: "stat-value", "data-stat": testid });
  const sub = el("span", { class: "stat-sub" });
  return { node: el("div", { class: "stat" }, el("span", { class: "stat-label" }, label), value, sub), value, sub };
}

function makeCard(rep) {
  const badge = el("span", { class: "status-badge" });
  const why = el("span", { class: "status-why" });
  const fillBar = el("div", { class: "fill-bar-inner" });
  const hwm = el("div", { class: "fill-hwm", title: "high watermark" });
  const fillText = el("span", { class: "fill-text", "data-testid": "fill-text" });
  const fillDetail = el("span", { class: "fill-detail", "data-testid": "memory" });
  const diskBar = el("div", { class: "fill-bar-inner disk" });
  const diskDetail = el("span", { class: "fill-detail", "data-testid": "disk" });
  const disk = el("div", { class: "disk-fill", hidden: true },
    el("div", { class: "fill-bar disk-bar", title: "spill on disk" }, diskBar), diskDetail);
  const files = el("div", { class: "files", "data-testid": "files" });
  const policy = el("span", { class: "policy" });
  const spark = el("canvas", { class: "spark", "aria-label": "queue fill over time", title: "queue fill since this page opened (dashed: 50% and 100%)" });
  const stats = {
    read: stat("read", "read"), shipped: stat("shipped", "shipped"), dropped: stat("dropped", "dropped"),
    spilled: stat("spilled", "spilled"), lost: stat("lost", "lost"), spill: stat("on disk", "spill_bytes"),
  };
  const latency = stat("enqueue p99", "latency");
  const backend = el("div", { class: "backend" });
  const lost = el("div", { class: "lost-reasons" });
  const lostWindow = el("div", { class: "lost-window", "data-testid": "lost-window",
    title: "Lines lost in the last 5 and 60 minutes, from the heartbeats kept here, beside the total since the process started" });
  const meta = el("span", { class: "card-meta" });
  // An agent's own view (its listen address): still there when this server is not.
  const viewLink = el("a", { class: "view-link", "data-testid": "view-link", target: "_blank", rel: "noopener", hidden: true,
    title: "This agent's own pipeline view, served by the agent itself: it keeps working while the server is down" }, "own view ↗");
  const card = el("article", { class: "card reporter", "data-testid": "reporter", "data-id": rep.id },
    el("header", { class: "card-head" },
      el("span", { class: `kind kind-${rep.kind}` }, rep.kind),
      el("h3", {}, rep.name || rep.id), meta, viewLink, el("span", { class: "spacer" }), badge),
    why,
    el("div", { class: "fill" },
      el("div", { class: "fill-top" }, el("span", { class: "fill-label" }, "queue"), fillText, el("span", { class: "spacer" }), policy),
      el("div", { class: "fill-bar", title: "lines in memory" }, fillBar, hwm), fillDetail, disk),
    spark, files,
    el("div", { class: "stats" }, Object.values(stats).map((s) => s.node), latency.node),
    lostWindow, backend, lost);
  return { card, badge, why, fillBar, hwm, fillText, fillDetail, disk, diskBar, diskDetail, files, policy, spark, stats, latency, backend, lost, lostWindow, meta, viewLink, history: [], prev: null };
}

function rateOf(prev, rep, key) {
  if (!prev || !rep.ts || !prev.ts || rep.ts <= prev.ts) return 0;
  return Math.max(0, ((rep.lines?.[key] ?? 0) - (prev.lines?.[key] ?? 0)) / (rep.ts - prev.ts));
}

function updateCard(c, rep) {
  // Rates come from consecutive *heartbeats* (their own ts), not from our polls.
  if (!c.prev || rep.ts !== c.prev.ts) {
    if (c.prev) c.rates = Object.fromEntries(["read", "shipped", "dropped", "spilled", "lost"].map((k) => [k, rateOf(c.prev, rep, k)]));
    c.prev = rep;
  }
  const rates = c.rates ?? {};
  const q = rep.queue ?? {};
  const fill = fillOf(q);
  const [cls, word, reason] = statusOf(rep, rates);
  // Facts for the summary pills, independent of which one won the status word.
  const memFill = memoryFillOf(q);
  const full = memFill >= 0.999;
  const waiting = (q.waiting_s ?? 0) > 0 || waitingFiles(rep).length > 0;
  c.flags = {
    blocking: !rep.stale && q.when_full === "block" && (full || waiting),
    dropping: !rep.stale && ((rates.dropped ?? 0) > 0 || (rates.lost ?? 0) > 0 || (full && q.when_full === "drop")),
    spilling: !rep.stale && ((rates.spilled ?? 0) > 0 || diskLinesOf(q) > 0 || (rep.spill_bytes ?? 0) > 0 || (full && q.when_full === "spill" && !waiting)),
  };
  c.card.className = `card reporter status-${cls}${rep.stale ? " is-stale" : ""}`;
  c.card.dataset.status = word;
  c.word = word;
  // What it was doing when it went silent, for the stale row.
  c.lastWord = rep.stale ? (c.lastWord ?? statusOf({ ...rep, stale: false }, rates)[1]) : word;
  c.card.dataset.fill = (fill * 100).toFixed(1);
  c.badge.textContent = word;
  c.why.textContent = reason;
  c.meta.textContent = `${rep.host ?? "?"} · pid ${rep.pid ?? "?"} · seen ${fmtAge(rep.age_s)} ago`;
  c.fillBar.style.width = `${(memFill * 100).toFixed(1)}%`;
  c.fillBar.className = `fill-bar-inner ${memFill >= 0.9 ? "bad" : memFill >= 0.5 ? "warn" : "ok"}`;
  const hw = q.capacity ? Math.min(1, (q.high_watermark ?? 0) / q.capacity) : 0;
  c.hwm.style.left = `${(hw * 100).toFixed(1)}%`;
  c.hwm.hidden = !hw;
  const diskLines = diskLinesOf(q), diskBytes = q.spill_bytes ?? rep.spill_bytes ?? 0;
  // Never "0%" over a backlog: the disk's share is shown, and at least "<1%".
  const pct = Math.round(fill * 100);
  c.fillText.textContent = pct === 0 && (diskLines > 0 || diskBytes > 0) ? "<1%" : `${pct}%`;
  const unit = q.unit ?? "lines";
  c.fillDetail.textContent = `${fmtNumber(q.depth ?? 0)} / ${fmtNumber(q.capacity ?? 0)} ${unit} in memory` +
    ((q.in_flight ?? 0) ? ` (+${fmtNumber(q.in_flight)} in flight)` : "") +
    ` · ${bytesOf(q.bytes ?? 0, q.max_bytes ?? 0)}` +
    (q.high_watermark ? ` · high watermark ${fmtNumber(q.high_watermark)}` : "");
  c.fillDetail.title = `${q.depth} of ${q.capacity} ${unit} wait in memory, ${q.bytes} of ${q.max_bytes} bytes`;
  const spillMode = q.when_full === "spill" || diskLines > 0 || diskBytes > 0;
  c.disk.hidden = !spillMode;
  if (spillMode) {
    const df = diskFillOf(q);
    c.diskBar.style.width = `${Math.max(df * 100, diskLines > 0 || diskBytes > 0 ? 1 : 0).toFixed(1)}%`;
    c.diskDetail.textContent = `on disk: ${fmtNumber(diskLines)} ${unit}` +
      ` · ${fmtBytes(diskBytes)}` + (q.spill_max_bytes ? ` of ${fmtBytes(q.spill_max_bytes)}` : "") +
      (q.spill_full ? " · FULL" : "");
  }
  renderFiles(c.files, rep);
  c.policy.textContent = `when full: ${q.when_full ?? "?"}`;
  c.policy.title = POLICY_TEXT[q.when_full] ?? "";
  c.policy.className = `policy policy-${q.when_full}`;
  const lines = rep.lines ?? {};
  for (const k of ["read", "shipped", "dropped", "spilled", "lost"]) {
    const s = c.stats[k];
    s.value.textContent = fmtNumber(lines[k] ?? 0);
    s.sub.textContent = rates[k] ? `${fmtNumber(rates[k])}/s` : "";
    s.node.classList.toggle("alert", (k === "dropped" || k === "lost") && (lines[k] ?? 0) > 0);
    s.node.classList.toggle("hot", (rates[k] ?? 0) > 0 && (k === "dropped" || k === "lost" || k === "spilled"));
  }
  c.stats.read.node.hidden = rep.kind === "client" && !lines.read;
  c.stats.spill.value.textContent = fmtBytes(rep.spill_bytes ?? 0);
  c.stats.spill.node.classList.toggle("warn", (rep.spill_bytes ?? 0) > 0);
  const p99 = rep.latency_us?.enqueue_p99;
  c.latency.node.hidden = p99 == null;
  c.latency.value.textContent = p99 == null ? "" : p99 >= 1000 ? `${(p99 / 1000).toFixed(1)} ms` : `${Math.round(p99)} µs`;
  clear(c.backend);
  const b = rep.backend ?? {};
  c.backend.className = `backend ${b.ok === false ? "down" : "up"}`;
  const bword = b.ok === false ? (b.state === "retrying" ? "backend down (retrying)" : "backend down") : "backend ok";
  c.backend.append(el("span", { class: "dot" }), el("span", {}, bword), el("code", {}, b.url ?? ""));
  if (b.last_success_ts) {
    const ago = Math.max(0, (rep.ts ?? Date.now() / 1000) - b.last_success_ts);
    c.backend.append(el("span", { class: "muted", "data-testid": "last-push" }, `last push accepted ${fmtAge(ago)} ago`));
  }
  if (b.ok === false && b.last_error) c.backend.append(el("span", { class: "err" }, b.last_error));
  c.lostWindow.textContent = lostWindowText(rep);
  c.lostWindow.hidden = !rep.lost_recent || !(rep.lines?.lost ?? 0); // nothing lost: nothing to say
  c.lostWindow.classList.toggle("alert", (rep.lost_recent?.["5m"] ?? 0) > 0);
  c.viewLink.hidden = !rep.view_url || rep.here;
  if (rep.view_url) c.viewLink.href = rep.view_url;
  clear(c.lost);
  const reasons = Object.entries(rep.lost_by_reason ?? {}).filter(([, n]) => n > 0);
  if (reasons.length) c.lost.append(el("span", {}, "lost by reason:"), ...reasons.map(([r, n]) => el("span", { class: "reason" }, `${r} ${fmtNumber(n)}`)));
  c.history.push({ t: Date.now(), fill });
  if (c.history.length > HISTORY_POINTS) c.history.shift();
  drawSpark(c.spark, c.history);
}

// An agent's files: how far behind each is and whether its reader waits for room.
function renderFiles(node, rep) {
  clear(node);
  const files = [...(rep.files ?? [])].sort((a, b) => (b.waiting - a.waiting) || (b.lag_bytes - a.lag_bytes)).slice(0, 5);
  node.hidden = !files.length;
  for (const f of files) {
    const lag = f.lag_lines != null ? `${fmtNumber(f.lag_lines)} lines behind` : (f.lag_bytes ? `${fmtBytes(f.lag_bytes)} behind` : "up to date");
    node.append(el("div", { class: `file${f.waiting ? " waiting" : ""}`, "data-testid": "file", title: f.path },
      el("code", { class: "file-path" }, f.path.split("/").slice(-2).join("/")),
      el("span", { class: "file-lag" }, lag),
      f.waiting ? el("span", { class: "file-waiting" }, "file reader waiting") : null));
  }
  const more = (rep.files ?? []).length - files.length;
  if (more > 0) node.append(el("div", { class: "muted file-more" }, `+ ${more} more files`));
}

// The ledger table: one row per source and epoch (emitted = stored + lost + in flight +
// unexplained), the total last; unexplained lines are in red, since a healthy stack
// has none.
const breakdown = (parts, key) =>
  (parts ?? []).map((p) => `${p.hop} ${p[key]}: ${fmtNumber(p.lines)}`).join(", ");

export function renderLedger(node, data) {
  clear(node);
  const rows = data?.sources ?? [];
  const t = data?.total ?? {};
  node.append(el("h2", {}, "Ledger"),
    el("p", { class: "muted" }, "Every line a client sink or an agent input numbered: stored by this server, counted lost at a hop, held in flight, or unexplained."));
  if (!rows.length) {
    node.append(el("div", { class: "empty" }, "No numbered lines yet."));
    return;
  }
  const num = (n, extra = "") => el("td", { class: `num ${extra}`.trim() }, fmtNumber(n ?? 0));
  const head = el("tr", {}, ...["Source", "Epoch", "Emitted", "Stored", "Lost", "In flight", "Unexplained"]
    .map((h) => el("th", {}, h)));
  const body = rows.map((r) => el("tr", { "data-testid": "ledger-row", "data-source": r.source,
    class: r.unexplained ? "unexplained" : "" },
    el("td", { class: "src", title: r.source }, el("code", {}, r.source)),
    el("td", { class: "muted" }, el("code", {}, r.epoch)),
    num(r.emitted), num(r.stored),
    el("td", { class: `num${r.lost ? " lost" : ""}`, title: breakdown(r.lost_by, "reason") },
      fmtNumber(r.lost), r.lost ? el("div", { class: "why muted" }, breakdown(r.lost_by, "reason")) : null),
    el("td", { class: "num", title: breakdown(r.in_flight_by, "where") }, fmtNumber(r.in_flight),
      r.in_flight ? el("div", { class: "why muted" }, breakdown(r.in_flight_by, "where")) : null),
    el("td", { class: `num ${r.unexplained ? "bad" : "ok"}`, "data-testid": "unexplained" },
      fmtNumber(r.unexplained))));
  const total = el("tr", { class: "total", "data-testid": "ledger-total" },
    el("td", {}, "total"), el("td", {}), num(t.emitted), num(t.stored), num(t.lost), num(t.in_flight),
    el("td", { class: `num ${t.unexplained ? "bad" : "ok"}` }, fmtNumber(t.unexplained ?? 0)));
  node.append(el("table", { class: "ledger" }, el("thead", {}, head), el("tbody", {}, ...body, total)),
    el("p", { class: "muted" }, `Lines stored without numbers (unattributed): ${fmtNumber(data.unattributed ?? 0)}`));
}

// The server keeps one card per tenant and id (several tenants with multi-tenant queries).
const cardKey = (rep) => `${rep.tenant ?? ""}\u0000${rep.id}`;

function fmtDuration(s) {
  if (s >= 3600) return `${+(s / 3600).toFixed(1)} h`;
  if (s >= 60) return `${Math.round(s / 60)} min`;
  return `${Math.round(s)} s`;
}

// Reporters without a heartbeat for a while: one collapsed row, each listed inside with
// when it was last seen and what it was doing then.
function staleRow() {
  const summary = el("summary", {});
  const list = el("div", { class: "stale-list" });
  const root = el("details", { class: "stale-row", "data-testid": "stale-row" }, summary, list);
  function update(entries) {
    root.hidden = !entries.length;
    if (!entries.length) return;
    const ages = entries.map(({ rep }) => rep.age_s ?? 0);
    const lo = Math.min(...ages), hi = Math.max(...ages);
    const forget = entries[0].rep.forget_after_s;
    summary.textContent = `${entries.length} stale reporter${entries.length === 1 ? "" : "s"} · no heartbeat for ` +
      (entries.length === 1 || fmtAge(lo) === fmtAge(hi) ? fmtAge(hi) : `${fmtAge(lo)} to ${fmtAge(hi)}`) +
      (forget ? ` · each is forgotten ${fmtDuration(forget)} after its last heartbeat` : "");
    clear(list);
    for (const { rep, c } of entries) {
      const lost = rep.lines?.lost ?? 0;
      list.append(el("div", { class: "stale-reporter", "data-testid": "stale-reporter", "data-id": rep.id, "data-last-status": c.lastWord },
        el("span", { class: `kind kind-${rep.kind}` }, rep.kind),
        el("b", {}, rep.name || rep.id),
        el("span", { class: "muted" }, `${rep.host ?? "?"} · pid ${rep.pid ?? "?"}`),
        el("span", {}, `last seen ${fmtAge(rep.age_s)} ago`),
        el("span", { class: "muted" }, "was ", el("b", {}, c.lastWord ?? "?")),
        lost ? el("span", { class: "err" }, `${fmtNumber(lost)} lines lost`) : null));
    }
  }
  return { root, update };
}

// `standalone`: the page alone (`pipeline.html`), on an agent's own listen address.
export function pipelinePage(_params, { standalone = false } = {}) {
  const summary = el("div", { class: "summary", "data-testid": "pipeline-summary" });
  const updated = el("span", { class: "muted updated", "data-testid": "updated" });
  const grid = el("div", { class: "cards" });
  // The ledger is the server's (an agent's own view has none).
  const ledgerNode = el("section", { class: "ledger-box", "data-testid": "ledger", hidden: standalone });
  const silentRow = staleRow();
  const title = el("h1", {}, "Pipeline");
  const intro = el("p", { class: "muted" }, standalone
    ? "This agent's own view, served on its listen address: it keeps working while the server it reports to is down. It shows the agent and the in-app clients that report to it. Updates every second."
    : "Agents and in-app clients that send heartbeats to this server. Updates every second. Each agent also serves this view on its own address (own view ↗), which keeps working while this server is down.");
  const mainLink = el("a", { class: "main-ui-link", "data-testid": "main-ui-link", hidden: true,
    title: "The server's UI (it does not answer while the server is down)" }, "Sluiceway UI ↗");
  const root = el("div", { class: "pipeline", "data-source": standalone ? "agent" : "server" },
    el("div", { class: "page-head" }, title, intro, mainLink, el("span", { class: "spacer" }), updated),
    summary, grid, ledgerNode);
  const cards = new Map();
  let timer = null, stopped = false, lastOk = 0;

  function renderSummary(list) {
    clear(summary);
    const pill = (cls, text, n) => el("span", { class: `pill ${cls}`, "data-count": n }, text);
    const flags = list.map((r) => cards.get(cardKey(r))?.flags ?? {});
    const stale = list.filter((r) => r.stale).length;
    const down = list.filter((r) => !r.stale && r.backend?.ok === false).length;
    const trouble = flags.filter((f) => f.blocking || f.dropping).length;
    const spilling = flags.filter((f) => f.spilling).length;
    // "lost" counts every line that will never arrive, drops included.
    const lost = list.reduce((a, r) => a + Math.max(r.lines?.lost ?? 0, r.lines?.dropped ?? 0), 0);
    summary.append(
      pill("", `${list.length} reporting`, list.length),
      pill(trouble ? "bad" : "ok", `${trouble} blocking or dropping`, trouble),
      pill(spilling ? "warn" : "ok", `${spilling} spilling`, spilling),
      pill(down ? "bad" : "ok", `${down} backend down`, down),
      pill(stale ? "stale" : "ok", `${stale} stale`, stale),
      pill(lost ? "bad" : "ok", `${fmtNumber(lost)} lines lost`, lost));
  }

  async function poll() {
    try {
      const list = await api.pipeline();
      lastOk = Date.now();
      const seen = new Set();
      const rows = list.map((rep, i) => {
        const key = cardKey(rep);
        seen.add(key);
        let c = cards.get(key);
        if (!c) { c = makeCard(rep); cards.set(key, c); }
        updateCard(c, rep);
        return { rep, c, i, rank: rankOf(c.word) };
      });
      for (const [id, c] of cards) if (!seen.has(id)) { c.card.remove(); cards.delete(id); }
      // Worst first; the server's order (kind, name) among equals. Re-appending moves the
      // nodes into that order; the stale row stands where rank 3 goes.
      rows.sort((a, b) => a.rank - b.rank || a.i - b.i);
      const silent = rows.filter((r) => r.rank === 3);
      for (const r of silent) r.c.card.remove();
      silentRow.update(silent);
      const shown = rows.filter((r) => r.rank !== 3);
      let placed = false;
      for (const r of shown) {
        if (!placed && r.rank > 3) { grid.append(silentRow.root); placed = true; }
        grid.append(r.c.card);
      }
      if (!placed) grid.append(silentRow.root);
      const here = list.find((r) => r.here);
      if (standalone && here) {
        title.textContent = `Pipeline · agent ${here.name || here.id}`;
        if (here.backend?.url) { mainLink.href = here.backend.url; mainLink.hidden = false; }
      } else if (standalone) {  // pipeline.html as the server serves it: no agent here
        intro.textContent = "The Pipeline page alone, with this server's reporters. Updates every second.";
      }
      renderSummary(list);
      grid.querySelector(".empty")?.remove();
      if (!list.length) {
        grid.append(el("div", { class: "empty" }, standalone
          ? "Nothing reports here yet. Point a client's report_url at this agent's address."
          : "Nothing reports here yet. Point an agent's report_url (or a client's heartbeat) at this server."));
      }
      try {
        if (!standalone) renderLedger(ledgerNode, await api.ledger());
      } catch (err) {
        clear(ledgerNode);
        ledgerNode.append(el("p", { class: "muted bad" }, `ledger: ${err.message}`));
      }
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      updated.classList.remove("bad");
    } catch (err) {
      updated.textContent = `cannot load: ${err.message} (last update ${lastOk ? new Date(lastOk).toLocaleTimeString() : "never"})`;
      updated.classList.add("bad");
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  poll();
  return { root, destroy() { stopped = true; clearTimeout(timer); } };
}
