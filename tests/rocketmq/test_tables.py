"""Tables: a changelog lite topic per table, replayed into every process that opens it."""

import asyncio

import pytest

from adapters.errors import InvalidRequestError


async def eventually(check, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)   # sleep-ok: another process's write arrives through its log


async def test_a_process_that_opens_a_table_later_replays_what_others_wrote(open_backend):
    writer, reader = await open_backend(), await open_backend()
    table = await writer.table("tbl-replay")
    await table.put("a", b"1")
    await table.put("b", b"")
    await table.put("a", b"2")
    assert await table.delete("b") is True
    assert await table.delete("never") is False
    later = await reader.table("tbl-replay")
    assert await later.items() == [("a", b"2")]
    assert await later.get("b") is None


async def test_writes_reach_processes_that_already_hold_the_table(open_backend):
    one, two = await open_backend(), await open_backend()
    mine, theirs = await one.table("tbl-live"), await two.table("tbl-live")
    await mine.put("agent", b"card")
    assert await mine.get("agent") == b"card"        # read-your-writes, before the record returns
    await eventually(lambda: _has(theirs, "agent", b"card"))
    await theirs.put("agent", b"card v2")
    await eventually(lambda: _has(mine, "agent", b"card v2"))


async def test_concurrent_writers_of_one_key_converge(open_backend):
    one, two = await open_backend(), await open_backend()
    a, b = await one.table("tbl-race"), await two.table("tbl-race")
    await asyncio.gather(*(a.put("k", b"a%d" % i) for i in range(5)), *(b.put("k", b"b%d" % i) for i in range(5)))

    async def agree():
        return await a.get("k") == await b.get("k")

    await eventually(agree)


async def test_items_filters_by_prefix_in_key_order(backend):
    table = await backend.table("tbl-items")
    for key in ("task/2", "agent/x", "task/1", "täsk ü"):
        await table.put(key, key.encode())
    assert [k for k, _ in await table.items("task/")] == ["task/1", "task/2"]
    assert await table.get("täsk ü") == "täsk ü".encode()


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "dots.not.allowed"])
async def test_bad_table_names_are_refused(backend, name):
    with pytest.raises(InvalidRequestError):
        await backend.table(name)


async def test_tables_need_the_admin_path(open_backend):
    from adapters.errors import BackendError

    backend = await open_backend(admin=None)
    with pytest.raises(BackendError, match="admin path"):
        await backend.table("registry")


async def _has(table, key, value) -> bool:
    return await table.get(key) == value
