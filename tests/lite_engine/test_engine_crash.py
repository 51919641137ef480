"""SIGKILL an engine while it publishes: every message acknowledged to a publisher under
fsync=always or batch is there exactly once after a restart, and nothing is half-present."""

import asyncio
import random
import signal
import sys
from pathlib import Path

import pytest

from lite_engine import Engine, EngineConfig

CHILD = Path(__file__).with_name("engine_crash_child.py")
ROUNDS = 4

pytestmark = pytest.mark.slow


async def publish_until_killed(directory: Path, fsync: str, workers: int, kill_after: int, run: int) -> list[tuple[str, str]]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), str(directory), fsync, str(workers), f"r{run}",
        stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parents[2])
    acked = []
    try:
        async with asyncio.timeout(30):
            assert (await child.stdout.readline()).strip() == b"ready"
            while len(acked) < kill_after:
                line = await child.stdout.readline()
                assert line, f"child exited early with {await child.wait()}"
                acked.append(tuple(line.decode().split()))
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    rest = (await child.stdout.read()).decode()
    complete = rest[: rest.rfind("\n") + 1]     # an unterminated last line was never reported
    acked += [tuple(line.split()) for line in complete.splitlines()]
    return acked


async def recovered_bodies(directory: Path) -> dict[str, list[bytes]]:
    engine = await Engine(EngineConfig(data_dir=directory, fsync="never", segment_bytes=256 << 10)).start()
    try:
        out = {"tasks": [], "reply": []}
        while got := await engine.receive("tasks", "check", max_messages=1024):
            out["tasks"] += [d.body for d in got]
        engine.open_client("checker", group="check", topic="reply")
        engine.subscribe("checker", [f"task-{w}" for w in range(16)])
        while got := await engine.poll("checker", max_messages=1024):
            out["reply"] += [d.body for d in got]
        return out
    finally:
        await engine.close()


@pytest.mark.parametrize("fsync,workers", [("always", 2), ("batch", 8)])
async def test_acknowledged_messages_survive_sigkill_exactly_once(tmp_path, fsync, workers):
    rng = random.Random(7)
    acked: list[tuple[str, str]] = []
    for run in range(ROUNDS):
        acked += await publish_until_killed(tmp_path, fsync, workers, rng.randint(20, 400), run)
        found = await recovered_bodies(tmp_path)
        for topic, bodies in found.items():
            assert len(bodies) == len(set(bodies)), f"duplicates in {topic}"
            for body in bodies:   # nothing half-present: every body is whole
                text = body.decode()
                assert len(text) % 3 == 0 and text == text[: len(text) // 3] * 3, f"torn body {body!r}"
        present = {(t, b.decode()[: len(b) // 3]) for t, bodies in found.items() for b in bodies}
        missing = [a for a in acked if a not in present]
        assert not missing, f"acknowledged but lost: {missing[:5]}"
