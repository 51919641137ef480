"""Durable waits on the commit log: sync(), sync_future() and written(), the heap of waiters,
and the `batch` policy's group commit on the I/O thread."""

from __future__ import annotations

import asyncio
import heapq

from .errors import CommitLogError, LogClosedError, LogWriteError
from .state import CLOSING, OPEN
from .segment_files import Segment, positions

# Policy batch: a record nobody waits for (an ack, a lite delivery's attempt, a deleted lite
# topic...) does not start a group commit of its own; it rides the next one a waiter starts, or
# this many seconds after it was appended, whichever comes first. Each commit of its own would
# hold the one flusher for an fsync that the next waiter (a task's submit) then queues behind.
# The deferred commit waits this long, and once more if a waiter's commit took the records it was
# armed for meanwhile: nothing rides longer than 2 * LAZY_SYNC_DELAY, and under steady traffic,
# where waiters commit every few milliseconds, it never runs at all.
LAZY_SYNC_DELAY = 0.01


class GroupCommit:
    """Waiters released as their LSN becomes durable; the batch flusher.

    A part of CommitLog, mixed into it: every attribute is set up in CommitLog.__init__.
    Owns _waiters, _flushing, _lazy and the I/O thread's jobs; reads the rest.
    """

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

    def add_waiter(self, lsn: int, waiter, *, lazy: bool = False) -> bool:
        """The hook under sync_future for a caller with its own waiter: True if `lsn` is durable
        already (the waiter is not kept), else `waiter` is settled as a future would be, with
        `set_result(None)` once `lsn` is durable or `set_exception(exc)` if it cannot become so
        (it needs `done()`, `set_result` and `set_exception`; nothing else). Errors known now are
        raised now. Caller: the engine's Persistence, whose waiter also reveals messages.

        `lazy` (policy batch): the wait starts no commit of its own; it rides the next one another
        waiter starts, or the deferred commit of unwaited records (within 2 * LAZY_SYNC_DELAY).
        For a wait nobody is blocked on (the relay's ack after an index write): its fsync then
        neither adds one of its own nor holds the flusher when the next task's submit comes."""
        if lsn <= self._synced_lsn or self._durable_now(lsn):
            return True
        heapq.heappush(self._waiters, (lsn, next(self._waiter_seq), waiter))
        if lazy and self._batch:
            if self._state is OPEN:
                self._commit_later(lsn)
        else:
            self._urgent_upto = max(self._urgent_upto, lsn)
            if self._state is OPEN and not self._flushing:
                self._kick_flusher(lsn)
        return False

    def _durable_now(self, lsn: int) -> bool:
        """Whether `lsn` satisfies the policy already (never/interval: once written, done here);
        raises what sync() must raise."""
        if lsn <= self._synced_lsn:
            return True
        if self._error is not None:
            raise self._error.again()
        if lsn >= self._next_lsn:
            raise ValueError(f"LSN {lsn!r} has not been appended (next LSN is {self._next_lsn})")
        if self._state is OPEN and self._writes_on_sync:
            self._write_pending()
            self._ensure_ticker(asyncio.get_running_loop())
            return True
        if self._state is not OPEN and self._state is not CLOSING:
            raise LogClosedError(self._dir, self._state.value)
        return False

    async def written(self, lsn: int) -> None:
        """Return once `lsn` is in the operating system (it survives this process being killed;
        not yet a power loss): a record whose fsync may ride a later commit. Under policies
        other than batch, the same as sync."""
        if lsn <= self._synced_lsn or lsn <= self._written:
            return
        if not self._batch or self._state is not OPEN:
            await self.sync(lsn)
            return
        if self._error is not None:
            raise self._error.again()
        async with self._io_lock:      # a commit under way writes first: this writes what it left
            if lsn > max(self._written, self._synced_lsn) and self._error is None:
                chunks, upto = self._take()
                before = positions(chunks)
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
        self._urgent_upto = max(self._urgent_upto, lsn)
        if self._state is OPEN:
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
        self._lazy_upto = self._next_lsn - 1
        self._lazy = loop.call_later(LAZY_SYNC_DELAY, self._lazy_commit)

    def _lazy_commit(self) -> None:
        self._lazy = None
        if self._state is not OPEN or self._synced_lsn >= self._next_lsn - 1:
            return
        if self._synced_lsn >= self._lazy_upto:    # a waiter's commit took them: the newer ones wait their turn
            self._commit_later(self._next_lsn - 1)
        else:
            self._kick_flusher(self._next_lsn - 1)

    # Policy `batch`: a group commit is two loop callbacks around one job on the I/O thread, not
    # a task: _start_batch takes everything buffered under the IoGate and hands it over;
    # _batch_done releases every waiter it covers and, if some still wait (they appended during
    # the fsync), starts the next batch at once. Each durable wait thus costs one thread hop
    # each way and no extra loop turns. Caller: loop thread only.

    def _start_batch(self) -> None:
        if self._state is not OPEN or self._error is not None \
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
        before = positions(chunks)
        self._io_thread.submit(self._write_and_sync, (chunks, segments),
                               lambda _, exc: self._batch_done(chunks, before, upto, exc))

    def _batch_done(self, chunks: list[tuple[Segment, bytearray]], before: dict[Segment, int],
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
        if self._urgent_upto > upto:
            self._start_batch()
        else:
            self._flush_idle()

    def _flush_idle(self) -> None:
        """No waiter left but lazy ones: what was appended meanwhile rides a later commit."""
        self._flushing = False
        if self._state is OPEN and self._synced_lsn < self._next_lsn - 1:
            if self._urgent_upto > self._synced_lsn:
                self._kick_flusher(self._next_lsn - 1)
            else:
                self._commit_later(self._next_lsn - 1)
