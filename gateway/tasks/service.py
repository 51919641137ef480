"""The call side of tasks: submit, resume, get, list, cancel, subscribe.

A call becomes a task envelope on the capability's topic; the worker answers on the task's
reply channel (a lite topic). Each gateway instance runs one lite consumer (one client id) and
one relay (`relay.py`) that folds the events, indexes the folded task (so any instance can answer
GetTask/ListTasks, also after a restart) and hands them to the calls waiting on this instance.

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
from typing import AsyncIterator

from a2a.types import a2a_pb2

from adapters.base import Backend, Message, TopicSpec
from adapters.errors import BackendError

from . import channels
from . import fold
from .envelope import ControlEvent, ReplyEvent, TaskEnvelope
from .index import Page, TaskIndex
from .lifetimes import TASK_TIMEOUT
from .errors import (ContextMismatchError, NotCancelableError, TaskError, TaskNotFoundError, TaskRunningError,
                     TaskTerminalError, WrongCapabilityError)
from .relay import INDEX_DELAY, Active, Relay, recorded, release
from .watch import Watch

__all__ = ["TaskError", "TaskService", "Watch"]

log = logging.getLogger("topicbridge.tasks")

REPLY_IDLE_SECONDS = 24 * 3600    # a reply channel outlives its task by this long (re-attach)


class TaskService:
    def __init__(self, backend: Backend, *, instance_id: str | None = None, poll_wait: float = 1.0,
                 index_delay: float = INDEX_DELAY) -> None:
        self.backend = backend
        self.instance_id = instance_id or f"gw-{os.getpid()}-{os.urandom(3).hex()}"
        self.poll_wait = poll_wait
        self.index_delay = index_delay
        self._consumer = None
        self._table = None
        self._relay: Relay | None = None
        self._relay_task: asyncio.Task | None = None
        self.on_event: list = []        # the relay's hooks (see Relay.on_event); add before start
        # capability -> seconds a turn may run before it fails (lifetimes.py sets it from the registry)
        self.timeout_of = None
        self.task_timeout = TASK_TIMEOUT

    @property
    def bad_events(self) -> int:
        return self._relay.bad_events if self._relay is not None else 0

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        for topic in (channels.REPLY_TOPIC, channels.CONTROL_TOPIC):
            await self.backend.create_topic(TopicSpec(topic, lite=True, lite_idle_seconds=REPLY_IDLE_SECONDS))
        self._table = await TaskIndex.open(self.backend)
        self._consumer = await self.backend.lite_consumer(channels.REPLY_TOPIC, self.instance_id,
                                                          self.instance_id)
        self._relay = Relay(self._consumer, self._table, poll_wait=self.poll_wait, index_delay=self.index_delay)
        self._relay.on_event = self.on_event
        self._relay_task = asyncio.get_running_loop().create_task(self._relay.run())

    async def close(self) -> None:
        if self._relay_task is not None:
            self._relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay_task
        if self._relay is not None:
            await self._relay.close()     # what was shown gets indexed and acked before leaving
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
        deadline = deadline or await self._deadline(capability)
        task.metadata[fold.OWN_METADATA] = {"capability": capability, "deadline": deadline}   # for `resume`, on any instance
        watch = Watch(task_id)
        submitted = _copy(task)             # the relay folds events into `task` from now on
        self._relay.active[task_id] = Active(task, watches=[watch])
        await self._consumer.subscribe([channels.reply_channel(task_id)])
        envelope = TaskEnvelope(task_id, context_id, capability, message, deadline, time.time(),
                                trace or {}, metadata or {})
        published = await self._write_turn(task, envelope)
        if published is not None:
            self._relay.active.pop(task_id, None)
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

        Raises TaskNotFoundError, ContextMismatchError (the message names another context),
        WrongCapabilityError (`capability`, the one the caller addressed, is not the task's),
        TaskTerminalError (it ended: it cannot be restarted), TaskRunningError (it does not wait for input)."""
        found = await self.get(task_id)
        if found is None:
            raise TaskNotFoundError(task_id)
        if message.context_id and message.context_id != found.context_id:
            raise ContextMismatchError(task_id, f"context {message.context_id[:200]!r} does not match "
                                                 f"context {found.context_id!r} of task {task_id!r}")
        # From here to the subscribe below nothing awaits: two calls on this instance cannot both
        # take the task. (Two instances can, in a race this table offers no compare-and-set for.)
        active = self._relay.active.get(task_id)
        task = active.task if active is not None else found
        state = task.status.state
        if state in fold.TERMINAL:
            raise TaskTerminalError(task_id, f"task {task_id!r} is {a2a_pb2.TaskState.Name(state)}: a task "
                                              "that ended cannot be restarted; send a new message without "
                                              "task_id to start a new task")
        if state not in fold.INTERRUPTED:
            raise TaskRunningError(task_id, f"task {task_id!r} is {a2a_pb2.TaskState.Name(state)}: it does "
                                             "not wait for input; follow it with SubscribeToTask or cancel it")
        owner, turn = recorded(task)
        owner = owner or capability or ""
        if not owner:
            raise WrongCapabilityError(task_id, f"task {task_id!r} does not record its capability")
        if capability and capability != owner:
            raise WrongCapabilityError(task_id, f"task {task_id!r} belongs to {owner!r}, "
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
        task.metadata[fold.OWN_METADATA] = {"capability": owner, "turn": turn}
        start = (turn, 0, -1)      # whatever earlier turns left on the channel is not news
        watch = Watch(task_id)
        if active is None:
            active = self._relay.active[task_id] = Active(task, start, start, start)
        else:       # the relay may still be finishing the interrupted turn: its calls get their answer
            release(active, ending=True)
            active.position = active.indexed = start
        active.watches = [watch]
        resumed = _copy(task)
        await self._consumer.subscribe([channels.reply_channel(task_id)])
        deadline = deadline or await self._deadline(owner)      # the task is taken: awaiting is safe now
        task.metadata[fold.OWN_METADATA]["deadline"] = resumed.metadata[fold.OWN_METADATA]["deadline"] = deadline
        envelope = TaskEnvelope(task_id, task.context_id, owner, message, deadline, time.time(), trace or {},
                                metadata or {}, turn, history)
        published = await self._write_turn(task, envelope)
        if published is not None:       # the task stays as it was, waiting for input
            task.CopyFrom(before)
            watch.push(None)
            if self._relay.active.get(task_id) is active:
                self._relay.active.pop(task_id)
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
        active = self._relay.active.get(task_id)
        if active is not None:
            return _copy(active.task)
        raw = await self._table.get(task_id) if _plausible_id(task_id) else None
        return a2a_pb2.Task.FromString(raw) if raw else None

    async def list(self, *, context_id: str = "", state: int = 0, page_size: int = 50, page_token: str = "",
                   updated_after_ns: int | None = None) -> Page:
        """One page of indexed tasks, newest status first (index.py). Raises PageTokenError."""
        return await self._table.page(page_size=page_size, page_token=page_token, context_id=context_id,
                                      state=state, updated_after_ns=updated_after_ns)

    async def _deadline(self, capability: str) -> float:
        """When a turn of `capability` starting now must have ended (Lifetimes enforces it)."""
        timeout = await self.timeout_of(capability) if self.timeout_of is not None else None
        return time.time() + (timeout or self.task_timeout)

    async def cancel(self, task_id: str, reason: str = "") -> a2a_pb2.Task:
        task = await self.get(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        if task.status.state in fold.TERMINAL:
            raise NotCancelableError(task_id,
                                     f"task {task_id!r} is {a2a_pb2.TaskState.Name(task.status.state)}")
        if task.status.state in fold.INTERRUPTED:
            await self._cancel_waiting(task, reason)
            return task
        await self.backend.publish(channels.CONTROL_TOPIC, Message(ControlEvent(task_id, "cancel", reason).encode()),
                                   lite_topic=channels.control_channel(task_id))
        return task

    def unwatch(self, watch: Watch) -> None:
        """Stop handing events to `watch` (its caller stopped listening)."""
        active = self._relay.active.get(watch.task_id)
        if active is not None and watch in active.watches:
            active.watches.remove(watch)

    async def _cancel_waiting(self, task: a2a_pb2.Task, reason: str) -> None:
        """No worker holds a task that waits for input, so the gateway ends it itself: a CANCELED
        status as the one event of a turn no worker runs, folded and indexed by this instance's
        relay like any other. (A bridged agent's own task is left waiting; see bridge.py.)"""
        _, turn = recorded(task)
        update = a2a_pb2.TaskStatusUpdateEvent(task_id=task.id, context_id=task.context_id)
        update.status.state = a2a_pb2.TASK_STATE_CANCELED
        update.status.timestamp.GetCurrentTime()
        if reason:
            update.status.message.CopyFrom(a2a_pb2.Message(
                message_id=f"{task.id}-canceled", role=a2a_pb2.ROLE_AGENT, task_id=task.id,
                context_id=task.context_id, parts=[a2a_pb2.Part(text=reason)]))
        event = ReplyEvent(task.id, 1, 0, a2a_pb2.StreamResponse(status_update=update), True, turn + 1)
        if task.id not in self._relay.active:     # this relay folds it; the channel's earlier turns are old news
            start = (turn + 1, 0, -1)
            self._relay.active[task.id] = Active(task, start, start, start)
        await self._consumer.subscribe([channels.reply_channel(task.id)])
        await self.backend.publish(channels.REPLY_TOPIC, Message(event.encode(), {"task_id": task.id}),
                                   lite_topic=channels.reply_channel(task.id))

    async def subscribe(self, task_id: str) -> AsyncIterator[a2a_pb2.StreamResponse]:
        """The task first, then its events until it ends: from this instance's relay when the task
        is active here, otherwise by re-attaching to its reply channel."""
        task = await self.get(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        yield a2a_pb2.StreamResponse(task=task)
        active = self._relay.active.get(task_id)
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
            task, position, turn = a2a_pb2.Task(), (0, 0, -1), recorded(seen)[1]
            while True:
                for d in await consumer.poll(max_messages=64, wait=self.poll_wait):
                    event = await self._relay.decode(d)
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


def _copy(task: a2a_pb2.Task) -> a2a_pb2.Task:
    out = a2a_pb2.Task()
    out.CopyFrom(task)
    return out


def _plausible_id(task_id: str) -> bool:
    return isinstance(task_id, str) and 0 < len(task_id) <= 128 and task_id.isprintable()


def _news(seen: a2a_pb2.Task, folded: a2a_pb2.Task, event: ReplyEvent) -> bool:
    """While re-attaching, skip the replayed events the first `task` snapshot already covered.
    The callers' messages are in the task's history but not on the reply channel: only the
    agent's count."""
    return (event.final or folded.status.state != seen.status.state
            or _agent_messages(folded) > _agent_messages(seen) or len(folded.artifacts) > len(seen.artifacts))


def _agent_messages(task: a2a_pb2.Task) -> int:
    return sum(m.role != a2a_pb2.ROLE_USER for m in task.history)
