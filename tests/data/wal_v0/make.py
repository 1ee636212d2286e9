"""How `data/` was made: run with the release before push records had a version (commit
2113499, `cd <that checkout> && python make.py <out dir>`). Kept for reference; the test
reads the committed files.

Tenant "fake": one WAL record holds both streams; `big` passes the chunk size and is
flushed by that record (its chunk names the record's WAL position), `small` stays in
the heads; then one more record for `small` only. The store is closed without its final
flush, so the WAL keeps both records: 40 lines of `big` (all in a chunk) and 3 + 2 lines
of `small` (only in the WAL).
"""

import sys
from pathlib import Path

import numpy as np

from sluiceway.model import EntryBlock
from sluiceway.store import Store, StoreConfig

BASE = 1_714_000_000 * 10**9  # 2024-04-24


def block(job: str, n: int, first: int, push: int) -> EntryBlock:
    return EntryBlock.from_lines({"job": job}, np.arange(n, dtype=np.int64) * 10**6 + first,
                                 [f"{job} push {push} line {i:03d} ".encode() + b"x" * 40
                                  for i in range(n)])


out = Path(sys.argv[1])
st = Store(StoreConfig(out, chunk_target_bytes=1000, flush_on_shutdown=False,
                       compaction_enabled=False))
st.push("fake", [block("big", 40, BASE, 1), block("small", 3, BASE, 1)]).result()
st.push("fake", [block("small", 2, BASE + 10**9, 2)]).result()
st.close()
