"""Durable file operations: the lowest layer (stdlib only, imports no other sluiceway
package), shared by `store`, `buffer`, `agent` and `client`.

A file is durably in place only when its data is synced, it is renamed to its name, and
the directory holding that name is synced: without the last step a power cut can take a
rename back after the data it replaced (a WAL segment, a spill record) was released.

- `atomic_write(path, data)`: temp file in the same directory, fsync, rename, fsync of
  the directory. Readers see the old file or the new one, never a mix.
- `write_files([(path, data), ...])`: the same for many files at once, with the syncs
  shared (one `syncfs` for the data where Linux has it, one fsync per directory); each
  file succeeds or fails on its own and a failed one leaves nothing behind.
- `replace(src, dst)`: rename into place and sync the directory (files written
  incrementally, then moved).
- `fsync_dir(path)`, `ensure_dir(path)` (mkdir -p whose new entries are synced).
- `lock_dir(directory)`: an exclusive `flock` on a lock file holding the owner's pid;
  `DirLocked` names the directory and that pid.
"""

from sluiceway.durable._files import (
    TMP_SUFFIX,
    atomic_write,
    ensure_dir,
    fsync_dir,
    remove_temp_files,
    replace,
    write_files,
)
from sluiceway.durable._lock import DirLock, DirLocked, lock_dir

__all__ = ["TMP_SUFFIX", "DirLock", "DirLocked", "atomic_write", "ensure_dir", "fsync_dir",
           "lock_dir", "remove_temp_files", "replace", "write_files"]
