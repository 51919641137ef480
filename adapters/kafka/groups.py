"""Capability topics: a port-level consumer group is a Kafka consumer group, and per-message
acks, invisibility, retries and dead letters are built on offsets plus two derived topics.

Kafka only remembers one committed offset per partition and group, so this module keeps the
rest in the member's memory and in Kafka records:

* **Ack = commit the contiguous acked prefix.** Each assigned partition keeps its fetched,
  unsettled records in offset order (``_Partition.pending``). Settling one removes it; the
  lowest unsettled offset is the partition's floor, committed (coalesced, at most every
  ``COMMIT_EVERY`` seconds, and on rebalance and close). A member that dies redelivers what
  lies above its last committed floor: at-least-once.
* **Invisibility timeout, nack, retry limit.** A delivered record is invisible until its
  deadline (an event-loop timer; `extend` moves it). When the deadline passes, or on `nack`,
  the record is **re-published to the group's retry topic** ``tb.retry.<group>.<topic>.<digest>``
  with headers ``tb-id`` (the original message id), ``tb-attempt`` (deliveries so far) and
  ``tb-not-before`` (epoch ms, for `nack(delay)`), and only then settled on its original
  partition, so the committed floor never waits for a retry and the attempt count survives a
  crash from the first retry on. The member consumes the topic and its retry topic as one
  subscription; a retry record is held in memory until ``tb-not-before``.
* **Dead letter.** When a record that has been delivered ``max_attempts`` times times out or
  is nacked, it is published to ``tb.dlq.<group>`` (`dead_letter_topic`) with the lite
  engine's ``x-dlq-*`` headers instead, then settled.
* **Rebalances.** Revoked partitions stop delivering and commit their floor. A partition the
  member gets back in the next generation keeps its in-memory state (outstanding receipts stay
  valid, fetching resumes where it stopped); one it loses is dropped, its receipts become
  unknown, and the new owner redelivers from the committed floor.

Costs and limits: a retry costs one produce + one fetch; a record whose member crashes before
its first timeout or nack restarts its attempt count at 1 (only retries carry the count);
acks are durable after the next commit, not when `ack` returns (an ack lost in a crash means a
duplicate, never a loss).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from lite_engine.waiting import wait_woken

from .. import errors
from ..base import Delivery
from . import names
from .cluster import Cluster, new_epoch
from .translate import port_error, translated

log = logging.getLogger("topicbridge.kafka")

COMMIT_EVERY = 0.05          # seconds between two offset commits of one member (acks coalesce)
RETRY_BACKOFF = 1.0          # seconds before a failed re-publish is tried again
H_ID, H_ATTEMPT, H_NOT_BEFORE = "tb-id", "tb-attempt", "tb-not-before"

READY, INFLIGHT, WAITING, SETTLING, DONE = range(5)


class _Partition:
    __slots__ = ("tp", "pending", "next_fetch", "committed", "revoked", "dropped")

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.pending: dict[int, _Entry] = {}   # unsettled records by offset, in offset order
        self.next_fetch = -1                    # offset after the last record taken from the fetcher
        self.committed = -1
        self.revoked = False                    # a rebalance is under way: deliver nothing from here
        self.dropped = False                    # another member owns it now

    def floor(self) -> int:
        return next(iter(self.pending), self.next_fetch)


class _Entry:
    __slots__ = ("part", "offset", "key", "body", "headers", "message_id", "prior", "deliveries",
                 "state", "receipt", "timer")

    def __init__(self, part, offset, key, body, headers, message_id, prior) -> None:
        self.part: _Partition = part
        self.offset: int = offset
        self.key: str | None = key
        self.body: bytes = body
        self.headers: dict[str, str] = headers
        self.message_id: str = message_id
        self.prior: int = prior          # deliveries before this copy was published (retries)
        self.deliveries = 0              # deliveries of this copy by this member
        self.state = READY
        self.receipt: str | None = None
        self.timer: asyncio.TimerHandle | None = None

    @property
    def attempts(self) -> int:
        return self.prior + self.deliveries


class KafkaGroupConsumer:
    """One member of a port-level consumer group on a capability topic."""

    def __init__(self, cluster: Cluster, topic: str, group: str, *, invisible: float, max_attempts: int,
                 partitions: int, on_close=lambda consumer: None) -> None:
        self.topic, self.group = topic, group
        self._on_close = on_close
        self.retry_topic = names.retry_topic(topic, group)
        self._cluster = cluster
        self._invisible = invisible
        self._max_attempts = max_attempts
        self._partitions = partitions
        self._parts: dict[TopicPartition, _Partition] = {}
        self._ready: deque[_Entry] = deque()
        self._buffered = 0                       # entries in state READY
        self._receipts: dict[str, _Entry] = {}
        self._waiters: list[asyncio.Future] = []
        self._epoch, self._ids = new_epoch(), itertools.count(1)
        self._assigned = asyncio.Event()
        self._commit_wanted = asyncio.Event()
        self._paused = False
        self._background: set[asyncio.Task] = set()
        self._consumer = None
        self._tasks: list[asyncio.Task] = []
        self._failure: Exception | None = None
        self._closed = False

    async def start(self) -> None:
        s = self._cluster.settings
        await self._cluster.ensure_topic(self.retry_topic, self._partitions, {})
        self._consumer = self._cluster.consumer(
            group=names.kafka_group(self.group, self.topic), purpose="group",
            partition_assignment_strategy=(RoundRobinPartitionAssignor,))
        loop = asyncio.get_running_loop()
        try:
            with translated():
                await self._consumer.start()
                self._consumer.subscribe([self.topic, self.retry_topic], listener=_Rebalance(self))
            self._tasks = [loop.create_task(self._fetch_loop()), loop.create_task(self._commit_loop())]
            # Joined before returning: a message published next is already someone's to take.
            async with asyncio.timeout(s.session_timeout + s.request_timeout):
                await self._assigned.wait()
            if self._failure is not None:
                raise port_error(self._failure, session_timeout=self._cluster.settings.session_timeout)
        except TimeoutError:
            log.warning("group %s on %s: no partition assignment yet; receiving will wait for it",
                        self.group, self.topic)
        except BaseException:
            await self.close()
            raise

    # ------------------------------------------------------------ the port

    async def receive(self, max_messages: int = 1, wait: float = 0.0) -> list[Delivery]:
        max_messages, wait = names.take(max_messages, wait)
        await asyncio.sleep(0)   # a consumer that always finds data must still let timers run
        deadline = time.monotonic() + wait
        while True:
            out = self._take(max_messages)
            remaining = deadline - time.monotonic()
            if out or remaining <= 0 or self._closed:
                if out and self._ready:
                    self._wake()
                return out
            if not await wait_woken(self._waiters, remaining, self._wake):
                return []

    async def ack(self, delivery: Delivery) -> None:
        entry = self._claim(delivery)
        self._settled(entry)

    async def nack(self, delivery: Delivery, delay: float = 0.0) -> None:
        delay = names.seconds("delay", delay, allow_zero=True)
        entry = self._claim(delivery)
        await self._republish(entry, delay)

    async def extend(self, delivery: Delivery, seconds: float) -> None:
        seconds = names.seconds("seconds", seconds)
        entry = self._receipts.get(delivery.receipt) if isinstance(delivery.receipt, str) else None
        if entry is None or entry.state != INFLIGHT:
            raise errors.UnknownReceiptError(delivery.receipt)
        entry.timer.cancel()
        entry.timer = asyncio.get_running_loop().call_later(seconds, self._expire, entry, entry.receipt)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._on_close(self)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._background:
            await asyncio.wait(self._background, timeout=self._cluster.settings.request_timeout)
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._commit()
            with contextlib.suppress(Exception):
                await self._consumer.stop()       # leaves the group: its partitions move at once
        for entry in self._receipts.values():
            entry.timer.cancel()
        self._receipts.clear()
        self._wake_all()

    def stats(self) -> dict:
        return {"assigned": sorted(f"{tp.topic}:{tp.partition}" for tp, p in self._parts.items() if not p.revoked),
                "buffered": self._buffered, "inflight": len(self._receipts)}

    # ------------------------------------------------------------ delivery

    # Caller: receive. Affects: ready queue, receipts, timers.
    def _take(self, max_messages: int) -> list[Delivery]:
        out: list[Delivery] = []
        held: list[_Entry] = []
        loop = asyncio.get_running_loop()
        while self._ready and len(out) < max_messages:
            entry = self._ready.popleft()
            if entry.state != READY or entry.part.dropped:
                continue
            if entry.part.revoked:
                held.append(entry)       # may come back to this member in the next generation
                continue
            self._buffered -= 1
            entry.state = INFLIGHT
            entry.deliveries += 1
            entry.receipt = f"{self._epoch}.{next(self._ids):x}"
            self._receipts[entry.receipt] = entry
            entry.timer = loop.call_later(self._invisible, self._expire, entry, entry.receipt)
            out.append(Delivery(self.topic, None, entry.message_id, entry.body, dict(entry.headers), entry.key,
                                entry.attempts, entry.receipt, self))
        self._ready.extend(held)
        self._maybe_resume()
        return out

    def _claim(self, delivery: Delivery) -> _Entry:
        receipt = getattr(delivery, "receipt", None)
        entry = self._receipts.pop(receipt, None) if isinstance(receipt, str) else None
        if entry is None or entry.state != INFLIGHT:
            raise errors.UnknownReceiptError(receipt)
        entry.timer.cancel()
        entry.state = SETTLING
        return entry

    # Caller: the invisibility timer.
    def _expire(self, entry: _Entry, receipt: str) -> None:
        if entry.receipt != receipt or entry.state != INFLIGHT:
            return
        self._receipts.pop(receipt, None)
        entry.state = SETTLING
        self._spawn(self._republish(entry, 0.0))

    # Caller: nack, the invisibility timer, a failed earlier attempt. Affects: retry or DLQ topic.
    async def _republish(self, entry: _Entry, delay: float) -> None:
        if entry.part.dropped:
            return                        # the partition's new owner redelivers it
        try:
            if entry.attempts >= self._max_attempts:
                await self._dead_letter(entry)
            else:
                headers = [(k, v.encode()) for k, v in entry.headers.items()]
                headers += [(H_ID, entry.message_id.encode()), (H_ATTEMPT, str(entry.attempts).encode()),
                            (H_NOT_BEFORE, str(int((time.time() + delay) * 1000)).encode())]
                await self._cluster.produce(self.retry_topic, entry.body, headers=headers,
                                            key=entry.key.encode() if entry.key is not None else None)
        except errors.BackendError as exc:
            if not self._closed:
                log.warning("group %s on %s: could not re-publish message %s, trying again in %ss: %s",
                            self.group, self.topic, entry.message_id, RETRY_BACKOFF, exc)
                asyncio.get_running_loop().call_later(RETRY_BACKOFF, self._retry_later, entry, delay)
            raise
        self._settled(entry)

    def _retry_later(self, entry: _Entry, delay: float) -> None:
        if not self._closed and entry.state == SETTLING:
            self._spawn(self._republish(entry, delay))

    async def _dead_letter(self, entry: _Entry) -> None:
        headers = dict(entry.headers)
        headers.update({"x-dlq-topic": self.topic, "x-dlq-message-id": entry.message_id,
                        "x-dlq-reason": f"delivered {entry.attempts} times without an ack"})
        topic = names.dead_letter_topic(self.group)
        await self._cluster.ensure_topic(topic, self._cluster.settings.topic_partitions, {})
        await self._cluster.produce(topic, entry.body, headers=[(k, v.encode()) for k, v in headers.items()],
                                    key=entry.key.encode() if entry.key is not None else None)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_retrieve)

    # Affects: the partition's floor; schedules a commit.
    def _settled(self, entry: _Entry) -> None:
        entry.state = DONE
        entry.part.pending.pop(entry.offset, None)
        if not entry.part.dropped:
            self._commit_wanted.set()

    # ------------------------------------------------------------ fetching

    # Caller: the task started by start(). Affects: partitions' pending, ready queue, waiters.
    async def _fetch_loop(self) -> None:
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=1000, max_records=self._cluster.settings.max_buffered)
            except asyncio.CancelledError:
                raise
            except kafka_errors.ConsumerStoppedError:
                return
            except kafka_errors.KafkaError as exc:
                if not exc.retriable and not self._assigned.is_set():
                    self._failure = exc          # e.g. a session timeout the broker refuses: start() raises it
                    self._assigned.set()
                log.warning("group %s on %s: fetching failed, retrying: %s", self.group, self.topic, exc)
                await asyncio.sleep(RETRY_BACKOFF)
                continue
            for tp, records in batch.items():
                part = self._parts.get(tp)
                if part is not None and not part.revoked and not part.dropped:
                    for record in records:
                        self._add(part, record)
            if batch:
                self._wake()
                self._maybe_pause()

    def _add(self, part: _Partition, record) -> None:
        if record.offset < part.next_fetch:
            return
        part.next_fetch = record.offset + 1
        headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
        key = record.key.decode(errors="replace") if record.key is not None else None
        message_id, prior, not_before = f"{record.partition}-{record.offset}", 0, 0.0
        if record.topic == self.retry_topic:
            message_id = headers.pop(H_ID, message_id)
            prior = _int(headers.pop(H_ATTEMPT, "0"))
            not_before = _int(headers.pop(H_NOT_BEFORE, "0")) / 1000
        entry = _Entry(part, record.offset, key, record.value or b"", headers, message_id, prior)
        part.pending[record.offset] = entry
        wait = not_before - time.time()
        if wait > 0:
            entry.state = WAITING
            entry.timer = asyncio.get_running_loop().call_later(wait, self._due, entry)
        else:
            self._make_ready(entry)

    def _due(self, entry: _Entry) -> None:
        if entry.state == WAITING and not entry.part.dropped:
            self._make_ready(entry)
            self._wake()

    def _make_ready(self, entry: _Entry) -> None:
        entry.state = READY
        self._buffered += 1
        self._ready.append(entry)

    def _maybe_pause(self) -> None:
        if not self._paused and self._buffered >= self._cluster.settings.max_buffered:
            self._paused = True
            self._consumer.pause(*self._consumer.assignment())

    def _maybe_resume(self) -> None:
        if self._paused and self._buffered < self._cluster.settings.max_buffered // 2:
            self._paused = False
            self._consumer.resume(*self._consumer.assignment())

    def _wake(self) -> None:
        while self._waiters:
            fut = self._waiters.pop(0)
            if not fut.done():
                fut.set_result(None)
                return

    def _wake_all(self) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)

    # ------------------------------------------------------------ commits and rebalances

    async def _commit_loop(self) -> None:
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            try:
                await self._commit()
            except errors.BackendError as exc:
                log.warning("group %s on %s: commit failed, retrying: %s", self.group, self.topic, exc)
                self._commit_wanted.set()
                await asyncio.sleep(RETRY_BACKOFF)
            await asyncio.sleep(COMMIT_EVERY)   # acks arriving meanwhile share the next commit

    async def _commit(self, parts=None) -> None:
        chosen = parts if parts is not None else [p for p in self._parts.values() if not p.revoked]
        offsets = {p.tp: p.floor() for p in chosen if not p.dropped and p.next_fetch >= 0 and p.floor() > p.committed}
        if not offsets:
            return
        try:
            with translated():
                await self._consumer.commit(offsets)
        except (kafka_errors.CommitFailedError, kafka_errors.IllegalStateError) as exc:
            log.info("group %s on %s: commit skipped after a rebalance: %s", self.group, self.topic, exc)
            return
        for tp, offset in offsets.items():
            part = self._parts.get(tp)
            if part is not None:
                part.committed = max(part.committed, offset)

    # Caller: aiokafka's coordinator, before it re-joins the group.
    async def _on_revoked(self, revoked) -> None:
        parts = [self._parts[tp] for tp in revoked if tp in self._parts]
        for part in parts:
            part.revoked = True
        try:
            await self._commit(parts)
        except errors.BackendError as exc:
            log.warning("group %s on %s: commit before rebalance failed: %s", self.group, self.topic, exc)

    # Caller: aiokafka's coordinator, once the new generation's assignment is known.
    def _on_assigned(self, assigned) -> None:
        for tp, part in list(self._parts.items()):
            if tp not in assigned:
                self._drop(part)
        for tp in assigned:
            part = self._parts.get(tp)
            if part is None:
                self._parts[tp] = _Partition(tp)
            elif part.revoked:
                part.revoked = False
                if part.next_fetch >= 0:
                    self._consumer.seek(tp, part.next_fetch)   # what we hold is not fetched again
        self._assigned.set()
        if self._ready:
            self._wake()

    def _drop(self, part: _Partition) -> None:
        part.dropped = True
        del self._parts[part.tp]
        for entry in part.pending.values():
            if entry.state == READY:
                self._buffered -= 1
            if entry.timer is not None:
                entry.timer.cancel()
            if entry.receipt is not None:
                self._receipts.pop(entry.receipt, None)
        part.pending.clear()


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, consumer: KafkaGroupConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked) -> None:
        await self._consumer._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned) -> None:
        self._consumer._on_assigned(assigned)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()   # logged where it happened; this only marks it retrieved
