import asyncio
import os
import resource
import shutil
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from lite_engine.commitlog import segment_files as segment_io
from lite_engine.commitlog import (
    CommitLog,
    CommitLogError,
    CorruptLogError,
    LogClosedError,
    LogWriteError,
    RecordTooLargeError,
    Snapshot,
)

POLICIES = ["always", "batch", "interval", "never"]
HEADER = 17


def encode_record(rtype: int, lsn: int, payload: bytes) -> bytes:
    """Independent encoder of the documented format: len | crc | type | lsn | payload."""
    body = struct.pack("<BQ", rtype, lsn) + payload
    return struct.pack("<II", len(payload), zlib.crc32(body)) + body


def segment_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.log"))


def open_log(path: Path, **kwargs) -> CommitLog:
    log = CommitLog(path, **kwargs)
    log.open()
    return log


def replay_all(path: Path, start: int = 0, **kwargs) -> list[tuple[int, int, bytes]]:
    log = open_log(path, **kwargs)
    return list(log.replay(start))


async def reopen_records(path: Path, start: int = 0) -> list[tuple[int, int, bytes]]:
    log = open_log(path)
    try:
        return list(log.replay(start))
    finally:
        await log.close()


def as_killed(path: Path, tmp_path: Path) -> Path:
    """What a kill -9 would leave: the files as the OS sees them right now."""
    copy = tmp_path / f"killed-{len(list(tmp_path.iterdir()))}"
    shutil.copytree(path, copy)
    return copy


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0)  # sleep-ok: one loop turn, so the other task parks


async def fill(log: CommitLog, count: int, size: int = 100) -> list[int]:
    return [log.append(i % 7, bytes([i % 256]) * size) for i in range(count)]


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "log"


# --- round trip, LSNs, segments ---------------------------------------------------------


async def test_appended_records_replay_in_order_after_reopen(log_dir: Path) -> None:
    records = [(1, b"hello"), (0, b""), (255, b"\x00" * 1000), (7, bytes(range(256)))]
    log = open_log(log_dir)
    lsns = [log.append(rtype, payload) for rtype, payload in records]
    await log.close()

    assert lsns == [0, 1, 2, 3]
    assert await reopen_records(log_dir) == [(lsn, t, p) for lsn, (t, p) in zip(lsns, records)]


async def test_replay_starts_at_the_requested_lsn(log_dir: Path) -> None:
    log = open_log(log_dir)
    await fill(log, 10)
    await log.close()

    assert [lsn for lsn, _, _ in await reopen_records(log_dir, start=6)] == [6, 7, 8, 9]


async def test_segment_rolls_when_it_would_exceed_segment_bytes(log_dir: Path) -> None:
    record = HEADER + 100
    log = open_log(log_dir, segment_bytes=3 * record)
    await fill(log, 10)
    await log.close()

    names = [p.name for p in segment_files(log_dir)]
    assert names == [f"{base:020d}.log" for base in (0, 3, 6, 9)]
    assert [p.stat().st_size for p in segment_files(log_dir)] == [3 * record] * 3 + [record]
    assert [lsn for lsn, _, _ in await reopen_records(log_dir)] == list(range(10))


async def test_restart_continues_lsns_after_the_last_record(log_dir: Path) -> None:
    log = open_log(log_dir, segment_bytes=500)
    await fill(log, 12)
    await log.close()

    log = open_log(log_dir, segment_bytes=500)
    assert log.next_lsn == 12
    assert log.append(3, b"next") == 12
    await log.close()
    assert (await reopen_records(log_dir))[-1] == (12, 3, b"next")


async def test_empty_log_reopens_empty(log_dir: Path) -> None:
    log = open_log(log_dir)
    await log.close()

    log = open_log(log_dir)
    assert list(log.replay()) == [] and log.next_lsn == 0
    await log.close()


