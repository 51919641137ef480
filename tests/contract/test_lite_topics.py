"""Lite topics: auto-creation, InterestSet changes, ReadySet polling, ordering, expiry, quotas."""

import asyncio

import pytest

from adapters.errors import QuotaExceededError

from .helpers import ack_all, lite_parent, poll_until, publish_all, unique


async def test_publish_auto_creates_a_lite_topic_that_a_later_subscriber_reads(backend):
    parent = await lite_parent(backend)
    await publish_all(backend, parent, [b"early"], lite_topic="task-1")
    consumer = await backend.lite_consumer(parent, "gw")
    await consumer.subscribe(["task-1"])
    [d] = await poll_until(consumer, 1)
    assert (d.lite_topic, d.body) == ("task-1", b"early")
    await d.ack()


async def test_poll_returns_only_subscribed_ready_topics(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, "gw")
    await consumer.subscribe(["mine-1", "mine-2"])
    await publish_all(backend, parent, [b"x"], lite_topic="someone-else")
    await publish_all(backend, parent, [b"m"], lite_topic="mine-2")
    [d] = await poll_until(consumer, 1)
    assert d.lite_topic == "mine-2"
    await d.ack()
    assert await consumer.poll(wait=0.2) == []


async def test_long_poll_wakes_on_publish(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, "gw")
    await consumer.subscribe(["t"])
    waiting = asyncio.create_task(consumer.poll(wait=10))
    await asyncio.sleep(0.05)  # sleep-ok: the poll must be parked before the publish
    await publish_all(backend, parent, [b"wake"], lite_topic="t")
    [d] = await asyncio.wait_for(waiting, 10)
    assert d.body == b"wake"
    await d.ack()


async def test_unsubscribe_stops_delivery(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, "gw")
    await consumer.subscribe(["t"])
    await consumer.unsubscribe(["t"])
    await publish_all(backend, parent, [b"x"], lite_topic="t")
    assert await consumer.poll(wait=0.3) == []


async def test_full_sync_replaces_the_interest_set(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, "gw")
    await consumer.subscribe(["a", "b"])
    await consumer.sync(["b", "c"])
    for name in ("a", "b", "c"):
        await publish_all(backend, parent, [name.encode()], lite_topic=name)
    got = await poll_until(consumer, 2)
    assert sorted(d.lite_topic for d in got) == ["b", "c"]
    await ack_all(got)
    assert await consumer.poll(wait=0.2) == []


async def test_every_message_of_many_lite_topics_arrives(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, "gw")
    names = [f"t{i}" for i in range(15)]
    await consumer.subscribe(names)
    for n in names:
        await publish_all(backend, parent, [n.encode(), n.encode() + b"+"], lite_topic=n)
    got = await poll_until(consumer, 30)
    assert sorted(d.body for d in got) == sorted(b for n in names for b in (n.encode(), n.encode() + b"+"))
    await ack_all(got)


async def test_ordered_lite_topic_hands_out_one_message_at_a_time(backend):
    parent = await lite_parent(backend, ordered=True)
    consumer = await backend.lite_consumer(parent, "gw")
    await consumer.subscribe(["t"])
    await publish_all(backend, parent, [b"1", b"2", b"3"], lite_topic="t")
    seen = []
    for _ in range(3):
        [d] = await poll_until(consumer, 1)
        assert await consumer.poll(max_messages=5, wait=0.1) == []   # the order lock holds the rest
        seen.append(d.body)
        await d.ack()           # the ack releases the lock: the topic is ready again
    assert seen == [b"1", b"2", b"3"]


async def test_unacked_lite_message_comes_back_after_invisibility(harness, backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, "gw", invisible=harness.invisible)
    await consumer.subscribe(["t"])
    await publish_all(backend, parent, [b"r"], lite_topic="t")
    [d] = await poll_until(consumer, 1)
    [again] = await poll_until(consumer, 1)
    assert again.message_id == d.message_id
    await again.ack()


async def test_idle_lite_topic_is_deleted_with_its_messages(harness, backend):
    parent = await lite_parent(backend, lite_idle_seconds=harness.lite_idle)
    await publish_all(backend, parent, [b"forgotten"], lite_topic="idle")
    async with asyncio.timeout(30):
        while True:
            # sleep-ok: idleness is what is under test; a subscribed probe would keep it alive
            await asyncio.sleep(harness.lite_idle * 2)
            probe = await backend.lite_consumer(parent, unique("probe"))
            await probe.subscribe(["idle"])
            got = await probe.poll(wait=harness.lite_idle)
            await probe.close()
            if not got:
                break


async def test_subscription_quota_per_client_is_enforced(harness, backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, "gw")
    quota = harness.subscription_quota
    await consumer.subscribe([f"t{i}" for i in range(quota)])
    with pytest.raises(QuotaExceededError) as err:
        await consumer.subscribe(["one-too-many"])
    assert err.value.limit == quota
    await consumer.unsubscribe(["t0"])
    await consumer.subscribe(["now-fits"])


async def test_second_client_of_another_group_reads_retained_messages(harness):
    first_view = await harness.backend()
    parent = await lite_parent(first_view)
    await publish_all(first_view, parent, [b"1", b"2"], lite_topic="task-9")
    original = await first_view.lite_consumer(parent, "gw-a")
    await original.subscribe(["task-9"])
    await ack_all(await poll_until(original, 2))
    other_view = await harness.backend()                  # another gateway process re-attaches
    reattached = await other_view.lite_consumer(parent, "gw-b")
    await reattached.subscribe(["task-9"])
    got = await poll_until(reattached, 2)
    assert [d.body for d in got] == [b"1", b"2"]


async def test_clients_of_one_group_share_delivery(backend):
    parent = await lite_parent(backend)
    a = await backend.lite_consumer(parent, "shared")
    b = await backend.lite_consumer(parent, "shared")
    await a.subscribe(["t"])
    await b.subscribe(["t"])
    await publish_all(backend, parent, [b"once"], lite_topic="t")
    got = await a.poll(wait=0.5) + await b.poll(wait=0.5)
    assert [d.body for d in got] == [b"once"]
