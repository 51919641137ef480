"""Liveness of lite clients and durability across a backend restart."""

from .helpers import ack_all, capability, lite_parent, poll_until, publish_all, receive_until


async def test_silent_client_loses_subscriptions_and_its_unacked_messages_come_back(backend):
    parent = await lite_parent(backend)
    crashing = await backend.lite_consumer(parent, "gw", invisible=300)
    survivor = await backend.lite_consumer(parent, "gw", invisible=300)
    await crashing.subscribe(["t"])
    await publish_all(backend, parent, [b"work"], lite_topic="t")
    [taken] = await poll_until(crashing, 1)
    await survivor.subscribe(["t"])
    await crashing.abandon()                 # stops heartbeating, like a killed process
    [again] = await poll_until(survivor, 1, timeout=20)
    assert again.message_id == taken.message_id
    await again.ack()


async def test_acknowledged_publishes_and_acks_survive_a_restart(harness):
    if harness.restart is None:
        return
    backend = await harness.backend()
    topic = await capability(backend)
    parent = await lite_parent(backend)
    consumer = await backend.group_consumer(topic, "g")
    assert await consumer.receive(wait=0.1) == []
    await publish_all(backend, topic, [b"%d" % i for i in range(10)])
    await publish_all(backend, parent, [b"reply"], lite_topic="task")
    await ack_all(await receive_until(consumer, 4))
    table = await backend.table("registry")
    await table.put("agent", b"card")

    await harness.restart()

    backend = await harness.backend()
    consumer = await backend.group_consumer(topic, "g")
    rest = await receive_until(consumer, 6)
    assert len(rest) == 6
    assert await consumer.receive(wait=0.2) == []
    await ack_all(rest)
    reader = await backend.lite_consumer(parent, "after-restart")
    await reader.subscribe(["task"])
    [d] = await poll_until(reader, 1)
    assert d.body == b"reply"
    assert await (await backend.table("registry")).get("agent") == b"card"
