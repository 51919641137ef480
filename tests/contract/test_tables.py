"""The Table port on every backend: versions, compare-and-set across processes, ordered scans."""

import asyncio

import pytest

from adapters.errors import ConflictError, InvalidRequestError

from .helpers import unique

RACE_ROUNDS = 5


async def new_table(backend):
    return await backend.table(unique("tbl"))


async def test_put_returns_a_version_that_grows_with_every_write_of_the_key(backend):
    table = await new_table(backend)
    first = await table.put("k", b"1")
    await table.put("other", b"x")
    second = await table.put("k", b"2")
    assert 0 < first < second
    assert await table.read("k") == (b"2", second)


async def test_read_of_a_missing_key_is_none(backend):
    table = await new_table(backend)
    assert await table.read("never") is None


async def test_expect_zero_creates_a_missing_row_and_conflicts_on_an_existing_one(backend):
    table = await new_table(backend)
    version = await table.put("k", b"first", expect=0)
    with pytest.raises(ConflictError) as caught:
        await table.put("k", b"second", expect=0)
    assert (caught.value.key, caught.value.expected, caught.value.actual) == ("k", 0, version)
    assert await table.read("k") == (b"first", version)


async def test_expect_version_succeeds_once_and_the_second_writer_with_it_conflicts(backend):
    table = await new_table(backend)
    seen = await table.put("k", b"v1")
    newer = await table.put("k", b"v2", expect=seen)
    with pytest.raises(ConflictError) as caught:
        await table.put("k", b"v2 again", expect=seen)
    assert (caught.value.expected, caught.value.actual) == (seen, newer)
    assert await table.read("k") == (b"v2", newer)


async def test_expecting_a_version_of_a_missing_row_conflicts(backend):
    table = await new_table(backend)
    with pytest.raises(ConflictError):
        await table.put("k", b"v", expect=7)
    assert await table.read("k") is None


async def test_two_processes_racing_a_compare_and_set_have_exactly_one_winner(harness):
    name = unique("tbl")
    one, two = await harness.backend(), await harness.backend()
    mine = await one.table(name)
    version = await mine.put("k", b"start")
    theirs = await two.table(name)          # opened after the put: its replay holds the row
    for round_ in range(RACE_ROUNDS):
        async with asyncio.timeout(30):
            results = await asyncio.gather(mine.put("k", b"one %d" % round_, expect=version),
                                           theirs.put("k", b"two %d" % round_, expect=version),
                                           return_exceptions=True)
        winners = [r for r in results if isinstance(r, int)]
        assert len(winners) == 1, results
        assert sum(isinstance(r, ConflictError) for r in results) == 1, results
        version = winners[0]
        value = b"one %d" % round_ if isinstance(results[0], int) else b"two %d" % round_
        loser = theirs if isinstance(results[0], int) else mine
        assert await loser.read("k") == (value, version)   # it lost to that very record


async def test_a_process_opening_the_table_later_sees_the_same_rows_and_versions(harness):
    name = unique("tbl")
    one, two = await harness.backend(), await harness.backend()
    a, b = await one.table(name), await two.table(name)
    await a.put("kept", b"x")
    await a.put("gone", b"y")
    await a.delete("gone")
    base = await a.put("k", b"0")
    async with asyncio.timeout(30):
        await asyncio.gather(a.put("k", b"a", expect=base), b.put("k", b"b", expect=base),
                             return_exceptions=True)
    expected = {key: await a.read(key) for key in ("kept", "gone", "k")}
    three = await harness.backend()
    later = await three.table(name)
    assert {key: await later.read(key) for key in expected} == expected
    assert expected["gone"] is None


async def test_delete_with_expect_removes_only_the_expected_version(backend):
    table = await new_table(backend)
    old = await table.put("k", b"old")
    new = await table.put("k", b"new")
    with pytest.raises(ConflictError):
        await table.delete("k", expect=old)
    with pytest.raises(ConflictError):
        await table.delete("k", expect=0)
    assert await table.delete("k", expect=new) is True
    assert await table.read("k") is None
    with pytest.raises(ConflictError):
        await table.delete("k", expect=new)
    assert await table.delete("k", expect=0) is False
    assert await table.delete("k") is False


async def test_a_deleted_key_written_again_gets_a_greater_version(backend):
    table = await new_table(backend)
    before = await table.put("k", b"1")
    await table.delete("k")
    again = await table.put("k", b"2", expect=0)
    assert again > before
    with pytest.raises(ConflictError):
        await table.put("k", b"3", expect=before)


async def test_rows_and_versions_survive_a_restart(harness):
    if harness.restart is None:
        pytest.skip(f"{harness.name} is not durable")
    name = unique("tbl")
    table = await (await harness.backend()).table(name)
    version = await table.put("k", b"kept")
    await table.put("gone", b"x")
    await table.delete("gone")

    await harness.restart()

    table = await (await harness.backend()).table(name)
    assert await table.read("k") == (b"kept", version)
    assert await table.read("gone") is None
    newer = await table.put("k", b"after", expect=version)
    assert newer > version


async def test_scan_returns_keys_with_the_prefix_after_the_cursor_in_order(backend):
    table = await new_table(backend)
    for key in ("task/3", "agent/x", "task/1", "task/2", "tasks", "task/10"):
        await table.put(key, key.encode())
    assert [k for k, _ in await table.scan("task/")] == ["task/1", "task/10", "task/2", "task/3"]
    assert await table.scan("task/", after="task/10", limit=1) == [("task/2", b"task/2")]
    assert [k for k, _ in await table.scan(after="task/3")] == ["tasks"]
    assert [k for k, _ in await table.scan(limit=2)] == ["agent/x", "task/1"]
    assert await table.scan("nothing/") == []


async def test_paging_through_250_rows_by_100_returns_every_row_once_in_order(backend):
    table = await new_table(backend)
    keys = [f"row/{i:04d}" for i in range(250)]
    async with asyncio.timeout(120):
        for start in range(0, len(keys), 25):    # a broker may push back on hundreds at once
            await asyncio.gather(*(table.put(key, key.encode()) for key in keys[start:start + 25]))
    await table.put("other", b"x")
    pages, after = [], ""
    while True:
        page = await table.scan("row/", after=after, limit=100)
        pages.append(len(page))
        if not page:
            break
        after = page[-1][0]
    assert pages == [100, 100, 50, 0]
    seen = []
    after = ""
    while page := await table.scan("row/", after=after, limit=100):
        seen += page
        after = page[-1][0]
    assert seen == [(key, key.encode()) for key in keys]


async def test_a_scan_limit_outside_1_to_1000_is_refused(backend):
    table = await new_table(backend)
    for limit in (0, 1001, -1, True, "10", 2.5):
        with pytest.raises(InvalidRequestError):
            await table.scan(limit=limit)


async def test_a_bad_expected_version_is_refused(backend):
    table = await new_table(backend)
    for expect in (-1, True, "3", 1.0):
        with pytest.raises(InvalidRequestError):
            await table.put("k", b"v", expect=expect)
        with pytest.raises(InvalidRequestError):
            await table.delete("k", expect=expect)
