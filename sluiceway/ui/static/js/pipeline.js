// The Pipeline page: every agent and in-app client that heartbeats to this server, live.
// Built for an outage: each card leads with one status word (BLOCKING, DROPPING, SPILLING,
// BACKEND DOWN, STALE, OK) and a queue-fill bar, so block, drop and spill show at a glance;
// the numbers underneath say how much and how fast.
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
  const meta = el("span", { class: "card-meta" });
  const card = el("article", { class: "card reporter", "data-testid": "reporter", "data-id": rep.id },
    el("header", { class: "card-head" },
      el("span", { class: `kind kind-${rep.kind}` }, rep.kind),
      el("h3", {}, rep.name || rep.id), meta, el("span", { class: "spacer" }), badge),
    why,
    el("div", { class: "fill" },
      el("div", { class: "fill-top" }, el("span", { class: "fill-label" }, "queue"), fillText, el("span", { class: "spacer" }), policy),
      el("div", { class: "fill-bar", title: "lines in memory" }, fillBar, hwm), fillDetail, disk),
    spark, files,
    el("div", { class: "stats" }, Object.values(stats).map((s) => s.node), latency.node),
    backend, lost);
  return { card, badge, why, fillBar, hwm, fillText, fillDetail, disk, diskBar, diskDetail, files, policy, spark, stats, latency, backend, lost, meta, history: [], prev: null };
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

export function pipelinePage() {
  const summary = el("div", { class: "summary", "data-testid": "pipeline-summary" });
  const updated = el("span", { class: "muted updated" });
  const grid = el("div", { class: "cards" });
  const ledgerNode = el("section", { class: "ledger-box", "data-testid": "ledger" });
  const root = el("div", { class: "pipeline" },
    el("div", { class: "page-head" }, el("h1", {}, "Pipeline"),
      el("p", { class: "muted" }, "Agents and in-app clients that send heartbeats to this server. Updates every second."),
      el("span", { class: "spacer" }), updated),
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
      for (const rep of list) {
        const key = cardKey(rep);
        seen.add(key);
        let c = cards.get(key);
        if (!c) { c = makeCard(rep); cards.set(key, c); }
        grid.append(c.card); // re-append keeps the server's order
        updateCard(c, rep);
      }
      for (const [id, c] of cards) if (!seen.has(id)) { c.card.remove(); cards.delete(id); }
      renderSummary(list);
      grid.querySelector(".empty")?.remove();
      if (!list.length) {
        grid.append(el("div", { class: "empty" },
          "Nothing reports here yet. Point an agent's report_url (or a client's heartbeat) at this server."));
      }
      try {
        renderLedger(ledgerNode, await api.ledger());
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
