"""The logger facade: `log.info("msg", key=value)`, `bind`, custom levels, async flavour.

Every public method returns None and never raises: a logging fault is counted in
`stats()["internal_errors"]`, never turned into the caller's exception.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

from sluiceway.client._levels import LEVELS
from sluiceway.client._runtime import Runtime, runtime, state

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def format_exc(exc_info: Any) -> str | None:
    """Formatted traceback for `exc_info=True`, an exception, or a sys.exc_info() tuple."""
    if exc_info is None or exc_info is False:
        return None
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if not isinstance(exc_info, tuple) or exc_info[0] is None:
        return None
    return "".join(traceback.format_exception(*exc_info)).rstrip()


class Logger:
    """A named logger with bound context. Cheap to create; `bind` returns a new one."""

    __slots__ = ("name", "_bound")

    def __init__(self, name: str = "root", bound: dict[str, Any] | None = None) -> None:
        self.name = name
        self._bound = bound or None

    def bind(self, **fields: Any) -> Logger:
        return Logger(self.name, {**(self._bound or {}), **fields})

    def unbind(self, *keys: str) -> Logger:
        return Logger(self.name, {k: v for k, v in (self._bound or {}).items()
                                  if k not in keys})

    @property
    def context(self) -> dict[str, Any]:
        return dict(self._bound or {})

    def _emit(self, rt: Runtime, level: str, msg: Any, args: tuple[Any, ...],
              fields: dict[str, Any], exc_info: Any = None) -> None:
        try:
            if not isinstance(msg, str):
                msg = str(msg)
            if args:
                msg = msg % args
            if "exc_info" in fields:
                exc_info = fields.pop("exc_info")
            rt.emit(level, self.name, msg, self._bound, fields,
                    format_exc(exc_info) if exc_info is not None else None)
        except Exception:
            rt.internal_errors += 1

    # One method per level, written out: no extra call layer on the hot path.
    def trace(self, msg: Any, *args: Any, **fields: Any) -> None:
        rt = state.rt or runtime()
        if rt.min_level <= 5:
            self._emit(rt, "TRACE", msg, args, fields)

    def debug(self, msg: Any, *args: Any, **fields: Any) -> None:
        rt = state.rt or runtime()
        if rt.min_level <= 10:
            self._emit(rt, "DEBUG", msg, args, fields)

    def info(self, msg: Any, *args: Any, **fields: Any) -> None:
        rt = state.rt or runtime()
        if rt.min_level <= 20:
            self._emit(rt, "INFO", msg, args, fields)

    def audit(self, msg: Any, *args: Any, **fields: Any) -> None:
        rt = state.rt or runtime()
        if rt.min_level <= 25:
            self._emit(rt, "AUDIT", msg, args, fields)

    def warning(self, msg: Any, *args: Any, **fields: Any) -> None:
        rt = state.rt or runtime()
        if rt.min_level <= 30:
            self._emit(rt, "WARNING", msg, args, fields)

    warn = warning

    def error(self, msg: Any, *args: Any, **fields: Any) -> None:
        rt = state.rt or runtime()
        if rt.min_level <= 40:
            self._emit(rt, "ERROR", msg, args, fields)

    def security(self, msg: Any, *args: Any, **fields: Any) -> None:
        rt = state.rt or runtime()
        if rt.min_level <= 45:
            self._emit(rt, "SECURITY", msg, args, fields)

    def critical(self, msg: Any, *args: Any, **fields: Any) -> None:
        rt = state.rt or runtime()
        if rt.min_level <= 50:
            self._emit(rt, "CRITICAL", msg, args, fields)

    def exception(self, msg: Any, *args: Any, **fields: Any) -> None:
        """ERROR with the traceback of the exception being handled."""
        rt = state.rt or runtime()
        if rt.min_level <= 40:
            self._emit(rt, "ERROR", msg, args, fields, exc_info=True)

    def log(self, level: str | int, msg: Any, *args: Any, **fields: Any) -> None:
        rt = state.rt or runtime()
        try:
            name, number = _resolve(level)
        except ValueError:
            rt.internal_errors += 1
            return
        if number >= rt.min_level:
            self._emit(rt, name, msg, args, fields)

    def is_enabled_for(self, level: str | int) -> bool:
        return _resolve(level)[1] >= (state.rt or runtime()).min_level

    def __getattr__(self, attr: str) -> Callable[..., None]:
        # custom levels added with add_level(): log.notice(...), log.fatal(...)
        level = attr.upper()
        if attr.islower() and level in LEVELS:
            def method(msg: Any, *args: Any, **fields: Any) -> None:
                self.log(level, msg, *args, **fields)
            return method
        raise AttributeError(attr)


def _resolve(level: str | int) -> tuple[str, int]:
    if isinstance(level, int):
        from sluiceway.client._levels import level_name

        return level_name(level), level
    name = level.upper()
    if name not in LEVELS:
        raise ValueError(f"unknown level {level!r}")
    return name, LEVELS[name]


class AsyncLogger:
    """`await log.info(...)`: the same non-blocking enqueue; under `when_full="block"`
    the put runs in a thread so a full queue never stalls the event loop."""

    __slots__ = ("_log",)

    def __init__(self, logger: Logger) -> None:
        self._log = logger

    @property
    def name(self) -> str:
        return self._log.name

    def bind(self, **fields: Any) -> AsyncLogger:
        return AsyncLogger(self._log.bind(**fields))

    async def log(self, level: str | int, msg: Any, *args: Any, **fields: Any) -> None:
        rt = state.rt or runtime()
        if rt.settings.when_full == "block":
            await asyncio.to_thread(self._log.log, level, msg, *args, **fields)
        else:
            self._log.log(level, msg, *args, **fields)

    async def debug(self, msg: Any, *args: Any, **fields: Any) -> None:
        await self.log("DEBUG", msg, *args, **fields)

    async def info(self, msg: Any, *args: Any, **fields: Any) -> None:
        await self.log("INFO", msg, *args, **fields)

    async def warning(self, msg: Any, *args: Any, **fields: Any) -> None:
        await self.log("WARNING", msg, *args, **fields)

    async def error(self, msg: Any, *args: Any, **fields: Any) -> None:
        await self.log("ERROR", msg, *args, **fields)

    async def critical(self, msg: Any, *args: Any, **fields: Any) -> None:
        await self.log("CRITICAL", msg, *args, **fields)

    async def audit(self, msg: Any, *args: Any, **fields: Any) -> None:
        await self.log("AUDIT", msg, *args, **fields)

    async def security(self, msg: Any, *args: Any, **fields: Any) -> None:
        await self.log("SECURITY", msg, *args, **fields)

    async def exception(self, msg: Any, *args: Any, **fields: Any) -> None:
        fields.setdefault("exc_info", sys.exc_info())
        await self.log("ERROR", msg, *args, **fields)


def get_logger(name: str = "root", **bound: Any) -> Logger:
    return Logger(name, bound or None)


def get_async_logger(name: str = "root", **bound: Any) -> AsyncLogger:
    return AsyncLogger(Logger(name, bound or None))
