"""Tasks over reply channels.

A call becomes a task envelope on the capability's topic; the worker answers on the task's
reply channel (a lite topic). Each gateway instance runs one lite consumer (one client id) and
one relay loop that takes ready reply channels, folds every event into the task, writes the
folded task to the task index table (so any instance can answer GetTask/ListTasks, also after a
restart) and hands the event to the calls waiting on this instance.

A task that needs input (INPUT_REQUIRED, AUTH_REQUIRED) is continued with `resume`: the answer
joins the task's history and goes out as a new envelope on the capability topic with the next
`turn`. The task records its capability and turn in `task.metadata["topicbridge"]`, so any
instance can continue it; a turn's reply events carry the turn, and events are ordered (and
de-duplicated) by (turn, attempt, seq).
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
from adapters.errors import BackendError

from . import channels
from . import fold
from .envelope import ControlEvent, EnvelopeError, ReplyEvent, TaskEnvelope

log = logging.getLogger("topicbridge.tasks")

REPLY_IDLE_SECONDS = 24 * 3600    # a reply channel outlives its task by this long (re-attach)
WATCH_QUEUE = 1024
# Events that do not end a turn are indexed (and acked) at most this long after they arrive, many
# at once: a quick task is indexed once, when it ends, rather than once per event. GetTask on
# another instance may show such a task this much behind; this instance answers from memory.
INDEX_DELAY = 0.2


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
    position: tuple = (0, -1)               # of the last event folded
    indexed: tuple = (0, -1)                # the task index holds the fold up to here
    hooked: tuple = (0, -1)                 # on_event hooks have run up to here
    watches: list[Watch] = field(default_factory=list)
    unhooked: dict = field(default_factory=dict)        # position -> ReplyEvent, hooks not run yet
    unacked: list[Delivery] = field(default_factory=list)   # acked once indexed and hooked
    held: list = field(default_factory=list)    # final events shown to waiting calls once indexed


class TaskService:
    def __init__(self, backend: Backend, *, instance_id: str | None = None, poll_wait: float = 1.0,
                 index_delay: float = INDEX_DELAY) -> None:
        self.backend = backend
        self.instance_id = instance_id or f"gw-{os.getpid()}-{os.urandom(3).hex()}"
        self.poll_wait = poll_wait
        self.index_delay = index_delay
        self._due: dict[str, float] = {}        # task id -> when its un-indexed events must be indexed
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
        await self._index_due(float("inf"))     # what was shown gets indexed and acked before leaving
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
        task.metadata[fold.OWN_METADATA] = {"capability": capability}     # for `resume`, on any instance
        watch = Watch(task_id)
        submitted = _copy(task)             # the relay folds events into `task` from now on
        self._active[task_id] = _Active(task, watches=[watch])
        await self._consumer.subscribe([channels.reply_channel(task_id)])
        envelope = TaskEnvelope(task_id, context_id, capability, message, deadline, time.time(),
                                trace or {}, metadata or {})
        published = await self._write_turn(task, envelope)
        if published is not None:
            self._active.pop(task_id, None)
            with contextlib.suppress(BackendError):
                await self._consumer.unsubscribe([channels.reply_channel(task_id)])
            if isinstance(published, BackendError):
                with contextlib.suppress(BackendError):
                    await self._table.delete(task_id)
            raise published
        return submitted, watch

    async def resume(self, task_id: str, message: a2a_pb2.Message, *, capability: str | None = None,
                     deadline: float | None = None, metadata: dict | None = None,
                     trace: dict | None = None) -> tuple[a2a_pb2.Task, Watch]:
        """Continue a task that needs input (A2A multi-turn) with the caller's `message`: it joins
        the task's history and goes to the task's capability as the envelope of the next turn.
        Returns the task as resubmitted (SUBMITTED) and a watch on the new turn's events.

        TaskError kinds: not_found; context_mismatch (the message names another context);
        wrong_capability (`capability`, the one the caller addressed, is not the task's);
        terminal (the task has ended, it cannot be restarted); running (it does not wait for input)."""
        found = await self.get(task_id)
        if found is None:
            raise TaskError("not_found", task_id, f"task {task_id[:200]!r} not found")
        if message.context_id and message.context_id != found.context_id:
            raise TaskError("context_mismatch", task_id, f"context {message.context_id[:200]!r} does not match "
                                                         f"context {found.context_id!r} of task {task_id!r}")
        # From here to the subscribe below nothing awaits: two calls on this instance cannot both
        # take the task. (Two instances can, in a race this table offers no compare-and-set for.)
        active = self._active.get(task_id)
        task = active.task if active is not None else found
        state = task.status.state
        if state in fold.TERMINAL:
            raise TaskError("terminal", task_id, f"task {task_id!r} is {a2a_pb2.TaskState.Name(state)}: a task "
                                                 "that ended cannot be restarted; send a new message without "
                                                 "task_id to start a new task")
        if state not in fold.INTERRUPTED:
            raise TaskError("running", task_id, f"task {task_id!r} is {a2a_pb2.TaskState.Name(state)}: it does "
                                                "not wait for input; follow it with SubscribeToTask or cancel it")
        recorded, turn = _recorded(task)
        recorded = recorded or capability or ""
        if not recorded:
            raise TaskError("wrong_capability", task_id, f"task {task_id!r} does not record its capability")
        if capability and capability != recorded:
            raise TaskError("wrong_capability", task_id, f"task {task_id!r} belongs to {recorded!r}, "
                                                         f"not {capability!r}")
        turn += 1
        before = _copy(task)
        if task.status.HasField("message"):         # the question joins the history, as the fold does
            task.history.append(task.status.message)
        history = list(a2a_pb2.Task(history=task.history).history)      # for the envelope: a copy
        message.task_id, message.context_id = task_id, task.context_id
        task.history.append(message)
        task.status.Clear()
        task.status.state = a2a_pb2.TASK_STATE_SUBMITTED
        task.status.timestamp.GetCurrentTime()
        task.metadata[fold.OWN_METADATA] = {"capability": recorded, "turn": turn}
        start = (turn, 0, -1)      # whatever earlier turns left on the channel is not news
        watch = Watch(task_id)
        if active is None:
            active = self._active[task_id] = _Active(task, start, start, start)
        else:       # the relay may still be finishing the interrupted turn: its calls get their answer
            _release(active, ending=True)
            active.position = active.indexed = start
        active.watches = [watch]
        resumed = _copy(task)
        await self._consumer.subscribe([channels.reply_channel(task_id)])
        envelope = TaskEnvelope(task_id, task.context_id, recorded, message, deadline, time.time(), trace or {},
                                metadata or {}, turn, history)
        published = await self._write_turn(task, envelope)
        if published is not None:       # the task stays as it was, waiting for input
            task.CopyFrom(before)
            watch.push(None)
            if self._active.get(task_id) is active:
                self._active.pop(task_id)
            with contextlib.suppress(BackendError):
                await self._consumer.unsubscribe([channels.reply_channel(task_id)])
            with contextlib.suppress(BackendError):
                await self._table.put(task_id, before.SerializeToString())
            raise published
        return resumed, watch

    async def _write_turn(self, task: a2a_pb2.Task, envelope: TaskEnvelope) -> BaseException | None:
        """Index `task` and publish its envelope together (one group commit on the lite engine; the
        put is issued first, so a reply's later put of the same key lands after it). Returns the
        publish's failure for the caller to undo. A failed index write is only logged: the turn is
        accepted (its envelope is durable) and its first reply event indexes the task."""
        indexed, published = await asyncio.gather(
            self._table.put(task.id, task.SerializeToString()),
            self.backend.publish(channels.capability_topic(envelope.capability),
                                 Message(envelope.encode(), {"task_id": task.id}, task.id)),
            return_exceptions=True)
        if isinstance(published, BaseException):
            return published
        if isinstance(indexed, BaseException):
            if not isinstance(indexed, BackendError):
                raise indexed
            log.warning("indexing task %s failed (%s); its first reply event indexes it", task.id, indexed)
        return None

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
        if task.status.state in fold.TERMINAL:
            raise TaskError("not_cancelable", task_id,
                            f"task {task_id!r} is {a2a_pb2.TaskState.Name(task.status.state)}")
        if task.status.state in fold.INTERRUPTED:
            await self._cancel_waiting(task, reason)
            return task
        await self.backend.publish(channels.CONTROL_TOPIC, Message(ControlEvent(task_id, "cancel", reason).encode()),
                                   lite_topic=channels.control_channel(task_id))
        return task

    def unwatch(self, watch: Watch) -> None:
        """Stop handing events to `watch` (its caller stopped listening)."""
        active = self._active.get(watch.task_id)
        if active is not None and watch in active.watches:
            active.watches.remove(watch)

    async def _cancel_waiting(self, task: a2a_pb2.Task, reason: str) -> None:
        """No worker holds a task that waits for input, so the gateway ends it itself: a CANCELED
        status as the one event of a turn no worker runs, folded and indexed by this instance's
        relay like any other. (A bridged agent's own task is left waiting; see bridge.py.)"""
        _, turn = _recorded(task)
        update = a2a_pb2.TaskStatusUpdateEvent(task_id=task.id, context_id=task.context_id)
        update.status.state = a2a_pb2.TASK_STATE_CANCELED
        update.status.timestamp.GetCurrentTime()
        if reason:
            update.status.message.CopyFrom(a2a_pb2.Message(
                message_id=f"{task.id}-canceled", role=a2a_pb2.ROLE_AGENT, task_id=task.id,
                context_id=task.context_id, parts=[a2a_pb2.Part(text=reason)]))
        event = ReplyEvent(task.id, 1, 0, a2a_pb2.StreamResponse(status_update=update), True, turn + 1)
        if task.id not in self._active:     # this relay folds it; the channel's earlier turns are old news
            start = (turn + 1, 0, -1)
            self._active[task.id] = _Active(task, start, start, start)
        await self._consumer.subscribe([channels.reply_channel(task.id)])
        await self.backend.publish(channels.REPLY_TOPIC, Message(event.encode(), {"task_id": task.id}),
                                   lite_topic=channels.reply_channel(task.id))

    async def subscribe(self, task_id: str) -> AsyncIterator[a2a_pb2.StreamResponse]:
        """The task first, then its events until it ends: from this instance's relay when the task
        is active here, otherwise by re-attaching to its reply channel."""
        task = await self.get(task_id)
        if task is None:
            raise TaskError("not_found", task_id, f"task {task_id!r} not found")
        yield a2a_pb2.StreamResponse(task=task)
        active = self._active.get(task_id)
        if fold.is_final(task.status.state) and active is None:
            return      # (an ended turn still active here ends its watches soon: a cancel or the relay's clean-up)
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
            task, position, turn = a2a_pb2.Task(), (0, 0, -1), _recorded(seen)[1]
            while True:
                for d in await consumer.poll(max_messages=64, wait=self.poll_wait):
                    event = await self._decode(d)
                    if event is None or event.position <= position:
                        continue
                    position = event.position
                    fold.apply(task, event.event)
                    if event.turn < turn:       # an earlier turn's: folded, never news
                        continue
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
                wait = self.poll_wait
                if self._due:
                    wait = max(0.0, min(wait, min(self._due.values()) - time.monotonic()))
                deliveries = await self._consumer.poll(max_messages=64, wait=wait)
                backoff = 0.1
            except BackendError as e:       # unavailable, or anything else the backend says: retry
                log.warning("reply poll failed (%s); retrying in %.1fs", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            try:
                await self._relay_batch(deliveries)
                await self._index_due(time.monotonic())
            except Exception:       # a bug must not stop every task's relay: unacked, they come back
                log.exception("relaying reply events failed; they will be redelivered")

    async def _index_due(self, now: float) -> None:
        due = [task_id for task_id, when in self._due.items() if when <= now]
        await asyncio.gather(*(self._index(task_id) for task_id in due))

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
        """Fold the events into the task. Waiting calls see an event at once (it is durable on
        the reply channel already), except the event that ends a turn: that one is indexed first
        (the folded task written to the task index), so a caller who answers an INPUT_REQUIRED
        on another instance, or asks it for the task, finds the turn's end there. Then hooks
        run and the events are acked; events that do not end a turn are indexed, hooked and
        acked within `index_delay`, together. Until acked, they come back if this instance dies."""
        try:
            active = self._active.get(task_id) or await self._load_active(task_id)
        except BackendError as e:
            log.warning("relaying events of task %s failed: %s (they will be redelivered)", task_id, e)
            return
        for delivery, event in sorted(items, key=lambda item: item[1].position):
            if event.position > active.position:   # else a duplicate of at-least-once delivery
                active.position = event.position
                fold.apply(active.task, event.event)
                active.task.id = active.task.id or task_id
                if event.final:
                    active.held.append(event.event)
                else:
                    for watch in active.watches:
                        watch.push(event.event)
            if event.position > active.hooked:
                active.unhooked[event.position] = event
            active.unacked.append(delivery)
        # the task's latest event ends the turn (an earlier turn's final event, replayed, does not)
        ends = any(event.final and event.position == active.position for _, event in items)
        if ends or active.held or self.index_delay <= 0:
            await self._index(task_id, ending=ends)
        else:
            self._due.setdefault(task_id, time.monotonic() + self.index_delay)

    async def _index(self, task_id: str, *, ending: bool = False) -> None:
        """Write the folded task to the index, hand waiting calls the events held for it (and
        the end of the turn), run the hooks of the new events and ack them; if the turn ended,
        stop reading its reply channel."""
        self._due.pop(task_id, None)
        active = self._active.get(task_id)
        if active is None:
            return
        deliveries, active.unacked = active.unacked, []
        try:
            try:
                if active.indexed < active.position:
                    position = active.position
                    await self._table.put(task_id, active.task.SerializeToString())
                    active.indexed = max(active.indexed, position)
            finally:        # indexed or not, the waiting calls get their answer (unless `resume` took the task on)
                _release(active, ending and fold.is_final(active.task.status.state))
            for position in sorted(active.unhooked):
                event = active.unhooked.pop(position)
                if position > active.hooked:
                    for hook in self.on_event:
                        await hook(active.task, event.event)
                    active.hooked = position
            await asyncio.gather(*(delivery.ack() for delivery in deliveries))
        except BackendError as e:
            # unacked, they come back after their invisibility and are indexed and hooked then
            log.warning("indexing events of task %s failed: %s (they will be redelivered)", task_id, e)
            return
        if ending and fold.is_final(active.task.status.state):
            self._active.pop(task_id, None)
            with contextlib.suppress(BackendError):
                await self._consumer.unsubscribe([channels.reply_channel(task_id)])
                if task_id in self._active:     # continued (`resume`) meanwhile: it reads the channel again
                    await self._consumer.subscribe([channels.reply_channel(task_id)])

    async def _load_active(self, task_id: str) -> _Active:
        raw = await self._table.get(task_id)
        task = a2a_pb2.Task.FromString(raw) if raw else a2a_pb2.Task(id=task_id)
        start = (_recorded(task)[1], 0, -1)     # earlier turns are in the indexed task already
        active = _Active(task, start, start, start)
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


def _release(active: _Active, ending: bool) -> None:
    """Hand the held events to the waiting calls; at a turn's end, end their watches too."""
    held, active.held = active.held, []
    for event in held:
        for watch in active.watches:
            watch.push(event)
    if ending:
        for watch in active.watches:
            watch.push(None)
        active.watches = []


def _copy(task: a2a_pb2.Task) -> a2a_pb2.Task:
    out = a2a_pb2.Task()
    out.CopyFrom(task)
    return out


def _plausible_id(task_id: str) -> bool:
    return isinstance(task_id, str) and 0 < len(task_id) <= 128 and task_id.isprintable()


def _recorded(task: a2a_pb2.Task) -> tuple[str, int]:
    """The capability and turn a task records in metadata["topicbridge"] ("", 0 if it does not)."""
    value = task.metadata.fields.get(fold.OWN_METADATA)
    if value is None or not value.HasField("struct_value"):
        return "", 0
    own = value.struct_value.fields
    capability = own["capability"].string_value if "capability" in own else ""
    return capability, int(own["turn"].number_value) if "turn" in own else 0


def _news(seen: a2a_pb2.Task, folded: a2a_pb2.Task, event: ReplyEvent) -> bool:
    """While re-attaching, skip the replayed events the first `task` snapshot already covered.
    The callers' messages are in the task's history but not on the reply channel: only the
    agent's count."""
    return (event.final or folded.status.state != seen.status.state
            or _agent_messages(folded) > _agent_messages(seen) or len(folded.artifacts) > len(seen.artifacts))


def _agent_messages(task: a2a_pb2.Task) -> int:
    return sum(m.role != a2a_pb2.ROLE_USER for m in task.history)
