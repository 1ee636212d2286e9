"""Decode throughput of ~1 MB push bodies (5000 lines of ~200 bytes, 10 streams), both
to StreamBatches (`decode_push`) and to EntryBlocks (`decode_push_blocks`, the server's
ingest path).

Run: .venv/bin/python -m tests.wire.bench_decode   (not collected by pytest)
"""

from __future__ import annotations

import gzip
import random
import time
from collections.abc import Callable

from sluiceway.model import StreamBatch
from sluiceway.wire import (
    decode_push,
    decode_push_blocks,
    encode_push_json,
    encode_push_protobuf,
)

BASE_NS = 1_795_456_962_000_000_000


def make_batches(n_lines: int = 5000, n_streams: int = 10, seed: int = 7) -> list[StreamBatch]:
    rnd = random.Random(seed)
    words = ["GET", "POST", "/api/v1/users", "/api/v1/orders", "status=200", "status=500",
             "user=alice", "user=bob", "cache=miss", "retry=0", "region=eu-west-1"]
    out = []
    for s in range(n_streams):
        ts, lines = [], []
        for i in range(n_lines // n_streams):
            ts.append(BASE_NS + i * 1_000_003 + s)
            trace = f"{rnd.getrandbits(64):016x}"
            head = f"ts=2026-11-23T18:02:{i % 60:02d}.{i:06d}Z level=info trace={trace}"
            body = " ".join(rnd.choice(words) for _ in range(16))
            lines.append((head + " msg=\"" + body + "\"")[:200].ljust(200, "."))
        out.append(StreamBatch({"job": "bench", "host": f"h{s}", "level": "info"}, ts, lines))
    return out


def best_ms(fn: Callable[[], object], repeat: int = 30) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def main() -> None:
    batches = make_batches()
    payload_json = encode_push_json(batches)
    with_md = [StreamBatch(b.labels, b.ts, b.lines, [{"trace_id": line[40:56]} if i % 2 else None
                                                      for i, line in enumerate(b.lines)])
               for b in batches]
    # Fluent Bit sends one stream object per record.
    per_record = [StreamBatch(b.labels, [t], [line]) for b in batches
                  for t, line in zip(b.ts, b.lines, strict=True)]
    cases = {
        "protobuf+snappy": (encode_push_protobuf(batches), "application/x-protobuf", None),
        "json": (payload_json, "application/json", None),
        "json+gzip": (gzip.compress(payload_json, 6), "application/json", "gzip"),
        "protobuf+md": (encode_push_protobuf(with_md), "application/x-protobuf", None),
        "json+md": (encode_push_json(with_md), "application/json", None),
        "json 1/stream": (encode_push_json(per_record), "application/json", None),
    }
    line_mb = sum(len(line) for b in batches for line in b.lines) / 1e6
    print(f"{sum(map(len, batches))} lines, {line_mb:.2f} MB of line text")
    print("(*+md: every second entry carries structured metadata; "
          "json 1/stream: one stream object per entry, as Fluent Bit sends)")
    for name, (body, ctype, enc) in cases.items():
        want = with_md if name.endswith("md") else per_record if "1/" in name else batches
        assert decode_push(body, ctype, enc) == want
        ms = best_ms(lambda b=body, c=ctype, e=enc: decode_push(b, c, e))
        blocks_ms = best_ms(lambda b=body, c=ctype, e=enc: decode_push_blocks(b, c, e))
        print(f"{name:16s} body {len(body) / 1e6:5.2f} MB  decode {ms:6.2f} ms  "
              f"{line_mb / ms * 1e3:6.0f} MB/s of lines  {len(body) / ms / 1e3:6.0f} MB/s of body"
              f"  | as blocks {blocks_ms:6.2f} ms  {line_mb / blocks_ms * 1e3:6.0f} MB/s of lines")
    encoders = (("encode protobuf", encode_push_protobuf), ("encode json", encode_push_json))
    for name, enc_fn in encoders:
        ms = best_ms(lambda f=enc_fn: f(batches), 10)
        print(f"{name:16s} {ms:6.2f} ms  {line_mb / ms * 1e3:6.0f} MB/s of lines")


if __name__ == "__main__":
    main()
