"""Task continuation (A2A multi-turn) in the task flow: `TaskService.resume`, turns on the
envelopes and reply events, native workers' next turn, and bridged agents' own task ids."""

import asyncio
import json
import time
from types import SimpleNamespace

import pytest
from a2a.types import a2a_pb2

from adapters.base import Message, TopicSpec
from gateway.tasks import channels
from gateway.workers.bridge import REMOTE_TABLE
from gateway.workers.bridges import Bridges
from gateway.http.outbound import AddressPolicy
from gateway.tasks.envelope import ReplyEvent, TaskEnvelope
from gateway.registry.capabilities import Registry
from gateway.tasks.errors import (ContextMismatchError, TaskNotFoundError, TaskRunningError, TaskTerminalError,
                                   WrongCapabilityError)
from gateway.tasks.service import TaskService

from .remote_agents import running_agent

COMPLETED, INPUT_REQUIRED = a2a_pb2.TASK_STATE_COMPLETED, a2a_pb2.TASK_STATE_INPUT_REQUIRED


def user_message(text: str) -> a2a_pb2.Message:
    return a2a_pb2.Message(message_id=f"m-{text}-{time.monotonic_ns()}", role=a2a_pb2.ROLE_USER,
                           parts=[a2a_pb2.Part(text=text)])


def status(task_id: str, state: int, text: str | None = None) -> a2a_pb2.StreamResponse:
    update = a2a_pb2.TaskStatusUpdateEvent(task_id=task_id)
    update.status.state = state
    if text is not None:
        update.status.message.CopyFrom(a2a_pb2.Message(message_id=f"q-{text}", role=a2a_pb2.ROLE_AGENT,
                                                       parts=[a2a_pb2.Part(text=text)]))
    return a2a_pb2.StreamResponse(status_update=update)


def artifact(task_id: str, text: str) -> a2a_pb2.StreamResponse:
    update = a2a_pb2.TaskArtifactUpdateEvent(task_id=task_id, artifact=a2a_pb2.Artifact(
        artifact_id="a", parts=[a2a_pb2.Part(text=text)]))
    return a2a_pb2.StreamResponse(artifact_update=update)


async def events_of(watch) -> list[a2a_pb2.StreamResponse]:
    async with asyncio.timeout(10):
        return [event async for event in watch.events()]


def texts(task: a2a_pb2.Task) -> list[str]:
    return [p.text for m in task.history for p in m.parts]


@pytest.fixture
async def other(backend):
    """A second gateway instance on the same backend."""
    s = TaskService(backend, poll_wait=0.2)
    await s.start()
    yield s
    await s.close()


async def asker(task) -> None:
    if task.turn == 0:
        await task.require_input(f"how many {task.text}?")
    else:
        await task.artifact(json.dumps({"turn": task.turn, "history": [p.text for m in task.history for p in m.parts]}))
        await task.complete(f"{task.text} {task.history[0].parts[0].text}")


# ------------------------------------------------------------------ the task flow

async def test_a_worker_gets_the_answer_as_its_next_turn_with_the_history(service, other, workers):
    await workers("asker", asker)
    task, watch = await service.submit("asker", user_message("cups"))
    asked = await events_of(watch)
    assert asked[-1].status_update.status.state == INPUT_REQUIRED
    assert (await service.get(task.id)).status.state == INPUT_REQUIRED
    resumed, watch = await other.resume(task.id, user_message("two"), capability="asker")    # another instance
    assert resumed.status.state == a2a_pb2.TASK_STATE_SUBMITTED and texts(resumed) == ["cups", "how many cups?", "two"]
    events = await events_of(watch)
    assert events[-1].status_update.status.state == COMPLETED
    assert all(e.WhichOneof("payload") != "status_update" or e.status_update.status.state != INPUT_REQUIRED
               for e in events)         # nothing of the first turn again
    done = await service.get(task.id)
    assert done.status.state == COMPLETED and texts(done) == ["cups", "how many cups?", "two"]
    assert json.loads(done.artifacts[0].parts[0].text) == {"turn": 1, "history": ["cups", "how many cups?"]}
    assert done.artifacts[1].parts[0].text == "two cups" and len(done.artifacts) == 2
    with pytest.raises(TaskTerminalError):       # finished now
        await service.resume(task.id, user_message("three"))


