"""OpenTelemetry trace context on records (the real SDK): inside an active span a record
gets `trace_id` and `span_id` fields; outside it none; with `trace_metadata=True` the
Loki sink sends them as structured metadata instead (off by default)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from opentelemetry.sdk.trace import TracerProvider

from sluiceway import client
from tests.inproc import inproc_server

provider = TracerProvider()
tracer = provider.get_tracer("sluiceway-tests")


def lines(srv: Any, query: str) -> list[tuple[str, dict[str, str]]]:
    now = time.time_ns()
    r = srv.http.get("/loki/api/v1/query_range", params={
        "query": query, "start": str(now - 600 * 10**9), "end": str(now + 10**9),
        "limit": "100"}, headers={"X-Loki-Response-Encoding-Flags": "categorize-labels"})
    assert r.status_code == 200, r.text
    out = []
    for s in r.json()["data"]["result"]:
        for v in s["values"]:
            md = v[2].get("structuredMetadata", {}) if len(v) > 2 else {}
            out.append((v[1], md))
    return out


def test_trace_ids_on_records_logged_in_a_span(tmp_path: Path) -> None:
    with inproc_server(tmp_path / "data") as srv:
        client.configure([client.LokiSink(srv.url, labels={"app": "otel"}, batch_wait=0.05,
                                          level_label=False)],
                         when_full="block", report_url=None, capture_stdlib=False,
                         handle_signals=False)
        log = client.get_logger("t")
        with tracer.start_as_current_span("checkout") as span:
            log.info("inside")
            ctx = span.get_span_context()
        log.info("outside")
        assert client.flush(10)
        got = {orjson.loads(line)["msg"]: orjson.loads(line) for line, _ in
               lines(srv, '{app="otel"}')}
        assert got["inside"]["trace_id"] == format(ctx.trace_id, "032x")
        assert got["inside"]["span_id"] == format(ctx.span_id, "016x")
        assert "trace_id" not in got["outside"] and "span_id" not in got["outside"]


def test_trace_ids_as_structured_metadata_is_a_switch(tmp_path: Path) -> None:
    with inproc_server(tmp_path / "data") as srv:
        client.configure([client.LokiSink(srv.url, labels={"app": "otel-md"}, batch_wait=0.05,
                                          level_label=False, trace_metadata=True)],
                         when_full="block", report_url=None, capture_stdlib=False,
                         handle_signals=False)
        log = client.get_logger("t")
        with tracer.start_as_current_span("pay") as span:
            log.info("paid")
            tid = format(span.get_span_context().trace_id, "032x")
        assert client.flush(10)
        [(line, md)] = lines(srv, f'{{app="otel-md"}} | trace_id="{tid}"')
        assert "trace_id" not in orjson.loads(line)
        assert md["trace_id"] == tid and len(md["span_id"]) == 16
