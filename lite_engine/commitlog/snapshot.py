"""The commit log's snapshot files: engine state as of one LSN, written atomically and
checked (magic, LSN, length, CRC) when read back."""

from __future__ import annotations

import os
import re
import struct
from typing import NamedTuple
from zlib import crc32

from .errors import LogWriteError
from .segment_files import TEMP_SUFFIX, fsync_dir, unlink_quietly

# Snapshot file: magic 8s | crc u32 | lsn u64 | len u64 | data[len]; crc over lsn..data.
SNAP_HEADER = struct.Struct("<8sIQQ")
SNAP_MAGIC = b"TBSNAP\x00\x01"
SNAP_CRC_FROM = 12
SNAPSHOT_RE = re.compile(r"^snapshot-(\d{20})\.snap$")


class Snapshot(NamedTuple):
    lsn: int
    data: bytes


def read_snapshot(path: str, lsn: int) -> tuple[bytes, str | None]:
    """Return (data, None) for a valid snapshot, or (b"", reason)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < SNAP_HEADER.size:
        return b"", f"short header ({len(blob)} bytes)"
    magic, crc, stored_lsn, size = SNAP_HEADER.unpack_from(blob)
    if magic != SNAP_MAGIC:
        return b"", f"bad magic {magic!r}"
    if stored_lsn != lsn or len(blob) != SNAP_HEADER.size + size:
        return b"", f"header says LSN {stored_lsn} and {size} bytes; file is LSN {lsn} with {len(blob)} bytes"
    if crc32(memoryview(blob)[SNAP_CRC_FROM:]) != crc:
        return b"", "CRC mismatch"
    return blob[SNAP_HEADER.size :], None


def write_snapshot_file(directory: str, path: str, lsn: int, data: bytes) -> None:
    """Temp file, fsync, rename over, fsync the directory: readers see old or new, whole."""
    # Snapshot layout (see SNAP_HEADER): magic | crc u32 | lsn u64 | len u64 | data.
    lsn_len = struct.pack("<QQ", lsn, len(data))
    header = SNAP_HEADER.pack(SNAP_MAGIC, crc32(data, crc32(lsn_len)), lsn, len(data))
    temp = path + TEMP_SUFFIX
    try:
        with open(temp, "wb") as f:
            f.write(header)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        fsync_dir(directory)
    except OSError as exc:
        unlink_quietly(temp)
        raise LogWriteError(path, "snapshot write", exc) from exc