# --- fsync policies -----------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
async def test_synced_records_survive_a_process_kill(policy: str, log_dir: Path, tmp_path: Path) -> None:
    log = open_log(log_dir, fsync=policy, segment_bytes=2000)
    lsns = await fill(log, 50)
    await log.sync(lsns[-1])

    assert log.synced_lsn == 49
    assert [lsn for lsn, _, _ in await reopen_records(as_killed(log_dir, tmp_path))] == lsns
    await log.close()


async def test_always_writes_and_fsyncs_before_append_returns(log_dir: Path, tmp_path: Path) -> None:
    log = open_log(log_dir, fsync="always")
    lsn = log.append(1, b"durable")

    assert log.synced_lsn == lsn
    assert await reopen_records(as_killed(log_dir, tmp_path)) == [(0, 1, b"durable")]
    await log.close()


@pytest.mark.parametrize("policy", ["never", "interval"])
async def test_unsynced_appends_reach_the_os_at_the_next_loop_turn(policy: str, log_dir: Path) -> None:
    log = open_log(log_dir, fsync=policy, fsync_interval=60)
    await fill(log, 3)

    await until(lambda: log.synced_lsn == 2)
    assert segment_files(log_dir)[0].stat().st_size == 3 * (HEADER + 100)
    await log.close()


@pytest.mark.parametrize("policy", ["never", "interval"])
async def test_large_unsynced_buffer_is_written_without_waiting_for_the_loop(policy: str, log_dir: Path) -> None:
    log = open_log(log_dir, fsync=policy, fsync_interval=60)
    await fill(log, 10, size=10_000)

    assert segment_files(log_dir)[0].stat().st_size >= 64 << 10
    await log.close()


async def test_interval_fsyncs_written_data_in_the_background(log_dir: Path) -> None:
    log = open_log(log_dir, fsync="interval", fsync_interval=0.01)
    lsn = (await fill(log, 5))[-1]
    await log.sync(lsn)
    active = log._segments[-1]

    await until(lambda: active.synced == active.written > 0)
    await log.close()


async def test_batch_commits_concurrent_waiters_in_few_fsyncs(log_dir: Path) -> None:
    log = open_log(log_dir, fsync="batch")

    async def append_and_sync(i: int) -> int:
        lsn = log.append(1, i.to_bytes(4, "little"))
        await log.sync(lsn)
        return lsn

    lsns = await asyncio.gather(*(append_and_sync(i) for i in range(500)))

    assert sorted(lsns) == list(range(500))
    assert log.synced_lsn == 499
    assert log.batches_flushed <= 5
    await log.close()


async def test_batch_waiter_arriving_during_an_fsync_is_served_by_the_next_batch(log_dir: Path) -> None:
    log = open_log(log_dir, fsync="batch")
    first = asyncio.create_task(log.sync(log.append(1, b"first")))
    await until(lambda: log._io_lock.locked())  # the first batch is being written + fsynced

    second_lsn = log.append(1, b"second")
    second = asyncio.create_task(log.sync(second_lsn))
    async with asyncio.timeout(5):
        await asyncio.gather(first, second)

    assert log.batches_flushed == 2 and log.synced_lsn == second_lsn
    await log.close()


async def test_cancelled_sync_does_not_disturb_other_waiters(log_dir: Path) -> None:
    log = open_log(log_dir, fsync="batch")
    cancelled = asyncio.create_task(log.sync(log.append(1, b"a")))
    kept = asyncio.create_task(log.sync(log.append(1, b"b")))
    await asyncio.sleep(0)  # sleep-ok: one loop turn, so the other task parks
    cancelled.cancel()

    async with asyncio.timeout(5):
        await kept
    assert log.synced_lsn == 1
    await log.close()


async def test_close_flushes_buffered_records_under_every_policy(log_dir: Path) -> None:
    for i, policy in enumerate(POLICIES):
        log = open_log(log_dir, fsync=policy)
        log.append(1, policy.encode())
        await log.close()
        assert (await reopen_records(log_dir))[-1] == (i, 1, policy.encode())


