"""A waiting call's watch: the events in order until the end, a reader woken by a push, and a
reader too slow to keep up cut off."""

import asyncio

import pytest
from a2a.types import a2a_pb2

from gateway.tasks.errors import SubscriberTooSlowError
from gateway.tasks.watch import WATCH_QUEUE, Watch


def event(n: int) -> a2a_pb2.StreamResponse:
    return a2a_pb2.StreamResponse(message=a2a_pb2.Message(message_id=f"m{n}"))


async def test_a_watch_yields_its_events_in_order_and_ends_at_the_end_marker():
    watch = Watch("t1")
    for n in range(3):
        watch.push(event(n))
    watch.push(None)
    watch.push(event(9))        # after the end: never read
    assert [e.message.message_id async for e in watch.events()] == ["m0", "m1", "m2"]


async def test_a_waiting_reader_gets_each_event_pushed_after_it_started_waiting():
    watch = Watch("t1")
    events = watch.events()
    reading = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)      # sleep-ok: lets the reader reach its wait before the push
    assert not reading.done()
    watch.push(event(1))
    async with asyncio.timeout(5):
        assert (await reading).message.message_id == "m1"
    watch.push(None)
    with pytest.raises(StopAsyncIteration):
        await anext(events)


async def test_a_reader_cancelled_while_waiting_leaves_the_watch_usable():
    watch = Watch("t1")
    events = watch.events()
    reading = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)      # sleep-ok: lets the reader reach its wait
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    watch.push(event(2))
    watch.push(None)
    assert [e.message.message_id async for e in watch.events()] == ["m2"]


async def test_a_reader_that_falls_a_full_queue_behind_is_cut_off_with_subscriber_too_slow():
    watch = Watch("t1")
    for n in range(WATCH_QUEUE + 1):
        watch.push(event(n))
    watch.push(event(0))        # ignored once cut off
    assert watch.overflowed
    with pytest.raises(SubscriberTooSlowError):
        async for _ in watch.events():
            pytest.fail("a cut-off watch yields nothing more")
