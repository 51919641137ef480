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
    deliveries = await poll_until(consumer, len(names), timeout=60)
    assert sorted(d.lite_topic for d in deliveries) == sorted(names)
    await asyncio.gather(*(d.ack() for d in deliveries))


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
