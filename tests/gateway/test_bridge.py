"""Bridges forward tasks to real A2A agents (a2a-sdk servers on port 0) and relay their events."""

import asyncio
import time
from types import SimpleNamespace

import pytest
from a2a.types import a2a_pb2

from adapters.errors import ConflictError
from gateway.workers.bridges import Bridges
from gateway.registry.cardfetch import AddressPolicy
from gateway.registry.capabilities import Registry
from gateway.tasks import fold
from gateway.tasks.service import TaskService
from gateway.workers.worker import Worker

from .remote_agents import running_agent


def user_message(text: str) -> a2a_pb2.Message:
    return a2a_pb2.Message(message_id=f"m-{text}-{time.monotonic_ns()}", role=a2a_pb2.ROLE_USER,
                           parts=[a2a_pb2.Part(text=text)])


async def events_of(watch) -> list[a2a_pb2.StreamResponse]:
    events = []
    async with asyncio.timeout(10):
        async for event in watch.events():
            events.append(event)
    return events


def states(events) -> list[int]:
    return [e.status_update.status.state for e in events if e.HasField("status_update")]


@pytest.fixture
async def gw(backend):
    registry = Registry(backend)
    await registry.start()
    service = TaskService(backend, poll_wait=0.2)
    await service.start()
    bridges = Bridges(backend, registry, AddressPolicy(), interval=0.2, backoff=0.01)
    await bridges.start()
    yield SimpleNamespace(backend=backend, registry=registry, tasks=service, bridges=bridges)
    await bridges.close()
    await service.close()


async def test_a_task_reaches_a_streaming_agent_and_every_event_comes_back(gw):
    async with running_agent(streaming=True) as agent:
        capability = await gw.bridges.register(agent.base_url)
        task, watch = await gw.tasks.submit(capability.name, user_message("the quarterly report"))
        events = await events_of(watch)
        assert agent.executor.methods == ["SendStreamingMessage"]
    assert states(events)[-1] == a2a_pb2.TASK_STATE_COMPLETED
    assert a2a_pb2.TASK_STATE_SUBMITTED not in states(events)
    assert all(e.status_update.task_id == task.id for e in events if e.HasField("status_update"))
    done = await gw.tasks.get(task.id)
    assert done.id == task.id and done.context_id == task.context_id
    assert done.status.state == a2a_pb2.TASK_STATE_COMPLETED
    assert [a.parts[0].text for a in done.artifacts] == ["summary of: the quarterly report"]
    assert any(p.text == "reading" for m in done.history for p in m.parts)


async def test_a_non_streaming_agent_gets_one_blocking_send(gw):
    async with running_agent(streaming=False) as agent:
        capability = await gw.bridges.register(agent.card_url)
        task, watch = await gw.tasks.submit(capability.name, user_message("a short memo"))
        await events_of(watch)
        assert agent.executor.methods == ["SendMessage"]
    done = await gw.tasks.get(task.id)
    assert done.status.state == a2a_pb2.TASK_STATE_COMPLETED
    assert done.artifacts[0].parts[0].text == "summary of: a short memo"
    assert done.artifacts[0].name == "summary"


async def test_an_agent_speaking_http_json_is_bridged_too(gw):
    async with running_agent(streaming=True, binding="HTTP+JSON") as agent:
        capability = await gw.bridges.register(agent.base_url)
        task, watch = await gw.tasks.submit(capability.name, user_message("over rest"))
        await events_of(watch)
    done = await gw.tasks.get(task.id)
    assert done.status.state == a2a_pb2.TASK_STATE_COMPLETED
    assert done.artifacts[0].parts[0].text == "summary of: over rest"


@pytest.mark.parametrize("streaming", [True, False])
async def test_an_agent_with_an_a2a_0_3_card_is_spoken_to_in_0_3(gw, streaming):
    async with running_agent(streaming=streaming, legacy=True) as agent:
        capability = await gw.bridges.register(agent.base_url)
        assert capability.card["supportedInterfaces"][0]["protocolVersion"] == "0.3.0"
        task, watch = await gw.tasks.submit(capability.name, user_message("an old report"))
        await events_of(watch)
        assert agent.executor.methods == ["message/stream" if streaming else "message/send"]
    done = await gw.tasks.get(task.id)
    assert done.status.state == a2a_pb2.TASK_STATE_COMPLETED
    assert done.artifacts[0].parts[0].text == "summary of: an old report"


@pytest.mark.parametrize("streaming", [True, False])
async def test_the_agents_own_outcomes_pass_through(gw, streaming):
    async with running_agent(streaming=streaming) as agent:
        capability = await gw.bridges.register(agent.base_url)
        failed, failed_watch = await gw.tasks.submit(capability.name, user_message("fail"))
        asked, asked_watch = await gw.tasks.submit(capability.name, user_message("ask"))
        answered, answered_watch = await gw.tasks.submit(capability.name, user_message("message"))
        for watch in (failed_watch, asked_watch, answered_watch):
            await events_of(watch)
    failed = await gw.tasks.get(failed.id)
    assert failed.status.state == a2a_pb2.TASK_STATE_FAILED
    assert failed.status.message.parts[0].text == "cannot read that"
    asked = await gw.tasks.get(asked.id)
    assert asked.status.state == a2a_pb2.TASK_STATE_INPUT_REQUIRED
    assert asked.status.message.parts[0].text == "which pages?"
    answered = await gw.tasks.get(answered.id)
    assert answered.status.state == a2a_pb2.TASK_STATE_COMPLETED
    assert fold.message_reply(answered).parts[0].text == "just a message"     # a Message answer stays one


