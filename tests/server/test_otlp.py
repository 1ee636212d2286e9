"""OTLP/HTTP logs (`POST /otlp/v1/logs`), shipped by the real OpenTelemetry Python SDK and
its OTLP/HTTP exporter, and by hand in the OTLP JSON encoding; read back through the Loki
query API."""

from __future__ import annotations

import gzip
import time

import httpx
import orjson
import zstandard

from tests.procs import ServerProcess

TRACE_ID = 0x5B8EFFF798038103D269B633813FC60C
SPAN_ID = 0xEEE19B7EC3C1B174


Row = tuple[dict[str, str], int, str, dict[str, str]]


def _query(srv: ServerProcess, query: str) -> list[Row]:
    """(index labels, ts, line, structured metadata) of each entry, oldest first; with
    `categorize-labels` the stream is the index labels alone."""
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range",
                  params={"query": query, "limit": "1000", "direction": "forward",
                          "since": "2h"},
                  headers={"X-Loki-Response-Encoding-Flags": "categorize-labels"})
    assert r.status_code == 200, r.text
    rows = [(s["stream"], int(v[0]), v[1], v[2].get("structuredMetadata", {}) if len(v) > 2
             else {}) for s in r.json()["data"]["result"] for v in s["values"]]
    return sorted(rows, key=lambda row: row[1])


def test_sdk_exporter_labels_line_time_and_metadata(server: ServerProcess) -> None:
    from opentelemetry import trace
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    resource = Resource.create({"service.name": "checkout", "service.namespace": "shop",
                                "deployment.environment": "prod", "k8s.pod.name": "co-1",
                                "host.name": "node-7"})
    provider = LoggerProvider(resource=resource)
    exporter = OTLPLogExporter(endpoint=f"{server.url}/otlp/v1/logs",
                               compression=Compression.Gzip)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("checkout.payments", "1.2.3")
    span = NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, is_remote=False,
                                        trace_flags=TraceFlags(TraceFlags.SAMPLED)))
    ts = time.time_ns() - 60 * 10**9
    logger.emit(timestamp=ts, context=trace.set_span_in_context(span),
                severity_number=SeverityNumber.ERROR, severity_text="ERROR",
                body="payment declined", attributes={"order.id": 42, "http": {"code": 402}})
    logger.emit(timestamp=ts + 1000, severity_number=SeverityNumber.INFO,
                body={"event": "retry", "attempt": 2, "ok": True, "ratio": 0.5})
    assert provider.force_flush()
    provider.shutdown()

    got = _query(server, '{service_name="checkout"}')
    assert [(row[1], row[2]) for row in got] == [
        (ts, "payment declined"),
        (ts + 1000, '{"attempt":2,"event":"retry","ok":true,"ratio":0.5}')]
    labels = got[0][0]
    assert {k: labels[k] for k in ("service_name", "service_namespace",
                                   "deployment_environment", "k8s_pod_name")} == \
        {"service_name": "checkout", "service_namespace": "shop",
         "deployment_environment": "prod", "k8s_pod_name": "co-1"}
    # Only the default index attributes are labels; host.name and the SDK's own are not.
    assert "host_name" not in labels and "telemetry_sdk_name" not in labels

    traced = _query(server, f'{{service_name="checkout"}} | trace_id="{TRACE_ID:032x}"')
    assert [row[2] for row in traced] == ["payment declined"]
    md = [row[3] for row in got]
    assert md[0]["trace_id"] == f"{TRACE_ID:032x}" and md[0]["span_id"] == f"{SPAN_ID:016x}"
    assert md[0]["flags"] == "1"
    assert (md[0]["severity_text"], md[0]["severity_number"]) == ("ERROR", "17")
    assert (md[0]["order_id"], md[0]["http_code"]) == ("42", "402")
    assert (md[0]["host_name"], md[0]["telemetry_sdk_language"]) == ("node-7", "python")
    assert (md[0]["scope_name"], md[0]["scope_version"]) == ("checkout.payments", "1.2.3")
    assert "observed_timestamp" in md[0]
    assert "trace_id" not in md[1] and md[1]["severity_number"] == "9"
    assert not {"service_name", "k8s_pod_name"} & md[0].keys()


