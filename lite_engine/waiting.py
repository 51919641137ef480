"""Long-poll waiters: a caller parks a future, a producer wakes one of them."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable


async def wait_woken(waiters, timeout: float, pass_on: Callable[[], None]) -> bool:
    """Wait to be woken; False on timeout. A wake-up that arrives for a cancelled waiter is
    passed on to the next one, so a cancelled poll never swallows a ready event.

    Wakers set the future's result to None; the timeout is one timer that sets it to False
    (cheaper than an asyncio.timeout context on every empty long poll)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    waiters.append(fut)
    timer = loop.call_later(timeout, _time_out, fut)
    try:
        return await fut is None
    except asyncio.CancelledError:
        if fut.done() and not fut.cancelled() and fut.result() is None:
            pass_on()
        raise
    finally:
        timer.cancel()
        if fut in waiters:
            waiters.remove(fut)


def _time_out(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(False)


def wake_one(waiters) -> None:
    """Wake the oldest waiter that is still waiting (a deque or a list)."""
    while waiters:
        fut = waiters.popleft() if isinstance(waiters, deque) else waiters.pop(0)
        if not fut.done():
            fut.set_result(None)
            return
