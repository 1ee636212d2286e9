// The Alerts page: every rule group of the tenant with each rule's state (firing, pending,
// inactive), health, last evaluation and error; the alerts behind a firing rule; rule files
// the ruler could not load; and whether the Alertmanager and remote write get the output.
// Built from /prometheus/api/v1/rules (Loki's shape) and /sluiceway/api/v1/ruler, polled.
import { el, clear, fmtNumber, pollEvery } from "./dom.js";
import * as api from "./api.js";
import * as route from "./route.js";

const POLL_MS = 2000;
const ZERO = "0001-01-01T00:00:00Z";
const STATE_CLASS = { firing: "bad", pending: "warn", inactive: "ok", unknown: "stale" };

function ago(rfc3339) {
  if (!rfc3339 || rfc3339 === ZERO) return "never";
  const s = (Date.now() - Date.parse(rfc3339)) / 1000;
  if (s < 1.5) return "just now";
  if (s < 90) return `${Math.round(s)}s ago`;
  if (s < 5400) return `${Math.round(s / 60)}m ago`;
  return `${(s / 3600).toFixed(1)}h ago`;
}

function seconds(s) {
  if (!s) return "–";
  return s < 1 ? `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms` : `${s.toFixed(2)} s`;
}

function duration(s) {
  if (!s) return "";
  const parts = [];
  for (const [unit, n] of [["h", 3600], ["m", 60], ["s", 1]]) {
    if (s >= n) { parts.push(`${Math.floor(s / n)}${unit}`); s %= n; }
  }
  return parts.join("");
}

function labelChips(labels = {}) {
  return Object.entries(labels).map(([k, v]) => el("span", { class: "chip" }, `${k}="${v}"`));
}

// A rule's state word: alerting rules have one, recording rules show their health.
function stateOf(rule) {
  if (rule.type === "alerting") return rule.state;
  return rule.health === "err" ? "error" : rule.health === "ok" ? "recording" : "unknown";
}

function ruleRow(group, rule) {
  const state = stateOf(rule);
  const cls = rule.health === "err" ? "bad" : STATE_CLASS[state] ?? "ok";
  const explore = route.href("explore", { query: rule.query, from: "now-1h", to: "now" });
  const row = el("tr", { class: `rule state-${cls}`, "data-testid": "rule", "data-rule": rule.name,
    "data-state": state, "data-health": rule.health },
    el("td", {}, el("span", { class: `kind kind-${rule.type}` }, rule.type === "alerting" ? "alert" : "record")),
    el("td", { class: "rule-name" }, rule.name,
      rule.duration ? el("span", { class: "muted" }, ` for ${duration(rule.duration)}`) : null),
    el("td", {}, el("span", { class: `state-badge ${cls}`, "data-testid": "rule-state" }, state.toUpperCase()),
      rule.alerts?.length ? el("span", { class: "muted" }, ` ${rule.alerts.length} alert${rule.alerts.length > 1 ? "s" : ""}`) : null),
    el("td", { class: "muted", title: rule.lastEvaluation }, ago(rule.lastEvaluation),
      rule.lastEvaluation !== ZERO ? el("span", { class: "muted" }, ` · ${seconds(rule.evaluationTime)}`) : null),
    el("td", { class: "rule-error", "data-testid": "rule-error" }, rule.lastError || ""));
  const details = el("tr", { class: "rule-details" }, el("td", { colspan: 5 },
    el("div", { class: "rule-query" }, el("code", {}, rule.query), " ", el("a", { href: explore }, "explore")),
    el("div", { class: "chips" }, labelChips(rule.labels)),
    rule.annotations && Object.keys(rule.annotations).length
      ? el("dl", { class: "annotations" }, Object.entries(rule.annotations).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]))
      : null,
    rule.alerts?.length ? el("table", { class: "alert-list", "data-testid": "alerts" },
      el("tr", {}, el("th", {}, "state"), el("th", {}, "labels"), el("th", {}, "value"), el("th", {}, "active since"), el("th", {}, "annotations")),
      rule.alerts.map((a) => el("tr", { "data-testid": "alert" },
        el("td", {}, el("span", { class: `state-badge ${STATE_CLASS[a.state]}` }, a.state.toUpperCase())),
        el("td", {}, el("div", { class: "chips" }, labelChips(a.labels))),
        el("td", { class: "num" }, fmtNumber(Number(a.value))),
        el("td", { title: a.activeAt }, ago(a.activeAt)),
        el("td", { class: "muted" }, Object.values(a.annotations ?? {}).join(" · "))))) : null));
  return [row, details];
}

