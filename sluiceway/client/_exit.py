"""The last flush: whichever comes first of interpreter exit (atexit), SIGTERM/SIGINT, or
an ASGI lifespan shutdown runs `Runtime.shutdown` once, bounded by `shutdown_timeout`.

Why all three: uvicorn and gunicorn's UvicornWorker catch SIGTERM for their graceful
shutdown, then restore the handler they found and raise the signal again, so a process
whose SIGTERM handler is the default dies right there and atexit never runs.
`configure()` therefore installs (main thread only) a handler for each of SIGTERM and
SIGINT whose current handler is the default action (SIG_DFL): servers started after the
app is imported find it, and call it at the end of their own shutdown. It flushes, then
ends the process as the default action would. Handlers the app or its server had already
installed are left in place (Python's SIGINT still raises KeyboardInterrupt, and the
exit flush runs at exit); ignored signals stay ignored. A handler the app installs later
simply replaces ours; atexit and the lifespan still flush.

The flush runs on a helper thread, not inside the handler: a signal handler runs on the
main thread between two bytecodes, possibly while that thread holds a buffer lock in a
log call, which the flush needs. The handler returns at once; the helper flushes and
sends the signal again; the handler, seeing the flush done, restores the default action
and re-raises. The helper is not a daemon, so an interpreter exiting meanwhile waits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
from types import FrameType

from sluiceway.client._runtime import Settings, install, state

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_lock = threading.RLock()  # re-entrant: one signal's handler can interrupt another's
_flushing: set[int] = set()  # signals whose helper is flushing before the exit
_flushed: set[int] = set()  # signals to act on now: the flush is done


def install_signal_handlers() -> None:
    """Install the flushing handler for SIGTERM and SIGINT where the default action
    would kill the process. A no-op off the main thread (Python allows handlers only
    there) and for signals the app or a library already handles or ignores."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _SIGNALS:
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, _on_signal)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    rt = state.rt
    if rt is not None and rt.shutting_down_here():
        return  # this thread is flushing for an exit already: let it finish
    with _lock:
        start = signum not in _flushed and signum not in _flushing and \
            rt is not None and not rt.closed
        if start:
            _flushing.add(signum)
        wait = signum in _flushing
    if start:
        threading.Thread(target=_flush_then_resend, args=(signum,), name="sluiceway-exit",
                         daemon=False).start()
    if wait:
        return  # the helper sends the signal again once the flush is done
    # Flushed, or nothing to flush: what the signal does without us.
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def _flush_then_resend(signum: int) -> None:
    try:
        rt = state.rt
        if rt is not None:
            rt.shutdown()
    finally:
        with _lock:
            _flushing.discard(signum)
            _flushed.add(signum)
        # to the main thread: the handler runs there, and a main thread asleep in a
        # system call is woken only by a signal sent to it
        main = threading.main_thread().ident
        if main is not None:
            signal.pthread_kill(main, signum)
        else:
            os.kill(os.getpid(), signum)


def drain_for_exit() -> None:
    """The app is shutting down (ASGI lifespan): flush within `shutdown_timeout` and
    stop, as at exit. A later lifespan startup in the same process (test clients run
    several) starts the pipeline again with the same settings."""
    rt = state.rt
    if rt is not None and not rt.closed:
        rt.shutdown()
        rt.stopped_by_lifespan = True


def revive_after_lifespan() -> None:
    """Lifespan startup: restart a pipeline that a lifespan shutdown stopped."""
    rt = state.rt
    if rt is not None and rt.closed and rt.stopped_by_lifespan:
        settings: Settings = rt.settings
        install(settings)


def _at_exit() -> None:
    rt = state.rt
    if rt is not None:
        # exiting anyway: never turn a clean exit into a traceback
        with contextlib.suppress(Exception):
            rt.shutdown()


atexit.register(_at_exit)
