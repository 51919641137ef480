"""A bridged agent that answers too much: the task ends FAILED with a reason naming the limit it
crossed (the gateway's cap on an agent's answer, or the backend's on one event), never COMPLETED
without its artifact. Real a2a-sdk agents on port 0, the real lite engine."""

import asyncio
from types import SimpleNamespace

import pytest
from a2a.server.agent_execution import AgentExecutor
from a2a.server.tasks import TaskUpdater
from a2a.types import a2a_pb2

from gateway.http.outbound import AddressPolicy
from gateway.registry.capabilities import Registry
from gateway.tasks.service import TaskService
from gateway.workers.bridge import EVENT_HEADROOM
from gateway.workers.bridges import Bridges

from .remote_agents import Agent

MIB = 1 << 20


class Verbose(AgentExecutor):
    """Answers every task with one artifact of `size` bytes of text."""

    def __init__(self, size: int) -> None:
        self.size = size

    async def execute(self, context, queue) -> None:
        updater = TaskUpdater(queue, context.task_id, context.context_id)
        await queue.enqueue_event(a2a_pb2.Task(id=context.task_id, context_id=context.context_id,
                                               status=a2a_pb2.TaskStatus(state=a2a_pb2.TASK_STATE_SUBMITTED),
                                               history=[context.message]))
        await updater.add_artifact([a2a_pb2.Part(text="x" * self.size)], name="everything")
        await updater.complete()

    async def cancel(self, context, queue) -> None:
        await TaskUpdater(queue, context.task_id, context.context_id).cancel()


async def verbose_agent(size: int, *, streaming: bool) -> Agent:
    agent = Agent(streaming=streaming, name="Verbose")
    agent.executor = Verbose(size)
    await agent.start()
    return agent


@pytest.fixture
async def bridging(backend):
    """`await bridging(max_response_bytes)`: a task service and bridges on the test's engine."""
    started = []

    async def start(max_response_bytes: int) -> SimpleNamespace:
        registry = Registry(backend)
        await registry.start()
        service = TaskService(backend, poll_wait=0.2)
        await service.start()
        bridges = Bridges(backend, registry, AddressPolicy(), interval=0.2, backoff=0.01,
                          max_response_bytes=max_response_bytes)
        await bridges.start()
        started.extend([service, bridges])
        return SimpleNamespace(tasks=service, bridges=bridges)

    yield start
    for part in reversed(started):
        await part.close()


async def outcome(gw, agent: Agent) -> a2a_pb2.Task:
    capability = await gw.bridges.register(agent.base_url)
    message = a2a_pb2.Message(message_id="m-1", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text="all of it")])
    task, watch = await gw.tasks.submit(capability.name, message)
    async with asyncio.timeout(30):
        states = [e.status_update.status.state async for e in watch.events() if e.HasField("status_update")]
    assert a2a_pb2.TASK_STATE_COMPLETED not in states
    return await gw.tasks.get(task.id)


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "blocking"])
async def test_an_answer_over_the_cap_fails_the_task_naming_the_cap(bridging, streaming):
    gw = await bridging(max_response_bytes=1 * MIB)
    agent = await verbose_agent(3 * MIB, streaming=streaming)
    try:
        done = await outcome(gw, agent)
    finally:
        await agent.stop()
    assert done.status.state == a2a_pb2.TASK_STATE_FAILED
    reason = done.status.message.parts[0].text
    assert f"larger than {MIB} bytes (gateway.max_agent_response_bytes)" in reason
    assert not done.artifacts


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "blocking"])
async def test_an_answer_under_the_cap_but_over_the_backends_message_limit_fails_the_task_while_it_is_read(
        bridging, backend, streaming):
    gw = await bridging(max_response_bytes=16 * MIB)
    agent = await verbose_agent(6 * MIB, streaming=streaming)      # the engine takes messages up to 4 MiB
    try:
        done = await outcome(gw, agent)
    finally:
        await agent.stop()
    assert done.status.state == a2a_pb2.TASK_STATE_FAILED
    reason = done.status.message.parts[0].text
    assert f"larger than {backend.max_message_bytes - EVENT_HEADROOM} bytes" in reason
    assert f"the backend's max_message_bytes {backend.max_message_bytes}" in reason
    assert not done.artifacts


async def test_an_answer_just_under_the_backends_limit_completes(bridging):
    gw = await bridging(max_response_bytes=16 * MIB)
    agent = await verbose_agent(3 * MIB, streaming=False)
    try:
        capability = await gw.bridges.register(agent.base_url)
        message = a2a_pb2.Message(message_id="m-1", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text="all")])
        task, watch = await gw.tasks.submit(capability.name, message)
        async with asyncio.timeout(30):
            async for _ in watch.events():
                pass
        done = await gw.tasks.get(task.id)
    finally:
        await agent.stop()
    assert done.status.state == a2a_pb2.TASK_STATE_COMPLETED
    assert len(done.artifacts[0].parts[0].text) == 3 * MIB
