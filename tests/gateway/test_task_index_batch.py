"""The task index writes a task's rows as one batch where the backend lets table writes return
before they are durable (the embedded engine's `defer_durability`): submit's index rows and its
owner row one after the other with one durable wait for them all, and the relay's rows inside
its own deferred block. On a real durable engine whose fsync a wrapper holds or fails."""

from __future__ import annotations

import asyncio
import errno
import shutil

import pytest
from a2a.types import a2a_pb2

from adapters.errors import ConflictError, StorageError
from adapters.factory import engine_config
from adapters.lite import EmbeddedLiteBackend
from gateway.tasks import fold
from gateway.tasks.index import LIFETIME_TABLE, ORDER_TABLE, SCOPE_TABLE, TaskIndex, lifetime_key, scope_key
from gateway.tasks.ownership import OWNER_TABLE
from gateway.tasks.service import TaskService
from lite_engine.commitlog import segment_files
from lite_engine.commitlog.record import RecordScan
from lite_engine.errors import StorageError as EngineStorageError


DEADLINE = 1_700_003_600.0


def submitted(task_id: str, seconds: int = 1) -> a2a_pb2.Task:
    """A task as submit first writes it."""
    task = a2a_pb2.Task(id=task_id, context_id="ctx")
    task.status.state = a2a_pb2.TASK_STATE_SUBMITTED
    task.status.timestamp.FromSeconds(1_700_000_000 + seconds)
    task.history.append(a2a_pb2.Message(message_id=f"m-{task_id}", role=a2a_pb2.ROLE_USER,
                                        parts=[a2a_pb2.Part(text="hi")]))
    task.metadata[fold.OWN_METADATA] = {"capability": "echo", "deadline": DEADLINE, "principal": "alice"}
    return task


def completed(task: a2a_pb2.Task, seconds: int) -> a2a_pb2.Task:
    done = a2a_pb2.Task()
    done.CopyFrom(task)
    done.status.state = a2a_pb2.TASK_STATE_COMPLETED
    done.status.timestamp.FromSeconds(1_700_000_000 + seconds)
    return done


async def rows(backend, table: str) -> list[str]:
    return [key for key, _ in await (await backend.table(table)).scan("")]


async def test_a_submitted_tasks_put_returns_only_once_every_row_it_wrote_is_durable(backend, held_fsync):
    index = await TaskIndex.open(backend)
    task = submitted("t1")
    held_fsync.armed = True
    put = asyncio.ensure_future(index.put("t1", task.SerializeToString(), task=task))
    assert await asyncio.to_thread(held_fsync.entered.wait, 10)
    assert not put.done()       # its rows are in the log, their commit is held
    scope = scope_key("echo", "alice")
    assert await rows(backend, LIFETIME_TABLE) == [lifetime_key(DEADLINE, "t1")]
    assert [key.partition("/")[2] for key in await rows(backend, ORDER_TABLE)] == ["t1"]
    assert [key.partition("/")[0] for key in await rows(backend, SCOPE_TABLE)] == [scope]
    held_fsync.release.set()
    async with asyncio.timeout(10):
        assert await put > 0
    assert a2a_pb2.Task.FromString(await index.get("t1")) == task


async def test_a_put_in_the_callers_deferred_block_moves_the_order_rows_without_waiting_for_a_commit(
        backend, held_fsync):
    index = await TaskIndex.open(backend)
    task = submitted("t1")
    await index.put("t1", task.SerializeToString(), task=task)
    before = await rows(backend, ORDER_TABLE), await rows(backend, SCOPE_TABLE)
    done = completed(task, 5)
    held_fsync.armed = True
    with backend.defer_durability() as writes:
        async with asyncio.timeout(10):     # returns although every commit is held
            await index.put("t1", done.SerializeToString(), task=done, deferred=True)
    after = await rows(backend, ORDER_TABLE), await rows(backend, SCOPE_TABLE)
    assert len(after[0]) == len(after[1]) == 1 and set(after[0]).isdisjoint(before[0])
    assert set(after[1]).isdisjoint(before[1])
    page = await index.page(page_size=10, scope=scope_key("echo", "alice"))
    assert [t.status.state for t in page.tasks] == [a2a_pb2.TASK_STATE_COMPLETED]
    await held_fsync.holds_until_released(writes.durable())


async def test_a_submit_write_refused_by_a_version_conflict_writes_none_of_the_tasks_other_rows(backend):
    index = await TaskIndex.open(backend)
    task = submitted("t1")
    with pytest.raises(ConflictError):
        await index.put("t1", task.SerializeToString(), task=task, expect=7)
    assert await index.get("t1") is None
    assert await rows(backend, ORDER_TABLE) == await rows(backend, SCOPE_TABLE) == []
    assert await rows(backend, LIFETIME_TABLE) == []


