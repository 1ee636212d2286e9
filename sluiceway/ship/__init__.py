"""One delivery path for the in-app client and the agent: push client, consumer loop,
heartbeats and metrics.

Between `sluiceway.buffer` / `sluiceway.wire` and `sluiceway.client` / `sluiceway.agent`:
it imports buffer, wire, model and durable only.

Public API::

    from sluiceway.ship import (DeliveryLoop, Part, PushClient, PushTarget, RetryPolicy,
                                Push, PushCodec, PushDeliverer, HeartbeatSender,
                                QueueCollector, Figures)

    target = PushTarget("http://127.0.0.1:3100", tenant="team-a", bearer="…")
    buf = Buffer(BufferConfig(...), codec=PushCodec())
    loop = DeliveryLoop(buf, PushDeliverer(PushClient(target)), who="agent",
                        target=target.push_url, logger=log, retry=RetryPolicy())
    threading.Thread(target=loop.run).start()   # loop.stop.set() to end it

- `PushTarget` / `PushClient`: a base or full push URL, tenant, basic or bearer auth,
  TLS (CA file, client certificate, no verification), timeout, headers; `push(body,
  content_type)` returns what `sluiceway.wire.classify_push_answer` says the answer means.
- `DeliveryLoop`: take a batch, deliver, ack / nack / spill, retry with backoff and
  `Retry-After`, give up into a counted loss by reason; one `Deliverer` per destination
  (`parts`, `send`, `split`). Logs backend down / recovered, drops started / stopped,
  spill started / drained, with counts and durations.
- `Push` / `PushCodec` / `PushDeliverer`: finished push bodies as queue items.
- `HeartbeatSender`: `sluiceway.model.Heartbeat`s to a Sluiceway server (`final()`:
  one last beat at a clean stop).
- The ledger's producer side: `LossBook` (lost numbers per source and epoch),
  `lost_tail` (which numbers a part that lost N lines held), `groups_of` / `header_of`
  (the `X-Sluiceway-Ledger` header of numbered lines).
- `HeartbeatRelay`: other processes' heartbeats (an agent's reporters) passed on with a
  sender's identity, the newest of each reporter kept while the target does not answer.
- `QueueCollector` / `Figures` / `queue_metrics`: the one Prometheus collector of a
  queue and its delivery (counters present at 0 from the start, push latency histogram
  by status code, last successful push time); `latency_family` / `merge_latency` for an
  owner's alias of that histogram (the agent's Promtail names); `LOSS_REASONS` (with
  `sluiceway.buffer.DROP_REASONS`) names the reasons an owner shows at 0.
"""

from sluiceway.ship._client import PushClient, PushTarget, unreachable
from sluiceway.ship._heartbeat import HEARTBEAT_PATH, HeartbeatSender
from sluiceway.ship._latency import BUCKETS, LatencyHistogram
from sluiceway.ship._ledger import (
    HEADER_BUDGET,
    MAX_LOST_RUNS,
    LossBook,
    groups_of,
    header_of,
    lost_tail,
)
from sluiceway.ship._loop import (
    LOSS_REASONS,
    Deliverer,
    DeliveryLoop,
    DeliveryStats,
    Part,
    RetryPolicy,
)
from sluiceway.ship._metrics import (
    Figures,
    LatencySnapshot,
    QueueCollector,
    latency_family,
    merge_latency,
    queue_metrics,
)
from sluiceway.ship._push import Push, PushCodec, PushDeliverer
from sluiceway.ship._relay import HeartbeatRelay
from sluiceway.ship._watch import Watch

__all__ = [
    "BUCKETS",
    "HEADER_BUDGET",
    "MAX_LOST_RUNS",
    "LossBook",
    "groups_of",
    "header_of",
    "lost_tail",
    "HEARTBEAT_PATH",
    "LOSS_REASONS",
    "Deliverer",
    "DeliveryLoop",
    "DeliveryStats",
    "Figures",
    "HeartbeatRelay",
    "HeartbeatSender",
    "LatencyHistogram",
    "LatencySnapshot",
    "Part",
    "Push",
    "PushClient",
    "PushCodec",
    "PushDeliverer",
    "PushTarget",
    "QueueCollector",
    "RetryPolicy",
    "Watch",
    "latency_family",
    "merge_latency",
    "queue_metrics",
    "unreachable",
]
