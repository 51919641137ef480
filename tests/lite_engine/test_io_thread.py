"""The commit log's flusher thread: results and exceptions come back to the awaiting coroutine,
and a caller cancelled mid-job leaves the thread serving the next one."""

import asyncio
import threading

import pytest

from lite_engine.io_thread import IoThread


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
