"""The commit log's record framing, and the scan that reads records back from a segment image.

Record layout: see CommitLog.append, where records are encoded.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from zlib import crc32

LEN_CRC = struct.Struct("<II")
TYPE_LSN = struct.Struct("<BQ")
HEADER = struct.Struct("<IIBQ")
CRC_FROM = LEN_CRC.size  # the CRC covers bytes [8, 17 + len) of a record
LSN_AT = LEN_CRC.size + 1  # where a record's LSN sits in its header
MAX_PAYLOAD_LIMIT = (1 << 32) - 1


class RecordScan:
    """Walks the records of one segment image; stops at the first bad one.

    After iteration, `offset` is the end of the last good record, `next_lsn` the LSN the
    next record should have, `problem` says why the walk stopped early (None at EOF) and
    `bad_end` where the bad record claims to end.
    """

    def __init__(self, data: bytes, base: int) -> None:
        self.data, self.offset, self.next_lsn = data, 0, base
        self.problem: str | None = None
        self.bad_end = 0

    @property
    def torn_tail(self) -> bool:
        """Whether the bad record is the last thing in the file: a write cut short by a crash
        (or the zeros a file system may leave past it). Anything else is corruption."""
        return self.bad_end >= len(self.data) or not any(memoryview(self.data)[self.bad_end:])

    def __iter__(self) -> Iterator[tuple[int, int, memoryview]]:
        data, end = memoryview(self.data), len(self.data)
        while self.offset < end:
            record = self._decode(data, self.offset, end)
            if record is None:
                return
            rtype, payload_end = record
            yield self.next_lsn, rtype, data[self.offset + HEADER.size : payload_end]
            self.offset, self.next_lsn = payload_end, self.next_lsn + 1

    def _decode(self, data: memoryview, off: int, end: int) -> tuple[int, int] | None:
        if end - off < HEADER.size:
            return self._stop(f"torn header ({end - off} of {HEADER.size} bytes)", end)
        size, crc, rtype, lsn = HEADER.unpack_from(data, off)
        payload_end = off + HEADER.size + size
        if payload_end > end:
            follower = self._follower(off + HEADER.size, end)
            if follower is not None:    # a length field gone bad, not a write cut short
                return self._stop(f"a length of {size} bytes runs past the end of the file, but the "
                                  f"record of LSN {self.next_lsn + 1} follows at offset {follower}", follower)
            return self._stop(f"torn payload ({end - off - HEADER.size} of {size} bytes)", end)
        if crc32(data[off + CRC_FROM : payload_end]) != crc:
            return self._stop("CRC mismatch", payload_end)
        if lsn != self.next_lsn:
            return self._stop(f"LSN {lsn} where {self.next_lsn} was expected", payload_end)
        return rtype, payload_end

    def _follower(self, start: int, end: int) -> int | None:
        """Offset of a sound record of the next LSN at or after `start`, if one is there. A crash
        cuts only the last write short, so a record that claims to run past the end of the file
        while the next one follows it was damaged in place: corruption, not a torn tail."""
        wanted = (self.next_lsn + 1).to_bytes(8, "little")
        at = self.data.find(wanted, start + LSN_AT)
        while at != -1:
            candidate = at - LSN_AT
            if candidate + HEADER.size <= end:
                size, crc, _, _ = HEADER.unpack_from(self.data, candidate)
                payload_end = candidate + HEADER.size + size
                if payload_end <= end and crc32(memoryview(self.data)[candidate + CRC_FROM:payload_end]) == crc:
                    return candidate
            at = self.data.find(wanted, at + 1)
        return None

    def _stop(self, reason: str, bad_end: int) -> None:
        self.problem, self.bad_end = reason, bad_end
        return None
