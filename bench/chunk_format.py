"""Chunk formats compared on the benchmark's logs: format 1 (one zstd frame per chunk)
against format 2 (independent blocks of 256 KiB or 1 MiB, optionally with a per-chunk
zstd dictionary in the footer).

Each stream's lines are cut as the store cuts them: fresh chunks of `chunk_target_size`
(4 MiB) at zstd level 1, and compacted chunks of `compaction_target_size` (16 MiB) at
level 17. For each variant it prints the compression ratio (line bytes / file bytes),
encode and decode CPU (CPU-seconds of this process, one thread, per MB of lines), and
what reading one block costs against the whole chunk (bytes read, CPU).
Usage: python bench/chunk_format.py [--bytes 256MB] [--data standard|mixed]
       [--only fresh|compacted] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import _data  # noqa: E402
from sluiceway.model import EntryBlock, format_labels, parse_size  # noqa: E402
from sluiceway.store import _chunk as v1  # noqa: E402
from sluiceway.store import _chunkfmt as v2  # noqa: E402

MB = 1 << 20
Encoder = Callable[[EntryBlock, int], bytes]


def streams(total: int, which: str) -> dict[str, EntryBlock]:
    """The data set's lines per stream, as one sorted block each."""
    gen: Callable[..., Iterator[tuple[dict[str, str], list[int], list[str]]]]
    if which == "mixed":
        gen = getattr(_data, "mixed_batches", None)  # type: ignore[assignment]
        if gen is None:
            raise SystemExit("this bench/_data.py has no mixed data set (issue 12)")
    else:
        gen = _data.batches
    parts: dict[str, list[tuple[list[int], list[str]]]] = {}
    labels_of: dict[str, dict[str, str]] = {}
    for labels, ts, lines in gen(total, 5000, start_ns=1_700_000_000 * 10**9):
        key = format_labels(labels)
        labels_of[key] = labels
        parts.setdefault(key, []).append((ts, lines))
    out = {}
    for key, ps in parts.items():
        ts = np.array([t for p in ps for t in p[0]], dtype=np.int64)
        lines = [line.encode() for p in ps for line in p[1]]
        order = np.argsort(ts, kind="stable")
        out[key] = EntryBlock.from_lines(labels_of[key], ts, lines).take(order)
    return out


def chunks(block: EntryBlock, target: int) -> Iterator[EntryBlock]:
    """Cut as the store does: a chunk closes once its lines reach `target` bytes."""
    sizes = np.cumsum(np.diff(block.offsets))
    lo = 0
    while lo < len(block):
        base = int(sizes[lo - 1]) if lo else 0
        hi = min(len(block), int(np.searchsorted(sizes, base + target, "left")) + 1)
        yield block.slice(lo, hi).compacted()
        lo = hi


@dataclass
class Result:
    raw: int = 0
    size: int = 0
    enc_cpu: float = 0.0
    dec_cpu: list[float] = field(default_factory=list)  # whole chunks, per repeat
    blocks_cpu: list[float] = field(default_factory=list)  # whole chunks, blocks not joined
    one_cpu: list[float] = field(default_factory=list)  # footer + one block, per repeat
    tail_bytes: int = 0  # bytes read for the footer (the tail), summed over chunks
    block_bytes: int = 0  # bytes read for the blocks of a query over 1 % of the chunk
    chunks: int = 0


def variant(name: str, block_bytes: int | None, dict_kind: str | None) -> tuple[str, Encoder]:
    def enc(b: EntryBlock, level: int) -> bytes:
        if block_bytes is None:
            return v1.encode_chunk(b, level)[0]
        d = None
        if dict_kind == "trained":
            d = v2.train_dictionary(b, 32 << 10, level)
        return v2.encode_chunk_v2(b, level, tenant="bench", labels=format_labels(b.labels),
                                  block_bytes=block_bytes, dictionary=d)[0]
    return name, enc


VARIANTS = [
    variant("v1", None, None),  # format 1: one zstd frame per chunk
    variant("v2-256k", 256 << 10, None),  # format 2, blocks of 256 KiB
    variant("v2-1m", 1 << 20, None),
    variant("v2-2m", 2 << 20, None),
    variant("v2-256k-dict", 256 << 10, "trained"),  # and a 32 KiB trained dictionary
    variant("v2-1m-dict", 1 << 20, "trained"),
]


