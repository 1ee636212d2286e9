"""The compactor's orphan sweep: delete chunk objects no index object names.

A chunk becomes an orphan when the step after its write never happened: a flush wrote it
and the process died before the index object that names it (the WAL replay then writes
the same lines again, into a new chunk), a compaction wrote its merged chunk and died
before the object that swaps it in, or an index object could not be written and the
chunks it would have named could not be deleted either. Nothing reads an orphan, and
nothing else would ever delete it (Loki does not sweep such chunks at all). But a chunk
no index object names may also be the only copy of acked lines (an index object lost
while no server ran), so only what `_unnamed.verdict` proves a copy or expired goes.

Rules (per tenant, in the compactor's pass, so in cluster mode only the holder of the
compactor lease runs it):
- Never while the tenant's index is damaged or has objects that cannot be read now: an
  unnamed chunk may then be one the lost records named, and `_recover.py` decides
  (at a start) what is taken back.
- Only chunks older than `retention_delete_delay` (their object's mtime). A chunk is
  written before its index object, so a young unnamed chunk may be one whose index object
  is on its way: another process's (a cluster ingester, a second server on the same
  bucket), which this one cannot wait for. The delay is the same margin the index's
  garbage uses (longer than any query and any reader's sync): a writer stalled longer
  than that between its two puts is not protected, as in Loki.
- This process's own writes are waited for (`barrier`, the store's flush lock) after the
  listing and before the index is read, so a chunk listed while its flush was between
  the two steps is named by the time it is compared, whatever the delay (a delay of 0 is
  allowed).
- The index is synced after the listing: every index object written before the chunk
  listing was made is folded in, so "no object names it" is as of after the listing.
- An unnamed chunk old enough is deleted only when `_unnamed.verdict` proves its lines
  served elsewhere (COPY: the named chunks and memory of its stream cover them) or past
  retention (EXPIRED). Every other one is KEPT and counted (`SweepResult.kept`): an index
  object lost while no server ran (an operator's mistake, a bucket problem) leaves
  chunks no index names whose lines are nowhere else, and the next start cannot tell
  that from an orphan. `sluiceway server --recover-chunks` takes them back.
- Only the chunk layout below the tenant's prefix (`chunks/<day>/<name>.chunk`) is
  listed: `quarantine/` and index objects are never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sluiceway.store._tenant import TenantStore
from sluiceway.store._unnamed import COPY, EXPIRED, KEPT, Judge, verdict

log = logging.getLogger("sluiceway.compactor")


@dataclass(slots=True)
class SweepResult:
    chunks: int = 0  # orphan chunk objects deleted
    bytes: int = 0  # their size
    skipped: int = 0  # tenants not swept (index damaged or not readable now)
    expired: int = 0  # of `chunks`: past retention (the rest are copies)
    kept: int = 0  # unnamed chunks old enough, kept: their lines are served nowhere else
    kept_bytes: int = 0


def sweep_orphans(ts: TenantStore, now: float, delay: float,
                  barrier: Callable[[], None] = lambda: None,
                  judge: Judge | None = None) -> SweepResult:
    """Delete the tenant's chunk objects that no index object names, that are older
    than `delay` seconds at `now` and that `verdict` proves copies or expired (`judge`:
    the retention cutoff and processed delete requests); count the others. `barrier`
    returns once every chunk write of this process begun before the call has its index
    object (or has failed)."""
    judge = judge if judge is not None else Judge()
    out = SweepResult()
    if _damaged(ts):
        out.skipped = 1
        return out
    try:
        listing = ts.chunk_objects()
    except OSError as exc:
        log.warning("tenant %s: chunk objects cannot be listed for the orphan sweep now "
                    "(%s); tried again at the next pass", ts.tenant, exc)
        out.skipped = 1
        return out
    old = {rel: o for rel, o in listing.items() if now - o.mtime >= delay}
    if not old:
        return out
    barrier()
    try:
        ts.sync_index()
    except OSError as exc:
        log.warning("tenant %s: the index cannot be read for the orphan sweep now (%s); "
                    "tried again at the next pass", ts.tenant, exc)
        out.skipped = 1
        return out
    if _damaged(ts):
        out.skipped = 1
        return out
    named = ts.index.named()
    for s in ts.stream_list():
        with s.lock:
            named.update(c.path for c in s.chunks)
    orphans: list[str] = []
    for rel in sorted(rel for rel in old if rel not in named):
        v = verdict(ts, rel, old[rel], judge)
        if v == KEPT:
            out.kept += 1
            out.kept_bytes += old[rel].size
            log.debug("tenant %s: unnamed chunk %s kept: its lines are not proven served "
                      "elsewhere", ts.tenant, rel)
            continue
        out.expired += v == EXPIRED
        assert v in (COPY, EXPIRED)
        orphans.append(rel)
    if not orphans:
        return out
    try:
        ts.objects.delete_many([ts.key(rel) for rel in orphans])
    except OSError as exc:
        log.warning("tenant %s: deleting %d orphan chunk objects failed (%s); tried again "
                    "at the next pass", ts.tenant, len(orphans), exc)
        out.expired = 0
        return out
    out.chunks = len(orphans)
    out.bytes = sum(old[rel].size for rel in orphans)
    log.debug("tenant %s: orphan chunks deleted: %s", ts.tenant, ", ".join(orphans))
    return out


def _damaged(ts: TenantStore) -> bool:
    return ts.index_damaged or bool(ts.index.unreadable)
