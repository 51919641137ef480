"""The relay hands a turn's end to the waiting caller once its index write is readable, and acks
the turn's reply events only once that write is durable (adapters.base.deferred_durability): a
durable wait fewer per blocking call, and nothing lost when the process dies in between."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import subprocess
import sys
from pathlib import Path

import pytest
from a2a.types import a2a_pb2

import lite_engine

from adapters.base import deferred_durability
from adapters.errors import StorageError
from adapters.factory import engine_config
from adapters.lite import EmbeddedLiteBackend
from gateway.tasks.index import TaskIndex
from gateway.tasks.ownership import OWNER_TABLE
from gateway.tasks.service import TaskService
from lite_engine.commitlog import segment_files

from .deferred_index_child import INSTANCE

ROOT = Path(__file__).resolve().parents[2]


def durable_backend(path: Path) -> EmbeddedLiteBackend:
    return EmbeddedLiteBackend(engine_config({"data_dir": str(path), "fsync": "batch", "tick": 0.005,
                                              "session_timeout": 2.0}))


def hello() -> a2a_pb2.Message:
    return a2a_pb2.Message(message_id="m1", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text="hello")])


async def test_a_table_write_in_a_deferred_block_is_readable_before_it_is_durable(backend, held_fsync):
    table = await backend.table("rows")
    held_fsync.armed = True
    with deferred_durability(backend) as writes:
        async with asyncio.timeout(10):
            await table.put("k", b"v1")
            await table.put("gone", b"x")
            assert await table.delete("gone")
    assert await table.get("k") == b"v1" and await table.get("gone") is None
    await held_fsync.holds_until_released(writes.durable())


async def test_a_deferred_block_whose_commit_fails_raises_the_storage_error(tmp_path, monkeypatch):
    backend = durable_backend(tmp_path / "engine")
    await backend.start()
    table = await backend.table("rows")

    def full(targets):
        raise OSError(errno.ENOSPC, "No space left on device")

    with deferred_durability(backend) as writes:
        await table.put("k", b"v")
    monkeypatch.setattr(segment_files, "fsync_segments", full)
    with pytest.raises(StorageError):
        async with asyncio.timeout(10):
            await writes.durable()
    with pytest.raises(lite_engine.EngineError):      # the log refuses for good after a failed fsync
        await backend.close()


async def test_a_backend_without_deferred_writes_gives_a_block_with_nothing_left_to_wait_for():
    with deferred_durability(object()) as writes:
        pass
    async with asyncio.timeout(1):
        await writes.durable()


async def test_the_caller_has_the_turns_end_before_its_index_write_is_durable_and_the_relay_lets_go_after(
        backend, workers, held_fsync):
    async def echo(task):
        await task.complete(text=task.text)

    await workers("echo", echo)
    service = TaskService(backend, poll_wait=0.2)
    await service.start()
    try:
        index = service._relay.table
        real_put = index.put

        async def held_put(key, value, **kw):     # the turn's end: its index commit is held
            held_fsync.armed = held_fsync.armed or kw.get("task") is not None and kw["task"].status.state == a2a_pb2.TASK_STATE_COMPLETED
            return await real_put(key, value, **kw)

        index.put = held_put
        task, watch = await service.submit("echo", hello())
        async with asyncio.timeout(10):
            events = [event async for event in watch.events()]
        assert events[-1].status_update.status.state == a2a_pb2.TASK_STATE_COMPLETED
        assert await asyncio.to_thread(held_fsync.entered.wait, 10)      # the index commit, held
        assert task.id in service._relay.active        # its reply events are not acked yet
        assert (await service.get(task.id)).status.state == a2a_pb2.TASK_STATE_COMPLETED
        held_fsync.armed = False
        held_fsync.release.set()
        async with asyncio.timeout(10):
            while task.id in service._relay.active:
                await asyncio.sleep(0.01)   # sleep-ok: the relay lets go once the index write is durable
    finally:
        held_fsync.release.set()
        await service.close()


def killed_child(data: Path, mode: str) -> str:
    """Run deferred_index_child in `mode`; the id of the task whose caller had its answer."""
    run = subprocess.run([sys.executable, "-m", "tests.gateway.deferred_index_child", str(data), mode],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == -9, run.stderr[-2000:]
    task_id, state = run.stdout.split()
    assert state == "TASK_STATE_COMPLETED"      # the caller had its answer
    return task_id


@contextlib.asynccontextmanager
async def restarted(data: Path, check_before=None):
    """The killed child's engine opened again; `check_before(backend)` runs before the task
    service starts (and recovers); yields the started service."""
    backend = durable_backend(data)
    await backend.start()
    try:
        if check_before is not None:
            await check_before(backend)
        service = TaskService(backend, instance_id=INSTANCE, poll_wait=0.1)
        await service.start()
        try:
            yield service
        finally:
            await service.close()
    finally:
        await backend.close()


async def test_a_gateway_killed_before_the_turns_index_write_reaches_the_disk_indexes_it_again_on_restart(tmp_path):
    data = tmp_path / "engine"
    task_id = killed_child(data, "index")

    async def lost(backend):
        task = a2a_pb2.Task.FromString(await (await TaskIndex.open(backend)).get(task_id))
        assert task.status.state != a2a_pb2.TASK_STATE_COMPLETED    # the index write did not survive

    async with restarted(data, lost) as service:    # recovery follows the task: its unacked reply event comes back
        async with asyncio.timeout(15):
            while (task := await service.get(task_id)).status.state != a2a_pb2.TASK_STATE_COMPLETED:
                await asyncio.sleep(0.02)   # sleep-ok: GetTask until the redelivered end is indexed
        assert task.artifacts[0].parts[0].text == "hi"


async def test_a_gateway_killed_before_a_tasks_owner_release_reaches_the_disk_drops_the_row_on_restart(tmp_path):
    data = tmp_path / "engine"
    task_id = killed_child(data, "release")

    async def kept(backend):
        owners = await backend.table(OWNER_TABLE)
        assert [key for key, _ in await owners.items()] == [f"{INSTANCE}/{task_id}"]   # the release was lost

    async with restarted(data, kept) as service:    # recovery finds the row, sees the indexed end, drops it
        assert await (await service.backend.table(OWNER_TABLE)).items() == []
        assert (await service.get(task_id)).status.state == a2a_pb2.TASK_STATE_COMPLETED
