// Tiny DOM helpers: enough to build views without a framework (no build step allowed).

// el("div", {class: "x", onclick: fn}, child, "text", [more children])
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style" && typeof v === "object") Object.assign(node.style, v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, String(v));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else node.append(c instanceof Node ? c : String(c));
  }
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export function fmtNumber(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return "–";
  const abs = Math.abs(n);
  if (abs >= 1e9) return (n / 1e9).toFixed(abs >= 1e10 ? 0 : 1) + "G";
  if (abs >= 1e6) return (n / 1e6).toFixed(abs >= 1e7 ? 0 : 1) + "M";
  if (abs >= 1e4) return (n / 1e3).toFixed(abs >= 1e5 ? 0 : 1) + "k";
  return Number.isInteger(n) ? String(n) : n.toFixed(abs < 10 ? 2 : 1);
}

export function fmtBytes(n) {
  if (n === undefined || n === null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 || n >= 10 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

// Series colours that stay readable on the dark background; levels get fixed ones.
export const PALETTE = ["#4fb3ff", "#f2a93b", "#7bd88f", "#e56b9f", "#b48cf2", "#5fd3c8",
  "#f07b5e", "#d9d36a", "#8aa4ff", "#c7c7c7"];
export const LEVEL_COLORS = {
  critical: "#ff4d6d", fatal: "#ff4d6d", error: "#f25c54", warn: "#f2a93b",
  info: "#4fb3ff", debug: "#8892a6", trace: "#6b7385", unknown: "#9aa4b5",
};

// Runs `load` now and again `ms` after each run ends, until the returned function is
// called; `updated` says when it last loaded, or why it could not.
export function pollEvery(ms, load, updated) {
  let timer = null, stopped = false;
  async function tick() {
    try {
      await load();
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      updated.classList.remove("bad");
    } catch (err) {
      updated.textContent = `cannot load: ${err.message}`;
      updated.classList.add("bad");
    }
    if (!stopped) timer = setTimeout(tick, ms);
  }
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}
