"""A data directory written before table rows had versions (the engine of 9dcf2a7: KV_PUT and
KV_DEL without a version) still opens: its rows replay in log order, each taking the next
version, and new writes carry on from there. The directories under data/engine-9dcf2a7 were
written by that engine (data/engine-9dcf2a7/make_old.py, run against `git archive 9dcf2a7`)."""

import shutil
from pathlib import Path

import pytest

from lite_engine import records as rec
from lite_engine.config import EngineConfig
from lite_engine.engine import Engine
from lite_engine.errors import ConflictError

OLD = Path(__file__).parent / "data" / "engine-9dcf2a7"


@pytest.fixture(params=["log-only", "with-snapshot"])
def old_dir(request, tmp_path) -> Path:
    target = tmp_path / request.param
    shutil.copytree(OLD / request.param, target)
    return target


async def test_rows_written_before_versions_replay_with_increasing_versions(old_dir):
    engine = Engine(EngineConfig(data_dir=old_dir))
    await engine.start()
    try:
        assert engine.kv_get("registry", "echo") == b'{"name": "echo"}'
        assert engine.kv_get("registry", "gone") is None
        assert engine.kv_get("tasks", "t1") == b"v2"
        (_, v1), (_, v2) = engine.kv_read("tasks", "t1"), engine.kv_read("tasks", "t2")
        assert 0 < v1 < v2          # log order: t1's second put came before t2
        with pytest.raises(ConflictError):
            await engine.kv_put("tasks", "t1", b"stale", expect=v1 - 1)
        v3 = await engine.kv_put("tasks", "t1", b"v3", expect=v1)
        assert v3 > v2
        assert [m.body for m in await engine.receive("jobs", "g", max_messages=5)] == [b"first job", b"second job"]
    finally:
        await engine.close()


async def test_an_old_directory_reopened_after_new_writes_keeps_every_version(old_dir):
    engine = Engine(EngineConfig(data_dir=old_dir))
    await engine.start()
    version = await engine.kv_put("tasks", "t3", b"new")
    before = {key: engine.kv_read("tasks", key) for key in ("t1", "t2", "t3")}
    await engine.close()
    engine = Engine(EngineConfig(data_dir=old_dir))
    await engine.start()
    try:
        assert {key: engine.kv_read("tasks", key) for key in ("t1", "t2", "t3")} == before
        assert engine.kv_read("tasks", "t3") == (b"new", version)
    finally:
        await engine.close()


def test_unversioned_and_versioned_row_records_have_their_own_types():
    assert len({rec.KV_PUT, rec.KV_DEL, rec.KV_PUT_V, rec.KV_DEL_V}) == 4
    assert rec.decode_kv_unversioned(rec.encode_kv_unversioned("t", "k", b"v")) == ("t", "k", b"v")
    assert rec.decode_kv(rec.encode_kv("t", "k", 7, b"v")) == ("t", "k", 7, b"v")
