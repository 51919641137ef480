"""The relay's batch: the events of a poll, task by task, on a real embedded engine."""

import asyncio

import pytest
from a2a.types import a2a_pb2

from adapters.base import Message, TopicSpec
from gateway.tasks import channels
from gateway.tasks.envelope import ReplyEvent
from gateway.tasks.index import TaskIndex
from gateway.tasks.relay import Active, Relay
from gateway.tasks.watch import Watch


class BrokenWatch(Watch):
    """A waiting call whose hand-off fails: stands in for a bug in the fold of one task."""

    def push(self, event) -> None:
        raise RuntimeError("broken watch")


def working(task_id: str, seq: int) -> bytes:
    update = a2a_pb2.TaskStatusUpdateEvent(task_id=task_id, context_id=task_id)
    update.status.state = a2a_pb2.TASK_STATE_WORKING
    return ReplyEvent(task_id, 1, seq, a2a_pb2.StreamResponse(status_update=update)).encode()


async def polled(consumer, count: int) -> list:
    got = []
    async with asyncio.timeout(10):
        while len(got) < count:
            got += await consumer.poll(max_messages=64, wait=1.0)
    return got


async def test_a_failing_fold_of_one_task_still_hands_the_other_tasks_events_over_and_is_raised(backend):
    await backend.create_topic(TopicSpec(channels.REPLY_TOPIC, lite=True))
    consumer = await backend.lite_consumer(channels.REPLY_TOPIC, "gw-test", "gw-test")
    relay = Relay(consumer, await TaskIndex.open(backend), index_delay=60.0)
    broken, fine = "a" * 32, "b" * 32
    relay.active[broken] = Active(a2a_pb2.Task(id=broken), watches=[BrokenWatch(broken)], started=None)
    watch = Watch(fine)
    relay.active[fine] = Active(a2a_pb2.Task(id=fine), watches=[watch], started=None)
    for task_id in (broken, fine):
        await consumer.subscribe([channels.reply_channel(task_id)])
        await backend.publish(channels.REPLY_TOPIC, Message(working(task_id, 1)),
                              lite_topic=channels.reply_channel(task_id))
    with pytest.raises(RuntimeError, match="broken watch"):
        await relay._relay_batch(await polled(consumer, 2))
    events = watch.events()
    async with asyncio.timeout(5):
        got = await anext(events)
    assert got.status_update.status.state == a2a_pb2.TASK_STATE_WORKING
    assert relay.active[fine].task.status.state == a2a_pb2.TASK_STATE_WORKING
    assert fine in relay._due       # indexed (and acked) later, as any event that does not end a turn
    await events.aclose()
    await consumer.close()
