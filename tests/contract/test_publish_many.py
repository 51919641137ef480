"""publish_many (adapters.base): several messages in one call land in order; and a backend that
declares `ordered_publish` keeps the order of publishes started without waiting for each."""

import asyncio

import pytest

from adapters.base import Message, publish_many
from adapters.errors import InvalidRequestError, MessageTooLargeError

from .helpers import ack_all, capability, lite_parent, receive_until

BURST = 40


async def poll_acking(consumer, expect: int) -> list:
    """Poll until `expect` deliveries arrived, acking each batch as it comes: a RocketMQ lite
    topic hands out its next messages once the ones delivered before are acked."""
    out: list = []
    async with asyncio.timeout(20):
        while len(out) < expect:
            got = await consumer.poll(max_messages=expect - len(out), wait=1.0)
            await ack_all(got)
            out += got
    return out


async def test_publish_many_on_a_lite_topic_delivers_every_message_in_order_with_the_returned_ids(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, "gw")
    await consumer.subscribe(["task-1"])
    bodies = [f"event-{n}".encode() for n in range(BURST)]
    ids = await publish_many(backend, parent, [Message(b, {"n": str(n)}) for n, b in enumerate(bodies)],
                             lite_topic="task-1")
    got = await poll_acking(consumer, BURST)
    assert [d.body for d in got] == bodies
    assert [d.message_id for d in got] == ids
    assert [d.headers["n"] for d in got] == [str(n) for n in range(BURST)]


async def test_publish_many_on_a_capability_topic_gives_each_message_to_the_group(backend):
    topic = await capability(backend)
    workers = await backend.group_consumer(topic, "workers")
    ids = await publish_many(backend, topic, [Message(f"job-{n}".encode()) for n in range(BURST)])
    got = await receive_until(workers, BURST)
    assert sorted(d.message_id for d in got) == sorted(ids) and len(set(ids)) == BURST
    await ack_all(got)


async def test_publish_many_of_nothing_publishes_nothing(backend):
    parent = await lite_parent(backend)
    assert await publish_many(backend, parent, [], lite_topic="task-1") == []


async def test_publish_many_with_a_message_over_the_limit_fails_with_message_too_large(backend):
    parent = await lite_parent(backend)
    too_big = Message(b"x" * (backend.max_message_bytes + 1))
    with pytest.raises((MessageTooLargeError, InvalidRequestError)):
        await publish_many(backend, parent, [Message(b"ok"), too_big], lite_topic="task-1")


async def test_publishes_started_without_waiting_arrive_in_start_order_where_the_backend_says_so(backend):
    if not getattr(backend, "ordered_publish", False):
        pytest.skip(f"{backend.name} does not declare ordered_publish")
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, "gw")
    await consumer.subscribe(["task-1"])
    bodies = [f"event-{n}".encode() * (n % 7 + 1) for n in range(BURST)]
    # Started one after another, none awaited before the next starts (as a pipelining worker).
    started = [asyncio.ensure_future(backend.publish(parent, Message(b), lite_topic="task-1")) for b in bodies]
    ids = await asyncio.gather(*started)
    got = await poll_acking(consumer, BURST)
    assert [d.body for d in got] == bodies
    assert [d.message_id for d in got] == ids
