"""A real RocketMQ 5 cluster from deploy/rocketmq.py serves LiteTopic and plain topics over raw gRPC.

The client side is ``grpc.aio`` plus the protobuf stubs that ship in the PyPI package
``rocketmq-python-client`` (imported without the package's ``__init__``, which would open a log
file under ``~/logs``). The call sequences mirror apache/rocketmq-clients ``python/rocketmq/v5``.

Without Java (or Maven, before the jars are fetched) or without the stubs these tests skip,
except under CI=true, where they fail. Findings are written up in deploy/ROCKETMQ.md.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import grpc
import pytest

from deploy.rocketmq import BrokerUnavailable, RocketMQCluster

STEP = 30  # seconds any single round trip may take, on a busy 2-core machine
POLL = 5  # long-polling seconds asked for; the proxy's minimum is 5 s anyway
CLIENT_VERSION = "5.1.2"  # what rocketmq-python-client 5.1.2 sends in x-mq-client-version

LITE_PARENT, LITE_GROUP = "agents", "agents-gw"
EXCLUSIVE_GROUP = "agents-exclusive"
PLAIN_TOPIC, PLAIN_GROUP = "plain", "plain-workers"


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"RocketMQ test prerequisite missing under CI=true: {reason}")
    pytest.skip(reason)


def load_stubs():
    """The RocketMQ gRPC stubs, imported the adapter's way (no ~/logs written)."""
    from adapters.rocketmq.protocol import load_stubs as adapter_load_stubs
    return adapter_load_stubs()


try:
    pb, rpc, rpc_grpc = load_stubs()
except ImportError as exc:  # pragma: no cover - depends on the environment
    pb = rpc = rpc_grpc = None
    STUBS_ERROR = f"pip install rocketmq-python-client ({exc})"
else:
    STUBS_ERROR = ""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RocketMQCluster]:
    if STUBS_ERROR:
        skip_or_fail(STUBS_ERROR)
    cluster = RocketMQCluster(tmp_path_factory.mktemp("rocketmq"))
    try:
        cluster.start()
    except BrokerUnavailable as exc:
        skip_or_fail(str(exc))
    try:
        cluster.create_topic(LITE_PARENT, message_type="LITE", lite_expiration_minutes=60)
        cluster.create_group(LITE_GROUP, lite_bind_topic=LITE_PARENT)
        cluster.create_group(EXCLUSIVE_GROUP, lite_bind_topic=LITE_PARENT,
                             attributes={"lite.sub.model": "Exclusive"})
        cluster.create_topic(PLAIN_TOPIC, message_type="NORMAL")
        cluster.create_group(PLAIN_GROUP, max_retry=3)
        yield cluster
    finally:
        cluster.stop()


# ---------------------------------------------------------------------------------------------
# a minimal raw-gRPC client: what an adapter has to send


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_message_id() -> str:
    # The proxy only requires a non-blank id; clients send 34 hex digits starting "01" (v1).
    return "01" + uuid.uuid4().hex.upper() + "00"


@dataclass
class Session:
    """One RocketMQ client identity on one gRPC channel: headers, settings, telemetry stream."""

    stub: object
    endpoint: str
    client_id: str = field(default_factory=lambda: f"{socket.gethostname()}@{os.getpid()}@{unique('tb')}")
    commands: asyncio.Queue = field(default_factory=asyncio.Queue)  # server -> client telemetry
    _outbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    _call: object = None
    _reader: asyncio.Task | None = None

    def metadata(self) -> tuple[tuple[str, str], ...]:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        return (
            ("x-mq-language", "PYTHON"),
            ("x-mq-protocol", "GRPC_V2"),
            ("x-mq-client-version", CLIENT_VERSION),
            ("x-mq-date-time", now),
            ("x-mq-request-id", str(uuid.uuid4())),
            ("x-mq-client-id", self.client_id),
            ("x-mq-namespace", ""),
        )

    def endpoints(self):
        host, port = self.endpoint.rsplit(":", 1)
        return pb.Endpoints(scheme=pb.IPv4, addresses=[pb.Address(host=host, port=int(port))])

    def settings(self, client_type: int, *, group: str = "", topics: tuple[str, ...] = ()):
        settings = pb.Settings(client_type=client_type, access_point=self.endpoints())
        settings.request_timeout.seconds = 3
        settings.user_agent.CopyFrom(pb.UA(language=pb.PYTHON, version=CLIENT_VERSION,
                                           platform="linux", hostname=socket.gethostname()))
        if client_type == pb.PRODUCER:
            settings.publishing.CopyFrom(pb.Publishing(
                topics=[pb.Resource(name=t) for t in topics], validate_message_type=True))
        else:
            settings.subscription.group.name = group
            for topic in topics:
                settings.subscription.subscriptions.add(
                    topic=pb.Resource(name=topic), expression=pb.FilterExpression(type=pb.TAG, expression="*"))
        return settings

    async def open_telemetry(self, settings):
        """Open the bidirectional Telemetry stream, send settings, return the server's settings."""

        async def outgoing() -> AsyncIterator:
            while (command := await self._outbox.get()) is not None:
                yield command

        self._call = self.stub.Telemetry(outgoing(), metadata=self.metadata())
        self._reader = asyncio.create_task(self._read_telemetry())
        await self._outbox.put(rpc.TelemetryCommand(settings=settings))
        reply = await self.commands.get()
        if isinstance(reply, Exception):
            raise reply
        assert reply.status.code == pb.OK, reply
        return reply.settings

    async def _read_telemetry(self) -> None:
        try:
            async for command in self._call:
                await self.commands.put(command)
        except grpc.aio.AioRpcError as exc:
            await self.commands.put(exc)

    async def close(self) -> None:
        if self._call is not None:
            await self._outbox.put(None)
            self._call.cancel()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def heartbeat(self, client_type: int, group: str = "") -> None:
        request = rpc.HeartbeatRequest(client_type=client_type)
        if group:
            request.group.name = group
        reply = await self.stub.Heartbeat(request, metadata=self.metadata(), timeout=STEP)
        assert reply.status.code == pb.OK, reply.status