@pytest.mark.parametrize("streaming", [True, False])
async def test_cancelling_the_task_cancels_the_agents_task(gw, streaming):
    async with running_agent(streaming=streaming) as agent:
        capability = await gw.bridges.register(agent.base_url)
        task, watch = await gw.tasks.submit(capability.name, user_message("wait"))
        async with asyncio.timeout(10):
            await agent.executor.working.wait()
        await gw.tasks.cancel(task.id)
        events = await events_of(watch)
        async with asyncio.timeout(10):
            await agent.executor.cancel_called.wait()
        assert len(agent.executor.cancelled) == 1
    assert states(events)[-1] == a2a_pb2.TASK_STATE_CANCELED
    assert (await gw.tasks.get(task.id)).status.state == a2a_pb2.TASK_STATE_CANCELED


async def test_a_task_past_its_deadline_fails_and_the_agent_is_told_to_stop(gw):
    async with running_agent(streaming=True) as agent:
        capability = await gw.bridges.register(agent.base_url)
        task, watch = await gw.tasks.submit(capability.name, user_message("wait"), deadline=time.time() + 0.5)
        await events_of(watch)
        async with asyncio.timeout(10):
            await agent.executor.cancel_called.wait()
    done = await gw.tasks.get(task.id)
    assert done.status.state == a2a_pb2.TASK_STATE_FAILED
    assert "deadline" in done.status.message.parts[0].text


async def test_an_error_answered_by_the_agent_fails_the_task_at_once(gw):
    async with running_agent(streaming=True) as agent:
        capability = await gw.bridges.register(agent.base_url)
        message = user_message("look at this")
        message.parts.append(a2a_pb2.Part(raw=b"\x89PNG", media_type="image/png"))
        task, watch = await gw.tasks.submit(capability.name, message)
        await events_of(watch)
        assert agent.executor.methods == []
    failed = await gw.tasks.get(task.id)
    assert failed.status.state == a2a_pb2.TASK_STATE_FAILED
    reason = failed.status.message.parts[0].text
    assert "answered with an error" in reason and "ContentTypeNotSupportedError" in reason
    assert (await gw.registry.get(capability.name)).status == "available"


async def test_an_unreachable_agent_fails_the_task_and_the_registry_shows_why(gw):
    async with running_agent(streaming=True) as agent:
        capability = await gw.bridges.register(agent.base_url)
    # the agent is gone now
    task, watch = await gw.tasks.submit(capability.name, user_message("anyone there?"))
    await events_of(watch)
    failed = await gw.tasks.get(task.id)
    assert failed.status.state == a2a_pb2.TASK_STATE_FAILED
    reason = failed.status.message.parts[0].text
    assert "unreachable" in reason and "3 attempts" in reason and agent.base_url in reason
    record = await gw.registry.get(capability.name)
    assert record.status == "error" and "unreachable" in record.error


async def test_an_agent_that_vanishes_mid_task_fails_it_after_bounded_retries(gw):
    async with running_agent(streaming=True) as agent:
        capability = await gw.bridges.register(agent.base_url)
        task, watch = await gw.tasks.submit(capability.name, user_message("wait"))
        async with asyncio.timeout(10):
            await agent.executor.working.wait()
    # the stream broke with the agent; the bridge follows up with GetTask, which fails too
    await events_of(watch)
    failed = await gw.tasks.get(task.id)
    assert failed.status.state == a2a_pb2.TASK_STATE_FAILED
    assert "lost contact with the agent" in failed.status.message.parts[0].text
    assert (await gw.registry.get(capability.name)).status == "error"


async def test_an_agent_that_comes_back_clears_the_error(gw):
    async with running_agent(streaming=True) as agent:
        capability = await gw.bridges.register(agent.base_url)
        await gw.registry.set_health(capability.name, "error", "was down")     # as another instance saw it
        await gw.bridges.sync()                                                 # a tick of the watch loop
        task, watch = await gw.tasks.submit(capability.name, user_message("again"))
        await events_of(watch)
    record = await gw.registry.get(capability.name)
    assert (record.status, record.error) == ("available", None)


async def test_every_gateway_instance_bridges_an_agent_registered_on_another(gw):
    other = Bridges(gw.backend, gw.registry, AddressPolicy(), interval=0.05)
    await other.start()
    try:
        async with running_agent(streaming=True) as agent:
            capability = await gw.bridges.register(agent.base_url)
            async with asyncio.timeout(5):
                while capability.name not in other.running:
                    await asyncio.sleep(0.02)  # sleep-ok: bounded wait for the other instance's registry watch
            await gw.bridges.remove(capability.name)
            assert capability.name not in gw.bridges.running
            async with asyncio.timeout(5):
                while capability.name in other.running:
                    await asyncio.sleep(0.02)  # sleep-ok: bounded wait for the other instance to stop its bridge
    finally:
        await other.close()


async def test_a_native_worker_cannot_take_the_name_of_a_bridged_agent(gw):
    async with running_agent(streaming=True) as agent:
        capability = await gw.bridges.register(agent.base_url)
        worker = Worker(gw.backend, capability.name, lambda task: None, card={"name": "impostor"})
        with pytest.raises(ConflictError):
            await worker.start()
        assert (await gw.registry.get(capability.name)).source == "a2a"
