"""The HTTP server: Loki-compatible ingest and query API, metrics, heartbeats, UI."""

from sluiceway.server._app import create_app
from sluiceway.server._config import Config, ConfigError, load_config

__all__ = ["Config", "ConfigError", "create_app", "load_config"]
