"""Durable, segmented, append-only commit log of the embedded engine.

The engine hands us opaque payloads tagged with a small record type; we assign LSNs
(consecutive ints), store them in segment files named by their first LSN, and make them
durable according to an fsync policy. A snapshot file lets the engine restart from its
state at some LSN and drop the segments it covers.

This package's __init__ holds CommitLog itself (its state, append, snapshots, close) and is
the one name the rest of the engine imports; the parts it is made of each have their module:

    errors.py         the exception tree (re-exported here)
    state.py          FsyncPolicy (re-exported here) and the log's states
    record.py         the record framing and the scan that reads records back
    segment_files.py  segment files and the OS calls on them (write, fsync, cut back)
    snapshot.py       the snapshot file format (Snapshot re-exported here)
    recovery.py       open() and replay(): recovery of what is on disk
    policy.py         what each policy does after an append; the interval ticker
    group_commit.py   sync()/sync_future()/written(), waiters, the batch group commit
    writer.py         writing buffered chunks, failed writes, retry()

Threads: the batch flusher (write + fsync) runs on one dedicated thread (../io_thread.py: a
cheaper handoff, once per group commit), driven by loop callbacks; the interval fsync pass,
close() and the snapshot writer leave the event loop via asyncio.to_thread; every such thread that touches
segment fds runs under `_io_lock`. Segment fds are closed only by the loop thread, and only
while no such thread runs. Under never/interval the loop thread itself writes (to the page
cache: cheap) and only fsync happens elsewhere.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import struct
from zlib import crc32

from .policy import PolicyHooks
from .group_commit import GroupCommit
from ..io_thread import IoGate, IoThread
from .errors import CommitLogError, CorruptLogError, LogClosedError, LogWriteError, RecordTooLargeError
from .record import HEADER, LEN_CRC, MAX_PAYLOAD_LIMIT, TYPE_LSN
from .recovery import LogRecovery
from .state import OPEN, FsyncPolicy, LogState
from .writer import LogWriter
from .segment_files import Segment, close_fd, unlink
from .snapshot import Snapshot, write_snapshot_file

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


class CommitLog(LogRecovery, PolicyHooks, GroupCommit, LogWriter):
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
        self._segment_bytes = _positive_int("segment_bytes", segment_bytes, HEADER.size)
        self._max_payload = _positive_int("max_payload", max_payload, 0, MAX_PAYLOAD_LIMIT)
        self._snapshots_kept = _positive_int("snapshots_kept", snapshots_kept, 1)
        if not (isinstance(fsync_interval, (int, float)) and fsync_interval > 0):
            raise ValueError(f"fsync_interval must be a positive number, got {fsync_interval!r}")
        self._interval = float(fsync_interval)
        self._ordered = self._policy is not FsyncPolicy.NEVER
        self._batch = self._policy is FsyncPolicy.BATCH
        self._writes_on_sync = self._policy in (FsyncPolicy.NEVER, FsyncPolicy.INTERVAL)   # sync() = written
        self._after_append = self._after_append_hook()
        self._state = LogState.NEW
        self._error: LogWriteError | None = None
        # A full disk: the failed records are back in the buffer and `retry` may write them.
        self._retriable = False
        self._segments: list[Segment] = []
        self._active = Segment(0, "")
        self._chunks: list[tuple[Segment, bytearray]] = []
        self._tail: bytearray | None = None  # last chunk, if it belongs to the active segment
        self._buffered = 0
        self._next_lsn = 0
        self._synced_lsn = -1  # highest LSN for which sync() may return
        self._written = -1  # highest LSN `written` wrote to the OS ahead of its commit (batch)
        self._retired_open = False  # a non-active segment may still hold an fd
        self._write_scheduled = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._waiter_seq = itertools.count()
        self._urgent_upto = -1   # the highest LSN a waiter that is not lazy asked for (add_waiter)
        self._flushing = False   # a group commit is scheduled or running (batch)
        self._lazy: asyncio.TimerHandle | None = None   # the deferred commit of unwaited records
        self._lazy_upto = -1     # the last LSN appended when _lazy was armed
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

    # --- append -------------------------------------------------------------------------

    def append(self, rtype: int, payload: bytes) -> int:
        """Assign the next LSN to the record and buffer it (write + fsync it under `always`)."""
        if self._state is not OPEN:
            self._raise_unwritable()
        size = len(payload)
        if size > self._max_payload:
            raise RecordTooLargeError(self._dir, size, self._max_payload)
        lsn = self._next_lsn
        try:
            type_lsn = TYPE_LSN.pack(rtype, lsn)
        except struct.error:
            raise ValueError(f"record type must be an int in 0..255, got {rtype!r}") from None
        # Record, little-endian, 17-byte header then payload:
        #   len u32 (payload bytes) | crc u32 | type u8 | lsn u64 | payload[len]
        # crc = zlib.crc32 of type|lsn|payload (all bytes after the crc field). The LSN is
        # stored although it is implied by position, so recovery can tell a stale or
        # misplaced record from the expected one.
        len_crc = LEN_CRC.pack(size, crc32(payload, crc32(type_lsn)))
        total = HEADER.size + size
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
        if self._state is LogState.FAILED and self._error is not None:
            raise self._error.again()
        raise LogClosedError(self._dir, self._state.value)

    def _roll(self, lsn: int) -> Segment:
        """Caller: append. The new file is created by the writer, after `prev` is fsynced."""
        seg = Segment(lsn, self._segment_path(lsn), prev=self._active)
        self._segments.append(seg)
        self._active, self._tail, self._retired_open = seg, None, True
        return seg

    def _new_chunk(self, seg: Segment) -> bytearray:
        self._tail = bytearray()
        self._chunks.append((seg, self._tail))
        return self._tail
    # --- snapshots ----------------------------------------------------------------------

    async def write_snapshot(self, lsn: int, data: bytes) -> None:
        """Atomically store engine state covering every record <= lsn, then drop the
        segments no kept snapshot needs. A failure here is raised but is not sticky."""
        if self._state is not LogState.OPEN:
            self._raise_unwritable()
        async with self._snapshot_lock:
            self._check_snapshot_lsn(lsn)
            path = self._snapshot_path(lsn)
            await asyncio.to_thread(write_snapshot_file, self._dir, path, lsn, bytes(data))
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
            unlink(self._snapshot_path(old))

    def _delete_covered_segments(self) -> None:
        """Caller: write_snapshot, holding _io_lock. Keeps every segment the oldest kept
        snapshot still needs, the active one, and any with bytes not yet written."""
        floor = self._snapshot_lsns[0]
        segments = self._segments
        while len(segments) > 1 and segments[1].base - 1 <= floor and segments[0].written == segments[0].size:
            seg = segments.pop(0)
            close_fd(seg)
            unlink(seg.path)
        segments[0].prev = None

    # --- close --------------------------------------------------------------------------

    async def close(self) -> None:
        """Flush, fsync and close every file; later appends raise LogClosedError.

        Raises the sticky LogWriteError if the log failed (its data is not all durable)."""
        if self._state in (LogState.CLOSING, LogState.CLOSED):
            await self._closed.wait()
            return
        self._state = LogState.CLOSING if self._state is not LogState.NEW else LogState.CLOSED
        try:
            await self._stop_background()
            async with self._snapshot_lock, self._io_lock:
                await self._final_flush()
        finally:
            self._io_thread.stop()
            for seg in self._segments:
                close_fd(seg)
            self._fail_waiters(self._error or LogClosedError(self._dir, LogState.CLOSED.value))
            self._state = LogState.CLOSED
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
        if self._state is LogState.CLOSED or (self._error is not None and not self._retriable):
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
