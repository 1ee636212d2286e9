"""Ingest throughput of a real `sluiceway server` process with the default fsync policy.

Sends >= 1 GB (BENCH_BYTES) of realistic lines as Loki protobuf+snappy pushes from
several concurrent connections; timed from the first push until every line is queryable.
Also reports bytes on disk (chunks + index + WAL) against raw bytes, and after compaction
the chunks the live index names (the compactor's replaced inputs, which wait
`retention_delete_delay` before deletion, printed apart).
Prints the peak memory of the server's process tree (server, ingest workers, pattern
miner; RSS and PSS sampled from /proc) and the server's own accounting of what it holds.
Usage: python bench/ingest.py [--bytes 1GB] [--keep DIR] [--set storage.cache_size=64MB]
       python bench/ingest.py --code . --code ../main --runs 5   (interleaved, medians)
"""

from __future__ import annotations

import argparse
import http.client
import os
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._data import STREAMS, batches, mixed_batches  # noqa: E402
from bench._procmem import MemoryReport, MemorySampler, role  # noqa: E402
from sluiceway.model import StreamBatch, parse_size  # noqa: E402
from sluiceway.wire import encode_push_protobuf  # noqa: E402
from tests import procs  # noqa: E402
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


def _cpu_of(p: int) -> float:
    """utime + stime of process `p`, from /proc (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(x) for x in task.read_text().split()]
    return out


def cpu_seconds(pid: int) -> tuple[float, float]:
    """utime + stime of a process and of its live children (the ingest workers), from
    /proc."""
    return _cpu_of(pid), sum(map(_cpu_of, _children(pid)))


def cpu_by_role(pid: int) -> tuple[float, float, float]:
    """CPU-seconds of a server's process, of its ingest workers, and of its pattern miner
    (told apart by their command lines, as the memory report does)."""
    workers = miner = 0.0
    for child in _children(pid):
        if role(child, pid) == "pattern miner":
            miner += _cpu_of(child)
        else:
            workers += _cpu_of(child)
    return _cpu_of(pid), workers, miner


def pattern_lines_skipped(url: str) -> int:
    """Lines the pattern miner did not mine (`sluiceway_pattern_lines_skipped`, every
    reason), or -1 when the server does not count them."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    rows = [x for x in text.splitlines() if x.startswith("sluiceway_pattern_lines_skipped")
            and not x.startswith("sluiceway_pattern_lines_skipped_created")]
    return int(sum(float(x.rsplit(" ", 1)[1]) for x in rows)) if rows else -1


@dataclass
class Run:
    """What one run of the benchmark measured."""

    code: str
    t_acked: float
    t_all: float
    main_cpu: float
    workers_cpu: float  # the ingest workers
    miner_cpu: float  # the pattern miner (SCHED_IDLE: it runs on CPU nobody else wants)
    client_cpu: float
    usage: dict[str, int]
    mem: MemoryReport
    pattern_skipped: int = -1  # lines the miner had not mined (queue full) when all were queryable
    comp: dict[str, Any] | None = None
    usage_c: dict[str, int] | None = None
    mem_c: MemoryReport | None = None

    @property
    def cpu(self) -> float:
        """The ingest path: the server process and its ingest workers."""
        return self.main_cpu + self.workers_cpu

    @property
    def cpu_all(self) -> float:
        """Every process of the server's tree, the pattern miner too."""
        return self.cpu + self.miner_cpu


def config_text(args: argparse.Namespace) -> str:
    """The run's YAML: the benchmark's settings, then each `--set section.key=value`."""
    sections: dict[str, dict[str, str]] = {
        "storage": {"wal_sync": args.wal_sync}, "limits": {"max_query_length": "0s"}}
    if args.workers is not None:
        sections.setdefault("server", {})["ingest_workers"] = str(args.workers)
    for item in args.set:
        dotted, _, value = item.partition("=")
        section, _, key = dotted.partition(".")
        if not key or not value:
            raise SystemExit(f"--set takes section.key=value, got {item!r}")
        sections.setdefault(section, {})[key] = value
    return "".join(f"{name}:\n" + "".join(f"  {k}: {v}\n" for k, v in keys.items())
                   for name, keys in sections.items())


