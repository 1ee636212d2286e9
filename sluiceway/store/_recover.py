"""After a damaged index: take back the chunks it no longer names (`recover_chunks`).

Chunks are listed, read and moved through the tenant's object store. A chunk carries its
stream's fingerprint in its name (`chunks/<day>/<fp hex>-<mint>-<id>.chunk`), and a
format-2 chunk its tenant and labels in its footer. A chunk the index does not name (and
never deleted) is taken back when its footer names its labels (checked against the
fingerprint and the tenant) or the fingerprint belongs to a stream known from another
index record or from the WAL; the labels are never guessed. Otherwise (a format-1 chunk of
a stream known from nowhere) the chunk moves to `quarantine/unindexed/`, is
counted and logged, and is looked at again at every start until its stream is known (a
push to it after the restart is enough). Index entries whose chunk is gone (their "del"
record was lost) are dropped.
"""

from __future__ import annotations

import logging

from sluiceway.model import format_labels
from sluiceway.store._chunk import ChunkError
from sluiceway.store._chunkfmt import decode_chunk
from sluiceway.store._index import IndexEntry, Removal
from sluiceway.store._objstore import ObjectInfo
from sluiceway.store._quarantine import CORRUPT, UNINDEXED, UNREADABLE, move, quarantine_prefix
from sluiceway.store._stream import ChunkRef
from sluiceway.store._tenant import TenantStore
from sluiceway.store._unnamed import KEPT, Judge, fingerprint_of, footer_labels_of, verdict

log = logging.getLogger("sluiceway.store")


def recover_chunks(ts: TenantStore, take_back: Judge | None = None) -> None:
    """Run once at start, after the WAL replay (which makes its streams' labels known).
    `take_back` (`sluiceway server --recover-chunks`): with an index not marked damaged,
    the chunks no index object names that the orphan sweep keeps (`_unnamed.verdict`
    KEPT: lines provably served nowhere, e.g. an index object lost while no server ran)
    are taken back the same way; copies are left to the sweep."""
    entries: list[IndexEntry] = []
    orphans: dict[str, ObjectInfo] = {}
    if ts.index_damaged and ts.index.unreadable:
        log.warning("tenant %s: the index is damaged but %d of its objects cannot be read "
                    "now; it is compared with the chunks at a start that can read them",
                    ts.tenant, len(ts.index.unreadable))
    elif ts.index_damaged:
        on_disk = ts.chunk_objects()
        _drop_missing(ts, set(on_disk))
        named = {c.path for s in ts.streams.values() for c in s.chunks}
        orphans = {rel: on_disk[rel]
                   for rel in sorted(set(on_disk) - named - ts.index.deleted())}
    elif take_back is not None:
        on_disk = ts.chunk_objects()
        named = ts.index.named()
        orphans = {rel: on_disk[rel] for rel in sorted(set(on_disk) - named)
                   if verdict(ts, rel, on_disk[rel], take_back) == KEPT}
        log.warning("tenant %s: --recover-chunks: %d chunk(s) no index object names hold "
                    "lines served nowhere; taken back", ts.tenant, len(orphans))
    waiting_at = quarantine_prefix(UNINDEXED)
    corrupt_at = quarantine_prefix(CORRUPT)
    waiting = ts.chunk_objects(waiting_at)
    named = {c.path for s in ts.streams.values() for c in s.chunks}
    left = 0
    for rel, info in [*orphans.items(), *sorted(waiting.items())]:
        in_quarantine = rel not in orphans
        src = (waiting_at if in_quarantine else "") + rel
        if in_quarantine and rel in named:
            # Taken back before, and the start stopped before the copy here was deleted.
            ts.objects.delete(ts.key(src))
            continue
        fp = fingerprint_of(rel)
        s = ts.streams.get(fp) if fp is not None else None
        try:
            data = ts.objects.get(ts.key(src))
            if s is None and fp is not None:
                labels = footer_labels_of(data, fp, ts.tenant)
                if labels is not None:
                    s = ts.stream(fp, labels)
            block = decode_chunk(data, s.labels if s is not None else {})
            if not len(block):
                raise ChunkError("chunk holds no lines")
        except (ChunkError, OSError) as exc:
            if isinstance(exc, OSError):
                # No bytes to copy into the quarantine: counted, and looked at again at
                # the next start that finds it.
                ts.count_out(UNREADABLE)
                log.warning("tenant %s: unindexed chunk %s cannot be read (%s); its lines "
                            "are not served; left where it is", ts.tenant, src, exc)
                continue
            log.warning("tenant %s: unindexed chunk %s cannot be read (%s); moved to %s",
                        ts.tenant, src, exc, corrupt_at + rel)
            move(ts.objects, ts.key(src), ts.key(corrupt_at + rel), data)
            ts.count_out(CORRUPT)
            continue
        if s is None:
            if in_quarantine:
                left += 1
                continue
            move(ts.objects, ts.key(src), ts.key(waiting_at + rel), data)
            ts.count_out(UNINDEXED)
            log.warning("tenant %s: chunk %s (%d lines) is not in the damaged index and no "
                        "footer, index record or WAL record names its stream's labels "
                        "(fingerprint "
                        "%016x): moved to %s; it is taken back at a start once that stream "
                        "is known again", ts.tenant, rel, len(block), fp or 0,
                        waiting_at + rel)
            continue
        if in_quarantine:
            move(ts.objects, ts.key(src), ts.key(rel), data)
        # Its first write's time (a copy's mtime would be now), as compaction's age.
        entries.append(ts.entry(s, ChunkRef(rel, int(block.ts[0]), int(block.ts[-1]),
                                            len(block), block.nbytes, len(data), 1,
                                            info.mtime)))
        ts.chunks_readded += 1
        log.warning("tenant %s: chunk %s (%d lines) of %s, not named by the index, is taken "
                    "back", ts.tenant, rel, len(block), format_labels(s.labels))
    if left:
        log.warning("tenant %s: %d chunk file(s) in %s still wait for their stream's labels",
                    ts.tenant, left, waiting_at.rstrip("/"))
    if entries:
        with ts.index.lock:
            delta, _unnamed, error = ts.index.add(entries)
            ts.apply_delta(delta)
        if error is not None:
            log.error("tenant %s: could not record the recovered chunks in the index (%s); "
                      "they are taken back at the next start that finds the index damaged",
                      ts.tenant, error)


def _drop_missing(ts: TenantStore, on_disk: set[str]) -> None:
    """Entries of the index whose file is gone: most likely deleted (retention, compaction)
    with the "del" record among the damaged ones."""
    out: list[Removal] = []
    for s in ts.stream_list():
        with s.lock:
            gone = [c for c in s.chunks if c.path not in on_disk]
        for c in gone:
            out.append(Removal(s.fp, c.path))
            ts.count_out("missing")
            log.warning("tenant %s: the index names chunk %s (%d lines) of %s, which is not "
                        "on disk (its deletion record was probably among the damaged "
                        "ones); dropped from the index", ts.tenant, c.path, c.n,
                        format_labels(s.labels))
    if out:
        try:
            ts.remove_chunks(out)
        except OSError as exc:
            log.error("tenant %s: could not record in the index that %d chunks are gone "
                      "(%s); they are looked for again at the next start", ts.tenant,
                      len(out), exc)
            for s in ts.stream_list():
                with s.lock:
                    s.chunks = [c for c in s.chunks if c.path in on_disk]
