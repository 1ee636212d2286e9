"""Loki's rules API (`/loki/api/v1/rules...`, YAML) and the ruler's Prometheus-style views
(`/prometheus/api/v1/rules`, `/prometheus/api/v1/alerts`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse

from sluiceway.ruler import (
    RuleFormatError,
    Ruler,
    RuleStoreError,
    alerts_json,
    dump_group,
    dump_namespaces,
    parse_group,
    rules_json,
)
from sluiceway.server._body import read_body
from sluiceway.server._context import JSONResponse, ServerContext, bad, ctx_of

T = TypeVar("T")
rules_api = APIRouter()  # only with `ruler.enable_api`
views = APIRouter()
RULES_PREFIXES = ("/loki/api/v1/rules", "/api/prom/rules")
NO_GROUPS = "no rule groups found"
ACCEPTED = {"status": "success", "data": None, "errorType": "", "error": ""}


def _ruler(ctx: ServerContext) -> Ruler:
    if ctx.ruler is None:
        raise RuntimeError("the ruler is not configured")
    return ctx.ruler


def _tenant(request: Request) -> str:
    return ctx_of(request).tenants(request.headers, allow_many=False)[0]


def _yaml(text: str) -> Response:
    return Response(text, media_type="application/yaml")


def _store_error(exc: RuleStoreError) -> Response:
    if exc.json:
        body = orjson.dumps({"status": "error", "data": None, "errorType": "server_error",
                             "error": exc.message})
        return PlainTextResponse(body, status_code=exc.status)
    return bad(exc.message, exc.status)


async def _call(fn: Callable[..., T], *args: Any) -> T | Response:
    try:
        return await run_in_threadpool(fn, *args)
    except RuleStoreError as exc:
        return _store_error(exc)


def _route(path: str, methods: list[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        for prefix in RULES_PREFIXES:
            rules_api.api_route(prefix + path, methods=methods)(fn)
        return fn
    return deco


@_route("", ["GET"])
async def list_rules(request: Request) -> Response:
    ruler = _ruler(ctx_of(request))
    got = await _call(ruler.store.list_groups, _tenant(request))
    if isinstance(got, Response):
        return got
    if not got:
        return bad(NO_GROUPS, 404)
    return _yaml(dump_namespaces(dict(sorted(got.items()))))


@_route("/{namespace}", ["GET"])
async def get_namespace(request: Request, namespace: str) -> Response:
    ruler = _ruler(ctx_of(request))
    got = await _call(ruler.store.get_namespace, _tenant(request), namespace)
    if isinstance(got, Response):
        return got
    if not got:
        return bad(NO_GROUPS, 404)
    return _yaml(dump_namespaces({namespace: got}))


@_route("/{namespace}/{group}", ["GET"])
async def get_group(request: Request, namespace: str, group: str) -> Response:
    ruler = _ruler(ctx_of(request))
    got = await _call(ruler.store.get_group, _tenant(request), namespace, group)
    if isinstance(got, Response):
        return got
    if got is None:
        return bad("group does not exist", 404)
    return _yaml(dump_group(got))


@_route("/{namespace}", ["POST"])
async def set_group(request: Request, namespace: str) -> Response:
    ctx = ctx_of(request)
    ruler = _ruler(ctx)
    tenant = _tenant(request)
    body = await read_body(request, ctx.cfg.server.max_body_size)
    if not ruler.store.writable:  # Loki refuses before reading the group
        return _store_error(RuleStoreError("SetRuleGroup unsupported in rule local store", 500))
    try:
        group = parse_group(body)
    except RuleFormatError as exc:
        return bad(str(exc), 400)
    got = await _call(ruler.store.set_group, tenant, namespace, group)
    if isinstance(got, Response):
        return got
    ruler.request_sync()
    return JSONResponse(ACCEPTED, status_code=202)


@_route("/{namespace}/{group}", ["DELETE"])
async def delete_group(request: Request, namespace: str, group: str) -> Response:
    ruler = _ruler(ctx_of(request))
    got = await _call(ruler.store.delete_group, _tenant(request), namespace, group)
    if isinstance(got, Response):
        return got
    ruler.request_sync()
    return JSONResponse(ACCEPTED, status_code=202)


@_route("/{namespace}", ["DELETE"])
async def delete_namespace(request: Request, namespace: str) -> Response:
    ruler = _ruler(ctx_of(request))
    got = await _call(ruler.store.delete_namespace, _tenant(request), namespace)
    if isinstance(got, Response):
        return got
    ruler.request_sync()
    return JSONResponse(ACCEPTED, status_code=202)


def _envelope(data: Any) -> JSONResponse:
    return JSONResponse({"status": "success", "data": data, "errorType": "", "error": ""})


def _list_param(request: Request, name: str) -> list[str]:
    return request.query_params.getlist(name + "[]") + request.query_params.getlist(name)


@views.get("/prometheus/api/v1/rules")
@views.get("/api/prom/api/v1/rules")
async def prometheus_rules(request: Request) -> Response:
    ruler = _ruler(ctx_of(request))
    kind = request.query_params.get("type", "")
    if kind not in ("", "alert", "record"):
        return JSONResponse({"status": "error", "data": None, "errorType": "bad_data",
                             "error": f"unsupported rule type {kind!r}"}, status_code=400)
    tenant = _tenant(request)
    files, names = _list_param(request, "file"), _list_param(request, "rule_group")
    rules = _list_param(request, "rule_name")
    data = rules_json(ruler.tenant_groups(tenant), kind, files, names, rules)
    others = await _gathered(ctx_of(request), {
        "view": "rules", "tenant": tenant, "type": kind, "file": files, "rule_group": names,
        "rule_name": rules})
    if others:  # cluster mode: every ruler's groups (each runs on one)
        seen = {(g["file"], g["name"]) for g in data["groups"]}
        for o in others:
            for g in o.get("groups", []):
                if (g["file"], g["name"]) not in seen:  # a group just handed over
                    seen.add((g["file"], g["name"]))
                    data["groups"].append(g)
        data["groups"].sort(key=lambda g: (g["file"], g["name"]))
    return _envelope(data)


@views.get("/prometheus/api/v1/alerts")
@views.get("/api/prom/api/v1/alerts")
async def prometheus_alerts(request: Request) -> Response:
    ruler = _ruler(ctx_of(request))
    tenant = _tenant(request)
    data = alerts_json(ruler.tenant_groups(tenant))
    for o in await _gathered(ctx_of(request), {"view": "alerts", "tenant": tenant}):
        data["alerts"] += o.get("alerts", [])
    return _envelope(data)


async def _gathered(ctx: ServerContext, req: dict[str, Any]) -> list[dict[str, Any]]:
    """Cluster mode: the same view of every other ruler's groups (none otherwise)."""
    ops = ctx.cluster_ops
    if ops is None or ops.rule_views is None:
        return []
    return await asyncio.wrap_future(ops.conn.submit(ops.rule_views.gather(req)))


