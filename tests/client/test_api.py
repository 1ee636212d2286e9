"""The logger surface: usage block of issue 4, records, levels, bind, stdlib, redaction."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx

from sluiceway import client
from tests.client.helpers import MemorySink, PushServer
from tests.procs import ServerProcess


def test_usage_block_as_written_against_the_real_server(server: ServerProcess) -> None:
    from sluiceway import client  # exactly the lines, URL aside

    client.configure(sinks=[client.LokiSink(server.url, labels={"app": "orders"})],
                     queue_size=10_000, when_full="drop")      # or "block" / "spill"
    log = client.get_logger("orders")
    log.info("Fetching order", order_id=42)
    s = client.stats()
    assert {"enqueued", "written", "dropped", "spilled", "queue_high_watermark"} <= set(s)
    assert client.flush(timeout=5) is True
    assert client.stats()["written"] == 1
    now = time.time_ns()
    r = httpx.get(f"{server.url}/loki/api/v1/query_range",
                  params={"query": '{app="orders"} | json', "start": now - 60 * 10**9,
                          "end": now + 10**9})
    result = r.json()["data"]["result"]
    assert len(result) == 1 and result[0]["stream"]["order_id"] == "42"
    assert result[0]["stream"]["level"] == "info"


def test_record_shape_bind_levels_and_exception() -> None:
    sink = MemorySink()
    client.configure(sinks=[sink], level="DEBUG", capture_stdlib=False)
    log = client.get_logger("orders", service="api").bind(user="ann")
    log.debug("d")
    log.info("i %s", "x", n=1)
    log.audit("a")
    log.security("s")
    log.unbind("user").warning("w")
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("failed", order_id=7)
    client.add_level("NOTICE", 22)
    log.notice("custom")  # type: ignore[operator]
    log.log("CRITICAL", "c")
    assert client.flush(5)
    recs = sink.records
    assert [r["level"] for r in recs] == ["DEBUG", "INFO", "AUDIT", "SECURITY", "WARNING",
                                          "ERROR", "NOTICE", "CRITICAL"]
    first = recs[0]
    assert isinstance(first["ts"], int) and abs(first["ts"] - time.time_ns()) < 10**10
    assert first["logger"] == "orders" and first["service"] == "api" and first["user"] == "ann"
    assert recs[1]["msg"] == "i x" and recs[1]["n"] == 1
    assert "user" not in recs[4]
    assert "ValueError: bad" in recs[5]["exc"] and recs[5]["order_id"] == 7
    assert "exc" not in recs[0]


def test_level_threshold_and_async_flavour() -> None:
    sink = MemorySink()
    client.configure(sinks=[sink], level="INFO", capture_stdlib=False)
    alog = client.get_async_logger("a")

    async def main() -> None:
        await alog.debug("hidden")
        await alog.info("shown", k=1)
        await alog.bind(x=2).error("err")

    asyncio.run(main())
    assert client.flush(5)
    assert [(r["msg"], r["level"]) for r in sink.records] == [("shown", "INFO"), ("err", "ERROR")]
    assert sink.records[1]["x"] == 2


def test_stdlib_logging_goes_through_the_same_pipeline() -> None:
    sink = MemorySink()
    client.configure(sinks=[sink], level="INFO")
    lib = logging.getLogger("thirdparty.db")
    lib.info("query took %d ms", 12, extra={"table": "orders"})
    lib.debug("below threshold")
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        lib.exception("oops")
    logging.getLogger("httpx").info("HTTP Request: POST ...")  # never loops back
    assert client.flush(5)
    assert [r["msg"] for r in sink.records] == ["query took 12 ms", "oops"]
    assert sink.records[0]["table"] == "orders" and sink.records[0]["logger"] == "thirdparty.db"
    assert "ZeroDivisionError" in sink.records[1]["exc"]


def test_redaction_of_sensitive_fields() -> None:
    sink = MemorySink()
    client.configure(sinks=[sink], capture_stdlib=False, redact=("password", "authorization"),
                     redact_patterns=(r"\b\d{16}\b",))
    log = client.get_logger("r")
    log.info("card 4111111111111111 used", password="hunter2",
             headers={"Authorization": "Bearer abc", "accept": "json"},
             dsn="postgres://app:s3cret@db/x")
    assert client.flush(5)
    r = sink.records[0]
    assert r["password"] == "***" and r["headers"] == {"Authorization": "***", "accept": "json"}
    assert r["dsn"] == "postgres://***:***@db/x" and r["msg"] == "card *** used"


def test_never_raises_into_the_caller() -> None:
    class Exploding:
        name = "exploding"

        def write_batch(self, records: list[dict[str, object]]) -> None:
            raise RuntimeError("sink bug")

    good = MemorySink()
    client.configure(sinks=[Exploding(), good], capture_stdlib=False, max_retries=0)
    log = client.get_logger("x")
    log.info("%d", "not a number")  # formatting error: counted, not raised
    log.log("NO_SUCH_LEVEL", "m")
    log.info("fine", obj=object())
    assert client.flush(5)
    s = client.stats()
    assert s["internal_errors"] == 2
    assert [r["msg"] for r in good.records] == ["fine"]
    assert s["sinks"]["exploding"]["errors"] >= 1
    assert s["sinks"]["exploding"]["lost_by_reason"] == {"sink_error": 1}


def test_rotating_file_sink(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "app.log"
    client.configure(sinks=[client.RotatingFileSink(path, max_bytes=2000, backups=2)],
                     capture_stdlib=False)
    log = client.get_logger("f")
    for i in range(100):
        log.info("line", i=i)
        if i % 10 == 0:
            client.flush(5)
    assert client.flush(5)
    client.shutdown(2)
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["app.log", "app.log.1", "app.log.2"]
    assert all(p.stat().st_size <= 2000 for p in path.parent.iterdir())
    last = path.read_text().splitlines()[-1]
    assert '"i":99' in last


def test_loki_sink_honours_retry_after_and_counts_rejects() -> None:
    srv = PushServer(respond=lambda i: (429, {"Retry-After": "1"}) if i == 0 else (204, {}))
    try:
        client.configure(sinks=[client.LokiSink(srv.url, batch_wait=0)], capture_stdlib=False)
        client.get_logger("l").info("hello")
        assert client.flush(10)
        assert srv.lines and '"msg":"hello"' in srv.lines[0]
        assert len(srv.requests) == 2 and srv.requests[1] - srv.requests[0] >= 0.95
    finally:
        srv.close()
    bad = PushServer(respond=lambda i: (400, {}))
    try:
        client.configure(sinks=[client.LokiSink(bad.url, batch_wait=0)], capture_stdlib=False)
        for i in range(3):
            client.get_logger("l").info("rejected", i=i)
        assert client.flush(5)
        s = client.stats()
        assert s["written"] == 0 and s["dropped_by_reason"] == {"http_400": 3}
    finally:
        bad.close()


def test_heartbeat_reaches_the_server_pipeline_page(server: ServerProcess) -> None:
    # report_url defaults to "auto": the LokiSink's server, found to be a Sluiceway one
    client.configure(sinks=[client.LokiSink(server.url)], capture_stdlib=False,
                     report_interval=0.2, name="orders-api")
    client.get_logger("h").info("x")
    deadline = time.monotonic() + 10
    rows: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        rows = httpx.get(f"{server.url}/sluiceway/api/v1/pipeline").json()["data"]
        if rows and rows[0]["lines"]["shipped"] == 1:  # type: ignore[index]
            break
        time.sleep(0.1)
    assert rows and rows[0]["kind"] == "client" and rows[0]["name"] == "orders-api"
    assert rows[0]["lines"]["shipped"] == 1  # type: ignore[index]
    assert rows[0]["queue"]["when_full"] == "drop"  # type: ignore[index]


def test_prometheus_metrics_on_request() -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    client.configure(sinks=[MemorySink()], capture_stdlib=False)
    reg = CollectorRegistry()
    client.register_metrics(reg)
    text = generate_latest(reg).decode()
    # Before anything is logged every counter is there, at 0, by level and protected.
    for line in ('sluiceway_client_lines_lost_total{level="INFO",protected="false",'
                 'reason="full",sink="memory"} 0.0',
                 'sluiceway_client_lines_dropped_total{level="ERROR",protected="true",'
                 'reason="full",sink="memory"} 0.0',
                 'sluiceway_client_lines_shipped_total{level="AUDIT",protected="true",'
                 'sink="memory"} 0.0',
                 'sluiceway_client_last_successful_push_timestamp_seconds{sink="memory"} 0.0'):
        assert line in text, line
    # every reason a record can be lost under (docs/readme/losses.md, the client's rows;
    # the answers' reasons of sluiceway.wire; sluiceway.ship's own), before any loss
    for reason in ("full", "oldest", "evicted", "timeout", "spill_full", "spill_backlog",
                   "closed", "encode", "decode", "too_large", "too_old", "too_far_in_future",
                   "line_too_long", "too_far_behind", "structured_metadata_too_large",
                   "structured_metadata_too_many", "rate_limited", "server_error",
                   "retries_exhausted", "sink_error", "shutdown_timeout"):
        line = (f'sluiceway_client_lines_lost_total{{level="WARNING",protected="false",'
                f'reason="{reason}",sink="memory"}} 0.0')
        assert line in text, line
    empty = [f.name for f in text_string_to_metric_families(text)
             if f.type == "counter" and not f.samples]
    assert not empty, empty
    client.get_logger("m").error("e")
    client.flush(5)
    text = generate_latest(reg).decode()
    assert 'sluiceway_client_lines_shipped_total{level="ERROR",protected="true",' \
           'sink="memory"} 1.0' in text
    assert 'sluiceway_client_queue_high_watermark{sink="memory"} 1.0' in text
    assert 'sluiceway_client_push_duration_seconds_count{sink="memory",status_code="ok"} 1.0' \
        in text
    assert 'sluiceway_client_last_successful_push_timestamp_seconds{sink="memory"} 0.0' \
        not in text


def test_heartbeats_stop_quietly_against_a_plain_loki() -> None:
    srv = PushServer()  # answers 404 off the push path, like Loki
    try:
        client.configure(sinks=[client.LokiSink(srv.url, batch_wait=0)], capture_stdlib=False,
                         report_interval=0.05)
        client.get_logger("h").info("x")
        assert client.flush(5)
        time.sleep(0.5)
        assert srv.other_paths == ["/sluiceway/api/v1/heartbeat"]  # one try, then off
        assert len(srv.lines) == 1
    finally:
        srv.close()


def test_stdout_sink_json_and_pretty() -> None:
    import io
    import json

    as_json, pretty = io.StringIO(), io.StringIO()
    client.configure(sinks=[client.StdoutSink("json", stream=as_json),
                            client.StdoutSink("pretty", stream=pretty)], capture_stdlib=False)
    client.get_logger("s").warning("disk low", free_mb=12)
    assert client.flush(5)
    rec = json.loads(as_json.getvalue())
    assert rec["msg"] == "disk low" and rec["free_mb"] == 12 and rec["level"] == "WARNING"
    line = pretty.getvalue()
    assert "WARNING" in line and "s: disk low" in line and "free_mb=12" in line


def test_fields_cannot_overwrite_the_record_keys() -> None:
    sink = MemorySink()
    client.configure(sinks=[sink], capture_stdlib=False)
    client.get_logger("k").info("real", level="fake", ts=1, logger="other", extra=1)
    assert client.flush(5)
    r = sink.records[0]
    assert (r["level"], r["logger"], r["msg"], r["extra"]) == ("INFO", "k", "real", 1)
    assert r["ts"] > 1
