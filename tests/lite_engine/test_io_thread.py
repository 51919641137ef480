"""The commit log's flusher thread: results and exceptions come back to the awaiting coroutine,
and a caller cancelled mid-job leaves the thread serving the next one."""

import asyncio
import threading

import pytest

from lite_engine.io_thread import IoGate, IoThread


async def test_a_job_returns_its_result_from_the_thread():
    io = IoThread("t")
    try:
        assert await io.run(threading.current_thread) is not threading.current_thread()
        assert await io.run(sum, [1, 2, 3]) == 6
    finally:
        io.stop()


async def test_a_job_that_raises_raises_in_its_caller():
    io = IoThread("t")
    try:
        with pytest.raises(OSError, match="disk gone"):
            await io.run(_raise, OSError("disk gone"))
    finally:
        io.stop()


async def test_a_caller_cancelled_mid_job_leaves_the_thread_serving_the_next_job():
    io = IoThread("t")
    started, release = threading.Event(), threading.Event()

    def held() -> str:
        started.set()
        release.wait(10)
        return "late"

    try:
        caller = asyncio.create_task(io.run(held))
        assert await asyncio.to_thread(started.wait, 10)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        release.set()
        async with asyncio.timeout(10):
            assert await io.run(str, 7) == "7"
    finally:
        release.set()
        io.stop()


def _raise(exc: BaseException) -> None:
    raise exc


async def test_submit_calls_back_on_the_loop_with_the_result_or_the_exception():
    io = IoThread("t")
    loop = asyncio.get_running_loop()
    outcomes: asyncio.Queue = asyncio.Queue(maxsize=2)
    try:
        io.submit(sum, ([1, 2],), lambda result, exc: outcomes.put_nowait((result, exc)))
        io.submit(_raise, (OSError("disk gone"),), lambda result, exc: outcomes.put_nowait((result, exc)))
        async with asyncio.timeout(10):
            assert await outcomes.get() == (3, None)
            result, exc = await outcomes.get()
        assert result is None and isinstance(exc, OSError)
        assert loop.is_running()
    finally:
        io.stop()


async def test_the_gate_goes_to_a_waiting_coroutine_before_the_flusher_callback():
    gate, order = IoGate(), []
    assert gate.try_take()
    gate.when_free(lambda: order.append("flusher"))
    waiter = asyncio.create_task(_hold(gate, order))
    await asyncio.sleep(0)  # sleep-ok: one loop turn, so the coroutine queues on the gate
    assert not gate.try_take()
    gate.release()
    async with asyncio.timeout(5):
        await waiter
        while order != ["coroutine", "flusher"]:
            await asyncio.sleep(0)  # sleep-ok: the flusher callback runs one turn after release
    assert not gate.locked()


async def test_a_gate_waiter_cancelled_as_it_is_handed_the_gate_passes_it_on():
    gate = IoGate()
    assert gate.try_take()
    first = asyncio.create_task(_hold(gate, []))
    second_order: list[str] = []
    second = asyncio.create_task(_hold(gate, second_order))
    await asyncio.sleep(0)  # sleep-ok: one loop turn, so both queue on the gate
    gate.release()          # hands it to `first`...
    first.cancel()          # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    async with asyncio.timeout(5):
        await second
    assert second_order == ["coroutine"] and not gate.locked()


async def _hold(gate: IoGate, order: list[str]) -> None:
    async with gate:
        order.append("coroutine")
