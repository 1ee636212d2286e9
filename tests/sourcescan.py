"""Parse the project's own source for tests that check its structure (import layers,
config ownership, the distributor's statelessness).

The cyclic garbage collector is off while a file is parsed: CPython 3.11 raises
`SystemError: AST constructor recursion depth mismatch` when a collection during
`ast.parse` runs a finalizer that runs Python code (an asyncio task of an earlier test's
event loop, destroyed while pending, logs from its `__del__`)."""

from __future__ import annotations

import ast
import gc
from pathlib import Path


def parse_source(path: Path | str) -> ast.Module:
    text = Path(path).read_text()
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(text, str(path))
    finally:
        if enabled:
            gc.enable()
