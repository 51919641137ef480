"""A full disk: writes fail and readiness drops while there is no room; once space is freed the
engine writes again by itself, readiness returns, and no acknowledged message is lost.

The disk is a real 2 MiB tmpfs (we mount it; skipped where mounting is not permitted)."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

from adapters import errors
from adapters.base import Message
from adapters.lite import EmbeddedLiteBackend
from lite_engine import EngineConfig

BODY = 32 << 10


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def _publish_until_refused(backend, limit=200) -> tuple[list[bytes], errors.BackendError]:
    accepted = []
    for i in range(limit):
        body = b"%06d" % i + bytes(BODY)
        try:
            await backend.publish("tasks", Message(body))
        except errors.StorageError as exc:
            return accepted, exc
        accepted.append(body)
    raise AssertionError(f"{limit} messages of {BODY} bytes fit on a 2 MiB disk")


async def _wait_healthy(backend, within=10.0):
    async with asyncio.timeout(within):
        while not (await backend.health()).ok:
            await asyncio.sleep(0.05)   # sleep-ok: polling readiness, as a load balancer would


@pytest.mark.parametrize("fsync", ["always", "batch", "never"])
async def test_writes_fail_while_the_disk_is_full_and_recover_when_space_is_freed(small_disk, fsync):
    filler = small_disk / "filler"
    filler.write_bytes(os.urandom(512 << 10))
    config = EngineConfig(data_dir=small_disk / "data", fsync=fsync, tick=0.005)
    backend = EmbeddedLiteBackend(config)
    await backend.start()
    try:
        group = await backend.group_consumer("tasks", "g")
        accepted, refused = await _publish_until_refused(backend)
        assert accepted and "No space left" in str(refused)
        health = await backend.health()
        assert not health.ok and "No space left" in health.detail["problems"][0]
        with pytest.raises(errors.StorageError):   # still refused: no room yet
            await backend.publish("tasks", Message(b"x" + bytes(BODY)))

        filler.unlink()
        await _wait_healthy(backend)
        await backend.publish("tasks", Message(b"after"))
        accepted.append(b"after")
    finally:
        await backend.close()

    backend = EmbeddedLiteBackend(config)
    await backend.start()
    try:
        group = await backend.group_consumer("tasks", "g")
        got = []
        async with asyncio.timeout(10):
            while len(got) < len(accepted) + 5:
                batch = await group.receive(max_messages=64, wait=0.2)
                if not batch:
                    break
                got += [d.body for d in batch]
        missing = [b[:6] for b in accepted if b not in got]
        assert missing == []
        assert got[-1] == b"after"
    finally:
        await backend.close()
