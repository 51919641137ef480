"""SIGKILL a process that writes the log; every record it reported durable must survive."""

import asyncio
import random
import signal
import sys
from pathlib import Path

import pytest

from lite_engine.commitlog import CommitLog
from tests.lite_engine.commitlog_crash_child import RECORD_TYPE, SEGMENT_BYTES, payload_for, snapshot_for

CHILD = Path(__file__).with_name("commitlog_crash_child.py")
ROUNDS = 6
LINE_TIMEOUT = 10.0
RECORD_HEADER = 17

pytestmark = pytest.mark.slow


async def run_child_until_killed(directory: Path, policy: str, every: int, kill_after: int) -> set[int]:
    """Start a writer, read `kill_after` durable LSNs from it, SIGKILL it; return all it reported."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), str(directory), policy, str(every), stdout=asyncio.subprocess.PIPE
    )
    reported: set[int] = set()
    try:
        async with asyncio.timeout(LINE_TIMEOUT):
            assert (await child.stdout.readline()).startswith(b"ready")
            while len(reported) < kill_after:
                line = await child.stdout.readline()
                assert line, f"child exited early with {await child.wait()}"
                reported.add(int(line))
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    reported.update(int(line) for line in complete_lines(await child.stdout.read()))
    assert child.returncode == -signal.SIGKILL
    return reported


def complete_lines(data: bytes) -> list[bytes]:
    """A kill can cut the last line short; only newline-terminated lines were reported."""
    return data[: data.rfind(b"\n") + 1].split()


async def check_recovered_log(directory: Path, reported: set[int]) -> int:
    """Reopen in-process, check snapshot + records against what was reported; return next LSN."""
    log = CommitLog(directory, segment_bytes=SEGMENT_BYTES)
    snap = log.open()
    start = snap.lsn + 1 if snap else 0
    records = list(log.replay(start))
    await log.close()

    if snap:
        assert snap.data == snapshot_for(snap.lsn)
    lsns = [lsn for lsn, _, _ in records]
    assert lsns == list(range(start, start + len(records))), "LSNs are not consecutive"
    lost = {lsn for lsn in reported if lsn >= start} - set(lsns)
    assert not lost, f"reported durable but lost: {sorted(lost)[:10]}"
    for lsn, rtype, payload in records:
        assert (rtype, payload) == (RECORD_TYPE, payload_for(lsn)), f"record {lsn} differs"
    assert_no_bytes_past_the_tail(directory, records[-1][0] if records else None)
    return start + len(records)


def assert_no_bytes_past_the_tail(directory: Path, last_lsn: int | None) -> None:
    segments = sorted(directory.glob("*.log"))
    if last_lsn is None:
        assert all(path.stat().st_size == 0 for path in segments)
        return
    tail = segments[-1]
    expected = sum(RECORD_HEADER + len(payload_for(lsn)) for lsn in range(int(tail.stem), last_lsn + 1))
    assert tail.stat().st_size == expected, "bytes past the last record"


async def check_reopen_is_clean(directory: Path) -> None:
    log = CommitLog(directory, segment_bytes=SEGMENT_BYTES)
    log.open()
    await log.close()
    assert log.recovered_truncated_bytes == 0


@pytest.mark.parametrize(
    ("policy", "snapshot_every"),
    [("always", 0), ("batch", 0), ("batch", 50)],
    ids=["always", "batch", "batch-with-snapshots"],
)
async def test_records_reported_durable_survive_sigkill(policy: str, snapshot_every: int, tmp_path: Path) -> None:
    rng = random.Random(f"commitlog-crash-{policy}-{snapshot_every}")
    directory = tmp_path / "log"
    reported: set[int] = set()
    for _ in range(ROUNDS):
        kill_after = rng.randint(1, 200)
        reported |= await run_child_until_killed(directory, policy, snapshot_every, kill_after)
        next_lsn = await check_recovered_log(directory, reported)
        await check_reopen_is_clean(directory)
    assert next_lsn > max(reported)
    assert len(list(directory.glob("*.log"))) > 1, "the test never rolled a segment"
