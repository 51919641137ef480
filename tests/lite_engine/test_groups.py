"""Capability topics consumed by consumer groups."""

import asyncio

import pytest

from lite_engine import TopicConfig, UnknownReceiptError, dead_letter_topic


async def test_publish_returns_distinct_message_ids(engine):
    ids = {await engine.publish("tasks", b"x") for _ in range(10)}
    assert len(ids) == 10


async def test_each_group_receives_every_message_once(engine):
    for group in ("a", "b"):
        assert await engine.receive("tasks", group) == []
    for i in range(5):
        await engine.publish("tasks", str(i).encode())
    for group in ("a", "b"):
        got = await engine.receive("tasks", group, max_messages=10)
        assert [d.body for d in got] == [b"0", b"1", b"2", b"3", b"4"]
        for d in got:
            engine.ack(d.receipt)
        assert await engine.receive("tasks", group, max_messages=10) == []


async def test_messages_spread_across_waiting_members_of_a_group(engine):
    members = [asyncio.create_task(engine.receive("tasks", "workers", wait=2)) for _ in range(3)]
    await asyncio.sleep(0)  # sleep-ok: one loop turn lets the members start waiting
    for i in range(3):
        await engine.publish("tasks", str(i).encode())
    results = await asyncio.gather(*members)
    assert sorted(r[0].body for r in results) == [b"0", b"1", b"2"]
    assert all(len(r) == 1 for r in results)


async def test_unacked_message_is_redelivered_after_invisibility_timeout(engine):
    await engine.publish("tasks", b"job")
    first = await engine.receive("tasks", "g", invisible=0.05)
    assert await engine.receive("tasks", "g") == []
    again = await engine.receive("tasks", "g", wait=2)
    assert again[0].message_id == first[0].message_id
    assert again[0].attempt == 2
    with pytest.raises(UnknownReceiptError):
        engine.ack(first[0].receipt)
    engine.ack(again[0].receipt)


async def test_extend_keeps_a_message_invisible(engine):
    await engine.publish("tasks", b"job")
    [d] = await engine.receive("tasks", "g", invisible=0.05)
    engine.extend(d.receipt, 5)
    assert await engine.receive("tasks", "g", wait=0.15) == []
    engine.ack(d.receipt)


async def test_nack_with_delay_redelivers_later(engine):
    await engine.publish("tasks", b"job")
    [d] = await engine.receive("tasks", "g")
    engine.nack(d.receipt, delay=0.05)
    assert await engine.receive("tasks", "g") == []
    [again] = await engine.receive("tasks", "g", wait=2)
    assert again.body == b"job" and again.attempt == 2


async def test_nack_without_delay_redelivers_at_once(engine):
    await engine.publish("tasks", b"job")
    [d] = await engine.receive("tasks", "g")
    engine.nack(d.receipt)
    [again] = await engine.receive("tasks", "g")
    assert again.message_id == d.message_id


async def test_message_goes_to_dead_letter_topic_after_retry_limit(engine):
    await engine.create_topic("tasks", TopicConfig(max_attempts=2))
    await engine.publish("tasks", b"poison", headers={"h": "v"})
    for _ in range(2):
        [d] = await engine.receive("tasks", "g")
        engine.nack(d.receipt)
    assert await engine.receive("tasks", "g") == []
    [dead] = await engine.receive(dead_letter_topic("g"), "ops")
    assert dead.body == b"poison"
    assert dead.headers["h"] == "v"
    assert dead.headers["x-dlq-topic"] == "tasks"


async def test_receive_long_poll_times_out_empty(engine):
    assert await engine.receive("tasks", "g", wait=0.02) == []


async def test_cancelled_receive_passes_its_wake_up_on(engine):
    first = asyncio.create_task(engine.receive("tasks", "g", wait=5))
    second = asyncio.create_task(engine.receive("tasks", "g", wait=5))
    await asyncio.sleep(0)  # sleep-ok: one loop turn parks the receive
    await engine.publish("tasks", b"one")   # wakes `first`...
    first.cancel()                            # ...which is cancelled before it runs
    [d] = await asyncio.wait_for(second, 2)
    assert d.body == b"one"


async def test_the_first_group_reads_messages_published_before_any_group_existed(engine):
    await engine.publish("tasks", b"early")
    [d] = await engine.receive("tasks", "late-group")
    assert d.body == b"early"


async def test_closing_the_engine_ends_waiting_receives(make_engine):
    engine = await make_engine()
    waiting = asyncio.create_task(engine.receive("tasks", "g", wait=30))
    await asyncio.sleep(0)  # sleep-ok: one loop turn, so the other task parks
    await engine.close()
    assert await asyncio.wait_for(waiting, 2) == []
