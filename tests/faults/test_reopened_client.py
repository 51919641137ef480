"""A process that dies while it holds reply events, on a remote `topicbridge engine`: its next
incarnation opens the same client id and is handed those events again at once, not after their
invisibility runs out (a restarted gateway on lite.mode=remote used to wait out the relay's 30 s).
The predecessor is a real process killed with SIGKILL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from adapters.base import Message, TopicSpec
from adapters.errors import UnknownReceiptError
from adapters.lite_remote import RemoteLiteBackend
from tests.lite_engine.engine_process import ROOT, EngineProcess

PARENT, CLIENT, LONG = "replies-reopen", "gw-reopen", 600.0

# Takes the one message on `PARENT`/`lite`, says so, and waits to be killed without settling it.
HOLDER = textwrap.dedent("""
    import asyncio, sys
    from adapters.lite_remote import RemoteLiteBackend

    async def main(target, parent, client, lite):
        backend = RemoteLiteBackend(target)
        await backend.start()
        consumer = await backend.lite_consumer(parent, client, client, invisible=600.0)
        await consumer.subscribe([lite])
        while not (taken := await consumer.poll(max_messages=8, wait=1.0)):
            pass
        print("TAKEN", len(taken), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main(*sys.argv[1:]))
""")


@pytest.fixture
def engine(tmp_path):
    process = EngineProcess(tmp_path / "engine", fsync="never")
    yield process.start()
    process.kill()


async def test_a_client_reopened_after_its_process_was_killed_gets_the_unsettled_events_again_at_once(engine):
    backend = RemoteLiteBackend(engine)
    await backend.start()
    holder = None
    try:
        await backend.create_topic(TopicSpec(PARENT, lite=True))
        await backend.publish(PARENT, Message(b"the answer"), lite_topic="reply/t1")
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, engine, PARENT, CLIENT, "reply/t1"], cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True)
        said = await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), 30)
        assert said.startswith("TAKEN 1"), said
        holder.kill()
        await asyncio.to_thread(holder.wait)

        again = await backend.lite_consumer(PARENT, CLIENT, CLIENT, invisible=LONG)
        await again.subscribe(["reply/t1"])
        async with asyncio.timeout(15):         # far inside the 600 s the predecessor took it for
            while not (deliveries := await again.poll(max_messages=8, wait=1.0)):
                pass
        assert [(d.body, d.attempt) for d in deliveries] == [(b"the answer", 2)]
        await again.ack(deliveries[0])
        await again.close()
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
        await backend.close()


async def test_a_client_reopened_while_its_predecessor_still_holds_events_fences_it(engine):
    """Same client id, same process: the older consumer's receipts are void once the new one opens."""
    backend = RemoteLiteBackend(engine)
    await backend.start()
    try:
        await backend.create_topic(TopicSpec(PARENT, lite=True))
        await backend.publish(PARENT, Message(b"once"), lite_topic="reply/t2")
        first = await backend.lite_consumer(PARENT, CLIENT, CLIENT, invisible=LONG)
        await first.subscribe(["reply/t2"])
        async with asyncio.timeout(15):
            while not (held := await first.poll(max_messages=8, wait=1.0)):
                pass
        second = await backend.lite_consumer(PARENT, CLIENT, CLIENT, invisible=LONG)
        await second.subscribe(["reply/t2"])
        async with asyncio.timeout(15):
            while not (taken := await second.poll(max_messages=8, wait=1.0)):
                pass
        assert [d.attempt for d in held + taken] == [1, 2]
        await second.ack(taken[0])
        with pytest.raises(UnknownReceiptError):
            await first.ack(held[0])
        await second.close()
    finally:
        await backend.close()
