"""Sluiceway: a logging stack in Python with a Loki-compatible server.

`from sluiceway import get_logger` (and `client`) for the in-app logger; loaded on first
use so that `import sluiceway` stays light for the server and the agent.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "client", "get_async_logger", "get_logger"]


def __getattr__(name: str) -> Any:
    if name == "client":
        return importlib.import_module("sluiceway.client")
    if name in ("get_logger", "get_async_logger"):
        return getattr(importlib.import_module("sluiceway.client"), name)
    raise AttributeError(f"module 'sluiceway' has no attribute {name!r}")
