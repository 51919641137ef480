"""One engine per data directory: a second opener, in another process or this one, is refused
with the holder's pid and how to share one engine; the lock goes when its holder closes or dies."""

from __future__ import annotations

import asyncio
import os

import pytest

from adapters import errors
from adapters.lite import EmbeddedLiteBackend
from lite_engine import DataDirLockedError, Engine, EngineConfig
from tests.lite_engine.engine_process import EngineProcess


def config(data_dir, **kw):
    return EngineConfig(data_dir=data_dir, tick=0.002, **kw)


async def test_an_engine_in_this_process_is_refused_a_directory_a_running_engine_process_holds(tmp_path):
    data_dir = tmp_path / "engine"
    with EngineProcess(data_dir) as proc:
        with pytest.raises(DataDirLockedError) as caught:
            await Engine(config(data_dir)).start()
        assert caught.value.pid == proc.process.pid
        message = str(caught.value)
        assert f"process {proc.process.pid}" in message and str(data_dir) in message
        assert "topicbridge engine" in message and "lite.mode=remote" in message


async def test_a_second_engine_process_on_the_same_directory_exits_naming_the_first(tmp_path):
    data_dir = tmp_path / "engine"
    with EngineProcess(data_dir) as first:
        second = EngineProcess(data_dir, start_timeout=15.0)
        with pytest.raises(RuntimeError, match="did not start"):
            await asyncio.to_thread(second.start)
        assert second.process.wait(10) == 1
        assert f"in use by process {first.process.pid}" in second.output
        assert "lite.mode=remote" in second.output


async def test_the_lock_goes_with_a_killed_holder(tmp_path):
    data_dir = tmp_path / "engine"
    proc = EngineProcess(data_dir)
    await asyncio.to_thread(proc.start)
    proc.kill()
    engine = await Engine(config(data_dir)).start()   # the kernel dropped the dead holder's lock
    await engine.close()


async def test_a_closed_engine_releases_the_directory_and_a_refused_one_takes_nothing(tmp_path):
    first = await Engine(config(tmp_path / "d")).start()
    with pytest.raises(DataDirLockedError) as caught:
        await Engine(config(tmp_path / "d")).start()
    assert caught.value.pid == os.getpid()
    await first.close()
    second = await Engine(config(tmp_path / "d")).start()
    await second.close()


async def test_the_embedded_backend_reports_the_lock_as_a_storage_error_with_the_advice(tmp_path):
    first = EmbeddedLiteBackend(config(tmp_path / "d"))
    await first.start()
    try:
        second = EmbeddedLiteBackend(config(tmp_path / "d"))
        with pytest.raises(errors.StorageError, match="lite.mode=remote"):
            await second.start()
    finally:
        await first.close()
