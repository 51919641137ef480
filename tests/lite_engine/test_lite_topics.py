"""Lite topics: InterestSet, ReadySet events, ordering, expiry, quotas and liveness."""

import asyncio

import pytest

from lite_engine import QuotaExceededError, TopicConfig, UnknownClientError

from .conftest import drain


def open_client(engine, cid="c1", group="gw", topic="reply"):
    engine.open_client(cid, group=group, topic=topic)
    return cid


# ---- ReadySet event sources


async def test_new_message_on_subscribed_lite_topic_makes_it_ready(engine):
    c = open_client(engine)
    engine.subscribe(c, ["t1"])
    await engine.publish("reply", b"r", lite="t1")
    [d] = await engine.poll(c)
    assert (d.lite_topic, d.body) == ("t1", b"r")


async def test_poll_returns_only_subscribed_topics(engine):
    c = open_client(engine)
    engine.subscribe(c, ["mine"])
    await engine.publish("reply", b"other", lite="not-mine")
    await engine.publish("reply", b"x", lite="mine")
    assert [d.lite_topic for d in await engine.poll(c, max_messages=10)] == ["mine"]


async def test_subscription_coming_online_while_messages_wait_makes_topic_ready(engine):
    await engine.publish("reply", b"early", lite="t1")
    c = open_client(engine)
    assert await engine.poll(c) == []
    engine.subscribe(c, ["t1"])
    [d] = await engine.poll(c)
    assert d.body == b"early"


async def test_ack_with_remaining_messages_makes_topic_ready_again(make_engine):
    engine = await make_engine(poll_topic_batch=1)
    await engine.create_topic("reply", TopicConfig(lite=True, ordered=True))
    c = open_client(engine)
    engine.subscribe(c, ["t1"])
    for body in (b"1", b"2"):
        await engine.publish("reply", body, lite="t1")
    [d] = await engine.poll(c, max_messages=10)
    assert await engine.poll(c) == []          # the order lock holds the rest back
    engine.ack(d.receipt)                      # the ack leaves "2" behind: ready again
    [d2] = await engine.poll(c)
    assert d2.body == b"2"


async def test_order_lock_release_by_timeout_makes_topic_ready(engine):
    await engine.create_topic("reply", TopicConfig(lite=True, ordered=True))
    c = open_client(engine)
    engine.subscribe(c, ["t1"])
    await engine.publish("reply", b"1", lite="t1")
    await engine.publish("reply", b"2", lite="t1")
    [d] = await engine.poll(c, invisible=0.05)
    [again] = await engine.poll(c, wait=2)
    assert again.message_id == d.message_id   # order kept: the same message first


async def test_long_poll_wakes_on_publish(engine):
    c = open_client(engine)
    engine.subscribe(c, ["t1"])
    waiting = asyncio.create_task(engine.poll(c, wait=5))
    await asyncio.sleep(0)  # sleep-ok: one loop turn, so the other task parks
    await engine.publish("reply", b"late", lite="t1")
    [d] = await asyncio.wait_for(waiting, 2)
    assert d.body == b"late"


async def test_long_poll_times_out_empty(engine):
    c = open_client(engine)
    engine.subscribe(c, ["t1"])
    assert await engine.poll(c, wait=0.02) == []


async def test_cancelled_poll_loses_nothing(engine):
    c = open_client(engine)
    engine.subscribe(c, ["t1"])
    waiting = asyncio.create_task(engine.poll(c, wait=5))
    await asyncio.sleep(0)  # sleep-ok: one loop turn, so the other task parks
    await engine.publish("reply", b"kept", lite="t1")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    [d] = await engine.poll(c)
    assert d.body == b"kept"


