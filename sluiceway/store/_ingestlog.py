"""The ingest log seam: where a push becomes durable before the heads take it.

`FileWal` (numbered segment files on the node's disk) is today's implementation; the
cluster plugs in another. The heads (`Heads`) never look inside a position: they only
order positions and remember the last one applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from sluiceway.model import PushRecord


class Position(Protocol):
    """Opaque and totally ordered: a later record has a greater position."""

    def __lt__(self, other: Any, /) -> bool: ...

    def __le__(self, other: Any, /) -> bool: ...


P = TypeVar("P", bound=Position)


class IngestLog(Protocol[P]):
    def append(self, record: PushRecord) -> Future[P]:
        """Queue `record`; the future resolves to its position once it is durable
        (concurrent appends share one sync). Positions follow the order of `append` calls;
        a record whose future fails was not stored."""
        ...

    def replay(self, after: P | None) -> Iterator[tuple[P, PushRecord]]:
        """The stored records after `after` (every one when None), in log order."""
        ...

    def release(self, upto: P) -> int:
        """Every record at or before `upto` is in chunks: the log may drop them."""
        ...

    def next_unit(self, pos: P | None) -> P:
        """The position to release to free the storage unit holding `pos` (the oldest
        when None): what the heads that pin it must be flushed past."""
        ...

    def size_bytes(self) -> int: ...

    def position_to_json(self, pos: P) -> object: ...

    def position_from_json(self, obj: object) -> P:
        """Raises ValueError for something that is not one of this log's positions."""
        ...

    def close(self) -> None:
        """Stop appending; every future already returned is resolved first."""
        ...