def measure(data: dict[str, EntryBlock], target: int, level: int, repeat: int,
            names: set[str] | None) -> dict[str, Result]:
    out: dict[str, Result] = {}
    for name, enc in VARIANTS:
        if names is not None and name not in names:
            continue
        r = out[name] = Result()
        files: list[tuple[bytes, EntryBlock]] = []
        for block in data.values():
            for c in chunks(block, target):
                t0 = time.process_time()
                blob = enc(c, level)
                r.enc_cpu += time.process_time() - t0
                r.raw += c.nbytes
                r.size += len(blob)
                r.chunks += 1
                files.append((blob, c))
        for _ in range(repeat):
            t0 = time.process_time()
            for blob, c in files:
                got = v2.decode_chunk(blob, c.labels)
                assert len(got) == len(c)
            r.dec_cpu.append(time.process_time() - t0)
            t0 = time.process_time()
            for blob, c in files:
                footer = v2.footer_of(blob)
                parts = v2.decode_blocks(footer, footer.blocks, blob, 0, c.labels)
                assert sum(map(len, parts)) == len(c)
            r.blocks_cpu.append(time.process_time() - t0)
            t0 = time.process_time()
            tail_bytes = block_bytes = 0
            for blob, c in files:
                view = memoryview(blob)
                reads: list[int] = []

                def read(off: int, length: int, view: memoryview = view,
                         reads: list[int] = reads) -> bytes:
                    reads.append(length)
                    return bytes(view[off : off + length])

                footer = v2.read_footer(read, len(blob))
                tail_bytes += sum(reads)
                reads.clear()
                t = int(c.ts[len(c) // 2])  # a query over 1 % of the chunk's time
                span = max(1, (int(c.ts[-1]) - int(c.ts[0])) // 100)
                got_blocks = v2.read_blocks(read, footer, t, t + span, c.labels)
                assert got_blocks
                block_bytes += sum(reads)
            r.one_cpu.append(time.process_time() - t0)
            r.tail_bytes, r.block_bytes = tail_bytes, block_bytes
        print(f"  {name}: done ({r.chunks} chunks)", file=sys.stderr, flush=True)
    return out


def table(title: str, results: dict[str, Result]) -> None:
    print(f"\n{title}")
    print("| variant | ratio | encode CPU s/MB | decode CPU s/MB: whole chunk, joined / "
          "as blocks | chunk | 1 % of a chunk: footer read + blocks read | CPU: 1 % vs whole |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        mb = r.raw / MB
        dec = statistics.median(r.dec_cpu) / mb
        dec_blocks = statistics.median(r.blocks_cpu) / mb
        one = statistics.median(r.one_cpu)
        whole = statistics.median(r.dec_cpu)
        k = r.chunks * 1024
        print(f"| {name} | {r.raw / r.size:.2f}× | {r.enc_cpu / mb:.4f} | "
              f"{dec:.4f} / {dec_blocks:.4f} | {r.size / k:.0f} KiB | "
              f"{r.tail_bytes / k:.0f} + {r.block_bytes / k:.0f} KiB "
              f"| {one / r.chunks * 1e3:.2f} ms vs {whole / r.chunks * 1e3:.2f} ms |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bytes", default="256MB")
    ap.add_argument("--data", choices=["standard", "mixed"], default="standard")
    ap.add_argument("--only", choices=["fresh", "compacted"])
    ap.add_argument("--variants", help="comma-separated: " + ",".join(n for n, _ in VARIANTS))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    names = set(args.variants.split(",")) if args.variants else None
    print(f"load average at start: {os.getloadavg()}", file=sys.stderr)
    data = streams(parse_size(args.bytes), args.data)
    raw = sum(b.nbytes for b in data.values())
    print(f"{args.data} data set: {raw / MB:.0f} MiB of lines in {len(data)} streams, "
          f"zstd {zstandard.ZSTD_VERSION}, {os.cpu_count()} cores, load at start "
          f"{os.getloadavg()[0]:.1f}")
    if args.only != "compacted":
        table("Fresh chunks (4 MiB, zstd level 1)",
              measure(data, 4 * MB, 1, args.repeat, names))
    if args.only != "fresh":
        table("Compacted chunks (16 MiB, zstd level 17)",
              measure(data, 16 * MB, 17, args.repeat, names))
    print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
