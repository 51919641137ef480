"""Real gateway processes over a real `topicbridge engine`, killed mid-task: a restarted gateway
(same instance id) finishes what it was following; a gateway that never comes back has its tasks
adopted by another within lease_seconds + adoption_interval."""

from __future__ import annotations

import asyncio

import pytest
from a2a.types import a2a_pb2

from tests.gateway.a2a_servers import (Agents, GatewayProcess, a2a_client, send_request, task_id_of)
from tests.lite_engine.engine_process import EngineProcess

COMPLETED = a2a_pb2.TASK_STATE_COMPLETED
FAST = {"lease_seconds": 1.0, "adoption_interval": 0.2}


@pytest.fixture
def engine(tmp_path):
    process = EngineProcess(tmp_path / "engine", fsync="never")
    yield process.start()
    process.kill()


def gateway(engine: str, instance_id: str) -> GatewayProcess:
    process = GatewayProcess(engine, start_timeout=60)
    process.settings["gateway"] = {"instance_id": instance_id, **FAST}
    return process


async def submit(url: str, text: str) -> str:
    async with a2a_client(url, "gate") as client:
        [event] = [e async for e in client.send_message(send_request(text, return_immediately=True))]
    return task_id_of(event)


async def until_completed(url: str, task_id: str, timeout: float = 30.0) -> a2a_pb2.Task:
    async with a2a_client(url, "gate") as client, asyncio.timeout(timeout):
        while (task := await client.get_task(a2a_pb2.GetTaskRequest(id=task_id))).status.state != COMPLETED:
            await asyncio.sleep(0.1)    # sleep-ok: GetTask until the task's end is folded
    return task


@pytest.mark.parametrize("stop", ["kill", "stop"])      # SIGKILL, SIGTERM
async def test_a_gateway_restarted_on_its_instance_id_finishes_the_tasks_it_followed(engine, stop):
    async with Agents(engine) as agents:
        first = gateway(engine, "gw-restart")
        url = first.start()
        try:
            task_id = await submit(url, f"open-{stop}")
            getattr(first, stop)()
            agents.gate(f"open-{stop}").set()       # the task ends while its gateway is down
            url = first.start()
            task = await until_completed(url, task_id)
            assert task.artifacts[0].parts[0].text == f"released open-{stop}"
        finally:
            first.stop()


async def test_the_tasks_of_a_gateway_killed_for_good_are_adopted_by_the_other(engine):
    async with Agents(engine) as agents:
        doomed, survivor = gateway(engine, "gw-doomed"), gateway(engine, "gw-survivor")
        doomed_url, survivor_url = doomed.start(), survivor.start()
        try:
            task_id = await submit(doomed_url, "open-adopt")
            doomed.kill()
            agents.gate("open-adopt").set()
            task = await until_completed(survivor_url, task_id)
            assert task.artifacts[0].parts[0].text == "released open-adopt"
        finally:
            doomed.stop()
            survivor.stop()
