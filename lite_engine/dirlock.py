"""An exclusive lock on the engine's data directory: one engine per directory, whatever process.

The lock is an flock on `LOCK` inside the directory, which holds the owner's pid so that a
refused opener can name it. The kernel drops the lock when the owner closes it or dies, so a
crashed engine never leaves a stale lock behind (the file and its old pid may stay: harmless).
"""

from __future__ import annotations

import fcntl
import os

from .errors import DataDirLockedError

LOCK_NAME = "LOCK"


class DirLock:
    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, LOCK_NAME)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise DataDirLockedError naming the process that holds it."""
        os.makedirs(self.directory, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise DataDirLockedError(self.directory, holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)   # closing the only descriptor drops the flock


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None
