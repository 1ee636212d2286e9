"""Elasticsearch `_bulk` ingest throughput of a real `sluiceway server` process.

Sends BENCH_BYTES (default 200 MB) of the benchmark's realistic lines as Elasticsearch
documents (`@timestamp`, `message`, `service`, `env`) in bulk requests of 5,000 documents
over several connections, as Filebeat or Logstash would, with the default fsync policy;
timed from the first request until every document is queryable.
Usage: python bench/es_bulk.py [--bytes 200MB] [--conns 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._data import batches  # noqa: E402
from bench.ingest import count_lines, cpu_seconds, send_all  # noqa: E402
from sluiceway.model import parse_size  # noqa: E402
from tests.procs import ServerProcess  # noqa: E402


def prepare(total: int, per_request: int) -> tuple[list[bytes], int, int]:
    """Bulk bodies, and the raw bytes and number of the `message` texts they carry."""
    bodies: list[bytes] = []
    parts: list[bytes] = []
    raw = docs = 0
    for labels, ts, lines in batches(total, per_request):
        action = orjson.dumps({"index": {"_index": f"{labels['job']}-logs"}})
        for t, line in zip(ts, lines, strict=True):
            stamp = datetime.fromtimestamp(t / 1e9, UTC).isoformat()
            parts += [action, orjson.dumps({"@timestamp": stamp, "message": line,
                                            "env": labels["env"]})]
            raw += len(line.encode())
        docs += len(lines)
        bodies.append(b"\n".join(parts) + b"\n")
        parts = []
    return bodies, raw, docs


def bulk_ok(status: int, body: bytes) -> bool:
    return status == 200 and orjson.loads(body)["errors"] is False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bytes", default=os.environ.get("BENCH_BYTES", "200MB"))
    ap.add_argument("--docs-per-request", type=int, default=5000)
    ap.add_argument("--conns", type=int, default=8)
    args = ap.parse_args()
    total = parse_size(args.bytes)
    print(f"generating {total / 1e6:.0f} MB of messages as documents ...", flush=True)
    bodies, raw, docs = prepare(total, args.docs_per_request)
    wire = sum(map(len, bodies))
    print(f"  {docs:,} documents, {raw / 1e6:.0f} MB of message text, {len(bodies)} bulk "
          f"requests, {wire / 1e6:.0f} MB of NDJSON", flush=True)
    with tempfile.TemporaryDirectory(prefix="slw-es-bench-") as tmp:
        srv = ServerProcess(Path(tmp) / "data").start()
        try:
            assert srv.proc is not None
            cpu0 = sum(cpu_seconds(srv.proc.pid))
            t0 = time.perf_counter()
            send_all(srv.url, bodies, args.conns, path="/_bulk",
                     content_type="application/x-ndjson", ok=bulk_ok)
            n = count_lines(srv.url, ['{index=~".+"}'])
            took = time.perf_counter() - t0
            cpu = sum(cpu_seconds(srv.proc.pid)) - cpu0
        finally:
            srv.stop()
    assert n == docs, f"queryable {n} != sent {docs}"
    print(f"\n_bulk ingest (wal_sync=always), {args.conns} connections")
    print(f"  all documents queryable in {took:6.2f} s  {docs / took:10,.0f} docs/s  "
          f"{wire / 1e6 / took:6.1f} MB/s of NDJSON  {raw / 1e6 / took:6.1f} MB/s of messages")
    print(f"  server CPU {cpu:.2f} s ({wire / 1e6 / cpu:.1f} MB of NDJSON per CPU-second)")


if __name__ == "__main__":
    main()
