"""A running gateway enforces task lifetimes from its settings: gateway.task_timeout_seconds
fails a turn nobody answers, a capability's own timeout_seconds (registry) overrides it, and
the reply channels take gateway.channel_idle_seconds."""

import asyncio
import time

from a2a.types import a2a_pb2

from adapters.factory import engine_config
from adapters.lite import EmbeddedLiteBackend
from gateway.app import Gateway
from gateway.registry.capabilities import Capability
from gateway.tasks import channels
from gateway.workers.worker import Worker

FAILED = a2a_pb2.TASK_STATE_FAILED


def _message() -> a2a_pb2.Message:
    return a2a_pb2.Message(message_id=f"m-{time.monotonic_ns()}", role=a2a_pb2.ROLE_USER,
                           parts=[a2a_pb2.Part(text="hi")])


async def _never_answers(task):
    await asyncio.Event().wait()


async def _final(watch, seconds: float = 20) -> a2a_pb2.StreamResponse:
    last = None
    async with asyncio.timeout(seconds):
        async for event in watch.events():
            last = event
    return last


def _gateway(**options) -> Gateway:
    backend = EmbeddedLiteBackend(engine_config({"data_dir": None, "tick": 0.005}))
    return Gateway({"gateway": options}, backend)


async def test_a_gateway_fails_a_task_past_gateway_task_timeout_seconds_and_names_the_deadline():
    gateway = _gateway(task_timeout_seconds=0.5)
    await gateway.start()
    worker = Worker(gateway.backend, "mute", _never_answers)
    await worker.start()
    try:
        assert {"tasks.lifetimes", "tasks.dead-letters"} <= set(gateway.supervisor.loops)
        task, watch = await gateway.tasks.submit("mute", _message())
        last = await _final(watch)
        assert last.status_update.status.state == FAILED
        assert "deadline" in last.status_update.status.message.parts[0].text
        assert (await gateway.tasks.get(task.id)).status.state == FAILED
    finally:
        await worker.close()
        await gateway.close()
    assert gateway.supervisor.loops == {}


async def test_a_capability_timeout_set_in_the_registry_overrides_the_gateway_default():
    gateway = _gateway(task_timeout_seconds=3600)
    await gateway.start()
    worker = Worker(gateway.backend, "mute", _never_answers)
    await worker.start()
    try:
        await gateway.registry.register(Capability("mute", {"name": "Mute"}, timeout_seconds=0.5))
        task, watch = await gateway.tasks.submit("mute", _message())
        deadline = task.metadata["topicbridge"]["deadline"]
        assert deadline < time.time() + 60
        assert (await _final(watch)).status_update.status.state == FAILED
    finally:
        await worker.close()
        await gateway.close()


def test_the_reply_channels_take_gateway_channel_idle_seconds():
    assert _gateway(channel_idle_seconds=42).tasks.channel_idle_seconds == 42
    assert _gateway().tasks.channel_idle_seconds == 600


async def test_the_channel_idle_time_holds_over_the_default_of_the_gateways_own_workers():
    gateway = _gateway(channel_idle_seconds=42, demo=True)     # demo workers create the parents too
    await gateway.start()
    try:
        topics = gateway.backend.engine.topics()
        assert topics[channels.REPLY_TOPIC].lite_idle_seconds == 42
        assert topics[channels.CONTROL_TOPIC].lite_idle_seconds == 42
    finally:
        await gateway.close()
