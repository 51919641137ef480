"""A real Kafka broker from deploy/kafka.py serves an asyncio client (aiokafka>=0.14) end to end.

Without Java (or Maven, before the jars are fetched) these tests skip, except under CI=true,
where they fail: see the contract in deploy/kafka.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from deploy.kafka import FAST_START, BrokerStartError, BrokerUnavailable, KafkaBroker

STEP = 30  # seconds any single broker round trip may take, on a busy 2-core machine


def skip_or_fail(exc: BrokerUnavailable) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Kafka broker unavailable under CI=true: {exc}")
    pytest.skip(f"Kafka broker unavailable: {exc}")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"), jvm_options=FAST_START)
    try:
        broker.start()
    except BrokerUnavailable as exc:
        skip_or_fail(exc)
    try:
        yield broker
    finally:
        broker.stop()


@contextlib.asynccontextmanager
async def admin_client(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def create_topic(bootstrap: str, topic: NewTopic) -> None:
    async with admin_client(bootstrap) as admin:
        response = await admin.create_topics([topic])
    assert [(t["topic"], t["error_code"]) for t in response.to_object()["topic_errors"]] == [(topic.name, 0)]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_message_from_idempotent_producer_reaches_a_consumer_group(kafka_broker: KafkaBroker) -> None:
    bootstrap, topic, group = kafka_broker.bootstrap, unique("orders"), unique("workers")
    async with asyncio.timeout(STEP):
        await create_topic(bootstrap, NewTopic(topic, num_partitions=1, replication_factor=1))
    async with (
        asyncio.timeout(2 * STEP),  # also bounds the clients' start and stop
        AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True) as producer,
        AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
        ) as consumer,
    ):
        sent = await producer.send_and_wait(topic, b"hello", key=b"task-1")
        received = await consumer.getone()
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(topic, 0))

    assert (received.key, received.value, received.offset) == (b"task-1", b"hello", sent.offset)
    assert committed == sent.offset + 1


async def test_compacted_topic_is_created_with_the_compact_cleanup_policy(kafka_broker: KafkaBroker) -> None:
    topic = unique("agent-cards")
    async with asyncio.timeout(STEP):
        await create_topic(
            kafka_broker.bootstrap,
            NewTopic(topic, num_partitions=1, replication_factor=1, topic_configs={"cleanup.policy": "compact"}),
        )
        async with admin_client(kafka_broker.bootstrap) as admin:
            while True:     # CreateTopics answers before every broker knows the topic (error 3 until then)
                [response] = await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": None})]
                )
                [resource] = response.to_object()["resources"]
                if resource["error_code"] != 3:     # UNKNOWN_TOPIC_OR_PARTITION
                    break
                await asyncio.sleep(0.05)  # sleep-ok: bounded by STEP, waiting for topic metadata

    entries = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
    assert (resource["error_code"], entries) == (0, {"cleanup.policy": "compact"})


def test_stopped_broker_frees_its_port_and_forgets_its_process(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path, jvm_options=FAST_START)
    try:
        with broker:
            host, port = broker.bootstrap.rsplit(":", 1)
            pid = broker.pid
    except BrokerUnavailable as exc:
        skip_or_fail(exc)

    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=5).close()
    assert (broker.pid, broker.bootstrap, (tmp_path / "broker.json").exists()) == (None, None, False)


def test_broker_that_cannot_start_reports_why(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path, heap="1m")  # the JVM refuses to start with such a heap
    with pytest.raises(BrokerStartError) as caught:
        try:
            broker.start(timeout=STEP)
        except BrokerUnavailable as exc:
            skip_or_fail(exc)

    assert "exited with code" in str(caught.value)
    assert "heap" in str(caught.value).lower()
    assert broker.pid is None


def test_unusable_java_home_makes_the_broker_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))

    with pytest.raises(BrokerUnavailable, match="JAVA_HOME"):
        KafkaBroker(tmp_path).start()


def test_heap_that_is_not_a_jvm_size_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'half a gig'"):
        KafkaBroker(tmp_path, heap="half a gig")
