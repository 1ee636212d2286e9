"""The HTTP server: Loki-compatible ingest and query API, metrics, heartbeats, UI.

The app itself is built by `sluiceway.server._app.create_app`; importing this package stays
light so the CLI and the config can load without the query engine.
"""

from sluiceway.server._config import Config, ConfigError, load_config

__all__ = ["Config", "ConfigError", "load_config"]