def _json_body(ts: int) -> dict[str, object]:
    return {"resourceLogs": [{
        "resource": {"attributes": [
            {"key": "k8s.container.name", "value": {"stringValue": "worker"}},
            {"key": "k8s.namespace.name", "value": {"stringValue": "jobs"}}]},
        "scopeLogs": [{
            "scope": {"name": "etl"},
            "logRecords": [
                {"timeUnixNano": str(ts), "severityText": "WARN", "severityNumber": 13,
                 "traceId": f"{TRACE_ID:032x}", "spanId": f"{SPAN_ID:016x}",
                 "body": {"stringValue": "disk almost full"},
                 "attributes": [{"key": "disk", "value": {"stringValue": "/dev/sda"}},
                                {"key": "pct", "value": {"doubleValue": 93.5}}]},
                {"observedTimeUnixNano": str(ts + 5),
                 "body": {"arrayValue": {"values": [{"intValue": "1"},
                                                    {"stringValue": "<b>"}]}}},
            ]}]}]}


def test_json_body_zstd_and_service_name_discovery(server: ServerProcess) -> None:
    ts = time.time_ns() - 30 * 10**9
    body = zstandard.ZstdCompressor().compress(orjson.dumps(_json_body(ts)))
    r = httpx.post(f"{server.url}/otlp/v1/logs", content=body,
                   headers={"Content-Type": "application/json", "Content-Encoding": "zstd"})
    assert r.status_code == 204, r.text
    got = _query(server, '{k8s_namespace_name="jobs"}')
    # No service.name: Loki takes it from k8s.container.name.
    assert got[0][0] == {"service_name": "worker", "k8s_container_name": "worker",
                         "k8s_namespace_name": "jobs"}
    # The second record has only an observed time, which becomes its time.
    assert [(row[1], row[2]) for row in got] == [
        (ts, "disk almost full"), (ts + 5, '[1,"\\u003cb\\u003e"]')]
    md = [row[3] for row in got]
    assert md[0]["trace_id"] == f"{TRACE_ID:032x}" and md[0]["span_id"] == f"{SPAN_ID:016x}"
    assert (md[0]["disk"], md[0]["pct"], md[0]["severity_text"]) == ("/dev/sda", "93.5", "WARN")
    assert md[0]["scope_name"] == "etl" and "observed_timestamp" not in md[1]


def test_unknown_service_and_gzip_json(server: ServerProcess) -> None:
    ts = time.time_ns() - 10**9
    doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"timeUnixNano": ts, "body": {"stringValue": "anonymous"}}]}]}]}
    r = httpx.post(f"{server.url}/otlp/v1/logs", content=gzip.compress(orjson.dumps(doc)),
                   headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 204, r.text
    assert [(row[0], row[2]) for row in _query(server, '{service_name="unknown_service"}')] == \
        [({"service_name": "unknown_service"}, "anonymous")]


def test_bad_bodies_are_400_and_too_large_413(server: ServerProcess) -> None:
    url = f"{server.url}/otlp/v1/logs"
    cases = [
        (b"\xff\xff\xff not protobuf", "application/x-protobuf", None, "protobuf"),
        (b"{not json", "application/json", None, "JSON"),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "zz"}]}]}]}',
         "application/json", None, "trace"),
        (b"{}", "text/plain", None, "not supported"),
        (b"not gzip", "application/json", "gzip", "gzip"),
        (b"not zstd", "application/json", "zstd", "zstd"),
    ]
    for body, ctype, enc, needle in cases:
        headers = {"Content-Type": ctype, **({"Content-Encoding": enc} if enc else {})}
        r = httpx.post(url, content=body, headers=headers)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert needle.lower() in r.text.lower(), r.text
    bomb = zstandard.ZstdCompressor().compress(b" " * (200 << 20))
    r = httpx.post(url, content=bomb, headers={"Content-Type": "application/json",
                                               "Content-Encoding": "zstd"})
    assert r.status_code == 413, r.text


def test_sdk_batch_with_a_time_past_2262_keeps_its_good_records(server: ServerProcess) -> None:
    """The real exporter sends both records in one request. A 500 (as before) or a 400
    would make it drop the batch; the answer is 200 with partial_success, and the good
    record is stored."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = LoggerProvider(resource=Resource.create({"service.name": "far-future"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(
        OTLPLogExporter(endpoint=f"{server.url}/otlp/v1/logs"), schedule_delay_millis=60_000))
    logger = provider.get_logger("test")
    logger.emit(timestamp=2**64 - 1, body="past 2262")
    logger.emit(timestamp=time.time_ns(), body="kept")
    assert provider.force_flush()
    provider.shutdown()
    assert [row[2] for row in _query(server, '{service_name="far-future"}')] == ["kept"]
