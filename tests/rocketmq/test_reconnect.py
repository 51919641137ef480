"""A proxy restart: calls fail with BackendUnavailableError meanwhile, clients come back by themselves."""

import asyncio

import pytest

from adapters.base import Message
from adapters.errors import BackendUnavailableError

from tests.contract.helpers import capability, lite_parent, poll_until, receive_until

from .cluster import restart


async def test_consumers_survive_a_proxy_restart_and_lite_subscriptions_are_restored(cluster, backend):
    parent, topic = await lite_parent(backend), await capability(backend)
    lite = await backend.lite_consumer(parent, "gw")
    await lite.subscribe(["task-1"])
    group = await backend.group_consumer(topic, "workers")
    assert await group.receive(wait=0.1) == []

    stopped = asyncio.get_running_loop().run_in_executor(None, restart, cluster, "proxy")
    with pytest.raises(BackendUnavailableError):
        async with asyncio.timeout(60):
            while True:   # until the proxy is gone: each failed publish is the signal
                await backend.publish(topic, Message(b"during"))
    await stopped

    async with asyncio.timeout(60):
        while True:   # the channel reconnects within a second of the proxy accepting again
            try:
                await backend.publish(parent, Message(b"after"), lite_topic="task-1")
                await backend.publish(topic, Message(b"after"))
                break
            except BackendUnavailableError:
                await asyncio.sleep(0.2)   # sleep-ok: retrying while the proxy finishes starting
    [reply] = await poll_until(lite, 1, timeout=30)      # the subscription came back with the session
    assert reply.body == b"after"
    await reply.ack()
    bodies = []
    async with asyncio.timeout(30):   # messages published just before the proxy went may come first
        while b"after" not in bodies:
            for d in await receive_until(group, 1):
                bodies.append(d.body)
                await d.ack()
    assert lite._session.reconnects >= 1
