"""Malformed parameters on every endpoint get a 4xx with a message, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.inproc import ThreadServer
from tests.procs import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ThreadServer(Path(tmp_path_factory.mktemp("bad")) / "data").start()
    yield srv
    srv.stop()

BAD = [
    ("GET", "/loki/api/v1/query_range", {"query": '{a="b"}', "start": "yesterday"}),
    ("GET", "/loki/api/v1/query_range", {"query": '{a="b"}', "limit": "many"}),
    ("GET", "/loki/api/v1/query_range", {"query": '{a="b"}', "limit": "-3"}),
    ("GET", "/loki/api/v1/query_range", {"query": '{a="b"}', "direction": "sideways"}),
    ("GET", "/loki/api/v1/query_range", {"query": 'sum(rate({a="b"}[1m]))', "step": "-5"}),
    ("GET", "/loki/api/v1/query_range", {"query": 'sum(rate({a="b"}[1m]))', "step": "soon"}),
    ("GET", "/loki/api/v1/query_range", {"query": '{a="b"}', "start": "20", "end": "10"}),
    ("GET", "/loki/api/v1/query_range", {"query": "{"}),
    ("GET", "/loki/api/v1/query_range", {"query": '{a="b"} |~ "(unclosed"'}),
    ("GET", "/loki/api/v1/query_range", {}),
    ("GET", "/loki/api/v1/query_range", {"query": '{a="b"}', "since": "a while"}),
    ("GET", "/loki/api/v1/query", {"query": "sum(", "time": "x"}),
    ("GET", "/loki/api/v1/labels", {"start": "nope"}),
    ("GET", "/loki/api/v1/labels", {"query": "{bad"}),
    ("GET", "/loki/api/v1/label/app/values", {"query": "not a selector"}),
    ("GET", "/loki/api/v1/series", {}),
    ("GET", "/loki/api/v1/series", {"match[]": "{"}),
    ("GET", "/loki/api/v1/index/stats", {"query": "{"}),
    ("GET", "/loki/api/v1/index/volume", {}),
    ("GET", "/loki/api/v1/index/volume_range", {"query": '{a="b"}', "step": "x"}),
    ("GET", "/loki/api/v1/index/volume_range", {"query": '{a="b"}', "aggregateBy": "both"}),
    ("GET", "/loki/api/v1/format_query", {"query": "sum by ("}),
    ("POST", "/sluiceway/api/v1/compact", {"min_age": "old"}),
]


@pytest.mark.parametrize(("method", "path", "params"), BAD)
def test_bad_parameters_are_4xx_with_a_message(server: ServerProcess, method: str, path: str,
                                               params: dict[str, str]) -> None:
    r = httpx.request(method, f"{server.url}{path}", params=params, timeout=10)
    assert 400 <= r.status_code < 500, (path, params, r.status_code, r.text)
    assert r.text.strip()


def test_bad_tenant_on_reads(server: ServerProcess) -> None:
    r = httpx.get(f"{server.url}/loki/api/v1/labels", headers={"X-Scope-OrgID": "a/b"})
    assert r.status_code == 400 and "tenant" in r.text
