"""The commit log's segment files: their naming, and the OS calls that write, fsync, cut
back and remove them.

Every fsync of the log goes through `fsync_segments`, and callers reach it as
`segment_files.fsync_segments` (not an imported name) so that tests and benches can wrap the
real call in one place; `_fdatasync` is the one hook that counts the system calls.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from dataclasses import dataclass

from .. import metrics
from .errors import LogWriteError

_log = logging.getLogger("lite_engine.commitlog")

SEGMENT_RE = re.compile(r"^(\d{20})\.log$")
TEMP_SUFFIX = ".tmp"
_fdatasync = getattr(os, "fdatasync", os.fsync)


@dataclass(eq=False, slots=True)
class Segment:
    base: int  # first LSN, also the file name
    path: str
    prev: Segment | None = None  # must be fsynced before this file is created
    fd: int | None = None
    size: int = 0  # bytes appended (buffered or written)
    written: int = 0  # bytes handed to the OS
    synced: int = 0  # bytes covered by an fsync


def numbered_files(directory: str, pattern: re.Pattern[str]) -> list[int]:
    return [int(m.group(1)) for m in map(pattern.match, os.listdir(directory)) if m]


NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def positions(chunks: list[tuple[Segment, bytearray]]) -> dict[Segment, int]:
    """Bytes written to each segment before a write of `chunks`: where a failed write is cut back."""
    return {seg: seg.written for seg, _ in chunks}


def probe_room(seg: Segment, size: int) -> None:
    """Reserve `size` bytes past the end of `seg`, then give them back: ENOSPC if there is no room."""
    if seg.fd is None:
        return
    try:
        os.posix_fallocate(seg.fd, seg.written, size)
        os.ftruncate(seg.fd, seg.written)
    except OSError as exc:
        raise LogWriteError(seg.path, "write", exc) from exc


def write_all(seg: Segment, buf: bytearray) -> None:
    done = 0
    try:
        view = memoryview(buf)
        while done < len(view):
            done += os.write(seg.fd, view[done:])
    except OSError as exc:
        raise LogWriteError(seg.path, "write", exc) from exc
    finally:
        seg.written += done


def fsync_segments(targets: list[tuple[Segment, int]]) -> None:
    for seg, written in targets:
        started = time.perf_counter()
        try:
            _fdatasync(seg.fd)
        except OSError as exc:
            raise LogWriteError(seg.path, "fsync", exc) from exc
        metrics.FSYNC.observe(time.perf_counter() - started)
        seg.synced = max(seg.synced, written)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def close_fd(seg: Segment) -> None:
    if seg.fd is None:
        return
    fd, seg.fd = seg.fd, None
    try:
        os.close(fd)
    except OSError as exc:
        _log.warning("closing commit log segment %s failed: %s", seg.path, exc)


def unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise LogWriteError(path, "unlink", exc) from exc



def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