@asynccontextmanager
async def connect(endpoint: str) -> AsyncIterator:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        yield rpc_grpc.MessagingServiceStub(channel)


@asynccontextmanager
async def session(stub, endpoint: str) -> AsyncIterator[Session]:
    client = Session(stub, endpoint)
    try:
        yield client
    finally:
        await client.close()


async def start_producer(client: Session, topic: str) -> None:
    await client.open_telemetry(client.settings(pb.PRODUCER, topics=(topic,)))
    await client.heartbeat(pb.PRODUCER)


async def send(client: Session, topic: str, body: bytes, *, lite_topic: str | None = None):
    message = pb.Message(topic=pb.Resource(name=topic), body=body)
    props = message.system_properties
    props.message_id = new_message_id()
    props.message_type = pb.LITE if lite_topic is not None else pb.NORMAL
    if lite_topic is not None:
        props.lite_topic = lite_topic
    props.body_encoding = pb.IDENTITY
    props.born_host = "127.0.0.1"
    props.born_timestamp.GetCurrentTime()
    return await client.stub.SendMessage(rpc.SendMessageRequest(messages=[message]),
                                         metadata=client.metadata(), timeout=STEP)


async def start_lite_consumer(client: Session, group: str = LITE_GROUP, bind_topic: str = LITE_PARENT):
    """QueryRoute -> Telemetry(settings) -> Heartbeat -> QueryAssignment; return (settings, queue)."""
    route = await client.stub.QueryRoute(
        rpc.QueryRouteRequest(topic=pb.Resource(name=bind_topic), endpoints=client.endpoints()),
        metadata=client.metadata(), timeout=STEP)
    assert route.status.code == pb.OK, route.status
    settings = await client.open_telemetry(
        client.settings(pb.LITE_PUSH_CONSUMER, group=group, topics=(bind_topic,)))
    await client.heartbeat(pb.LITE_PUSH_CONSUMER, group)
    assignment = await client.stub.QueryAssignment(
        rpc.QueryAssignmentRequest(topic=pb.Resource(name=bind_topic), group=pb.Resource(name=group),
                                   endpoints=client.endpoints()),
        metadata=client.metadata(), timeout=STEP)
    assert assignment.status.code == pb.OK, assignment.status
    return settings, assignment.assignments[0].message_queue


async def sync_lite(client: Session, action: int, lite_topics: list[str], *, group: str = LITE_GROUP,
                    bind_topic: str = LITE_PARENT, **fields):
    return await client.stub.SyncLiteSubscription(
        rpc.SyncLiteSubscriptionRequest(action=action, topic=pb.Resource(name=bind_topic),
                                        group=pb.Resource(name=group), lite_topic_set=lite_topics, **fields),
        metadata=client.metadata(), timeout=STEP)


