"""Where chunks go that cannot be served: `<tenant>/quarantine/<kind>/<their path>`.

`corrupt`: the chunk fails its checks (checksum, format, or it does not match the index).
`unindexed`: a damaged index no longer names it and its stream's labels are unknown.
The tenant-relative key is kept under the kind's prefix, so moving a chunk back is the
reverse move.

Object stores have no rename (S3, JetStream), so a move is a copy and a delete: the copy
is durable before the original goes, so a crash in between leaves both, never neither.
"""

from __future__ import annotations

import logging

from sluiceway.store._objstore import NotFound, ObjectStore

log = logging.getLogger("sluiceway.store")

QUARANTINE = "quarantine"
CORRUPT = "corrupt"
UNINDEXED = "unindexed"
UNREADABLE = "unreadable"  # a count only: a chunk whose bytes cannot be read stays put


def quarantine_prefix(kind: str) -> str:
    """The tenant-relative prefix of one kind of quarantine (`quarantine/corrupt/`)."""
    return f"{QUARANTINE}/{kind}/"


def set_aside(objects: ObjectStore, prefix: str, rel: str, kind: str) -> str | None:
    """Move the tenant's chunk `rel` (under key prefix `prefix`) into the quarantine;
    returns its new tenant-relative key, None when the chunk is not there."""
    dst = quarantine_prefix(kind) + rel
    return dst if move(objects, prefix + rel, prefix + dst) else None


def move(objects: ObjectStore, src: str, dst: str, data: bytes | None = None) -> bool:
    """Put `src`'s bytes (`data` when the caller has read them already) at `dst`, durably,
    then delete `src`; False when `src` is not there."""
    if data is None:
        try:
            data = objects.get(src)
        except NotFound:
            return False
    objects.put(dst, data)
    objects.delete(src)
    return True