@pytest.mark.parametrize("policy", POLICIES)
def test_appends_made_before_the_loop_runs_are_synced_once_it_does(policy: str, log_dir: Path) -> None:
    log = open_log(log_dir, fsync=policy)
    lsns = [log.append(1, b"early") for _ in range(3)]

    async def sync_and_close() -> None:
        async with asyncio.timeout(5):
            await log.sync(lsns[-1])
            assert log.synced_lsn == lsns[-1]
            await log.close()

    asyncio.run(sync_and_close())
    assert replay_all(log_dir) == [(lsn, 1, b"early") for lsn in lsns]


# --- snapshots ----------------------------------------------------------------------------


async def test_open_returns_the_newest_snapshot_and_replay_continues_after_it(log_dir: Path) -> None:
    log = open_log(log_dir)
    await fill(log, 10)
    await log.write_snapshot(4, b"state@4")
    await log.write_snapshot(7, b"state@7")
    log.append(9, b"after")
    await log.close()

    log = CommitLog(log_dir)
    snap = log.open()
    assert snap == Snapshot(7, b"state@7")
    assert [lsn for lsn, _, _ in log.replay(snap.lsn + 1)] == [8, 9, 10]
    assert log.next_lsn == 11
    await log.close()


async def test_snapshot_deletes_segments_no_kept_snapshot_needs(log_dir: Path) -> None:
    record = HEADER + 100
    log = open_log(log_dir, segment_bytes=2 * record, snapshots_kept=2)
    await fill(log, 10)  # segments start at 0, 2, 4, 6, 8
    await log.sync(9)    # written: a segment with bytes still buffered is kept
    await log.write_snapshot(5, b"s5")  # segments holding only LSNs <= 5 go
    assert [int(p.stem) for p in segment_files(log_dir)] == [6, 8]

    await log.write_snapshot(7, b"s7")  # 6 stays: replay from the older kept snapshot (5) needs it
    assert [int(p.stem) for p in segment_files(log_dir)] == [6, 8]
    assert sorted(p.name for p in log_dir.glob("*.snap")) == [
        f"snapshot-{5:020d}.snap",
        f"snapshot-{7:020d}.snap",
    ]

    await log.write_snapshot(9, b"s9")  # the active segment always stays
    assert [int(p.stem) for p in segment_files(log_dir)] == [8]
    assert len(list(log_dir.glob("*.snap"))) == 2
    await log.close()


async def test_corrupt_newest_snapshot_falls_back_to_the_older_one(log_dir: Path) -> None:
    log = open_log(log_dir, segment_bytes=300)
    await fill(log, 12)
    await log.write_snapshot(3, b"s3")
    await log.write_snapshot(8, b"s8")
    await log.close()
    newest = log_dir / f"snapshot-{8:020d}.snap"
    blob = bytearray(newest.read_bytes())
    blob[-1] ^= 0xFF
    newest.write_bytes(blob)

    log = CommitLog(log_dir, segment_bytes=300)
    snap = log.open()

    assert snap == Snapshot(3, b"s3")
    assert log.quarantined_snapshots == [str(newest)]
    assert [lsn for lsn, _, _ in log.replay(snap.lsn + 1)] == list(range(4, 12))
    await log.close()


async def test_log_that_lost_records_the_snapshot_covers_restarts_after_the_snapshot(log_dir: Path) -> None:
    log = open_log(log_dir)
    await fill(log, 10)
    await log.write_snapshot(9, b"s9")
    await log.close()
    segment = segment_files(log_dir)[0]
    os.truncate(segment, 5 * (HEADER + 100))  # the tail was never fsynced and is gone

    log = CommitLog(log_dir)
    assert log.open() == Snapshot(9, b"s9")
    assert list(log.replay(10)) == []
    assert log.append(1, b"x") == 10
    await log.close()
    assert await reopen_records(log_dir, start=10) == [(10, 1, b"x")]


