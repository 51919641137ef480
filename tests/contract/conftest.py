"""The contract suite runs every test against every backend.

A `Harness` knows how to connect to one backend under test and the timings it needs (a broker
cannot honour a 50 ms invisibility timeout). Backends join by adding an entry to HARNESSES;
the tests themselves never change.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import pytest

from adapters.base import Backend

SUBSCRIPTION_QUOTA = 20
SESSION_TIMEOUT = 0.5


@dataclass
class Harness:
    name: str
    connect: Callable[[], Awaitable[Backend]]     # a started backend; every call is a new process's view
    restart: Callable[[], Awaitable[None]] | None = None   # restart the backend durably, None if not durable
    invisible: float = 0.2          # a short invisibility timeout this backend honours
    lite_idle: float = 0.5          # a short lite topic idle time this backend honours
    subscription_quota: int = SUBSCRIPTION_QUOTA
    # test name -> why this backend cannot keep that promise at a test's timescale (skipped)
    unsupported: dict[str, str] = field(default_factory=dict)
    _open: list = field(default_factory=list)

    async def backend(self) -> Backend:
        b = await self.connect()
        self._open.append(b)
        return b

    async def close_all(self) -> None:
        while self._open:
            await self._open.pop().close()


def engine_settings() -> dict:
    return dict(session_timeout=SESSION_TIMEOUT, tick=0.005, min_lite_idle_seconds=0.1,
                max_subscriptions_per_client=SUBSCRIPTION_QUOTA, max_attempts=16)


async def _embedded(tmp_path):
    from adapters.factory import engine_config
    from adapters.lite import EmbeddedLiteBackend

    state = {}

    async def connect():
        if "backend" not in state:
            state["backend"] = EmbeddedLiteBackend(engine_config({"data_dir": str(tmp_path / "engine"),
                                                                  **engine_settings()}))
            await state["backend"].start()
        return state["backend"]

    async def restart():
        old = state.pop("backend")
        await old.close()

    harness = Harness("lite-embedded", connect, restart)
    yield harness
    if "backend" in state:
        await state["backend"].close()


async def _remote(tmp_path):
    from adapters.lite_remote import RemoteLiteBackend
    from tests.lite_engine.engine_process import EngineProcess

    process = EngineProcess(tmp_path / "engine", fsync="batch", settings=engine_settings())
    target = process.start()

    async def connect():
        backend = RemoteLiteBackend(process.target, session_timeout=SESSION_TIMEOUT)
        await backend.start()
        return backend

    async def restart():
        process.restart()

    yield Harness("lite-remote", connect, restart)
    process.stop()


async def _rocketmq(tmp_path):
    import asyncio

    from adapters.rocketmq import RocketMQBackend
    from tests.rocketmq.cluster import restart, shared_cluster

    cluster = shared_cluster()   # one cluster for the session: started on first use

    async def connect():
        backend = RocketMQBackend(cluster.endpoint, admin=cluster.namesrv_addr, queues=4,
                                  lite_subscription_quota=SUBSCRIPTION_QUOTA)
        await backend.start()
        return backend

    async def restart_broker():
        await asyncio.to_thread(restart, cluster, "broker", "proxy")   # graceful: offsets are persisted

    yield Harness("rocketmq", connect, restart_broker, invisible=1.0, lite_idle=900.0, unsupported={
        "test_idle_lite_topic_is_deleted_with_its_messages":
            "RocketMQ deletes an idle lite topic only after max(lite.topic.expiration, 15 min), "
            "checks every 2 min, and never within 15 min of broker start"})


async def _kafka(tmp_path):
    from tests.kafka.support import contract_harness   # one broker per session, started on first use

    async for harness in contract_harness(tmp_path):
        yield harness


HARNESSES = {"lite-embedded": _embedded, "lite-remote": _remote, "rocketmq": _rocketmq, "kafka": _kafka}


def pytest_generate_tests(metafunc):
    if "harness" in metafunc.fixturenames:
        wanted = os.environ.get("TOPICBRIDGE_CONTRACT_BACKENDS")
        names = wanted.split(",") if wanted else list(HARNESSES)
        metafunc.parametrize("harness", names, indirect=True)


@pytest.fixture
async def harness(request, tmp_path):
    factory = HARNESSES[request.param]
    gen = factory(tmp_path)
    h = await gen.__anext__()
    if request.node.originalname in h.unsupported:
        await gen.aclose()
        pytest.skip(f"{h.name}: {h.unsupported[request.node.originalname]}")
    try:
        yield h
    finally:
        await h.close_all()
        try:
            await gen.__anext__()
        except StopAsyncIteration:
            pass


@pytest.fixture
async def backend(harness):
    return await harness.backend()
