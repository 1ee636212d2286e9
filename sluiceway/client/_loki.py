"""LokiSink: batched Loki push (protobuf + snappy by default) to Sluiceway or any Loki."""

from __future__ import annotations

import operator
from typing import Any

import httpx
import orjson

from sluiceway.client._errors import SinkConfigError, SinkRejected, SinkRetryable, SinkTooLarge
from sluiceway.model import LEDGER_HEADER, LedgerGroup, StreamBatch, encode_ledger
from sluiceway.ship import HEADER_BUDGET, Part, PushClient, PushTarget, groups_of, header_of
from sluiceway.wire import PushAnswer, PushBuilder, encode_push_json, encode_push_protobuf

_JSON = orjson.OPT_NON_STR_KEYS
# Keys a line never shows: the stamp (the entry's own) and the ledger's numbering.
_NOT_IN_LINE = frozenset({"ts", "_ep", "_seq"})
_TRACE = ("trace_id", "span_id")
# Bytes a run of numbers may take in the header, at most ("<start>+<count>,").
_RUN_BYTES = 24


_SEQ = operator.itemgetter("_seq")
_EP = operator.itemgetter("_ep")


def _one_run(records: list[dict[str, Any]], epoch: str) -> tuple[str, int] | None:
    """(epoch, first number) when `records` are one epoch's consecutive numbers in
    order, else None — checked in C loops (a Loki sink's every batch asks). Records
    carry their epoch in spill mode only (`_ep`), else they are of `epoch`."""
    try:
        seqs = list(map(_SEQ, records))
        eps = set(map(_EP, records)) if "_ep" in records[0] else {epoch}
    except KeyError:
        return None
    first = seqs[0]
    if len(eps) != 1 or seqs[-1] - first != len(seqs) - 1 or seqs != sorted(seqs):
        return None
    return str(next(iter(eps))), int(first)


