"""Lite groups keep the settings the backend gives them, and the InterestSet changes of many
tasks at once travel together."""

import asyncio

import pytest

from adapters.base import Message
from adapters.errors import UnknownClientError
from adapters.rocketmq import RemotingAdmin
from adapters.rocketmq.admin import GET_SUBSCRIPTIONGROUP_CONFIG, SUCCESS, _loads
from adapters.rocketmq.protocol import pb

from tests.contract.helpers import lite_parent, poll_until, unique


@pytest.fixture
async def admin(cluster):
    client = RemotingAdmin(cluster.namesrv_addr)
    yield client
    await client.close()


async def _attributes(admin: RemotingAdmin, group: str) -> dict:
    broker = (await admin._master_brokers())[0]
    header, body = await admin._link(broker).call(GET_SUBSCRIPTIONGROUP_CONFIG, {"group": group})
    assert header.get("code") == SUCCESS, header
    return _loads(body).get("attributes") or {}


def _count_syncs(consumer) -> list[int]:
    """Records the action of every SyncLiteSubscription the consumer sends (the real call goes out)."""
    actions: list[int] = []
    call = consumer._conn.call

    async def counted(method, request, *args, **kwargs):
        if method == "SyncLiteSubscription":
            actions.append(request.action)
        return await call(method, request, *args, **kwargs)
    consumer._conn.call = counted
    return actions


async def test_lite_groups_get_an_event_queue_as_large_as_the_subscription_quota(open_backend, admin):
    backend = await open_backend(lite_subscription_quota=700)
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, unique("gw"))
    attributes = await _attributes(admin, consumer._rmq_group)
    assert attributes["lite.sub.client.max.event.cnt"] == "700"     # the broker keeps 100 without it
    assert attributes["lite.sub.client.quota"] == "700"
    assert attributes["lite.bind.topic"] == parent


async def test_a_lite_group_deleted_while_in_use_gets_its_settings_back_and_still_delivers(backend, admin):
    parent = await lite_parent(backend)
    group = unique("gw")
    consumer = await backend.lite_consumer(parent, group)
    await backend.drop_lite_group(parent, group)
    # The client's next heartbeat makes the broker create the group again, bare.
    await consumer.subscribe(["task-1"])
    await backend.publish(parent, Message(b"reply"), lite_topic="task-1")
    [delivery] = await poll_until(consumer, 1, timeout=60)
    assert delivery.body == b"reply"
    await delivery.ack()
    assert (await _attributes(admin, consumer._rmq_group))["lite.bind.topic"] == parent


async def test_a_dropped_lite_group_opened_again_is_created_with_its_settings(backend, admin):
    parent = await lite_parent(backend)
    group = unique("gw")
    await (await backend.lite_consumer(parent, group)).close()
    await backend.drop_lite_group(parent, group)
    consumer = await backend.lite_consumer(parent, group)
    attributes = await _attributes(admin, consumer._rmq_group)
    assert attributes["lite.bind.topic"] == parent and "lite.sub.client.max.event.cnt" in attributes


async def test_subscribes_of_many_tasks_at_once_share_requests_and_every_reply_arrives(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, unique("gw"))
    actions = _count_syncs(consumer)
    names = [f"task-{i}" for i in range(64)]
    await asyncio.gather(*(consumer.subscribe([n]) for n in names))
    assert consumer.interest == set(names)
    assert 0 < actions.count(pb.PARTIAL_ADD) < len(names)
    await asyncio.gather(*(backend.publish(parent, Message(n.encode()), lite_topic=n) for n in names))
    assert await _all_arrive(consumer, lambda d: d.lite_topic, set(names))


async def test_unsubscribes_return_at_once_and_leave_in_one_partial_remove(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, unique("gw"))
    names = [f"task-{i}" for i in range(20)]
    await consumer.subscribe(names)
    actions = _count_syncs(consumer)
    for name in names:
        await consumer.unsubscribe([name])
    assert consumer.interest == frozenset()
    async with asyncio.timeout(30):
        await consumer._flusher
    assert actions.count(pb.PARTIAL_REMOVE) <= 2
    await backend.publish(parent, Message(b"late"), lite_topic="task-0")
    assert await consumer.poll(wait=1.0) == []        # gone locally even if an old event was queued


async def test_a_subscribe_waiting_for_its_batch_fails_when_the_consumer_closes(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, unique("gw"))
    waiting = asyncio.ensure_future(asyncio.gather(*(consumer.subscribe([f"t{i}"]) for i in range(8))))
    await asyncio.sleep(0)   # sleep-ok: one loop turn, so the subscribes queue before the close
    await consumer.close()
    with pytest.raises(UnknownClientError):
        await waiting


async def _all_arrive(consumer, key, expected: set, timeout: float = 60) -> bool:
    """Polls until a delivery with every expected key came. Delivery is at least once: each is
    acked on arrival so none outlives its invisible time, and a redelivery (a loaded broker whose
    last event comes late lets an earlier one's invisible time run out) counts once."""
    seen: set = set()
    async with asyncio.timeout(timeout):
        while not expected <= seen:
            deliveries = await consumer.poll(max_messages=len(expected), wait=1.0)
            await asyncio.gather(*(d.ack() for d in deliveries))
            seen |= {key(d) for d in deliveries}
    return seen == expected


def _offset_queries(backend) -> list[str]:
    """Records the lite topics whose committed offset the backend asks for (the real query goes out)."""
    asked: list[str] = []
    has_offset = backend.admin.has_offset

    async def counted(group, topic):
        asked.append(topic)
        return await has_offset(group, topic)
    backend.admin.has_offset = counted
    return asked


async def test_fresh_subscribes_ask_for_no_offset_and_start_at_the_first_message(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, unique("gw"))
    asked, requests = _offset_queries(backend), []
    call = consumer._conn.call

    async def recorded(method, request, *args, **kwargs):
        if method == "SyncLiteSubscription":
            requests.append((request.action, request.offset_option.policy, set(request.lite_topic_set)))
        return await call(method, request, *args, **kwargs)
    consumer._conn.call = recorded
    names = [unique("task") for _ in range(16)]
    await backend.publish(parent, Message(b"early"), lite_topic=names[0])
    await asyncio.gather(*(consumer.subscribe([n], fresh=True) for n in names))
    assert asked == []
    assert {policy for action, policy, _ in requests if action == pb.PARTIAL_ADD} == {pb.OffsetOption.MIN}
    assert set().union(*(topics for _, _, topics in requests)) == set(names)
    await asyncio.gather(*(backend.publish(parent, Message(n.encode()), lite_topic=n) for n in names))
    assert await _all_arrive(consumer, lambda d: d.body, {b"early", *(n.encode() for n in names)})


async def test_a_plain_subscribe_still_resumes_where_its_group_acked(open_backend):
    first = await open_backend()
    parent, group, name = await lite_parent(first), unique("gw"), unique("task")
    consumer = await first.lite_consumer(parent, group)
    await consumer.subscribe([name], fresh=True)
    await first.publish(parent, Message(b"seen"), lite_topic=name)
    [seen] = await poll_until(consumer, 1)
    await seen.ack()
    await consumer.close()
    await first.publish(parent, Message(b"after"), lite_topic=name)
    second = await open_backend()     # another instance of the group re-attaches the channel
    asked = _offset_queries(second)
    again = await second.lite_consumer(parent, group)
    await again.subscribe([name])
    [after] = await poll_until(again, 1)
    assert after.body == b"after"     # not the acked one: the offset was asked for and honoured
    assert len(asked) == 1
    await after.ack()
