"""One real Kafka broker per test session, and the Kafka harness of the contract suite.

The broker starts lazily, the first time a test asks for it, and stops when the interpreter
exits. Without Java (or Maven, before the jars are fetched) the tests that need it skip, except
under CI=true, where they fail (the contract in deploy/kafka.py). A broker that was launched
but did not come up always fails.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from deploy import kafka as deploy_kafka
from deploy.kafka import FAST_START, BrokerStartError, BrokerUnavailable, KafkaBroker

# Timings the Kafka backend honours in tests. The session timeout is the broker's default
# floor (group.min.session.timeout.ms = 6 s): the liveness contract waits that long once.
SESSION_TIMEOUT = 6.0
HEARTBEAT = 0.3
INVISIBLE = 0.5
LITE_IDLE = 1.0
PARTITIONS = 4

_lock = threading.Lock()
_broker: "DurableBroker | None" = None
_unavailable: BrokerUnavailable | None = None


class DurableBroker(KafkaBroker):
    """A KafkaBroker that can also restart on its existing data (`restart`): deploy/kafka.py
    formats a fresh log dir on every `start`, which is right for a test but not for a restart."""

    _keep_data = False

    def restart(self, timeout: float = 120.0, *, ports: tuple[int, int] | None = None) -> str:
        """Stop (if running), then start on the same data. With `ports` (see `ports()`), clients
        that stay connected reconnect by themselves; otherwise the bootstrap address changes."""
        self.stop()
        self._keep_data = True
        free_ports = deploy_kafka._free_ports
        if ports is not None:
            deploy_kafka._free_ports = lambda count: list(ports)
        try:
            return self.start(timeout)
        finally:
            deploy_kafka._free_ports = free_ports
            self._keep_data = False

    def ports(self) -> tuple[int, int]:
        """The broker and controller ports of the running broker."""
        properties = dict(line.split("=", 1) for line in
                          (self.workdir / "server.properties").read_text().splitlines() if "=" in line)
        controller = properties["controller.quorum.voters"].rsplit(":", 1)[1]
        return int(self.bootstrap.rsplit(":", 1)[1]), int(controller)

    def _prepare(self, java, lib, port: int, controller_port: int) -> None:
        if not self._keep_data:
            return super()._prepare(java, lib, port, controller_port)
        # New ports, same data: write the configuration again, do not clear or format.
        self.log_file.unlink(missing_ok=True)
        properties = {**deploy_kafka._server_properties(self.workdir / "data", port, controller_port), **self.config}
        (self.workdir / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        (self.workdir / "log4j2.properties").write_text(deploy_kafka._log4j2_properties(self.log_file))


def skip_or_fail(exc: BrokerUnavailable) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Kafka broker unavailable under CI=true: {exc}")
    pytest.skip(f"Kafka broker unavailable: {exc}")


def shared_broker() -> DurableBroker:
    """The session's broker, started on first use (blocking: call it from a thread in async code)."""
    global _broker, _unavailable
    with _lock:
        if _unavailable is not None:
            skip_or_fail(_unavailable)
        if _broker is None:
            broker = DurableBroker(Path(tempfile.mkdtemp(prefix="tb-kafka-")), jvm_options=FAST_START)
            try:
                broker.start()
            except BrokerUnavailable as exc:
                _unavailable = exc
                skip_or_fail(exc)
            except BrokerStartError:
                raise
            atexit.register(_discard, broker)
            _broker = broker
        return _broker


def _discard(broker: KafkaBroker) -> None:
    broker.stop()
    shutil.rmtree(broker.workdir, ignore_errors=True)


async def broker() -> DurableBroker:
    return await asyncio.to_thread(shared_broker)


def backend_settings(**overrides) -> dict:
    """KafkaBackend keyword arguments for tests: small partition counts, short timers."""
    from tests.contract.conftest import SUBSCRIPTION_QUOTA

    settings = dict(reply_partitions=PARTITIONS, topic_partitions=PARTITIONS, session_timeout=SESSION_TIMEOUT,
                    heartbeat_interval=HEARTBEAT, request_timeout=20.0, max_attempts=16,
                    min_lite_idle_seconds=0.5, max_subscriptions_per_client=SUBSCRIPTION_QUOTA)
    settings.update(overrides)
    return settings


async def started_backend(kafka: KafkaBroker, **overrides):
    from adapters.kafka import KafkaBackend

    backend = KafkaBackend(kafka.bootstrap, **backend_settings(**overrides))
    await backend.start()
    return backend


async def contract_harness(tmp_path):
    """The contract suite's harness: every `connect` is a new process's view of the broker;
    `restart` closes every view and restarts the broker on its data."""
    from tests.contract.conftest import Harness

    kafka = await broker()

    async def connect():
        return await started_backend(kafka)

    async def restart():
        await harness.close_all()
        await asyncio.to_thread(kafka.restart)

    harness = Harness("kafka", connect, restart, invisible=INVISIBLE, lite_idle=LITE_IDLE)
    yield harness


async def round_trip_through_every_client(backend, step: float) -> None:
    """A task's round trip that uses every client the started `backend` makes (admin, group
    consumer, lite reader with its offsets lookup, table reader, producer); closes it."""
    from adapters.base import Message, TopicSpec
    from tests.contract.helpers import ack_all, poll_until, receive_until, unique

    try:
        topic, parent = unique("cap"), unique("reply")
        await backend.create_topic(TopicSpec(topic))                 # admin client
        await backend.create_topic(TopicSpec(parent, lite=True))
        workers = await backend.group_consumer(topic, "workers")     # group consumer
        replies = await backend.lite_consumer(parent, "gw")          # lite reader and offsets lookup
        await replies.subscribe(["task-1"])
        table = await backend.table(unique("registry"))              # table reader
        await backend.publish(topic, Message(b"job"))                # producer
        [job] = await receive_until(workers, 1, timeout=step)
        await backend.publish(parent, Message(b"done"), lite_topic="task-1")
        [reply] = await poll_until(replies, 1, timeout=step)
        await table.put("agent", b"card")
        assert (job.body, reply.body, await table.get("agent")) == (b"job", b"done", b"card")
        await ack_all([job, reply])
        assert (await backend.health()).ok
    finally:
        await backend.close()