class LokiSink:
    """Push records to `url` (a server base URL or the full push URL).

    Each record becomes one line: the record as JSON without `ts`. Streams are the
    static `labels` plus `level` (lower case) unless `level_label=False`. Pushes go
    through `sluiceway.ship`'s push client and answers mean what they mean to the agent
    (`sluiceway.wire.classify_push_answer`): a partial 400 loses only the lines Loki
    names, another 400 the batch; 401/403/404/405 are kept and retried forever (sink
    DOWN); 413 splits the batch; connection errors, 429 and 5xx are retried
    (`Retry-After` honoured).
    """

    def __init__(self, url: str, labels: dict[str, str] | None = None, *,
                 tenant: str | None = None, level_label: bool = True,
                 format: str = "protobuf", timeout: float = 5.0, batch_wait: float = 0.5,
                 max_batch: int = 1000, headers: dict[str, str] | None = None,
                 auth: tuple[str, str] | str | None = None, verify: bool = True,
                 name: str = "loki", trace_metadata: bool = False) -> None:
        if format not in ("protobuf", "json"):
            raise ValueError("format must be protobuf or json")
        self.target = PushTarget(url, tenant=tenant, headers=dict(headers or {}),
                                 basic=auth if isinstance(auth, tuple) else None,
                                 bearer=auth if isinstance(auth, str) else None,
                                 verify=verify, timeout=timeout)
        self.url = self.target.push_url
        self.base_url = self.target.base_url
        self.name = name  # also the spill subdirectory: keep it stable across restarts
        self.labels = dict(labels or {"service_name": "python"})
        self.level_label = level_label
        self.format = format
        self.batch_wait = batch_wait
        self.max_batch = max_batch
        # `trace_id` / `span_id` as structured metadata of the entry instead of fields of
        # the line: off by default (a Loki without structured metadata refuses it).
        self.trace_metadata = trace_metadata
        self._client = PushClient(self.target)
        # The ledger's source of this sink (set by the runtime): pushes then carry their
        # records' numbers in the X-Sluiceway-Ledger header (a real Loki ignores it);
        # records without `_ep` are of `ledger_epoch`.
        self.ledger_source: str | None = None
        self.ledger_epoch = ""
        self._run: tuple[list[dict[str, Any]], tuple[str, int] | None] | None = None

    def report_client(self, timeout: float) -> httpx.Client:
        """A client with this sink's tenant, credentials and TLS settings, for heartbeats
        to the same server."""
        return self.target.http(timeout)

    def encode(self, records: list[dict[str, Any]]) -> bytes:
        """One push body: a stream per level, each record a JSON line without `ts`."""
        if self.trace_metadata and any("trace_id" in r for r in records):
            return self._encode_with_metadata(records)
        streams: dict[str, tuple[list[int], list[bytes]]] = {}
        for r in records:
            level = str(r.get("level", "info")).lower() if self.level_label else ""
            s = streams.get(level)
            if s is None:
                s = streams[level] = ([], [])
            s[0].append(int(r["ts"]))
            line = r.copy()  # a copy and three deletes: cheaper than a comprehension
            del line["ts"]
            line.pop("_seq", None)
            line.pop("_ep", None)
            s[1].append(orjson.dumps(line, default=str, option=_JSON))
        builder = PushBuilder("protobuf" if self.format == "protobuf" else "json")
        for level, (ts, lines) in streams.items():
            labels = {**self.labels, "level": level} if self.level_label else self.labels
            builder.add(labels, ts, lines)
        return builder.body()

    def _encode_with_metadata(self, records: list[dict[str, Any]]) -> bytes:
        """Trace ids as the entries' structured metadata, not in the line."""
        streams: dict[str, StreamBatch] = {}
        for r in records:
            level = str(r.get("level", "info")).lower() if self.level_label else ""
            sb = streams.get(level)
            if sb is None:
                labels = {**self.labels, "level": level} if self.level_label else self.labels
                sb = streams[level] = StreamBatch(labels, [], [], [])
            sb.ts.append(int(r["ts"]))
            sb.lines.append(orjson.dumps(
                {k: v for k, v in r.items() if k not in _NOT_IN_LINE and k not in _TRACE},
                default=str, option=_JSON).decode())
            md = {k: str(r[k]) for k in _TRACE if k in r}
            assert sb.metadata is not None
            sb.metadata.append(md or None)
        batches = list(streams.values())
        return encode_push_protobuf(batches) if self.format == "protobuf" \
            else encode_push_json(batches)

    def ledger_header(self, records: list[dict[str, Any]]) -> str | None:
        """The X-Sluiceway-Ledger value of a push of `records` (None: not numbered)."""
        if self.ledger_source is None or not records:
            return None
        run = self._one_run(records)
        if run is not None:  # the common case: one epoch, consecutive numbers
            ep, first = run
            return encode_ledger([LedgerGroup(self.ledger_source, ep,
                                              [(first, first + len(records))])])
        ep = self.ledger_epoch
        return header_of(groups_of(self.ledger_source, [
            (str(r.get("_ep", ep)), int(r["_seq"])) for r in records if "_seq" in r]))

    def _one_run(self, records: list[dict[str, Any]]) -> tuple[str, int] | None:
        """`_one_run` of `records`, asked once per part (cut, then header)."""
        last = self._run
        if last is not None and last[0] is records:
            return last[1]
        run = _one_run(records, self.ledger_epoch)
        self._run = (records, run)
        return run

    def ledger_parts(self, records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """`records` cut so that each push's header stays within its 1 KiB: a run of
        numbers ends wherever a record was dropped before, so a queue that drops makes
        many runs."""
        if self.ledger_source is None or not records or self._one_run(records) is not None:
            return [records]
        budget = HEADER_BUDGET
        group = len(self.ledger_source) * 3 + 8  # a group's source (percent-encoded) etc.
        parts: list[list[dict[str, Any]]] = []
        start, used = 0, 0
        prev_ep: Any = None
        prev_seq = -2
        cur = self.ledger_epoch
        for i, r in enumerate(records):
            ep, seq = r.get("_ep", cur), r.get("_seq")
            cost = 0
            if ep != prev_ep:
                cost = group + len(str(ep)) * 3 + _RUN_BYTES
            elif seq != prev_seq + 1:
                cost = _RUN_BYTES
            if cost and used + cost > budget and i > start:
                parts.append(records[start:i])
                start, used = i, group + len(str(ep)) * 3 + _RUN_BYTES
            else:
                used += cost
            prev_ep, prev_seq = ep, seq if isinstance(seq, int) else -2
        parts.append(records[start:])
        return parts

    def send_records(self, records: list[dict[str, Any]], part: Part | None = None) -> PushAnswer:
        """Push `records` (the body is built once per part, kept for its retries)."""
        if part is not None and part.memo is not None:
            body, header = part.memo
        else:
            body, header = self.encode(records), self.ledger_header(records)
        if part is not None:
            part.memo = (body, header)
            part.nbytes = len(body)
        ctype = "application/x-protobuf" if self.format == "protobuf" else "application/json"
        return self._client.push(body, ctype, {LEDGER_HEADER: header} if header else None)

    def write_batch(self, records: list[dict[str, Any]]) -> None:
        """Push `records` now; raise what the answer means (the `Sink` protocol)."""
        ans = self.send_records(records)
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
        self._client.close()

    def after_fork(self) -> None:
        self._client.after_fork()  # never share the parent's pooled sockets
