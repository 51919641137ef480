import asyncio

import pytest

from gateway.supervisor import Supervisor


async def test_a_loop_that_raises_is_logged_marked_down_and_restarted(caplog):
    runs = []
    restarted = asyncio.Event()

    async def flaky():
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("boom")
        restarted.set()
        await asyncio.Event().wait()

    sup = Supervisor(backoff=0.01, healthy_after=60)
    sup.spawn("relay", flaky)
    async with asyncio.timeout(5):
        await restarted.wait()
    assert sup.down() == {"relay": "RuntimeError: boom"}
    assert sup.loops["relay"].restarts == 1
    assert "background loop 'relay' failed" in caplog.text and "RuntimeError: boom" in caplog.text
    await sup.close()


async def test_a_restarted_loop_is_up_again_once_it_has_run_healthy_after_seconds():
    crashed = asyncio.Event()
    calls = 0

    async def once_bad():
        nonlocal calls
        calls += 1
        if calls == 1:
            crashed.set()
            raise RuntimeError("once")
        await asyncio.Event().wait()

    sup = Supervisor(backoff=0.0, healthy_after=0.0)
    sup.spawn("bridges", once_bad)
    async with asyncio.timeout(5):
        while calls < 2:
            await asyncio.sleep(0)      # sleep-ok: yields to the loop under test, bounded by the timeout
    assert sup.down() == {}
    await sup.close()


async def test_close_cancels_every_loop_and_a_finished_loop_is_not_restarted():
    done = []

    async def finishes():
        done.append(1)

    sup = Supervisor(backoff=0.01)
    task = sup.spawn("once", finishes)
    await task
    assert done == [1] and sup.down() == {}
    forever = sup.spawn("forever", lambda: asyncio.Event().wait())
    await sup.close()
    assert forever.cancelled()


async def test_two_running_loops_cannot_share_a_name():
    sup = Supervisor()
    sup.spawn("x", lambda: asyncio.Event().wait())
    with pytest.raises(ValueError, match="'x'"):
        sup.spawn("x", lambda: asyncio.Event().wait())
    await sup.close()
