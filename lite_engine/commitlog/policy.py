"""What each fsync policy does after an append: `always` writes and fdatasyncs at once,
`batch` leaves it to the group commit (group_commit.py), `never` and `interval` hand the
buffer to the OS at the next loop turn (or at 64 KiB), and `interval` fsyncs on a ticker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from . import segment_files
from .errors import LogWriteError
from .state import OPEN, FsyncPolicy

EAGER_WRITE_BYTES = 64 << 10  # under never/interval, hand buffers above this to the OS now


class PolicyHooks:
    """The after-append hook of each policy, and the `interval` policy's fsync ticker.

    A part of CommitLog, mixed into it: every attribute is set up in CommitLog.__init__.
    Owns _write_scheduled, _ticker; reads the rest.
    """

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
        self._guard(segment_files.fsync_segments, [(seg, seg.written)])
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
        if self._buffered >= EAGER_WRITE_BYTES:
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
        if self._state is OPEN and self._chunks:
            try:
                self._write_pending()
            except LogWriteError:
                pass  # sticky: raised by the next append/sync

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
        if self._state is OPEN and self._chunks:
            self._write_pending()
        dirty = [(s, s.written) for s in self._segments if s.fd is not None and s.synced < s.written]
        if not dirty:
            return
        async with self._io_lock:
            await asyncio.to_thread(segment_files.fsync_segments, dirty)
        self._close_retired()
