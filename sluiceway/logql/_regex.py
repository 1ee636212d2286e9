"""RE2 compilation without RE2's own stderr logging, and readable error text."""

from __future__ import annotations

from typing import Any

import re2

_QUIET = re2.Options()
_QUIET.log_errors = False


def compile_re(pattern: str) -> Any:
    """`re2.compile` that reports errors only by raising `re2.error`."""
    return re2.compile(pattern, _QUIET)


def error_text(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
