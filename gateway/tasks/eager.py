"""Start a coroutine at once, in the caller's step, and make a task only of what is left.

`asyncio.ensure_future` and `gather` make a task of every coroutine and run its first step in a
later turn of the loop. On the embedded engine most of a task's backend calls end in that first
step (an ack) or do their work there and then wait for a commit (a publish, a table write): a
task, its scheduling and a turn of the loop per call, for nothing. `start` runs the first step
now; a coroutine that ends there costs a done future, and one that waits goes on in a task from
where it waits (`_Rest`), so it runs on without anyone awaiting it, as under ensure_future.
(Python 3.12's eager task factory does this for a whole loop; the gateway runs on 3.11 too.)

The first step runs in the caller's context (its context variables: `defer_durability` blocks),
as a task created there would copy it. It also runs as the caller's task: a coroutine whose first
step enters `asyncio.timeout` (which binds the current task) or sets context variables for itself
must not be started here. The backends' publish and ack (the two users) do neither before their
first wait; a backend that does so there would need to be started with `ensure_future`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine, Iterable


def start(coro: Coroutine) -> asyncio.Future:
    """`asyncio.ensure_future(coro)`, with its first step run now."""
    loop = asyncio.get_running_loop()
    try:
        yielded = coro.send(None)
    except StopIteration as done:
        future = loop.create_future()
        future.set_result(done.value)
        return future
    except BaseException as e:      # as a task: the exception is the future's (KeyboardInterrupt too)
        future = loop.create_future()
        if isinstance(e, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(e)
        return future
    return loop.create_task(_finish(coro, yielded))


async def gather(coros: Iterable[Coroutine]) -> list[Any]:
    """`asyncio.gather(*coros)` (the first exception raised, the others run on), each started
    now (`start`): no task, future or turn of the loop when they all end in their first step."""
    results, pending = [], None
    for i, coro in enumerate(coros):
        future = start(coro)
        if future.done() and not future.cancelled() and future.exception() is None:
            results.append(future.result())
            continue
        results.append(None)
        if pending is None:
            pending = {}
        pending[i] = future
    if pending:
        for i, value in zip(pending, await asyncio.gather(*pending.values())):
            results[i] = value
    return results


async def _finish(coro: Coroutine, yielded: Any) -> Any:
    return await _Rest(coro, yielded)


class _Rest:
    """Awaits what is left of a started coroutine: hands on what it waits for (`yielded`, as its
    await yielded it) and resumes it with the outcome, as `await` on it would have."""

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine, yielded: Any) -> None:
        self.coro, self.yielded = coro, yielded

    def __await__(self):
        coro, yielded = self.coro, self.yielded
        while True:
            try:
                value = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as e:
                try:
                    yielded = coro.throw(e)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    yielded = coro.send(value)
                except StopIteration as done:
                    return done.value

