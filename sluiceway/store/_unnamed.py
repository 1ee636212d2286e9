"""What a chunk object no index object names holds, as far as the store can prove:
`verdict` says COPY, EXPIRED or KEPT. The orphan sweep (`_orphans.py`) deletes only the
first two; `--recover-chunks` (`_recover.py`) takes back the third.

- COPY: every line it holds is provably served elsewhere: by the live chunks or the
  memory (heads, sealed heads: the WAL) of its stream (the fingerprint in its name,
  checked against the tenant and labels of a format-2 footer). First from the footer
  alone (range reads): the first and last line of each block must lie in the time
  ranges those cover, or the chunk is KEPT without being read (a lost index object's
  chunk, usually). Then, since a cover in time proves nothing under out-of-order writes
  (a late chunk lies inside an earlier one's range), the chunk is read and each line
  (timestamp and text) must be one a read of the stream over its range returns, or
  one a processed delete request of the stream removes. The two ways an orphan arises
  both pass: a crash between a flush's chunk and its index object is followed by the
  WAL replay writing the same lines again (into the heads, then a new named chunk); a
  compaction whose index object never landed leaves its inputs named. A processed
  delete request that cut lines out of the named chunks counts for the lines it
  deletes: it applies to this chunk's lines as much (same stream, same time range,
  same filter), so they would be gone had the chunk been named.
- EXPIRED: its newest line is older than its stream's retention cutoff (the retention
  code's, per stream): retention would have deleted it.
- KEPT: anything else, including what cannot be read or checked now (a chunk of a stream
  known from nowhere, a damaged footer, a footer naming other labels or another tenant).
  A lost index object leaves chunks like that: deleting them would lose acked lines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sluiceway.model import fingerprint, parse_labels
from sluiceway.store._chunk import ChunkError
from sluiceway.store._chunkfmt import Footer, decode_chunk, footer_of, read_footer
from sluiceway.store._deletes import Applying, deleted_mask
from sluiceway.store._objstore import ObjectInfo
from sluiceway.store._tenant import TenantStore

COPY, EXPIRED, KEPT = "copy", "expired", "kept"

Cutoff = Callable[[dict[str, str]], "int | None"]  # labels -> retention cutoff (ns)
Deleting = Callable[[dict[str, str], int, int], Sequence[Applying]]  # processed requests


@dataclass(slots=True)
class Judge:
    """What a verdict needs besides the tenant: the stream's retention cutoff (None: kept
    for ever) and the processed delete requests over a stream's [lo, hi]."""

    cutoff: Cutoff = field(default=lambda _labels: None)
    deleting: Deleting = field(default=lambda _labels, _lo, _hi: ())


def fingerprint_of(rel: str) -> int | None:
    """The stream fingerprint a chunk's name carries (`<fp hex>-<mint>-<id>.chunk`)."""
    try:
        return int(rel.rsplit("/", 1)[-1].split("-", 1)[0], 16)
    except ValueError:
        return None


def footer_labels(footer: Footer, fp: int | None, tenant: str) -> dict[str, str] | None:
    """The labels a format-2 chunk's footer names, when they are its stream's (their
    fingerprint is the one in its name) and the footer's tenant is this one."""
    if fp is None or not footer.labels or footer.tenant != tenant:
        return None
    try:
        labels = parse_labels(footer.labels)
    except ValueError:
        return None
    return labels if fingerprint(labels) == fp else None


def footer_labels_of(data: bytes, fp: int | None, tenant: str) -> dict[str, str] | None:
    return footer_labels(footer_of(data), fp, tenant)


def verdict(ts: TenantStore, rel: str, info: ObjectInfo, judge: Judge) -> str:
    """COPY, EXPIRED or KEPT for the unnamed chunk `rel` (module docstring)."""
    fp = fingerprint_of(rel)
    if fp is None:
        return KEPT
    key = ts.key(rel)
    try:
        footer = read_footer(lambda off, n: ts.objects.get_range(key, off, n), info.size)
    except (ChunkError, OSError, ValueError):
        return KEPT
    s = ts.streams.get(fp)
    from_footer = footer_labels(footer, fp, ts.tenant)
    if footer.version >= 2 and from_footer is None:
        return KEPT  # its footer names another stream or tenant: nothing is proven
    labels = s.labels if s is not None else from_footer
    if labels is None or not footer.blocks:
        return KEPT
    cut = judge.cutoff(labels)
    if cut is not None and footer.maxt < cut:
        return EXPIRED
    if s is None:
        return KEPT
    with s.lock:
        ranges = [(c.mint, c.maxt) for c in s.chunks]
        ranges += [(p.mint, p.maxt) for p in s.head]
        ranges += [(p.mint, p.maxt) for sealed in s.sealed for p in sealed.pieces]
    lo, hi = _merged(ranges)
    # A block's mint and maxt are timestamps of its first and last lines: one outside the
    # cover, with no processed delete request over it, is a line served nowhere else (the
    # usual case of a lost index object: told from the footer, without reading the chunk).
    loose = [t for b in footer.blocks for t in (b.mint, b.maxt) if not _covered(lo, hi, t, t)]
    if loose and not judge.deleting(labels, min(loose), max(loose)):
        return KEPT
    # A cover in time is no proof (out-of-order writes put other lines in the same range):
    # each of its lines must be one the stream serves, or one a processed request deletes.
    try:
        block = decode_chunk(ts.objects.get(key), labels)
    except (ChunkError, OSError):
        return KEPT
    if not len(block):
        return KEPT
    first, last = int(block.ts[0]), int(block.ts[-1])
    served: set[tuple[int, bytes]] = set()
    unreadable: list[str] = []
    for b in ts.blocks(s, first, last + 1, "forward", unreadable.append):
        served.update(zip(b.ts.tolist(), b.lines(), strict=True))
    if unreadable:
        return KEPT
    inside = np.fromiter(((t, ln) in served for t, ln in zip(block.ts.tolist(), block.lines(),
                                                              strict=True)),
                         dtype=np.bool_, count=len(block))
    if not inside.all():
        gone = judge.deleting(labels, first, last)
        if gone:
            inside |= deleted_mask(block, gone)
    return COPY if bool(inside.all()) else KEPT


def _merged(ranges: list[tuple[int, int]]
            ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Inclusive ns ranges joined where they overlap or touch: starts, ends (sorted)."""
    los: list[int] = []
    his: list[int] = []
    for a, b in sorted(ranges):
        if his and a <= his[-1] + 1:
            his[-1] = max(his[-1], b)
        else:
            los.append(a)
            his.append(b)
    return np.array(los, dtype=np.int64), np.array(his, dtype=np.int64)


def _covered(lo: npt.NDArray[np.int64], hi: npt.NDArray[np.int64], a: int, b: int) -> bool:
    """Whether [a, b] lies in one of the joined ranges."""
    i = int(np.searchsorted(lo, a, side="right")) - 1
    return i >= 0 and int(hi[i]) >= b
