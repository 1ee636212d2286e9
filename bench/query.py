"""Query speed of a real `sluiceway server` over the mixed data set of bench/ingest.py.

  python bench/ingest.py --mixed --bytes 1GB --keep /work/benchdata/data
  python bench/query.py --data /work/benchdata/data [--rounds 3] [--profile]
  python bench/query.py --data /work/benchdata/data-10g --size 10GB   # opt-in, writes it first

Runs every query shape of issue 12 (JSON parse + group by a parsed field without a
literal to prefilter, the early `pipeline error`, a rare needle as a substring and as
whole words the compacted blocks' token filters know, a parsed field's value, counting
without a parser, logfmt, regexp, unwrapped values from logfmt and JSON) against one
server process: a cold round (first run in a fresh process; the OS page cache is warm)
and warm rounds interleaved (query A, B, C, A, B, C, ...), keeping the best warm time.
For each shape it prints wall time, MB/s of raw log covered (index stats of the
selector), the server's CPU-seconds (user + sys from /proc, all threads), bytes it read
from disk (/proc/PID/io), blocks read, skipped by their filters and counted from their
footers (the answer's stats), and at the end the server's peak RSS. Requests go over one
kept-alive HTTP connection, as a dashboard's do (a new `httpx` client per request costs
the client 10-100 ms of its own, mostly TLS set-up, which is not the server's time). The
server does not compact while it runs. Then a fresh server with a 256 MB chunk cache
runs the first shape once: its peak RSS before and after (`--size` runs print the same,
to compare: memory is bounded by the blocks in flight and the cache, not by the data
size). Block filters and footer counts exist only in compacted chunks: compact the data
first (bench/ingest.py does, unless --no-compact). With `--profile` the slowest shape is
sampled with py-spy while it runs again, and its hottest frames are printed. """

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._data import RARE_NEEDLE, mixed_batches  # noqa: E402
from tests.procs import ServerProcess  # noqa: E402

# bench/ingest.py --mixed writes 2.1 h of timestamps ending about when it ran.
NOW = time.time_ns()
WIDE = {"start": str(NOW - 8 * 3600 * 10**9), "end": str(NOW + 10**12)}


@dataclass
class Shape:
    name: str
    query: str
    selector: str  # for the bytes covered
    params: dict[str, str]
    expect: int = 200


SHAPES = [
    Shape("json | __error__=\"\" sum by (level) count_over_time",
          'sum by (level) (count_over_time({app=~".+"} | json | __error__="" [5m]))',
          '{app=~".+"}', {"step": "60"}),
    Shape("json | __error__=\"\" topk(5, sum by (path) rate)",
          'topk(5, sum by (path) (rate({app=~".+"} | json | __error__="" [5m])))',
          '{app=~".+"}', {"step": "60"}),
    Shape("json (no error filter) -> 400 pipeline error",
          'topk(5, sum by (path) (rate({app=~".+"} | json [5m])))',
          '{app=~".+"}', {"step": "60"}, expect=400),
    Shape("|= rare whole-word needle (logs)", f'{{app=~".+"}} |= "{RARE_NEEDLE}"',
          '{app=~".+"}', {"limit": "1000"}),
    # A substring may sit inside a longer word: `|=` of one word uses no token filter.
    # As a whole word (`\b`), it does: 1 line in 2,000,000, and `4242` (the bytes of
    # about 1 line in 100,000).
    Shape("|~ \\b rare needle \\b (logs, block filters)",
          f'{{app=~".+"}} |~ "\\\\b{RARE_NEEDLE}\\\\b"', '{app=~".+"}', {"limit": "1000"}),
    Shape("|~ \\b4242\\b, ~1 line in 100,000 (logs, block filters)",
          '{app=~".+"} |~ "\\\\b4242\\\\b"', '{app=~".+"}', {"limit": "1000"}),
    Shape("json | trace_id=<one line's> (logs, block filters)",
          '{app=~".+"} | json | trace_id="{trace}"', '{app=~".+"}', {"limit": "1000"}),
    Shape("count_over_time({app=\"api\"}[1m]), no parser",
          'count_over_time({app="api"}[1m])', '{app="api"}', {"step": "60"}),
    Shape("logfmt | sum by (level) count_over_time",
          'sum by (level) (count_over_time({app=~"worker-.+"} | logfmt | __error__="" [5m]))',
          '{app=~"worker-.+"}', {"step": "60"}),
    Shape("regexp two captures | sum by (method)",
          'sum by (method) (count_over_time({app=~"nginx-.+"} '
          '| regexp "\\"(?P<method>[A-Z]+) (?P<path>[^ ?]+)" [5m]))',
          '{app=~"nginx-.+"}', {"step": "60"}),
    # Unwrapped values: a parsed number per line, windows over arrays.
    Shape("logfmt | unwrap duration(duration) quantile_over_time by (level)",
          'quantile_over_time(0.99, {app=~"worker-.+"} | logfmt | unwrap duration(duration) '
          '| __error__="" [5m]) by (level)', '{app=~"worker-.+"}', {"step": "60"}),
    Shape("json | unwrap duration_ms avg_over_time by (method)",
          'avg_over_time({app="api"} | json | unwrap duration_ms | __error__="" [5m]) '
          "by (method)", '{app="api"}', {"step": "60"}),
]


