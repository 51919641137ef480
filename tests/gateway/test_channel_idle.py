"""A gateway down longer than the reply channels' idle time (gateway.channel_idle_seconds): no
task is stuck. On the embedded engine the whole process is down, and replaying the log restarts
every channel's idle clock, so recovery re-subscribes the channels before they can expire and
the task completes. With the engine running on (remote), the channel of a task nobody follows
expires with the worker's events; the task then ends FAILED at its deadline, and the reason says
the reply channel expired while the gateway was away (not only "deadline exceeded")."""

from __future__ import annotations

import asyncio
import time

from a2a.types import a2a_pb2

from adapters.factory import engine_config
from adapters.lite import EmbeddedLiteBackend
from gateway.supervisor import Supervisor
from gateway.tasks.lifetimes import Lifetimes
from gateway.tasks.service import TaskService
from gateway.workers.worker import Worker

IDLE = 0.5          # the channels' idle time in these tests
DOWN = 3 * IDLE     # how long the gateway stays away


def message(text: str) -> a2a_pb2.Message:
    return a2a_pb2.Message(message_id=f"{text}-{time.monotonic_ns()}", role=a2a_pb2.ROLE_USER,
                           parts=[a2a_pb2.Part(text=text)])


def open_backend(path) -> EmbeddedLiteBackend:
    return EmbeddedLiteBackend(engine_config({"data_dir": str(path), "tick": 0.005, "session_timeout": 0.5,
                                              "min_lite_idle_seconds": 0.1}))


def service_on(backend, **kw) -> TaskService:
    return TaskService(backend, instance_id="gw-a", poll_wait=0.1, lease_seconds=0.6, adoption_interval=0.1,
                       channel_idle_seconds=IDLE, **kw)


async def until_state(service: TaskService, task_id: str, state: int, timeout: float = 15.0) -> a2a_pb2.Task:
    async with asyncio.timeout(timeout):
        while (task := await service.get(task_id)) is None or task.status.state != state:
            await asyncio.sleep(0.02)   # sleep-ok: GetTask until the event is folded
    return task


async def _gateway_dies_while_its_task_finishes(backend, **submit) -> a2a_pb2.Task:
    """Submit to a gated worker, kill the gateway without a word, let the worker finish. The
    gateway starts after the worker: the last to create the channels' parent sets their idle time
    (a worker sets the default)."""
    gate = asyncio.Event()

    async def gated(task):
        await task.working("started")
        await gate.wait()
        await task.complete("done")

    worker = Worker(backend, "gated", gated)
    await worker.start()
    service = service_on(backend)
    await service.start()
    task, _ = await service.submit("gated", message("work"), **submit)
    await until_state(service, task.id, a2a_pb2.TASK_STATE_WORKING)
    await service.supervisor.close()        # no relay, no lease renewal, no goodbye
    await service._consumer.abandon()
    gate.set()
    async with asyncio.timeout(10):
        while worker._tasks:
            await asyncio.sleep(0.02)   # sleep-ok: until the worker published its end
    await worker.close()
    return task


async def test_an_embedded_gateway_down_longer_than_the_idle_time_completes_its_task_after_restart(tmp_path):
    backend = open_backend(tmp_path / "engine")
    await backend.start()
    task = await _gateway_dies_while_its_task_finishes(backend)
    await backend.close()                   # the whole process is gone ...
    await asyncio.sleep(DOWN)               # sleep-ok: ... for longer than the channels' idle time

    backend = open_backend(tmp_path / "engine")
    await backend.start()
    again = service_on(backend)
    try:
        await again.start()
        done = await until_state(again, task.id, a2a_pb2.TASK_STATE_COMPLETED)
        assert done.artifacts[0].parts[0].text == "done"
    finally:
        await again.close()
        await backend.close()


async def test_a_task_whose_channel_expired_while_its_only_gateway_was_down_fails_at_its_deadline(tmp_path):
    backend = open_backend(tmp_path / "engine")     # the engine stays up: as a remote engine would
    await backend.start()
    task = await _gateway_dies_while_its_task_finishes(backend, deadline=time.time() + DOWN + 2)
    await asyncio.sleep(DOWN + 0.5)         # sleep-ok: the gateway stays away past session and idle time

    supervisor = Supervisor(backoff=0.05)
    again = service_on(backend, supervisor=supervisor)
    lifetimes = Lifetimes(again, interval=0.05, grace=0.5)
    try:
        await again.start()
        await lifetimes.start()
        failed = await until_state(again, task.id, a2a_pb2.TASK_STATE_FAILED)
        reason = failed.status.message.parts[0].text
        assert reason.startswith("reply channel expired while the gateway was away"), reason
        assert f"gateway.channel_idle_seconds ({IDLE:g} s)" in reason and "deadline exceeded" in reason
    finally:
        await lifetimes.close()
        await again.close()
        await supervisor.close()
        await backend.close()