async def test_poll_is_fair_across_ready_topics(make_engine):
    engine = await make_engine(poll_topic_batch=2)
    c = open_client(engine)
    engine.subscribe(c, ["busy", "quiet"])
    for i in range(50):
        await engine.publish("reply", b"b%d" % i, lite="busy")
    await engine.publish("reply", b"q", lite="quiet")
    first = await engine.poll(c, max_messages=4)
    assert "quiet" in {d.lite_topic for d in first}


async def test_unacked_lite_message_comes_back_after_invisibility(engine):
    c = open_client(engine)
    engine.subscribe(c, ["t1"])
    await engine.publish("reply", b"r", lite="t1")
    [d] = await engine.poll(c, invisible=0.05)
    [again] = await engine.poll(c, wait=2)
    assert again.message_id == d.message_id and again.attempt == 2


# ---- InterestSet


async def test_unsubscribe_stops_ready_events(engine):
    c = open_client(engine)
    engine.subscribe(c, ["t1"])
    engine.unsubscribe(c, ["t1"])
    await engine.publish("reply", b"r", lite="t1")
    assert await engine.poll(c) == []


async def test_full_sync_replaces_the_interest_set(engine):
    c = open_client(engine)
    engine.subscribe(c, ["a", "b"], version=1)
    engine.sync(c, ["b", "c"], version=2)
    assert engine.interest(c) == {"b", "c"}


async def test_stale_partial_update_does_not_undo_a_newer_full_sync(engine):
    c = open_client(engine)
    engine.sync(c, ["a"], version=5)
    engine.unsubscribe(c, ["a"], version=4)   # sent before the sync, arrived after it
    engine.subscribe(c, ["old"], version=3)
    assert engine.interest(c) == {"a"}
    engine.subscribe(c, ["new"], version=6)
    assert engine.interest(c) == {"a", "new"}


async def test_stale_full_sync_is_ignored(engine):
    c = open_client(engine)
    engine.subscribe(c, ["a"], version=7)
    engine.sync(c, [], version=6)
    assert engine.interest(c) == {"a"}


# ---- re-attach and groups


async def test_second_client_reads_retained_messages_of_an_existing_lite_topic(engine):
    await engine.publish("reply", b"1", lite="task-9")
    await engine.publish("reply", b"2", lite="task-9")
    first = open_client(engine, "first", group="gw-a")
    engine.subscribe(first, ["task-9"])
    for d in await engine.poll(first, max_messages=10):
        engine.ack(d.receipt)
    other = open_client(engine, "other", group="gw-b")   # another gateway instance re-attaches
    engine.subscribe(other, ["task-9"])
    got = await engine.poll(other, max_messages=10)
    assert [d.body for d in got] == [b"1", b"2"]


async def test_clients_of_one_group_share_a_lite_topic_cursor(engine):
    a = open_client(engine, "a")
    b = open_client(engine, "b")
    engine.subscribe(a, ["t"])
    engine.subscribe(b, ["t"])
    await engine.publish("reply", b"once", lite="t")
    got = await engine.poll(a) + await engine.poll(b)
    assert [d.body for d in got] == [b"once"]


# ---- liveness


async def test_silent_client_loses_interest_and_its_unacked_messages_go_to_others(engine):
    dying = open_client(engine, "dying")
    alive = open_client(engine, "alive")
    engine.subscribe(dying, ["t"])
    await engine.publish("reply", b"work", lite="t")
    [d] = await engine.poll(dying, invisible=60)
    engine.subscribe(alive, ["t"])
    keep_alive = asyncio.create_task(_heartbeat(engine, alive))
    try:
        [again] = await engine.poll(alive, wait=3)   # `dying` stops heartbeating
    finally:
        keep_alive.cancel()
    assert again.message_id == d.message_id
    with pytest.raises(UnknownClientError):
        engine.heartbeat(dying)


async def _heartbeat(engine, client):
    while True:
        engine.heartbeat(client)
        await asyncio.sleep(0.02)  # sleep-ok: the heartbeat period itself


