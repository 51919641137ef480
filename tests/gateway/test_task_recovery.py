"""No task lost, none stuck: restart recovery, adoption, resume races, channel clean-up, on a
real embedded engine (restarted on its data dir) and a second TaskService on the same engine."""

from __future__ import annotations

import asyncio

import pytest
from a2a.types import a2a_pb2

from adapters.errors import QuotaExceededError
from adapters.factory import engine_config
from adapters.lite import EmbeddedLiteBackend
from gateway.tasks.errors import TaskRunningError
from gateway.tasks.ownership import LEASE_TABLE, OWNER_TABLE, Owners
from gateway.tasks.service import TaskService
from gateway.workers.worker import Worker

COMPLETED = a2a_pb2.TASK_STATE_COMPLETED
INPUT_REQUIRED = a2a_pb2.TASK_STATE_INPUT_REQUIRED


def message(text: str) -> a2a_pb2.Message:
    return a2a_pb2.Message(message_id=text + "-m", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text=text)])


def open_backend(path, **extra) -> EmbeddedLiteBackend:
    return EmbeddedLiteBackend(engine_config({"data_dir": str(path), "tick": 0.005, "session_timeout": 2.0,
                                              "min_lite_idle_seconds": 0.1, **extra}))


async def until_state(service: TaskService, task_id: str, state: int, timeout: float = 10.0) -> a2a_pb2.Task:
    async with asyncio.timeout(timeout):
        while (task := await service.get(task_id)) is None or task.status.state != state:
            await asyncio.sleep(0.02)   # sleep-ok: GetTask until the event is folded
    return task


def fast(backend, instance_id: str, **kw) -> TaskService:
    return TaskService(backend, instance_id=instance_id, poll_wait=0.1, lease_seconds=0.6,
                       adoption_interval=0.1, **kw)


async def test_a_restarted_gateway_folds_what_its_tasks_did_while_it_was_down(tmp_path):
    gate = asyncio.Event()

    async def gated(task):
        await task.working("started")
        await gate.wait()
        await task.artifact("done", name="result")
        await task.complete()

    backend = open_backend(tmp_path / "engine")
    await backend.start()
    service = fast(backend, "gw-a")
    await service.start()
    worker = Worker(backend, "gated", gated)
    await worker.start()
    task, watch = await service.submit("gated", message("work"))
    await until_state(service, task.id, a2a_pb2.TASK_STATE_WORKING)
    # the gateway goes away without a word; the worker finishes while it is gone
    await service.supervisor.close()
    await service._consumer.abandon()
    gate.set()
    async with asyncio.timeout(10):
        while worker._tasks:
            await asyncio.sleep(0.02)   # sleep-ok: until the worker published its end
    await worker.close()
    await backend.close()

    backend = open_backend(tmp_path / "engine")     # the engine restarts on its log, InterestSets gone
    await backend.start()
    again = fast(backend, "gw-a")
    try:
        await again.start()
        done = await until_state(again, task.id, COMPLETED)
        assert [a.parts[0].text for a in done.artifacts] == ["done"]
        indexed = a2a_pb2.Task.FromString(await again._table.get(task.id))
        assert indexed.status.state == COMPLETED and len(indexed.artifacts) == 1    # folded once
    finally:
        await again.close()
        await backend.close()


async def test_tasks_of_a_gateway_that_never_comes_back_are_adopted_by_another(backend, workers):
    gate = asyncio.Event()

    async def gated(task):
        await gate.wait()
        await task.complete("released")

    await workers("gated", gated)
    dead, alive = fast(backend, "gw-dead"), fast(backend, "gw-alive")
    await dead.start()
    await alive.start()
    try:
        task, _ = await dead.submit("gated", message("work"))
        await dead.supervisor.close()       # dies: no lease renewal, no relay
        await dead._consumer.abandon()
        async with asyncio.timeout(10):
            while alive.recovery.adopted < 1:
                await asyncio.sleep(0.02)   # sleep-ok: until the adoption loop took the task
        gate.set()
        done = await until_state(alive, task.id, COMPLETED)
        assert done.artifacts[0].parts[0].text == "released"
        assert not [k async for k in dead._owners.mine()]      # nothing left with the dead instance
    finally:
        await alive.close()


async def test_two_instances_racing_to_adopt_one_task_take_it_exactly_once(backend):
    async def owners(instance_id):
        return Owners(await backend.table(OWNER_TABLE), await backend.table(LEASE_TABLE), instance_id,
                      lease_seconds=0.5)

    dead, first, second = await owners("gw-dead"), await owners("gw-one"), await owners("gw-two")
    await dead.claim("t1")
    await dead.expire()
    assert [i for i, _ in await first.expired()] == ["gw-dead"]
    taken = await asyncio.gather(first.take("gw-dead", "t1"), second.take("gw-dead", "t1"))
    rows = [key for key, _ in await (await backend.table(OWNER_TABLE)).scan("")]
    assert sorted(taken) == [False, True]
    assert rows == [("gw-one" if taken[0] else "gw-two") + "/t1"]


async def test_resume_on_two_instances_at_once_is_taken_by_exactly_one(backend, workers):
    async def asker(task):
        if task.turn == 0:
            await task.require_input("how many?")
        else:
            await task.complete(task.text)

    await workers("asker", asker)
    one, two = fast(backend, "gw-one"), fast(backend, "gw-two")
    await one.start()
    await two.start()
    try:
        task, _ = await one.submit("asker", message("tea"))
        await until_state(two, task.id, INPUT_REQUIRED)
        results = await asyncio.gather(one.resume(task.id, message("two")), two.resume(task.id, message("three")),
                                       return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["TaskRunningError", "tuple"]
        winner = one if isinstance(results[0], tuple) else two
        done = await until_state(winner, task.id, COMPLETED)
        assert done.artifacts[0].parts[0].text == ("two" if winner is one else "three")
        assert isinstance(next(r for r in results if not isinstance(r, tuple)), TaskRunningError)
    finally:
        await one.close()
        await two.close()


async def test_an_engine_allowing_50_lite_topics_runs_200_tasks(tmp_path):
    backend = open_backend(tmp_path / "engine", max_lite_topics=50)
    await backend.start()

    async def echo(task):
        await task.complete(task.text)

    worker = Worker(backend, "echo", echo)
    await worker.start()
    service = fast(backend, "gw-a", channel_idle_seconds=0.2)     # started last: its idle time holds
    await service.start()
    try:
        async def one(i):
            task, watch = await service.submit("echo", message(f"n{i}"))
            async for _ in watch.events():
                pass
            return (await service.get(task.id)).status.state

        states = []
        for start in range(0, 200, 10):
            async with asyncio.timeout(30):
                # an ended task's two channels go away: room for the next ten comes back
                while (await backend.health()).detail["lite_topics"] > 50 - 20:
                    await asyncio.sleep(0.05)   # sleep-ok: until idle channels expired
                states += await asyncio.gather(*(one(i) for i in range(start, start + 10)))
        assert states == [COMPLETED] * 200
    except QuotaExceededError as e:
        pytest.fail(f"lite topics of ended tasks still count: {e}")
    finally:
        await service.close()
        await worker.close()
        await backend.close()
