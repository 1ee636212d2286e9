"""How long a real `sluiceway server` takes from SIGTERM to exit, with its heads in memory.

Two cases: a server holding `--lines` lines (default 10,000) in the benchmark's six
streams, and one holding `--streams` streams (default 100,000) of one line each, as a
tenant with runaway labels leaves behind. Each is pushed, acked (fsynced in the WAL),
then the server gets SIGTERM; the time is until the process has exited, and the server's
own "final flush" log line says how much of it the flush took. Every line is checked to
be in chunks afterwards (restart: nothing left to replay).

Usage: python bench/shutdown.py [--lines 10000] [--streams 100000] [--code DIR]
`--code DIR` runs the server from another checkout (e.g. an older commit, to compare).
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tests.procs as procs  # noqa: E402
from bench._data import batches  # noqa: E402
from bench.ingest import count_lines, send_all  # noqa: E402
from sluiceway.model import StreamBatch  # noqa: E402
from sluiceway.wire import encode_push_protobuf  # noqa: E402

_CONFIG = "storage:\n  compaction_enabled: false\nlimits:\n  max_query_length: 0s\n"
_NO_STREAM_LIMIT = "  max_global_streams_per_user: 0\n"  # a key older checkouts lack


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _run(name: str, bodies: list[bytes], lines: int, selectors: list[str] | None,
         work: Path, config: str) -> None:
    data = work / name / "data"
    data.parent.mkdir(parents=True)
    cfg = data.parent / "s.yaml"
    cfg.write_text(config)
    srv = procs.ServerProcess(data, config=cfg).start(wait=120)
    assert srv.proc is not None
    t0 = time.perf_counter()
    send_all(srv.url, bodies, 4)
    pushed = time.perf_counter() - t0
    rss = _rss_mb(srv.proc.pid)
    t0 = time.perf_counter()
    srv.signal(signal.SIGTERM)
    srv.proc.wait(3600)
    stop = time.perf_counter() - t0
    flush = re.findall(r"final flush: .*", srv.log())
    srv.start(wait=600)
    t0 = time.perf_counter()
    n = count_lines(srv.url, selectors)
    replayed = re.findall(r"replayed \d+ WAL records in \S+", srv.log())
    srv.stop()
    print(f"\n{name}: {lines:,} lines pushed in {pushed:.1f} s; server RSS {rss:.0f} MB")
    print(f"  SIGTERM to exit:  {stop:7.2f} s")
    print(f"  server log:       {flush[-1] if flush else '(no final flush line)'}")
    print(f"  after restart:    {n:,} lines queryable ({time.perf_counter() - t0:.1f} s to "
          f"count); {replayed[-1] if replayed else 'nothing replayed from the WAL'}")
    if n != lines:
        raise SystemExit(f"{name}: {n} lines after restart, {lines} were acked")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--streams", type=int, default=100_000)
    ap.add_argument("--code", type=Path, help="run the server from this checkout")
    args = ap.parse_args()
    config = _CONFIG + _NO_STREAM_LIMIT
    if args.code is not None:
        procs.REPO = args.code.resolve()
        config = _CONFIG
    work = Path(tempfile.mkdtemp(prefix="slw-shutdown-"))
    try:
        if args.lines:
            bodies, group, n = [], [], 0
            for labels, ts, ls in batches(args.lines * 400, 1000):  # more than enough
                take = min(len(ls), args.lines - n)
                group.append(StreamBatch(dict(labels), ts[:take], ls[:take]))
                n += take
                if len(group) == 2 or n == args.lines:
                    bodies.append(encode_push_protobuf(group))
                    group = []
                if n == args.lines:
                    break
            _run("lines", bodies, n, None, work, config)
        if args.streams:
            now = time.time_ns() - 60 * 10**9
            per_push = 1000
            bodies = [encode_push_protobuf([
                StreamBatch({"job": "card", "id": f"{i:07d}"}, [now + i], [f"card {i} seen"])
                for i in range(k, min(args.streams, k + per_push))])
                for k in range(0, args.streams, per_push)]
            _run("streams", bodies, args.streams, ['{job="card"}'], work, config)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
