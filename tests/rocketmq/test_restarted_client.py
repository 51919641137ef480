"""A process that restarts with the same lite client id (a gateway restarted on its port) gets
the first message on its lite topics itself, first time: the previous process's long-poll, left
at the broker under that id, must not take it."""

import asyncio

from adapters.base import Message

from tests.contract.helpers import lite_parent, poll_until, unique


async def test_a_lite_client_id_reused_right_after_a_process_left_gets_the_first_message_first_time(open_backend):
    parent = await lite_parent(await open_backend())
    group = unique("gw")
    before = await open_backend()
    leaving = await before.lite_consumer(parent, group, client_id=group, invisible=30)
    await leaving.subscribe(["warm-up"], fresh=True)
    waiting = asyncio.create_task(leaving.poll(wait=20))   # a long-poll open when the process goes
    await asyncio.sleep(0.5)   # sleep-ok: let the receive reach the broker; nothing to wait on from here
    await before.close()       # as a process that exits: its channel goes, its long-poll stays at the broker
    waiting.cancel()
    after = await open_backend()
    consumer = await after.lite_consumer(parent, group, client_id=group, invisible=30)
    await consumer.subscribe(["task-1"], fresh=True)
    await after.publish(parent, Message(b"reply"), lite_topic="task-1")
    [delivery] = await poll_until(consumer, 1, timeout=60)
    assert (delivery.body, delivery.attempt) == (b"reply", 1)
