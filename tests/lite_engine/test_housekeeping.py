"""The housekeeping loop (invisibility timeouts, expiry, session timeouts, storage retries,
snapshots) survives a pass that raises: the failure is logged with its traceback, shows in the
engine's health and the engine service's health, and the loop goes on with a backoff."""

from __future__ import annotations

import asyncio
import logging
import time

from adapters.lite_remote import RemoteLiteBackend
from lite_engine import Engine, EngineConfig
from lite_engine.service import serve


class FaultyClock:
    """The real monotonic clock, which raises while `broken` is set (a fault in one pass)."""

    def __init__(self) -> None:
        self.broken = False
        self.calls_while_broken = 0

    def __call__(self) -> float:
        if self.broken:
            self.calls_while_broken += 1
            raise RuntimeError("clock source went away")
        return time.monotonic()


async def _until(predicate, within=5.0):
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.01)   # sleep-ok: the engine's own tick drives what we wait for


async def test_a_failing_housekeeping_pass_is_logged_reported_and_the_loop_goes_on(caplog):
    clock = FaultyClock()
    engine = await Engine(EngineConfig(tick=0.005, default_invisible=0.05), clock=clock).start()
    try:
        await engine.publish("tasks", b"m")
        first = await engine.receive("tasks", "g")
        with caplog.at_level(logging.ERROR, logger="lite_engine.ticker"):
            clock.broken = True
            await _until(lambda: engine.health()["housekeeping_failures"] >= 2)
        health = engine.health()
        assert health["ok"] is False
        assert "RuntimeError: clock source went away" in health["problems"][0]
        assert any(r.exc_info and "housekeeping" in r.getMessage() for r in caplog.records)

        clock.broken = False
        await _until(lambda: engine.health()["ok"])
        again = await engine.receive("tasks", "g", wait=2.0)   # the invisibility timer still runs
        assert [d.message_id for d in again] == [first[0].message_id] and again[0].attempt == 2
    finally:
        clock.broken = False
        await engine.close()


async def test_the_engine_service_reports_a_failing_housekeeping_in_its_health():
    clock = FaultyClock()
    engine = await Engine(EngineConfig(tick=0.005), clock=clock).start()
    server, port = await serve(engine)
    backend = RemoteLiteBackend(f"127.0.0.1:{port}")
    await backend.start()
    try:
        clock.broken = True
        await _until(lambda: engine.health()["housekeeping_failures"] >= 1)
        health = await backend.health()
        assert health.ok is False and "clock source went away" in health.detail["problems"][0]
        clock.broken = False
        await _until(lambda: engine.health()["ok"])
        assert (await backend.health()).ok
    finally:
        clock.broken = False
        await backend.close()
        await server.stop(1)
        await engine.close()
