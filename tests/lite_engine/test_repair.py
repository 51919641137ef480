"""`topicbridge engine --repair`: a commit log corrupted before its tail, which the engine refuses
to open (CorruptLogError naming segment and offset), is cut at the bad record; what follows is
set aside, never deleted, and the engine opens with every record before the cut."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from lite_engine import EngineConfig
from lite_engine.cli import main
from lite_engine.commitlog import CorruptLogError
from lite_engine.engine import Engine
from lite_engine.errors import DataDirLockedError, StorageError
from lite_engine.repair import RepairError, repair


async def _write(data_dir: Path, n: int, segment_bytes: int = 64 << 20) -> None:
    engine = Engine(EngineConfig(data_dir=data_dir, segment_bytes=segment_bytes))
    await engine.start()
    await engine.create_topic("jobs")
    for i in range(n):
        await engine.publish("jobs", b"job %04d " % i + b"x" * 200)
    await engine.close()


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


async def _bodies(data_dir: Path) -> list[bytes]:
    engine = Engine(EngineConfig(data_dir=data_dir))
    await engine.start()
    try:
        return [d.body for d in await engine.receive("jobs", "g", max_messages=1000)]
    finally:
        await engine.close()


def _segments(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob("*.log"))


async def test_a_log_corrupted_mid_segment_is_refused_then_cut_there_by_repair(tmp_path):
    await _write(tmp_path, 100)
    _flip_middle(_segments(tmp_path)[-1])
    with pytest.raises(StorageError, match="corrupt commit log .*log at offset") as refused:
        await _bodies(tmp_path)
    corrupt = refused.value.__cause__
    assert isinstance(corrupt, CorruptLogError) and corrupt.offset > 0
    actions = await repair(tmp_path)
    assert len(actions) == 1 and f"at offset {corrupt.offset}" in actions[0]
    kept = await _bodies(tmp_path)
    assert 0 < len(kept) < 100
    assert kept == [b"job %04d " % i + b"x" * 200 for i in range(len(kept))]    # a prefix, in order
    assert (tmp_path / f"{_segments(tmp_path)[-1].name}.corrupt-{corrupt.offset}").stat().st_size > 0
    assert await repair(tmp_path) == []


async def test_repair_sets_aside_every_segment_after_a_corrupt_one(tmp_path):
    await _write(tmp_path, 300, segment_bytes=16 << 10)
    segments = _segments(tmp_path)
    assert len(segments) >= 3
    _flip_middle(segments[0])
    assert len(await repair(tmp_path)) == 1
    assert _segments(tmp_path) == segments[:1]
    assert len(list(tmp_path.glob("*.log.corrupt"))) == len(segments) - 1
    assert 0 < len(await _bodies(tmp_path)) < 300


async def test_repair_refuses_a_directory_an_engine_holds(tmp_path):
    engine = Engine(EngineConfig(data_dir=tmp_path))
    await engine.start()
    try:
        with pytest.raises(DataDirLockedError):
            await repair(tmp_path)
    finally:
        await engine.close()


async def test_repair_of_a_missing_directory_is_refused(tmp_path):
    with pytest.raises(RepairError):
        await repair(tmp_path / "nowhere")


def test_the_repair_command_exits_nonzero_without_a_data_directory_or_on_a_missing_one(tmp_path, capsys):
    assert main(["--repair"]) == 2
    assert main(["--repair", "--data-dir", str(tmp_path / "nowhere")]) == 1
    assert "is not a directory" in capsys.readouterr().out


def test_the_repair_command_reports_the_cut_and_a_sound_log_needs_none(tmp_path, capsys):
    asyncio.run(_write(tmp_path, 50))
    assert main(["--repair", "--data-dir", str(tmp_path)]) == 0
    assert "nothing to repair" in capsys.readouterr().out
    _flip_middle(_segments(tmp_path)[-1])
    assert main(["--repair", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "repaired: corrupt commit log" in out and os.fspath(tmp_path) in out
