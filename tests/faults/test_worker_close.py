"""A worker that closes (its gateway got SIGTERM) while it works on a task gives the task back at
once: another instance takes it now, not once the invisibility (here 600 s) has run out. Real
embedded engine, real workers, a real task envelope published by the task service."""

from __future__ import annotations

import asyncio

import pytest
from a2a.types import a2a_pb2

from adapters.lite import EmbeddedLiteBackend
from gateway.tasks.service import TaskService
from gateway.workers.worker import Worker
from lite_engine import EngineConfig

LONG = 600.0


@pytest.fixture
async def backend(tmp_path):
    backend = EmbeddedLiteBackend(EngineConfig(data_dir=tmp_path / "engine", tick=0.005))
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


async def test_a_worker_closing_mid_task_hands_the_task_to_another_worker_at_once(backend):
    started = asyncio.Event()

    async def stuck(task) -> None:
        started.set()
        await asyncio.Event().wait()        # works until its worker closes

    async def done(task) -> None:
        await task.complete(text=f"took over (attempt {task.attempt})")

    service = TaskService(backend, instance_id="gw-close")
    first = Worker(backend, "closing", stuck, invisible=LONG)
    await first.start()
    await service.start()
    second = None
    try:
        message = a2a_pb2.Message(message_id="m1", role=a2a_pb2.ROLE_USER)
        message.parts.add(text="work")
        task, watch = await service.submit("closing", message)
        async with asyncio.timeout(15):
            await started.wait()
        await first.close()
        second = Worker(backend, "closing", done, invisible=LONG)
        await second.start()
        async with asyncio.timeout(15):     # far inside the 600 s the closed worker took it for
            while (got := await service.get(task.id)).status.state != a2a_pb2.TASK_STATE_COMPLETED:
                await asyncio.sleep(0.05)   # sleep-ok: GetTask until the takeover's answer is folded
        assert got.artifacts[0].parts[0].text == "took over (attempt 2)"
    finally:
        if second is not None:
            await second.close()
        await service.close()
