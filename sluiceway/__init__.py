"""Sluiceway: a logging stack in Python with a Loki-compatible server."""

__version__ = "0.1.0"
