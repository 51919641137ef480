"""One long-lived thread that runs the commit log's batch writes (write + fsync) for the loop.

asyncio.to_thread per batch costs a context copy, an executor work item, a concurrent future and
its chaining into an asyncio future: on this machine ~80 us of CPU per handoff against ~30 us
for a queue put and one call_soon_threadsafe back, and the durable path hands off once per group
commit (several per task). Jobs run one at a time, in order, which the log needs anyway (its
writers hold `_io_lock`).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = object()


class IoThread:
    """Caller: CommitLog on its event loop. `run` is awaited by one coroutine at a time."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` on the thread; its result or exception comes back here. Cancelling
        the caller does not stop a job that began (like asyncio.to_thread)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()
        self._jobs.put((loop, fut, fn, args))
        return await fut

    def stop(self) -> None:
        """The thread ends after the jobs already queued. Caller: CommitLog.close."""
        if self._thread is not None:
            self._jobs.put(_STOP)
            self._thread = None

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not _STOP:
            loop, fut, fn, args = job
            try:
                outcome, value = _settle_result, fn(*args)
            except BaseException as exc:   # handed to the awaiting coroutine, raised there
                outcome, value = _settle_exception, exc
            try:
                loop.call_soon_threadsafe(outcome, fut, value)
            except RuntimeError:
                pass    # the loop is closed: nobody is waiting any more


def _settle_result(fut: asyncio.Future, value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _settle_exception(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
