"""TaskIndex on the real lite engine: rows of any size, ListTasks pages newest first."""

import asyncio

import pytest
from a2a.types import a2a_pb2

from adapters.errors import BackendUnavailableError
from adapters.lite_remote import RemoteLiteBackend
from gateway.tasks import channels
from gateway.tasks import fold
from gateway.tasks.index import CHUNK_TABLE, ORDER_TABLE, PageTokenError, TaskIndex, lifetime_key
from gateway.tasks.service import TaskService
from lite_engine.service import serve

MIB = 1 << 20


def _task(task_id: str, *, seconds: int = 1, context: str = "ctx", state=a2a_pb2.TASK_STATE_WORKING,
          text: str = "hello") -> a2a_pb2.Task:
    task = a2a_pb2.Task(id=task_id, context_id=context)
    task.status.state = state
    task.status.timestamp.FromSeconds(1_700_000_000 + seconds)
    task.history.append(a2a_pb2.Message(message_id=f"m-{task_id}", role=a2a_pb2.ROLE_USER,
                                        parts=[a2a_pb2.Part(text=text)]))
    return task


@pytest.fixture
async def index(backend):
    return await TaskIndex.open(backend)


async def test_a_task_larger_than_a_row_can_hold_is_written_in_chunks_and_read_back_whole(backend, index):
    task = _task("big", text="x" * (5 * MIB - 1024))     # beyond the engine's 4 MiB value limit
    await index.put("big", task.SerializeToString())
    assert a2a_pb2.Task.FromString(await index.get("big")) == task
    row, _ = await index.rows.read("big")
    assert len(row) < 100
    assert len(await (await backend.table(CHUNK_TABLE)).scan("big/")) == 5


async def test_rewriting_a_large_task_keeps_only_the_chunks_of_the_new_version(backend, index):
    await index.put("big", _task("big", text="a" * (3 * MIB)).SerializeToString())
    await index.put("big", _task("big", seconds=2, text="b" * (2 * MIB - 1024)).SerializeToString())
    assert a2a_pb2.Task.FromString(await index.get("big")).history[0].parts[0].text == "b" * (2 * MIB - 1024)
    assert len(await (await backend.table(CHUNK_TABLE)).scan("big/")) == 2
    await index.put("big", _task("big", seconds=3).SerializeToString())
    assert await (await backend.table(CHUNK_TABLE)).scan("big/") == []


async def test_a_fresh_index_reads_large_tasks_written_by_another_one(backend, index):
    await index.put("big", _task("big", text="z" * (2 * MIB)).SerializeToString())
    other = await TaskIndex.open(backend)
    assert a2a_pb2.Task.FromString(await other.get("big")).history[0].parts[0].text == "z" * (2 * MIB)
    await other.put("big", _task("big", seconds=5).SerializeToString())     # it finds the old chunks to drop
    assert await (await backend.table(CHUNK_TABLE)).scan("big/") == []


async def test_a_row_written_before_the_index_format_is_read_as_the_bare_task(backend, index):
    task = _task("legacy")
    await (await backend.table(channels.TASK_TABLE)).put("legacy", task.SerializeToString())
    assert a2a_pb2.Task.FromString(await index.get("legacy")) == task
    assert [key for key, _ in await index.items()] == ["legacy"]


async def test_delete_removes_the_task_its_order_row_and_every_chunk(backend, index):
    await index.put("big", _task("big", text="q" * (2 * MIB)).SerializeToString())
    await index.put("small", _task("small").SerializeToString())
    assert await index.delete("big")
    assert await index.get("big") is None
    assert await (await backend.table(CHUNK_TABLE)).scan("big/") == []
    assert [key.partition("/")[2] for key, _ in await (await backend.table(ORDER_TABLE)).scan()] == ["small"]


async def test_list_pages_go_newest_first_and_a_cursor_continues_without_repeats(index):
    for i in range(25):
        await index.put(f"t{i:02d}", _task(f"t{i:02d}", seconds=i).SerializeToString())
    seen, token = [], ""
    for _ in range(3):
        page = await index.page(page_size=10, page_token=token)
        seen += [t.id for t in page.tasks]
        token = page.next_page_token
    assert seen == [f"t{i:02d}" for i in reversed(range(25))]
    assert token == ""


async def test_a_task_written_again_moves_to_the_front_and_is_listed_once(index):
    for i in range(3):
        await index.put(f"t{i}", _task(f"t{i}", seconds=i).SerializeToString())
    await index.put("t0", _task("t0", seconds=10, state=a2a_pb2.TASK_STATE_COMPLETED).SerializeToString())
    page = await index.page(page_size=10)
    assert [t.id for t in page.tasks] == ["t0", "t2", "t1"]
    assert page.tasks[0].status.state == a2a_pb2.TASK_STATE_COMPLETED


async def test_list_filters_by_context_state_and_update_time(index):
    for i in range(12):
        state = a2a_pb2.TASK_STATE_COMPLETED if i % 3 == 0 else a2a_pb2.TASK_STATE_WORKING
        await index.put(f"t{i:02d}", _task(f"t{i:02d}", seconds=i, context=f"c{i % 2}", state=state).SerializeToString())
    page = await index.page(page_size=3, context_id="c0", state=a2a_pb2.TASK_STATE_COMPLETED)
    assert [t.id for t in page.tasks] == ["t06", "t00"]
    after = (1_700_000_000 + 9) * 10 ** 9
    assert [t.id for t in (await index.page(page_size=50, updated_after_ns=after)).tasks] == ["t11", "t10", "t09"]


