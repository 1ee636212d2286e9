"""Ingest throughput of a real `sluiceway server` process with the default fsync policy.

Sends >= 1 GB (BENCH_BYTES) of realistic lines as Loki protobuf+snappy pushes from
several concurrent connections; timed from the first push until every line is queryable.
Also reports bytes on disk (chunks + index + WAL) against raw bytes.
Usage: python bench/ingest.py [--bytes 1GB] [--keep DIR]
"""

from __future__ import annotations

import argparse
import http.client
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._data import STREAMS, batches, mixed_batches  # noqa: E402
from sluiceway.model import StreamBatch, parse_size  # noqa: E402
from sluiceway.wire import encode_push_protobuf  # noqa: E402
from tests.procs import ServerProcess  # noqa: E402


def prepare(total: int, per_batch: int, mixed: bool = False) -> tuple[list[bytes], int, int]:
    bodies: list[bytes] = []
    raw = lines = 0
    group: list[StreamBatch] = []
    for labels, ts, ls in (mixed_batches if mixed else batches)(total, per_batch):
        group.append(StreamBatch(dict(labels), ts, ls))
        raw += sum(len(x.encode()) for x in ls)
        lines += len(ls)
        if len(group) == 2:
            bodies.append(encode_push_protobuf(group))
            group = []
    if group:
        bodies.append(encode_push_protobuf(group))
    return bodies, raw, lines


def _loki_ok(status: int, _body: bytes) -> bool:
    return status == 204


