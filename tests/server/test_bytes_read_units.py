"""`max_query_bytes_read` is Loki's `flagext.ByteSize` (datasize: every unit a power of
1024, `1KB` = 1024 bytes, as the other size limits), so a Loki config means here what
it means in Loki."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from sluiceway.model import format_humanize_ibytes
from tests.inproc import InProcessServer


def test_max_query_bytes_read_reads_units_as_loki(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path / "data", **{"limits.max_query_bytes_read": "1KB"})
    try:
        assert srv.ctx.limits_for("fake").max_query_bytes_read == 1024
        now = time.time_ns() - 10**9
        lines = [f"{i:03d} " + "x" * 97 for i in range(10)]  # 1010 bytes: over 1000
        body = orjson.dumps({"streams": [{"stream": {"app": "b"}, "values": [
            [str(now + i), x] for i, x in enumerate(lines)]}]})
        assert srv.post("/loki/api/v1/push", content=body,
                        headers={"Content-Type": "application/json"}).status_code == 204
        q = {"query": '{app="b"}', "start": str(now - 10**9), "end": str(now + 10**9)}
        r = srv.get("/loki/api/v1/query_range", params=q)
        assert r.status_code == 200, r.text  # 1010 bytes are under 1KB = 1024
        body = orjson.dumps({"streams": [{"stream": {"app": "b"}, "values": [
            [str(now + 100), "y" * 20]]}]})
        assert srv.post("/loki/api/v1/push", content=body,
                        headers={"Content-Type": "application/json"}).status_code == 204
        r = srv.get("/loki/api/v1/query_range", params=q)
        assert r.status_code == 400, r.text  # 1030 bytes are not
        assert "(query: 1.0 KiB, limit: 1.0 KiB)" in r.text  # Loki's humanize.IBytes
    finally:
        srv.close()


@pytest.mark.parametrize("n, text", [
    (0, "0 B"), (9, "9 B"), (999, "999 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (102400, "100 KiB"), (82854982, "79 MiB"), (1 << 30, "1.0 GiB")])
def test_sizes_in_the_answer_are_gos_humanize_ibytes(n: int, text: str) -> None:
    assert format_humanize_ibytes(n) == text
