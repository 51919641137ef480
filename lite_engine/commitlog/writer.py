"""Writing the commit log's buffered records to its segment files (loop thread or worker
thread), cutting a failed write back to whole records, and the sticky write error."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import TypeVar

from . import segment_files
from .policy import EAGER_WRITE_BYTES
from .errors import LogWriteError
from .state import FsyncPolicy, LogState
from .segment_files import NO_SPACE, Segment, close_fd, fsync_dir, positions, probe_room, unlink_quietly, write_all

_log = logging.getLogger("lite_engine.commitlog")
_T = TypeVar("_T")


class LogWriter:
    """Taking, writing and putting back the buffered chunks; retry() after a full disk.

    A part of CommitLog, mixed into it: every attribute is set up in CommitLog.__init__.
    Owns _chunks, _tail, _buffered, _retired_open, _error, _retriable; reads the rest.
    """

    def _take(self) -> tuple[list[tuple[Segment, bytearray]], int]:
        chunks, self._chunks, self._tail, self._buffered = self._chunks, [], None, 0
        return chunks, self._next_lsn - 1

    def _write_pending(self) -> None:
        """Caller: loop thread, policies always/never/interval (never while a writer thread runs)."""
        chunks, upto = self._take()
        before = positions(chunks)
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

    def _write_chunks(self, chunks: list[tuple[Segment, bytearray]]) -> list[Segment]:
        touched: list[Segment] = []
        for seg, buf in chunks:
            if seg.fd is None:
                self._create_segment_file(seg)
            write_all(seg, buf)
            touched.append(seg)
        return touched

    def _create_segment_file(self, seg: Segment) -> None:
        """Ordered policies fsync the predecessor first, so a crash never leaves a torn
        segment followed by another one; the directory fsync makes the new name durable."""
        prev = seg.prev
        if self._ordered and prev is not None and prev.fd is not None and prev.synced < prev.written:
            segment_files.fsync_segments([(prev, prev.written)])
        try:
            seg.fd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            if self._ordered:
                fsync_dir(self._dir)
        except OSError as exc:
            if seg.fd is not None:   # created but not durable: gone, so that a retry creates it again
                close_fd(seg)
                unlink_quietly(seg.path)
            raise LogWriteError(seg.path, "create", exc) from exc

    def _write_and_sync(self, chunks: list[tuple[Segment, bytearray]], segments: list[Segment]) -> None:
        """Caller: worker thread (batch flusher, close). Writes, then fsyncs every dirty fd."""
        self._write_chunks(chunks)
        segment_files.fsync_segments([(s, s.written) for s in segments if s.fd is not None and s.synced < s.written])

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
            close_fd(seg)
        self._retired_open = still_open

    def _put_back(self, chunks: list[tuple[Segment, bytearray]], before: dict[Segment, int],
                  exc: LogWriteError) -> None:
        """A write failed: cut the files back to whole records. On a full disk the records go
        back to the front of the buffer for `retry`; any other error is final."""
        retriable = exc.operation in ("write", "create") and exc.errno in NO_SPACE
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
        if self._state is not LogState.FAILED or not self._retriable:
            return self._state is LogState.OPEN
        async with self._io_lock:
            chunks, upto = self._take()
            before = positions(chunks)
            try:
                await asyncio.to_thread(self._write_and_sync, chunks, list(self._segments))
                if not chunks:   # nothing was pending (policy always): ask the disk for room
                    await asyncio.to_thread(probe_room, self._active, EAGER_WRITE_BYTES)
            except LogWriteError as exc:
                self._error = None   # logged once per episode, not once per retry
                self._put_back(chunks, before, exc)
                return False
        _log.warning("commit log %s: writing again after %s", self._dir, self._error)
        self._error, self._retriable, self._state = None, False, LogState.OPEN
        self._synced_lsn = upto
        self._close_retired()
        return True

    def _fail(self, exc: LogWriteError) -> None:
        if self._error is None:
            more = "until there is room again" if self._retriable else "for good"
            _log.error("%s; the commit log refuses further writes %s", exc, more)
            self._error = exc
        if self._state is LogState.OPEN:
            self._state = LogState.FAILED
        self._fail_waiters(exc)
