"""Real Loki clients written by others, and hand-built protobuf, against the real server."""

from __future__ import annotations

import logging
import time

import cramjam
import httpx
from google.protobuf.timestamp_pb2 import Timestamp

from sluiceway.wire import _push_pb2 as pb
from tests.procs import ServerProcess


def _lines(srv: ServerProcess, query: str) -> list[tuple[dict[str, str], str]]:
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", params={"query": query, "limit": "100"})
    assert r.status_code == 200, r.text
    return [(s["stream"], v[1]) for s in r.json()["data"]["result"] for v in s["values"]]


def test_python_logging_loki_handler(server: ServerProcess) -> None:
    import logging_loki

    handler = logging_loki.LokiHandler(url=f"{server.url}/loki/api/v1/push",
                                       tags={"application": "shop"}, version="1")
    log = logging.getLogger("plk-test")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        log.warning("stock low for %s", "sku-42", extra={"tags": {"warehouse": "east"}})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("order failed")
    finally:
        log.removeHandler(handler)
    got = _lines(server, '{application="shop"}')
    assert {line for _, line in got} >= {"stock low for sku-42"}
    exc_line = next(line for _, line in got if line.startswith("order failed"))
    assert "ValueError: boom" in exc_line and "\n" in exc_line
    labels = next(lbl for lbl, line in got if line == "stock low for sku-42")
    assert labels["severity"] == "warning" and labels["warehouse"] == "east"
    assert labels["logger"] == "plk-test"


def test_hand_built_protobuf_with_structured_metadata(server: ServerProcess) -> None:
    now = time.time_ns()
    entries = []
    for i in range(3):
        ts = Timestamp(seconds=(now - i) // 10**9, nanos=(now - i) % 10**9)
        md = [pb.LabelPairAdapter(name="trace_id", value=f"t{i}")] if i == 1 else []
        entries.append(pb.EntryAdapter(timestamp=ts, line=f"proto line {i}",
                                       structuredMetadata=md))
    req = pb.PushRequest(streams=[pb.StreamAdapter(labels='{job="proto", env="dev"}',
                                                   entries=entries)])
    body = bytes(cramjam.snappy.compress_raw(req.SerializeToString()))
    r = httpx.post(f"{server.url}/loki/api/v1/push", content=body,
                   headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 204, r.text
    got = _lines(server, '{job="proto"}')
    assert sorted(line for _, line in got) == ["proto line 0", "proto line 1", "proto line 2"]
    with_md = [lbl for lbl, line in got if line == "proto line 1"][0]
    # Structured metadata joins the labels, with the level Loki's discover_log_levels adds.
    assert with_md == {"job": "proto", "env": "dev", "trace_id": "t1", "detected_level": "unknown"}
    r = httpx.get(f"{server.url}/loki/api/v1/query_range",
                  params={"query": '{job="proto"} | trace_id="t1"'})
    assert [v[1] for s in r.json()["data"]["result"] for v in s["values"]] == ["proto line 1"]
