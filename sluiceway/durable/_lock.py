"""One owner per directory: an exclusive `flock` on a lock file that holds the owner's
pid. The kernel drops the lock when the owner exits, SIGKILL included."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class DirLocked(RuntimeError):
    """Another live process holds the directory."""

    def __init__(self, directory: Path, pid: int | None) -> None:
        self.directory = directory
        self.pid = pid
        who = f" (pid {pid})" if pid else ""
        super().__init__(f"{directory} is in use by another process{who}")


class DirLock:
    """A held lock; `close()` releases it (in a forked child: drops the inherited
    descriptor, which leaves the parent's lock alone)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def lock_dir(directory: str | os.PathLike[str], name: str = "lock",
             mode: int = 0o644) -> DirLock:
    """Take `directory/name` exclusively or raise `DirLocked` at once (never waits)."""
    d = Path(directory)
    path = d / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        raise DirLocked(d, pid) from None
    except BaseException:
        os.close(fd)
        raise
    with contextlib.suppress(OSError):  # the pid is for messages only
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DirLock(path, fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
