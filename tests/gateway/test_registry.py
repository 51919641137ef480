"""The capability registry: records in the backend's durable table, names, worker health."""

import asyncio
import json
import time

import pytest
from hypothesis import given, strategies as st

from adapters.errors import ConflictError
from adapters.factory import engine_config
from adapters.lite import EmbeddedLiteBackend
from gateway.tasks import channels
from gateway.registry.capabilities import TABLE, Capability, Registry, derive_name
from gateway.workers.worker import Worker

CARD = {"name": "Echo", "description": "Says it back", "skills": [{"id": "echo", "name": "echo"}]}


@pytest.fixture
async def registry(backend):
    r = Registry(backend)
    await r.start()
    return r


async def wait_for_status(registry, name, status):
    async with asyncio.timeout(5):
        while (capability := await registry.get(name)).status != status:
            await asyncio.sleep(0.02)  # sleep-ok: bounded re-check while a TTL or heartbeat runs out
    return capability


async def idle(task):
    await asyncio.Event().wait()


# ---------------------------------------------------------------- records

async def test_records_round_trip_and_list_by_name(registry):
    await registry.put(Capability("b-agent", CARD, source="a2a", card_url="http://b/card.json"))
    await registry.put(Capability("a-agent", CARD))
    assert sorted(c.name for c in await registry.list()) == ["a-agent", "b-agent"]
    b = await registry.get("b-agent")
    assert (b.source, b.card_url, b.status, b.topic) == ("a2a", "http://b/card.json", "available", "tb-cap-b-agent")
    assert b.to_json()["topic"] == "tb-cap-b-agent"
    assert await registry.delete("b-agent") and not await registry.delete("b-agent")
    assert await registry.get("b-agent") is None


async def test_names_that_cannot_be_capabilities_are_simply_unknown(registry):
    assert await registry.get("Not A Name") is None
    assert await registry.get("") is None
    assert not await registry.delete("../etc")


async def test_a_record_written_by_a_newer_version_still_reads(backend, registry):
    table = await backend.table(TABLE)
    doc = Capability("future", CARD).to_json() | {"some_new_field": 1}
    await table.put("future", json.dumps(doc).encode())
    assert (await registry.get("future")).name == "future"


async def test_registering_a_taken_name_is_a_conflict(registry):
    await registry.register(Capability("taken", CARD, source="a2a", card_url="http://one/card.json"))
    with pytest.raises(ConflictError, match="already registered from http://one/card.json"):
        await registry.register(Capability("taken", CARD, source="a2a", card_url="http://two/card.json"))
    assert (await registry.get("taken")).card_url == "http://one/card.json"


async def test_the_registry_survives_a_restart(tmp_path):
    config = engine_config({"data_dir": str(tmp_path / "engine"), "tick": 0.005})
    for round in range(2):
        backend = EmbeddedLiteBackend(config)
        await backend.start()
        registry = Registry(backend)
        await registry.start()
        if round == 0:
            await registry.register(Capability("durable", CARD, source="a2a", card_url="http://d/card.json"))
        else:
            assert (await registry.get("durable")).card_url == "http://d/card.json"
        await backend.close()


async def test_health_set_by_a_bridge_never_brings_back_a_removed_record(registry):
    await registry.put(Capability("gone", CARD, source="a2a"))
    assert await registry.set_health("gone", "error", "unreachable")
    assert not await registry.set_health("gone", "error", "unreachable")       # no change, no write
    assert (await registry.get("gone")).error == "unreachable"
    await registry.delete("gone")
    assert not await registry.set_health("gone", "available")
    assert await registry.get("gone") is None


# ---------------------------------------------------------------- names

@pytest.mark.parametrize("card_name, name", [
    ("PDF Summariser", "pdf-summariser"),
    ("  Ünïcödé   Agent!! ", "unicode-agent"),
    ("weather_forecaster v2.1", "weather-forecaster-v2-1"),
    ("---", "agent-" + __import__("hashlib").sha256(b"---").hexdigest()[:12]),
])
def test_a_name_is_derived_from_the_cards_name(card_name, name):
    assert derive_name(card_name) == name


def test_a_name_without_latin_letters_gets_a_stable_hash():
    assert derive_name("文档摘要代理") == derive_name("文档摘要代理") != derive_name("翻译代理")
    assert derive_name("文档摘要代理").startswith("agent-")


@given(st.text(max_size=200))
def test_every_derived_name_is_a_valid_capability_name(card_name):
    assert channels.is_capability_name(derive_name(card_name))


# ---------------------------------------------------------------- native workers

async def test_an_announced_capability_is_available_until_its_workers_go_silent(registry):
    await registry.announce("echo", CARD, "w-1", ttl=0.3)
    capability = await registry.get("echo")
    assert (capability.status, capability.workers, capability.source) == ("available", 1, "native")
    # w-1 never heartbeats again, as if it had crashed
    capability = await wait_for_status(registry, "echo", "unavailable")
    assert capability.workers == 0 and "no live workers" in capability.error
    assert [c.status for c in await registry.list()] == ["unavailable"]


async def test_one_live_worker_keeps_a_capability_available(registry):
    await registry.announce("echo", CARD, "crashed", ttl=0.2)
    await registry.announce("echo", CARD, "alive", ttl=60)
    async with asyncio.timeout(5):
        while (await registry.get("echo")).workers != 1:
            await asyncio.sleep(0.02)  # sleep-ok: bounded re-check while a TTL or heartbeat runs out
    assert (await registry.get("echo")).status == "available"


async def test_a_native_worker_announces_heartbeats_and_departs(backend, registry):
    worker = Worker(backend, "echo", idle, card=CARD, input_schema={"type": "object"}, heartbeat=0.05)
    await worker.start()
    try:
        first = await registry.get("echo")
        assert (first.status, first.workers, first.heartbeat, first.input_schema) == \
            ("available", 1, pytest.approx(0.15), {"type": "object"})
        async with asyncio.timeout(5):      # heartbeats move last_seen on and keep it available
            while (await registry.get("echo")).last_seen <= first.last_seen + 0.2:
                await asyncio.sleep(0.02)  # sleep-ok: bounded re-check while a TTL or heartbeat runs out
        assert (await registry.get("echo")).status == "available"
    finally:
        await worker.close()
    after = await registry.get("echo")
    assert (after.status, after.workers) == ("unavailable", 0)


async def test_a_worker_without_a_card_does_not_touch_the_registry(backend, registry):
    worker = Worker(backend, "quiet", idle)
    await worker.start()
    await worker.close()
    assert await registry.list() == []


async def test_removing_a_capability_removes_its_worker_rows(backend, registry):
    await registry.announce("echo", CARD, "w-1", ttl=60)
    await registry.delete("echo")
    workers = await backend.table("capability-workers")
    assert await workers.items() == []


async def test_long_silent_worker_rows_are_pruned(backend, registry):
    await registry.announce("echo", CARD, "ancient", ttl=0.01)
    workers = await backend.table("capability-workers")
    row = json.loads(await workers.get("echo/ancient"))
    await workers.put("echo/ancient", json.dumps(row | {"last_seen": time.time() - 10}).encode())
    assert (await registry.get("echo")).status == "unavailable"
    assert await workers.items() == []