async def receive(client: Session, group: str, queue, *, batch: int = 16, invisible: int = 30,
                  poll: int = POLL) -> tuple[list, object]:
    """ReceiveMessage (server stream: status, messages, delivery_timestamp) -> (messages, status)."""
    request = rpc.ReceiveMessageRequest(group=pb.Resource(name=group), message_queue=queue, batch_size=batch,
                                        filter_expression=pb.FilterExpression(type=pb.TAG, expression="*"))
    request.invisible_duration.seconds = invisible
    request.long_polling_timeout.seconds = poll
    messages, status = [], None
    # The proxy reads the gRPC deadline: without one the call fails; it must exceed the poll.
    async for reply in client.stub.ReceiveMessage(request, metadata=client.metadata(), timeout=poll + STEP):
        if reply.HasField("message"):
            messages.append(reply.message)
        elif reply.HasField("status"):
            status = reply.status
    return messages, status


async def ack(client: Session, group: str, topic: str, message, *, with_lite_topic: bool = True):
    entry = rpc.AckMessageEntry(message_id=message.system_properties.message_id,
                                receipt_handle=message.system_properties.receipt_handle)
    if with_lite_topic and message.system_properties.lite_topic:
        entry.lite_topic = message.system_properties.lite_topic
    reply = await client.stub.AckMessage(
        rpc.AckMessageRequest(group=pb.Resource(name=group), topic=pb.Resource(name=topic), entries=[entry]),
        metadata=client.metadata(), timeout=STEP)
    return reply


def bodies(messages) -> list[bytes]:
    return [m.body for m in messages]


# ---------------------------------------------------------------------------------------------
# the cluster


def test_cluster_serves_grpc_on_loopback_with_three_small_jvms(cluster: RocketMQCluster) -> None:
    host, port = cluster.endpoint.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    rss = cluster.rss_bytes()
    assert set(rss) == {"namesrv", "broker", "proxy"} and all(rss.values())
    print(f"\nrocketmq start {cluster.start_seconds:.1f}s, rss MiB "
          f"{ {name: value >> 20 for name, value in rss.items()} } total {sum(rss.values()) >> 20}")


# ---------------------------------------------------------------------------------------------
# LiteTopic


async def test_lite_message_reaches_the_lite_push_consumer_and_ack_clears_it(cluster: RocketMQCluster) -> None:
    reply_to = unique("reply")
    async with connect(cluster.endpoint) as stub, session(stub, cluster.endpoint) as consumer, \
            session(stub, cluster.endpoint) as producer:
        async with asyncio.timeout(STEP):
            settings, queue = await start_lite_consumer(consumer)
            assert settings.subscription.lite_subscription_quota == 2000
            assert settings.subscription.max_lite_topic_size == 64
            assert queue.id == -1 and queue.broker.name  # one assignment per broker, no queue id
            synced = await sync_lite(consumer, pb.PARTIAL_ADD, [reply_to])
            assert synced.status.code == pb.OK, synced.status
            await start_producer(producer, LITE_PARENT)
            sent = await send(producer, LITE_PARENT, b"task result", lite_topic=reply_to)
            assert sent.status.code == pb.OK and sent.entries[0].message_id, sent

        async with asyncio.timeout(POLL + STEP):
            messages, status = await receive(consumer, LITE_GROUP, queue)
        assert status.code == pb.OK, status
        assert bodies(messages) == [b"task result"]
        message = messages[0]
        assert message.topic.name == LITE_PARENT
        assert message.system_properties.lite_topic == reply_to
        assert message.system_properties.message_type == pb.LITE
        assert message.system_properties.delivery_attempt == 1

        async with asyncio.timeout(STEP):
            acked = await ack(consumer, LITE_GROUP, LITE_PARENT, message)
        assert acked.status.code == pb.OK and acked.entries[0].status.code == pb.OK, acked


async def test_lite_receive_long_polls_until_a_message_arrives(cluster: RocketMQCluster) -> None:
    reply_to = unique("reply")
    async with connect(cluster.endpoint) as stub, session(stub, cluster.endpoint) as consumer, \
            session(stub, cluster.endpoint) as producer:
        async with asyncio.timeout(STEP):
            _, queue = await start_lite_consumer(consumer)
            await sync_lite(consumer, pb.PARTIAL_ADD, [reply_to])
            await start_producer(producer, LITE_PARENT)
        pending = asyncio.create_task(receive(consumer, LITE_GROUP, queue, poll=20))
        # The receive is parked on the broker until the message is stored.
        done, _ = await asyncio.wait({pending}, timeout=0.5)
        assert not done
        async with asyncio.timeout(20 + STEP):
            await send(producer, LITE_PARENT, b"late", lite_topic=reply_to)
            messages, status = await pending
        assert status.code == pb.OK and bodies(messages) == [b"late"]
        await ack(consumer, LITE_GROUP, LITE_PARENT, messages[0])


