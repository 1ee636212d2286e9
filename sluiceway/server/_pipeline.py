"""The last heartbeat of every agent and in-app client reporting to this server."""

from __future__ import annotations

import threading
import time
from typing import Any


class PipelineRegistry:
    def __init__(self, stale_factor: float = 3.0, forget_after_s: float = 24 * 3600) -> None:
        self.stale_factor = stale_factor
        self.forget_after_s = forget_after_s
        self._reports: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def record(self, report: dict[str, Any]) -> None:
        with self._lock:
            self._reports[str(report["id"])] = (time.time(), report)

    def snapshot(self) -> list[dict[str, Any]]:
        now = time.time()
        out: list[dict[str, Any]] = []
        with self._lock:
            for key in [k for k, (t, _) in self._reports.items() if now - t > self.forget_after_s]:
                del self._reports[key]
            for received, rep in self._reports.values():
                interval = float(rep.get("interval_s") or 5.0)
                age = now - received
                out.append({**rep, "received_at": received, "age_s": round(age, 3),
                            "stale": age > self.stale_factor * interval})
        out.sort(key=lambda r: (r.get("kind", ""), r.get("name", ""), r["id"]))
        return out
