"""Block token filters on the query benchmark's data set: size, false-positive rate and
cost (issue 12 step 5).

  python bench/block_filters.py [--bytes 300MB] [--ingest-mb-per-cpu-s 67]

Cuts each stream of the mixed data set (bench/_data.py: JSON access logs, logfmt and
nginx lines with random ids) into blocks as the compactor does (chunk format 2's
`cut_points`, 1 MiB), builds each block's filters slot, and prints:
- filter bytes against the lines' raw bytes, per format and overall;
- the false-positive rate: the share of blocks a token that is in none of them is let
  through by (random trace-like hex ids and random words, 2,000 each);
- build cost in MB of lines per CPU-second: the token filter, and the per-level counts
  the server's compactor adds (`detected_level` under Loki's default rules);
- what building filters at flush would add to ingest, against the ingest benchmark's
  server CPU (`--ingest-mb-per-cpu-s`, bench/ingest.py's "MB per CPU-second").
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._data import mixed_batches  # noqa: E402
from sluiceway.logql import LevelRules, block_levels  # noqa: E402
from sluiceway.model import EntryBlock, parse_size  # noqa: E402
from sluiceway.store._blockfilter import TokenProbe, build_counts, build_filter  # noqa: E402
from sluiceway.store._chunkfmt import COMPACTED_BLOCK_BYTES, cut_points  # noqa: E402


def blocks_of(total: int) -> list[tuple[str, EntryBlock]]:
    """(format, block) for every compacted-size block of the mixed data set."""
    by_stream: dict[tuple[tuple[str, str], ...], tuple[list[int], list[bytes]]] = \
        defaultdict(lambda: ([], []))
    for labels, ts, lines in mixed_batches(total, 2500):
        t, ls = by_stream[tuple(sorted(labels.items()))]
        t += ts
        ls += [x.encode() for x in lines]
    out = []
    for key, (ts, lines) in by_stream.items():
        labels = dict(key)
        block = EntryBlock.from_lines(labels, np.array(ts, dtype=np.int64), lines)
        lo = 0
        for hi in cut_points(block, COMPACTED_BLOCK_BYTES):
            out.append((labels["format"], block.slice(lo, hi).compacted()))
            lo = hi
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bytes", default="300MB", help="raw bytes of lines to generate")
    ap.add_argument("--ingest-mb-per-cpu-s", type=float, default=67.0,
                    help="bench/ingest.py's server MB per CPU-second (this machine: 67)")
    args = ap.parse_args()
    print(f"generating {args.bytes} of the mixed data set ...", flush=True)
    blocks = blocks_of(parse_size(args.bytes))
    raw = sum(b.nbytes for _, b in blocks)
    t0 = time.process_time()
    filters = [build_filter(b) for _, b in blocks]
    filter_cpu = time.process_time() - t0
    rules = LevelRules()
    t0 = time.process_time()
    counts = [build_counts(rules.key, block_levels(rules, b), b) for _, b in blocks]
    counts_cpu = time.process_time() - t0

    print(f"\n{len(blocks)} blocks of about 1 MiB, {raw / 1e6:.0f} MB of lines\n")
    print("| format | blocks | MB of lines | filter bytes / raw bytes | level counts bytes |")
    print("|---|---|---|---|---|")
    for fmt in ("json", "logfmt", "plain", "all"):
        sel = [i for i, (f, _) in enumerate(blocks) if fmt in ("all", f)]
        r = sum(blocks[i][1].nbytes for i in sel)
        fb = sum(len(filters[i]) for i in sel)
        cb = sum(len(counts[i]) for i in sel)
        print(f"| {fmt} | {len(sel)} | {r / 1e6:.0f} | {100 * fb / r:.2f} % | "
              f"{cb / len(sel):.0f} B a block |")

    rng = random.Random(9)
    kinds = {"random 16-hex ids": [f"{rng.getrandbits(64):016x}" for _ in range(2000)],
             "random words": ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz")
                                      for _ in range(rng.randint(5, 10)))
                              for _ in range(2000)]}
    print("\n| absent tokens | probes | blocks let through (false positives) | µs a probe |")
    print("|---|---|---|---|")
    for name, tokens in kinds.items():
        passed = probes = 0
        t0 = time.perf_counter()
        for tok in tokens:
            probe = TokenProbe([tok.encode()])
            for f in filters:
                probes += 1
                passed += not probe.excludes(f)
        us = (time.perf_counter() - t0) / probes * 1e6
        print(f"| {name} | {probes:,} | {100 * passed / probes:.3f} % | {us:.1f} |")

    mbs = raw / 1e6 / filter_cpu
    print(f"\nbuild cost: token filters {mbs:.0f} MB of lines per CPU-second, level counts "
          f"{raw / 1e6 / counts_cpu:.0f} MB per CPU-second")
    share = args.ingest_mb_per_cpu_s / mbs
    print(f"filters at flush would add {100 * share:.0f} % to ingest's server CPU "
          f"({args.ingest_mb_per_cpu_s:.0f} MB per CPU-second): "
          + ("under" if share < 0.05 else "over") + " the 5 % allowed, so fresh chunks "
          + ("get them" if share < 0.05 else "have none (the compactor writes them)"))


if __name__ == "__main__":
    main()