async def test_messages_sent_before_the_subscription_are_delivered(cluster: RocketMQCluster) -> None:
    reply_to = unique("reply")
    async with connect(cluster.endpoint) as stub, session(stub, cluster.endpoint) as consumer, \
            session(stub, cluster.endpoint) as producer:
        async with asyncio.timeout(POLL + STEP):
            await start_producer(producer, LITE_PARENT)
            for body in (b"one", b"two"):
                await send(producer, LITE_PARENT, body, lite_topic=reply_to)
            _, queue = await start_lite_consumer(consumer)
            await sync_lite(consumer, pb.PARTIAL_ADD, [reply_to])
            messages, status = await receive(consumer, LITE_GROUP, queue)
        assert status.code == pb.OK and bodies(messages) == [b"one", b"two"]
        for message in messages:
            await ack(consumer, LITE_GROUP, LITE_PARENT, message)


async def test_lite_topic_stays_blocked_until_its_message_is_acked_with_the_lite_topic(
        cluster: RocketMQCluster) -> None:
    reply_to = unique("reply")
    async with connect(cluster.endpoint) as stub, session(stub, cluster.endpoint) as consumer, \
            session(stub, cluster.endpoint) as producer:
        async with asyncio.timeout(STEP):
            _, queue = await start_lite_consumer(consumer)
            await sync_lite(consumer, pb.PARTIAL_ADD, [reply_to])
            await start_producer(producer, LITE_PARENT)
            await send(producer, LITE_PARENT, b"first", lite_topic=reply_to)
            await send(producer, LITE_PARENT, b"second", lite_topic=reply_to)
            first, _ = await receive(consumer, LITE_GROUP, queue, batch=1, invisible=120)
        assert bodies(first) == [b"first"]

        # Lite topics are consumed in order: nothing more while "first" is in flight.
        async with asyncio.timeout(POLL + STEP):
            blocked, status = await receive(consumer, LITE_GROUP, queue, batch=1)
        assert blocked == [] and status.code == pb.MESSAGE_NOT_FOUND

        # An ack without entries[].lite_topic answers OK but acknowledges nothing.
        async with asyncio.timeout(POLL + STEP):
            silent = await ack(consumer, LITE_GROUP, LITE_PARENT, first[0], with_lite_topic=False)
            assert silent.entries[0].status.code == pb.OK
            still_blocked, _ = await receive(consumer, LITE_GROUP, queue, batch=1)
        assert still_blocked == []

        async with asyncio.timeout(STEP):
            acked = await ack(consumer, LITE_GROUP, LITE_PARENT, first[0])
            assert acked.entries[0].status.code == pb.OK
            second, _ = await receive(consumer, LITE_GROUP, queue, batch=1)
        assert bodies(second) == [b"second"]
        await ack(consumer, LITE_GROUP, LITE_PARENT, second[0])


async def test_change_invisible_duration_with_lite_topic_redelivers_soon(cluster: RocketMQCluster) -> None:
    reply_to = unique("reply")
    async with connect(cluster.endpoint) as stub, session(stub, cluster.endpoint) as consumer, \
            session(stub, cluster.endpoint) as producer:
        async with asyncio.timeout(STEP):
            _, queue = await start_lite_consumer(consumer)
            await sync_lite(consumer, pb.PARTIAL_ADD, [reply_to])
            await start_producer(producer, LITE_PARENT)
            await send(producer, LITE_PARENT, b"retry me", lite_topic=reply_to)
            (message,), _ = await receive(consumer, LITE_GROUP, queue)
            request = rpc.ChangeInvisibleDurationRequest(
                group=pb.Resource(name=LITE_GROUP), topic=pb.Resource(name=LITE_PARENT),
                receipt_handle=message.system_properties.receipt_handle,
                message_id=message.system_properties.message_id, lite_topic=reply_to)
            request.invisible_duration.seconds = 1
            changed = await stub.ChangeInvisibleDuration(request, metadata=consumer.metadata(), timeout=STEP)
            assert changed.status.code == pb.OK and changed.receipt_handle, changed
            again, _ = await receive(consumer, LITE_GROUP, queue, poll=10)
        assert bodies(again) == [b"retry me"]
        assert again[0].system_properties.delivery_attempt == 2
        await ack(consumer, LITE_GROUP, LITE_PARENT, again[0])


