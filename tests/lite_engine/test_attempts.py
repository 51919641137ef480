"""Delivery attempts survive restarts: a message redelivered after a restart carries the next
attempt number, and max_attempts counts across restarts, so a message that crashes the process
every time ends in the dead-letter topic instead of looping forever. A lite poll hands its
deliveries over before their ATTEMPT records are durable (they ride the next commit); a group
receive (envelopes) waits until they are written to the OS (a killed process keeps them), and
their fsync rides the next commit too."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest

from lite_engine import Engine, EngineConfig, TopicConfig, dead_letter_topic, records
from lite_engine.commitlog import segment_files
from tests.lite_engine.engine_process import ROOT


def config(tmp_path, **kw):
    return EngineConfig(data_dir=tmp_path / "data", tick=0.002, **kw)


@pytest.mark.parametrize("snapshot", [False, True])
async def test_a_message_redelivered_after_a_restart_carries_the_next_attempt(tmp_path, snapshot):
    engine = await Engine(config(tmp_path)).start()
    await engine.create_topic("replies", TopicConfig(lite=True))
    await engine.publish("tasks", b"t")
    await engine.publish("replies", b"r", lite="task-1")
    engine.open_client("c", group="gw", topic="replies")
    engine.subscribe("c", ["task-1"])
    for expected in (1, 2, 3):
        assert [d.attempt for d in await engine.receive("tasks", "g", wait=1.0)] == [expected]
        assert [d.attempt for d in await engine.poll("c", wait=1.0)] == [expected]
        if snapshot:
            await engine.snapshot()
        await engine.close()                  # neither acked
        engine = await Engine(config(tmp_path)).start()
        engine.open_client("c", group="gw", topic="replies")
        engine.subscribe("c", ["task-1"])
    got = await engine.receive("tasks", "g", wait=1.0)
    assert got[0].attempt == 4
    engine.ack(got[0].receipt)
    await engine.close()
    engine = await Engine(config(tmp_path)).start()
    assert await engine.receive("tasks", "g") == []
    await engine.close()


async def test_max_attempts_counts_across_restarts(tmp_path):
    engine = await Engine(config(tmp_path, max_attempts=2)).start()
    await engine.publish("tasks", b"poison")
    for _ in range(2):
        assert len(await engine.receive("tasks", "g", wait=1.0)) == 1
        await engine.close()
        engine = await Engine(config(tmp_path, max_attempts=2)).start()
    assert await engine.receive("tasks", "g") == []
    dead = await engine.receive(dead_letter_topic("g"), "ops", wait=1.0)
    assert [d.body for d in dead] == [b"poison"]
    await engine.close()


def _run_child(data_dir, mode="envelope") -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "tests.lite_engine.attempt_crash_child", str(data_dir), mode],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout.strip()


async def test_a_message_that_kills_the_process_every_time_is_dead_lettered(tmp_path):
    engine = await Engine(config(tmp_path)).start()
    await engine.create_topic("replies", TopicConfig(lite=True))
    await engine.receive("tasks", "g")          # the group exists before the message
    await engine.publish("tasks", b"poison")
    await engine.publish("replies", b"r", lite="task-1")   # each run also polls a reply channel
    await engine.close()
    runs = [_run_child(tmp_path / "data") for _ in range(4)]
    assert runs[:3] == [(-9, "attempt 1"), (-9, "attempt 2"), (-9, "attempt 3")]
    assert runs[3] == (0, "dead poison")


async def test_a_lite_delivery_attempt_is_durable_once_its_handling_commits_anything(tmp_path):
    engine = await Engine(config(tmp_path)).start()
    await engine.create_topic("replies", TopicConfig(lite=True))
    await engine.publish("replies", b"r", lite="task-1")
    await engine.close()
    runs = [_run_child(tmp_path / "data", "lite") for _ in range(3)]
    assert runs == [(-9, "attempt 1"), (-9, "attempt 2"), (-9, "attempt 3")]


@pytest.fixture
def held_fsync(monkeypatch):
    """A fault-injecting wrapper around the real fsync: it blocks until the test lets it go."""
    entered, release = threading.Event(), threading.Event()
    real = segment_files.fsync_segments

    def held(targets):
        entered.set()
        release.wait(30)
        real(targets)

    monkeypatch.setattr(segment_files, "fsync_segments", held)
    yield entered, release
    release.set()


async def test_a_lite_poll_and_a_group_receive_return_before_their_attempts_are_fsynced(tmp_path, held_fsync):
    entered, release = held_fsync
    engine = await Engine(config(tmp_path, fsync="batch")).start()
    try:
        await engine.create_topic("replies", TopicConfig(lite=True))
        engine.open_client("c", group="gw", topic="replies")
        engine.subscribe("c", ["task-1"])
        await engine.receive("tasks", "g")
        release.set()
        await engine.publish("tasks", b"t")
        await engine.publish("replies", b"r", lite="task-1")
        release.clear()
        entered.clear()
        async with asyncio.timeout(10):
            received = await engine.receive("tasks", "g", wait=1.0)     # written, not fsynced
            polled = await engine.poll("c", wait=1.0)
        assert [(d.body, d.attempt) for d in received] == [(b"t", 1)]
        assert [(d.body, d.attempt) for d in polled] == [(b"r", 1)]
        segment = max((tmp_path / "data").rglob("*.log"))
        assert records.encode_attempt("tasks", "", "g", 0, 1) in segment.read_bytes()    # in the OS already
        assert not release.is_set()
        committing = asyncio.create_task(engine.kv_put("t", "k", b"v"))  # a waiter's commit covers them
        assert await asyncio.to_thread(entered.wait, 10)
        assert not committing.done()
        release.set()
        async with asyncio.timeout(10):
            await committing
    finally:
        release.set()
        await engine.close()
