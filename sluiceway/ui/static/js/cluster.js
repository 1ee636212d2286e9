// The Cluster page: the members of the cluster (role, address, version, last seen), each
// partition's owner and lag (messages not yet in chunks), the health of each ingest stream
// (its leader and replicas), the object store's size, the singletons' holders, which member
// evaluates each rule group and this node's active streams per tenant. Built from
// /cluster/status, polled. A single-node server says so.
import { el, clear, fmtNumber, fmtBytes, pollEvery } from "./dom.js";
import * as api from "./api.js";

const POLL_MS = 2000;
const LAG_WARN = 10000;

function age(s) {
  if (s === undefined || s === null) return "–";
  if (s < 1.5) return "just now";
  if (s < 90) return `${Math.round(s)}s ago`;
  return `${Math.round(s / 60)}m ago`;
}

function table(head, rows, attrs = {}) {
  return el("table", { class: "rules cluster-table", ...attrs },
    el("tr", {}, head.map((h) => el("th", {}, h))), rows);
}

function membersPanel(doc) {
  const rows = (doc.members ?? []).map((m) => el("tr", { "data-testid": "member", "data-member": m.id, "data-role": m.role },
    el("td", {}, m.id, m.id === doc.me ? el("span", { class: "muted" }, " (this node)") : null),
    el("td", {}, el("span", { class: "chip" }, m.role)),
    el("td", {}, el("code", {}, m.address)),
    el("td", {}, m.version),
    el("td", { class: m.age_s > 15 ? "warn" : "", title: new Date(m.last_seen * 1000).toISOString() }, age(m.age_s))));
  return el("section", { class: "panel", "data-testid": "members" },
    el("div", { class: "panel-head" }, el("h2", {}, "Members"), el("span", { class: "muted" }, `${rows.length} live`)),
    rows.length ? table(["member", "role", "address", "version", "last seen"], rows) : el("p", { class: "empty small" }, "no member listed"));
}

function partitionsPanel(doc) {
  const parts = doc.partitions ?? [];
  const rows = parts.map((p) => el("tr", { "data-testid": "partition", "data-partition": p.partition, "data-owner": p.owner ?? "" },
    el("td", { class: "num" }, String(p.partition)),
    el("td", {}, p.stream),
    el("td", { class: p.owner ? "" : "bad" }, p.owner ?? "no owner"),
    el("td", { class: `num ${p.lag > LAG_WARN ? "warn" : ""}`, "data-testid": "lag" }, p.lag === null ? "–" : fmtNumber(p.lag)),
    el("td", { class: "num muted" }, `${p.flushed_seq} / ${p.consumed_seq}`)));
  const unowned = parts.filter((p) => !p.owner).length;
  return el("section", { class: `panel ${unowned ? "bad" : ""}`, "data-testid": "partitions" },
    el("div", { class: "panel-head" }, el("h2", {}, "Partitions"),
      el("span", { class: "muted" }, `${parts.length} partitions, ${unowned} without an owner, ${fmtNumber(parts.reduce((a, p) => a + (p.lag ?? 0), 0))} messages not yet in chunks`)),
    rows.length ? table(["partition", "stream", "owner", "lag (messages)", "flushed / consumed sequence"], rows) : el("p", { class: "empty small" }, "no partition listed"));
}

function streamsPanel(doc) {
  const rows = (doc.streams ?? []).map((s) => el("tr", { "data-testid": "stream", "data-stream": s.name, "data-healthy": String(s.healthy) },
    el("td", {}, s.name),
    el("td", {}, el("span", { class: `state-badge ${s.healthy ? "" : "bad"}` }, s.healthy ? "HEALTHY" : "DEGRADED")),
    el("td", {}, s.leader ?? "–"),
    el("td", {}, s.replicas.length
      ? s.replicas.map((r) => el("span", { class: `chip ${r.current && !r.offline ? "" : "bad"}` }, `${r.name}${r.offline ? " offline" : r.current ? "" : ` behind ${r.lag}`}`))
      : el("span", { class: "muted" }, `${s.replicas_configured} replica${s.replicas_configured > 1 ? "s" : ""}`)),
    el("td", { class: "num" }, fmtNumber(s.messages)),
    el("td", { class: "num" }, fmtBytes(s.bytes))));
  return el("section", { class: "panel", "data-testid": "streams" },
    el("div", { class: "panel-head" }, el("h2", {}, "Ingest streams")),
    table(["stream", "health", "leader", "other replicas", "messages", "bytes"], rows));
}

