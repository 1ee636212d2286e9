"""The server's ruler: built from `ruler:` / `ruler_storage:`, querying the LogQL engine
over the store at one instant per tenant. In cluster mode the `filesystem` backend (the
default) is the cluster's KV bucket `<prefix>rules` and the for-state is in
`<prefix>ruler-state`; `local` rule files stay read-only files on each node."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sluiceway import __version__
from sluiceway.cluster import KVBlobs, KVRuleStore
from sluiceway.logql import Expr, QueryParams, evaluate
from sluiceway.ruler import (
    FilesystemRuleStore,
    LocalRuleStore,
    Ruler,
    RuleStore,
    Sample,
    StateHome,
    alerts_json,
    rules_json,
    samples_of,
)
from sluiceway.server._config import Config
from sluiceway.server._context import ServerContext

USER_AGENT = f"Sluiceway-Ruler/{__version__}"


def rules_backend(cfg: Config) -> tuple[str, Path]:
    """The rule store's kind and directory: `ruler_storage`, or Loki's older
    `ruler.storage` when the config has no `ruler_storage` section."""
    legacy = cfg.ruler.storage
    if legacy is not None and "ruler_storage" not in cfg.model_fields_set:
        backend, local, fs = legacy.type, legacy.local.directory, legacy.filesystem.dir
    else:
        rs = cfg.ruler_storage
        backend, local, fs = rs.backend, rs.local.directory, rs.filesystem.dir
    directory = local if backend == "local" else fs
    return backend, directory or cfg.storage.data_dir / "rules"


def rule_store(cfg: Config, ctx: ServerContext | None = None) -> RuleStore:
    backend, directory = rules_backend(cfg)
    if backend == "local":
        return LocalRuleStore(directory)
    if ctx is not None and ctx.cluster is not None:
        return KVRuleStore(ctx.cluster.conn, cfg.cluster.bucket("rules"), cfg.cluster.replicas,
                           state=kv_state(cfg, ctx))
    return FilesystemRuleStore(directory)


def kv_state(cfg: Config, ctx: ServerContext) -> KVBlobs:
    """Cluster mode: the groups' for-state documents, `<prefix>ruler-state`."""
    assert ctx.cluster is not None
    return KVBlobs(ctx.cluster.conn, cfg.cluster.bucket("ruler-state"), cfg.cluster.replicas)


def query_func(ctx: ServerContext) -> Callable[[str, Expr, int], list[Sample]]:
    def query(tenant: str, expr: Expr, ts: int) -> list[Sample]:
        limits = ctx.limits_for(tenant)
        qp = QueryParams(tenants=[tenant], start=ts, end=ts, instant=True,
                         max_series=limits.max_query_series,
                         max_line_size=ctx.template_cap(limits), deadline=ctx.deadline(limits),
                         levels=ctx.level_rules(limits))
        return samples_of(evaluate(ctx.source(), expr, qp))

    return query


def build_ruler(cfg: Config, ctx: ServerContext) -> Ruler:
    """The ruler of `cfg.ruler` (its own model, handed over as it is); its for-state
    under `rule_path`, by default in the data dir (cluster mode: in KV). Build it after
    `ctx.cluster`."""
    state: StateHome = (cfg.ruler.rule_path or cfg.storage.data_dir / "ruler_state") \
        / "for-state"
    if ctx.cluster is not None:  # where the next holder of a group finds it
        state = kv_state(cfg, ctx)
    return Ruler.from_config(cfg.ruler, rule_store(cfg, ctx), query_func(ctx), state,
                             USER_AGENT)


def ruler_view(ctx: ServerContext) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Cluster mode: this process's part of `/prometheus/api/v1/rules` or `/alerts` (its
    own groups), for another member's ask (`cluster.RuleViews`)."""
    def answer(req: dict[str, Any]) -> dict[str, Any]:
        if ctx.ruler is None:
            return {"groups": []} if req.get("view") == "rules" else {"alerts": []}
        groups = ctx.ruler.tenant_groups(str(req["tenant"]))
        if req.get("view") == "alerts":
            return alerts_json(groups)
        return rules_json(groups, str(req.get("type", "")), req.get("file") or [],
                          req.get("rule_group") or [], req.get("rule_name") or [])

    return answer


class RulerCollector(Collector):
    """The ruler's counters on /metrics."""

    def __init__(self, ruler: Ruler) -> None:
        self.ruler = ruler

    def collect(self):  # type: ignore[no-untyped-def]
        evals = CounterMetricFamily("sluiceway_ruler_group_evaluations",
                                    "Rule group evaluations", labels=["tenant"])
        fails = CounterMetricFamily("sluiceway_ruler_rule_evaluation_failures",
                                    "Rule evaluations that failed", labels=["tenant"])
        by_tenant: dict[str, list[int]] = {}
        for g in list(self.ruler.groups.values()):
            acc = by_tenant.setdefault(g.tenant, [0, 0])
            acc[0] += g.evaluations
            acc[1] += g.failures
        for t, (e, f) in sorted(by_tenant.items()):
            evals.add_metric([t], e)
            fails.add_metric([t], f)
        yield evals
        yield fails
        n = self.ruler.notifier
        if n is not None:
            for name, what, counts in (
                    ("sent", "Alerts sent to the Alertmanager", n.sent),
                    ("errors", "Alerts the Alertmanager did not take", n.errors),
                    ("dropped", "Alerts dropped from a full notification queue", n.dropped)):
                fam = CounterMetricFamily(f"sluiceway_ruler_notifications_{name}", what,
                                          labels=["tenant"])
                for t, v in sorted(counts.items()):
                    fam.add_metric([t], v)
                yield fam
        w = self.ruler.writer
        if w is not None:
            sent = CounterMetricFamily("sluiceway_ruler_remote_write_samples_sent",
                                       "Samples remote-written", labels=["url", "tenant"])
            lost = CounterMetricFamily("sluiceway_ruler_remote_write_samples_dropped",
                                       "Samples not remote-written, by reason",
                                       labels=["url", "tenant", "reason"])
            pending = GaugeMetricFamily("sluiceway_ruler_remote_write_pending_samples",
                                        "Samples waiting to be remote-written",
                                        labels=["url"])
            for c in w.clients:
                for t, v in sorted(c.sent.items()):
                    sent.add_metric([c.opts.url, t], v)
                for (t, reason), v in sorted(c.dropped.items()):
                    lost.add_metric([c.opts.url, t, reason], v)
                pending.add_metric([c.opts.url], c.pending())
            yield sent
            yield lost
            yield pending
