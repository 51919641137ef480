"""Child process of the commit log crash test.

Usage: python commitlog_crash_child.py DIR POLICY SNAPSHOT_EVERY

Opens (and so recovers) the log in DIR, then appends records forever from a few concurrent
producers, printing each LSN on stdout only once `sync` says it is durable. With
SNAPSHOT_EVERY > 0, a snapshot of the synced LSN is written each time that many records
were appended (deleting covered segments). The parent SIGKILLs us at a random point.
"""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lite_engine.commitlog import CommitLog  # noqa: E402

RECORD_TYPE = 3
SEGMENT_BYTES = 32 << 10  # small, so kills also land around segment rolls
PRODUCERS = 8


def payload_for(lsn: int) -> bytes:
    """Growing payloads (1 byte .. ~6 KiB, then again) whose content names their LSN."""
    size = 1 + (lsn * 61) % 6000
    stamp = lsn.to_bytes(8, "little")
    return (stamp * (size // 8 + 1))[:size]


def snapshot_for(lsn: int) -> bytes:
    return f"state-upto-{lsn}".encode()


async def produce(log: CommitLog, snapshot_due: asyncio.Event, every: int) -> None:
    while True:
        lsn = log.next_lsn
        assert log.append(RECORD_TYPE, payload_for(lsn)) == lsn
        if every and lsn % every == 0:
            snapshot_due.set()
        await log.sync(lsn)
        sys.stdout.write(f"{lsn}\n")
        sys.stdout.flush()


async def snapshot(log: CommitLog, snapshot_due: asyncio.Event) -> None:
    while True:
        await snapshot_due.wait()
        snapshot_due.clear()
        lsn = log.synced_lsn
        if lsn >= 0:
            await log.write_snapshot(lsn, snapshot_for(lsn))


async def main(directory: str, policy: str, every: int) -> None:
    log = CommitLog(directory, fsync=policy, segment_bytes=SEGMENT_BYTES)
    log.open()
    print(f"ready {log.next_lsn}", flush=True)
    snapshot_due = asyncio.Event()
    producers = [produce(log, snapshot_due, every) for _ in range(PRODUCERS)]
    await asyncio.gather(snapshot(log, snapshot_due), *producers)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
