"""Pushes in flight: the bytes of bodies being read and decoded, then of their records,
until each push is answered (what also sits in the ingest workers' pipes and in the WAL's
group). `server.max_inflight_push_bytes` bounds them: a push whose declared body would
pass the bound waits for room before its body is read (the client sees a slow answer,
TCP pushes back), and one alone in flight always goes (a body never waits for itself)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sluiceway.store import HeldBytes


class Ticket:
    """One push's share: `add` what it holds as it holds more."""

    __slots__ = ("_held", "bytes")

    def __init__(self, held: HeldBytes, reserved: int) -> None:
        self._held = held
        self.bytes = reserved

    def add(self, n: int) -> None:
        self._held.add(n)
        self.bytes += n


class InflightPushes:
    def __init__(self, held: HeldBytes) -> None:
        """`held.limit`: the bound (0: none); `held` counts the bytes."""
        self.held = held
        self._room: asyncio.Condition | None = None
        self.waited = 0  # pushes that waited for room

    @asynccontextmanager
    async def push(self, declared: int) -> AsyncIterator[Ticket]:
        """Hold `declared` bytes (a push's Content-Length, 0 when unknown) for the push,
        after waiting for room; everything added to the ticket is released at the end."""
        limit = self.held.limit
        reserve = min(declared, limit) if limit else declared
        if limit and self.held.bytes and self.held.bytes + reserve > limit:
            self.waited += 1
            room = self._condition()
            async with room:
                await room.wait_for(
                    lambda: not self.held.bytes or self.held.bytes + reserve <= limit)
                self.held.add(reserve)
        else:
            self.held.add(reserve)
        ticket = Ticket(self.held, reserve)
        try:
            yield ticket
        finally:
            self.held.sub(ticket.bytes)
            if self._room is not None:
                async with self._room:
                    self._room.notify_all()

    def _condition(self) -> asyncio.Condition:
        if self._room is None:
            self._room = asyncio.Condition()  # on the server's event loop, when first needed
        return self._room
