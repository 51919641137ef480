"""Tables (registry, task index, the adapter's own topic registry) as compacted Kafka topics.

A table is one single-partition topic with ``cleanup.policy=compact``. Record format, written by
`KafkaTable.put` / `delete`:

    key    UTF-8 table key (1..1024 bytes, printable)
    value  the row's bytes; a null value is a tombstone (the row was deleted)
    no headers; the broker's compaction keeps the newest record of every key

Every backend instance keeps a `TableView`: it reads the topic from its beginning when the table
is first opened (`open` returns once it has read up to the end offset it found), then tails it.
Reads (`get`, `items`) answer from that view. A write returns once the broker acknowledged it
(acks=all) *and* this instance's view has read it back, so a caller reads its own writes.
Other instances see a write when their view reads it (normally within a fetch round trip).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import TopicPartition
from aiokafka import errors as kafka_errors

from .. import errors
from . import names
from .cluster import Cluster
from .translate import translated

log = logging.getLogger("topicbridge.kafka")

COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "3600000"}


class TableView:
    """The local, continuously updated copy of one compacted topic."""

    def __init__(self, cluster: Cluster, topic: str) -> None:
        self.topic = topic
        self.rows: dict[str, bytes] = {}
        self._cluster = cluster
        self._tp = TopicPartition(topic, 0)
        self._consumer = None
        self._position = 0                      # next offset this view has not applied
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._pump: asyncio.Task | None = None
        self._failure: BaseException | None = None
        self.records_read = 0

    async def open(self) -> None:
        await self._cluster.ensure_topic(self.topic, 1, COMPACTED)
        self._consumer = self._cluster.consumer(purpose=f"table-{self.topic[:40]}")
        try:
            with translated():
                await self._consumer.start()
                self._consumer.assign([self._tp])
                await self._consumer.seek_to_beginning(self._tp)
            self._pump = asyncio.get_running_loop().create_task(self._run())
            await self.sync()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
        self._fail(errors.BackendUnavailableError("kafka", f"table {self.topic!r} is closed"))

    async def sync(self) -> None:
        """Return once this view has applied everything the topic held when called."""
        end = (await self._cluster.offsets([self._tp], end=True))[self._tp]
        if end > 0:
            await self.visible(end - 1)

    async def visible(self, offset: int) -> None:
        """Return once the record at `offset` (or a later one) has been applied to `rows`."""
        if self._failure is not None:
            raise self._failure
        if self._position > offset:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((offset, fut))
        await fut

    # Caller: the task started by open(). Affects: rows, position, waiters.
    async def _run(self) -> None:
        while True:
            try:
                batch = await self._consumer.getmany(self._tp, timeout_ms=1000)
                for record in batch.get(self._tp, ()):
                    self.records_read += 1
                    key = record.key.decode(errors="replace") if record.key is not None else None
                    if key is None:
                        continue    # not written by this adapter; a table row always has a key
                    if record.value is None:
                        self.rows.pop(key, None)
                    else:
                        self.rows[key] = record.value
                self._position = max(self._position, await self._consumer.position(self._tp))
            except asyncio.CancelledError:
                raise
            except kafka_errors.KafkaError as exc:   # the consumer reconnects by itself; keep tailing
                log.warning("table %s: reading failed, retrying: %s", self.topic, exc)
                await asyncio.sleep(0.5)
                continue
            self._wake()

    def _wake(self) -> None:
        keep = []
        for offset, fut in self._waiters:
            if fut.done():
                continue
            if offset < self._position:
                fut.set_result(None)
            else:
                keep.append((offset, fut))
        self._waiters = keep

    def _fail(self, exc: BaseException) -> None:
        self._failure = exc
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(exc)
        self._waiters = []


class KafkaTable:
    """The port's `Table` over a `TableView` shared by every handle of this backend instance."""

    def __init__(self, cluster: Cluster, name: str, view: TableView) -> None:
        self.name = name
        self._cluster = cluster
        self._view = view

    async def put(self, key: str, value: bytes) -> None:
        names.table_key(key)
        if not isinstance(value, (bytes, bytearray)):
            raise errors.InvalidRequestError("value", type(value).__name__, "value must be bytes")
        limit = self._cluster.settings.max_message_bytes
        if len(value) > limit:
            raise errors.MessageTooLargeError(len(value), limit)
        sent = await self._cluster.produce(self._view.topic, bytes(value), key=key.encode(), partition=0,
                                           size=len(value))
        await self._view.visible(sent.offset)

    async def get(self, key: str) -> bytes | None:
        return self._view.rows.get(key) if isinstance(key, str) else None

    async def delete(self, key: str) -> bool:
        names.table_key(key)
        await self._view.sync()     # a row another instance wrote a moment ago counts too
        if key not in self._view.rows:
            return False
        sent = await self._cluster.produce(self._view.topic, None, key=key.encode(), partition=0)
        await self._view.visible(sent.offset)
        return True

    async def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        return sorted((k, v) for k, v in self._view.rows.items() if k.startswith(prefix))
