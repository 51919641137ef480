"""The Kafka plumbing one backend instance shares: settings, one idempotent producer, one admin
client, topic creation, and consumers built with the adapter's settings.

Callers: the backend, group consumers, lite consumers and tables. Nothing here knows the port's
semantics (receipts, lite topics); it only moves records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import RecordMetadata

from .. import errors
from . import security
from .outbox import Outbox
from .translate import BACKEND, translated

log = logging.getLogger("topicbridge.kafka")

_TOPIC_ALREADY_EXISTS = 36
# Room for the key and headers on top of the largest body (headers are bounded by names.py).
RECORD_OVERHEAD = 1_200_000


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str
    reply_partitions: int
    topic_partitions: int
    replication_factor: int          # -1: the broker's default.replication.factor
    max_message_bytes: int
    session_timeout: float           # seconds a silent group member keeps its partitions / holds
    heartbeat_interval: float
    request_timeout: float
    max_attempts: int
    lite_idle_seconds: float
    min_lite_idle_seconds: float
    max_subscriptions_per_client: int
    poll_topic_batch: int
    max_buffered: int                # records a consumer holds in memory before it pauses fetching
    client_id: str
    security: dict = field(default_factory=dict, repr=False)   # aiokafka options of every client (security.py)


class Cluster:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None
        self.admin: AIOKafkaAdminClient | None = None
        self.outbox: Outbox | None = None
        self._known_topics: set[str] = set()
        self._create_lock = asyncio.Lock()
        self._lookup = None
        self._lookup_lock = asyncio.Lock()
        self.closed = False

    async def start(self) -> None:
        s = self.settings
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers, client_id=f"{s.client_id}-producer", acks="all",
            enable_idempotence=True, max_request_size=s.max_message_bytes + RECORD_OVERHEAD,
            request_timeout_ms=int(s.request_timeout * 1000), linger_ms=0, **s.security)
        self.admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap_servers, client_id=f"{s.client_id}-admin",
                                         request_timeout_ms=int(s.request_timeout * 1000), **s.security)
        try:
            with translated():
                await self.producer.start()
                await self.admin.start()
            self.outbox = Outbox(self.producer, request_timeout=s.request_timeout,
                                 max_message_bytes=s.max_message_bytes)
            self.outbox.start()
        except errors.BackendUnavailableError as exc:
            refused = await security.refusal(s.bootstrap_servers, s.security, s.request_timeout)
            await self.close()
            if refused is not None:
                raise refused from exc
            raise
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self.closed = True
        if self.outbox is not None:
            await self.outbox.close()
        if self._lookup is not None:
            with contextlib.suppress(Exception):
                await self._lookup.stop()
        for client in (self.producer, self.admin):
            if client is not None:
                try:
                    await (client.stop() if client is self.producer else client.close())
                except Exception:   # closing what may already be broken; nothing to report to
                    log.debug("closing %s failed", type(client).__name__, exc_info=True)

    def check_open(self) -> None:
        if self.closed or self.producer is None:
            raise errors.BackendUnavailableError(BACKEND, "the Kafka backend is not started or was closed")

    # ------------------------------------------------------------ topics

    async def ensure_topic(self, name: str, partitions: int, configs: dict[str, str]) -> bool:
        """Create `name` unless it exists. Returns True if this call created it."""
        if name in self._known_topics:
            return False
        topic = NewTopic(name, num_partitions=partitions, replication_factor=1,
                         topic_configs={"max.message.bytes": str(self.settings.max_message_bytes + RECORD_OVERHEAD),
                                        **configs})
        # aiokafka's NewTopic refuses -1 ("use the broker's default") although CreateTopics v4+ takes it.
        topic.replication_factor = self.settings.replication_factor
        async with self._create_lock:
            with translated():
                response = await self.admin.create_topics([topic])
        [(code, message)] = [(t["error_code"], t["error_message"]) for t in response.to_object()["topic_errors"]]
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            raise errors.StorageError(f"could not create Kafka topic {name!r}: error {code}: {message}")
        if code == 0:
            await self._wait_for_leaders(name, partitions)
        self._known_topics.add(name)
        return code == 0

    async def _wait_for_leaders(self, name: str, partitions: int) -> None:
        """Return once the metadata shows every partition of a new topic with a leader.

        Creation returns before the controller has propagated the topic; a group leader that
        assigns from metadata without it would leave its partitions unassigned until the next
        metadata refresh (minutes), and the first produce would bounce off NotLeader."""
        client = self.producer.client
        client.add_topic(name)
        with translated():
            async with asyncio.timeout(self.settings.request_timeout):
                while True:
                    await client.force_metadata_update()
                    found = client.cluster.partitions_for_topic(name) or set()
                    leaders = [client.cluster.leader_for_partition(TopicPartition(name, p)) for p in found]
                    if len(found) == partitions and all(leader is not None and leader >= 0 for leader in leaders):
                        return
                    await asyncio.sleep(0.02)   # the controller has not propagated it yet

    async def partitions(self, name: str) -> int | None:
        """How many partitions `name` has, or None if Kafka does not know it."""
        cluster = self.producer.client.cluster
        found = cluster.partitions_for_topic(name)
        if not found:
            with translated():
                self.producer.client.add_topic(name)
                await self.producer.client.force_metadata_update()
            found = cluster.partitions_for_topic(name)
        return len(found) if found else None

    async def offsets(self, tps: list[TopicPartition], *, end: bool) -> dict[TopicPartition, int]:
        """First (or next-to-be-written) offsets of `tps`.

        Asked on a connection of its own: a broker answers one request per connection at a
        time, so on a fetching consumer's connection the lookup would wait behind a parked
        fetch (fetch_max_wait_ms)."""
        async with self._lookup_lock:
            if self._lookup is None:
                lookup = self.consumer(purpose="offsets")
                with translated():
                    await lookup.start()
                self._lookup = lookup
        with translated():
            return await (self._lookup.end_offsets(tps) if end else self._lookup.beginning_offsets(tps))

    # ------------------------------------------------------------ records

    async def produce(self, topic: str, value: bytes | None, *, key: bytes | None = None,
                      headers: list[tuple[str, bytes]] | None = None, partition: int | None = None,
                      size: int | None = None) -> RecordMetadata:
        """Send one record and wait until every in-sync replica has it (acks=all).

        The idempotent producer retries a batch until the broker takes it, without limit; this
        waits `request_timeout` for that and then raises BackendUnavailableError. The record may
        still be written later (exactly once, thanks to idempotence): the outcome is unknown,
        as for any publish whose acknowledgement was lost."""
        self.check_open()
        timeout = self.settings.request_timeout
        with translated(size=size, limit=self.settings.max_message_bytes):
            sent = await self.producer.send(topic, value, key=key, headers=headers or None, partition=partition)
            sent.add_done_callback(_retrieve)
            try:
                async with asyncio.timeout(timeout):
                    return await asyncio.shield(sent)
            except TimeoutError:
                raise errors.BackendUnavailableError(
                    BACKEND, f"Kafka did not acknowledge a record on {topic!r} within {timeout:g}s "
                             "(it may still be written)") from None

    def consumer(self, *, group: str | None = None, purpose: str, **overrides) -> AIOKafkaConsumer:
        """An unstarted consumer with the adapter's defaults; commits are always explicit."""
        s = self.settings
        options = dict(
            bootstrap_servers=s.bootstrap_servers, client_id=f"{s.client_id}-{purpose}", group_id=group,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=int(s.session_timeout * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval * 1000),
            request_timeout_ms=int(max(s.request_timeout, s.session_timeout + 5) * 1000),
            max_partition_fetch_bytes=s.max_message_bytes + RECORD_OVERHEAD,
            fetch_max_wait_ms=500,
            **s.security,
        )
        options.update(overrides)
        return AIOKafkaConsumer(**options)


def new_epoch() -> str:
    """A prefix that makes the receipts of one consumer instance unique across processes and runs."""
    return f"{os.getpid():x}{os.urandom(4).hex()}"


def _retrieve(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()   # a publish that timed out reports its outcome nowhere else
