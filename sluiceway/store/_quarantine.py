"""Where chunk files go that cannot be served: `<tenant>/quarantine/<kind>/<their path>`.

`corrupt`: the file fails its checks (checksum, format, or it does not match the index).
`unindexed`: a damaged index no longer names it and its stream's labels are unknown.
The tenant-relative path is kept under the kind's directory, so moving a file back is
the reverse rename.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sluiceway.durable import ensure_dir, replace

log = logging.getLogger("sluiceway.store")

QUARANTINE = "quarantine"
CORRUPT = "corrupt"
UNINDEXED = "unindexed"


def quarantine_dir(root: Path, kind: str) -> Path:
    return root / QUARANTINE / kind


def set_aside(root: Path, rel: str, kind: str) -> Path | None:
    """Move `root/rel` into the quarantine; None when the file is not there."""
    dst = quarantine_dir(root, kind) / rel
    return dst if move(root / rel, dst) else None


def move(src: Path, dst: Path) -> bool:
    """Rename `src` to `dst` durably (directories made and synced); False when `src` is
    not there."""
    ensure_dir(dst.parent)
    try:
        replace(src, dst)  # the file's bytes are already on disk; the rename is synced
    except FileNotFoundError:
        return False
    return True
