"""Long-poll waiters: a caller parks a future, a producer wakes one of them."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable


async def wait_woken(waiters, timeout: float, pass_on: Callable[[], None]) -> bool:
    """Wait to be woken; False on timeout. A wake-up that arrives for a cancelled waiter is
    passed on to the next one, so a cancelled poll never swallows a ready event."""
    fut = asyncio.get_running_loop().create_future()
    waiters.append(fut)
    try:
        async with asyncio.timeout(timeout):
            await fut
        return True
    except TimeoutError:
        return False
    except asyncio.CancelledError:
        if fut.done() and not fut.cancelled():
            pass_on()
        raise
    finally:
        if fut in waiters:
            waiters.remove(fut)


def wake_one(waiters) -> None:
    """Wake the oldest waiter that is still waiting (a deque or a list)."""
    while waiters:
        fut = waiters.popleft() if isinstance(waiters, deque) else waiters.pop(0)
        if not fut.done():
            fut.set_result(None)
            return
