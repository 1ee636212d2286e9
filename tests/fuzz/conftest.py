"""One in-process server for the whole fuzz suite, loaded with a small data set so that
queries reach the store, the pipeline stages and the metric engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz._support import NOW, check
from tests.inproc import InProcessServer


def _dataset() -> list[dict[str, object]]:
    """Three streams over the last hour: logfmt, JSON and plain lines, some metadata."""
    streams: list[dict[str, object]] = []
    for app, fmt in (("api", "logfmt"), ("web", "json"), ("db", "plain")):
        values: list[list[object]] = []
        for i in range(60):
            ts = str(NOW - (60 - i) * 60 * 10**9)
            if fmt == "logfmt":
                line = f'level={"error" if i % 7 == 0 else "info"} status={200 + i % 5 * 100} ' \
                       f'took={i * 3}ms size={i}KB msg="req {i}"'
            elif fmt == "json":
                line = f'{{"level":"warn","n":{i},"user":{{"id":{i % 4},"name":"u{i}"}},' \
                       f'"tags":["a","b"],"ip":"10.0.{i % 3}.{i}"}}'
            else:
                line = f"plain line {i} \u00e9\u2603 \x1b[31mred\x1b[0m"
            values.append([ts, line, {"trace_id": f"{i:032x}"}] if i % 5 == 0 else [ts, line])
        streams.append({"stream": {"app": app, "env": "prod", "fmt": fmt}, "values": values})
    return streams


@pytest.fixture(scope="session")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    srv = InProcessServer(tmp_path_factory.mktemp("fuzz") / "data", raise_exceptions=True,
                          **{"limits.max_query_series": 50})
    r = srv.post("/loki/api/v1/push", json={"streams": _dataset()})
    check(r)
    assert r.status_code == 204, r.text
    yield srv
    srv.close()
