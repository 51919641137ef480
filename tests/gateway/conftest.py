import pytest

from adapters.factory import engine_config
from adapters.lite import EmbeddedLiteBackend


@pytest.fixture
async def backend(tmp_path):
    b = EmbeddedLiteBackend(engine_config({"data_dir": str(tmp_path / "engine"), "tick": 0.005,
                                           "session_timeout": 2.0}))
    await b.start()
    yield b
    await b.close()
