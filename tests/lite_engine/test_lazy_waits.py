"""A lazy durable wait (CommitLog.add_waiter(lazy=True), Engine.kv_sync_future(lazy=True)): it
starts no group commit of its own, rides the next one a waiter starts, or the deferred commit of
unwaited records; it never returns before its record is fsynced."""

import asyncio
import threading
from pathlib import Path

import pytest

from lite_engine.commitlog import CommitLog
from lite_engine.commitlog import segment_files as segment_io

from .test_commitlog import counted_fsyncs, reopen_records  # noqa: F401 (a fixture)


class Waiter:
    """The waiter protocol add_waiter takes: done(), set_result(), set_exception()."""

    def __init__(self, log: CommitLog, lsn: int) -> None:
        self.log, self.lsn, self.synced_at_release, self.error = log, lsn, None, None
        self.released = asyncio.get_running_loop().create_future()

    def done(self) -> bool:
        return self.released.done()

    def set_result(self, _) -> None:
        self.synced_at_release = self.log.synced_lsn
        self.released.set_result(None)

    def set_exception(self, exc) -> None:
        self.error = exc
        self.released.set_result(None)


@pytest.fixture
def fsyncs(counted_fsyncs):
    return counted_fsyncs


@pytest.fixture
def log(tmp_path: Path):
    log = CommitLog(tmp_path / "log", fsync="batch")
    log.open()
    return log


async def test_a_lazy_wait_starts_no_commit_and_rides_the_next_waiting_writer(log, fsyncs):
    _, count = fsyncs
    try:
        lazy = Waiter(log, log.append(3, b"index row"))
        assert log.add_waiter(lazy.lsn, lazy, lazy=True) is False
        for _ in range(3):
            await asyncio.sleep(0)  # sleep-ok: loop turns where an urgent wait's commit would start
        assert count[0] == 0 and not lazy.done()
        await log.sync(log.append(2, b"next submit"))
        await asyncio.wait_for(lazy.released, 5)
        assert count[0] == 1 and lazy.synced_at_release >= lazy.lsn
    finally:
        await log.close()


async def test_a_lazy_wait_alone_is_released_by_the_deferred_commit(log, fsyncs, tmp_path):
    log_dir = tmp_path / "log"
    done, count = fsyncs
    try:
        lazy = Waiter(log, log.append(3, b"index row"))
        log.add_waiter(lazy.lsn, lazy, lazy=True)
        await asyncio.wait_for(lazy.released, 5)       # within 2 * LAZY_SYNC_DELAY, on its own
        assert count[0] == 1 and lazy.synced_at_release >= lazy.lsn and lazy.error is None
    finally:
        await log.close()
    assert [p for _, _, p in await reopen_records(log_dir)] == [b"index row"]


async def test_a_lazy_wait_added_during_a_commit_does_not_start_the_next_one_at_once(log, fsyncs, monkeypatch):
    _, count = fsyncs
    held, release = threading.Event(), threading.Event()
    counted = segment_io.fsync_segments

    def slow(targets):
        held.set()
        release.wait(5)
        counted(targets)

    monkeypatch.setattr(segment_io, "fsync_segments", slow)
    try:
        first = asyncio.ensure_future(log.sync(log.append(2, b"submit")))
        assert await asyncio.to_thread(held.wait, 5)      # the submit's commit is in its fsync
        lazy = Waiter(log, log.append(3, b"index row"))
        log.add_waiter(lazy.lsn, lazy, lazy=True)
        release.set()
        await first
        assert count[0] == 1 and not lazy.done()          # no second commit straight after
        await asyncio.wait_for(lazy.released, 5)
        assert count[0] == 2 and lazy.synced_at_release >= lazy.lsn
    finally:
        release.set()
        await log.close()


async def test_a_lazy_wait_fails_with_the_log(log):
    lazy = Waiter(log, log.append(3, b"index row"))
    log.add_waiter(lazy.lsn, lazy, lazy=True)
    await log.close()                                     # the final flush syncs it
    assert lazy.done() and lazy.error is None and lazy.synced_at_release >= lazy.lsn
