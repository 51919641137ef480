"""The adapter rides out a broker that goes away and comes back on the same address."""

import asyncio

import pytest

from adapters.base import Message, TopicSpec
from adapters.errors import BackendUnavailableError
from tests.contract.helpers import ack_all, poll_until, receive_until, unique

STEP = 60   # a broker restart on a busy 2-core machine


async def test_consumers_producers_and_tables_carry_on_after_a_broker_restart(kafka, open_backend):
    backend = await open_backend()
    topic, parent = unique("cap"), unique("reply")
    await backend.create_topic(TopicSpec(topic))
    await backend.create_topic(TopicSpec(parent, lite=True))
    workers = await backend.group_consumer(topic, "workers")
    replies = await backend.lite_consumer(parent, "gw")
    await replies.subscribe(["task-1"])
    table = await backend.table(unique("registry"))
    await backend.publish(topic, Message(b"before"))
    await ack_all(await receive_until(workers, 1))

    await asyncio.to_thread(kafka.restart, ports=kafka.ports())

    async with asyncio.timeout(STEP):
        await backend.publish(topic, Message(b"after"))
        await backend.publish(parent, Message(b"reply"), lite_topic="task-1")
        await table.put("agent", b"card")
    [job] = await receive_until(workers, 1, timeout=STEP)
    [reply] = await poll_until(replies, 1, timeout=STEP)
    assert (job.body, reply.body, await table.get("agent")) == (b"after", b"reply", b"card")
    await ack_all([job, reply])
    assert (await backend.health()).ok


async def test_publishing_while_the_broker_is_down_fails_as_unavailable_and_works_once_it_is_back(kafka, open_backend):
    backend = await open_backend(request_timeout=3)
    topic = unique("cap")
    await backend.create_topic(TopicSpec(topic))
    ports = kafka.ports()
    await asyncio.to_thread(kafka.stop)
    try:
        async with asyncio.timeout(STEP):
            with pytest.raises(BackendUnavailableError):
                await backend.publish(topic, Message(b"lost?"))
            assert not (await backend.health()).ok
    finally:
        await asyncio.to_thread(kafka.restart, ports=ports)

    async with asyncio.timeout(STEP):
        while True:
            try:
                await backend.publish(topic, Message(b"back"))
                break
            except BackendUnavailableError:
                await asyncio.sleep(0.2)   # sleep-ok: the producer reconnects on its own schedule
