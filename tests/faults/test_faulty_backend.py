"""FaultyBackend fails and delays the real backend's publish, put, poll and ack on demand, and
passes everything else through."""

import asyncio

import pytest

from adapters.base import Message, TopicSpec
from adapters.errors import BackendUnavailableError, StorageError


async def test_a_failing_publish_raises_for_the_number_of_calls_asked_then_publishes_again(faulty):
    await faulty.create_topic(TopicSpec("jobs"))
    faulty.faults.fail("publish", times=2)
    for _ in range(2):
        with pytest.raises(BackendUnavailableError):
            await faulty.publish("jobs", Message(b"x"))
    assert await faulty.publish("jobs", Message(b"x"))
    assert faulty.faults.counts["publish"] == {"calls": 3, "failed": 2, "delayed": 0}


async def test_a_failing_put_raises_the_error_given_until_cleared_and_stores_nothing(faulty):
    table = await faulty.table("index")
    faulty.faults.fail("put", error=StorageError("disk full"))
    for _ in range(3):
        with pytest.raises(StorageError, match="disk full"):
            await table.put("k", b"v")
    faulty.faults.clear("put")
    assert await table.get("k") is None
    await table.put("k", b"v")
    assert await table.get("k") == b"v"


async def test_a_failing_ack_leaves_the_delivery_unacked_so_it_comes_back(faulty):
    await faulty.create_topic(TopicSpec("jobs"))
    consumer = await faulty.group_consumer("jobs", "g", invisible=0.2)
    await faulty.publish("jobs", Message(b"job"))
    first = (await consumer.receive(1, wait=5))[0]
    faulty.faults.fail("ack", times=1)
    with pytest.raises(BackendUnavailableError):
        await first.ack()
    again = (await consumer.receive(1, wait=5))[0]
    assert again.body == b"job" and again.attempt == 2
    await again.ack()
    await consumer.close()


async def test_a_failing_poll_raises_and_the_messages_wait_for_the_next_poll(faulty):
    await faulty.create_topic(TopicSpec("reply", lite=True))
    consumer = await faulty.lite_consumer("reply", "gw", "gw-1")
    await consumer.subscribe(["t1"])
    await faulty.publish("reply", Message(b"event"), lite_topic="t1")
    faulty.faults.fail("poll", times=1)
    with pytest.raises(BackendUnavailableError):
        await consumer.poll(wait=1)
    got = await consumer.poll(wait=5)
    assert [d.body for d in got] == [b"event"]
    await got[0].ack()
    await consumer.close()


async def test_a_delayed_publish_waits_and_then_lands(faulty):
    await faulty.create_topic(TopicSpec("jobs"))
    faulty.faults.delay("publish", 0.2, times=1)
    publishing = asyncio.create_task(faulty.publish("jobs", Message(b"late")))
    async with asyncio.timeout(5):
        while faulty.faults.counts["publish"]["delayed"] < 1:
            await asyncio.sleep(0)    # sleep-ok: a yield inside a bounded wait
    assert not publishing.done()
    async with asyncio.timeout(5):
        assert await publishing
    consumer = await faulty.group_consumer("jobs", "g")
    assert [d.body for d in await consumer.receive(1, wait=5)] == [b"late"]
    await consumer.close()


def test_an_unknown_operation_is_refused_with_the_choices():
    from bench._faults.faulty import Faults
    with pytest.raises(ValueError, match="unknown operation 'delete'"):
        Faults().fail("delete")
