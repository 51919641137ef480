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
    topic = await capability(backend)
    members = [await backend.group_consumer(topic, "workers") for _ in range(2)]
    waiting = [asyncio.create_task(m.receive(max_messages=1, wait=5)) for m in members]
    await asyncio.sleep(0.05)  # sleep-ok: both members must be waiting before the publish
    await publish_all(backend, topic, [b"a", b"b"])
    got = [d for batch in await asyncio.gather(*waiting) for d in batch]
    assert len(got) >= 1 and all(len(t.result()) <= 1 for t in waiting)
    rest = [] if len(got) == 2 else await receive_until(members[0], 1)
    assert sorted(d.body for d in got + rest) == [b"a", b"b"]


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