async def test_snapshot_lsn_must_be_appended_and_not_older_than_the_newest(log_dir: Path) -> None:
    log = open_log(log_dir)
    await fill(log, 5)
    await log.write_snapshot(3, b"s")

    with pytest.raises(ValueError, match="snapshot LSN"):
        await log.write_snapshot(5, b"future")
    with pytest.raises(ValueError, match="snapshot LSN"):
        await log.write_snapshot(2, b"older")
    await log.close()


async def test_leftover_snapshot_temp_file_is_removed_on_open(log_dir: Path) -> None:
    log_dir.mkdir()
    temp = log_dir / f"snapshot-{3:020d}.snap.tmp"
    temp.write_bytes(b"half a snapshot")

    log = CommitLog(log_dir)
    assert log.open() is None
    assert not temp.exists()
    await log.close()


# --- recovery -----------------------------------------------------------------------------


async def write_records(log_dir: Path, count: int, **kwargs) -> Path:
    log = open_log(log_dir, **kwargs)
    await fill(log, count)
    await log.close()
    return segment_files(log_dir)[-1]


def corrupt_truncate_mid_payload(segment: Path) -> None:
    os.truncate(segment, segment.stat().st_size - 30)


def corrupt_truncate_mid_header(segment: Path) -> None:
    os.truncate(segment, segment.stat().st_size - 100 - 5)


def corrupt_append_garbage(segment: Path) -> None:
    with segment.open("ab") as f:
        f.write(b"\x13\x37garbage-that-is-not-a-record")


def corrupt_flip_crc_byte(segment: Path) -> None:
    blob = bytearray(segment.read_bytes())
    blob[-(HEADER + 100) + 5] ^= 0x01  # second byte of the last record's CRC
    segment.write_bytes(blob)


@pytest.mark.parametrize(
    "corrupt",
    [corrupt_truncate_mid_payload, corrupt_truncate_mid_header, corrupt_flip_crc_byte],
)
async def test_torn_last_record_is_truncated_and_appends_continue(corrupt, log_dir: Path) -> None:
    segment = await write_records(log_dir, 5)
    corrupt(segment)
    torn_size = segment.stat().st_size

    log = open_log(log_dir)
    assert log.recovered_truncated_bytes == torn_size - 4 * (HEADER + 100)
    assert log.recovery_problem is not None
    assert log.append(1, b"new") == 4
    await log.close()

    assert [lsn for lsn, _, _ in await reopen_records(log_dir)] == [0, 1, 2, 3, 4]
    assert (await reopen_records(log_dir))[-1] == (4, 1, b"new")


async def test_garbage_after_the_last_record_is_truncated(log_dir: Path) -> None:
    segment = await write_records(log_dir, 5)
    corrupt_append_garbage(segment)

    log = open_log(log_dir)
    assert log.recovered_truncated_bytes == len(b"\x13\x37garbage-that-is-not-a-record")
    assert log.append(1, b"new") == 5
    await log.close()
    assert segment.stat().st_size == 6 * (HEADER + 100) - 100 + 3


async def test_valid_record_with_a_non_consecutive_lsn_at_the_tail_is_truncated(log_dir: Path) -> None:
    segment = await write_records(log_dir, 3)
    with segment.open("ab") as f:
        f.write(encode_record(1, 7, b"from the future"))

    log = open_log(log_dir)
    assert "LSN 7" in log.recovery_problem
    assert log.next_lsn == 3
    await log.close()


async def test_a_flipped_byte_in_the_middle_of_the_last_segment_raises_and_keeps_the_file(log_dir: Path) -> None:
    segment = await write_records(log_dir, 6)
    blob = bytearray(segment.read_bytes())
    blob[2 * (HEADER + 100) + HEADER + 40] ^= 0x01  # payload of the third of six records
    segment.write_bytes(blob)

    with pytest.raises(CorruptLogError) as info:
        CommitLog(log_dir).open()
    assert info.value.path == str(segment)
    assert info.value.offset == 2 * (HEADER + 100)
    assert "CRC mismatch" in info.value.reason and "not a torn tail" in info.value.reason
    assert segment.read_bytes() == bytes(blob)  # nothing truncated: the records after it are kept


