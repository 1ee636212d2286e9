"""The heartbeat: what an agent or an in-app client reports to a Sluiceway server.

One typed, versioned model for both senders (`sluiceway.ship` builds and sends it) and
for the server (which validates every heartbeat with it and answers 400 with the field
that is wrong). Later work extends this model with new optional fields (a newer sender
talking to an older server has them ignored, not refused); a change that old servers
cannot read bumps `version`.

Every count is in lines (an in-app client's records are its lines).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

HEARTBEAT_VERSION = 1
MAX_TOKEN_LENGTH = 256

Count = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)


class HeartbeatQueue(_Part):
    """The sender's queue (`sluiceway.buffer`), in lines.

    `depth` (waiting in memory) and `high_watermark` never exceed `capacity`, the
    in-memory bound they are shown against; what waits on disk is `spill_lines` (and
    `spill_bytes` of `spill_max_bytes`), what the sender holds is `in_flight`.
    """

    unit: Literal["lines"] = "lines"
    capacity: Count
    depth: Count
    high_watermark: Count = 0
    in_flight: Count = 0
    bytes: Count = 0
    max_bytes: Count = 0
    when_full: Literal["block", "drop", "spill"]
    spill_lines: Count = 0
    spill_bytes: Count = 0
    spill_max_bytes: Count = 0
    spill_full: bool = False
    # How long a producer that can wait (a file reader) has been waiting for room.
    waiting_s: Seconds = 0.0


class HeartbeatLines(_Part):
    """Running totals since the process started."""

    read: Count = 0  # read from inputs (agent) or logged (client)
    enqueued: Count = 0
    shipped: Count = 0
    dropped: Count = 0  # refused or discarded by the queue's policy
    spilled: Count = 0
    lost: Count = 0  # every line that will never arrive, `dropped` included


class HeartbeatBackend(_Part):
    """Where the lines go and how that goes: `ok`, `retrying` (no answer, 429, 5xx) or
    `down` (an answer that means the configuration is wrong: 401, 403, 404, 405)."""

    ok: bool
    state: Literal["ok", "retrying", "down"] = "ok"
    url: str = ""
    last_error: str | None = None
    last_status: int | None = None
    last_success_ts: float | None = None  # Unix seconds of the last accepted push


class HeartbeatFile(_Part):
    """A file an agent tails: how far behind it is, and whether its reader waits for
    room in the queue (block mode, or spill mode while the backend is healthy)."""

    path: str
    lag_bytes: Count = 0  # bytes not yet durable downstream (shipped or spilled)
    # Lines not in the queue yet: read and waiting in the reader, plus those counted past
    # its read offset while it waits; None: not known.
    lag_lines: Count | None = None
    waiting: bool = False


class LedgerEntry(_Part):
    """One numbered producer as this sender sees it (ARCHITECTURE.md §ledger): a
    (`source`, `epoch`), how many numbers it `emitted` (0 .. emitted-1, over the epoch's
    life, restarts included), and what this hop counted `lost` by reason, with the lost
    numbers themselves as `[start, end)` runs when known (`lost_ranges`, at most
    `MAX_LOST_RUNS`; None: not known, or too many)."""

    source: Annotated[str, Field(min_length=1, max_length=256)]
    epoch: Annotated[str, Field(min_length=1, max_length=256)]
    emitted: Count
    lost: dict[str, Count] = {}
    lost_ranges: list[tuple[Count, Count]] | None = None
    # Lineage (a client's file sink and the agent tailing the file): the numbers below
    # `handed_on` were passed to the next hop (written to the file); the numbers below
    # `received_up_to` were read by this hop. What lies between is in the file.
    handed_on: Count | None = None
    received_up_to: Count | None = None


class LedgerGroupReport(_Part):
    """Entries that share one queue: `in_flight` is what that queue holds now, by where
    (`queue`: waiting in memory, `sending`: handed to a push, `disk`: the spill, `file`:
    lines numbered by an earlier run and not read again yet). The ledger spreads it over
    the entries' unsettled numbers in the order listed (newest epoch first)."""

    in_flight: dict[str, Count] = {}
    entries: list[LedgerEntry] = []


MAX_LOST_RUNS = 512


class Heartbeat(_Part):
    """`POST /sluiceway/api/v1/heartbeat`: the last one of each (tenant, id) is a card
    on the pipeline page. `token` is made once per process and proves the card is its."""

    version: Literal[1] = 1  # HEARTBEAT_VERSION
    id: Annotated[str, Field(min_length=1, max_length=512)]
    kind: Literal["agent", "client"]
    token: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_LENGTH)]
    name: str = ""
    host: str = ""
    pid: Count = 0
    ts: float  # Unix seconds when the figures were taken
    interval_s: Annotated[float, Field(gt=0)] = 5.0
    # An agent's own pipeline view (`http://<listen>/`), which keeps working while the
    # server it reports to is down; the server's pipeline page links to it.
    view_url: Annotated[str, Field(max_length=2048)] | None = None
    queue: HeartbeatQueue
    lines: HeartbeatLines = HeartbeatLines()
    lost_by_reason: dict[str, Count] = {}
    spill_bytes: Count = 0  # the same as queue.spill_bytes (older pages read it here)
    backend: HeartbeatBackend | None = None
    latency_us: dict[str, Annotated[float, Field(ge=0)]] | None = None  # client: enqueue_p99
    files: list[HeartbeatFile] = []
    # The ledger (optional): what this sender numbered, lost and holds; `final` on the
    # last heartbeat of a process that stopped cleanly (what it holds on disk stays).
    ledger: list[LedgerGroupReport] | None = None
    final: bool = False
