"""Capability topics: consumer groups, invisibility, retries and dead letters."""

import asyncio

from .helpers import ack_all, capability, publish_all, receive_until


async def test_each_group_receives_every_message_once(backend):
    topic = await capability(backend)
    groups = [await backend.group_consumer(topic, g) for g in ("alpha", "beta")]
    for g in groups:
        assert await g.receive(wait=0.1) == []
    await publish_all(backend, topic, [b"0", b"1", b"2"])
    for g in groups:
        got = await receive_until(g, 3)
        assert sorted(d.body for d in got) == [b"0", b"1", b"2"]
        await ack_all(got)
        assert await g.receive(max_messages=10, wait=0.2) == []


async def test_load_spreads_across_members_of_a_group(backend):
    """Members that keep asking side by side each get a fair share: at least half of an even
    split (on Kafka a member's share is its partitions', on the others the one ready set's)."""
    topic = await capability(backend)
    members = [await backend.group_consumer(topic, "workers") for _ in range(2)]
    bodies = [str(i).encode() for i in range(16)]
    await publish_all(backend, topic, bodies)
    got: list[list[bytes]] = [[] for _ in members]
    async with asyncio.timeout(30):
        while sum(map(len, got)) < len(bodies):
            batches = await asyncio.gather(*(m.receive(max_messages=1, wait=0.5) for m in members))
            for mine, batch in zip(got, batches):
                mine += [d.body for d in batch]
                await ack_all(batch)
    assert sorted(b for mine in got for b in mine) == sorted(bodies)
    fair = len(bodies) // len(members) // 2
    assert all(len(mine) >= fair for mine in got), [len(mine) for mine in got]


async def test_unacked_message_is_redelivered_after_invisibility_timeout(harness, backend):
    topic = await capability(backend)
    consumer = await backend.group_consumer(topic, "g", invisible=harness.invisible)
    [mid] = await publish_all(backend, topic, [b"job"])
    [first] = await receive_until(consumer, 1)
    [again] = await receive_until(consumer, 1)
    assert again.message_id == first.message_id == mid
    assert again.attempt == first.attempt + 1
    await again.ack()


async def test_nack_makes_a_message_deliverable_again(backend):
    topic = await capability(backend)
    consumer = await backend.group_consumer(topic, "g")
    await publish_all(backend, topic, [b"job"])
    [d] = await receive_until(consumer, 1)
    await d.nack()
    [again] = await receive_until(consumer, 1)
    assert again.message_id == d.message_id
    await again.ack()


async def test_extend_keeps_a_message_invisible(harness, backend):
    topic = await capability(backend)
    consumer = await backend.group_consumer(topic, "g", invisible=harness.invisible)
    await publish_all(backend, topic, [b"job"])
    [d] = await receive_until(consumer, 1)
    await d.extend(30)
    assert await consumer.receive(wait=harness.invisible * 3) == []
    await d.ack()


async def test_retry_limit_sends_a_message_to_the_dead_letter_topic(backend):
    topic = await capability(backend, max_attempts=2)
    consumer = await backend.group_consumer(topic, "g-dlq")
    await publish_all(backend, topic, [b"poison"])
    for _ in range(2):
        [d] = await receive_until(consumer, 1)
        await d.nack()
    assert await consumer.receive(wait=0.3) == []
    dead = await backend.group_consumer(backend.dead_letter_topic("g-dlq"), "ops")
    [letter] = await receive_until(dead, 1)
    assert letter.body == b"poison"
    await letter.ack()