function groupPanel(group) {
  const rules = group.rules.flatMap((r) => ruleRow(group, r));
  return el("section", { class: "panel rule-group", "data-testid": "rule-group", "data-group": group.name },
    el("div", { class: "panel-head" },
      el("h2", {}, `${group.file} / ${group.name}`),
      el("span", { class: "muted" }, `every ${duration(group.interval)}`),
      el("span", { class: "spacer" }),
      el("span", { class: "muted", title: group.lastEvaluation }, `evaluated ${ago(group.lastEvaluation)}`)),
    el("table", { class: "rules" },
      el("tr", {}, el("th", {}, ""), el("th", {}, "rule"), el("th", {}, "state"), el("th", {}, "last evaluation"), el("th", {}, "error")),
      rules));
}

function outputs(status) {
  const items = [];
  const am = status.alertmanager;
  items.push(am
    ? el("span", { class: `pill ${am.failing ? "bad" : "ok"}`, "data-testid": "alertmanager" },
      `Alertmanager ${am.failing ? "failing" : "ok"}: ${fmtNumber(am.sent)} sent` +
      (am.errors ? `, ${fmtNumber(am.errors)} not taken` : "") + (am.dropped ? `, ${fmtNumber(am.dropped)} dropped` : ""))
    : el("span", { class: "pill", "data-testid": "alertmanager" }, "no Alertmanager configured"));
  for (const w of status.remote_write ?? []) {
    items.push(el("span", { class: `pill ${w.failing ? "bad" : "ok"}`, title: w.url },
      `remote write ${w.failing ? "failing" : "ok"}: ${fmtNumber(w.sent)} samples` +
      (w.pending ? `, ${fmtNumber(w.pending)} waiting` : "") + (w.dropped ? `, ${fmtNumber(w.dropped)} dropped` : "")));
  }
  return items;
}

const EMPTY_HELP = `curl -X POST -H 'Content-Type: application/yaml' \\
  http://HOST/loki/api/v1/rules/my-team --data-binary @- <<'EOF'
name: errors
rules:
  - alert: ManyErrors
    expr: sum by (app) (count_over_time({app="api"} |= "error" [5m])) > 10
    for: 2m
EOF`;

export function alertsPage() {
  const summary = el("div", { class: "summary", "data-testid": "alerts-summary" });
  const errors = el("div", { class: "load-errors" });
  const groups = el("div", { class: "rule-groups" });
  const updated = el("span", { class: "muted updated" });
  const root = el("div", { class: "alerts" },
    el("div", { class: "page-head" }, el("h1", {}, "Alerts"),
      el("p", { class: "muted" }, "Alerting and recording rules of this tenant, as the ruler evaluates them."),
      el("span", { class: "spacer" }), updated),
    summary, errors, groups);

  function render(data, status) {
    const all = data.groups.flatMap((g) => g.rules);
    const alerts = all.filter((r) => r.type === "alerting");
    const firing = alerts.filter((r) => r.state === "firing").length;
    const pending = alerts.filter((r) => r.state === "pending").length;
    const failing = all.filter((r) => r.health === "err").length;
    const loadErrors = status.load_errors ?? [];
    clear(summary).append(
      el("span", { class: "pill" }, `${all.length} rules in ${data.groups.length} groups`),
      el("span", { class: `pill ${firing ? "bad" : "ok"}`, "data-count": firing }, `${firing} firing`),
      el("span", { class: `pill ${pending ? "warn" : "ok"}`, "data-count": pending }, `${pending} pending`),
      el("span", { class: `pill ${failing || loadErrors.length ? "bad" : "ok"}`, "data-testid": "errors-pill" },
        `${failing} failing rules, ${loadErrors.length} files not loaded`),
      ...outputs(status));
    clear(errors);
    if (loadErrors.length) {
      errors.append(el("section", { class: "panel bad", "data-testid": "load-errors" },
        el("div", { class: "panel-head" }, el("h2", {}, "Rule files not loaded")),
        el("ul", {}, loadErrors.map((e) => el("li", {}, el("code", {}, e.file), ": ", e.error)))));
    }
    clear(groups);
    if (!data.groups.length) {
      groups.append(el("div", { class: "empty" },
        el("p", {}, status.writable
          ? "No rules yet. Add a group with the rules API (Loki's), for example:"
          : "No rules yet. Put rule files in the ruler's rules directory, one folder per tenant."),
        status.writable ? el("pre", { class: "help" }, EMPTY_HELP) : null));
    }
    for (const g of data.groups) groups.append(groupPanel(g));
  }

  const stop = pollEvery(POLL_MS, async () => {
    const [data, status] = await Promise.all([api.rules(), api.rulerStatus()]);
    render(data, status);
  }, updated);
  return { root, destroy: stop };
}
