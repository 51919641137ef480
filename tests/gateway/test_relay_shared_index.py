"""The relay indexes the turn-ending tasks of one poll together (one deferred block, one durable
wait, one ack call, one unsubscribe), and `adapters.base.ack_many`, which it acks with."""

import asyncio
import uuid

import pytest
from a2a.types import a2a_pb2

from adapters import errors
from adapters.base import Delivery, Message, TopicSpec, ack_many
from gateway.tasks import channels
from gateway.tasks.envelope import ReplyEvent
from gateway.tasks.index import TaskIndex
from gateway.tasks.ownership import LEASE_TABLE, OWNER_TABLE, Owners
from gateway.tasks.relay import Active, Relay
from gateway.tasks.watch import Watch

from .test_relay_batch import polled


def completed(task_id: str, seq: int = 0) -> bytes:
    update = a2a_pb2.TaskStatusUpdateEvent(task_id=task_id, context_id=task_id)
    update.status.state = a2a_pb2.TASK_STATE_COMPLETED
    update.status.timestamp.seconds = 1_700_000_000 + seq
    return ReplyEvent(task_id, 1, seq, a2a_pb2.StreamResponse(status_update=update), final=True).encode()


class CountingBlocks:
    """The backend's defer_durability, counting the blocks opened."""

    def __init__(self, backend) -> None:
        self.backend, self.opened = backend, 0

    def __call__(self):
        self.opened += 1
        return type(self.backend).defer_durability(self.backend)


async def relay_on(backend, instance: str = "gw-test"):
    await backend.create_topic(TopicSpec(channels.REPLY_TOPIC, lite=True))
    consumer = await backend.lite_consumer(channels.REPLY_TOPIC, instance, instance)
    relay = Relay(consumer, await TaskIndex.open(backend), index_delay=60.0)
    relay.backend = backend
    relay.owners = Owners(await backend.table(OWNER_TABLE), await backend.table(LEASE_TABLE), instance,
                          lease_seconds=10.0)
    return consumer, relay


async def follow(backend, consumer, relay, count: int) -> dict[str, Watch]:
    watches = {}
    for _ in range(count):
        task_id = uuid.uuid4().hex
        watches[task_id] = Watch(task_id)
        relay.active[task_id] = Active(a2a_pb2.Task(id=task_id), watches=[watches[task_id]], started=None)
        await relay.owners.claim(task_id)
        await consumer.subscribe([channels.reply_channel(task_id)])
        await backend.publish(channels.REPLY_TOPIC, Message(completed(task_id)),
                              lite_topic=channels.reply_channel(task_id))
    return watches


async def test_the_turn_ending_tasks_of_one_poll_share_one_deferred_block_and_all_end(backend, monkeypatch):
    consumer, relay = await relay_on(backend)
    watches = await follow(backend, consumer, relay, 5)
    blocks = CountingBlocks(backend)
    monkeypatch.setattr(backend, "defer_durability", blocks)
    await relay._relay_batch(await polled(consumer, 5))
    assert blocks.opened == 2       # the index rows of all five, then their owner rows' release
    for task_id, watch in watches.items():
        async with asyncio.timeout(5):
            events = [event async for event in watch.events()]
        assert events[-1].status_update.status.state == a2a_pb2.TASK_STATE_COMPLETED
        assert task_id not in relay.active
        row = a2a_pb2.Task.FromString(await relay.table.get(task_id))
        assert row.status.state == a2a_pb2.TASK_STATE_COMPLETED
        assert await relay.owners.owners.get(relay.owners._key(task_id)) is None
    assert not backend.engine.interest(consumer.client_id)      # every channel left
    assert await consumer.poll(max_messages=64, wait=0.3) == []     # every event acked: none comes back
    await consumer.close()


async def test_a_task_whose_index_write_fails_is_retried_while_the_others_of_its_poll_end(backend):
    consumer, relay = await relay_on(backend)
    watches = await follow(backend, consumer, relay, 3)
    failing = next(iter(watches))
    real_put = relay.table.put

    async def put(key, value, **kw):
        if key == failing:
            raise errors.StorageError("disk full")
        return await real_put(key, value, **kw)

    relay.table.put = put
    await relay._relay_batch(await polled(consumer, 3))
    assert failing in relay.active and failing in relay._due and failing in relay._ending
    assert len(relay.active[failing].unacked) == 1          # kept for the retry
    assert [t for t in watches if t in relay.active] == [failing]
    relay.table.put = real_put
    await relay.index_due(float("inf"))
    assert failing not in relay.active
    assert a2a_pb2.Task.FromString(await relay.table.get(failing)).status.state == a2a_pb2.TASK_STATE_COMPLETED
    assert await consumer.poll(max_messages=64, wait=0.3) == []
    await consumer.close()


async def test_a_hook_that_fails_on_one_task_leaves_its_events_unacked_and_the_others_end(backend):
    consumer, relay = await relay_on(backend)
    watches = await follow(backend, consumer, relay, 3)
    failing = next(iter(watches))

    async def hook(task, event):
        if task.id == failing:
            raise RuntimeError("a bug in a hook")

    relay.on_event = [hook]
    with pytest.raises(RuntimeError, match="a bug in a hook"):
        await relay._relay_batch(await polled(consumer, 3))
    assert [t for t in watches if t in relay.active] == [failing]
    await consumer.close()


# ------------------------------------------------------------------ ack_many


async def test_ack_many_on_the_embedded_engine_acks_all_and_skips_gone_receipts_only_when_told(backend):
    await backend.create_topic(TopicSpec("acks"))
    for i in range(3):
        await backend.publish("acks", Message(b"%d" % i))
    group = await backend.group_consumer("acks", "g", invisible=30.0)
    got = await group.receive(max_messages=3, wait=1.0)
    assert len(got) == 3
    await got[0].ack()
    with pytest.raises(errors.UnknownReceiptError):
        await ack_many(got)     # the two others are acked all the same
    await ack_many(got, gone_ok=True)
    assert await group.receive(max_messages=3, wait=0.3) == []
    await group.close()


class Settler:
    def __init__(self, fail: set[str]) -> None:
        self.fail, self.acked = fail, []

    async def ack(self, delivery: Delivery) -> None:
        if delivery.receipt in self.fail:
            raise errors.UnknownReceiptError(delivery.receipt) if delivery.receipt.startswith("gone") \
                else errors.BackendUnavailableError("test", "down")
        self.acked.append(delivery.receipt)


def delivery(settler, receipt: str) -> Delivery:
    return Delivery("t", None, receipt, b"", {}, None, 1, receipt, settler)


async def test_ack_many_without_the_settlers_own_tries_each_and_raises_the_first_error_after():
    settler = Settler({"gone-1", "down-2"})
    deliveries = [delivery(settler, r) for r in ("a", "gone-1", "b", "down-2", "c")]
    with pytest.raises(errors.BackendUnavailableError):
        await ack_many(deliveries, gone_ok=True)
    assert settler.acked == ["a", "b", "c"]
    settler = Settler({"gone-1"})
    with pytest.raises(errors.UnknownReceiptError):
        await ack_many([delivery(settler, r) for r in ("a", "gone-1", "b")])
    assert settler.acked == ["a", "b"]
    await ack_many([])
