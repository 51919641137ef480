import pytest

from adapters.rocketmq import RocketMQBackend

from .cluster import shared_cluster


@pytest.fixture
def cluster():
    return shared_cluster()


@pytest.fixture
async def open_backend(cluster):
    """A factory of started RocketMQBackends on the session's cluster (each one a separate
    process's view, with the admin path unless `admin=None`); all are closed at the end."""
    opened = []

    async def make(**settings):
        settings.setdefault("admin", cluster.namesrv_addr)
        backend = RocketMQBackend(cluster.endpoint, queues=2, **settings)
        await backend.start()
        opened.append(backend)
        return backend

    yield make
    for backend in reversed(opened):
        await backend.close()


@pytest.fixture
async def backend(open_backend):
    return await open_backend()
