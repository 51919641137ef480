"""Durable key-value tables of the lite engine: versions, compare-and-set, paged scans; in the
engine, through the embedded adapter, and over gRPC to a real `topicbridge engine` process."""

from __future__ import annotations

import asyncio

import pytest

from adapters import errors
from adapters.lite import EmbeddedLiteBackend
from adapters.lite_remote import RemoteLiteBackend
from lite_engine import ConflictError, Engine, EngineConfig, InvalidArgumentError
from tests.lite_engine.engine_process import EngineProcess


def config(tmp_path, **kw):
    return EngineConfig(data_dir=tmp_path / "data", tick=0.002, **kw)


async def test_every_write_of_a_key_returns_a_greater_version(engine):
    v1 = await engine.kv_put("t", "a", b"1")
    v2 = await engine.kv_put("t", "a", b"2")
    assert 0 < v1 < v2
    assert engine.kv_read("t", "a") == (b"2", v2)
    assert engine.kv_read("t", "missing") is None


async def test_put_with_expect_zero_creates_only_an_absent_row(engine):
    v = await engine.kv_put("t", "a", b"1", expect=0)
    with pytest.raises(ConflictError) as caught:
        await engine.kv_put("t", "a", b"2", expect=0)
    assert (caught.value.key, caught.value.expected, caught.value.actual) == ("a", 0, v)
    assert engine.kv_get("t", "a") == b"1"


async def test_put_with_a_stale_version_fails_and_leaves_the_row(engine):
    v1 = await engine.kv_put("t", "a", b"1")
    v2 = await engine.kv_put("t", "a", b"2", expect=v1)
    with pytest.raises(ConflictError) as caught:
        await engine.kv_put("t", "a", b"3", expect=v1)
    assert (caught.value.expected, caught.value.actual) == (v1, v2)
    assert engine.kv_read("t", "a") == (b"2", v2)


async def test_delete_with_expect_removes_only_the_expected_version(engine):
    v = await engine.kv_put("t", "a", b"1")
    with pytest.raises(ConflictError):
        await engine.kv_delete("t", "a", expect=v + 1)
    with pytest.raises(ConflictError) as caught:
        await engine.kv_delete("t", "missing", expect=3)
    assert caught.value.actual == 0
    assert await engine.kv_delete("t", "missing", expect=0) is False
    assert await engine.kv_delete("t", "a", expect=v) is True
    assert engine.kv_read("t", "a") is None


async def test_a_recreated_row_never_matches_the_version_of_the_deleted_one(engine):
    old = await engine.kv_put("t", "a", b"1")
    await engine.kv_delete("t", "a")
    new = await engine.kv_put("t", "a", b"2", expect=0)
    assert new > old
    with pytest.raises(ConflictError):
        await engine.kv_put("t", "a", b"3", expect=old)


async def test_scan_pages_through_a_prefix_in_key_order(engine):
    for key in ["task/3", "task/1", "other/1", "task/2", "tasks", "task/4"]:
        await engine.kv_put("t", key, key.encode())
    first = engine.kv_scan("t", "task/", limit=2)
    assert [k for k, _ in first] == ["task/1", "task/2"]
    second = engine.kv_scan("t", "task/", after=first[-1][0], limit=2)
    assert second == [("task/3", b"task/3"), ("task/4", b"task/4")]
    assert engine.kv_scan("t", "task/", after="task/4", limit=2) == []
    assert [k for k, _ in engine.kv_scan("t", after="task/2", limit=10)] == ["task/3", "task/4", "tasks"]
    assert engine.kv_scan("t", "task/", after="a", limit=1) == [("task/1", b"task/1")]
    assert engine.kv_scan("nothing", limit=5) == []


@pytest.mark.parametrize("bad", [0, 1001, -1, True, "10"])
async def test_scan_limit_outside_1_to_1000_is_refused(engine, bad):
    with pytest.raises(InvalidArgumentError, match="limit"):
        engine.kv_scan("t", limit=bad)


@pytest.mark.parametrize("bad", [-1, True, "1", 1.5])
async def test_expect_that_is_not_a_version_is_refused(engine, bad):
    with pytest.raises(InvalidArgumentError, match="expect"):
        await engine.kv_put("t", "a", b"1", expect=bad)


