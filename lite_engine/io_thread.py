"""One long-lived thread that runs the commit log's batch writes (write + fsync) for the loop,
and the gate that gives one writer at a time the segment fds.

asyncio.to_thread per batch costs a context copy, an executor work item, a concurrent future and
its chaining into an asyncio future: on this machine ~80 us of CPU per handoff against ~30 us
for a queue put and one call_soon_threadsafe back, and the durable path hands off once per group
commit (several per task). Jobs run one at a time, in order, which the log needs anyway (its
writers hold its IoGate).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

_STOP = object()

Done = Callable[[Any, BaseException | None], None]


class IoThread:
    """Caller: CommitLog on its event loop."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` on the thread; its result or exception comes back here. Cancelling
        the caller does not stop a job that began (like asyncio.to_thread)."""
        fut = asyncio.get_running_loop().create_future()
        self.submit(fn, args, partial(_settle, fut))
        return await fut

    def submit(self, fn: Callable[..., Any], args: tuple, done: Done) -> None:
        """Run `fn(*args)` on the thread, then `done(result, exception)` on the calling loop: one
        call_soon_threadsafe back, no future or task (the group commit's path)."""
        loop = asyncio.get_running_loop()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()
        self._jobs.put((loop, fn, args, done))

    def stop(self) -> None:
        """The thread ends after the jobs already queued. Caller: CommitLog.close."""
        if self._thread is not None:
            self._jobs.put(_STOP)
            self._thread = None

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not _STOP:
            loop, fn, args, done = job
            try:
                result, exc = fn(*args), None
            except BaseException as raised:   # handed to `done` on the loop, raised or kept there
                result, exc = None, raised
            try:
                loop.call_soon_threadsafe(done, result, exc)
            except RuntimeError:
                pass    # the loop is closed: nobody is waiting any more


def _settle(fut: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(result)
    else:
        fut.set_exception(exc)


class IoGate:
    """Exclusive use of the commit log's segment fds. Coroutines hold it with `async with`; the
    batch flusher, which runs as loop callbacks rather than a task (a task per commit cost loop
    turns on every durable wait), takes it with `try_take` and otherwise asks to be called back
    with `when_free`. Release hands it to a waiting coroutine first. Caller: loop thread only."""

    def __init__(self) -> None:
        self._held = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._on_free: Callable[[], None] | None = None

    def locked(self) -> bool:
        return self._held

    def try_take(self) -> bool:
        if self._held or self._waiters:
            return False
        self._held = True
        return True

    def when_free(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once, soon) after the gate is next released with nobody waiting."""
        self._on_free = callback

    async def __aenter__(self) -> None:
        if self.try_take():
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut       # handed over by release(): the gate stays held for us
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()      # handed over just as we were cancelled: pass it on
            elif fut in self._waiters:
                self._waiters.remove(fut)
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._held = False
        if self._on_free is not None:
            callback, self._on_free = self._on_free, None
            asyncio.get_running_loop().call_soon(callback)
