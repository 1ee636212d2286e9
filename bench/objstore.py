"""Object store backends side by side: put / put_many / get / get_range / list throughput
of `LocalDir` (a temp dir), `S3Bucket` (moto's S3-compatible server, in memory, a Python
process) and `JetStreamBucket` (`nats-server -js`, file storage, 1 replica), each server
a process on a loopback port of this machine.

Figures, not assertions: moto is a test server, not S3, so its column measures moto plus
the client; what it shows about the client is the CPU it costs per request.

    python bench/objstore.py [--size 1048576] [--count 64] [--small 400]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sluiceway.store import JetStreamBucket, LocalDir, ObjectStore, S3Bucket  # noqa: E402
from tests.objservers import (  # noqa: E402
    S3_KEY_ID,
    S3_REGION,
    S3_SECRET,
    MotoS3,
    NatsJetStream,
    nats_server_binary,
)


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and this process' CPU seconds of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def bench(name: str, store: ObjectStore, size: int, count: int, small: int,
          only_ranges: bool = False) -> list[str]:
    """Rows of the table for one backend; `only_ranges`: objects put, then only the
    get_range row (for a second configuration of the same backend)."""
    rnd = random.Random(1)
    big = [os.urandom(size) for _ in range(count)]
    tiny = [os.urandom(16 << 10) for _ in range(small)]
    rows: list[str] = []

    def row(op: str, n: int, nbytes: int, wall: float, cpu: float) -> None:
        mbs = f"{nbytes / wall / 1e6:8.1f}" if nbytes else "       -"
        rows.append(f"| {name} | {op} | {n} | {n / wall:9.0f} | {mbs} | "
                    f"{cpu / n * 1e3:6.2f} |")

    def put_one() -> None:
        for i, d in enumerate(big):
            store.put(f"bench/big/{i:05d}.chunk", d)

    w, c = _timed(put_one)
    if not only_ranges:
        row(f"put {size >> 10} KiB", count, size * count, w, c)
    reads = 4 * count
    offsets = [rnd.randrange(0, size - 4096) for _ in range(reads)]

    def ranges() -> None:
        for i, off in enumerate(offsets):
            store.get_range(f"bench/big/{i % count:05d}.chunk", off, 4096)

    if only_ranges:
        w, c = _timed(ranges)
        row("get_range 4 KiB", reads, 4096 * reads, w, c)
        store.delete_many([f"bench/big/{i:05d}.chunk" for i in range(count)])
        return rows
    w, c = _timed(lambda: store.put_many([(f"bench/small/{i:05d}.chunk", d)
                                          for i, d in enumerate(tiny)]))
    row("put_many 16 KiB", small, (16 << 10) * small, w, c)

    def get_all() -> None:
        for i in range(count):
            store.get(f"bench/big/{i:05d}.chunk")

    w, c = _timed(get_all)
    row(f"get {size >> 10} KiB", count, size * count, w, c)
    w, c = _timed(ranges)
    row("get_range 4 KiB", reads, 4096 * reads, w, c)
    lists = 20
    found = [0]

    def list_all() -> None:
        for _ in range(lists):
            found[0] = len(store.list("bench/"))

    w, c = _timed(list_all)
    rows.append(f"| {name} | list ({found[0]} objects) | {lists} | {lists / w:9.1f} | "
                f"       - | {c / lists * 1e3:6.2f} |")
    store.delete_many([f"bench/big/{i:05d}.chunk" for i in range(count)]
                      + [f"bench/small/{i:05d}.chunk" for i in range(small)])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1 << 20, help="bytes per large object")
    ap.add_argument("--count", type=int, default=64, help="large objects")
    ap.add_argument("--small", type=int, default=400, help="16 KiB objects (put_many)")
    args = ap.parse_args()
    binary = nats_server_binary()
    if binary is None:
        sys.exit("nats-server is missing: run scripts/install-system-deps.sh")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.python_implementation()} {platform.python_version()}")
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="objbench-") as tmp:
        t = Path(tmp)
        rows += bench("LocalDir", LocalDir(t / "local"), args.size, args.count, args.small)
        s3srv = MotoS3(t / "moto")
        nats = NatsJetStream(t / "nats", binary)
        try:
            s3 = S3Bucket(s3srv.create_bucket(), endpoint=s3srv.endpoint, region=S3_REGION,
                          access_key_id=S3_KEY_ID, secret_access_key=S3_SECRET)
            rows += bench("S3Bucket (moto)", s3, args.size, args.count, args.small)
            s3.close()
            js = JetStreamBucket(nats.url, "bench")
            rows += bench("JetStreamBucket (R1)", js, args.size, args.count, args.small)
            js.close()
            # Its get_range above is served by its cache of whole objects after the first
            # read (one metadata request per call); without the cache each is a whole get.
            js = JetStreamBucket(nats.url, "bench-nocache", cache_bytes=0)
            rows += bench("JetStreamBucket (R1, no cache)", js, args.size, args.count,
                          args.small, only_ranges=True)
            js.close()
        finally:
            s3srv.stop()
            nats.stop()
    print("| backend | operation | calls | calls/s | MB/s | client CPU ms/call |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
