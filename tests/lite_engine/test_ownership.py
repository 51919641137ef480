"""The engine owns its state: no module of lite_engine writes or reads another object's private
members (replay goes through the engine's restore_* methods), and nothing imports the engine
core back (the commit log side knows only the `Restorable` protocol)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCES = sorted((Path(__file__).resolve().parents[2] / "lite_engine").glob("*.py"))


def _foreign_private_access(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_module_touches_private_members_of_another_object(path):
    assert _foreign_private_access(ast.parse(path.read_text())) == []


def test_persistence_does_not_import_the_engine_core():
    tree = ast.parse((SOURCES[0].parent / "persistence.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "engine" not in imported and ".engine" not in imported


async def test_replay_rebuilds_what_the_engine_recorded(tmp_path):
    from lite_engine import Engine, EngineConfig, TopicConfig

    config = EngineConfig(data_dir=tmp_path / "data", tick=0.002)
    engine = await Engine(config).start()
    await engine.create_topic("replies", TopicConfig(lite=True))
    await engine.publish("replies", b"r", lite="task-1")
    await engine.kv_put("t", "k", b"v")
    await engine.snapshot()
    await engine.publish("replies", b"s", lite="task-1")
    await engine.close()
    engine = await Engine(config).start()
    try:
        engine.open_client("c", group="g", topic="replies")
        engine.subscribe("c", ["task-1"])
        got = await engine.poll("c", max_messages=10, wait=1.0)
        assert [d.body for d in got] == [b"r", b"s"]
        assert engine.kv_get("t", "k") == b"v"
    finally:
        await engine.close()
