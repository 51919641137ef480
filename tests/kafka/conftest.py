import contextlib

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from .support import broker, started_backend


@pytest.fixture
async def kafka():
    return await broker()


@pytest.fixture
async def open_backend(kafka):
    """A factory of started KafkaBackends (each one a separate process's view); all are closed
    at the end of the test."""
    opened = []

    async def make(**settings):
        backend = await started_backend(kafka, **settings)
        opened.append(backend)
        return backend

    yield make
    for backend in reversed(opened):
        await backend.close()


@pytest.fixture
async def backend(open_backend):
    return await open_backend()


@pytest.fixture
async def admin(kafka):
    client = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await client.start()
    yield client
    await client.close()


@contextlib.asynccontextmanager
async def raw_reader(bootstrap: str, topic: str, partitions):
    """A plain aiokafka consumer on `partitions` of `topic` from their beginning: what any Kafka
    tool would see."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        yield consumer
    finally:
        await consumer.stop()