def _one_trace() -> str:
    """The trace id of the data set's first line (an `app="api"` JSON line): the first
    batch is the same whatever the size."""
    _labels, _ts, lines = next(mixed_batches(10**6, 2500))
    return str(json.loads(lines[0])["trace_id"])


for _s in SHAPES:
    _s.query = _s.query.replace("{trace}", _one_trace()) if "{trace}" in _s.query else _s.query


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_read_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    return 0


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


CLIENT = httpx.Client(timeout=900)  # one kept-alive connection per server


def covered(url: str, selector: str) -> int:
    r = CLIENT.get(f"{url}/loki/api/v1/index/stats", params={"query": selector, **WIDE},
                  timeout=600)
    return int(r.json()["bytes"])


@dataclass
class Run:
    wall: float
    cpu: float
    disk: int
    blocks: int
    skipped: int
    from_meta: int
    status: int
    results: int


def run(url: str, pid: int, shape: Shape) -> Run:
    path = "/loki/api/v1/query_range"
    cpu0, disk0 = proc_cpu(pid), proc_read_bytes(pid)
    t0 = time.perf_counter()
    r = CLIENT.get(f"{url}{path}", params={**WIDE, "query": shape.query, **shape.params})
    wall = time.perf_counter() - t0
    cpu, disk = proc_cpu(pid) - cpu0, proc_read_bytes(pid) - disk0
    if r.status_code != shape.expect:
        raise SystemExit(f"{shape.name}: {r.status_code} {r.text[:300]}")
    blocks = skipped = from_meta = results = 0
    if r.status_code == 200:
        data: dict[str, Any] = r.json()["data"]
        store = data["stats"]["querier"]["store"]
        blocks = int(store["totalChunksDownloaded"])
        summary = data["stats"]["summary"]
        skipped = int(summary.get("totalBlocksSkippedByFilter", 0))
        from_meta = int(summary.get("totalBlocksFromMetadata", 0))
        results = len(data["result"])
    return Run(wall, cpu, disk, blocks, skipped, from_meta, r.status_code, results)


