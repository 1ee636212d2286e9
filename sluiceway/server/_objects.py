"""The store's object store, made from `storage.backend` (see `_config_objects`)."""

from __future__ import annotations

import logging

from sluiceway.server._config import StorageSection
from sluiceway.store import JetStreamBucket, ObjectStore, S3Bucket

log = logging.getLogger("sluiceway.server")


class ObjectStoreUnusable(RuntimeError):
    """The configured object store cannot be used; the message says why, for the operator."""


def open_objects(storage: StorageSection) -> ObjectStore | None:
    """The backend `storage` names, checked with one request; None for `filesystem` (the
    store's own `LocalDir` under the data dir)."""
    try:
        if storage.backend == "s3" and storage.s3 is not None:
            s3 = storage.s3
            objects: ObjectStore = S3Bucket(
                s3.bucketnames, prefix=s3.storage_prefix, endpoint=s3.endpoint_url() or None,
                region=s3.region or None, access_key_id=s3.access_key_id or None,
                secret_access_key=s3.secret_access_key or None,
                session_token=s3.session_token or None, force_path_style=s3.s3forcepathstyle,
                timeout_s=s3.timeout, max_retries=s3.max_retries,
                concurrency=s3.put_concurrency)
        elif storage.backend == "nats" and storage.nats is not None:
            n = storage.nats
            objects = JetStreamBucket(
                n.url, n.bucket, name_prefix=n.name_prefix, replicas=n.replicas,
                timeout_s=n.timeout, cache_bytes=n.cache_size, user=n.user or None,
                password=n.password or None, token=n.token or None,
                creds_file=n.creds_file or None, nkey_seed_file=n.nkey_seed_file or None,
                tls_ca_file=n.tls_ca_file or None, tls_cert_file=n.tls_cert_file or None,
                tls_key_file=n.tls_key_file or None)
        else:
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
