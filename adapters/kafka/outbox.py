"""Publishes in the order they were started: the path of `KafkaBackend.publish` to the producer.

Why a queue in front of aiokafka's producer: `AIOKafkaProducer.send` appends a record to its
partition's open batch without suspending *unless* the topic's metadata is missing or the batch
is full; then it waits, and a send started later can append first. Records pass through one
sender task here instead, which awaits `send` for each in start order, so a later record never
overtakes an earlier one of the same partition. From there aiokafka keeps the order: a
partition's batches go one request at a time (the partition is muted while one is in flight),
a failed batch is put back at the head of its queue, and with idempotence on a batch never
expires (it is retried until the broker takes it, sequence numbers dropping duplicates).

Who waits for what:

    submit()  (sync, in start order)  -> queue -> sender task: producer.send() -> batch
    caller awaits the returned future <- the batch's result, or the deadline

Deadline: a caller hears within `request_timeout` seconds. All records share that timeout, so
deadlines fall in start order and one timer, armed for the oldest unfinished record, serves
all. A record that missed its deadline before it reached the producer is never sent; one that
was sent may still be written later (exactly once): its caller gets BackendUnavailableError
saying so, as for any publish whose acknowledgement was lost. So every caller gets either its
message id (the record is durable: acks=all) or an error.

The queue holds at most what callers started and have not seen finish; each caller awaits its
own record, so its length is bounded by the callers' own concurrency.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from aiokafka import AIOKafkaProducer

from .. import errors
from .translate import BACKEND, port_error

log = logging.getLogger("topicbridge.kafka")


class _Record:
    __slots__ = ("topic", "value", "key", "headers", "partition", "size", "future", "deadline")

    def __init__(self, topic, value, key, headers, partition, size, future, deadline) -> None:
        self.topic, self.value, self.key, self.headers = topic, value, key, headers
        self.partition, self.size, self.future, self.deadline = partition, size, future, deadline


class Outbox:
    def __init__(self, producer: AIOKafkaProducer, *, request_timeout: float, max_message_bytes: int) -> None:
        self._producer = producer
        self._timeout = request_timeout
        self._limit = max_message_bytes
        self._queue: collections.deque[_Record] = collections.deque()    # not yet handed to the producer
        self._unfinished: collections.deque[_Record] = collections.deque()   # in start order, for the deadline
        self._wake: asyncio.Future | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._send_loop())

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        gone = errors.BackendUnavailableError(BACKEND, "the Kafka backend was closed before the record was sent")
        for record in self._queue:
            if not record.future.done():
                record.future.set_exception(gone)
        self._queue.clear()

    # Caller: KafkaBackend.publish, synchronously: the start order is the call order.
    def submit(self, topic: str, value: bytes, *, key: bytes | None, headers: list | None, partition: int,
               size: int) -> asyncio.Future:
        """Queue one record; the future gets its RecordMetadata once every in-sync replica has it."""
        if self._closed:
            raise errors.BackendUnavailableError(BACKEND, "the Kafka backend is not started or was closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        record = _Record(topic, value, key, headers, partition, size, future, loop.time() + self._timeout)
        self._queue.append(record)
        unfinished = self._unfinished
        while unfinished and unfinished[0].future.done():   # finish mostly in start order
            unfinished.popleft()
        unfinished.append(record)
        if self._timer is None:
            self._timer = loop.call_at(unfinished[0].deadline, self._expire)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        return future

    # Caller: the task started by start(). The only place records reach the producer.
    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake = loop.create_future()
                await self._wake
                continue
            record = self._queue.popleft()
            if record.future.done():     # its caller was cancelled, or its deadline passed
                continue
            try:
                sent = await self._producer.send(record.topic, record.value, key=record.key,
                                                 headers=record.headers, partition=record.partition)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _fail(record, exc, self._limit)
                continue
            record.value = record.headers = None     # the batch holds them now
            sent.add_done_callback(lambda done, record=record: _settle(record, done, self._limit))

    # Caller: the deadline timer. Affects: the oldest unfinished records.
    def _expire(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        unfinished = self._unfinished
        while unfinished and (unfinished[0].future.done() or unfinished[0].deadline <= now):
            record = unfinished.popleft()
            if not record.future.done():
                record.future.set_exception(errors.BackendUnavailableError(
                    BACKEND, f"Kafka did not acknowledge a record on {record.topic!r} within {self._timeout:g}s "
                             "(it may still be written)"))
        if unfinished and not self._closed:
            self._timer = asyncio.get_running_loop().call_at(unfinished[0].deadline, self._expire)


def _settle(record: _Record, sent: asyncio.Future, limit: int) -> None:
    if record.future.done():
        if not sent.cancelled():
            sent.exception()     # reported to its caller already (the deadline); mark it retrieved
        return
    if sent.cancelled():
        record.future.set_exception(errors.BackendUnavailableError(BACKEND, "the Kafka producer was stopped"))
    elif sent.exception() is not None:
        _fail(record, sent.exception(), limit)
    else:
        record.future.set_result(sent.result())


def _fail(record: _Record, exc: BaseException, limit: int) -> None:
    try:
        error = port_error(exc, size=record.size, limit=limit)
    except BaseException:    # not a Kafka error: hand the caller what happened, unchanged
        error = exc
    if not record.future.done():
        record.future.set_exception(error)
