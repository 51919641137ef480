"""The fault suite's fixtures: a real embedded engine behind FaultyBackend, and the runner of
bench/_faults (tests may import from bench)."""

from __future__ import annotations

import pytest

from adapters.lite import EmbeddedLiteBackend
from bench._faults.faulty import FaultyBackend
from lite_engine import EngineConfig


@pytest.fixture
async def faulty(tmp_path):
    backend = FaultyBackend(EmbeddedLiteBackend(EngineConfig(data_dir=tmp_path / "engine", tick=0.005)))
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()
