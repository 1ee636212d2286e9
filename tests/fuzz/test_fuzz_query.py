"""Every query endpoint under near-valid parameters (GET and POST form), the live tail's
parameter parsing, and format_query. No 5xx, no exception, bounded answers."""

from __future__ import annotations

import contextlib
import urllib.parse
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.websockets import WebSocket

from sluiceway.logql import QueryError
from sluiceway.server._params import ParamError
from sluiceway.server._routes_tail import _tail_request
from tests.fuzz._support import (
    DURATION_TEXT,
    LIMIT_TEXT,
    ODD_TEXT,
    TENANTS,
    TIME_TEXT,
    any_query,
    check,
    fuzz,
    log_query,
    metric_query,
    one_in,
    weighted,
)
from tests.inproc import InProcessServer

QUERIES = any_query() | log_query() | metric_query()
SELECTOR_TEXT = weighted(st.sampled_from(['{app="api"}', '{app=~"a.*"}', '{env="prod"}']),
                         st.sampled_from(["{}", "{", '{app="api"} |= "x"', '{a!=""}',
                                          '{__name__="x"}']) | ODD_TEXT)
COMMON = {"start": TIME_TEXT, "end": TIME_TEXT, "since": DURATION_TEXT}

# Each endpoint: its path, the parameters it reads (each one optional), whether it has
# a path parameter.
ENDPOINTS: dict[str, dict[str, st.SearchStrategy[str]]] = {
    "/loki/api/v1/query_range": {
        "query": QUERIES, "limit": LIMIT_TEXT, "step": DURATION_TEXT,
        "interval": DURATION_TEXT, "direction": st.sampled_from(["forward", "backward", "x",
                                                                  "FORWARD", ""]),
        **COMMON},
    "/loki/api/v1/query": {"query": QUERIES, "limit": LIMIT_TEXT, "time": TIME_TEXT,
                           "direction": st.sampled_from(["forward", "sideways"])},
    "/loki/api/v1/labels": {"query": SELECTOR_TEXT, **COMMON},
    "/loki/api/v1/label/{name}/values": {"query": SELECTOR_TEXT, **COMMON},
    "/loki/api/v1/series": {"match[]": SELECTOR_TEXT, **COMMON},
    "/loki/api/v1/index/stats": {"query": SELECTOR_TEXT, **COMMON},
    "/loki/api/v1/index/volume": {
        "query": SELECTOR_TEXT, "limit": LIMIT_TEXT,
        "targetLabels": st.sampled_from(["", "app", "app,env", ",,", "é", "nope"]),
        "aggregateBy": st.sampled_from(["series", "labels", "x", ""]), **COMMON},
    "/loki/api/v1/index/volume_range": {
        "query": SELECTOR_TEXT, "limit": LIMIT_TEXT, "step": DURATION_TEXT,
        "targetLabels": st.sampled_from(["", "app", "fmt,env"]),
        "aggregateBy": st.sampled_from(["series", "labels"]), **COMMON},
    "/loki/api/v1/format_query": {"query": QUERIES},
}
LABEL_NAMES = st.sampled_from(["app", "env", "nope", "__name__", "%2F", "..", "é", "a b"])


@st.composite
def request(draw: st.DrawFn, path: str) -> tuple[str, dict[str, str]]:
    spec = ENDPOINTS[path]
    required = {k: v for k, v in spec.items() if k in ("query", "match[]")}
    params = draw(st.fixed_dictionaries(required, optional={
        k: v for k, v in spec.items() if k not in required}))
    if one_in(10, draw):  # and now and then without them
        params = {k: v for k, v in params.items() if k not in required}
    extra = draw(st.dictionaries(st.sampled_from(["x", "query", "start", "step", ""]), ODD_TEXT,
                                 max_size=1))
    for k, v in extra.items():
        params.setdefault(k, v)
    return path.replace("{name}", draw(LABEL_NAMES)), params


def _ask(srv: InProcessServer, method: str, path: str, params: dict[str, str],
         tenant: str | None) -> None:
    headers = {"X-Scope-OrgID": tenant.encode()} if tenant is not None else {}
    # Encoded here, lone surrogates as the invalid UTF-8 a client could send (%ED%A0%80).
    query = urllib.parse.urlencode(params, errors="surrogatepass")
    if method == "GET":
        r = srv.get(f"{path}?{query}", headers=headers)
    else:  # Grafana sends its queries as POST forms
        headers["Content-Type"] = b"application/x-www-form-urlencoded"
        r = srv.post(path, content=query.encode(), headers=headers)
    check(r)


@pytest.mark.parametrize("path", list(ENDPOINTS), ids=lambda p: p.rsplit("/", 1)[1])
@fuzz(70)
@given(data=st.data(), method=st.sampled_from(["GET", "POST"]), tenant=TENANTS)
def test_query_endpoints(fuzz_server: InProcessServer, path: str, data: st.DataObject,
                         method: str, tenant: str | None) -> None:
    url, params = data.draw(request(path))
    _ask(fuzz_server, method, url, params, tenant)


@fuzz(150)
@given(query=QUERIES, step=st.sampled_from([None, "1s", "60", "0.001", "1h"]),
       since=st.sampled_from([None, "5m", "2h", "30d"]))
def test_queries_over_the_data(fuzz_server: InProcessServer, query: str, step: str | None,
                               since: str | None) -> None:
    """Plausible ranges, so that queries are evaluated, not refused for their range."""
    params = {"query": query, "limit": "1000"}
    if step:
        params["step"] = step
    if since:
        params["since"] = since
    _ask(fuzz_server, "GET", "/loki/api/v1/query_range", params, None)
    _ask(fuzz_server, "GET", "/loki/api/v1/query", {"query": query}, None)


@fuzz(100)
@given(st.text(max_size=40) | QUERIES)
def test_format_query_text(fuzz_server: InProcessServer, query: str) -> None:
    qs = urllib.parse.urlencode({"query": query}, errors="surrogatepass")
    r = fuzz_server.get(f"/loki/api/v1/format_query?{qs}")
    check(r)
    if r.status_code == 200:  # what it prints reads back to the same text
        again = fuzz_server.get("/loki/api/v1/format_query", params={"query": r.json()["data"]})
        assert again.status_code == 200 and again.json()["data"] == r.json()["data"]


@fuzz(200)
@given(params=st.fixed_dictionaries({}, optional={
    "query": QUERIES, "limit": LIMIT_TEXT, "delay_for": DURATION_TEXT, "start": TIME_TEXT,
    "orgId": st.sampled_from(["", "t1", "a|b", "..", "x" * 151])}), tenant=TENANTS)
def test_tail_parameters(fuzz_server: InProcessServer, params: dict[str, str],
                         tenant: str | None) -> None:
    """The websocket handler's parameter parsing, called as the route calls it: only the
    errors it turns into a close (or a 401) may come out."""
    headers = [(b"x-scope-orgid", tenant.encode())] if tenant is not None else []
    scope: dict[str, Any] = {"type": "websocket", "path": "/loki/api/v1/tail",
                             "query_string": urllib.parse.urlencode(
                                 params, errors="surrogatepass").encode(),
                             "headers": headers, "app": fuzz_server.app}

    async def never() -> Any:
        raise AssertionError("the parameters need no message")

    ws = WebSocket(scope, never, never)
    with contextlib.suppress(ParamError, QueryError, PermissionError):
        _tail_request(fuzz_server.app.state.ctx, ws)
