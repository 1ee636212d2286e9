// Live tail over Loki's /loki/api/v1/tail websocket, with pause and a lines/s indicator.
// While paused, lines keep arriving and are held (up to a cap) so resuming loses nothing
// the server sent; after an unexpected close it reconnects from the last line it saw.
import { el, fmtNumber } from "./dom.js";
import { tailUrl } from "./api.js";
import { makeEntry } from "./results.js";
import { isLogQuery } from "./logql.js";

const HOLD_MAX = 20000;
const RATE_WINDOW_MS = 5000;

export function liveTail({ onStart, onEntries, onStop }) {
  const toggle = el("button", { type: "button", class: "live-toggle", "data-testid": "live-toggle",
    title: "Stream new lines as they arrive", onclick: () => (ws || retry ? stop() : start(currentQuery())) }, "▶ Live");
  const pauseBtn = el("button", { type: "button", class: "ghost", hidden: true, onclick: () => setPaused(!paused) }, "Pause");
  const rate = el("span", { class: "tail-rate", "data-testid": "tail-rate" });
  const status = el("span", { class: "tail-status", "data-testid": "tail-status", "data-state": "off" });
  const root = el("div", { class: "live" }, toggle, pauseBtn, status, rate);

  let ws = null, retry = null, paused = false, held = [], query = "", lastNs = null;
  let arrivals = [], dropped = 0, rateTimer = null, currentQuery = () => "";

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
    root.classList.toggle("on", state === "live");
  }

  function updateRate() {
    const now = Date.now();
    arrivals = arrivals.filter(([t]) => now - t < RATE_WINDOW_MS);
    const n = arrivals.reduce((a, [, c]) => a + c, 0);
    const parts = [`${fmtNumber(n / (RATE_WINDOW_MS / 1000))} lines/s`];
    if (paused && held.length) parts.push(`${fmtNumber(held.length)} held`);
    if (dropped) parts.push(`${fmtNumber(dropped)} dropped by server`);
    rate.textContent = parts.join(" · ");
  }

  // `from` is {startMs} or {startNs}; a reconnect needs the nanosecond one.
  function connect(from) {
    setStatus("connecting", "connecting…");
    const sock = new WebSocket(tailUrl({ query, ...from, limit: 100 }));
    ws = sock;
    let opened = false;
    const openedAt = Date.now();
    sock.onopen = () => { opened = true; setStatus("live", "live"); };
    sock.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      const batch = [];
      for (const s of msg.streams ?? []) {
        for (const v of s.values) batch.push(makeEntry(s.stream, v[0], v[1], v[2]));
      }
      dropped += (msg.dropped_entries ?? []).length;
      if (!batch.length) return updateRate();
      // Arrival order within a message is by time; keep it oldest first for the list.
      batch.sort((a, b) => (BigInt(a.tsNs) < BigInt(b.tsNs) ? -1 : BigInt(a.tsNs) > BigInt(b.tsNs) ? 1 : 0));
      const newest = batch[batch.length - 1].tsNs;
      if (!lastNs || BigInt(newest) > BigInt(lastNs)) lastNs = newest;
      // The rate is about new lines: the look-back history sent on connect is not counted.
      const fresh = batch.filter((e) => e.tsMs >= openedAt - 5000).length; // 5 s: some clock skew
      if (fresh) arrivals.push([Date.now(), fresh]);
      if (paused) held = held.concat(batch).slice(-HOLD_MAX);
      else onEntries(batch);
      updateRate();
    };
    sock.onclose = (ev) => {
      if (ws !== sock) return; // stopped on purpose
      ws = null;
      const why = ev.reason || (opened ? `connection lost (code ${ev.code})` : `cannot open the tail websocket (code ${ev.code})`);
      setStatus("error", `${why}; retrying in 2 s`);
      // Resume just after the last line seen so a reconnect neither loses nor repeats lines.
      retry = setTimeout(() => {
        retry = null;
        connect(lastNs ? { startNs: (BigInt(lastNs) + 1n).toString() } : { startMs: Date.now() });
      }, 2000);
    };
  }

  function start(q) {
    if (!q.trim()) return;
    teardown();
    if (!isLogQuery(q)) { setStatus("error", "live tail needs a log query: {…}"); return; }
    query = q;
    lastNs = null; held = []; arrivals = []; dropped = 0;
    setPaused(false);
    toggle.textContent = "■ Stop";
    toggle.classList.add("active");
    pauseBtn.hidden = false;
    onStart?.();
    connect({ startMs: Date.now() - 60e3 });
    rateTimer = setInterval(updateRate, 1000);
    updateRate();
  }

  // Close everything without telling the page (used on restart and when leaving the page).
  function teardown() {
    const sock = ws;
    ws = null;
    sock?.close();
    clearTimeout(retry); retry = null;
    clearInterval(rateTimer); rateTimer = null;
    if (held.length) { onEntries(held); held = []; }
    toggle.textContent = "▶ Live";
    toggle.classList.remove("active");
    pauseBtn.hidden = true;
    rate.textContent = "";
    const wasOn = status.dataset.state !== "off";
    setStatus("off", "");
    return wasOn;
  }

  function stop() {
    if (teardown()) onStop?.();
  }

  function setPaused(p) {
    paused = p;
    pauseBtn.textContent = p ? "Resume" : "Pause";
    root.classList.toggle("paused", p);
    if (!p && held.length) { onEntries(held); held = []; }
    if (ws) setStatus("live", p ? "paused" : "live");
    updateRate();
  }

  return {
    root, start, stop, dispose: teardown,
    get active() { return Boolean(ws || retry); },
    set queryGetter(fn) { currentQuery = fn; },
  };
}