def profile(url: str, pid: int, shape: Shape, seconds: float) -> list[str]:
    """Sample the server with py-spy while the shape runs again; the hottest frames."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = Path(tempfile.mkdtemp()) / "profile.txt"
    p = subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(max(2, int(seconds) + 2)),
                          "-r", "200", "-f", "raw", "-o", str(out), "--nonblocking"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    run(url, pid, shape)
    p.wait()
    own: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or "idle" in frames[-1] or "wait" in frames[-1].split(" ")[0]:
            continue
        total += int(n)
        own[frames[-1]] += int(n)
    return [f"  {100 * c / max(total, 1):5.1f}%  {f}" for f, c in own.most_common(12)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="data dir of bench/ingest.py")
    ap.add_argument("--rounds", type=int, default=3, help="warm rounds (interleaved)")
    ap.add_argument("--profile", action="store_true", help="py-spy profile of the slowest")
    ap.add_argument("--cache", default="3GB", help="storage.cache_size of the server")
    ap.add_argument("--memory-only", action="store_true",
                    help="only the peak RSS of a fresh server over the first shape")
    ap.add_argument("--no-refresh", action="store_true",
                    help="leave out the results-cache refresh (three more runs of a JSON shape)")
    ap.add_argument("--hours", type=float, default=8,
                    help="how far back the queries reach (the data set must lie inside)")
    ap.add_argument("--size", help="write the mixed data set of this size into --data "
                    "first, when it does not exist yet (e.g. 10GB; not compacted)")
    ap.add_argument("--only", action="append", default=[], metavar="TEXT",
                    help="run only the shapes whose name holds TEXT (repeatable), without "
                    "the refresh and memory phases")
    args = ap.parse_args()
    if args.only:
        SHAPES[:] = [s for s in SHAPES if any(t in s.name for t in args.only)]
        if not SHAPES:
            ap.error("--only matches no shape")
    WIDE["start"] = str(NOW - int(args.hours * 3600) * 10**9)
    if args.size and not args.data.exists():
        subprocess.run([sys.executable, str(Path(__file__).parent / "ingest.py"), "--mixed",
                        "--bytes", args.size, "--no-compact", "--keep", str(args.data)],
                       check=True)
    if args.memory_only:
        memory(args)
        return
    cfg = args.data.parent / "bench-query.yaml"
    # The results cache is off for the engine's figures; a last phase measures it.
    cfg.write_text(f"server:\n  results_cache_size: 0\nstorage:\n  cache_size: {args.cache}\n"
                   "  compaction_enabled: false\n"
                   "limits:\n  max_query_length: 0s\n  query_timeout: 900s\n")
    srv = ServerProcess(args.data, config=cfg).start()
    assert srv.proc is not None
    pid = srv.proc.pid
    try:
        sizes = {s.name: covered(srv.url, s.selector) for s in SHAPES}
        cold: dict[str, Run] = {}
        for s in SHAPES:
            cold[s.name] = run(srv.url, pid, s)
            print(f"cold  {cold[s.name].wall:7.2f} s  {s.name}", flush=True)
        warm: dict[str, Run] = {}
        for k in range(args.rounds):
            for s in SHAPES:
                r = run(srv.url, pid, s)
                print(f"warm{k}  {r.wall:6.2f} s  {r.cpu:6.2f} CPU-s  {s.name}", flush=True)
                if s.name not in warm or r.wall < warm[s.name].wall:
                    warm[s.name] = r
        peak = peak_rss_mb(pid)
        load = os.getloadavg()
        print(f"\nquery shapes over {sizes[SHAPES[0].name] / 1e6:.0f} MB (load average "
              f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores)\n")
        print("| shape | MB covered | cold s | warm s | warm MB/s | server CPU-s (warm) "
              "| disk read MB (cold) | blocks read | skipped by filter | from footers "
              "| answer |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for s in SHAPES:
            c, w, mb = cold[s.name], warm[s.name], sizes[s.name] / 1e6
            answer = (f"{w.results} series" if w.status == 200 and "logs" not in s.name
                      else f"{w.results} streams" if w.status == 200 else str(w.status))
            print(f"| `{s.query}` | {mb:.0f} | {c.wall:.2f} | {w.wall:.2f} | "
                  f"{mb / w.wall:.0f} | {w.cpu:.2f} | {c.disk / 1e6:.0f} | {w.blocks} | "
                  f"{w.skipped} | {w.from_meta} | {answer} |")
        print(f"\nserver peak RSS: {peak:.0f} MB (chunk cache {args.cache})")
        if args.profile:
            slow = max(SHAPES, key=lambda s: warm[s.name].wall)
            print(f"\nprofile of the slowest shape ({slow.name}), own time by frame:")
            print("\n".join(profile(srv.url, pid, slow, warm[slow.name].wall)))
    finally:
        srv.stop()
    if args.only:
        return
    if not args.no_refresh:
        refresh(args)
    memory(args)


def refresh(args: argparse.Namespace) -> None:
    """A dashboard refresh with the results cache on (the default 100 MB): the same
    query again, a minute later in its end, recomputes only the newest split."""
    cfg = args.data.parent / "bench-query-cache.yaml"
    cfg.write_text(f"storage:\n  cache_size: {args.cache}\n  compaction_enabled: false\n"
                   "limits:\n  max_query_length: 0s\n  query_timeout: 900s\n")
    srv = ServerProcess(args.data, config=cfg).start()
    try:
        shape = SHAPES[0]
        times = []
        for k in range(3):
            end = str(NOW + k * 60 * 10**9)
            t0 = time.perf_counter()
            r = CLIENT.get(f"{srv.url}/loki/api/v1/query_range", params={
                **shape.params, "query": shape.query, "start": WIDE["start"], "end": end})
            c = r.json()["data"]["stats"]["cache"]["result"]
            times.append(f"{time.perf_counter() - t0:.2f} s ({c['entriesFound']}/"
                         f"{c['entriesRequested']} closed splits from the cache)")
        print(f"\nresults cache, `{shape.query}` then two refreshes a minute later: "
              + ", ".join(times))
    finally:
        srv.stop()


def memory(args: argparse.Namespace) -> None:
    """Peak RSS of a fresh server (256 MB chunk cache, results cache off) before and
    after the first shape over all the data."""
    cfg = args.data.parent / "bench-query-memory.yaml"
    cfg.write_text("server:\n  results_cache_size: 0\nstorage:\n  cache_size: 256MB\n"
                   "  compaction_enabled: false\n"
                   "limits:\n  max_query_length: 0s\n  query_timeout: 900s\n")
    srv = ServerProcess(args.data, config=cfg).start()
    assert srv.proc is not None
    try:
        before = peak_rss_mb(srv.proc.pid)
        r = run(srv.url, srv.proc.pid, SHAPES[0])
        print(f"\nmemory: a fresh server with a 256 MB chunk cache, `{SHAPES[0].query}` over "
              f"{covered(srv.url, SHAPES[0].selector) / 1e6:.0f} MB in {r.wall:.1f} s: peak RSS "
              f"{peak_rss_mb(srv.proc.pid):.0f} MB ({before:.0f} MB before the query)")
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
