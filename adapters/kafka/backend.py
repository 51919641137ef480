"""The Backend port on Apache Kafka (see the package docstring for the mapping)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
from collections.abc import Sequence

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from .. import errors
from ..base import Health, Message, TopicSpec
from . import names
from .channel import ParentSpec
from .cluster import Cluster, Settings
from .groups import KafkaGroupConsumer
from .replies import KafkaLiteConsumer
from .security import client_options
from .table import KafkaTable, TableView
from .translate import translated

log = logging.getLogger("topicbridge.kafka")

MIN_RETENTION = 3600.0       # seconds a lite parent's records are kept at least


class _Spec:
    """A topic's settings as recorded in the ``tb.topics`` table (JSON, one row per topic)."""

    __slots__ = ("lite", "ordered", "lite_idle_seconds", "max_attempts", "partitions")

    def __init__(self, lite: bool, ordered: bool, lite_idle_seconds: float | None, max_attempts: int | None,
                 partitions: int) -> None:
        self.lite, self.ordered, self.partitions = lite, ordered, partitions
        self.lite_idle_seconds, self.max_attempts = lite_idle_seconds, max_attempts

    def encode(self) -> bytes:
        return json.dumps({k: getattr(self, k) for k in self.__slots__}, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "_Spec":
        data = json.loads(raw)
        return cls(bool(data["lite"]), bool(data.get("ordered")), data.get("lite_idle_seconds"),
                   data.get("max_attempts"), int(data["partitions"]))


class KafkaBackend:
    """Topics, consumer groups, emulated lite topics and compacted tables on a Kafka cluster.

    `reply_partitions` is how many partitions a lite parent topic gets (at least the number of
    gateway instances that share it); `topic_partitions` the same for capability topics (at
    least the number of workers of one capability). Existing topics keep their partition count.
    """

    name = "kafka"
    ordered_publish = True     # publishes reach the producer in call order (outbox.py)

    def __init__(self, bootstrap_servers: str = "127.0.0.1:9092", reply_partitions: int = 16, *,
                 topic_partitions: int = 8, replication_factor: int = -1, max_message_bytes: int = 1 << 20,
                 session_timeout: float = 10.0, heartbeat_interval: float | None = None,
                 request_timeout: float = 30.0, max_attempts: int = 16, lite_idle_seconds: float = 600.0,
                 min_lite_idle_seconds: float = 1.0, max_subscriptions_per_client: int = 200_000,
                 poll_topic_batch: int = 8, max_buffered: int = 1000, client_id: str = "topicbridge",
                 security_protocol: str = "PLAINTEXT", sasl_mechanism: str | None = None,
                 sasl_username: str | None = None, sasl_password: str | None = None,
                 ssl_cafile: str | None = None, ssl_certfile: str | None = None,
                 ssl_keyfile: str | None = None) -> None:
        _positive(reply_partitions=reply_partitions, topic_partitions=topic_partitions,
                  max_message_bytes=max_message_bytes, session_timeout=session_timeout,
                  request_timeout=request_timeout, max_attempts=max_attempts, lite_idle_seconds=lite_idle_seconds,
                  min_lite_idle_seconds=min_lite_idle_seconds,
                  max_subscriptions_per_client=max_subscriptions_per_client, poll_topic_batch=poll_topic_batch,
                  max_buffered=max_buffered)
        if replication_factor != -1 and replication_factor < 1:
            raise ValueError(f"replication_factor must be -1 (broker default) or >= 1, got {replication_factor!r}")
        self.max_message_bytes = max_message_bytes
        self.settings = Settings(
            bootstrap_servers=bootstrap_servers, reply_partitions=reply_partitions,
            topic_partitions=topic_partitions, replication_factor=replication_factor,
            max_message_bytes=max_message_bytes, session_timeout=session_timeout,
            heartbeat_interval=heartbeat_interval or min(3.0, session_timeout / 6),
            request_timeout=request_timeout, max_attempts=max_attempts, lite_idle_seconds=lite_idle_seconds,
            min_lite_idle_seconds=min_lite_idle_seconds, max_subscriptions_per_client=max_subscriptions_per_client,
            poll_topic_batch=poll_topic_batch, max_buffered=max_buffered, client_id=client_id,
            security=client_options(security_protocol, sasl_mechanism, sasl_username, sasl_password,
                                    ssl_cafile, ssl_certfile, ssl_keyfile))
        self._cluster = Cluster(self.settings)
        self._topics: TableView | None = None
        self._specs: dict[str, tuple[bytes, _Spec]] = {}
        self._tables: dict[str, TableView] = {}
        self._table_lock = asyncio.Lock()
        self._round_robin: dict[str, itertools.count] = {}
        self._resolving: dict[str, list] = {}    # topic -> [lock, publishes waiting for its settings]
        self._group_consumers: set[KafkaGroupConsumer] = set()
        self._lite_clients: dict[str, KafkaLiteConsumer] = {}
        self._started = False

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self._cluster.start()
        try:
            self._topics = TableView(self._cluster, names.TOPICS_TOPIC)
            await self._topics.open()
        except BaseException:
            await self.close()
            raise
        self._started = True

    async def close(self) -> None:
        for consumer in [*self._group_consumers, *self._lite_clients.values()]:
            await consumer.close()
        for view in [*self._tables.values(), *([self._topics] if self._topics else [])]:
            await view.close()
        await self._cluster.close()

    async def health(self) -> Health:
        detail = {"bootstrap_servers": self.settings.bootstrap_servers, "topics": len(self._topics.rows) if self._topics else 0,
                  "group_consumers": len(self._group_consumers), "lite_clients": len(self._lite_clients)}
        if not self._started or self._cluster.closed:
            return Health(False, self.name, {**detail, "error": "not started" if not self._started else "closed"})
        try:
            async with asyncio.timeout(5):
                with translated():
                    cluster = await self._cluster.admin.describe_cluster()
            detail["brokers"] = len(cluster.get("brokers", ()))
            detail["controller_id"] = cluster.get("controller_id")
        except (errors.BackendError, TimeoutError) as exc:
            return Health(False, self.name, {**detail, "error": str(exc) or type(exc).__name__})
        return Health(True, self.name, detail)

    # ------------------------------------------------------------ topics

    async def create_topic(self, spec: TopicSpec) -> None:
        if not isinstance(spec, TopicSpec):
            raise errors.InvalidRequestError("spec", type(spec).__name__, "expected an adapters.base.TopicSpec")
        names.topic(spec.name)
        if spec.lite_idle_seconds is not None:
            names.seconds("lite_idle_seconds", spec.lite_idle_seconds)
        if spec.max_attempts is not None and (not isinstance(spec.max_attempts, int) or isinstance(spec.max_attempts, bool)
                                              or not 1 <= spec.max_attempts <= 1000):
            raise errors.InvalidRequestError("max_attempts", spec.max_attempts, "must be an integer in 1..1000")
        self._cluster.check_open()
        current = await self._lookup(spec.name)
        if current is not None and current.lite != spec.lite:
            raise errors.ConflictError(f"topic {spec.name!r} is a {'lite' if current.lite else 'capability'} topic")
        await self._define(spec, current)

    async def _define(self, spec: TopicSpec, current: _Spec | None) -> _Spec:
        partitions = self.settings.reply_partitions if spec.lite else self.settings.topic_partitions
        configs = self._lite_configs(spec) if spec.lite else {}
        created = await self._cluster.ensure_topic(spec.name, partitions, configs)
        if current is not None:
            partitions = current.partitions
        elif not created:
            partitions = await self._cluster.partitions(spec.name) or partitions
        wanted = _Spec(spec.lite, spec.ordered, spec.lite_idle_seconds, spec.max_attempts, partitions)
        if current is None or current.encode() != wanted.encode():
            if spec.lite and current is not None and current.lite_idle_seconds != spec.lite_idle_seconds:
                await self._alter_retention(spec)
            await self._write_spec(spec.name, wanted)
        return wanted

    def _lite_configs(self, spec: TopicSpec) -> dict[str, str]:
        retention = max(2 * self._idle(spec.lite_idle_seconds), MIN_RETENTION)
        return {"message.timestamp.type": "LogAppendTime", "retention.ms": str(int(retention * 1000)),
                "segment.ms": str(int(min(retention / 4, 86_400) * 1000))}

    async def _alter_retention(self, spec: TopicSpec) -> None:
        resource = ConfigResource(ConfigResourceType.TOPIC, spec.name, self._lite_configs(spec))
        try:
            with translated():
                await self._cluster.admin.alter_configs([resource])
        except errors.BackendError as exc:   # the logical expiry does not depend on it
            log.warning("could not change the retention of %s: %s", spec.name, exc)

    async def _write_spec(self, name: str, spec: _Spec) -> None:
        sent = await self._cluster.produce(names.TOPICS_TOPIC, spec.encode(), key=name.encode(), partition=0)
        await self._topics.visible(sent.offset)

    async def _lookup(self, name: str) -> _Spec | None:
        spec = self._cached_spec(name)
        if spec is None:
            await self._topics.sync()      # another process may have created it a moment ago
            spec = self._cached_spec(name)
        return spec

    def _cached_spec(self, name: str) -> _Spec | None:
        raw = self._topics.rows.get(name)
        if raw is None:
            return None
        cached = self._specs.get(name)
        if cached is None or cached[0] is not raw:
            cached = self._specs[name] = (raw, _Spec.decode(raw))
        return cached[1]

    async def _spec(self, name: str, *, lite: bool) -> _Spec:
        """The topic's settings; a topic used before it was created is created with defaults,
        as the lite engine does."""
        spec = await self._lookup(name)
        if spec is None:
            spec = await self._define(TopicSpec(name, lite=lite), None)
        if spec.lite != lite:
            raise errors.ConflictError(f"topic {name!r} is a {'lite' if spec.lite else 'capability'} topic")
        return spec

    def _idle(self, seconds: float | None) -> float:
        return max(seconds or self.settings.lite_idle_seconds, self.settings.min_lite_idle_seconds)

    # ------------------------------------------------------------ publish

    async def publish(self, topic: str, message: Message, *, lite_topic: str | None = None) -> str:
        """Append a message; returns its id ("<partition>-<offset>") once all in-sync replicas
        have it."""
        [sent] = await self._start(topic, (message,), lite_topic)
        return _message_id(await sent)

    async def publish_many(self, topic: str, messages: Sequence[Message], *,
                           lite_topic: str | None = None) -> list[str]:
        """Publish `messages` in order, sent without waiting for each other (they share
        produce requests); see adapters.base.publish_many for the promise."""
        sent = await self._start(topic, messages, lite_topic)
        results = await asyncio.gather(*sent, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [_message_id(r) for r in results]

    async def _start(self, topic: str, messages: Sequence[Message], lite_topic: str | None) -> list[asyncio.Future]:
        """Validate, then hand the records to the outbox in call order (`ordered_publish`): at
        once when the topic's settings are known, else behind the publishes of that topic
        already waiting for them."""
        self._cluster.check_open()
        name = names.topic(topic, system_ok=lite_topic is None)
        if lite_topic is not None:
            names.lite_topic(lite_topic)
        messages = names.messages(messages, self.max_message_bytes)
        lite = lite_topic is not None
        if name not in self._resolving:
            spec = self._cached_spec(name)
            if spec is not None and spec.lite == lite:
                return [self._submit(name, spec, m, lite_topic) for m in messages]
        waiting = self._resolving.setdefault(name, [asyncio.Lock(), 0])
        waiting[1] += 1
        try:
            async with waiting[0]:      # FIFO: publishes of one topic submit in call order
                spec = await self._spec(name, lite=lite)
                return [self._submit(name, spec, m, lite_topic) for m in messages]
        finally:
            waiting[1] -= 1
            if not waiting[1]:
                del self._resolving[name]

    def _submit(self, name: str, spec: _Spec, message: Message, lite_topic: str | None) -> asyncio.Future:
        headers = [(k, v.encode()) for k, v in message.headers.items()]
        if lite_topic is None:
            # Record format (capability topic): key = message key, value = body, headers as given.
            key = message.key.encode() if message.key is not None else None
            partition = (names.lite_partition(message.key, spec.partitions) if message.key is not None
                         else next(self._counter(name)) % spec.partitions)
        else:
            # Record format (lite parent): key = lite topic, value = body, headers as given plus
            # tb-key = the message's own key (see replies.py).
            key = lite_topic.encode()
            partition = names.lite_partition(lite_topic, spec.partitions)
            if message.key is not None:
                headers.append(("tb-key", message.key.encode()))
        return self._cluster.outbox.submit(name, bytes(message.body), key=key, headers=headers or None,
                                           partition=partition, size=len(message.body))

    def _counter(self, topic: str) -> itertools.count:
        counter = self._round_robin.get(topic)
        if counter is None:   # keyless messages go round-robin, so members of a group share them
            counter = self._round_robin[topic] = itertools.count(random.randrange(1 << 16))
        return counter

    # ------------------------------------------------------------ consumers

    async def group_consumer(self, topic: str, group: str, *, invisible: float = 30.0) -> KafkaGroupConsumer:
        self._cluster.check_open()
        name = names.topic(topic, system_ok=True)
        names.group(group)
        invisible = names.seconds("invisible", invisible)
        spec = await self._spec(name, lite=False)
        consumer = KafkaGroupConsumer(self._cluster, name, group, invisible=invisible,
                                      max_attempts=spec.max_attempts or self.settings.max_attempts,
                                      partitions=spec.partitions, on_close=self._group_consumers.discard)
        self._group_consumers.add(consumer)
        try:
            await consumer.start()
        except BaseException:
            self._group_consumers.discard(consumer)
            raise
        return consumer

    async def lite_consumer(self, topic: str, group: str, client_id: str | None = None,
                            *, invisible: float = 30.0) -> KafkaLiteConsumer:
        self._cluster.check_open()
        name = names.topic(topic)
        names.group(group)
        client_id = names.client_id(client_id) if client_id is not None else new_client_id(group)
        invisible = names.seconds("invisible", invisible)
        existing = self._lite_clients.get(client_id)
        if existing is not None:
            if (existing.group, existing.topic) != (group, name):
                raise errors.InvalidRequestError("client id", client_id, f"is bound to topic {existing.topic!r} "
                                                                         f"in group {existing.group!r}")
            return existing
        spec = await self._spec(name, lite=True)
        parent = ParentSpec(name, spec.partitions, spec.ordered, self._idle(spec.lite_idle_seconds),
                            spec.max_attempts or self.settings.max_attempts)
        consumer = KafkaLiteConsumer(self._cluster, parent, group, client_id, invisible,
                                     on_close=lambda c: self._lite_clients.pop(c.client_id, None))
        self._lite_clients[client_id] = consumer
        try:
            await consumer.start()
        except BaseException:
            self._lite_clients.pop(client_id, None)
            raise
        return consumer

    def dead_letter_topic(self, group: str) -> str:
        return names.dead_letter_topic(group)

    # ------------------------------------------------------------ tables

    async def table(self, name: str) -> KafkaTable:
        self._cluster.check_open()
        names.table(name)
        async with self._table_lock:
            view = self._tables.get(name)
            if view is None:
                view = TableView(self._cluster, names.table_topic(name))
                await view.open()
                self._tables[name] = view
        return KafkaTable(self._cluster, name, view)


def _message_id(sent) -> str:
    return f"{sent.partition}-{sent.offset}"


def new_client_id(prefix: str) -> str:
    return f"{prefix[:180]}-{os.getpid()}-{os.urandom(4).hex()}"


def _positive(**values) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{key} must be a positive number, got {value!r}")