async def test_an_answer_sent_the_moment_the_question_arrives_continues_the_task(service, workers):
    """The relay shows an event before it indexes it: the answer can reach `resume` while the
    relay still holds the interrupted turn."""
    await workers("asker", asker)
    task, watch = await service.submit("asker", user_message("spoons"))
    async with asyncio.timeout(10):
        async for event in watch.events():
            if event.status_update.status.state == INPUT_REQUIRED:
                _, next_watch = await service.resume(task.id, user_message("four"))
    events = await events_of(next_watch)
    assert events[-1].status_update.status.state == COMPLETED
    assert (await service.get(task.id)).artifacts[-1].parts[0].text == "four spoons"


async def test_the_envelope_of_a_continuation_and_events_replayed_from_earlier_turns(backend, service, other):
    """Events published by hand: the first turn's in the old format (no `turn`); a duplicate of
    it after the answer is not shown again, and the second turn's seq starts at 0 again."""
    topic = channels.capability_topic("by-hand")
    await backend.create_topic(TopicSpec(topic))
    envelopes = await backend.group_consumer(topic, "test-reader")
    task, watch = await service.submit("by-hand", user_message("plates"))

    async def reply(doc: dict) -> None:
        await backend.publish(channels.REPLY_TOPIC, Message(json.dumps(doc).encode()),
                              lite_topic=channels.reply_channel(task.id))

    question = json.loads(ReplyEvent(task.id, 1, 1, status(task.id, INPUT_REQUIRED, "how many?"), True).encode())
    assert "turn" not in question
    await reply(json.loads(ReplyEvent(task.id, 1, 0, status(task.id, a2a_pb2.TASK_STATE_WORKING)).encode()))
    await reply(question)
    assert [e.status_update.status.state for e in await events_of(watch)][-1] == INPUT_REQUIRED

    resumed, watch = await service.resume(task.id, user_message("five"))
    await reply(question)                                       # redelivered from the first turn
    for seq, event in enumerate([status(task.id, a2a_pb2.TASK_STATE_WORKING), artifact(task.id, "5 plates"),
                                 status(task.id, COMPLETED)]):
        await reply(json.loads(ReplyEvent(task.id, 1, seq, event, seq == 2, turn=1).encode()))
    events = await events_of(watch)
    assert [e.WhichOneof("payload") for e in events] == ["status_update", "artifact_update", "status_update"]
    done = await other.get(task.id)
    assert done.status.state == COMPLETED and texts(done) == ["plates", "how many?", "five"]
    assert [a.parts[0].text for a in done.artifacts] == ["5 plates"]

    received = []
    async with asyncio.timeout(10):
        while len(received) < 2:
            received += await envelopes.receive(max_messages=2, wait=1.0)
    first, second = (TaskEnvelope.decode(d.body) for d in received)
    assert (first.turn, first.history) == (0, [])
    assert (second.task_id, second.context_id, second.capability, second.turn) == (task.id, task.context_id,
                                                                                    "by-hand", 1)
    assert [p.text for m in second.history for p in m.parts] == ["plates", "how many?"]
    assert second.message.parts[0].text == "five" and second.message.task_id == task.id


