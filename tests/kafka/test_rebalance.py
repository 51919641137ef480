"""Group membership changes: reply partitions and lite topic holds move, nothing is lost."""

import asyncio

from adapters.base import Message, TopicSpec
from adapters.kafka import names
from tests.contract.helpers import ack_all, poll_until, receive_until, unique

from .support import PARTITIONS
from .test_mapping import name_on

STEP = 20


async def settled(*owners, expect: int = PARTITIONS) -> None:
    """Wait until the owners' partitions are disjoint and cover `expect` partitions."""
    async with asyncio.timeout(STEP):
        while True:
            sets = [o.owned_partitions() for o in owners]
            if sum(map(len, sets)) == expect and len(set().union(*sets)) == expect and all(sets):
                return
            await asyncio.sleep(0.05)  # sleep-ok: other members learn of a rebalance at their next heartbeat


async def test_reply_partitions_move_between_instances_and_old_channels_keep_delivering(open_backend):
    one, two = await open_backend(), await open_backend()
    parent = unique("reply")
    await one.create_topic(TopicSpec(parent, lite=True))
    a = await one.lite_consumer(parent, "gw-a")
    early = await a.routed_name(lambda: unique("task"))
    await a.subscribe([early])
    assert a.owned_partitions() == frozenset(range(PARTITIONS))

    b = await two.lite_consumer(parent, "gw-b")
    await b.routed_name(lambda: unique("task"))
    await settled(a, b)
    await one.publish(parent, Message(b"to-a"), lite_topic=early)   # its partition may be b's now
    [d] = await poll_until(a, 1)
    assert d.body == b"to-a"

    await b.close()
    await settled(a)
    assert a.owned_partitions() == frozenset(range(PARTITIONS))


async def test_closing_the_holder_moves_a_shared_lite_topic_with_its_unacked_message(backend):
    parent = unique("reply")
    await backend.create_topic(TopicSpec(parent, lite=True))
    first = await backend.lite_consumer(parent, "shared", invisible=300)
    second = await backend.lite_consumer(parent, "shared", invisible=300)
    await first.subscribe(["t"])
    await second.subscribe(["t"])
    await backend.publish(parent, Message(b"work"), lite_topic="t")
    holder, other = (first, second) if await first.poll(wait=2) else (second, first)

    await holder.close()          # leaves the group: no session timeout to wait for

    [again] = await poll_until(other, 1)
    assert again.body == b"work"


async def test_members_of_a_group_subscribed_to_different_topics_of_one_partition_each_get_theirs(backend):
    parent = unique("reply")
    await backend.create_topic(TopicSpec(parent, lite=True))
    x, y = name_on(0, "x"), name_on(0, "y")
    a = await backend.lite_consumer(parent, "shared")
    b = await backend.lite_consumer(parent, "shared")
    await a.subscribe([x])
    await b.subscribe([y])

    await backend.publish(parent, Message(b"for-a"), lite_topic=x)
    await backend.publish(parent, Message(b"for-b"), lite_topic=y)

    [da] = await poll_until(a, 1)
    [db] = await poll_until(b, 1)
    assert (da.body, db.body) == (b"for-a", b"for-b")


async def test_a_group_member_keeps_what_it_holds_on_partitions_it_keeps_through_a_rebalance(backend):
    topic = unique("cap")
    await backend.create_topic(TopicSpec(topic))
    first = await backend.group_consumer(topic, "workers", invisible=300)
    for i in range(PARTITIONS):
        await backend.publish(topic, Message(b"%d" % i))        # keyless: one per partition
    held = await receive_until(first, PARTITIONS)

    second = await backend.group_consumer(topic, "workers", invisible=300)   # takes half the partitions
    async with asyncio.timeout(STEP):
        while len(owned(first, topic) | owned(second, topic)) < PARTITIONS or owned(first, topic) & owned(second, topic):
            await asyncio.sleep(0.05)  # sleep-ok: the first member applies its new assignment a moment later
    kept = owned(first, topic)
    moved = [d for d in held if int(d.message_id.split("-")[0]) not in kept]

    assert kept and moved
    await ack_all([d for d in held if d not in moved])          # receipts on kept partitions stay valid
    again = await receive_until(second, len(moved))             # the new owner redelivers the rest
    assert sorted(d.message_id for d in again) == sorted(d.message_id for d in moved)
    await ack_all(again)
    assert await first.receive(wait=0.3) == [] and await second.receive(wait=0.3) == []
    assert names.retry_topic(topic, "workers").startswith("tb.retry.workers.")


def owned(consumer, topic: str) -> set[int]:
    return {int(a.rsplit(":", 1)[1]) for a in consumer.stats()["assigned"] if a.rsplit(":", 1)[0] == topic}
