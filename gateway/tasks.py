"""Tasks over reply channels.

A call becomes a task envelope on the capability's topic; the worker answers on the task's
reply channel (a lite topic). Each gateway instance runs one lite consumer (one client id) and
one relay loop that takes ready reply channels, folds every event into the task, writes the
folded task to the task index table (so any instance can answer GetTask/ListTasks, also after a
restart) and hands the event to the calls waiting on this instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

from a2a.types import a2a_pb2

from adapters.base import Backend, Delivery, Message, TopicSpec
from adapters.errors import BackendError, BackendUnavailableError

from . import channels, fold
from .envelope import ControlEvent, EnvelopeError, ReplyEvent, TaskEnvelope

log = logging.getLogger("topicbridge.tasks")

REPLY_IDLE_SECONDS = 24 * 3600    # a reply channel outlives its task by this long (re-attach)
WATCH_QUEUE = 1024


class TaskError(Exception):
    """Raised for task-level problems the protocol layers map to their errors."""

    def __init__(self, kind: str, task_id: str, reason: str) -> None:
        self.kind, self.task_id, self.reason = kind, task_id, reason
        super().__init__(reason)


class Watch:
    """The events of one task for one waiting call. Bounded: a consumer too slow to keep up
    is cut off (it can re-subscribe and gets the folded task first)."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self._queue: asyncio.Queue = asyncio.Queue(WATCH_QUEUE)
        self.overflowed = False

    def push(self, event: a2a_pb2.StreamResponse | None) -> None:
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            log.warning("watcher of task %s fell %d events behind; closing it", self.task_id, WATCH_QUEUE)
            self._queue = asyncio.Queue(1)
            self._queue.put_nowait(None)

    async def events(self) -> AsyncIterator[a2a_pb2.StreamResponse]:
        while (event := await self._queue.get()) is not None:
            yield event
        if self.overflowed:
            raise TaskError("overflow", self.task_id, "subscriber too slow; re-subscribe to continue")


@dataclass
class _Active:
    task: a2a_pb2.Task                      # every event folded in so far: what callers have seen
    position: tuple[int, int] = (0, -1)     # of the last event folded
    indexed: tuple[int, int] = (0, -1)      # the task index holds the fold up to here
    hooked: tuple[int, int] = (0, -1)       # on_event hooks have run up to here
    watches: list[Watch] = field(default_factory=list)


