"""Capability topics are created by many (each instance's bridges, every worker as it starts) and
creating a topic is "last creator wins" on the backends: the settings registered with a
capability must survive all of them. Real embedded engine, real workers."""

from __future__ import annotations

import pytest

from adapters.lite import EmbeddedLiteBackend
from gateway.registry.capabilities import Capability, Registry, create_capability_topic
from gateway.workers.worker import Worker
from lite_engine import EngineConfig

CARD = {"name": "flaky", "description": "fails now and then"}


@pytest.fixture
async def backend(tmp_path):
    backend = EmbeddedLiteBackend(EngineConfig(data_dir=tmp_path / "engine", tick=0.005))
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


async def _done(task) -> None:
    await task.complete(text="ok")


def _max_attempts(backend, capability: Capability) -> int | None:
    return backend.engine.topics()[capability.topic].max_attempts


async def test_workers_starting_on_a_registered_capability_keep_its_max_attempts(backend):
    registry = Registry(backend)
    await registry.start()
    capability = await registry.register(Capability("flaky", CARD, max_attempts=2))
    await create_capability_topic(backend, "flaky")
    plain, announcing = Worker(backend, "flaky", _done), Worker(backend, "flaky", _done, card=CARD)
    for worker in (plain, announcing):      # a bridge's worker (no card), then a native one announcing
        await worker.start()
    try:
        assert _max_attempts(backend, capability) == 2
        assert (await registry.get("flaky")).max_attempts == 2     # the announce kept it in the record too
    finally:
        for worker in (plain, announcing):
            await worker.close()


async def test_a_capability_registered_with_a_bad_max_attempts_is_refused_naming_the_value(backend):
    registry = Registry(backend)
    await registry.start()
    with pytest.raises(ValueError, match=r"max_attempts 0 must be an integer"):
        await registry.register(Capability("flaky", CARD, max_attempts=0))
    assert await registry.get("flaky") is None