@pytest.mark.parametrize("length", [0xFFFFFF00, 5 * (HEADER + 100)])
async def test_a_length_field_damaged_mid_segment_is_refused_not_truncated_as_a_torn_tail(length, log_dir: Path) -> None:
    """The third of six records claims to run past the end of the file (a huge length, or one just
    too long): the records after it say it was damaged in place, so nothing is cut."""
    segment = await write_records(log_dir, 6)
    blob = bytearray(segment.read_bytes())
    struct.pack_into("<I", blob, 2 * (HEADER + 100), length)
    segment.write_bytes(blob)

    with pytest.raises(CorruptLogError) as info:
        CommitLog(log_dir).open()
    assert info.value.path == str(segment)
    assert info.value.offset == 2 * (HEADER + 100)
    assert "LSN 3 follows" in info.value.reason and "not a torn tail" in info.value.reason
    assert segment.read_bytes() == bytes(blob)


async def test_a_torn_last_record_whose_length_runs_past_the_end_is_still_a_torn_tail(log_dir: Path) -> None:
    segment = await write_records(log_dir, 4)
    blob = bytearray(segment.read_bytes())
    struct.pack_into("<I", blob, 3 * (HEADER + 100), 10_000)     # the last record: nothing follows it
    segment.write_bytes(blob)

    log = open_log(log_dir)
    assert "torn payload" in log.recovery_problem and log.next_lsn == 3
    await log.close()


async def test_a_torn_last_record_followed_by_zeros_is_a_torn_tail(log_dir: Path) -> None:
    segment = await write_records(log_dir, 4)
    blob = bytearray(segment.read_bytes())
    blob[-60:] = bytes(60)                   # the end of the last record never reached the disk
    segment.write_bytes(bytes(blob) + bytes(4096))   # and the file system zero-filled past it

    log = open_log(log_dir)
    assert log.next_lsn == 3
    await log.close()
    assert [lsn for lsn, _, _ in await reopen_records(log_dir)] == [0, 1, 2]


async def test_corruption_in_a_non_last_segment_raises(log_dir: Path) -> None:
    await write_records(log_dir, 9, segment_bytes=3 * (HEADER + 100))
    middle = segment_files(log_dir)[1]
    blob = bytearray(middle.read_bytes())
    blob[(HEADER + 100) + HEADER + 10] ^= 0xFF  # payload byte of the segment's second record
    middle.write_bytes(blob)

    with pytest.raises(CorruptLogError) as info:
        CommitLog(log_dir).open()
    assert info.value.path == str(middle)
    assert info.value.offset == HEADER + 100
    assert info.value.reason == "CRC mismatch"


async def test_torn_tail_of_a_non_last_segment_raises(log_dir: Path) -> None:
    await write_records(log_dir, 9, segment_bytes=3 * (HEADER + 100))
    corrupt_truncate_mid_payload(segment_files(log_dir)[0])

    with pytest.raises(CorruptLogError, match="torn payload"):
        CommitLog(log_dir).open()


async def test_missing_middle_segment_raises(log_dir: Path) -> None:
    await write_records(log_dir, 9, segment_bytes=3 * (HEADER + 100))
    segment_files(log_dir)[1].unlink()

    with pytest.raises(CorruptLogError, match="expected 3"):
        CommitLog(log_dir).open()


async def test_log_starting_after_lsn_zero_without_a_snapshot_raises(log_dir: Path) -> None:
    log_dir.mkdir()
    (log_dir / f"{5:020d}.log").write_bytes(encode_record(1, 5, b"orphan"))

    with pytest.raises(CorruptLogError, match="snapshot covers only up to -1"):
        CommitLog(log_dir).open()


async def test_replay_raises_on_corruption_found_after_open(log_dir: Path) -> None:
    segment = await write_records(log_dir, 3)
    log = open_log(log_dir)
    blob = bytearray(segment.read_bytes())
    blob[HEADER + 1] ^= 0xFF
    segment.write_bytes(blob)

    with pytest.raises(CorruptLogError, match="CRC mismatch"):
        list(log.replay())
    await log.close()