def send_all(url: str, bodies: list[bytes], conns: int, path: str = "/loki/api/v1/push",
             content_type: str = "application/x-protobuf",
             ok: Callable[[int, bytes], bool] = _loki_ok) -> None:
    """Post every body to `path` over `conns` keep-alive connections. The stdlib client
    costs less CPU than httpx, and the load generator shares the server's two cores."""
    q: queue.Queue[bytes] = queue.Queue()
    for b in bodies:
        q.put(b)
    errors: list[str] = []
    host, port = url.removeprefix("http://").split(":")

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        headers = {"Content-Type": content_type}
        try:
            while True:
                try:
                    b = q.get_nowait()
                except queue.Empty:
                    return
                conn.request("POST", path, body=b, headers=headers)
                r = conn.getresponse()
                text = r.read()
                if not ok(r.status, text):
                    errors.append(f"{r.status} {text[:200]!r}")
        finally:
            conn.close()

    ts = [threading.Thread(target=worker) for _ in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit(f"push failed: {errors[:3]}")


def count_lines(url: str, selectors: list[str] | None = None) -> int:
    """Entries the query path can see now (index stats read the same series and chunks);
    by default those of the benchmark's streams."""
    total = 0
    if selectors is None:
        selectors = ["{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
                     for labels in STREAMS]
    for sel in selectors:
        r = httpx.get(f"{url}/loki/api/v1/index/stats", timeout=600, params={
            "query": sel, "start": str(time.time_ns() - 30 * 86400 * 10**9),
            "end": str(time.time_ns() + 10**12)})
        r.raise_for_status()
        total += int(r.json()["entries"])
    return total


def cpu_seconds(pid: int) -> tuple[float, float]:
    """utime + stime of a process and of its live children (the ingest workers), from
    /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children += [int(x) for x in task.read_text().split()]

    def of(p: int) -> float:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick

    return of(pid), sum(map(of, children))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bytes", default=os.environ.get("BENCH_BYTES", "1GB"))
    ap.add_argument("--batch-lines", type=int, default=2500)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--keep", type=Path, help="keep the data dir here (for bench/query.py)")
    ap.add_argument("--workers", type=int, help="server.ingest_workers (default: per cores)")
    ap.add_argument("--no-compact", action="store_true",
                    help="skip the compaction step (minutes at 1 GB) when only ingest matters")
    ap.add_argument("--wal-sync", choices=["always", "interval"], default="always",
                    help="storage.wal_sync (the default, always, is what the figures use)")
    ap.add_argument("--mixed", action="store_true",
                    help="the query benchmark's data set: 20 `app` streams of JSON access logs,"
                         " logfmt and nginx lines over 2.1 h (bench/query.py reads it)")
    args = ap.parse_args()
    total = parse_size(args.bytes)
    print(f"generating {total / 1e6:.0f} MB of lines ...", flush=True)
    t0 = time.perf_counter()
    bodies, raw, lines = prepare(total, args.batch_lines, args.mixed)
    wire = sum(map(len, bodies))
    print(f"  {lines:,} lines, {raw / 1e6:.0f} MB raw, {len(bodies)} pushes, "
          f"{wire / 1e6:.0f} MB on the wire (protobuf+snappy), prepared in "
          f"{time.perf_counter() - t0:.0f}s", flush=True)
    data = args.keep or Path(tempfile.mkdtemp(prefix="slw-bench-")) / "data"
    if data.exists():
        shutil.rmtree(data)
    data.parent.mkdir(parents=True, exist_ok=True)
    cfg = data.parent / "bench.yaml"
    workers = f"server:\n  ingest_workers: {args.workers}\n" if args.workers is not None else ""
    cfg.write_text(workers + f"storage:\n  wal_sync: {args.wal_sync}\n"
                   "limits:\n  max_query_length: 0s\n")
    srv = ServerProcess(data, config=cfg).start()
    try:
        assert srv.proc is not None
        main0, workers0 = cpu_seconds(srv.proc.pid)
        client0 = time.process_time()
        t0 = time.perf_counter()
        send_all(srv.url, bodies, args.conns)
        client_cpu = time.process_time() - client0
        t_acked = time.perf_counter() - t0
        n = count_lines(srv.url, ['{app=~".+"}'] if args.mixed else None)
        t_all = time.perf_counter() - t0
        main1, workers1 = cpu_seconds(srv.proc.pid)
        main_cpu, workers_cpu = main1 - main0, workers1 - workers0
        cpu = main_cpu + workers_cpu
        assert n == lines, f"queryable {n} != sent {lines}"
        httpx.post(f"{srv.url}/flush", timeout=600)
        usage = httpx.get(f"{srv.url}/sluiceway/api/v1/storage").json()["data"]
        # The background compactor would do this 15 min later; run it now to measure it.
        comp = usage_c = None
        if not args.no_compact:
            comp = httpx.post(f"{srv.url}/sluiceway/api/v1/compact", params={"min_age": "0s"},
                              timeout=3600).json()["data"]
            httpx.post(f"{srv.url}/sluiceway/api/v1/compact", timeout=600)  # deletes old files
            usage_c = httpx.get(f"{srv.url}/sluiceway/api/v1/storage").json()["data"]
    finally:
        srv.stop()
    disk = usage["chunks"] + usage["index"] + usage["wal"]
    print(f"\ningest (wal_sync={args.wal_sync}"
          + (": fsync before every 204, group commit)" if args.wal_sync == "always" else ")"))
    print(f"  all pushes acked in     {t_acked:7.2f} s  {raw / 1e6 / t_acked:7.1f} MB/s  "
          f"{lines / t_acked:10,.0f} lines/s")
    print(f"  all lines queryable in  {t_all:7.2f} s  {raw / 1e6 / t_all:7.1f} MB/s  "
          f"{lines / t_all:10,.0f} lines/s")
    print(f"  server CPU (all processes) {cpu:7.2f} s  {raw / 1e6 / cpu:7.1f} MB per CPU-second"
          f"  (load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"    server process {main_cpu:.2f} s, ingest workers {workers_cpu:.2f} s")
    print(f"  load generator CPU (this process, same machine) {client_cpu:6.2f} s")
    print(f"  on disk after flush: chunks {usage['chunks'] / 1e6:.1f} MB + index "
          f"{usage['index'] / 1e3:.1f} kB + WAL {usage['wal'] / 1e6:.1f} MB "
          f"= {raw / disk:.1f}x smaller than raw ({raw / (usage['chunks'] + usage['index']):.1f}x "
          "chunks+index)")
    if comp is not None and usage_c is not None:
        kept = usage_c["chunks"] + usage_c["index"]
        print(f"  after background compaction (zstd level 17, {comp['chunks_in']} chunks -> "
              f"{comp['chunks_out']}, {raw / 1e6 / comp['seconds']:.1f} MB/s of raw log): "
              f"chunks {usage_c['chunks'] / 1e6:.1f} MB + index {usage_c['index'] / 1e3:.1f} kB"
              f" = {raw / kept:.1f}x smaller than raw")
    if not args.keep:
        shutil.rmtree(data.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
