"""gateway/tasks/eager.py: a coroutine's first step runs at once; what waits goes on in a task."""

import asyncio

import pytest

from gateway.tasks import eager


async def test_a_coroutine_that_ends_in_its_first_step_is_a_done_future_at_once():
    ran = []

    async def quick():
        ran.append(1)
        return "done"

    future = eager.start(quick())
    assert ran == [1] and future.done() and future.result() == "done"


async def test_a_first_step_that_raises_is_a_failed_future():
    async def refused():
        raise ValueError("no")

    future = eager.start(refused())
    assert future.done()
    with pytest.raises(ValueError):
        await future


async def test_a_coroutine_that_waits_goes_on_without_anyone_awaiting_it():
    gate = asyncio.get_running_loop().create_future()
    steps = []

    async def waits():
        steps.append("first")
        value = await gate
        steps.append(value)
        return value * 2

    future = eager.start(waits())
    assert steps == ["first"] and not future.done()
    gate.set_result(21)
    await asyncio.wait_for(asyncio.shield(future), 5)
    assert steps == ["first", 21] and future.result() == 42


async def test_the_rest_sees_what_it_waited_for_fail():
    gate = asyncio.get_running_loop().create_future()

    async def waits():
        try:
            await gate
        except KeyError:
            return "handled"

    future = eager.start(waits())
    gate.set_exception(KeyError("x"))
    assert await future == "handled"


async def test_cancelling_the_rest_cancels_the_coroutine_where_it_waits():
    gate = asyncio.get_running_loop().create_future()
    seen = []

    async def waits():
        try:
            await gate
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    future = eager.start(waits())
    await asyncio.sleep(0)      # sleep-ok: one loop turn, so the rest's task starts waiting
    future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await future
    assert seen == ["cancelled"] and gate.cancelled()


async def test_the_first_step_runs_in_the_callers_context():
    import contextvars
    var = contextvars.ContextVar("v", default="outside")
    token = var.set("inside")
    try:
        async def reads():
            return var.get()
        assert eager.start(reads()).result() == "inside"
    finally:
        var.reset(token)


async def test_gather_returns_results_in_order_whether_each_ended_at_once_or_waited():
    gate = asyncio.get_running_loop().create_future()

    async def quick(i):
        return i

    async def slow(i):
        await gate
        return i

    waiting = asyncio.ensure_future(eager.gather([quick(0), slow(1), quick(2)]))
    await asyncio.sleep(0)          # sleep-ok: one loop turn, so the gather waits on the slow one
    gate.set_result(None)
    assert await waiting == [0, 1, 2]
    assert await eager.gather([quick(3), quick(4)]) == [3, 4]
    assert await eager.gather([]) == []


async def test_gather_raises_the_failure_after_starting_every_coroutine():
    started = []

    async def fails():
        started.append("fails")
        raise RuntimeError("boom")

    async def quick():
        started.append("quick")

    with pytest.raises(RuntimeError):
        await eager.gather([fails(), quick()])
    assert started == ["fails", "quick"]
