"""Fixtures of the gateway tests: a task service and native workers on an embedded engine (fsync
batch, the default; `held_fsync` holds its commits), and
for the A2A tests an engine process shared by two gateway processes and the fixture agents
(tests/gateway/a2a_servers.py). A test module that defines a fixture of the same name (the MCP
tests' `engine`, `gateways`, `agents`) uses its own."""

import pytest

from adapters.factory import engine_config
from adapters.lite import EmbeddedLiteBackend
from gateway.tasks.service import TaskService
from gateway.workers.worker import Worker
from tests.gateway.a2a_servers import FAST_PUSH, Agents, GatewayProcess, PushReceiver
from lite_engine.commitlog import segment_files
from tests.gateway.faults import HeldFsync
from tests.lite_engine.engine_process import EngineProcess


@pytest.fixture
def held_fsync(monkeypatch):
    """The commit log's fsync behind a HeldFsync (tests/gateway/faults.py)."""
    held = HeldFsync()
    monkeypatch.setattr(segment_files, "fsync_segments", held.wrap(segment_files.fsync_segments))
    yield held
    held.release.set()


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


# ------------------------------------------------------------------ A2A: processes on a shared engine

@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """One `topicbridge engine` process per test module, shared by its gateways and agents."""
    process = EngineProcess(tmp_path_factory.mktemp("engine"), fsync="never")
    yield process.start()
    process.kill()


@pytest.fixture(scope="module")
def gateways(engine):
    """Two gateway processes over the same engine: (first url, second url)."""
    processes = [GatewayProcess(engine, push=FAST_PUSH) for _ in range(2)]
    for process in processes:
        process.spawn()
    try:
        yield tuple(process.wait_ready() for process in processes)
    finally:
        for process in processes:
            process.stop()


@pytest.fixture
async def agents(engine):
    async with Agents(engine) as running:
        yield running


@pytest.fixture
async def receiver():
    async with PushReceiver() as running:
        yield running
