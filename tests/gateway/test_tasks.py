"""Tasks flow over the backend: envelope on the capability topic, events on the reply channel."""

import asyncio

import pytest
from a2a.types import a2a_pb2

from adapters.base import Message
from gateway.tasks import channels
from gateway.tasks.envelope import ControlEvent
from gateway.tasks import fold
from gateway.tasks.errors import NotCancelableError, TaskNotFoundError
from gateway.tasks.service import TaskService
from gateway.workers import call_mode


def user_message(text: str) -> a2a_pb2.Message:
    return a2a_pb2.Message(message_id="m1", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text=text)])


async def echo(task):
    await task.artifact(f"echo: {task.text}", name="echo")
    await task.complete()


async def slow(task):
    await asyncio.Event().wait()


async def broken(task):
    raise ValueError("no can do")


async def final_state(watch) -> list[a2a_pb2.StreamResponse]:
    events = []
    async with asyncio.timeout(10):
        async for event in watch.events():
            events.append(event)
    return events


async def cancel_once_working(service, task, watch) -> None:
    """Wait for the task's WORKING, cancel it, and wait for its end."""
    async with asyncio.timeout(10):
        async for event in watch.events():
            if event.status_update.status.state == a2a_pb2.TASK_STATE_WORKING:
                break
    await service.cancel(task.id)
    await final_state(watch)


async def test_a_task_travels_to_a_worker_and_its_result_comes_back(service, workers):
    await workers("echo", echo)
    task, watch = await service.submit("echo", user_message("hi"))
    assert task.status.state == a2a_pb2.TASK_STATE_SUBMITTED
    events = await final_state(watch)
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[-1] == "status_update" and "artifact_update" in kinds
    done = await service.get(task.id)
    assert done.status.state == a2a_pb2.TASK_STATE_COMPLETED
    assert done.artifacts[0].parts[0].text == "echo: hi"


async def test_a_task_published_before_any_worker_runs_when_one_starts(service, workers):
    task, watch = await service.submit("late", user_message("queued"))
    await workers("late", echo)
    await final_state(watch)
    assert (await service.get(task.id)).status.state == a2a_pb2.TASK_STATE_COMPLETED


async def test_a_failing_handler_fails_the_task_with_the_reason(service, workers):
    await workers("broken", broken)
    task, watch = await service.submit("broken", user_message("x"))
    await final_state(watch)
    failed = await service.get(task.id)
    assert failed.status.state == a2a_pb2.TASK_STATE_FAILED
    assert "no can do" in failed.status.message.parts[0].text


async def test_cancel_travels_to_the_worker(service, workers):
    await workers("slow", slow)
    task, watch = await service.submit("slow", user_message("x"))
    await cancel_once_working(service, task, watch)
    assert (await service.get(task.id)).status.state == a2a_pb2.TASK_STATE_CANCELED


def states(events: list[a2a_pb2.StreamResponse]) -> list[int]:
    return [e.status_update.status.state for e in events if e.HasField("status_update")]


async def test_a_blocking_callers_quick_task_ends_without_a_working_event(service, workers):
    await workers("echo", echo)
    task, watch = await service.submit("echo", user_message("hi"), metadata=call_mode.mark_blocking(None))
    events = await final_state(watch)
    assert states(events) == [a2a_pb2.TASK_STATE_COMPLETED]
    assert (await service.get(task.id)).artifacts[0].parts[0].text == "echo: hi"


async def test_a_streaming_callers_task_says_working_first(service, workers):
    await workers("echo", echo)
    _, watch = await service.submit("echo", user_message("hi"))
    events = await final_state(watch)
    assert states(events) == [a2a_pb2.TASK_STATE_WORKING, a2a_pb2.TASK_STATE_COMPLETED]


async def test_a_blocking_callers_silent_task_says_working_after_a_while_and_cancels(service, workers):
    await workers("slow", slow)
    task, watch = await service.submit("slow", user_message("x"), metadata=call_mode.mark_blocking(None))
    await cancel_once_working(service, task, watch)
    assert (await service.get(task.id)).status.state == a2a_pb2.TASK_STATE_CANCELED


async def test_a_handler_that_swallows_the_cancel_still_ends_canceled(service, workers):
    async def stubborn(task):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return      # says nothing: the worker reports the cancel

    await workers("stubborn", stubborn)
    task, watch = await service.submit("stubborn", user_message("x"))
    await cancel_once_working(service, task, watch)
    ended = await service.get(task.id)
    assert ended.status.state == a2a_pb2.TASK_STATE_CANCELED
    assert ended.status.message.parts[0].text == "canceled by the caller"


