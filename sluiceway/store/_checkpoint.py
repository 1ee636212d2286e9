"""Where replay starts: "every record of the ingest log up to P is in chunks".

One small JSON file in the data dir, `{"version": 1, "after": <the log's position>}`,
replaced atomically (`sluiceway.durable.atomic_write`: data and directory synced) before
the log releases anything up to P. No file (a new data dir, or one from before the
checkpoint) means replay reads every record the log still has.
"""

from __future__ import annotations

import logging
from pathlib import Path

import orjson

from sluiceway.durable import atomic_write

log = logging.getLogger("sluiceway.store")

NAME = "checkpoint.json"
_VERSION = 1


def read_checkpoint(root: Path) -> object | None:
    """The position as the log wrote it to JSON, or None (no file, or one that cannot be
    read: then replay starts at the beginning, which repeats nothing — `Heads` drops what
    chunks hold)."""
    path = root / NAME
    try:
        info = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        log.warning("checkpoint %s cannot be read (%s); replaying the whole WAL", path, exc)
        return None
    if not isinstance(info, dict) or info.get("version") != _VERSION or "after" not in info:
        log.warning("checkpoint %s is not one this release writes (%r); replaying the whole "
                    "WAL", path, info)
        return None
    after: object = info["after"]
    return after


def write_checkpoint(root: Path, after: object) -> None:
    atomic_write(root / NAME, orjson.dumps({"version": _VERSION, "after": after}))