# --- errors -------------------------------------------------------------------------------


async def test_record_above_max_payload_is_refused_and_the_log_stays_usable(log_dir: Path) -> None:
    log = open_log(log_dir, max_payload=1000)

    with pytest.raises(RecordTooLargeError) as info:
        log.append(1, b"x" * 1001)
    assert (info.value.size, info.value.limit) == (1001, 1000)
    assert log.append(1, b"x" * 1000) == 0
    await log.close()


async def test_record_type_outside_a_byte_is_refused(log_dir: Path) -> None:
    log = open_log(log_dir)
    with pytest.raises(ValueError, match="0..255, got 256"):
        log.append(256, b"")
    assert log.next_lsn == 0
    await log.close()


async def test_sync_of_an_lsn_not_appended_is_refused(log_dir: Path) -> None:
    log = open_log(log_dir)
    with pytest.raises(ValueError, match="has not been appended"):
        await log.sync(0)
    await log.close()


async def test_append_after_close_raises_log_closed(log_dir: Path) -> None:
    log = open_log(log_dir)
    lsn = log.append(1, b"a")
    await log.close()
    await log.close()  # idempotent

    with pytest.raises(LogClosedError, match="closed"):
        log.append(1, b"b")
    await log.sync(lsn)  # already durable: nothing to wait for


async def test_append_before_open_raises_log_closed(log_dir: Path) -> None:
    with pytest.raises(LogClosedError, match="not open"):
        CommitLog(log_dir).append(1, b"a")


def test_bad_settings_are_refused_with_the_value_shown(log_dir: Path) -> None:
    with pytest.raises(ValueError, match="'sometimes'"):
        CommitLog(log_dir, fsync="sometimes")
    with pytest.raises(ValueError, match="segment_bytes"):
        CommitLog(log_dir, segment_bytes=10)
    with pytest.raises(ValueError, match="fsync_interval"):
        CommitLog(log_dir, fsync_interval=0)