@views.get("/sluiceway/api/v1/ruler")
async def ruler_status(request: Request) -> Response:
    """What the Alerts page shows besides the rules: files that could not be loaded and
    whether notifications and remote write get through."""
    ctx = ctx_of(request)
    ruler = _ruler(ctx)
    tenant = _tenant(request)
    errors = [{"file": path, "error": err} for path, err in sorted(ruler.load_errors.items())
              if f"/{tenant}/" in path or path.startswith(f"{tenant}/")]
    n = ruler.notifier
    w = ruler.writer
    return JSONResponse({
        "writable": ruler.store.writable,
        # the groups this process evaluates (cluster mode: each group runs on one)
        "evaluated_here": [{"namespace": g.namespace, "group": g.group.name}
                           for g in ruler.tenant_groups(tenant)],
        "evaluation_interval": ctx.cfg.ruler.evaluation_interval,
        "load_errors": errors,
        "alertmanager": None if n is None else {
            "urls": n.urls, "failing": n.failing, "sent": n.sent.get(tenant, 0),
            "errors": n.errors.get(tenant, 0), "dropped": n.dropped.get(tenant, 0)},
        "remote_write": None if w is None else [
            {"url": c.opts.url, "failing": c.failing, "sent": c.sent.get(tenant, 0),
             "pending": len(c.queues.get(tenant, ())),
             "dropped": sum(v for (t, _), v in c.dropped.items() if t == tenant)}
            for c in w.clients],
    })
