"""A worker never reports a task's end before its earlier reply events are durable: a lost event
fails the task with a reason, or the task runs again, on the real lite engine with one publish
failed by a wrapper."""

import asyncio

import pytest
from a2a.types import a2a_pb2

from adapters.errors import BackendUnavailableError, MessageTooLargeError
from gateway.workers.worker import Worker

from .faults import FaultyBackend, reply_event_kind


def user_message(text: str) -> a2a_pb2.Message:
    return a2a_pb2.Message(message_id=f"m-{text}", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text=text)])


async def report(task) -> None:
    await task.artifact("the figures")
    await task.complete()


async def events_of(watch) -> list[a2a_pb2.StreamResponse]:
    async with asyncio.timeout(15):
        return [event async for event in watch.events()]


def states(events) -> list[int]:
    return [e.status_update.status.state for e in events if e.HasField("status_update")]


@pytest.fixture(params=[True, False], ids=["ordered", "unordered"])
async def faulty_worker(request, backend):
    """A worker on a wrapper of the test's engine; `ordered` is the backend's publish-order promise."""
    faulty = FaultyBackend(backend)
    faulty.ordered_publish = request.param
    worker = Worker(faulty, "report", report)
    await worker.start()
    yield faulty
    await worker.close()


def artifact_events(topic, message) -> bool:
    return reply_event_kind(message) == "artifact_update"


async def test_an_artifact_the_backend_refuses_ends_the_task_failed_naming_the_lost_event(service, faulty_worker):
    faulty_worker.fail_publish(artifact_events, MessageTooLargeError(50 << 20, 4 << 20))
    task, watch = await service.submit("report", user_message("quarter"))
    events = await events_of(watch)
    assert a2a_pb2.TASK_STATE_COMPLETED not in states(events)
    done = await service.get(task.id)
    assert done.status.state == a2a_pb2.TASK_STATE_FAILED
    reason = done.status.message.parts[0].text
    assert "reply event 1 of the task could not be published" in reason and "exceeds the limit" in reason
    assert not done.artifacts


async def test_an_artifact_lost_to_an_unavailable_backend_runs_the_task_again_and_it_completes_with_it(
        service, faulty_worker):
    faulty_worker.fail_publish(artifact_events, BackendUnavailableError("lite", "disk went away"))
    task, watch = await service.submit("report", user_message("quarter"))
    events = await events_of(watch)
    assert faulty_worker.publish_failed.is_set()
    assert states(events).count(a2a_pb2.TASK_STATE_COMPLETED) == 1
    done = await service.get(task.id)
    assert done.status.state == a2a_pb2.TASK_STATE_COMPLETED
    assert [a.parts[0].text for a in done.artifacts] == ["the figures"]


class PendingPublishes(FaultyBackend):
    """Counts, at each reply event's publish, the earlier ones of the task not yet durable."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.pending = 0
        self.seen: list[tuple[str, int]] = []      # (event kind, earlier publishes still pending)

    async def publish(self, topic, message, *, lite_topic=None):
        if lite_topic is None:
            return await super().publish(topic, message, lite_topic=lite_topic)
        self.seen.append((reply_event_kind(message), self.pending))
        self.pending += 1
        try:
            return await super().publish(topic, message, lite_topic=lite_topic)
        finally:
            self.pending -= 1


async def test_on_an_ordered_durable_engine_the_final_event_joins_the_earlier_events_group_commit(service, backend):
    watching = PendingPublishes(backend)
    worker = Worker(watching, "report", report)
    await worker.start()
    try:
        task, watch = await service.submit("report", user_message("quarter"))
        events = await events_of(watch)
    finally:
        await worker.close()
    assert states(events)[-1] == a2a_pb2.TASK_STATE_COMPLETED
    final = [pending for kind, pending in watching.seen if kind == "status_update"][-1]
    assert final > 0        # published while the WORKING and artifact events were still being made durable
    done = await service.get(task.id)
    assert [a.parts[0].text for a in done.artifacts] == ["the figures"]
