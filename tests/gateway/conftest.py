import pytest

from adapters.factory import engine_config
from adapters.lite import EmbeddedLiteBackend
from gateway.tasks.service import TaskService
from gateway.workers.worker import Worker


@pytest.fixture
async def backend(tmp_path):
    b = EmbeddedLiteBackend(engine_config({"data_dir": str(tmp_path / "engine"), "tick": 0.005,
                                           "session_timeout": 2.0}))
    await b.start()
    yield b
    await b.close()


@pytest.fixture
async def service(backend):
    """A gateway's task service on `backend`."""
    s = TaskService(backend, poll_wait=0.2)
    await s.start()
    yield s
    await s.close()


@pytest.fixture
async def workers(backend):
    """`await workers(name, handler)` starts a native worker on `backend`, closed after the test."""
    started = []

    async def start(name, handler):
        worker = Worker(backend, name, handler)
        await worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        await worker.close()