@pytest.fixture
def file_size_limit():
    """A real write error: the kernel refuses (EFBIG) writes past RLIMIT_FSIZE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def limit(size: int) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))

    yield limit
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


async def append_until_write_error(log: CommitLog) -> LogWriteError:
    with pytest.raises(LogWriteError) as info:
        for _ in range(1000):
            await log.sync(log.append(1, b"y" * 1000))
    return info.value


@pytest.mark.parametrize("policy", POLICIES)
async def test_a_full_disk_refuses_writes_until_a_retry_finds_room(policy: str, log_dir: Path,
                                                                   file_size_limit) -> None:
    log = open_log(log_dir, fsync=policy)
    await log.sync(log.append(1, b"before"))
    file_size_limit(50_000)

    error = await append_until_write_error(log)
    assert error.errno == 27 and error.path.endswith(".log")
    assert log.write_error is not None
    with pytest.raises(LogWriteError):
        log.append(1, b"after")
    with pytest.raises(LogWriteError):
        await log.sync(log.synced_lsn + 1)
    with pytest.raises(LogWriteError):
        await log.write_snapshot(0, b"s")
    assert await log.retry() is False          # still no room
    appended = log.next_lsn

    file_size_limit(resource.RLIM_INFINITY)
    assert await log.retry() is True
    assert log.write_error is None
    await log.sync(log.append(1, b"after"))
    await log.close()
    records = await reopen_records(log_dir)
    assert [lsn for lsn, _, _ in records] == list(range(appended + 1))   # nothing appended was lost
    assert records[-1] == (appended, 1, b"after")


@pytest.mark.parametrize("policy", ["batch", "never"])
async def test_records_a_full_disk_refused_are_not_durable_when_the_log_closes(policy: str, log_dir: Path,
                                                                              file_size_limit) -> None:
    log = open_log(log_dir, fsync=policy)
    file_size_limit(50_000)
    await append_until_write_error(log)
    with pytest.raises(LogWriteError):
        await log.close()
    with pytest.raises(LogClosedError):
        log.append(1, b"closed")


async def test_log_that_hit_a_write_error_recovers_on_reopen(log_dir: Path, file_size_limit) -> None:
    log = open_log(log_dir, fsync="batch")
    file_size_limit(50_000)
    await append_until_write_error(log)
    with pytest.raises(LogWriteError):
        await log.close()
    file_size_limit(resource.RLIM_INFINITY)

    records = await reopen_records(log_dir)
    assert [lsn for lsn, _, _ in records] == list(range(len(records)))
    assert all(payload == b"y" * 1000 for _, _, payload in records)


def test_errors_carry_their_data() -> None:
    corrupt = CorruptLogError("/x/0.log", 42, "CRC mismatch")
    assert (corrupt.path, corrupt.offset, corrupt.reason) == ("/x/0.log", 42, "CRC mismatch")
    assert "offset 42" in str(corrupt)
    too_large = RecordTooLargeError("/x", 10, 5)
    assert isinstance(too_large, CommitLogError) and isinstance(too_large, ValueError)
    write = LogWriteError("/x/0.log", "fsync", OSError(5, "Input/output error"))
    assert write.errno == 5 and write.again().__cause__ is write.cause


# --- batch: records nobody waits for, and `written` ----------------------------------------


@pytest.fixture
def counted_fsyncs(monkeypatch):
    """The real fsync, counted: an event set at each one."""
    done, count = threading.Event(), [0]
    real = segment_io.fsync_segments

    def counted(targets):
        real(targets)
        count[0] += 1
        done.set()

    monkeypatch.setattr(segment_io, "fsync_segments", counted)
    return done, count


async def test_a_record_nobody_waits_for_starts_no_commit_but_is_fsynced_within_the_lazy_delay(
        log_dir: Path, counted_fsyncs) -> None:
    done, count = counted_fsyncs
    log = open_log(log_dir, fsync="batch")
    try:
        lsn = log.append(3, b"an ack")
        await asyncio.sleep(0)  # sleep-ok: one loop turn, where a waiter's commit would start
        assert count[0] == 0 and log.synced_lsn < lsn
        assert await asyncio.to_thread(done.wait, 5)     # LAZY_SYNC_DELAY later, on its own
        await until(lambda: log.synced_lsn >= lsn)
    finally:
        await log.close()
    assert [p for _, _, p in await reopen_records(log_dir)] == [b"an ack"]


async def test_records_nobody_waits_for_ride_the_commit_of_the_next_waiting_writer(log_dir: Path, counted_fsyncs) -> None:
    _, count = counted_fsyncs
    log = open_log(log_dir, fsync="batch")
    try:
        log.append(3, b"ack 1")
        log.append(3, b"ack 2")
        await log.sync(log.append(2, b"publish"))
        assert count[0] == 1 and log.synced_lsn == 2
    finally:
        await log.close()


async def test_written_puts_a_record_in_the_os_before_its_fsync_which_rides_the_next_commit(
        log_dir: Path, tmp_path: Path, counted_fsyncs) -> None:
    _, count = counted_fsyncs
    log = open_log(log_dir, fsync="batch", segment_bytes=HEADER + 10)
    try:
        first = log.append(11, b"attempt 1")
        await log.written(first)
        second = log.append(11, b"attempt 2")      # a new segment: its predecessor is fsynced first
        await log.written(second)
        killed = as_killed(log_dir, tmp_path)
        assert log.synced_lsn < second
        await log.sync(log.append(2, b"reply"))
        assert log.synced_lsn == 2
        fsyncs = count[0]
    finally:
        await log.close()
    assert [p for _, _, p in replay_all(killed)] == [b"attempt 1", b"attempt 2"]
    assert fsyncs <= 3       # the first segment's before the roll, then one commit (not one per record)
