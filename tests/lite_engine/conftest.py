import asyncio

import pytest

from lite_engine import Engine, EngineConfig

FAST = dict(tick=0.002, session_timeout=0.2, default_invisible=5.0)


@pytest.fixture
async def make_engine():
    """Build started engines with fast timers (override any setting); closed after the test."""
    made = []

    async def make(**settings):
        e = Engine(EngineConfig(**{**FAST, **settings}))
        await e.start()
        made.append(e)
        return e

    yield make
    for e in made:
        await e.close()


@pytest.fixture
async def engine(make_engine):
    return await make_engine()


async def drain(engine, client, *, expect, wait=2.0, max_messages=64):
    """Poll `client` until `expect` messages arrived (bounded by `wait` seconds in total)."""
    out = []
    async with asyncio.timeout(wait):
        while len(out) < expect:
            out += await engine.poll(client, max_messages=max_messages, wait=wait)
    return out