def run_once(args: argparse.Namespace, bodies: list[bytes], lines: int, code: Path,
             data: Path) -> Run:
    """Start a server from `code` on an empty `data`, push every body, wait until every
    line is queryable, flush (and compact unless --no-compact); stop it."""
    if data.exists():
        shutil.rmtree(data)
    data.parent.mkdir(parents=True, exist_ok=True)
    cfg = data.parent / "bench.yaml"
    cfg.write_text(config_text(args))
    procs.REPO = code  # the server runs `python -m sluiceway` from there
    srv = ServerProcess(data, config=cfg).start()
    try:
        assert srv.proc is not None
        main0, workers0, miner0 = cpu_by_role(srv.proc.pid)
        sampler = MemorySampler(srv.proc.pid).start()
        client0 = time.process_time()
        t0 = time.perf_counter()
        send_all(srv.url, bodies, args.conns)
        client_cpu = time.process_time() - client0
        t_acked = time.perf_counter() - t0
        n = count_lines(srv.url, ['{app=~".+"}'] if args.mixed else None)
        t_all = time.perf_counter() - t0
        main1, workers1, miner1 = cpu_by_role(srv.proc.pid)
        skipped = pattern_lines_skipped(srv.url)
        assert n == lines, f"queryable {n} != sent {lines}"
        httpx.post(f"{srv.url}/flush", timeout=600)
        mem = sampler.stop()
        mem.server_parts = memory_parts(srv.url)
        usage = httpx.get(f"{srv.url}/sluiceway/api/v1/storage").json()["data"]
        run = Run(str(code), t_acked, t_all, main1 - main0, workers1 - workers0,
                  miner1 - miner0, client_cpu, usage, mem, skipped)
        # The background compactor would do this 15 min later; run it now to measure it.
        if not args.no_compact:
            sampler = MemorySampler(srv.proc.pid).start()
            run.comp = httpx.post(f"{srv.url}/sluiceway/api/v1/compact",
                                  params={"min_age": "0s"}, timeout=3600).json()["data"]
            # A second pass, as the background loop's next one (the replaced files stay
            # until retention_delete_delay has passed: reported apart, not counted).
            httpx.post(f"{srv.url}/sluiceway/api/v1/compact", timeout=600)
            run.usage_c = httpx.get(f"{srv.url}/sluiceway/api/v1/storage").json()["data"]
            run.mem_c = sampler.stop()
    finally:
        srv.stop()
    return run


def memory_parts(url: str) -> dict[str, int]:
    """The server's own accounting of what it holds (peaks), when it has one."""
    try:
        r = httpx.get(f"{url}/sluiceway/api/v1/memory", timeout=30)
    except httpx.HTTPError:
        return {}
    if r.status_code != 200:
        return {}
    return {k: int(v["peak"]) for k, v in r.json()["data"]["parts"].items()}


