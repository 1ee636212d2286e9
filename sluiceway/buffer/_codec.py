"""How spilled items become bytes: a whole record (many items) is encoded at once."""

from __future__ import annotations

from typing import Any, Protocol

import orjson


class Codec(Protocol):
    """Encodes a list of items into one record payload and back."""

    def encode(self, items: list[Any]) -> bytes: ...

    def decode(self, data: bytes) -> list[Any]: ...


class OrjsonCodec:
    """JSON via orjson; values orjson cannot encode are written as `str(value)`.

    Round trip caveat: tuples come back as lists and non-JSON values as strings, so
    items meant for spill should be plain JSON data (dicts, lists, str, numbers).
    """

    def encode(self, items: list[Any]) -> bytes:
        return orjson.dumps(items, default=str)

    def decode(self, data: bytes) -> list[Any]:
        out = orjson.loads(data)
        if not isinstance(out, list):
            raise ValueError("spill record does not hold a list")
        return out
