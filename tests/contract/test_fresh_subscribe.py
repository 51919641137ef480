"""`subscribe(..., fresh=True)`: the caller's promise that it named the lite topics just now.
A backend may skip looking up where the group read them before, but never loses a message:
what was published before the subscribe and what comes after it are both delivered."""

import asyncio

from adapters.base import Message

from .helpers import lite_parent, publish_all, unique


async def _take(consumer, expect: int, timeout: float = 30.0) -> list:
    """Poll, acking as it goes (a lite topic may hold back its next message until the ack),
    until `expect` deliveries arrived."""
    got = []
    async with asyncio.timeout(timeout):
        while len(got) < expect:
            batch = await consumer.poll(max_messages=expect - len(got), wait=1.0)
            await asyncio.gather(*(d.ack() for d in batch))
            got += batch
    return got


async def test_fresh_subscribe_reads_what_was_published_before_it_and_after_it(backend):
    parent = await lite_parent(backend)
    name = unique("task")
    await publish_all(backend, parent, [b"early"], lite_topic=name)   # a racing publisher made it
    consumer = await backend.lite_consumer(parent, unique("gw"))
    await consumer.subscribe([name], fresh=True)
    await publish_all(backend, parent, [b"late-1", b"late-2"], lite_topic=name)
    got = await _take(consumer, 3)
    assert [(d.lite_topic, d.body) for d in got] == [(name, b"early"), (name, b"late-1"), (name, b"late-2")]
    assert await consumer.poll(wait=0.5) == []


async def test_fresh_subscribes_of_many_tasks_at_once_get_every_reply_sent_after_them(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, unique("gw"))
    names = [unique("task") for _ in range(12)]
    # As the gateway submits: the channel is subscribed before the request goes out, so every
    # reply is published after its subscribe returned.
    async def submit(name: str) -> None:
        await consumer.subscribe([name], fresh=True)
        await backend.publish(parent, Message(name.encode()), lite_topic=name)
    await asyncio.gather(*map(submit, names))
    got = await _take(consumer, len(names))
    assert sorted(d.body.decode() for d in got) == sorted(names)
    assert all(d.lite_topic == d.body.decode() for d in got)


async def test_fresh_and_plain_subscribes_together_each_get_their_messages(backend):
    parent = await lite_parent(backend)
    old = unique("task")
    await publish_all(backend, parent, [b"retained"], lite_topic=old)
    consumer = await backend.lite_consumer(parent, unique("gw"))
    new = [unique("task") for _ in range(4)]
    await asyncio.gather(consumer.subscribe([old]), *(consumer.subscribe([n], fresh=True) for n in new))
    for n in new:
        await publish_all(backend, parent, [n.encode()], lite_topic=n)
    got = await _take(consumer, 1 + len(new))
    assert sorted(d.body for d in got) == sorted([b"retained", *(n.encode() for n in new)])
