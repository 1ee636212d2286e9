"""Queue items that are finished push bodies (the agent's), their spill codec, and the
deliverer that pushes them.

A `Push` is built once (protobuf + snappy, or JSON) when its batch is complete and then
travels as is: through the queue, into a spill record and back, into every retry. Only
a 413 makes new bodies (the halves). `meta` is the owner's and travels with the body
through the spill (the codec writes it in the record's small header): the agent's file
checkpoints. `ledger` is the push's `X-Sluiceway-Ledger` value (the numbers of its
lines), kept beside `meta` in the spill record's header and sent with every attempt.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import orjson

from sluiceway.model import LEDGER_HEADER, decode_ledger, encode_ledger, split_ledger_order
from sluiceway.ship._client import PushClient
from sluiceway.ship._loop import Part
from sluiceway.wire import CONTENT_TYPES, PushAnswer, PushFormat, split_push

_LEN = struct.Struct("<II")


@dataclass(slots=True, eq=False)
class Push:
    body: bytes
    fmt: PushFormat  # how `body` is encoded: protobuf (+ snappy) or json
    lines: int
    meta: Any = None  # JSON-able; the owner's (the agent: file checkpoints)
    ledger: str | None = None  # the X-Sluiceway-Ledger header value


class PushCodec:
    """Spill record = pushes back to back: `u32 header len | u32 body len | header |
    body`; the body stays raw bytes (no base64), the header is a small JSON array."""

    def encode(self, items: list[Any]) -> bytes:
        out = []
        for it in items:
            head = orjson.dumps([it.fmt, it.lines, it.meta, it.ledger])
            out += [_LEN.pack(len(head), len(it.body)), head, it.body]
        return b"".join(out)

    def decode(self, data: bytes) -> list[Any]:
        items, pos, view = [], 0, memoryview(data)
        while pos < len(data):
            hl, bl = _LEN.unpack_from(data, pos)
            pos += _LEN.size
            fmt, lines, meta, *rest = orjson.loads(view[pos:pos + hl])
            pos += hl
            items.append(Push(bytes(view[pos:pos + bl]), fmt, lines, meta,
                              rest[0] if rest else None))
            pos += bl
        return items


class PushDeliverer:
    """Sends `Push` items, each its own request; a 413 cuts a body in halves."""

    def __init__(self, client: PushClient) -> None:
        self.client = client

    def parts(self, items: list[Push]) -> list[Part]:
        return [Part(it, it.lines, None, len(it.body)) for it in items]

    def send(self, part: Part) -> PushAnswer:
        push: Push = part.payload
        return self.client.push(push.body, CONTENT_TYPES[push.fmt],
                                {LEDGER_HEADER: push.ledger} if push.ledger else None)

    def split(self, part: Part) -> list[Part] | None:
        push: Push = part.payload
        halves = split_push(push.body, push.fmt)
        if halves is None:
            return None
        # The halves' numbers: the first lines in ledger order go with the first half.
        ledgers: list[str | None] = [None] * len(halves)
        if push.ledger and len(halves) == 2:
            first, rest = split_ledger_order(decode_ledger(push.ledger), halves[0][1])
            ledgers = [encode_ledger(first), encode_ledger(rest)]
        return [Part(Push(body, push.fmt, n, None, led), n, None, len(body))
                for (body, n), led in zip(halves, ledgers, strict=True)]
