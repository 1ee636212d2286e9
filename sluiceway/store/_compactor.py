"""Background compaction: merge a stream's older chunks and recompress them harder.

Chunks are cut fast (zstd level 1, about 4.4x on the benchmark's logs) so ingest keeps
up; once they are older than `min_age`, neighbouring chunks of a stream are merged up to
`target_bytes` and written again at a high level (17: about 5.3x, ~2 MB/s per core),
where zstd's optimal parser finds the repeats between log lines.
One index object adds the merged chunk and takes the replaced ones out of service; their
files are deleted `delete_delay` later (the store's garbage collection), so a query that
already holds a reference to one, here or in another process, can still read it.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sluiceway.model import EntryBlock, format_labels, sort_dedupe
from sluiceway.store._memory import block_bytes, give_back_free_memory
from sluiceway.store._stream import ChunkRef, Stream
from sluiceway.store._tenant import TenantStore

log = logging.getLogger("sluiceway.compactor")


@dataclass(slots=True)
class CompactionStats:
    chunks_in: int = 0
    chunks_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    index_objects_in: int = 0  # index objects folded into one per period
    lines_deleted: int = 0  # lines removed for delete requests
    orphans_deleted: int = 0  # chunk objects no index object named (the orphan sweep)
    orphans_kept: int = 0  # ... old enough but kept: their lines are served nowhere else
    orphan_bytes_deleted: int = 0


class Compactor:
    def __init__(self, level: int, target_bytes: int, min_age_s: float,
                 threads: int = 2) -> None:
        self.level = level
        self.threads = threads
        self.target_bytes = target_bytes
        self.min_age_s = min_age_s
        self._lock = threading.Lock()

    def run(self, tenants: list[TenantStore], now: float | None = None) -> CompactionStats:
        """One pass over every stream; returns what it did."""
        now = now if now is not None else time.time()
        stats = CompactionStats()
        t0 = time.perf_counter()
        jobs: list[tuple[TenantStore, Stream, list[ChunkRef]]] = []
        for ts in tenants:
            jobs += [(ts, s, group) for s in ts.stream_list() for group in self._groups(s, now)]
        if jobs:
            give_back_free_memory()  # before this pass's buffers are added to what is free
        # zstd releases the GIL: merges of different streams run side by side.
        with ThreadPoolExecutor(max_workers=self.threads,
                                thread_name_prefix="compactor") as pool:
            for _ in pool.map(lambda job: self._compact(job[0], job[1], job[2], stats), jobs):
                pass
        if jobs:
            give_back_free_memory()  # the merged copies and zstd's contexts
        stats.seconds = time.perf_counter() - t0
        return stats

    def _groups(self, s: Stream, now: float) -> list[list[ChunkRef]]:
        cands = [c for c in s.chunks if c.level < self.level and now - c.created >= self.min_age_s]
        groups: list[list[ChunkRef]] = []
        size = 0
        reach = 0  # the newest line of the group so far
        for c in sorted(cands, key=lambda c: c.mint):
            # A chunk that overlaps the group in time goes into it, up to twice the target:
            # merged, their lines are deduplicated once, and the compacted chunks do not
            # overlap each other (a block no other chunk overlaps can be counted from its
            # footer, see `_blockfilter`).
            fits = size + c.raw_bytes <= self.target_bytes or (
                c.mint <= reach and size + c.raw_bytes <= 2 * self.target_bytes)
            if groups and fits:
                groups[-1].append(c)
                size += c.raw_bytes
                reach = max(reach, c.maxt)
            else:
                groups.append([c])
                size = c.raw_bytes
                reach = c.maxt
        return groups

    def _compact(self, ts: TenantStore, s: Stream, group: list[ChunkRef],
                 stats: CompactionStats) -> None:
        held = ts.memory.compaction
        counted = 0
        try:
            loaded = [ts.load_or_take_out(s, c, keep=False) for c in group]
            if any(b is None for b in loaded):
                log.warning("compacting %d chunks of tenant %s %s: one could not be read and "
                            "is out of service (logged above); the others are compacted in "
                            "a later pass", len(group), ts.tenant, format_labels(s.labels))
                return
            blocks = [b for b in loaded if b is not None]
            counted = sum(map(block_bytes, blocks))
            held.add(counted)
            block = sort_dedupe(EntryBlock.concat(blocks))
            held.add(block_bytes(block))
            counted += block_bytes(block)
            new = ts.write_chunk(s, block, self.level, group)
            ts.replace_chunks(s, group, new)
        except OSError:
            log.exception("compacting %d chunks of %s failed; they stay as they are",
                          len(group), s.labels)
            return
        finally:
            held.sub(counted)
        with self._lock:
            stats.chunks_in += len(group)
            stats.chunks_out += 1
            stats.bytes_in += sum(c.size for c in group)
            stats.bytes_out += new.size
