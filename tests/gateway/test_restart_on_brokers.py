"""Restart recovery on Kafka and RocketMQ: a gateway instance that dies without a word while its
task runs, and comes back with the same instance id on a new connection, folds what the worker
did meanwhile and answers GetTask with the task COMPLETED (on 9dcf2a7 nothing subscribed the
task's reply channel again after a restart: the task stayed WORKING). The brokers are the
session-shared ones of test_on_brokers.py (skipped without Java, failing under CI=true)."""

from __future__ import annotations

import asyncio
import uuid

from a2a.types import a2a_pb2

from gateway.tasks.service import TaskService
from gateway.workers.worker import Worker
from tests.gateway.test_on_brokers import WAIT, broker_settings, started  # noqa: F401 (fixture)


def _service(backend, instance_id: str) -> TaskService:
    return TaskService(backend, instance_id=instance_id, poll_wait=0.2, lease_seconds=2.0, adoption_interval=0.2)


async def _until(service: TaskService, task_id: str, state: int) -> a2a_pb2.Task:
    async with asyncio.timeout(WAIT):
        while (task := await service.get(task_id)) is None or task.status.state != state:
            await asyncio.sleep(0.1)    # sleep-ok: GetTask until the event is folded
    return task


async def test_a_gateway_back_with_its_instance_id_folds_what_its_task_did_while_it_was_down(broker_settings):
    name, instance_id = f"gated-{uuid.uuid4().hex[:10]}", f"gw-{uuid.uuid4().hex[:8]}"
    gate = asyncio.Event()

    async def gated(task):
        await task.working("started")
        await gate.wait()
        await task.complete(f"done: {task.text}")

    async with started(broker_settings) as worker_backend:
        worker = Worker(worker_backend, name, gated)
        await worker.start()
        try:
            async with started(broker_settings) as backend:
                service = _service(backend, instance_id)
                await service.start()
                task, _ = await service.submit(name, a2a_pb2.Message(
                    message_id=uuid.uuid4().hex, role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text="work")]))
                await _until(service, task.id, a2a_pb2.TASK_STATE_WORKING)
                await service.supervisor.close()        # gone without a word: no relay, no lease
                await service._consumer.abandon()
            gate.set()                                  # the task ends while its gateway is down
            async with started(broker_settings) as backend:
                again = _service(backend, instance_id)
                await again.start()
                try:
                    done = await _until(again, task.id, a2a_pb2.TASK_STATE_COMPLETED)
                    assert [a.parts[0].text for a in done.artifacts] == ["done: work"]
                finally:
                    await again.close()
        finally:
            await worker.close()
