"""Bytes a narrow query reads from a compacted chunk (issue 11's "a query covering <= 1 %
of a compacted chunk's time range reads only the blocks that overlap it").

Picks the compacted chunk (format 2) with the most blocks in a data dir of
bench/ingest.py, takes a window of `--percent` of its time range in its middle, and sums
the bytes of every block of that stream's chunks that overlaps the window (from the
footers). Then a fresh `sluiceway server` (compaction off, no results cache, empty chunk
cache) answers `query_range` over that window, and it prints the bytes the server read
(`rchar` of /proc/PID/io: every read syscall, footers included) and the blocks it read
(the answer's stats) next to what overlaps. A query over the whole chunk's range is the
comparison.

Usage: python bench/narrow_read.py --data /work/benchdata/data [--percent 1]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sluiceway.store._chunkfmt import Footer, read_footer  # noqa: E402
from tests.procs import ServerProcess  # noqa: E402


def rchar(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def footer(path: Path) -> Footer:
    with path.open("rb") as f:
        def read(offset: int, length: int) -> bytes:
            f.seek(offset)
            return f.read(length)
        return read_footer(read, path.stat().st_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True, help="data dir of bench/ingest.py")
    ap.add_argument("--percent", type=float, default=1.0)
    args = ap.parse_args()
    chunks = [p for p in (args.data / "tenants").glob("*/chunks/**/*") if p.is_file()]
    footers = {p: footer(p) for p in chunks}
    v2 = [p for p, f in footers.items()
          if f.version >= 2 and f.labels and any(b.filters for b in f.blocks)]
    if not v2:
        raise SystemExit("no compacted (format 2) chunk: compact the data first")
    best = max(v2, key=lambda p: len(footers[p].blocks))
    fb = footers[best]
    mint, maxt = fb.blocks[0].mint, max(b.maxt for b in fb.blocks)
    width = int((maxt - mint) * args.percent / 100)
    start = mint + (maxt - mint) // 2 - width // 2
    end = start + width  # query_range's end is inclusive here: blocks with mint <= end
    # The compactor's inputs stay on disk for `compactor.retention_delete_delay` (2 h)
    # after the index drops them: count the compactor's chunks (their blocks carry
    # filters) of that stream, the ones the index lists.
    same = [p for p, f in footers.items()
            if f.labels == fb.labels and any(b.filters for b in f.blocks)]
    overlap_blocks = overlap_bytes = 0
    for p in same:
        for b in footers[p].blocks:
            if b.mint <= end and b.maxt >= start:
                overlap_blocks += 1
                overlap_bytes += b.length
    print(f"chunk {best.name}: {fb.size / 1e6:.1f} MB, {len(fb.blocks)} blocks, "
          f"{(maxt - mint) / 1e9:.0f} s of {fb.labels}; {len(same)} chunk(s) of that stream")
    last = fb.blocks[-1]
    print(f"footer and tail of that chunk: {(fb.size - last.offset - last.length) / 1e3:.0f}"
          f" kB; blocks {min(b.length for b in fb.blocks) / 1e3:.0f}-"
          f"{max(b.length for b in fb.blocks) / 1e3:.0f} kB")
    print(f"window: {args.percent:g} % of its range = {width / 1e9:.1f} s; blocks overlapping "
          f"it (all chunks of the stream): {overlap_blocks}, {overlap_bytes / 1e3:.0f} kB")
    cfg = args.data.parent / "bench-narrow.yaml"
    cfg.write_text("server:\n  results_cache_size: 0\nstorage:\n  compaction_enabled: false\n"
                   "limits:\n  max_query_length: 0s\n  query_timeout: 900s\n")
    srv = ServerProcess(args.data, config=cfg).start()
    assert srv.proc is not None
    pid = srv.proc.pid
    try:
        with httpx.Client(timeout=900) as client:
            # A warm-up over another stream: the modules a first query imports and the
            # index are read now, not counted below.
            other = next(f.labels for f in footers.values() if f.labels != fb.labels)
            client.get(f"{srv.url}/loki/api/v1/query_range", params={
                "query": other, "start": str(start), "end": str(end), "limit": "10"})
            # narrow: the lines; whole chunk: a count that reads every line (the filter
            # keeps counts from the footers).
            for name, query, s, e, extra in (
                    ("narrow", fb.labels, start, end, {"limit": "5000"}),
                    ("whole chunk", f'sum(count_over_time({fb.labels} |= "a" [1m]))',
                     mint, maxt, {"step": "60"})):
                before = rchar(pid)
                r = client.get(f"{srv.url}/loki/api/v1/query_range", params={
                    "query": query, "start": str(s), "end": str(e), **extra})
                read = rchar(pid) - before
                if r.status_code != 200:
                    raise SystemExit(f"{name}: {r.status_code} {r.text[:300]}")
                store = r.json()["data"]["stats"]["querier"]["store"]
                print(f"{name:>11}: server read {read / 1e3:,.0f} kB (rchar); blocks read "
                      f"{store['totalChunksDownloaded']} of {store['totalChunksRef']} "
                      f"referenced")
    finally:
        srv.stop()
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
