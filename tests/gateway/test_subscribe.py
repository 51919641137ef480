"""SubscribeToTask (TaskService.subscribe with follow_turns) on a real embedded engine: it follows
a task to its terminal state from any state, across INPUT_REQUIRED, on any instance, and it
leaves nothing behind when the subscriber goes."""

from __future__ import annotations

import asyncio
import contextlib

from a2a.types import a2a_pb2

from gateway.tasks.reattach import Reader
from gateway.tasks.service import TaskService

COMPLETED = a2a_pb2.TASK_STATE_COMPLETED
INPUT_REQUIRED = a2a_pb2.TASK_STATE_INPUT_REQUIRED


def message(text: str) -> a2a_pb2.Message:
    return a2a_pb2.Message(message_id=text + "-m", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text=text)])


def state(event: a2a_pb2.StreamResponse) -> int:
    return event.task.status.state if event.HasField("task") else event.status_update.status.state


async def asker(task):
    if task.turn == 0:
        await task.require_input("how many?")
    else:
        await task.complete(f"answer {task.text}")


async def until_state(service, task_id, wanted):
    async with asyncio.timeout(10):
        while (task := await service.get(task_id)).status.state != wanted:
            await asyncio.sleep(0.02)   # sleep-ok: GetTask until the turn end is indexed
    return task


async def test_a_subscription_that_starts_at_input_required_follows_the_next_turn_to_its_end(backend, service,
                                                                                               workers):
    await workers("asker", asker)
    other = TaskService(backend, poll_wait=0.2)     # the answer arrives on another instance
    await other.start()
    try:
        task, _ = await service.submit("asker", message("tea"))
        await until_state(service, task.id, INPUT_REQUIRED)
        seen = []

        async def follow():
            async for event in service.subscribe(task.id, follow_turns=True):
                seen.append(event)
                if len(seen) == 1:
                    await other.resume(task.id, message("two"))

        async with asyncio.timeout(15):
            await follow()      # ends by itself at COMPLETED
        assert state(seen[0]) == INPUT_REQUIRED and state(seen[-1]) == COMPLETED
        artifacts = [e.artifact_update.artifact.parts[0].text for e in seen if e.HasField("artifact_update")]
        assert artifacts == ["answer two"]
    finally:
        await other.close()


async def test_a_subscription_on_this_instance_stays_open_across_input_required(service, workers):
    await workers("asker", asker)
    task, watch = await service.submit("asker", message("tea"))
    stream = service.subscribe(task.id, follow_turns=True)
    states = []
    async with asyncio.timeout(15):
        async for event in stream:
            states.append(state(event))
            if states[-1] == INPUT_REQUIRED and event.HasField("status_update"):
                await service.resume(task.id, message("three"))
    assert states[-1] == COMPLETED and INPUT_REQUIRED in states


async def test_a_subscriber_that_leaves_takes_its_watch_with_it(service, workers):
    gate = asyncio.Event()

    async def gated(task):
        await gate.wait()
        await task.complete("done")

    await workers("gated", gated)
    task, _ = await service.submit("gated", message("x"))
    async with contextlib.aclosing(service.subscribe(task.id, follow_turns=True)) as stream:
        await anext(stream)
        watches = len(service._relay.active[task.id].watches)
        waiting = asyncio.create_task(anext(stream))
        await asyncio.sleep(0)      # sleep-ok (a yield): let the stream reach its watch
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
    assert watches == 2 and len(service._relay.active[task.id].watches) == 1    # the submitter's stays
    gate.set()


async def test_re_attach_to_a_task_whose_channel_is_gone_ends_with_the_indexed_end(service):
    # A task that ended long ago: its reply channel expired, only the index knows its end.
    ended = a2a_pb2.Task(id="t-ended", context_id="c")
    ended.status.state = COMPLETED
    ended.metadata["topicbridge"] = {"capability": "echo", "turn": 0, "position": [0, 1, 3]}
    await service._table.put(ended.id, ended.SerializeToString())
    seen = a2a_pb2.Task()
    seen.CopyFrom(ended)
    seen.status.state = a2a_pb2.TASK_STATE_WORKING      # what a subscriber saw while it ran
    seen.metadata["topicbridge"] = {"capability": "echo", "turn": 0, "position": [0, 1, 1]}
    reader = Reader(service.backend, service._table, "probe", poll_wait=0.1, check_after=0.3)
    async with asyncio.timeout(10):
        events = [e async for e in reader.follow(seen)]
    assert [state(e) for e in events] == [COMPLETED]
