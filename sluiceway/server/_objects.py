"""The store's object store, made from `storage.backend` (`sluiceway.store.StoreConfig`)
and checked with one request before the server starts."""

from __future__ import annotations

import logging

from sluiceway.store import ObjectStore, StoreConfig

log = logging.getLogger("sluiceway.server")


class ObjectStoreUnusable(RuntimeError):
    """The configured object store cannot be used; the message says why, for the operator."""


def open_objects(storage: StoreConfig) -> ObjectStore | None:
    """The backend `storage` names, checked with one request; None for `filesystem` (the
    store's own `LocalDir` under the data dir)."""
    try:
        objects = storage.object_store()
        if objects is None:
            return None
    except (ImportError, ValueError, OSError) as exc:
        raise ObjectStoreUnusable(f"storage.backend {storage.backend}: {exc}") from None
    try:
        objects.check()
    except OSError as exc:
        objects.close()
        raise ObjectStoreUnusable(f"storage.backend {storage.backend}: {objects!r} cannot "
                                  f"be used: {exc}") from None
    log.info("chunks in %r (the WAL and the index stay in the data dir)", objects)
    return objects