async def test_a_submit_whose_commit_fails_raises_the_storage_error(tmp_path, monkeypatch):
    backend = EmbeddedLiteBackend(engine_config({"data_dir": str(tmp_path / "engine"), "fsync": "batch"}))
    await backend.start()
    index = await TaskIndex.open(backend)

    def full(targets):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segment_files, "fsync_segments", full)
    task = submitted("t1")
    with pytest.raises(StorageError):
        async with asyncio.timeout(10):
            await index.put("t1", task.SerializeToString(), task=task)
    with pytest.raises(EngineStorageError):     # a failed log reports it on close as well
        await backend.close()


def hello() -> a2a_pb2.Message:
    return a2a_pb2.Message(message_id="m1", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text="hello")])


async def test_submit_returns_once_its_index_rows_and_its_owner_row_are_durable_together(backend, held_fsync):
    service = TaskService(backend, instance_id="gw-a", poll_wait=0.2)
    await service.start()
    try:
        owners = await backend.table(OWNER_TABLE)
        held_fsync.armed = True
        submit = asyncio.ensure_future(service.submit("echo", hello()))
        assert await asyncio.to_thread(held_fsync.entered.wait, 10)
        assert not submit.done()
        claimed = [key for key, _ in await owners.scan("gw-a/")]
        assert len(claimed) == 1
        task_id = claimed[0].partition("/")[2]
        assert await service._table.get(task_id) is not None      # written, its commit held
        held_fsync.armed = False
        held_fsync.release.set()
        async with asyncio.timeout(10):
            task, _ = await submit
        assert task.id == task_id
    finally:
        held_fsync.release.set()
        await service.close()


async def test_a_submit_whose_index_write_fails_is_accepted_and_still_records_its_owner(backend):
    service = TaskService(backend, instance_id="gw-a", poll_wait=0.2)
    await service.start()
    rows = service._table.rows
    real_put = rows.put

    async def failing_put(key, value, **kw):      # the task row's write fails, as on a full disk
        raise StorageError("No space left on device")

    rows.put = failing_put
    try:
        task, _ = await service.submit("echo", hello())
        assert await service._table.get(task.id) is None
        assert [key for key, _ in await (await backend.table(OWNER_TABLE)).scan("gw-a/")] == [f"gw-a/{task.id}"]
    finally:
        rows.put = real_put
        await service.close()


async def test_a_log_cut_anywhere_in_a_new_tasks_rows_never_keeps_its_task_row_without_its_deadline_row(tmp_path):
    """`topicbridge engine --repair` cuts a corrupted log at a record boundary. Wherever it cuts
    the rows of a new task, the task row is kept only with the lifetime row the sweep ends it
    by: otherwise it would read SUBMITTED for good, followed by nobody."""
    data = tmp_path / "engine"
    config = engine_config({"data_dir": str(data), "tick": 0.005, "session_timeout": 2.0})
    first = EmbeddedLiteBackend(config)
    await first.start()
    index = await TaskIndex.open(first)
    before = sum(log.stat().st_size for log in data.glob("*.log"))     # the log starts with the first write
    task = submitted("t1")
    with first.defer_durability() as writes:
        await index.put("t1", task.SerializeToString(), task=task, deferred=True)
        await writes.durable()
    await first.close()
    [log] = sorted(data.glob("*.log"))
    image = log.read_bytes()
    scan = RecordScan(image, 0)
    ends = [scan.offset for _ in scan]          # where each record ends, in log order
    cuts = [end for end in ends if end > before]
    assert len(cuts) >= 3                       # the task row, its lifetime row, its order row...
    kept = []
    for cut in [before, *cuts]:
        copy = tmp_path / f"cut-{cut}"
        shutil.copytree(data, copy)
        (copy / log.name).write_bytes(image[:cut])
        again = EmbeddedLiteBackend(engine_config({"data_dir": str(copy), "tick": 0.005, "session_timeout": 2.0}))
        await again.start()
        try:
            has_task = await (await again.table("tasks")).get("t1") is not None
            has_deadline = await rows(again, LIFETIME_TABLE) == [lifetime_key(DEADLINE, "t1")]
        finally:
            await again.close()
        assert has_deadline or not has_task, f"a cut at {cut} keeps the task row without its deadline row"
        kept.append(has_task)
    assert kept[0] is False and kept[-1] is True
