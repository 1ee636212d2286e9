"""Query scan speed of a real `sluiceway server` over data written by bench/ingest.py.

  python bench/ingest.py --bytes 1GB --keep /tmp/slw-bench/data
  python bench/query.py --data /tmp/slw-bench/data

Measures `{...} |= "needle"` (needle in ~1 line in 100,000, limit above the match count),
cold (fresh server process: empty chunk cache) and warm, and metric queries, in MB/s of
raw log covered.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._data import NEEDLE  # noqa: E402
from tests.procs import ServerProcess  # noqa: E402

# bench/ingest.py writes timestamps from 3 h ago onwards.
WIDE = {"start": str(time.time_ns() - 4 * 3600 * 10**9), "end": str(time.time_ns() + 10**12)}


def raw_bytes(url: str, selector: str) -> int:
    r = httpx.get(f"{url}/loki/api/v1/index/stats", params={"query": selector, **WIDE})
    return int(r.json()["bytes"])


def timed(url: str, path: str, params: dict[str, str]) -> tuple[float, dict]:  # type: ignore[type-arg]
    t0 = time.perf_counter()
    r = httpx.get(f"{url}{path}", params={**WIDE, **params}, timeout=900)
    dt = time.perf_counter() - t0
    if r.status_code != 200:
        raise SystemExit(f"{params['query']}: {r.status_code} {r.text[:300]}")
    return dt, r.json()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True, help="data dir from bench/ingest.py")
    args = ap.parse_args()
    cfg = args.data.parent / "bench.yaml"
    cfg.write_text("limits:\n  max_query_length: 0s\n")
    cases = [
        ("filter  |= needle (all streams)", "/loki/api/v1/query_range",
         f'{{env=~"prod|staging"}} |= "{NEEDLE}"', '{env=~"prod|staging"}', {"limit": "5000"}),
        ("filter  |~ regex (json streams)", "/loki/api/v1/query_range",
         '{job="api"} |~ "needle-[0-9a-f]{6}"', '{job="api"}', {"limit": "5000"}),
        ("metric  sum by (level) count_over_time | json | level=error",
         "/loki/api/v1/query_range",
         'sum by (level) (count_over_time({job="api"} | json | level="error" [1m]))',
         '{job="api"}', {"step": "60"}),
        ("metric  sum(count_over_time({env=\"prod\"}[5m]))", "/loki/api/v1/query_range",
         'sum(count_over_time({env="prod"}[5m]))', '{env="prod"}', {"step": "300"}),
    ]
    for phase in ("cold", "warm"):
        srv = ServerProcess(args.data, config=cfg).start()
        try:
            for name, path, q, sel, extra in cases:
                covered = raw_bytes(srv.url, sel)
                dt, body = timed(srv.url, path, {"query": q, **extra})
                res = body["data"]["result"]
                n = sum(len(s.get("values", [])) for s in res)
                if phase == "warm":  # second run of the same process: chunk cache is warm
                    dt, body = timed(srv.url, path, {"query": q, **extra})
                print(f"{phase:4}  {name:58} {dt:7.2f} s  {covered / 1e6 / dt:8.0f} MB/s  "
                      f"({covered / 1e6:.0f} MB covered, {n} results)", flush=True)
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
