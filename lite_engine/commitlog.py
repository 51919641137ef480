"""Durable, segmented, append-only commit log of the embedded engine.

The engine hands us opaque payloads tagged with a small record type; we assign LSNs
(consecutive ints), store them in segment files named by their first LSN, and make them
durable according to an fsync policy. A snapshot file lets the engine restart from its
state at some LSN and drop the segments it covers.

Exceptions::

    CommitLogError
    ├── CorruptLogError      bad data found where it cannot be a torn tail (path, offset, reason)
    ├── LogWriteError        an I/O error; every later append/sync raises it again, until
    │                        `retry()` writes the pending records (only for a full disk)
    ├── RecordTooLargeError  payload above max_payload (size, limit)
    └── LogClosedError       append/sync on a log that is not open (path, state)

Threads: the batch flusher (write + fsync) runs on one dedicated thread (io_thread.py: a
cheaper handoff, once per group commit), driven by loop callbacks; the interval fsync pass, close() and the snapshot
writer leave the event loop via asyncio.to_thread; every such thread that touches
segment fds runs under `_io_lock`. Segment fds are closed only by the loop thread, and only
while no such thread runs. Under never/interval the loop thread itself writes (to the page
cache: cheap) and only fsync happens elsewhere.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import heapq
import itertools
import logging
import os
import re
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, TypeVar
from zlib import crc32

from . import metrics
from .io_thread import IoGate, IoThread

__all__ = [
    "CommitLog",
    "CommitLogError",
    "CorruptLogError",
    "FsyncPolicy",
    "LogClosedError",
    "LogWriteError",
    "RecordTooLargeError",
    "Snapshot",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Record layout: see CommitLog.append, where records are encoded.
_LEN_CRC = struct.Struct("<II")
_TYPE_LSN = struct.Struct("<BQ")
_HEADER = struct.Struct("<IIBQ")
_CRC_FROM = _LEN_CRC.size  # the CRC covers bytes [8, 17 + len) of a record

# Snapshot file: magic 8s | crc u32 | lsn u64 | len u64 | data[len]; crc over lsn..data.
_SNAP_HEADER = struct.Struct("<8sIQQ")
_SNAP_MAGIC = b"TBSNAP\x00\x01"
_SNAP_CRC_FROM = 12

_SEGMENT_RE = re.compile(r"^(\d{20})\.log$")
_SNAPSHOT_RE = re.compile(r"^snapshot-(\d{20})\.snap$")
_TEMP_SUFFIX = ".tmp"

_EAGER_WRITE_BYTES = 64 << 10  # under never/interval, hand buffers above this to the OS now
# Policy batch: a record nobody waits for (an ack, a lite delivery's attempt, a deleted lite
# topic...) does not start a group commit of its own; it rides the next one a waiter starts, or
# this many seconds after it was appended, whichever comes first. Each commit of its own would
# hold the one flusher for an fsync that the next waiter (a task's submit) then queues behind.
LAZY_SYNC_DELAY = 0.02
_MAX_PAYLOAD_LIMIT = (1 << 32) - 1
_fdatasync = getattr(os, "fdatasync", os.fsync)


# --- errors -----------------------------------------------------------------------------


class CommitLogError(Exception):
    """Base class of every commit log error."""


class CorruptLogError(CommitLogError):
    def __init__(self, path: str, offset: int, reason: str) -> None:
        self.path, self.offset, self.reason = path, offset, reason
        super().__init__(f"corrupt commit log {path} at offset {offset}: {reason}")


class LogWriteError(CommitLogError):
    def __init__(self, path: str, operation: str, cause: BaseException) -> None:
        self.path, self.operation, self.cause = path, operation, cause
        self.errno = getattr(cause, "errno", None)
        super().__init__(f"commit log {operation} failed on {path}: {cause}")

    def again(self) -> LogWriteError:
        """A fresh copy to raise: re-raising one instance keeps growing its traceback."""
        copy = LogWriteError(self.path, self.operation, self.cause)
        copy.__cause__ = self.cause
        return copy


class RecordTooLargeError(CommitLogError, ValueError):
    def __init__(self, path: str, size: int, limit: int) -> None:
        self.path, self.size, self.limit = path, size, limit
        super().__init__(f"record payload of {size} bytes exceeds max_payload={limit} ({path})")


class LogClosedError(CommitLogError):
    def __init__(self, path: str, state: str) -> None:
        self.path, self.state = path, state
        super().__init__(f"commit log {path} is {state}")


# --- small types --------------------------------------------------------------------------


class FsyncPolicy(str, enum.Enum):
    ALWAYS = "always"  # write + fdatasync inside append()
    BATCH = "batch"  # group commit: one write + fsync on the I/O thread per batch of waiters
    INTERVAL = "interval"  # sync() = written to the OS; fsync every fsync_interval seconds
    NEVER = "never"  # sync() = written to the OS; fsync only at close()


class _State(enum.Enum):
    NEW = "not open yet"
    OPEN = "open"
    FAILED = "failed"
    CLOSING = "closing"
    CLOSED = "closed"


class Snapshot(NamedTuple):
    lsn: int
    data: bytes


@dataclass(eq=False, slots=True)
class _Segment:
    base: int  # first LSN, also the file name
    path: str
    prev: _Segment | None = None  # must be fsynced before this file is created
    fd: int | None = None
    size: int = 0  # bytes appended (buffered or written)
    written: int = 0  # bytes handed to the OS
    synced: int = 0  # bytes covered by an fsync


class _Scan:
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
            yield self.next_lsn, rtype, data[self.offset + _HEADER.size : payload_end]
            self.offset, self.next_lsn = payload_end, self.next_lsn + 1

    def _decode(self, data: memoryview, off: int, end: int) -> tuple[int, int] | None:
        if end - off < _HEADER.size:
            return self._stop(f"torn header ({end - off} of {_HEADER.size} bytes)", end)
        size, crc, rtype, lsn = _HEADER.unpack_from(data, off)
        payload_end = off + _HEADER.size + size
        if payload_end > end:
            return self._stop(f"torn payload ({end - off - _HEADER.size} of {size} bytes)", end)
        if crc32(data[off + _CRC_FROM : payload_end]) != crc:
            return self._stop("CRC mismatch", payload_end)
        if lsn != self.next_lsn:
            return self._stop(f"LSN {lsn} where {self.next_lsn} was expected", payload_end)
        return rtype, payload_end

    def _stop(self, reason: str, bad_end: int) -> None:
        self.problem, self.bad_end = reason, bad_end
        return None


# --- the log ------------------------------------------------------------------------------


class CommitLog:
    """Segmented append-only log; see the module docstring.

    Caller: the engine (one event loop). `open`, `replay` and `append` are synchronous;
    `sync`, `write_snapshot` and `close` are coroutines.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fsync: FsyncPolicy | str = FsyncPolicy.BATCH,
        segment_bytes: int = 64 << 20,
        fsync_interval: float = 0.05,
        max_payload: int = 16 << 20,
        snapshots_kept: int = 2,
    ) -> None:
        self._dir = os.fspath(path)
        self._policy = _parse_policy(fsync)
        self._segment_bytes = _positive_int("segment_bytes", segment_bytes, _HEADER.size)
        self._max_payload = _positive_int("max_payload", max_payload, 0, _MAX_PAYLOAD_LIMIT)
        self._snapshots_kept = _positive_int("snapshots_kept", snapshots_kept, 1)
        if not (isinstance(fsync_interval, (int, float)) and fsync_interval > 0):
            raise ValueError(f"fsync_interval must be a positive number, got {fsync_interval!r}")
        self._interval = float(fsync_interval)
        self._ordered = self._policy is not FsyncPolicy.NEVER
        self._after_append = self._after_append_hook()
        self._state = _State.NEW
        self._error: LogWriteError | None = None
        # A full disk: the failed records are back in the buffer and `retry` may write them.
        self._retriable = False
        self._segments: list[_Segment] = []
        self._active = _Segment(0, "")
        self._chunks: list[tuple[_Segment, bytearray]] = []
        self._tail: bytearray | None = None  # last chunk, if it belongs to the active segment
        self._buffered = 0
        self._next_lsn = 0
        self._synced_lsn = -1  # highest LSN for which sync() may return
        self._written = -1  # highest LSN `written` wrote to the OS ahead of its commit (batch)
        self._retired_open = False  # a non-active segment may still hold an fd
        self._write_scheduled = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._waiter_seq = itertools.count()
        self._flushing = False   # a group commit is scheduled or running (batch)
        self._lazy: asyncio.TimerHandle | None = None   # the deferred commit of unwaited records
        self._io_thread = IoThread(f"commitlog-flusher:{os.path.basename(self._dir)}")
        self._ticker: asyncio.Task[None] | None = None
        self._stop_ticker = asyncio.Event()
        self._io_lock = IoGate()
        self._snapshot_lock = asyncio.Lock()
        self._closed = asyncio.Event()
        self._snapshot_lsns: list[int] = []
        self.recovered_truncated_bytes = 0
        self.batches_flushed = 0
        self.recovery_problem: str | None = None
        self.quarantined_snapshots: list[str] = []

    # --- properties ---------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._dir

    @property
    def next_lsn(self) -> int:
        return self._next_lsn

    @property
    def synced_lsn(self) -> int:
        """Highest LSN that satisfies the policy's promise (fsynced, or written for never/interval)."""
        return self._synced_lsn

    @property
    def size(self) -> tuple[int, int]:
        """Bytes written to the segments, and how many segments there are."""
        return sum(s.written for s in self._segments), len(self._segments)

    @property
    def write_error(self) -> LogWriteError | None:
        """The error of the last failed write, until a write succeeds again."""
        return self._error

    @property
    def first_lsn(self) -> int:
        """Oldest LSN still stored in the segments (== next_lsn when the log is empty)."""
        return self._segments[0].base if self._segments else self._next_lsn

    # --- open / recovery ----------------------------------------------------------------

    def open(self) -> Snapshot | None:
        """Create the directory, recover the segments, return the newest valid snapshot."""
        if self._state is not _State.NEW:
            raise CommitLogError(f"commit log {self._dir} was already opened")
        os.makedirs(self._dir, exist_ok=True)
        self._remove_temp_files()
        snapshot = self._load_newest_snapshot()
        segments, end = self._recover_segments()
        self._adopt(segments, end, snapshot.lsn if snapshot else -1)
        self._state = _State.OPEN
        return snapshot

    def _remove_temp_files(self) -> None:
        for name in os.listdir(self._dir):
            if name.endswith(_TEMP_SUFFIX):
                os.unlink(os.path.join(self._dir, name))

    def _load_newest_snapshot(self) -> Snapshot | None:
        lsns = sorted(_numbered_files(self._dir, _SNAPSHOT_RE), reverse=True)
        for i, lsn in enumerate(lsns):
            path = self._snapshot_path(lsn)
            data, problem = _read_snapshot(path, lsn)
            if problem is None:
                self._snapshot_lsns = sorted(lsns[i:])
                return Snapshot(lsn, data)
            self._quarantine(path, problem)
        return None

    def _quarantine(self, path: str, problem: str) -> None:
        _log.error("commit log snapshot %s is invalid (%s); set aside, using an older one", path, problem)
        os.replace(path, path + ".corrupt")
        self.quarantined_snapshots.append(path)

    def _recover_segments(self) -> tuple[list[_Segment], int]:
        """Return the segments and the last LSN they hold (-1 if none)."""
        bases = sorted(_numbered_files(self._dir, _SEGMENT_RE))
        segments: list[_Segment] = []
        next_lsn = bases[0] if bases else 0
        for i, base in enumerate(bases):
            seg = _Segment(base, self._segment_path(base), segments[-1] if segments else None)
            if base != next_lsn:
                raise CorruptLogError(seg.path, 0, f"segment starts at LSN {base}, expected {next_lsn}")
            next_lsn = self._recover_segment(seg, is_last=i == len(bases) - 1)
            segments.append(seg)
        return segments, next_lsn - 1

    def _recover_segment(self, seg: _Segment, is_last: bool) -> int:
        """Validate one segment, truncating a bad tail of the last one; return its next LSN."""
        with open(seg.path, "rb") as f:
            data = f.read()
        scan = _Scan(data, seg.base)
        for _ in scan:
            pass
        seg.size = seg.written = seg.synced = scan.offset
        if scan.problem is not None:
            if not is_last:
                raise CorruptLogError(seg.path, scan.offset, scan.problem)
            if not scan.torn_tail:
                following = len(data) - scan.bad_end
                raise CorruptLogError(seg.path, scan.offset, f"{scan.problem}, with {following} bytes of "
                                                             "records after it: not a torn tail")
            self._truncate_tail(seg, len(data), scan.problem)
        return scan.next_lsn

    def _truncate_tail(self, seg: _Segment, file_size: int, problem: str) -> None:
        dropped = file_size - seg.size
        _log.warning(
            "commit log %s: %s at offset %d; truncating %d bytes of torn tail",
            seg.path, problem, seg.size, dropped,
        )
        with open(seg.path, "r+b") as f:
            f.truncate(seg.size)
            os.fsync(f.fileno())
        self.recovered_truncated_bytes += dropped
        self.recovery_problem = f"{seg.path} at offset {seg.size}: {problem}"

    def _adopt(self, segments: list[_Segment], end: int, snapshot_lsn: int) -> None:
        if not segments or end < snapshot_lsn:
            self._discard_obsolete(segments, snapshot_lsn)
            self._start_fresh(snapshot_lsn + 1)
            return
        if segments[0].base > snapshot_lsn + 1:
            reason = f"segments start at LSN {segments[0].base} but the snapshot covers only up to {snapshot_lsn}"
            raise CorruptLogError(self._dir, 0, reason)
        self._segments, self._active, self._next_lsn = segments, segments[-1], end + 1
        self._synced_lsn = end
        self._active.fd = os.open(self._active.path, os.O_WRONLY | os.O_APPEND)

    def _discard_obsolete(self, segments: list[_Segment], snapshot_lsn: int) -> None:
        """The log ends before the snapshot (its tail was lost): every record is covered."""
        if segments:
            _log.warning("commit log %s ends before snapshot LSN %d; dropping its segments", self._dir, snapshot_lsn)
        for seg in segments:
            os.unlink(seg.path)

    def _start_fresh(self, lsn: int) -> None:
        self._active = _Segment(lsn, self._segment_path(lsn))
        self._segments, self._next_lsn, self._synced_lsn = [self._active], lsn, lsn - 1

    # --- replay -------------------------------------------------------------------------

    def replay(self, start: int = 0) -> Iterator[tuple[int, int, bytes]]:
        """Yield (lsn, rtype, payload) for every stored record with lsn >= start, in order.

        Reads what is in the files; call it after open() and before appending.
        """
        if self._state is _State.NEW:
            raise LogClosedError(self._dir, self._state.value)
        if start < self.first_lsn:
            raise ValueError(f"cannot replay from LSN {start!r}: the log starts at {self.first_lsn}")
        segments = list(self._segments)
        for i, seg in enumerate(segments):
            last = segments[i + 1].base - 1 if i + 1 < len(segments) else None
            if last is None or last >= start:
                yield from self._replay_segment(seg, start)

    def _replay_segment(self, seg: _Segment, start: int) -> Iterator[tuple[int, int, bytes]]:
        try:
            with open(seg.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return  # a fresh segment not written yet
        scan = _Scan(data, seg.base)
        for lsn, rtype, payload in scan:
            if lsn >= start:
                yield lsn, rtype, bytes(payload)
        if scan.problem is not None:
            raise CorruptLogError(seg.path, scan.offset, scan.problem)

    # --- append -------------------------------------------------------------------------

    def append(self, rtype: int, payload: bytes) -> int:
        """Assign the next LSN to the record and buffer it (write + fsync it under `always`)."""
        if self._state is not _State.OPEN:
            self._raise_unwritable()
        size = len(payload)
        if size > self._max_payload:
            raise RecordTooLargeError(self._dir, size, self._max_payload)
        lsn = self._next_lsn
        try:
            type_lsn = _TYPE_LSN.pack(rtype, lsn)
        except struct.error:
            raise ValueError(f"record type must be an int in 0..255, got {rtype!r}") from None
        # Record, little-endian, 17-byte header then payload:
        #   len u32 (payload bytes) | crc u32 | type u8 | lsn u64 | payload[len]
        # crc = zlib.crc32 of type|lsn|payload (all bytes after the crc field). The LSN is
        # stored although it is implied by position, so recovery can tell a stale or
        # misplaced record from the expected one.
        len_crc = _LEN_CRC.pack(size, crc32(payload, crc32(type_lsn)))
        total = _HEADER.size + size
        seg = self._active
        if seg.size and seg.size + total > self._segment_bytes:
            seg = self._roll(lsn)
        buf = self._tail if self._tail is not None else self._new_chunk(seg)
        buf += len_crc
        buf += type_lsn
        buf += payload
        seg.size += total
        self._buffered += total
        self._next_lsn = lsn + 1
        self._after_append(lsn)
        return lsn

    def _raise_unwritable(self) -> None:
        if self._state is _State.FAILED and self._error is not None:
            raise self._error.again()
        raise LogClosedError(self._dir, self._state.value)

    def _roll(self, lsn: int) -> _Segment:
        """Caller: append. The new file is created by the writer, after `prev` is fsynced."""
        seg = _Segment(lsn, self._segment_path(lsn), prev=self._active)
        self._segments.append(seg)
        self._active, self._tail, self._retired_open = seg, None, True
        return seg

    def _new_chunk(self, seg: _Segment) -> bytearray:
        self._tail = bytearray()
        self._chunks.append((seg, self._tail))
        return self._tail

    def _after_append_hook(self) -> Callable[[int], None]:
        return {
            FsyncPolicy.ALWAYS: self._commit_now,
            FsyncPolicy.BATCH: self._commit_later,
            FsyncPolicy.INTERVAL: self._write_soon,
            FsyncPolicy.NEVER: self._write_soon,
        }[self._policy]

    def _commit_now(self, lsn: int) -> None:
        """Policy `always`: the record is written and fdatasynced before append returns; one
        that cannot be written is taken back, so a failed append leaves no record behind."""
        try:
            self._write_pending()
        except LogWriteError:
            self._take_back(lsn)
            raise
        seg = self._active
        self._guard(_fsync_segments, [(seg, seg.written)])
        self._synced_lsn = lsn
        self._close_retired()
        self._error = None   # a full disk that has room again

    def _take_back(self, lsn: int) -> None:
        chunks, _ = self._take()
        for seg, buf in chunks:
            seg.size -= len(buf)
        self._next_lsn = lsn

    def _write_soon(self, lsn: int) -> None:
        """Policies never/interval: reach the OS at 64 KiB or at the next loop turn."""
        if self._buffered >= _EAGER_WRITE_BYTES:
            try:
                self._write_pending()
            except LogWriteError:
                pass  # this record is appended (and pending); the next append/sync raises
        elif not self._write_scheduled:
            self._schedule_write()

    def _schedule_write(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the 64 KiB threshold, sync() and close() still write
        loop.call_soon(self._scheduled_write)
        self._write_scheduled = True
        self._ensure_ticker(loop)

    def _ensure_ticker(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._policy is FsyncPolicy.INTERVAL and self._ticker is None:
            self._ticker = loop.create_task(self._fsync_ticker())

    def _scheduled_write(self) -> None:
        self._write_scheduled = False
        if self._state is _State.OPEN and self._chunks:
            try:
                self._write_pending()
            except LogWriteError:
                pass  # sticky: raised by the next append/sync

    # --- writing (loop thread or worker thread) -----------------------------------------

    def _take(self) -> tuple[list[tuple[_Segment, bytearray]], int]:
        chunks, self._chunks, self._tail, self._buffered = self._chunks, [], None, 0
        return chunks, self._next_lsn - 1

    def _write_pending(self) -> None:
        """Caller: loop thread, policies always/never/interval (never while a writer thread runs)."""
        chunks, upto = self._take()
        before = _positions(chunks)
        try:
            self._write_chunks(chunks)
        except LogWriteError as exc:
            self._put_back(chunks, before, exc)
            raise
        if self._policy is not FsyncPolicy.ALWAYS:
            self._synced_lsn = upto
            self._release_waiters(upto)
        if self._policy is FsyncPolicy.NEVER:
            self._close_retired()

    def _guard(self, fn: Callable[..., _T], *args: object) -> _T:
        """Run an I/O step; on LogWriteError make the log fail (sticky) and re-raise."""
        try:
            return fn(*args)
        except LogWriteError as exc:
            self._fail(exc)
            raise

    def _write_chunks(self, chunks: list[tuple[_Segment, bytearray]]) -> list[_Segment]:
        touched: list[_Segment] = []
        for seg, buf in chunks:
            if seg.fd is None:
                self._create_segment_file(seg)
            _write_all(seg, buf)
            touched.append(seg)
        return touched

    def _create_segment_file(self, seg: _Segment) -> None:
        """Ordered policies fsync the predecessor first, so a crash never leaves a torn
        segment followed by another one; the directory fsync makes the new name durable."""
        prev = seg.prev
        if self._ordered and prev is not None and prev.fd is not None and prev.synced < prev.written:
            _fsync_segments([(prev, prev.written)])
        try:
            seg.fd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            if self._ordered:
                _fsync_dir(self._dir)
        except OSError as exc:
            if seg.fd is not None:   # created but not durable: gone, so that a retry creates it again
                _close_fd(seg)
                _unlink_quietly(seg.path)
            raise LogWriteError(seg.path, "create", exc) from exc

    def _write_and_sync(self, chunks: list[tuple[_Segment, bytearray]], segments: list[_Segment]) -> None:
        """Caller: worker thread (batch flusher, close). Writes, then fsyncs every dirty fd."""
        self._write_chunks(chunks)
        _fsync_segments([(s, s.written) for s in segments if s.fd is not None and s.synced < s.written])

    def _close_retired(self) -> None:
        """Caller: loop thread, when no worker thread can be using a segment fd."""
        if not self._retired_open:
            return
        still_open = False
        for seg in self._segments[:-1]:
            if seg.fd is None:
                continue
            if seg.written < seg.size or (self._ordered and seg.synced < seg.written):
                still_open = True
                continue
            _close_fd(seg)
        self._retired_open = still_open

    def _put_back(self, chunks: list[tuple[_Segment, bytearray]], before: dict[_Segment, int],
                  exc: LogWriteError) -> None:
        """A write failed: cut the files back to whole records. On a full disk the records go
        back to the front of the buffer for `retry`; any other error is final."""
        retriable = exc.operation in ("write", "create") and exc.errno in _NO_SPACE
        try:
            for seg, written in before.items():
                if seg.fd is not None and seg.written != written:
                    os.ftruncate(seg.fd, written)
                seg.written = written
        except OSError as cut:
            _log.error("commit log %s: cannot cut a failed write back (%s)", self._dir, cut)
            retriable = False
        if retriable:
            self._chunks[:0] = chunks
            self._buffered += sum(len(buf) for _, buf in chunks)
        self._retriable = retriable
        self._fail(exc)

    async def retry(self) -> bool:
        """Write the records a full disk refused; True once the log is writable again.
        Caller: the engine's housekeeping, while `write_error` is set."""
        if self._state is not _State.FAILED or not self._retriable:
            return self._state is _State.OPEN
        async with self._io_lock:
            chunks, upto = self._take()
            before = _positions(chunks)
            try:
                await asyncio.to_thread(self._write_and_sync, chunks, list(self._segments))
                if not chunks:   # nothing was pending (policy always): ask the disk for room
                    await asyncio.to_thread(_probe_room, self._active, _EAGER_WRITE_BYTES)
            except LogWriteError as exc:
                self._error = None   # logged once per episode, not once per retry
                self._put_back(chunks, before, exc)
                return False
        _log.warning("commit log %s: writing again after %s", self._dir, self._error)
        self._error, self._retriable, self._state = None, False, _State.OPEN
        self._synced_lsn = upto
        self._close_retired()
        return True

    def _fail(self, exc: LogWriteError) -> None:
        if self._error is None:
            more = "until there is room again" if self._retriable else "for good"
            _log.error("%s; the commit log refuses further writes %s", exc, more)
            self._error = exc
        if self._state is _State.OPEN:
            self._state = _State.FAILED
        self._fail_waiters(exc)

    # --- sync / group commit ------------------------------------------------------------

    async def sync(self, lsn: int) -> None:
        """Return once `lsn` is durable according to the policy."""
        if not self._durable_now(lsn):
            await self._wait_synced(lsn)

    def sync_future(self, lsn: int) -> asyncio.Future[None]:
        """sync() as a future (done once `lsn` is durable, or with the error that prevents it)
        for a caller that hangs a callback on it: no coroutine or task per wait. Errors known
        now are raised now."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._durable_now(lsn):
            fut.set_result(None)
        else:
            self._add_waiter(lsn, fut)
        return fut

    def _durable_now(self, lsn: int) -> bool:
        """Whether `lsn` satisfies the policy already (never/interval: once written, done here);
        raises what sync() must raise."""
        if lsn <= self._synced_lsn:
            return True
        if self._error is not None:
            raise self._error.again()
        if lsn >= self._next_lsn:
            raise ValueError(f"LSN {lsn!r} has not been appended (next LSN is {self._next_lsn})")
        if self._state is _State.OPEN and self._policy in (FsyncPolicy.NEVER, FsyncPolicy.INTERVAL):
            self._write_pending()
            self._ensure_ticker(asyncio.get_running_loop())
            return True
        if self._state is not _State.OPEN and self._state is not _State.CLOSING:
            raise LogClosedError(self._dir, self._state.value)
        return False

    async def written(self, lsn: int) -> None:
        """Return once `lsn` is in the operating system (it survives this process being killed;
        not yet a power loss): a record whose fsync may ride a later commit. Under policies
        other than batch, the same as sync."""
        if lsn <= self._synced_lsn or lsn <= self._written:
            return
        if self._policy is not FsyncPolicy.BATCH or self._state is not _State.OPEN:
            await self.sync(lsn)
            return
        if self._error is not None:
            raise self._error.again()
        async with self._io_lock:      # a commit under way writes first: this writes what it left
            if lsn > max(self._written, self._synced_lsn) and self._error is None:
                chunks, upto = self._take()
                before = _positions(chunks)
                try:
                    if all(seg.fd is not None for seg, _ in chunks):
                        self._write_chunks(chunks)      # a few records to the page cache: cheap
                    else:                               # a new segment: its predecessor is fsynced first
                        await self._io_thread.run(self._write_chunks, chunks)
                except LogWriteError as exc:
                    self._put_back(chunks, before, exc)
                    raise exc.again() from exc
                self._written = upto
        if self._error is not None:
            raise self._error.again()
        self._commit_later(lsn)

    async def _wait_synced(self, lsn: int) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._add_waiter(lsn, fut)
        await fut

    def _add_waiter(self, lsn: int, fut: asyncio.Future[None]) -> None:
        heapq.heappush(self._waiters, (lsn, next(self._waiter_seq), fut))
        if self._state is _State.OPEN:
            self._kick_flusher(lsn)

    def _release_waiters(self, upto: int) -> None:
        waiters = self._waiters
        while waiters and waiters[0][0] <= upto:
            fut = heapq.heappop(waiters)[2]
            if not fut.done():
                fut.set_result(None)

    def _fail_waiters(self, exc: CommitLogError) -> None:
        waiters, self._waiters = self._waiters, []
        for _, _, fut in waiters:
            if not fut.done():
                fut.set_exception(exc.again() if isinstance(exc, LogWriteError) else exc)

    def _kick_flusher(self, lsn: int) -> None:
        if self._flushing:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: sync() or close() will flush
        self._flushing = True
        # The batch starts two loop turns after the append that kicked it (as a flusher task
        # did with its first step and a sleep(0)): the tasks already scheduled (a task's other
        # events, the other writes of one gather) append first and share its fsync.
        loop.call_soon(loop.call_soon, self._start_batch)

    def _commit_later(self, lsn: int) -> None:
        """Policy batch, a record nobody waits for yet: commit it within LAZY_SYNC_DELAY."""
        if self._lazy is not None or self._flushing:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: sync() or close() will flush
        self._lazy = loop.call_later(LAZY_SYNC_DELAY, self._lazy_commit)

    def _lazy_commit(self) -> None:
        self._lazy = None
        if self._state is _State.OPEN and self._synced_lsn < self._next_lsn - 1:
            self._kick_flusher(self._next_lsn - 1)

    # Policy `batch`: a group commit is two loop callbacks around one job on the I/O thread, not
    # a task: _start_batch takes everything buffered under the IoGate and hands it over;
    # _batch_done releases every waiter it covers and, if some still wait (they appended during
    # the fsync), starts the next batch at once. Each durable wait thus costs one thread hop
    # each way and no extra loop turns. Caller: loop thread only.

    def _start_batch(self) -> None:
        if self._state is not _State.OPEN or self._error is not None \
                or self._synced_lsn >= self._next_lsn - 1:
            self._flush_idle()
            return
        if not self._io_lock.try_take():   # `written`, a snapshot or close holds the fds
            self._io_lock.when_free(self._start_batch)
            return
        chunks, upto = self._take()
        # and the records `written` left unsynced, maybe with no chunk in this batch
        segments = list(dict.fromkeys([seg for seg, _ in chunks] + [
            s for s in self._segments if s.fd is not None and s.synced < s.written]))
        before = _positions(chunks)
        self._io_thread.submit(self._write_and_sync, (chunks, segments),
                               lambda _, exc: self._batch_done(chunks, before, upto, exc))

    def _batch_done(self, chunks: list[tuple[_Segment, bytearray]], before: dict[_Segment, int],
                    upto: int, exc: BaseException | None) -> None:
        self._io_lock.release()
        if exc is not None:
            if not isinstance(exc, LogWriteError):
                exc = LogWriteError(self._dir, "flush", exc)
            self._put_back(chunks, before, exc)
            self._flushing = False
            return
        self.batches_flushed += 1
        self._synced_lsn = upto
        self._release_waiters(upto)
        self._close_retired()
        if self._waiters:
            self._start_batch()
        else:
            self._flush_idle()

    def _flush_idle(self) -> None:
        """No waiter left: what was appended meanwhile, unwaited, rides a later commit."""
        self._flushing = False
        if self._state is _State.OPEN and self._synced_lsn < self._next_lsn - 1:
            if self._waiters:
                self._kick_flusher(self._next_lsn - 1)
            else:
                self._commit_later(self._next_lsn - 1)

    async def _fsync_ticker(self) -> None:
        """Policy `interval`: fsync whatever was written, every fsync_interval seconds."""
        while not self._stop_ticker.is_set():
            try:
                async with asyncio.timeout(self._interval):
                    await self._stop_ticker.wait()
            except TimeoutError:
                pass
            try:
                await self._fsync_pass()
            except LogWriteError as exc:
                self._fail(exc)
                self._ticker = None   # retry() restarts it through the next sync
                return

    async def _fsync_pass(self) -> None:
        if self._state is _State.OPEN and self._chunks:
            self._write_pending()
        dirty = [(s, s.written) for s in self._segments if s.fd is not None and s.synced < s.written]
        if not dirty:
            return
        async with self._io_lock:
            await asyncio.to_thread(_fsync_segments, dirty)
        self._close_retired()

    # --- snapshots ----------------------------------------------------------------------

    async def write_snapshot(self, lsn: int, data: bytes) -> None:
        """Atomically store engine state covering every record <= lsn, then drop the
        segments no kept snapshot needs. A failure here is raised but is not sticky."""
        if self._state is not _State.OPEN:
            self._raise_unwritable()
        async with self._snapshot_lock:
            self._check_snapshot_lsn(lsn)
            path = self._snapshot_path(lsn)
            await asyncio.to_thread(_write_snapshot_file, self._dir, path, lsn, bytes(data))
            self._prune_snapshots(lsn)
            async with self._io_lock:
                self._delete_covered_segments()

    def _check_snapshot_lsn(self, lsn: int) -> None:
        newest = self._snapshot_lsns[-1] if self._snapshot_lsns else -1
        if not isinstance(lsn, int) or not newest <= lsn < self._next_lsn:
            raise ValueError(
                f"snapshot LSN must be in [{newest}, {self._next_lsn}) (newest snapshot .. next LSN), got {lsn!r}"
            )

    def _prune_snapshots(self, lsn: int) -> None:
        lsns = sorted(set(self._snapshot_lsns) | {lsn})
        stale, self._snapshot_lsns = lsns[: -self._snapshots_kept], lsns[-self._snapshots_kept :]
        for old in stale:
            _unlink(self._snapshot_path(old))

    def _delete_covered_segments(self) -> None:
        """Caller: write_snapshot, holding _io_lock. Keeps every segment the oldest kept
        snapshot still needs, the active one, and any with bytes not yet written."""
        floor = self._snapshot_lsns[0]
        segments = self._segments
        while len(segments) > 1 and segments[1].base - 1 <= floor and segments[0].written == segments[0].size:
            seg = segments.pop(0)
            _close_fd(seg)
            _unlink(seg.path)
        segments[0].prev = None

    # --- close --------------------------------------------------------------------------

    async def close(self) -> None:
        """Flush, fsync and close every file; later appends raise LogClosedError.

        Raises the sticky LogWriteError if the log failed (its data is not all durable)."""
        if self._state in (_State.CLOSING, _State.CLOSED):
            await self._closed.wait()
            return
        self._state = _State.CLOSING if self._state is not _State.NEW else _State.CLOSED
        try:
            await self._stop_background()
            async with self._snapshot_lock, self._io_lock:
                await self._final_flush()
        finally:
            self._io_thread.stop()
            for seg in self._segments:
                _close_fd(seg)
            self._fail_waiters(self._error or LogClosedError(self._dir, _State.CLOSED.value))
            self._state = _State.CLOSED
            self._closed.set()
        if self._error is not None:
            raise self._error.again()

    async def _stop_background(self) -> None:
        self._stop_ticker.set()
        if self._lazy is not None:
            self._lazy.cancel()
            self._lazy = None
        for task in (self._ticker,):
            if task is not None:
                await task

    async def _final_flush(self) -> None:
        if self._state is _State.CLOSED or (self._error is not None and not self._retriable):
            return
        chunks, upto = self._take()
        try:
            await asyncio.to_thread(self._write_and_sync, chunks, list(self._segments))
        except LogWriteError as exc:
            self._fail(exc)
            return
        self._error = None
        self._synced_lsn = upto
        self._release_waiters(upto)

    # --- names --------------------------------------------------------------------------

    def _segment_path(self, base: int) -> str:
        return os.path.join(self._dir, f"{base:020d}.log")

    def _snapshot_path(self, lsn: int) -> str:
        return os.path.join(self._dir, f"snapshot-{lsn:020d}.snap")


# --- helpers --------------------------------------------------------------------------------

def _parse_policy(value: FsyncPolicy | str) -> FsyncPolicy:
    try:
        return FsyncPolicy(value)
    except ValueError:
        choices = ", ".join(p.value for p in FsyncPolicy)
        raise ValueError(f"fsync must be one of {choices}; got {value!r}") from None


def _positive_int(name: str, value: int, minimum: int, maximum: int | None = None) -> int:
    if not isinstance(value, int) or value <= minimum or (maximum is not None and value > maximum):
        bound = f" and <= {maximum}" if maximum is not None else ""
        raise ValueError(f"{name} must be an int > {minimum}{bound}, got {value!r}")
    return value


def _numbered_files(directory: str, pattern: re.Pattern[str]) -> list[int]:
    return [int(m.group(1)) for m in map(pattern.match, os.listdir(directory)) if m]


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _positions(chunks: list[tuple[_Segment, bytearray]]) -> dict[_Segment, int]:
    """Bytes written to each segment before a write of `chunks`: where a failed write is cut back."""
    return {seg: seg.written for seg, _ in chunks}


def _probe_room(seg: _Segment, size: int) -> None:
    """Reserve `size` bytes past the end of `seg`, then give them back: ENOSPC if there is no room."""
    if seg.fd is None:
        return
    try:
        os.posix_fallocate(seg.fd, seg.written, size)
        os.ftruncate(seg.fd, seg.written)
    except OSError as exc:
        raise LogWriteError(seg.path, "write", exc) from exc


def _write_all(seg: _Segment, buf: bytearray) -> None:
    done = 0
    try:
        view = memoryview(buf)
        while done < len(view):
            done += os.write(seg.fd, view[done:])
    except OSError as exc:
        raise LogWriteError(seg.path, "write", exc) from exc
    finally:
        seg.written += done


def _fsync_segments(targets: list[tuple[_Segment, int]]) -> None:
    for seg, written in targets:
        started = time.perf_counter()
        try:
            _fdatasync(seg.fd)
        except OSError as exc:
            raise LogWriteError(seg.path, "fsync", exc) from exc
        metrics.FSYNC.observe(time.perf_counter() - started)
        seg.synced = max(seg.synced, written)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _close_fd(seg: _Segment) -> None:
    if seg.fd is None:
        return
    fd, seg.fd = seg.fd, None
    try:
        os.close(fd)
    except OSError as exc:
        _log.warning("closing commit log segment %s failed: %s", seg.path, exc)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise LogWriteError(path, "unlink", exc) from exc


def _read_snapshot(path: str, lsn: int) -> tuple[bytes, str | None]:
    """Return (data, None) for a valid snapshot, or (b"", reason)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < _SNAP_HEADER.size:
        return b"", f"short header ({len(blob)} bytes)"
    magic, crc, stored_lsn, size = _SNAP_HEADER.unpack_from(blob)
    if magic != _SNAP_MAGIC:
        return b"", f"bad magic {magic!r}"
    if stored_lsn != lsn or len(blob) != _SNAP_HEADER.size + size:
        return b"", f"header says LSN {stored_lsn} and {size} bytes; file is LSN {lsn} with {len(blob)} bytes"
    if crc32(memoryview(blob)[_SNAP_CRC_FROM:]) != crc:
        return b"", "CRC mismatch"
    return blob[_SNAP_HEADER.size :], None


def _write_snapshot_file(directory: str, path: str, lsn: int, data: bytes) -> None:
    """Temp file, fsync, rename over, fsync the directory: readers see old or new, whole."""
    # Snapshot layout (see _SNAP_HEADER): magic | crc u32 | lsn u64 | len u64 | data.
    lsn_len = struct.pack("<QQ", lsn, len(data))
    header = _SNAP_HEADER.pack(_SNAP_MAGIC, crc32(data, crc32(lsn_len)), lsn, len(data))
    temp = path + _TEMP_SUFFIX
    try:
        with open(temp, "wb") as f:
            f.write(header)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        _fsync_dir(directory)
    except OSError as exc:
        _unlink_quietly(temp)
        raise LogWriteError(path, "snapshot write", exc) from exc


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