async def test_subscribing_on_another_instance_follows_the_current_turn_to_its_end(backend, service, other,
                                                                                   workers):
    gate = asyncio.Event()

    async def gated(task) -> None:
        if task.turn == 0:
            await task.require_input("ready?")
        else:
            await gate.wait()
            await task.complete("done")

    await workers("gated", gated)
    task, watch = await service.submit("gated", user_message("go"))
    await events_of(watch)
    _, watch = await service.resume(task.id, user_message("yes"))
    async with asyncio.timeout(10):
        async for event in watch.events():
            if event.status_update.status.state == a2a_pb2.TASK_STATE_WORKING:
                break
    third = TaskService(backend, poll_wait=0.2)     # knows nothing of the task: re-attaches to its channel
    await third.start()
    try:
        stream = third.subscribe(task.id)
        first = await anext(stream)
        gate.set()
        async with asyncio.timeout(10):
            rest = [event async for event in stream]
    finally:
        await third.close()
    assert first.task.id == task.id and texts(first.task)[-1] == "yes"
    states = [e.status_update.status.state for e in rest if e.HasField("status_update")]
    assert states[-1] == COMPLETED and INPUT_REQUIRED not in states


async def test_continuations_that_cannot_be_taken(service, workers):
    await workers("asker", asker)
    with pytest.raises(TaskNotFoundError):
        await service.resume("0" * 32, user_message("hello?"))
    task, watch = await service.submit("asker", user_message("forks"))
    await events_of(watch)
    for message, capability, error in [(a2a_pb2.Message(context_id="another", parts=[a2a_pb2.Part(text="x")]),
                                        "asker", ContextMismatchError),
                                       (user_message("x"), "echo", WrongCapabilityError)]:
        with pytest.raises(error):
            await service.resume(task.id, message, capability=capability)
    _, watch = await service.resume(task.id, user_message("six"), capability="asker")
    with pytest.raises((TaskRunningError, TaskTerminalError)):       # taken: its next turn runs
        await service.resume(task.id, user_message("seven"))
    await events_of(watch)
    assert (await service.get(task.id)).artifacts[-1].parts[0].text == "six forks"


# ------------------------------------------------------------------ bridged agents

@pytest.fixture
async def gw(backend, service):
    registry = Registry(backend)
    await registry.start()
    bridges = Bridges(backend, registry, AddressPolicy(), interval=0.2, backoff=0.01)
    await bridges.start()
    yield SimpleNamespace(backend=backend, tasks=service, bridges=bridges)
    await bridges.close()


@pytest.mark.parametrize("streaming", [True, False])
async def test_a_bridged_agent_gets_the_answer_on_its_own_task_and_context(gw, other, streaming):
    table = await gw.backend.table(REMOTE_TABLE)
    async with running_agent(streaming=streaming) as agent:
        capability = await gw.bridges.register(agent.base_url)
        task, watch = await gw.tasks.submit(capability.name, user_message("ask"))
        await events_of(watch)
        row = json.loads(await table.get(task.id))
        _, watch = await other.resume(task.id, user_message("pages 1-3"))
        await events_of(watch)
        assert agent.executor.methods == ["SendStreamingMessage" if streaming else "SendMessage"] * 2
    done = await gw.tasks.get(task.id)
    assert done.status.state == COMPLETED and done.artifacts[0].parts[0].text == "summary of: pages 1-3"
    assert row["task_id"] and row["task_id"] != task.id and row["context_id"] == task.context_id
    assert texts(done).count("which pages?") == 1
    assert await table.get(task.id) is None         # the task ended: the row went with it


async def test_a_continuation_the_bridge_has_no_agent_task_for_fails(gw):
    async with running_agent(streaming=True) as agent:
        capability = await gw.bridges.register(agent.base_url)
        task, watch = await gw.tasks.submit(capability.name, user_message("ask"))
        await events_of(watch)
        await (await gw.backend.table(REMOTE_TABLE)).delete(task.id)     # as if written by nobody
        _, watch = await gw.tasks.resume(task.id, user_message("pages 1-3"))
        await events_of(watch)
    failed = await gw.tasks.get(task.id)
    assert failed.status.state == a2a_pb2.TASK_STATE_FAILED
    assert "no record of the agent's task" in failed.status.message.parts[0].text
