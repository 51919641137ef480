"""A message that takes its process down at every delivery is dead-lettered after max_attempts
deliveries counted across restarts, and its task ends FAILED naming it (on 9dcf2a7 attempts
started over at every engine restart: such a message ran forever and its task never ended).
Each round is one life of an embedded gateway process: engine, task service, lifetimes, worker
on one data directory, gone without acking when the worker gets the message."""

from __future__ import annotations

import asyncio
import time

from a2a.types import a2a_pb2

from adapters.base import TopicSpec
from adapters.factory import engine_config
from adapters.lite import EmbeddedLiteBackend
from gateway.supervisor import Supervisor
from gateway.tasks import channels
from gateway.tasks.lifetimes import Lifetimes
from gateway.tasks.service import TaskService
from gateway.workers.worker import Worker

MAX_ATTEMPTS = 2


async def _capabilities() -> list[str]:
    return ["crashy"]


async def _limit_attempts(backend) -> None:
    """The capability topic's max_attempts (after the worker's own create_topic, which sets none)."""
    await backend.create_topic(TopicSpec(channels.capability_topic("crashy"), max_attempts=MAX_ATTEMPTS))


async def _life(path, deliveries: list, submit: bool) -> tuple[str | None, a2a_pb2.Task | None]:
    """Run one process life; returns (submitted task id, the task if it ended in this life)."""
    backend = EmbeddedLiteBackend(engine_config({"data_dir": str(path), "tick": 0.005, "session_timeout": 1.0}))
    await backend.start()
    supervisor = Supervisor(backoff=0.05)
    service = TaskService(backend, instance_id="gw-crashy", poll_wait=0.1, supervisor=supervisor)
    lifetimes = Lifetimes(service, capability_names=_capabilities, interval=0.05, capability_ttl=0.05)
    delivered = asyncio.Event()

    async def crashing(task):
        deliveries.append(task.attempt)
        delivered.set()
        await asyncio.Event().wait()       # the process dies here (below), the envelope unacked

    worker = Worker(backend, "crashy", crashing, invisible=60.0)
    try:
        await service.start()
        await lifetimes.start()
        task_id = None
        if submit:
            task, _ = await service.submit("crashy", a2a_pb2.Message(
                message_id=f"m-{time.monotonic_ns()}", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text="boom")]))
            task_id = task.id
        await worker.start()
        await _limit_attempts(backend)
        async with asyncio.timeout(20):
            while not delivered.is_set():
                if lifetimes.failed:
                    return task_id, None
                await asyncio.sleep(0.02)   # sleep-ok: until the worker got it or the task failed
        return task_id, None
    finally:
        await supervisor.close()            # no goodbye: loops end where they are
        await worker.close()
        await backend.close()


async def test_a_message_crashing_its_process_at_every_delivery_is_dead_lettered_and_fails_its_task(tmp_path):
    path, deliveries = tmp_path / "engine", []
    task_id, _ = await _life(path, deliveries, submit=True)
    for _ in range(MAX_ATTEMPTS - 1):
        await _life(path, deliveries, submit=False)
    assert deliveries == list(range(1, MAX_ATTEMPTS + 1))      # attempts count across restarts

    backend = EmbeddedLiteBackend(engine_config({"data_dir": str(path), "tick": 0.005}))
    await backend.start()
    supervisor = Supervisor(backoff=0.05)
    service = TaskService(backend, instance_id="gw-crashy", poll_wait=0.1, supervisor=supervisor)
    lifetimes = Lifetimes(service, capability_names=_capabilities, interval=0.05, capability_ttl=0.05)
    try:
        await service.start()
        await lifetimes.start()
        await _limit_attempts(backend)
        # the next worker to receive (a group member like any): the receive moves it to the dead letters
        worker = await backend.group_consumer(channels.capability_topic("crashy"), channels.worker_group("crashy"))
        assert await worker.receive(max_messages=1, wait=0.5) == []
        async with asyncio.timeout(20):
            while (task := await service.get(task_id)).status.state != a2a_pb2.TASK_STATE_FAILED:
                await asyncio.sleep(0.05)   # sleep-ok: GetTask until the failure is folded
        reason = task.status.message.parts[0].text
        assert f"dead-lettered after {MAX_ATTEMPTS} attempts" in reason
    finally:
        await lifetimes.close()
        await supervisor.close()
        await backend.close()
