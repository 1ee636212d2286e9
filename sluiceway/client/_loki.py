"""LokiSink: batched Loki push (protobuf + snappy by default) to Sluiceway or any Loki."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from sluiceway.client._errors import SinkConfigError, SinkRejected, SinkRetryable, SinkTooLarge
from sluiceway.model import StreamBatch
from sluiceway.wire import base_url, classify_push_answer, encode_push_json, encode_push_protobuf
from sluiceway.wire import push_url as full_push_url


class LokiSink:
    """Push records to `url` (a server base URL or the full push URL).

    Each record becomes one line: the record as JSON without `ts`. Streams are the
    static `labels` plus `level` (lower case) unless `level_label=False`. Answers are read
    by `sluiceway.wire.classify_push_answer`, as the agent reads them: a partial 400
    loses only the lines Loki names (`SinkRejected` with `lost`), another 400 the batch;
    401/403/404/405 raise `SinkConfigError` (kept, retried forever, sink DOWN); 413
    `SinkTooLarge` (the worker splits the batch); connection errors, 429 and 5xx
    `SinkRetryable` (`Retry-After` honoured by the worker).
    """

    def __init__(self, url: str, labels: dict[str, str] | None = None, *,
                 tenant: str | None = None, level_label: bool = True,
                 format: str = "protobuf", timeout: float = 5.0, batch_wait: float = 0.5,
                 max_batch: int = 1000, headers: dict[str, str] | None = None,
                 auth: tuple[str, str] | str | None = None, verify: bool = True,
                 name: str = "loki") -> None:
        if format not in ("protobuf", "json"):
            raise ValueError("format must be protobuf or json")
        self.url = full_push_url(url)
        self.base_url = base_url(url)
        self.name = name  # also the spill subdirectory: keep it stable across restarts
        self.labels = dict(labels or {"service_name": "python"})
        self.level_label = level_label
        self.format = format
        self.batch_wait = batch_wait
        self.max_batch = max_batch
        self._timeout = timeout
        self._verify = verify
        self._headers = {"Content-Type": "application/x-protobuf" if format == "protobuf"
                         else "application/json", **(headers or {})}
        if tenant:
            self._headers["X-Scope-OrgID"] = tenant
        if isinstance(auth, str):
            self._headers["Authorization"] = f"Bearer {auth}"
        self._auth = auth if isinstance(auth, tuple) else None
        self._client: httpx.Client | None = None

    def report_client(self, timeout: float) -> httpx.Client:
        """A client with this sink's tenant, credentials and TLS settings, for heartbeats
        to the same server."""
        headers = {k: v for k, v in self._headers.items() if k != "Content-Type"}
        return httpx.Client(timeout=timeout, verify=self._verify, auth=self._auth,
                            headers=headers)

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout, verify=self._verify,
                                        auth=self._auth, headers=self._headers)
        return self._client

    def encode(self, records: list[dict[str, Any]]) -> bytes:
        streams: dict[str, StreamBatch] = {}
        for r in records:
            level = str(r.get("level", "info")).lower() if self.level_label else ""
            sb = streams.get(level)
            if sb is None:
                labels = {**self.labels, "level": level} if self.level_label else self.labels
                sb = streams[level] = StreamBatch(labels=labels)
            line = {k: v for k, v in r.items() if k != "ts"}
            sb.ts.append(int(r["ts"]))
            sb.lines.append(orjson.dumps(line, default=str,
                                         option=orjson.OPT_NON_STR_KEYS).decode())
        batches = list(streams.values())
        if self.format == "protobuf":
            return encode_push_protobuf(batches)
        return encode_push_json(batches)

    def write_batch(self, records: list[dict[str, Any]]) -> None:
        body = self.encode(records)
        try:
            resp = self._http().post(self.url, content=body)
        except httpx.HTTPError as exc:
            raise SinkRetryable(f"{type(exc).__name__}: {exc}") from exc
        ans = classify_push_answer(resp.status_code, resp.text, resp.headers)
        if ans.kind == "shipped":
            return
        if ans.kind in ("partial", "rejected"):
            raise SinkRejected(ans.detail, reason=ans.reason, lost=ans.lost(len(records)))
        if ans.kind == "config_error":
            raise SinkConfigError(ans.detail, ans.status)
        if ans.kind == "too_large":
            raise SinkTooLarge(ans.detail)
        raise SinkRetryable(ans.detail, ans.retry_after, reason=ans.reason, status=ans.status)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def after_fork(self) -> None:
        self._client = None  # never share the parent's pooled sockets