class TaskService:
    def __init__(self, backend: Backend, *, instance_id: str | None = None, poll_wait: float = 1.0) -> None:
        self.backend = backend
        self.instance_id = instance_id or f"gw-{os.getpid()}-{os.urandom(3).hex()}"
        self.poll_wait = poll_wait
        self._active: dict[str, _Active] = {}
        self._consumer = None
        self._table = None
        self._relay: asyncio.Task | None = None
        self.bad_events = 0
        # Awaited by the relay for each event once folded and indexed, before waiting calls see it
        # and before its ack (push notifications are published here). A hook that raises leaves the
        # event unacked.
        self.on_event: list[Callable[[a2a_pb2.Task, a2a_pb2.StreamResponse], Awaitable[None]]] = []

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        for topic in (channels.REPLY_TOPIC, channels.CONTROL_TOPIC):
            await self.backend.create_topic(TopicSpec(topic, lite=True, lite_idle_seconds=REPLY_IDLE_SECONDS))
        self._table = await self.backend.table(channels.TASK_TABLE)
        self._consumer = await self.backend.lite_consumer(channels.REPLY_TOPIC, self.instance_id,
                                                          self.instance_id)
        self._relay = asyncio.get_running_loop().create_task(self._relay_loop())

    async def close(self) -> None:
        if self._relay is not None:
            self._relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay
        for active in self._active.values():
            for watch in active.watches:
                watch.push(None)
        if self._consumer is not None:
            await self._consumer.close()

    # ------------------------------------------------------------ calls

    async def submit(self, capability: str, message: a2a_pb2.Message, *, deadline: float | None = None,
                     metadata: dict | None = None, trace: dict | None = None) -> tuple[a2a_pb2.Task, Watch]:
        """Publish a task for `capability`; return the submitted task and a watch on its events."""
        task_id = await self._new_task_id()
        context_id = message.context_id or channels.new_task_id()
        message.task_id, message.context_id = task_id, context_id
        task = a2a_pb2.Task(id=task_id, context_id=context_id)
        task.status.state = a2a_pb2.TASK_STATE_SUBMITTED
        task.status.timestamp.GetCurrentTime()
        task.history.append(message)
        watch = Watch(task_id)
        submitted = _copy(task)             # the relay folds events into `task` from now on
        self._active[task_id] = _Active(task, watches=[watch])
        await self._consumer.subscribe([channels.reply_channel(task_id)])
        envelope = TaskEnvelope(task_id, context_id, capability, message, deadline, time.time(),
                                trace or {}, metadata or {})
        # The index entry and the envelope are written together (one group commit on the lite
        # engine). The put is issued first, so a reply's later put of the same key lands after it.
        indexed, published = await asyncio.gather(
            self._table.put(task_id, task.SerializeToString()),
            self.backend.publish(channels.capability_topic(capability),
                                 Message(envelope.encode(), {"task_id": task_id}, task_id)),
            return_exceptions=True)
        if isinstance(published, BaseException):
            self._active.pop(task_id, None)
            with contextlib.suppress(BackendError):
                await self._consumer.unsubscribe([channels.reply_channel(task_id)])
            if isinstance(published, BackendError):
                with contextlib.suppress(BackendError):
                    await self._table.delete(task_id)
            raise published
        if isinstance(indexed, BaseException):
            # The task is accepted (its envelope is durable): the relay indexes it with its
            # first reply event, so GetTask on another instance finds it from then on.
            if not isinstance(indexed, BackendError):
                raise indexed
            log.warning("indexing submitted task %s failed (%s); its first reply event indexes it",
                        task_id, indexed)
        return submitted, watch

    async def _new_task_id(self) -> str:
        # A backend that emulates lite topics on partitions (Kafka) can pick a name that lands
        # on a partition this instance reads, so no other instance's replies are read (see
        # LiteConsumer.routed_name in adapters/base.py).
        routed = getattr(self._consumer, "routed_name", None)
        if routed is None:
            return channels.new_task_id()
        name = await routed(lambda: channels.reply_channel(channels.new_task_id()))
        return channels.task_id_of(name)

    async def get(self, task_id: str) -> a2a_pb2.Task | None:
        active = self._active.get(task_id)
        if active is not None:
            return _copy(active.task)
        raw = await self._table.get(task_id) if _plausible_id(task_id) else None
        return a2a_pb2.Task.FromString(raw) if raw else None

    async def list(self, *, context_id: str = "", state: int = 0) -> list[a2a_pb2.Task]:
        """Every indexed task, newest first."""
        tasks = [a2a_pb2.Task.FromString(raw) for _, raw in await self._table.items()]
        tasks = [t for t in tasks if (not context_id or t.context_id == context_id)
                 and (not state or t.status.state == state)]
        tasks.sort(key=lambda t: t.status.timestamp.ToNanoseconds(), reverse=True)
        return tasks

    async def cancel(self, task_id: str, reason: str = "") -> a2a_pb2.Task:
        task = await self.get(task_id)
        if task is None:
            raise TaskError("not_found", task_id, f"task {task_id!r} not found")
        if fold.is_final(task.status.state):
            raise TaskError("not_cancelable", task_id,
                            f"task {task_id!r} is {a2a_pb2.TaskState.Name(task.status.state)}")
        await self.backend.publish(channels.CONTROL_TOPIC, Message(ControlEvent(task_id, "cancel", reason).encode()),
                                   lite_topic=channels.control_channel(task_id))
        return task

    async def subscribe(self, task_id: str) -> AsyncIterator[a2a_pb2.StreamResponse]:
        """The task first, then its events until it ends: from this instance's relay when the task
        is active here, otherwise by re-attaching to its reply channel."""
        task = await self.get(task_id)
        if task is None:
            raise TaskError("not_found", task_id, f"task {task_id!r} not found")
        yield a2a_pb2.StreamResponse(task=task)
        if fold.is_final(task.status.state):
            return
        active = self._active.get(task_id)
        if active is not None:
            watch = Watch(task_id)
            active.watches.append(watch)
            async for event in watch.events():
                yield event
            return
        async for event in self._reattach(task_id, task):
            yield event

    async def _reattach(self, task_id: str, seen: a2a_pb2.Task) -> AsyncIterator[a2a_pb2.StreamResponse]:
        group = f"{self.instance_id}-attach-{os.urandom(3).hex()}"
        consumer = await self.backend.lite_consumer(channels.REPLY_TOPIC, group, group)
        try:
            await consumer.subscribe([channels.reply_channel(task_id)])
            task, position = a2a_pb2.Task(), (0, -1)
            while True:
                for d in await consumer.poll(max_messages=64, wait=self.poll_wait):
                    event = await self._decode(d)
                    if event is None or event.position <= position:
                        continue
                    position = event.position
                    fold.apply(task, event.event)
                    if _news(seen, task, event):
                        yield event.event
                    if event.final:
                        return
        finally:
            await consumer.close()

    # ------------------------------------------------------------ relay

    async def _relay_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                deliveries = await self._consumer.poll(max_messages=64, wait=self.poll_wait)
                backoff = 0.1
            except BackendUnavailableError as e:
                log.warning("reply poll failed (%s); retrying in %.1fs", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            await self._relay_batch(deliveries)

    async def _relay_batch(self, deliveries: list[Delivery]) -> None:
        """Fold a poll's events task by task; tasks are handled concurrently, so one fsync of the
        task index covers many of them."""
        by_task: dict[str, list[tuple[Delivery, ReplyEvent]]] = {}
        for delivery in deliveries:
            event = await self._decode(delivery)
            if event is not None:
                by_task.setdefault(event.task_id, []).append((delivery, event))
        await asyncio.gather(*(self._relay_task(task_id, items) for task_id, items in by_task.items()))

    async def _relay_task(self, task_id: str, items: list[tuple[Delivery, ReplyEvent]]) -> None:
        """Fold the events into the task and show them to waiting calls at once: each is durable on
        the reply channel already. Then index the folded task and run the hooks; only then ack.
        A failure there leaves the events unacked: redelivered, they are not shown twice, but are
        indexed and hooked then (`indexed` and `hooked` trail `position` until that succeeds)."""
        try:
            active = self._active.get(task_id) or await self._load_active(task_id)
            pending: dict[tuple, ReplyEvent] = {}
            for _, event in sorted(items, key=lambda item: item[1].position):
                if event.position > active.position:   # else a duplicate of at-least-once delivery
                    active.position = event.position
                    fold.apply(active.task, event.event)
                    active.task.id = active.task.id or task_id
                    for watch in active.watches:
                        watch.push(event.event)
                if event.position > active.hooked:
                    pending[event.position] = event
            if active.indexed < active.position:
                position = active.position
                await self._table.put(task_id, active.task.SerializeToString())
                active.indexed = max(active.indexed, position)
            for position, event in sorted(pending.items()):
                for hook in self.on_event:
                    await hook(active.task, event.event)
                active.hooked = position
            await asyncio.gather(*(delivery.ack() for delivery, _ in items))
        except BackendError as e:
            log.warning("relaying events of task %s failed: %s (they will be redelivered)", task_id, e)
            return
        if fold.is_final(active.task.status.state) and any(event.final for _, event in items):
            for watch in active.watches:
                watch.push(None)
            self._active.pop(task_id, None)
            with contextlib.suppress(BackendError):
                await self._consumer.unsubscribe([channels.reply_channel(task_id)])

    async def _load_active(self, task_id: str) -> _Active:
        raw = await self._table.get(task_id)
        active = _Active(a2a_pb2.Task.FromString(raw) if raw else a2a_pb2.Task(id=task_id))
        self._active[task_id] = active
        return active

    async def _decode(self, delivery: Delivery) -> ReplyEvent | None:
        try:
            return ReplyEvent.decode(delivery.body)
        except EnvelopeError as e:
            self.bad_events += 1
            log.warning("dropping malformed reply event %s on %s: %s", delivery.message_id,
                        delivery.lite_topic, e.reason)
            await delivery.ack()
            return None


def _copy(task: a2a_pb2.Task) -> a2a_pb2.Task:
    out = a2a_pb2.Task()
    out.CopyFrom(task)
    return out


def _plausible_id(task_id: str) -> bool:
    return isinstance(task_id, str) and 0 < len(task_id) <= 128 and task_id.isprintable()


def _news(seen: a2a_pb2.Task, folded: a2a_pb2.Task, event: ReplyEvent) -> bool:
    """While re-attaching, skip the replayed events the first `task` snapshot already covered."""
    return (event.final or folded.status.state != seen.status.state
            or len(folded.history) > len(seen.history) or len(folded.artifacts) > len(seen.artifacts))
