"""How lite consumers receive from the proxy: what a long poll's timing means for the messages
it brings, and several receives in flight at once."""

import asyncio

from adapters.base import Message
from adapters.rocketmq.receiving import RECEIVE_BATCH, STALE_AFTER

from tests.contract.helpers import lite_parent, unique


def _count_calls(consumer) -> dict[str, int]:
    """Counts the unary calls the consumer makes, by method (the real call goes out)."""
    counts: dict[str, int] = {}
    call = consumer._conn.call

    async def counted(method, request, *args, **kwargs):
        counts[method] = counts.get(method, 0) + 1
        return await call(method, request, *args, **kwargs)
    consumer._conn.call = counted
    return counts


async def test_a_reply_that_ends_a_long_wait_in_the_poll_is_handed_over_without_an_invisibility_change(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, unique("gw"))
    await consumer.subscribe(["task-late"], fresh=True)
    calls = _count_calls(consumer)
    polling = asyncio.ensure_future(consumer.poll(max_messages=4, wait=15.0))
    await asyncio.sleep(STALE_AFTER + 0.5)   # sleep-ok: the receive must wait in the poll longer than STALE_AFTER
    await backend.publish(parent, Message(b"reply"), lite_topic="task-late")
    async with asyncio.timeout(30):
        [delivery] = await polling
    assert delivery.body == b"reply"
    # It was popped when it arrived: not stale, so no ChangeInvisibleDuration before hand-over.
    assert calls.get("ChangeInvisibleDuration", 0) == 0
    await delivery.ack()


async def test_a_burst_of_replies_to_one_lite_consumer_arrives_once_each_with_two_receives_in_flight(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, unique("gw"))
    tasks = [f"task-{n}" for n in range(3 * RECEIVE_BATCH)]
    await consumer.subscribe(tasks, fresh=True)
    await asyncio.gather(*(backend.publish(parent, Message(t.encode()), lite_topic=t) for t in tasks))
    seen: list[str] = []
    most_in_flight = 0
    async with asyncio.timeout(60):
        while len(set(seen)) < len(tasks):
            batch = await consumer.poll(max_messages=RECEIVE_BATCH, wait=1.0)
            most_in_flight = max(most_in_flight, len(consumer._pending))
            seen += [d.lite_topic for d in batch]
            await asyncio.gather(*(d.ack() for d in batch))
    assert sorted(seen) == sorted(tasks)   # each once: the parallel receives split the events
    assert most_in_flight == consumer.receives_per_broker == 2
