"""The proxy SIGKILLed in the middle of a burst of replies, then restarted on the same port.

Replies are lite-topic messages (one lite topic per task, as the gateway's reply channels are).
Several publishers send while the real proxy JVM is killed; each publish either returns (the
broker stored the reply) or raises. The promise checked: every reply whose publish returned
reaches the subscribed lite consumer after the restart; a reply the caller was told failed may
or may not arrive; nothing that was acknowledged to the caller is silently lost.
"""

import asyncio

from adapters.base import Message
from adapters.errors import BackendError

from tests.contract.helpers import lite_parent

from .cluster import restart

TOPICS, PER_TOPIC = 8, 40
KILL_AFTER = 60          # accepted replies before the proxy is killed
WAIT = 180.0


async def _publisher(backend, parent: str, topic: str, accepted: set, refused: list,
                     under_way: asyncio.Event, back: asyncio.Event):
    """Publish PER_TOPIC replies; after a refused one, carry on once the proxy is back, so the
    burst spans the kill: sent before it, in flight when it happened, and after the restart."""
    for n in range(PER_TOPIC):
        body = f"{topic}/{n}".encode()
        try:
            await backend.publish(parent, Message(body), lite_topic=topic)
        except BackendError as exc:   # the caller is told: this reply may be lost
            refused.append((body, type(exc).__name__))
            await back.wait()
            continue
        accepted.add(body)
        if len(accepted) >= KILL_AFTER:
            under_way.set()


async def _until_publishing_works(backend, parent: str) -> None:
    """The proxy listens before it routes: probe (on a lite topic nobody reads) until a publish
    goes through, so that the rest of the burst meets a working proxy."""
    while True:
        try:
            await backend.publish(parent, Message(b"probe"), lite_topic="task-kill-probe")
            return
        except BackendError:
            await asyncio.sleep(0.2)   # sleep-ok: retrying while the restarted proxy finishes starting


async def _drain(lite, expected: set, received: set) -> None:
    while not expected <= received:
        try:
            deliveries = await lite.poll(max_messages=32, wait=1.0)
        except BackendError:
            continue   # the proxy is away; the consumer's session reconnects by itself
        for delivery in deliveries:
            received.add(delivery.body)
            try:
                await delivery.ack()
            except BackendError:
                pass   # the ack did not reach the broker: the reply comes again after its lease


async def test_every_reply_accepted_during_a_proxy_sigkill_arrives_after_the_restart(cluster, backend):
    parent = await lite_parent(backend)
    topics = [f"task-kill-{i}" for i in range(TOPICS)]
    lite = await backend.lite_consumer(parent, "gw")
    await lite.subscribe(topics)
    accepted: set[bytes] = set()
    refused: list[tuple[bytes, str]] = []
    received: set[bytes] = set()
    under_way, back = asyncio.Event(), asyncio.Event()

    async with asyncio.timeout(WAIT):
        publishers = [asyncio.create_task(_publisher(backend, parent, t, accepted, refused, under_way, back))
                      for t in topics]
        await under_way.wait()
        killed_at = len(accepted)
        await asyncio.get_running_loop().run_in_executor(None, restart, cluster, "proxy")
        await _until_publishing_works(backend, parent)
        back.set()
        await asyncio.gather(*publishers)
        await _drain(lite, accepted, received)

    assert killed_at < TOPICS * PER_TOPIC, "the burst was over before the kill"
    assert refused, "no publish failed: the proxy did not die during the burst"
    assert len(accepted) > killed_at, "nothing was published after the restart"
    assert accepted <= received, f"accepted but never delivered: {sorted(accepted - received)[:10]}"
    assert len(accepted) + len(refused) == TOPICS * PER_TOPIC
    assert lite._session.reconnects >= 1