async def test_a_cancel_sent_twice_still_ends_the_task_canceled_once(backend, service, workers):
    """The handler runs in the worker's task for the delivery: a second cancel of the same task
    (control events come at least once) must not read as the worker closing."""
    await workers("slow", slow)
    task, watch = await service.submit("slow", user_message("x"))
    async with asyncio.timeout(10):
        async for event in watch.events():
            if event.status_update.status.state == a2a_pb2.TASK_STATE_WORKING:
                break
    control = ControlEvent(task.id, "cancel").encode()
    for _ in range(2):      # as a redelivered control event would come
        await backend.publish(channels.CONTROL_TOPIC, Message(control), lite_topic=channels.control_channel(task.id))
    events = await final_state(watch)
    assert states(events) == [a2a_pb2.TASK_STATE_CANCELED]
    assert (await service.get(task.id)).status.state == a2a_pb2.TASK_STATE_CANCELED


async def test_another_gateway_instance_answers_get_and_subscribe(backend, service, workers):
    other = TaskService(backend, poll_wait=0.2)
    await other.start()
    try:
        await workers("slow", slow)
        task, watch = await service.submit("slow", user_message("x"))
        async with asyncio.timeout(10):
            while (await other.get(task.id)).status.state != a2a_pb2.TASK_STATE_WORKING:
                await asyncio.sleep(0.01)  # sleep-ok: observing another instance's index
        stream = other.subscribe(task.id)
        first = await anext(stream)
        assert first.task.id == task.id
        await service.cancel(task.id)
        rest = [e async for e in stream]
        assert rest[-1].status_update.status.state == a2a_pb2.TASK_STATE_CANCELED
        listed = (await other.list()).tasks
        assert [t.id for t in listed] == [task.id]
    finally:
        await other.close()


async def test_cancel_of_unknown_or_finished_task_is_an_error(service, workers):
    with pytest.raises(TaskNotFoundError):
        await service.cancel("nope")
    await workers("echo", echo)
    task, watch = await service.submit("echo", user_message("hi"))
    await final_state(watch)
    with pytest.raises(NotCancelableError):
        await service.cancel(task.id)


async def test_a_malformed_envelope_goes_to_the_dead_letter_topic_with_the_reason(backend, workers):
    worker = await workers("echo", echo)
    await backend.publish(channels.capability_topic("echo"), Message(b'{"not": "an envelope"}'))
    dlq = await backend.group_consumer(backend.dead_letter_topic(worker.group), "ops")
    async with asyncio.timeout(10):
        while not (got := await dlq.receive(wait=1)):
            pass
    assert "x-dlq-reason" in got[0].headers and worker.dead_lettered == 1


async def test_malformed_reply_events_are_dropped_and_the_relay_keeps_going(backend, service, workers):
    await workers("echo", echo)
    task, watch = await service.submit("echo", user_message("hi"))
    await backend.publish(channels.REPLY_TOPIC, Message(b"garbage"), lite_topic=channels.reply_channel(task.id))
    await final_state(watch)
    assert (await service.get(task.id)).status.state == a2a_pb2.TASK_STATE_COMPLETED


async def test_a_failing_hook_does_not_stop_the_relay(service, workers):
    """A bug in an on_event hook leaves that event unacked (redelivered), and later tasks still
    get their answers."""
    calls = []

    async def flaky(task, event):
        calls.append(task.id)
        if len(calls) == 1:
            raise RuntimeError("a bug in a hook")

    async def quick(task):
        await task.complete("ok")

    service.on_event.append(flaky)
    await workers("quick", quick)
    for text in ("first", "second"):
        message = a2a_pb2.Message(message_id=text, role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text=text)])
        task, watch = await service.submit("quick", message)
        async with asyncio.timeout(15):
            events = [event async for event in watch.events()]
        assert events[-1].status_update.status.state == a2a_pb2.TASK_STATE_COMPLETED
    async with asyncio.timeout(15):
        while len(calls) < 2:       # the second task's hook runs once it is indexed, after its answer
            await asyncio.sleep(0.01)  # sleep-ok: bounded wait for the relay's hook


async def test_a_burst_of_events_arrives_complete_and_in_order(service, workers, backend):
    """On the embedded engine a worker starts its events without waiting for each to be durable
    (ordered_publish): they still fold in the order they were emitted, past the in-flight cap."""
    assert backend.ordered_publish

    async def chatty(task):
        for i in range(40):
            await task.artifact(f"chunk {i}", artifact_id="stream", append=i > 0)
        await task.complete()

    await workers("chatty", chatty)
    message = a2a_pb2.Message(message_id="m", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text="go")])
    task, watch = await service.submit("chatty", message)
    async with asyncio.timeout(15):
        async for event in watch.events():
            fold.apply(task, event)
    assert task.status.state == a2a_pb2.TASK_STATE_COMPLETED
    assert [p.text for p in task.artifacts[0].parts] == [f"chunk {i}" for i in range(40)]
