"""A background loop that hangs while it is being stopped (its `finally` closes a consumer on an
engine that stopped answering: SIGSTOP) does not hold the gateway's shutdown: the supervisor
leaves it behind after `stop_seconds`, naming it, and the other loops end as usual."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from adapters.base import TopicSpec
from adapters.lite_remote import RemoteLiteBackend
from gateway.supervisor import Supervisor
from tests.lite_engine.engine_process import EngineProcess


@pytest.fixture
def engine(tmp_path):
    process = EngineProcess(tmp_path / "engine", fsync="never")
    yield process
    with_pid = process.process
    if with_pid is not None and with_pid.poll() is None:
        os.kill(with_pid.pid, signal.SIGCONT)
    process.kill()


async def test_a_loop_hanging_in_its_cleanup_is_left_behind_and_the_supervisor_closes(engine, caplog):
    backend = RemoteLiteBackend(engine.start())
    await backend.start()
    await backend.create_topic(TopicSpec("stuck-replies", lite=True))
    consumer = await backend.lite_consumer("stuck-replies", "stuck", "stuck")
    polling, quiet_ended = asyncio.Event(), asyncio.Event()

    async def poller() -> None:
        try:
            while True:
                polling.set()
                await consumer.poll(wait=0.2)
        finally:
            await consumer.close()          # on a stopped engine: waits for the RPC's own timeout

    async def quiet() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            quiet_ended.set()

    supervisor = Supervisor(stop_seconds=1.0)
    supervisor.spawn("stuck-poller", poller)
    supervisor.spawn("quiet", quiet)
    try:
        async with asyncio.timeout(15):
            await polling.wait()
        os.kill(engine.process.pid, signal.SIGSTOP)
        with caplog.at_level(logging.WARNING, logger="topicbridge.supervisor"):
            async with asyncio.timeout(6):      # the CloseClient RPC alone waits 10 s (rpc_timeout)
                await supervisor.close()
        assert quiet_ended.is_set()
        assert "'stuck-poller' did not end within 1 s" in caplog.text
    finally:
        os.kill(engine.process.pid, signal.SIGCONT)
        await backend.close()
