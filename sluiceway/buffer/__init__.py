"""One bounded queue for the in-app client and the agent: block, drop or spill to disk.

Public API::

    from sluiceway.buffer import Buffer, BufferConfig

    buf = Buffer(BufferConfig(max_items=3200, max_bytes=16 << 20, when_full="spill",
                              spill_dir=Path("agent-data/spill")), name="agent")
    buf.put(item, size=len(line), count=1, protected=False, tag="info")  # -> bool
    batch = buf.get_batch(max_items=1000, max_bytes=1 << 20, max_wait=1.0)  # or None
    ...deliver batch.items...
    buf.ack(batch)            # downstream made it durable; spill segments get freed
    buf.nack(batch)           # retry later, batch goes back to the head
    buf.nack(batch, spill=True)  # downstream is failing: move memory to disk now
    buf.stats(); buf.join(timeout); buf.close()

- `BufferConfig.when_full`: `block` (wait; `block_timeout` then drop, reason `timeout`),
  `drop` (`drop="newest"` reason `full`, or `"oldest"` reason `oldest`; `drop_wait`
  waits first), `spill` (overflow to framed, CRC-checked segment files under
  `spill_dir`, capped by `spill_max_bytes`, then `when_spill_full` block | drop).
- Protected items evict the oldest unprotected queued item (reason `evicted`).
  `DROP_REASONS` lists every reason a drop is counted under.
- Items are opaque; spill encodes them with a `Codec` (default `OrjsonCodec`).
- `count`: the units an item holds (the agent's batches hold lines); every bound and
  figure counts units. `can_wait=True`: the producer keeps its own copy (a file), so in
  spill mode it waits for room while the consumer is healthy instead of spilling.
- `on_spilled(items)` is called from the spiller thread once items are on disk
  (fsynced under `fsync="always"`), for owners that advance positions on durability;
  `on_dropped(items, reason)` for accepted items a policy discarded (oldest, evicted).
- `sluiceway.ship` drains it (`DeliveryLoop`) and exports its figures
  (`QueueCollector`).
- A spill directory has one owner: a second live process opening it gets
  `SpillDirLocked` (an flock, released by the kernel even on SIGKILL); a forked
  child that will not use an inherited buffer calls `buf.forget_in_child()`.
"""

from sluiceway.buffer._buffer import Batch, Buffer
from sluiceway.buffer._codec import Codec, OrjsonCodec
from sluiceway.buffer._config import (
    DROP_REASONS,
    BufferConfig,
    DropWhich,
    FsyncPolicy,
    WhenFull,
    WhenSpillFull,
)
from sluiceway.buffer._segments import SpillDirLocked, SpillLog

__all__ = [
    "DROP_REASONS",
    "Batch",
    "Buffer",
    "BufferConfig",
    "Codec",
    "DropWhich",
    "FsyncPolicy",
    "OrjsonCodec",
    "SpillDirLocked",
    "SpillLog",
    "WhenFull",
    "WhenSpillFull",
]