def report(args: argparse.Namespace, run: Run, raw: int, lines: int) -> None:
    t_acked, t_all, cpu, usage = run.t_acked, run.t_all, run.cpu, run.usage
    print(f"\ningest (wal_sync={args.wal_sync}"
          + (": fsync before every 204, group commit)" if args.wal_sync == "always" else ")")
          + (f", server from {run.code}" if len(args.code) > 1 else ""))
    print(f"  all pushes acked in     {t_acked:7.2f} s  {raw / 1e6 / t_acked:7.1f} MB/s  "
          f"{lines / t_acked:10,.0f} lines/s")
    print(f"  all lines queryable in  {t_all:7.2f} s  {raw / 1e6 / t_all:7.1f} MB/s  "
          f"{lines / t_all:10,.0f} lines/s")
    print(f"  server CPU (server + ingest workers) {cpu:7.2f} s  {raw / 1e6 / cpu:7.1f} MB per "
          f"CPU-second  (load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"    server process {run.main_cpu:.2f} s, ingest workers {run.workers_cpu:.2f} s")
    mined = "" if run.pattern_skipped < 0 else \
        f", had mined {1 - run.pattern_skipped / lines:.0%} of the lines"
    print(f"  pattern miner CPU (SCHED_IDLE: spare CPU only) {run.miner_cpu:.2f} s{mined}; "
          f"all processes {run.cpu_all:.2f} s")
    print(f"  load generator CPU (this process, same machine) {run.client_cpu:6.2f} s")
    disk = usage["chunks"] + usage["index"] + usage["wal"]
    print(f"  on disk after flush: chunks {usage['chunks'] / 1e6:.1f} MB + index "
          f"{usage['index'] / 1e3:.1f} kB + WAL {usage['wal'] / 1e6:.1f} MB "
          f"= {raw / disk:.1f}x smaller than raw ({raw / (usage['chunks'] + usage['index']):.1f}x "
          "chunks+index)")
    print("\n".join(run.mem.lines()))
    comp, usage_c = run.comp, run.usage_c
    if comp is not None and usage_c is not None:
        # The chunks the live index names (the server's own count, `/storage`): the
        # compactor's inputs stay on disk for `retention_delete_delay` after it replaced
        # them, and are no part of what the data takes once compacted.
        live = usage_c.get("chunks_live")
        print(f"  after background compaction (zstd level 17, {comp['chunks_in']} chunks -> "
              f"{comp['chunks_out']}, {raw / 1e6 / comp['seconds']:.1f} MB/s of raw log):")
        if live is None:  # a server from before `/storage` told live chunks apart
            print(f"    every chunk file {usage_c['chunks'] / 1e6:.1f} MB + index "
                  f"{usage_c['index'] / 1e3:.1f} kB (this server does not say which chunks "
                  "the index serves: the compactor's inputs awaiting deletion are included)")
        else:
            print(f"    live chunks (named by the index) {live / 1e6:.1f} MB + index "
                  f"{usage_c['index'] / 1e3:.1f} kB = "
                  f"{raw / (live + usage_c['index']):.2f}x smaller than raw")
            print(f"    awaiting deletion (out of service, deleted retention_delete_delay "
                  f"later) {usage_c['chunks_awaiting_deletion'] / 1e6:.1f} MB; unnamed "
                  f"{usage_c['chunks_unnamed'] / 1e6:.1f} MB; every chunk file "
                  f"{usage_c['chunks'] / 1e6:.1f} MB")
    if run.mem_c is not None:
        print(f"  peak memory during compaction: RSS sum {run.mem_c.peak_rss / 1e6:.0f} MB, "
              f"PSS sum {run.mem_c.peak_pss / 1e6:.0f} MB")


def summary(runs: list[Run], raw: int) -> None:
    """Medians per checkout, over interleaved runs."""
    print(f"\nmedians of {len(runs)} interleaved runs (raw {raw / 1e6:.0f} MB):")
    for code in dict.fromkeys(r.code for r in runs):
        mine = [r for r in runs if r.code == code]

        def med(f: Callable[[Run], float], rs: list[Run] = mine) -> float:
            return statistics.median(f(r) for r in rs)

        print(f"  {code} ({len(mine)} runs): "
              f"{med(lambda r: raw / 1e6 / r.t_all):.1f} MB/s until queryable "
              f"(runs: {', '.join(f'{raw / 1e6 / r.t_all:.1f}' for r in mine)}), "
              f"{med(lambda r: r.cpu / (raw / 1e9)):.2f} CPU-s per GB, server + ingest workers "
              f"(runs: {', '.join(f'{r.cpu / (raw / 1e9):.2f}' for r in mine)}), "
              f"{med(lambda r: r.cpu_all / (raw / 1e9)):.2f} with the pattern miner "
              f"(runs: {', '.join(f'{r.cpu_all / (raw / 1e9):.2f}' for r in mine)}), "
              f"peak RSS sum {med(lambda r: r.mem.peak_rss) / 1e6:.0f} MB "
              f"(runs: {', '.join(f'{r.mem.peak_rss / 1e6:.0f}' for r in mine)}), "
              f"peak PSS sum {med(lambda r: r.mem.peak_pss) / 1e6:.0f} MB")


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
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a server config setting (repeatable), e.g. storage.cache_size=64MB")
    ap.add_argument("--code", type=Path, action="append", default=[], metavar="DIR",
                    help="run the server from this checkout (repeatable: the checkouts take "
                         "turns, run after run; default: this one)")
    ap.add_argument("--runs", type=int, default=1, help="runs per checkout (interleaved)")
    args = ap.parse_args()
    args.code = [c.resolve() for c in args.code] or [procs.REPO]
    total = parse_size(args.bytes)
    print(f"generating {total / 1e6:.0f} MB of lines ...", flush=True)
    t0 = time.perf_counter()
    bodies, raw, lines = prepare(total, args.batch_lines, args.mixed)
    wire = sum(map(len, bodies))
    print(f"  {lines:,} lines, {raw / 1e6:.0f} MB raw, {len(bodies)} pushes, "
          f"{wire / 1e6:.0f} MB on the wire (protobuf+snappy), prepared in "
          f"{time.perf_counter() - t0:.0f}s", flush=True)
    data = args.keep or Path(tempfile.mkdtemp(prefix="slw-bench-")) / "data"
    runs: list[Run] = []
    for i in range(args.runs):
        # Take turns, and swap who goes first every other round (ABBA): a machine that
        # gets busier or quieter during the session favours no checkout.
        order = args.code if i % 2 == 0 else args.code[::-1]
        for code in order:
            run = run_once(args, bodies, lines, code, data)
            report(args, run, raw, lines)
            runs.append(run)
            sys.stdout.flush()
    if len(runs) > 1:
        summary(runs, raw)
    if not args.keep:
        shutil.rmtree(data.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