async def test_a_filter_that_matches_rarely_returns_a_short_page_with_a_cursor(index):
    for i in range(30):
        await index.put(f"t{i:02d}", _task(f"t{i:02d}", seconds=i, context="rare" if i == 0 else "c").SerializeToString())
    page = await index.page(page_size=5, context_id="rare", budget=10)
    assert page.tasks == [] and page.next_page_token
    while page.next_page_token and not page.tasks:
        page = await index.page(page_size=5, context_id="rare", budget=10, page_token=page.next_page_token)
    assert [t.id for t in page.tasks] == ["t00"]


async def test_a_page_token_this_gateway_did_not_issue_is_refused(index):
    with pytest.raises(PageTokenError):
        await index.page(page_size=5, page_token="not-a-token!")


# ---------------------------------------------------------------- through the task service


async def test_a_2mib_request_echoed_back_by_a_native_worker_is_indexed_and_completes(backend, workers):
    """The folded task (request + echoed artifact) outweighs the engine's 4 MiB value limit."""
    async def echo(task):
        await task.complete(text=task.text)

    await workers("echo", echo)
    caller, other = TaskService(backend, poll_wait=0.2), TaskService(backend, poll_wait=0.2)
    await caller.start()
    await other.start()
    try:
        request = "e" * (2 * MIB + 100 * 1024)
        message = a2a_pb2.Message(message_id="m1", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text=request)])
        task, watch = await caller.submit("echo", message)
        async with asyncio.timeout(30):
            async for _ in watch.events():
                pass
        indexed = await other.get(task.id)      # another instance answers from the index
        assert indexed.status.state == a2a_pb2.TASK_STATE_COMPLETED
        assert indexed.artifacts[0].parts[0].text == request
        async with asyncio.timeout(10):     # the turn ended: nothing held in memory once its index write is durable
            while caller._relay.active:
                await asyncio.sleep(0.01)   # sleep-ok: the relay lets go after the caller has its answer
    finally:
        await other.close()
        await caller.close()


async def test_a_large_task_is_indexed_through_a_remote_engine(backend):
    server, port = await serve(backend.engine)
    remote = RemoteLiteBackend(f"127.0.0.1:{port}")
    await remote.start()
    try:
        index = await TaskIndex.open(remote)
        task = _task("big", text="r" * (5 * MIB))
        await index.put("big", task.SerializeToString())
        assert a2a_pb2.Task.FromString(await index.get("big")) == task
        assert [t.id for t in (await index.page(page_size=5)).tasks] == ["big"]
    finally:
        await remote.close()
        await server.stop()


async def test_on_the_embedded_engine_a_task_written_again_moves_in_one_group_commit(backend, index):
    log = backend.engine._store._log
    await index.put("t1", _task("t1", seconds=1).SerializeToString())
    before = log.batches_flushed
    await index.put("t1", _task("t1", seconds=2).SerializeToString())   # a new order row, the old one deleted
    assert log.batches_flushed == before + 1
    assert [t.id for t in (await index.page(page_size=10)).tasks] == ["t1"]
    assert len(await (await backend.table(ORDER_TABLE)).scan("")) == 1


async def test_a_write_refused_for_a_stale_version_leaves_the_task_listed_where_it_was(backend, index):
    from adapters.errors import ConflictError
    version = await index.put("t1", _task("t1", seconds=1).SerializeToString())
    with pytest.raises(ConflictError):
        await index.put("t1", _task("t1", seconds=2).SerializeToString(), expect=version + 5)
    order_rows = [key for key, _ in await (await backend.table(ORDER_TABLE)).scan("")]
    assert order_rows[-1] == "98299999998999999999/t1"     # the row the refused write would have retired
    assert [t.id for t in (await index.page(page_size=10)).tasks] == ["t1"]


class _FailingOnce:
    """A real table whose next put fails, once (the backend gone for a moment)."""

    def __init__(self, table) -> None:
        self._table, self.name, self.failed = table, table.name, False

    async def put(self, key: str, value: bytes, **kwargs):
        if not self.failed:
            self.failed = True
            raise BackendUnavailableError("lite", f"table {self.name} is gone for a moment")
        return await self._table.put(key, value, **kwargs)

    def __getattr__(self, name):
        return getattr(self._table, name)


async def test_a_deadline_row_whose_write_failed_is_written_by_the_next_put(backend, index):
    lifetimes = index.lifetimes
    task = _task("t-deadline")
    task.metadata[fold.OWN_METADATA] = {"capability": "echo", "deadline": 1_700_000_600.0, "principal": ""}
    index.lifetimes = _FailingOnce(lifetimes)
    with pytest.raises(BackendUnavailableError):
        await index.put(task.id, task.SerializeToString(), task=task)
    assert await lifetimes.scan() == []
    await index.put(task.id, task.SerializeToString(), task=task)
    assert [key for key, _ in await lifetimes.scan()] == [lifetime_key(1_700_000_600.0, task.id)]
