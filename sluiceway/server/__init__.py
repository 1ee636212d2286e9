"""The HTTP server: Loki-compatible ingest and query API, metrics, heartbeats, UI.

The app itself is built by `sluiceway.server._app.create_app`; importing this package stays
light so the CLI and the config can load without the query engine: `serve` and
`StartupError` (which need uvicorn and the store) load on first use.
"""

import importlib
from typing import TYPE_CHECKING, Any

from sluiceway.server._config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from sluiceway.server._run import StartupError, serve

_LAZY = {"serve": "sluiceway.server._run", "StartupError": "sluiceway.server._run"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sluiceway.server' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["Config", "ConfigError", "StartupError", "load_config", "serve"]