function ruleGroupsPanel(doc) {
  const groups = doc.rule_groups ?? [];
  const rows = groups.map((g) => el("tr", { "data-testid": "rule-group", "data-holder": g.holder },
    el("td", {}, g.tenant),
    el("td", {}, g.namespace),
    el("td", {}, g.group),
    el("td", {}, g.holder, g.holder === doc.me ? el("span", { class: "muted" }, " (this node)") : null)));
  return el("section", { class: "panel", "data-testid": "rule-groups" },
    el("div", { class: "panel-head" }, el("h2", {}, "Rule groups"), el("span", { class: "muted" }, `${rows.length} evaluated`)),
    rows.length ? table(["tenant", "namespace", "group", "holder"], rows) : el("p", { class: "empty small" }, "no rule groups"));
}

function activeStreamsPanel(doc) {
  const tenants = Object.entries(doc.node?.active_streams ?? {}).sort(([a], [b]) => a.localeCompare(b));
  const rows = tenants.map(([tenant, n]) => el("tr", { "data-testid": "active-streams", "data-tenant": tenant },
    el("td", {}, tenant),
    el("td", { class: "num", "data-testid": "active-streams-count" }, fmtNumber(n))));
  const total = tenants.reduce((a, [, n]) => a + n, 0);
  return el("section", { class: "panel", "data-testid": "node-active-streams" },
    el("div", { class: "panel-head" }, el("h2", {}, "Active streams"),
      el("span", { class: "muted" }, `${fmtNumber(total)} across the cluster, as this node counts them`)),
    rows.length ? table(["tenant", "active streams"], rows) : el("p", { class: "empty small" }, "no active streams"));
}

function summaryPills(doc) {
  const os = doc.object_store;
  const streams = doc.streams ?? [];
  const bad = streams.filter((s) => !s.healthy).length;
  const pills = [
    el("span", { class: "pill", "data-testid": "member-count" }, `${(doc.members ?? []).length} members`),
    el("span", { class: `pill ${bad ? "bad" : "ok"}`, "data-testid": "stream-health" }, bad ? `${bad} of ${streams.length} streams degraded` : `${streams.length} streams healthy`),
    el("span", { class: "pill", "data-testid": "object-store" }, os ? `object store: ${fmtBytes(os.bytes)} in ${fmtNumber(os.objects)} objects` : "object store: –"),
  ];
  for (const [name, holder] of Object.entries(doc.singletons ?? {})) {
    pills.push(el("span", { class: `pill ${holder ? "ok" : "warn"}`, "data-testid": `singleton-${name}` }, `${name}: ${holder ?? "nobody"}`));
  }
  return pills;
}

export function clusterPage() {
  const summary = el("div", { class: "summary", "data-testid": "cluster-summary" });
  const errors = el("div", {});
  const body = el("div", { class: "cluster" });
  const updated = el("span", { class: "muted updated" });
  const root = el("div", { class: "cluster-page" },
    el("div", { class: "page-head" }, el("h1", {}, "Cluster"),
      el("p", { class: "muted" }, "The processes of this cluster, who owns each partition and how far behind it is, the health of the NATS streams, and who evaluates each rule group."),
      el("span", { class: "spacer" }), updated),
    summary, errors, body);

  function render(doc) {
    clear(body); clear(summary); clear(errors);
    if (doc.mode !== "cluster") {
      body.append(el("div", { class: "empty", "data-testid": "single-node" },
        el("p", {}, "This server runs alone (single-node mode): there is no cluster to show."),
        el("p", { class: "muted" }, "Start it with --cluster nats://… to join a cluster.")));
      return;
    }
    summary.append(...summaryPills(doc));
    const errs = Object.entries(doc.errors ?? {});
    if (errs.length) {
      errors.append(el("section", { class: "panel bad", "data-testid": "status-errors" },
        el("div", { class: "panel-head" }, el("h2", {}, "Not answered now")),
        el("ul", {}, errs.map(([k, v]) => el("li", {}, el("code", {}, k), ": ", v)))));
    }
    body.append(membersPanel(doc), partitionsPanel(doc), streamsPanel(doc), ruleGroupsPanel(doc),
      activeStreamsPanel(doc));
  }

  const stop = pollEvery(POLL_MS, async () => render(await api.clusterStatus()), updated);
  return { root, destroy: stop };
}
