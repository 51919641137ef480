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
from adapters.errors import BackendError, ConflictError
from gateway.observability import metrics, tracing
from gateway.supervisor import Supervisor

from . import channels
from . import fold
from . import positions
from .envelope import ControlEvent, ReplyEvent, TaskEnvelope
from .admission import Admission
from .index import Page, TaskIndex
from .lifetimes import TASK_TIMEOUT
from .errors import (ContextMismatchError, NoLiveWorkerError, NotCancelableError, TaskError, TaskNotFoundError,
                     TaskRunningError, TaskTerminalError, WrongCapabilityError)
from .reattach import Reader
from .ownership import LEASE_TABLE, OWNER_TABLE, Owners
from .recovery import ADOPTION_INTERVAL, LEASE_SECONDS, Recovery
from .relay import INDEX_DELAY, Active, Relay, recorded, release
from .watch import Watch

__all__ = ["TaskError", "TaskService", "Watch"]

log = logging.getLogger("topicbridge.tasks")

class TaskService:
    """`lease_seconds`, `adoption_interval`: see recovery.py; `channel_idle_seconds`: channels.py."""

    def __init__(self, backend: Backend, *, instance_id: str | None = None, poll_wait: float = 1.0,
                 index_delay: float = INDEX_DELAY, supervisor: Supervisor | None = None,
                 lease_seconds: float = LEASE_SECONDS, adoption_interval: float = ADOPTION_INTERVAL,
                 channel_idle_seconds: float = channels.CHANNEL_IDLE_SECONDS,
                 max_tasks_in_flight: int | None = None) -> None:
        self.backend = backend
        self.instance_id = instance_id or f"gw-{os.getpid()}-{os.urandom(3).hex()}"
        self.poll_wait = poll_wait
        self.index_delay = index_delay
        self.supervisor = supervisor or Supervisor()
        self._own_supervisor = supervisor is None
        self.lease_seconds, self.adoption_interval = lease_seconds, adoption_interval
        self.channel_idle_seconds = channel_idle_seconds
        self.reattach_check = max(5 * poll_wait, 2.0)   # a silent re-attach reads the index this often
        self._consumer = None
        self._table = None
        self._relay: Relay | None = None
        self._owners: Owners | None = None
        self.recovery: Recovery | None = None
        self.on_event: list = []        # the relay's hooks (see Relay.on_event); add before start
        self.admission = Admission(max_tasks_in_flight)     # work in flight per capability (admission.py)
        self.on_event.append(self.admission.on_event)
        # capability -> seconds a turn may run before it fails (lifetimes.py sets it from the registry)
        self.timeout_of = None
        self.task_timeout = TASK_TIMEOUT
        self.retention: float | None = None     # lifetimes.py sets it: the index expires ended tasks by it
        # capability -> why it cannot take a new task now, or None (registry/liveness.py); None: never asked
        self.availability = None

    @property
    def bad_events(self) -> int:
        return self._relay.bad_events if self._relay is not None else 0

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.create_channels()
        self._table = await TaskIndex.open(self.backend)
        self._table.retention = self.retention
        self._owners = Owners(await self.backend.table(OWNER_TABLE), await self.backend.table(LEASE_TABLE),
                              self.instance_id, lease_seconds=self.lease_seconds)
        self._consumer = await self.backend.lite_consumer(channels.REPLY_TOPIC, self.instance_id,
                                                          self.instance_id)
        self._relay = Relay(self._consumer, self._table, poll_wait=self.poll_wait, index_delay=self.index_delay)
        self._relay.on_event = self.on_event
        self._relay.owners = self._owners
        self._relay.backend = self.backend
        self.recovery = Recovery(self._owners, self._relay, adoption_interval=self.adoption_interval,
                                 channel_idle=self.channel_idle_seconds)
        await self.recovery.recover()      # before the first call: a restarted instance answers as before
        self.supervisor.spawn(f"tasks.relay.{self.instance_id}", self._relay.run)
        self.supervisor.spawn(f"tasks.recovery.{self.instance_id}", self.recovery.run)

    def set_retention(self, seconds: float) -> None:
        """gateway.task_retention_seconds, from lifetimes.py: an ended task's rows expire that long
        after its last status, even when its turn's deadline is later (index.py)."""
        self.retention = seconds
        if self._table is not None:
            self._table.retention = seconds

    async def create_channels(self) -> None:
        """Create the reply and control parents with this instance's channel idle time. The last
        creator sets it and a worker creates them with the default: the gateway calls this again
        once its own workers have started."""
        for topic in (channels.REPLY_TOPIC, channels.CONTROL_TOPIC):
            await self.backend.create_topic(TopicSpec(topic, lite=True, lite_idle_seconds=self.channel_idle_seconds))

    async def close(self) -> None:
        for name in (f"tasks.recovery.{self.instance_id}", f"tasks.relay.{self.instance_id}"):
            await self.supervisor.stop(name)
        if self._relay is not None:
            await self._relay.close()     # what was shown gets indexed and acked before leaving
        if self._owners is not None:      # a peer need not wait for the lease to adopt what is left
            with contextlib.suppress(BackendError):
                await self._owners.expire()
        if self._consumer is not None:
            await self._consumer.close()

    # ------------------------------------------------------------ calls

    async def submit(self, capability: str, message: a2a_pb2.Message, *, deadline: float | None = None,
                     metadata: dict | None = None, trace: dict | None = None,
                     principal: str = "") -> tuple[a2a_pb2.Task, Watch]:
        """Publish a task for `capability`; return the submitted task and a watch on its events.
        `principal` (who asked; "" without authentication) is recorded with the capability: only
        they see the task through that capability (gateway/a2a/access.py). Raises
        CapabilityOverloadedError when the capability has its limit of tasks in flight, and
        NoLiveWorkerError when it has no worker online (`availability`)."""
        self.admission.check(capability)
        if self.availability is not None and (why := await self.availability(capability)):
            raise NoLiveWorkerError(capability, why)
        task_id = await self._new_task_id()
        context_id = message.context_id or channels.new_task_id()
        message.task_id, message.context_id = task_id, context_id
        task = a2a_pb2.Task(id=task_id, context_id=context_id)
        task.status.state = a2a_pb2.TASK_STATE_SUBMITTED
        fold.stamp_now(task.status.timestamp)
        task.history.append(message)
        deadline = deadline or await self._deadline(capability)
        # for `resume`, on any instance; field by field: half the CPU of assigning a dict (Struct.update)
        own = task.metadata.fields[fold.OWN_METADATA].struct_value.fields
        own["capability"].string_value = capability
        own["deadline"].number_value = deadline
        own["principal"].string_value = principal
        watch = Watch(task_id)
        submitted = _copy(task)             # the relay folds events into `task` from now on
        self._relay.active[task_id] = Active(task, watches=[watch], capability=capability)
        self.admission.add(capability, task_id, deadline)
        # Subscribed before the envelope goes out, so every reply comes after it; the channel
        # is new, so the backend need not look for where this group read it before.
        await self._consumer.subscribe([channels.reply_channel(task_id)], fresh=True)
        with tracing.task_span("topicbridge.submit", None, task_id, capability, self.backend):
            envelope = TaskEnvelope(task_id, context_id, capability, message, deadline, time.time(),
                                    trace or tracing.carrier(), metadata or {})
            published = await self._write_turn(task, envelope)
        if published is None:
            metrics.task_state(capability, a2a_pb2.TASK_STATE_SUBMITTED)
        else:
            self._relay.active.pop(task_id, None)
            self.admission.discard(task_id)
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
        # The index row's version: the resumed task is written expecting it, so of two instances
        # resuming at once exactly one wins (the other gets TaskRunningError).
        row = await self._table.read(task_id) if _plausible_id(task_id) else None
        version = row[1] if row is not None else 0
        # From here to the subscribe below nothing awaits: two calls on this instance cannot both
        # take the task.
        active = self._relay.active.get(task_id)
        found = _copy(active.task) if active is not None else a2a_pb2.Task.FromString(row[0]) if row else None
        if found is None:
            raise TaskNotFoundError(task_id)
        if message.context_id and message.context_id != found.context_id:
            raise ContextMismatchError(task_id, f"context {message.context_id[:200]!r} does not match "
                                                 f"context {found.context_id!r} of task {task_id!r}")
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
        fold.stamp_now(task.status.timestamp)
        task.metadata[fold.OWN_METADATA] = {"capability": owner, "turn": turn, "principal": recorded_principal(before)}
        start = (turn, 0, -1)      # whatever earlier turns left on the channel is not news
        watch = Watch(task_id)
        if active is None:
            active = self._relay.active[task_id] = Active(task, start, start, start)
        else:       # the relay may still be finishing the interrupted turn: its calls get their answer
            release(active, ending=True)
            active.position = active.indexed = start
            active.ended = False
            active.started = time.monotonic()       # the new turn's duration
        active.watches = [watch]
        resumed = _copy(task)
        await self._consumer.subscribe([channels.reply_channel(task_id)])
        deadline = deadline or await self._deadline(owner)      # the task is taken: awaiting is safe now
        task.metadata[fold.OWN_METADATA]["deadline"] = resumed.metadata[fold.OWN_METADATA]["deadline"] = deadline
        envelope = TaskEnvelope(task_id, task.context_id, owner, message, deadline, time.time(),
                                trace or tracing.carrier(), metadata or {}, turn, history)
        published = await self._write_turn(task, envelope, expect=version)
        if published is not None:       # the task stays as it was, waiting for input
            task.CopyFrom(before)
            watch.push(None)
            if self._relay.active.get(task_id) is active:
                self._relay.active.pop(task_id)
            with contextlib.suppress(BackendError):
                await self._consumer.unsubscribe([channels.reply_channel(task_id)])
            if not isinstance(published, TaskError):        # else the winner's row stays
                with contextlib.suppress(BackendError):
                    await self._table.put(task_id, before.SerializeToString())
            raise published
        return resumed, watch

    async def _write_turn(self, task: a2a_pb2.Task, envelope: TaskEnvelope, *,
                          expect: int | None = None) -> BaseException | None:
        """Index `task` and publish its envelope together (one group commit on the lite engine; the
        put is issued first, so a reply's later put of the same key lands after it). Returns the
        publish's failure for the caller to undo. A failed index write is only logged: the turn is
        accepted (its envelope is durable) and its first reply event indexes the task.

        With `expect` (resume), the index row is written first, only if still at that version:
        else TaskRunningError is returned and nothing is published."""
        if expect is not None:
            try:
                await self._table.put(task.id, task.SerializeToString(), expect=expect, task=task)
            except ConflictError:
                return TaskRunningError(task.id, f"task {task.id!r} was continued by another call meanwhile; "
                                                 "follow it with SubscribeToTask")
            except BackendError as e:
                return e
            _, published = await asyncio.gather(
                self._claim(task.id),
                self.backend.publish(channels.capability_topic(envelope.capability),
                                     Message(envelope.encode(), {"task_id": task.id}, task.id)),
                return_exceptions=True)
            return published if isinstance(published, BaseException) else None
        publish = (channels.capability_topic(envelope.capability),
                   Message(envelope.encode(), {"task_id": task.id}, task.id))
        defer = getattr(self.backend, "defer_durability", None)
        if defer is not None:
            return await self._write_new(task, publish, defer)
        indexed, published = await asyncio.gather(
            self._index_new(task), self.backend.publish(*publish), return_exceptions=True)
        if isinstance(published, BaseException):
            return published
        if isinstance(indexed, BaseException):
            if not isinstance(indexed, BackendError):
                raise indexed
            log.warning("indexing task %s failed (%s); its first reply event indexes it", task.id, indexed)
        return None

    async def _write_new(self, task: a2a_pb2.Task, publish: tuple, defer) -> BaseException | None:
        """`_write_turn` of a new task where the backend defers durability (the embedded engine):
        the task's index rows and its owner row are written in one block, none waiting for a
        commit (index.py `_write_batch`), then the envelope is published behind them, in the
        same group commit: the log syncs in order, so once the publish is durable so are they
        (`durable()` then has nothing left to wait for). One after the other in this task: no
        task, future or gather per submit. As `_index_new`, the owner row is written even when
        the index write fails, and an index failure is only logged."""
        failed: BackendError | None = None
        with defer() as writes:
            try:
                await self._table.put(task.id, task.SerializeToString(), task=task, deferred=True)
            except BackendError as e:       # the owner row all the same: a restart follows the turn
                failed = e
            await self._claim(task.id)
        try:
            await self.backend.publish(*publish)
        except Exception as e:
            return e
        try:
            await writes.durable()
        except BackendError as e:
            failed = failed or e
        if failed is not None:
            log.warning("indexing task %s failed (%s); its first reply event indexes it", task.id, failed)
        return None

    async def _index_new(self, task: a2a_pb2.Task) -> None:
        """Index a new task and record this instance as its owner, concurrently (a backend
        without deferred durability: `_write_new` elsewhere). Raises what the index write
        raised; the owner row's failure is only logged (`_claim`)."""
        indexed, _ = await asyncio.gather(self._table.put(task.id, task.SerializeToString(), task=task),
                                          self._claim(task.id), return_exceptions=True)
        if isinstance(indexed, BaseException):
            raise indexed

    async def _claim(self, task_id: str) -> None:
        """Record that this instance follows the turn (a restart or an adopter resumes it)."""
        try:
            await self._owners.claim(task_id)
        except BackendError as e:
            log.warning("recording the owner of task %s failed (%s): a crash now leaves it to its deadline",
                        task_id, e)

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
                   updated_after_ns: int | None = None, scope: str | None = None) -> Page:
        """One page of indexed tasks, newest status first (index.py); with `scope`
        (index.scope_key), only that capability's and principal's. Raises PageTokenError."""
        return await self._table.page(page_size=page_size, page_token=page_token, context_id=context_id,
                                      state=state, updated_after_ns=updated_after_ns, scope=scope)

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
        control = ControlEvent(task_id, "cancel", reason, tracing.carrier())
        await self.backend.publish(channels.CONTROL_TOPIC, Message(control.encode()),
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
        fold.stamp_now(update.status.timestamp)
        if reason:
            update.status.message.CopyFrom(a2a_pb2.Message(
                message_id=f"{task.id}-canceled", role=a2a_pb2.ROLE_AGENT, task_id=task.id,
                context_id=task.context_id, parts=[a2a_pb2.Part(text=reason)]))
        event = ReplyEvent(task.id, 1, 0, a2a_pb2.StreamResponse(status_update=update), True, turn + 1)
        start = (turn + 1, 0, -1)       # this relay folds it; the channel's earlier turns are old news
        active = self._relay.active.get(task.id)
        if active is None:
            self._relay.active[task.id] = Active(task, start, start, start)
        else:       # the relay may still be finishing the interrupted turn: the cancel is a new one,
            release(active, ending=True)        # which it must fold (as `resume` takes a task on)
            active.position = active.indexed = start
            active.ended = False
        await self._consumer.subscribe([channels.reply_channel(task.id)])
        await self._claim(task.id)
        await self.backend.publish(channels.REPLY_TOPIC, Message(event.encode(), {"task_id": task.id}),
                                   lite_topic=channels.reply_channel(task.id))

    async def subscribe(self, task_id: str, *, follow_turns: bool = False) -> AsyncIterator[a2a_pb2.StreamResponse]:
        """The task first, then its events until its turn ends, or with `follow_turns` (A2A
        SubscribeToTask) until it is terminal, across the turns of INPUT_REQUIRED (continued on
        any instance). From this instance's relay while the task runs here, otherwise from its
        reply channel (reattach.py). The stream always ends: at the end, or when the caller leaves
        (its watch is removed)."""
        task, watch = await self._attach(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        yield a2a_pb2.StreamResponse(task=_copy(task))
        while watch is not None:        # the turn runs here
            try:
                async for event in watch.events():
                    yield event
            finally:
                self.unwatch(watch)
            if not follow_turns:
                return      # the turn ended (its last event came through the watch)
            task, watch = await self._attach(task_id)
            if task is None:
                return
        if not _done(task, follow_turns):
            reader = Reader(self.backend, self._table, self.instance_id, poll_wait=self.poll_wait,
                            check_after=self.reattach_check)
            async for event in reader.follow(task, to_end=follow_turns):
                yield event

    async def _attach(self, task_id: str) -> tuple[a2a_pb2.Task | None, Watch | None]:
        """The task as this instance knows it and, if its turn runs here, a watch on what follows:
        taken together (no await between), so no event falls between the two."""
        active = self._relay.active.get(task_id)
        if active is None or active.ended:
            return await self.get(task_id), None
        task = _copy(active.task)
        positions.stamp(task, active.position)
        watch = Watch(task_id)
        active.watches.append(watch)
        return task, watch


def recorded_principal(task: a2a_pb2.Task) -> str:
    """The principal a task records in metadata["topicbridge"] ("" if none)."""
    value = task.metadata.fields.get(fold.OWN_METADATA)
    if value is None or not value.HasField("struct_value"):
        return ""
    own = value.struct_value.fields
    return own["principal"].string_value if "principal" in own else ""


def _done(task: a2a_pb2.Task, follow_turns: bool) -> bool:
    state = task.status.state
    return state in fold.TERMINAL or (not follow_turns and state in fold.INTERRUPTED)


def _copy(task: a2a_pb2.Task) -> a2a_pb2.Task:
    out = a2a_pb2.Task()
    out.CopyFrom(task)
    return out


def _plausible_id(task_id: str) -> bool:
    return isinstance(task_id, str) and 0 < len(task_id) <= 128 and task_id.isprintable()