@pytest.mark.parametrize("lite_topic, message", [
    ("reply.1", "lite topic can only contain alphanumeric characters, hyphens(-), and underscores(_)"),
    ("r" * 65, "lite topic exceed the max size 64"),
])
async def test_proxy_rejects_illegal_lite_topic_names(cluster: RocketMQCluster, lite_topic: str,
                                                       message: str) -> None:
    async with connect(cluster.endpoint) as stub, session(stub, cluster.endpoint) as consumer, \
            session(stub, cluster.endpoint) as producer:
        async with asyncio.timeout(STEP):
            await start_lite_consumer(consumer)
            synced = await sync_lite(consumer, pb.PARTIAL_ADD, [lite_topic])
            await start_producer(producer, LITE_PARENT)
            sent = await send(producer, LITE_PARENT, b"x", lite_topic=lite_topic)
        assert (synced.status.code, synced.status.message) == (pb.ILLEGAL_LITE_TOPIC, message)
        assert (sent.status.code, sent.status.message) == (pb.ILLEGAL_LITE_TOPIC, message)


async def test_exclusive_group_tells_the_previous_subscriber_over_telemetry(cluster: RocketMQCluster) -> None:
    reply_to = unique("reply")
    async with connect(cluster.endpoint) as stub, session(stub, cluster.endpoint) as first, \
            session(stub, cluster.endpoint) as second:
        async with asyncio.timeout(STEP):
            await start_lite_consumer(first, EXCLUSIVE_GROUP)
            await start_lite_consumer(second, EXCLUSIVE_GROUP)
            await sync_lite(first, pb.PARTIAL_ADD, [reply_to], group=EXCLUSIVE_GROUP)
            await sync_lite(second, pb.PARTIAL_ADD, [reply_to], group=EXCLUSIVE_GROUP)
            command = await first.commands.get()
        assert command.notify_unsubscribe_lite_command.lite_topic == reply_to


async def test_lite_consumer_needs_a_group_bound_to_the_parent(cluster: RocketMQCluster) -> None:
    async with connect(cluster.endpoint) as stub, session(stub, cluster.endpoint) as client:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async with asyncio.timeout(STEP):
                await start_lite_consumer(client, PLAIN_GROUP, LITE_PARENT)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "regular group cannot use LITE mode" in raised.value.details()


# ---------------------------------------------------------------------------------------------
# a plain topic, SimpleConsumer style


async def test_plain_topic_simple_consumer_receives_changes_invisibility_and_acks(
        cluster: RocketMQCluster) -> None:
    async with connect(cluster.endpoint) as stub, session(stub, cluster.endpoint) as consumer, \
            session(stub, cluster.endpoint) as producer:
        async with asyncio.timeout(STEP):
            route = await stub.QueryRoute(
                rpc.QueryRouteRequest(topic=pb.Resource(name=PLAIN_TOPIC), endpoints=consumer.endpoints()),
                metadata=consumer.metadata(), timeout=STEP)
            assert route.status.code == pb.OK and route.message_queues, route.status
            await consumer.open_telemetry(
                consumer.settings(pb.SIMPLE_CONSUMER, group=PLAIN_GROUP, topics=(PLAIN_TOPIC,)))
            await consumer.heartbeat(pb.SIMPLE_CONSUMER, PLAIN_GROUP)
            await start_producer(producer, PLAIN_TOPIC)
            sent = await send(producer, PLAIN_TOPIC, b"job")
            assert sent.status.code == pb.OK, sent

        # Any queue of the route will do: the proxy only uses its broker name to pick the broker.
        queue = route.message_queues[0]
        async with asyncio.timeout(POLL + STEP):
            messages, status = await receive(consumer, PLAIN_GROUP, queue)
        assert status.code == pb.OK and bodies(messages) == [b"job"]
        message = messages[0]
        assert message.system_properties.lite_topic == ""

        async with asyncio.timeout(STEP):
            request = rpc.ChangeInvisibleDurationRequest(
                group=pb.Resource(name=PLAIN_GROUP), topic=pb.Resource(name=PLAIN_TOPIC),
                receipt_handle=message.system_properties.receipt_handle,
                message_id=message.system_properties.message_id)
            request.invisible_duration.seconds = 1
            changed = await stub.ChangeInvisibleDuration(request, metadata=consumer.metadata(), timeout=STEP)
            assert changed.status.code == pb.OK, changed.status
            again, _ = await receive(consumer, PLAIN_GROUP, queue, poll=10)
        assert bodies(again) == [b"job"] and again[0].system_properties.delivery_attempt == 2

        async with asyncio.timeout(STEP):
            acked = await ack(consumer, PLAIN_GROUP, PLAIN_TOPIC, again[0])
        assert acked.entries[0].status.code == pb.OK, acked
