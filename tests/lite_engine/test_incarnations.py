"""A lite client id opened again (a gateway killed and restarted within the session timeout) is
a new incarnation: its subscription changes, numbered from 1 again, are not shadowed by the
higher versions of its predecessor."""

from __future__ import annotations

import asyncio

import pytest

from adapters.base import Message, TopicSpec
from adapters.lite_remote import RemoteLiteBackend
from tests.lite_engine.engine_process import EngineProcess


@pytest.fixture
def engine_process(tmp_path):
    proc = EngineProcess(tmp_path / "engine", settings={"session_timeout": 30.0, "tick": 0.01})
    proc.start()
    yield proc
    proc.stop()


async def _backend(target: str) -> RemoteLiteBackend:
    backend = RemoteLiteBackend(target, full_sync_every=3600)
    await backend.start()
    return backend


async def test_a_restarted_client_with_the_same_id_receives_on_its_new_subscriptions(engine_process):
    first = await _backend(engine_process.target)
    await first.create_topic(TopicSpec("replies", lite=True))
    old = await first.lite_consumer("replies", "gw", client_id="gw-host-8080")
    for i in range(5):                     # the predecessor's versions climb, full syncs included
        await old.subscribe([f"task-{i}"])
        await old.sync([f"task-{j}" for j in range(i + 1)])
    await old.abandon()                    # killed: no CloseClient, the engine still holds it
    await first.close()

    second = await _backend(engine_process.target)
    try:
        new = await second.lite_consumer("replies", "gw", client_id="gw-host-8080")
        await new.subscribe(["task-new"])  # version 1 again
        await second.publish("replies", Message(b"answer"), lite_topic="task-new")
        async with asyncio.timeout(5):
            got = await new.poll(wait=3.0)
        assert [(d.lite_topic, d.body) for d in got] == [("task-new", b"answer")]
    finally:
        await second.close()