async def test_ready_topics_of_a_closed_client_move_to_other_subscribers(engine):
    a = open_client(engine, "a")
    b = open_client(engine, "b")
    engine.subscribe(a, ["t"])
    engine.subscribe(b, ["t"])
    await engine.publish("reply", b"x", lite="t")
    engine.close_client(a if "t" in engine._clients["a"].ready else b)
    survivor = "b" if "b" in engine._clients else "a"
    [d] = await engine.poll(survivor)
    assert d.body == b"x"


async def test_closed_client_poll_raises(engine):
    c = open_client(engine)
    waiting = asyncio.create_task(engine.poll(c, wait=5))
    await asyncio.sleep(0)  # sleep-ok: one loop turn, so the other task parks
    engine.close_client(c)
    with pytest.raises(UnknownClientError):
        await asyncio.wait_for(waiting, 2)


# ---- lifecycle and quotas


async def test_idle_lite_topic_is_deleted(make_engine):
    engine = await make_engine(min_lite_idle_seconds=0.01)
    await engine.create_topic("reply", TopicConfig(lite=True, lite_idle_seconds=0.01))
    await engine.publish("reply", b"r", lite="short-lived")
    assert engine.health()["lite_topics"] == 1
    async with asyncio.timeout(5):
        while engine.health()["lite_topics"]:
            await asyncio.sleep(0.01)  # sleep-ok: observing the engine's own 1 s expiry buckets


async def test_subscribed_lite_topic_is_not_deleted_while_idle(make_engine):
    engine = await make_engine(min_lite_idle_seconds=0.01, session_timeout=60)
    await engine.create_topic("reply", TopicConfig(lite=True, lite_idle_seconds=0.01))
    c = open_client(engine)
    engine.subscribe(c, ["kept"])
    engine._expire_lite_topics(engine._clock() + 10)
    assert engine.health()["lite_topics"] == 1


async def test_per_topic_idle_time_has_a_floor(make_engine):
    engine = await make_engine(min_lite_idle_seconds=100)
    await engine.create_topic("reply", TopicConfig(lite=True, lite_idle_seconds=0.01))
    assert engine._idle_seconds(engine._topics["reply"]) == 100


async def test_subscription_quota_per_client(make_engine):
    engine = await make_engine(max_subscriptions_per_client=2)
    c = open_client(engine)
    engine.subscribe(c, ["a", "b"])
    with pytest.raises(QuotaExceededError) as err:
        engine.subscribe(c, ["c"])
    assert err.value.quota == "max_subscriptions_per_client" and err.value.client_id == c
    assert engine.interest(c) == {"a", "b"}


async def test_total_lite_topic_quota(make_engine):
    engine = await make_engine(max_lite_topics=2)
    await engine.publish("reply", b"", lite="a")
    await engine.publish("reply", b"", lite="b")
    with pytest.raises(QuotaExceededError) as err:
        await engine.publish("reply", b"", lite="c")
    assert err.value.quota == "max_lite_topics"
    await engine.publish("reply", b"still fine", lite="a")


async def test_many_messages_drain_through_poll(engine):
    c = open_client(engine)
    names = [f"t{i}" for i in range(100)]
    engine.subscribe(c, names)
    for n in names:
        await engine.publish("reply", n.encode(), lite=n)
    got = await drain(engine, c, expect=100)
    assert sorted(d.body for d in got) == sorted(n.encode() for n in names)


async def test_acked_history_is_trimmed_when_a_lite_topic_reaches_its_message_limit(make_engine):
    engine = await make_engine(max_messages_per_lite_topic=3)
    c = open_client(engine)
    engine.subscribe(c, ["t"])
    for i in range(10):
        await engine.publish("reply", b"%d" % i, lite="t")
        [d] = await engine.poll(c)
        engine.ack(d.receipt)
    for i in range(3):
        await engine.publish("reply", b"unread", lite="t")
    with pytest.raises(QuotaExceededError):
        await engine.publish("reply", b"one too many", lite="t")
