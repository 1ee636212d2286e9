// The view's state lives in the URL hash (`#/explore?query=...&from=now-1h&to=now`), so a
// copied link reproduces the view and the static file server needs no routes of its own.

export function current() {
  const h = location.hash.replace(/^#\/?/, "");
  const [page, qs = ""] = h.split("?");
  return { page: page || "explore", params: new URLSearchParams(qs) };
}

export function href(page, params = {}) {
  const qs = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== "")).toString();
  return `#/${page}${qs ? "?" + qs : ""}`;
}

// Record a new state without re-rendering the page (hashchange only fires for real navigation);
// `push` adds a history entry so Back returns to the previous query or range.
export function update(page, params, push = true) {
  const target = href(page, params);
  if (target === location.hash) return;
  if (push) history.pushState(null, "", target);
  else history.replaceState(null, "", target);
  window.dispatchEvent(new Event("routeupdate"));
}
