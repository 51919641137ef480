"""Restart on the same data directory: replay, snapshots, segment cleanup."""

import asyncio
import os

import pytest

from lite_engine import Engine, EngineConfig, StorageError, TopicConfig


def config(tmp_path, **kw):
    return EngineConfig(data_dir=tmp_path / "data", tick=0.002, **kw)


async def restarted(engine: Engine, tmp_path, **kw) -> Engine:
    await engine.close()
    return await Engine(config(tmp_path, **kw)).start()


@pytest.mark.parametrize("fsync", ["always", "batch", "interval", "never"])
async def test_published_messages_and_acks_survive_a_restart(tmp_path, fsync):
    engine = await Engine(config(tmp_path, fsync=fsync)).start()
    await engine.receive("tasks", "g")
    for i in range(10):
        await engine.publish("tasks", b"%d" % i, headers={"i": str(i)}, key=f"k{i}")
    for d in await engine.receive("tasks", "g", max_messages=4):
        engine.ack(d.receipt)
    engine = await restarted(engine, tmp_path, fsync=fsync)
    rest = await engine.receive("tasks", "g", max_messages=100)
    assert [d.body for d in rest] == [b"%d" % i for i in range(4, 10)]
    assert rest[0].headers == {"i": "4"} and rest[0].key == "k4"
    await engine.close()


async def test_message_ids_stay_unique_across_restarts(tmp_path):
    engine = await Engine(config(tmp_path)).start()
    first = await engine.publish("tasks", b"a")
    engine = await restarted(engine, tmp_path)
    assert await engine.publish("tasks", b"b") != first
    await engine.close()


async def test_lite_topics_and_their_retained_messages_survive(tmp_path):
    engine = await Engine(config(tmp_path)).start()
    await engine.create_topic("reply", TopicConfig(lite=True, ordered=True, lite_idle_seconds=60))
    await engine.publish("reply", b"r1", lite="task-1")
    await engine.publish("reply", b"r2", lite="task-1")
    engine = await restarted(engine, tmp_path)
    assert engine.topics()["reply"].ordered
    engine.open_client("c", group="gw", topic="reply")
    engine.subscribe("c", ["task-1"])
    [d] = await engine.poll("c")
    assert d.body == b"r1"
    await engine.close()


async def test_expired_lite_topics_stay_deleted(tmp_path):
    engine = await Engine(config(tmp_path, min_lite_idle_seconds=0.01)).start()
    await engine.publish("reply", b"old", lite="gone")
    engine._expire_lite_topics(engine._clock() + 10_000)
    engine = await restarted(engine, tmp_path)
    assert engine.health()["lite_topics"] == 0
    await engine.close()


async def test_table_rows_and_deletes_survive(tmp_path):
    engine = await Engine(config(tmp_path)).start()
    await engine.kv_put("registry", "a", b"1")
    await engine.kv_put("registry", "b", b"2")
    await engine.kv_delete("registry", "a")
    engine = await restarted(engine, tmp_path)
    assert engine.kv_items("registry") == [("b", b"2")]
    await engine.close()


async def test_snapshot_bounds_replay_and_removes_old_segments(tmp_path):
    settings = dict(snapshot_every=200, segment_bytes=64 << 10, fsync="never")
    engine = await Engine(config(tmp_path, **settings)).start()
    await engine.receive("tasks", "g")
    for i in range(2000):
        await engine.publish("tasks", b"x" * 100)
        if i % 2 == 0:
            [d] = await engine.receive("tasks", "g")
            engine.ack(d.receipt)
    await engine.snapshot()
    segments = [f for f in os.listdir(tmp_path / "data") if f.endswith(".log")]
    assert len(segments) <= 2
    engine = await restarted(engine, tmp_path, **settings)
    assert engine._store._since_snapshot < 200
    rest = await engine.receive("tasks", "g", max_messages=1024)
    assert len(rest) == 1000
    await engine.close()


async def test_a_group_created_before_a_restart_keeps_its_unread_messages(tmp_path):
    engine = await Engine(config(tmp_path)).start()
    await engine.receive("tasks", "slow")
    await engine.receive("tasks", "fast")
    for i in range(300):
        await engine.publish("tasks", b"m")
    while got := await engine.receive("tasks", "fast", max_messages=100):
        for d in got:
            engine.ack(d.receipt)
    engine = await restarted(engine, tmp_path)
    assert len(await engine.receive("tasks", "slow", max_messages=1000)) == 300
    await engine.close()


async def test_a_message_is_not_delivered_before_it_is_durable(tmp_path):
    engine = await Engine(config(tmp_path, fsync="batch")).start()
    await engine.receive("tasks", "g")
    publishing = asyncio.ensure_future(engine.publish("tasks", b"x"))
    await asyncio.sleep(0)   # sleep-ok: one loop turn: the record is appended, its group commit not yet done
    assert await engine.receive("tasks", "g") == []
    await publishing
    [d] = await engine.receive("tasks", "g")
    assert d.body == b"x"
    await engine.close()


async def test_acked_receipts_do_not_pile_up_in_the_timer_heap(tmp_path):
    engine = await Engine(EngineConfig(tick=0.002)).start()
    for _ in range(5000):
        await engine.publish("tasks", b"x")
        [d] = await engine.receive("tasks", "g")
        engine.ack(d.receipt)
    assert len(engine._inflight._timers) <= 2048
    await engine.close()


def _last_segment(tmp_path):
    return sorted((tmp_path / "data").glob("*.log"))[-1]


async def test_a_corrupt_record_before_the_tail_stops_the_start_naming_segment_and_offset(tmp_path):
    engine = await Engine(config(tmp_path, fsync="always")).start()
    for i in range(20):
        await engine.publish("tasks", b"message %02d" % i)
    await engine.close()
    segment = _last_segment(tmp_path)
    blob = bytearray(segment.read_bytes())
    blob[len(blob) // 2] ^= 0x40
    segment.write_bytes(blob)
    with pytest.raises(StorageError) as caught:
        await Engine(config(tmp_path, fsync="always")).start()
    assert str(segment) in str(caught.value) and "at offset" in str(caught.value)
    assert segment.read_bytes() == bytes(blob)


async def test_a_torn_final_record_is_dropped_and_every_earlier_one_kept(tmp_path):
    engine = await Engine(config(tmp_path, fsync="always")).start()
    await engine.receive("tasks", "g")
    for i in range(20):
        await engine.publish("tasks", b"message %02d" % i)
    await engine.close()
    segment = _last_segment(tmp_path)
    os.truncate(segment, segment.stat().st_size - 3)
    engine = await Engine(config(tmp_path, fsync="always")).start()
    got = await engine.receive("tasks", "g", max_messages=100)
    assert [d.body for d in got] == [b"message %02d" % i for i in range(19)]
    await engine.close()


async def test_a_publish_cancelled_while_its_commit_runs_is_still_delivered_once_durable(tmp_path):
    engine = await Engine(config(tmp_path, fsync="batch")).start()
    await engine.receive("tasks", "g")
    publisher = asyncio.create_task(engine.publish("tasks", b"kept"))
    await asyncio.sleep(0)   # sleep-ok: one loop turn: the record is appended, its group commit not yet done
    assert await engine.receive("tasks", "g") == []
    publisher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await publisher
    got = await engine.receive("tasks", "g", wait=5)
    assert [d.body for d in got] == [b"kept"]
    await engine.close()