async def test_versions_survive_a_restart_from_the_log_and_from_a_snapshot(tmp_path):
    engine = await Engine(config(tmp_path)).start()
    v_a = await engine.kv_put("t", "a", b"1")
    gone = await engine.kv_put("t", "zz", b"x")
    await engine.kv_delete("t", "zz")      # the highest version belongs to a deleted row
    await engine.close()
    engine = await Engine(config(tmp_path)).start()
    assert engine.kv_read("t", "a") == (b"1", v_a)
    assert await engine.kv_put("t", "zz", b"y") > gone + 1
    await engine.snapshot()
    last = await engine.kv_put("t", "b", b"2")
    await engine.kv_delete("t", "b")
    await engine.snapshot()
    await engine.close()
    engine = await Engine(config(tmp_path)).start()
    assert engine.kv_read("t", "a") == (b"1", v_a)
    assert await engine.kv_put("t", "a", b"3", expect=v_a) > last + 1
    await engine.close()


async def test_embedded_table_raises_the_ports_conflict_error_with_the_versions(tmp_path):
    backend = EmbeddedLiteBackend(config(tmp_path))
    await backend.start()
    try:
        table = await backend.table("registry")
        v = await table.put("k", b"1", expect=0)
        with pytest.raises(errors.ConflictError) as caught:
            await table.put("k", b"2", expect=0)
        assert (caught.value.key, caught.value.expected, caught.value.actual) == ("k", 0, v)
        assert await table.read("k") == (b"1", v)
        assert await table.scan("k", limit=1) == [("k", b"1")]
        with pytest.raises(errors.InvalidRequestError):
            await table.scan(limit=0)
    finally:
        await backend.close()


@pytest.fixture(scope="module")
def engine_process(tmp_path_factory):
    proc = EngineProcess(tmp_path_factory.mktemp("tables") / "engine", fsync="always")
    proc.start()
    yield proc
    proc.stop()


async def _remote(target: str) -> RemoteLiteBackend:
    backend = RemoteLiteBackend(target)
    await backend.start()
    return backend


async def test_remote_table_keeps_versions_and_maps_a_conflict_to_the_port_error(engine_process):
    backend = await _remote(engine_process.target)
    try:
        table = await backend.table("remote")
        v1 = await table.put("k", b"1", expect=0)
        v2 = await table.put("k", b"2", expect=v1)
        assert await table.read("k") == (b"2", v2) and await table.read("missing") is None
        with pytest.raises(errors.ConflictError) as caught:
            await table.delete("k", expect=v1)
        assert (caught.value.table, caught.value.key, caught.value.expected, caught.value.actual) == \
            ("remote", "k", v1, v2)
        for key in ["p/1", "p/2", "p/3"]:
            await table.put(key, key.encode())
        page = await table.scan("p/", limit=2)
        assert [k for k, _ in page] == ["p/1", "p/2"]
        assert await table.scan("p/", after=page[-1][0], limit=2) == [("p/3", b"p/3")]
        for bad in (0, 1001, -5):
            with pytest.raises(errors.InvalidRequestError):
                await table.scan(limit=bad)
        with pytest.raises(errors.InvalidRequestError):
            await table.put("k", b"x", expect=-1)
        assert await table.delete("k", expect=v2) is True
    finally:
        await backend.close()


async def test_remote_versions_survive_an_engine_restart(engine_process):
    backend = await _remote(engine_process.target)
    table = await backend.table("restart")
    v = await table.put("k", b"1")
    await backend.close()
    await asyncio.to_thread(engine_process.restart)
    backend = await _remote(engine_process.target)
    try:
        table = await backend.table("restart")
        assert await table.read("k") == (b"1", v)
        assert await table.put("k", b"2", expect=v) > v
    finally:
        await backend.close()


async def test_two_clients_racing_a_compare_and_set_each_win_exactly_once_per_version(engine_process):
    """Two connections increment one counter by CAS; a lost update would leave it short."""
    one, two = await _remote(engine_process.target), await _remote(engine_process.target)
    try:
        await (await one.table("race")).put("n", b"0")
        wins = {"one": 0, "two": 0}

        async def increment(backend, name, times):
            table = await backend.table("race")
            while times:
                value, version = await table.read("n")
                try:
                    await table.put("n", b"%d" % (int(value) + 1), expect=version)
                except errors.ConflictError:
                    continue
                wins[name] += 1
                times -= 1

        async with asyncio.timeout(30):
            await asyncio.gather(increment(one, "one", 40), increment(two, "two", 40))
        assert (await (await one.table("race")).get("n")) == b"80"
        assert wins == {"one": 40, "two": 40}
    finally:
        await one.close()
        await two.close()
