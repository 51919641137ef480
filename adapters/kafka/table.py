"""Tables (registry, task index, the adapter's own topic registry) as compacted Kafka topics.

A table is one single-partition topic with ``cleanup.policy=compact``. Record format, written by
`TableView.write` (the fields are those of `adapters.changelog.Record`):

    key      UTF-8 table key (1..1024 bytes, printable)
    value    the row's bytes; a null value is a tombstone (a delete, or the restore of a deleted row)
    headers  op = put | del | restore, base, id, and expect / version when set (decimal text)

Records without headers (the topic registry, older writers) are unconditional puts and deletes.
A row's version is 1 + the offset of the record that last changed it, so it is the same for every
reader and survives compaction (offsets do). Compare-and-set follows `adapters/changelog.py`: every
instance folds the topic in offset order, rejecting records whose expectation fails, and a writer
reports what its own view decided.

Every backend instance keeps a `TableView`: it reads the topic from its beginning when the table
is first opened (`open` returns once it has read up to the end offset it found), then tails it.
Reads (`get`, `read`, `items`, `scan`) answer from that view. A write returns once the broker
acknowledged it (acks=all) *and* this instance's view has applied it, so a caller reads its own
writes. Other instances see a write when their view reads it (normally within a fetch round trip).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from aiokafka import TopicPartition
from aiokafka import errors as kafka_errors

from .. import errors
from ..changelog import Fold, Outcome, Record, check_expect, check_scan, conflict, fields, parse
from . import names
from .cluster import Cluster
from .translate import translated

log = logging.getLogger("topicbridge.kafka")

# The compaction lag leaves a rejected record and the restore that follows it a minute to meet in
# the same cleaning, so compaction never keeps the rejected one alone (adapters/changelog.py).
COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000", "segment.ms": "3600000"}
SETTLE_ATTEMPTS = 3


class TableView:
    """The local, continuously updated copy of one compacted topic."""

    def __init__(self, cluster: Cluster, topic: str) -> None:
        self.topic = topic
        self.fold = Fold()
        self._cluster = cluster
        self._tp = TopicPartition(topic, 0)
        self._consumer = None
        self._position = 0                      # next offset this view has not applied
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._outcomes: dict[str, asyncio.Future] = {}   # record id -> its writer's future
        self._pump: asyncio.Task | None = None
        self._failure: BaseException | None = None
        self.records_read = 0

    @property
    def rows(self) -> dict[str, bytes]:
        return self.fold.values

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

    async def write(self, record: Record) -> Outcome:
        """Append `record` and return what this view decided about it."""
        if self._failure is not None:
            raise self._failure
        outcome = self._outcomes[record.id] = asyncio.get_running_loop().create_future()
        try:
            headers = [(k, v.encode()) for k, v in fields(record).items()]
            size = len(record.value) if record.value is not None else 0
            sent = await self._cluster.produce(self.topic, record.value, key=record.key.encode(), headers=headers,
                                               partition=0, size=size)
            timeout = self._cluster.settings.request_timeout
            try:
                async with asyncio.timeout(timeout):
                    return await outcome
            except TimeoutError:
                raise errors.BackendUnavailableError(
                    "kafka", f"table {self.topic!r}: the record at offset {sent.offset} was written but not "
                             f"read back within {timeout:g}s (its outcome is unknown)") from None
        finally:
            del self._outcomes[record.id]

    async def settle(self, key: str) -> None:
        """After a rejected record of `key`: make sure the newest record of the key is not a
        rejected one, or compaction would keep it and drop the row (adapters/changelog.py)."""
        for _ in range(SETTLE_ATTEMPTS):
            if key not in self.fold.unsettled:
                return
            try:
                await self.write(self.fold.restore_of(key, new_id()))
            except errors.BackendError as exc:
                log.warning("table %s: could not restore %r after a conflict: %s", self.topic, key, exc)
                return

    # Caller: the task started by open(). Affects: fold, position, waiters, outcomes.
    async def _run(self) -> None:
        while True:
            try:
                batch = await self._consumer.getmany(self._tp, timeout_ms=1000)
                for record in batch.get(self._tp, ()):
                    self._apply(record)
                self._position = max(self._position, await self._consumer.position(self._tp))
            except asyncio.CancelledError:
                raise
            except kafka_errors.KafkaError as exc:   # the consumer reconnects by itself; keep tailing
                log.warning("table %s: reading failed, retrying: %s", self.topic, exc)
                await asyncio.sleep(0.5)
                continue
            self._wake()

    def _apply(self, record) -> None:
        self.records_read += 1
        if record.key is None:
            return      # not written by this adapter; a table row always has a key
        key = record.key.decode(errors="replace")
        headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
        change = parse(key, record.value, headers)
        outcome = self.fold.apply(change, record.offset)
        waiting = self._outcomes.get(change.id) if change.id else None
        if waiting is not None and not waiting.done():
            waiting.set_result(outcome)

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
        for fut in self._outcomes.values():
            if not fut.done():
                fut.set_exception(exc)


def new_id() -> str:
    return uuid.uuid4().hex


class KafkaTable:
    """The port's `Table` over a `TableView` shared by every handle of this backend instance."""

    def __init__(self, cluster: Cluster, name: str, view: TableView) -> None:
        self.name = name
        self._cluster = cluster
        self._view = view

    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        names.table_key(key)
        if not isinstance(value, (bytes, bytearray)):
            raise errors.InvalidRequestError("value", type(value).__name__, "value must be bytes")
        limit = self._cluster.settings.max_message_bytes
        if len(value) > limit:
            raise errors.MessageTooLargeError(len(value), limit)
        outcome = await self._write("put", key, bytes(value), check_expect(expect))
        return outcome.version

    async def get(self, key: str) -> bytes | None:
        return self._view.fold.values.get(key) if isinstance(key, str) else None

    async def read(self, key: str) -> tuple[bytes, int] | None:
        fold = self._view.fold
        if not isinstance(key, str) or key not in fold.values:
            return None
        return fold.values[key], fold.versions[key]

    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        names.table_key(key)
        expect, fold = check_expect(expect), self._view.fold
        if (fold.current(key) == 0) if expect is None else (fold.current(key) != expect):
            await self._view.sync()     # a row another instance wrote a moment ago counts too
        fold.check(self.name, key, expect)
        if key not in fold.values:
            return False
        return (await self._write("del", key, None, expect)).existed

    async def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        if not isinstance(prefix, str):
            raise errors.InvalidRequestError("prefix", prefix, "must be a string")
        return self._view.fold.items(prefix)

    async def scan(self, prefix: str = "", *, after: str = "", limit: int = 100) -> list[tuple[str, bytes]]:
        check_scan(prefix, after, limit)
        return self._view.fold.scan(prefix, after, limit)

    async def _write(self, op: str, key: str, value: bytes | None, expect: int | None) -> Outcome:
        fold = self._view.fold
        if expect is not None and fold.current(key) != expect:
            await self._view.sync()     # the expected version may come from a fresher view
            fold.check(self.name, key, expect)
        record = Record(op, key, value, expect, base=fold.versions.get(key, 0), id=new_id())
        outcome = await self._view.write(record)
        if not outcome.accepted:
            await self._view.settle(key)
            raise conflict(self.name, key, expect, outcome.version)
        return outcome
