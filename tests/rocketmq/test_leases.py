"""Lite consumers hold messages on renewed leases: kept while the holder lives, back soon after it dies."""

from adapters.base import Message

from tests.contract.helpers import lite_parent, poll_until


async def test_a_message_held_past_one_lease_stays_with_its_live_holder(backend):
    parent = await lite_parent(backend)
    holder = await backend.lite_consumer(parent, "gw", invisible=60)
    other = await backend.lite_consumer(parent, "gw", invisible=60)
    await holder.subscribe(["t"])
    await backend.publish(parent, Message(b"long job"), lite_topic="t")
    [d] = await poll_until(holder, 1)
    await other.subscribe(["t"])
    assert await other.poll(wait=backend.lease_seconds + 2) == []   # renewed past the first lease
    await d.ack()
