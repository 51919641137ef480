"""The worker SDK: serve a capability as a native agent.

    async def summarise(task: TaskContext) -> None:
        await task.working("reading")
        await task.complete(text=summary_of(task.text))

    worker = Worker(backend, "summarise", summarise)
    await worker.start()

A worker joins the capability's consumer group (instances of one agent share the load), runs
the handler for each task envelope, and publishes reply events on the task's reply channel.
Given a `card`, it announces the capability in the registry at start and heartbeats while it
runs, so the registry shows the capability unavailable once every worker has gone.
Cancellation arrives on the task's control channel. A handler that raises fails the task; a
handler that returns without finishing completes it. A malformed envelope goes to the group's
dead-letter topic with the reason. The envelope is acked only once every reply event of the run
is durable; until then a crash means the task runs again (a higher `attempt`). On a backend that
keeps publishes in start order (the embedded engine), `await task.artifact(...)` returns once
the event is on its way; the final event waits until every earlier one is durable, and a lost
event fails the task or runs it again (`task_context.py`).

WORKING is published as a task starts, except for a caller that blocks until the task settles
(`call_mode.caller_blocks`: it sees no intermediate event): then only once the handler has run
WORKING_AFTER without a word, for whoever looks the task up meanwhile. A task that ends at once
then costs two reply events instead of three (issue 17: one publish, fold, index wake-up and ack
fewer per native task; the WORKING event's share of the gateway's CPU at 64 connections was 5.6%).

A handler may ask for input and end its turn there; the caller's answer comes back as a new
run of the handler for the same task (A2A multi-turn), with `task.turn` > 0 and the earlier
messages in `task.history`:

    async def book(task: TaskContext) -> None:
        if task.turn == 0:
            await task.require_input("which day?")
        else:
            await task.complete(text=f"booked {task.history[0].parts[0].text} on {task.text}")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Awaitable, Callable

from a2a.types import a2a_pb2
from google.protobuf import json_format

from adapters.base import Backend, Delivery, Message, TopicSpec
from adapters.errors import BackendError

from gateway.tasks import channels
from gateway.tasks.envelope import ControlEvent, EnvelopeError, TaskEnvelope
from gateway.registry.capabilities import Registry, create_capability_topic
from gateway.observability import tracing
from gateway.supervisor import Supervisor
from . import call_mode
from .task_context import ReplyLost, TaskContext

__all__ = ["ReplyLost", "TaskContext", "Worker"]

log = logging.getLogger("topicbridge.worker")
RETRY_DELAY = 1.0        # seconds before a run that lost a reply event to a passing failure runs again
WORKING_AFTER = 0.5      # seconds a blocking caller's task runs silent before WORKING is published

Handler = Callable[[TaskContext], Awaitable[None]]


class Worker:
    def __init__(self, backend: Backend, capability: str, handler: Handler, *, concurrency: int = 16,
                 invisible: float = 10.0, card: dict | a2a_pb2.AgentCard | None = None,
                 input_schema: dict | None = None, output_schema: dict | None = None,
                 heartbeat: float = 5.0, supervisor: Supervisor | None = None,
                 announce: Callable[[TaskEnvelope], bool] | None = None) -> None:
        """`supervisor` runs the worker's loops (receive, control, heartbeat); by default its own.
        `announce(envelope)`: whether WORKING is published as a task starts (by default unless
        the caller blocks: then after WORKING_AFTER; a bridge decides for its calls itself).
        `invisible`: how long a task taken by a worker that died stays hidden from the others (a
        running task is extended every half of it); 10 s is also RocketMQ's shortest."""
        if not channels.is_capability_name(capability):
            raise ValueError(f"invalid capability name {capability!r}: use a-z, 0-9, _ and -, at most 63")
        self.backend = backend
        self.ordered_publish = bool(getattr(backend, "ordered_publish", False))
        self.capability = capability
        self.handler = handler
        self.announce = announce
        self.concurrency = concurrency
        self.invisible = invisible
        self.group = channels.worker_group(capability)
        self.client_id = f"w-{capability[:20]}-{os.getpid()}-{os.urandom(3).hex()}"
        self._running: dict[str, TaskContext] = {}
        self._tasks: set[asyncio.Task] = set()
        self.supervisor = supervisor or Supervisor()
        self._loops: list[str] = []             # names under the supervisor
        self._consumer = None
        self._control = None
        self.dead_lettered = 0
        if isinstance(card, a2a_pb2.AgentCard):
            card = json_format.MessageToDict(card)
        self.card, self.input_schema, self.output_schema = card, input_schema, output_schema
        self.heartbeat = heartbeat
        self._registry = None

    async def start(self) -> None:
        if self.card is not None:      # first, so a name taken by a bridged agent fails before anything runs
            self._registry = Registry(self.backend)
            await self._registry.start()
            await self._announce()
        topic = channels.capability_topic(self.capability)
        await create_capability_topic(self.backend, self.capability)     # keeps its registered settings
        for parent in (channels.REPLY_TOPIC, channels.CONTROL_TOPIC):
            await self.backend.create_topic(TopicSpec(parent, lite=True, lite_idle_seconds=channels.CHANNEL_IDLE_SECONDS))
        self._consumer = await self.backend.group_consumer(topic, self.group, invisible=self.invisible)
        self._control = await self.backend.lite_consumer(channels.CONTROL_TOPIC, self.client_id, self.client_id)
        loops = {"receive": self._receive_loop, "control": self._control_loop}
        if self._registry is not None:
            loops["heartbeat"] = self._heartbeat_loop
        for kind, loop in loops.items():
            name = f"worker.{self.capability}.{kind}.{self.client_id[-6:]}"
            self.supervisor.spawn(name, loop)
            self._loops.append(name)

    async def close(self) -> None:
        for name in self._loops:
            await self.supervisor.stop(name)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._registry is not None:
            with contextlib.suppress(BackendError):
                await self._registry.depart(self.capability, self.client_id)
        if self._control is not None:
            await self._control.close()
        if self._consumer is not None:
            await self._consumer.close()

    async def _announce(self) -> None:
        # A silent worker counts as gone after three missed heartbeats.
        await self._registry.announce(self.capability, self.card, self.client_id, ttl=3 * self.heartbeat,
                                      input_schema=self.input_schema, output_schema=self.output_schema)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self._announce()
            except BackendError as e:
                log.warning("heartbeat of %s failed: %s", self.capability, e)

    async def _receive_loop(self) -> None:
        while True:
            free = self.concurrency - len(self._tasks)
            if free <= 0:
                await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                deliveries = await self._consumer.receive(max_messages=free, wait=1.0)
            except BackendError as e:
                log.warning("receive on %s failed: %s", self.capability, e)
                await asyncio.sleep(1.0)
                continue
            for delivery in deliveries:
                task = asyncio.get_running_loop().create_task(self._handle(delivery))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _handle(self, delivery: Delivery) -> None:
        """One delivery, as a task of its own: nothing it raises may go unseen."""
        try:
            await self._take(delivery)
        except BackendError as e:
            log.warning("task envelope %s: backend failed (%s); it comes back after %.0fs", delivery.message_id,
                        e, self.invisible)
        except Exception:
            log.exception("task envelope %s: unexpected failure; it comes back after %.0fs", delivery.message_id,
                          self.invisible)

    async def _take(self, delivery: Delivery) -> None:
        try:
            envelope = TaskEnvelope.decode(delivery.body)
        except EnvelopeError as e:
            await self._dead_letter(delivery, e.reason)
            return
        ctx = TaskContext(self, envelope, delivery.attempt)
        self._running[ctx.task_id] = ctx
        await self._control.subscribe([channels.control_channel(ctx.task_id)])
        keepalive = _Keepalive(delivery, self.invisible)
        try:
            with contextlib.suppress(ReplyLost), tracing.task_span(    # ReplyLost: the task ended FAILED
                    "topicbridge.worker", envelope.trace, ctx.task_id, self.capability, self.backend):
                await self._run(ctx)
            await delivery.ack()
        except BackendError as e:
            log.warning("task %s: backend failed (%s); it runs again in %.0fs", ctx.task_id, e, RETRY_DELAY)
            with contextlib.suppress(BackendError):
                await delivery.nack(RETRY_DELAY)
        except asyncio.CancelledError:     # closing: another instance may take it now, not after `invisible`
            with contextlib.suppress(BackendError):
                await delivery.nack()
            raise
        finally:
            keepalive.cancel()
            ctx._drop_unawaited()        # unawaited only when the worker is closing
            if self._running.get(ctx.task_id) is ctx:      # else the task's next turn runs here already
                del self._running[ctx.task_id]
                with contextlib.suppress(BackendError):
                    await self._control.unsubscribe([channels.control_channel(ctx.task_id)])
                    if ctx.task_id in self._running:       # its next turn started meanwhile
                        await self._control.subscribe([channels.control_channel(ctx.task_id)])

    async def _run(self, ctx: TaskContext) -> None:
        if self.announce is not None:
            if self.announce(ctx.envelope):
                ctx._announce()
        elif call_mode.caller_blocks(ctx.envelope.metadata):
            ctx._announce_after(WORKING_AFTER)
        else:
            ctx._announce()
        # The handler runs in this task, and the control loop cancels it on the caller's cancel
        # (TaskContext.stop, once): no task of its own, and none waiting on `ctx.cancelled`
        # beside it. A cancel beyond the caller's is the worker closing: it goes on up.
        task = ctx._work = asyncio.current_task()
        try:
            await self.handler(ctx)
        except asyncio.CancelledError:
            if task.cancelling() > ctx._stopped:
                raise      # the worker is closing: the handler goes with it
        except Exception as e:
            if not ctx._stopped:       # else whatever the cancelled handler raised goes with it
                if isinstance(e, (BackendError, ReplyLost)):
                    raise
                # the handler's failure is the task's failure, not the worker's
                log.info("task %s failed in its handler: %r", ctx.task_id, e)
                if not ctx.finished:
                    await ctx.fail(f"{type(e).__name__}: {e}")
                return
        finally:
            ctx._work = None
        closing = task.cancelling() > ctx._stopped      # a handler that swallowed the worker's cancel
        if ctx._stopped and task.cancelling():
            task.uncancel()         # the caller's cancel is handled: it ends here
        if closing:
            raise asyncio.CancelledError
        if ctx._stopped:
            if not ctx.finished:
                await ctx.status(a2a_pb2.TASK_STATE_CANCELED, "canceled by the caller")
            return
        if not ctx.finished:
            await ctx.status(a2a_pb2.TASK_STATE_COMPLETED)


    async def _control_loop(self) -> None:
        while True:
            try:
                deliveries = await self._control.poll(max_messages=32, wait=1.0)
            except BackendError as e:
                log.warning("control poll failed: %s", e)
                await asyncio.sleep(1.0)
                continue
            for d in deliveries:
                with contextlib.suppress(EnvelopeError):
                    event = ControlEvent.decode(d.body)
                    ctx = self._running.get(event.task_id)
                    if ctx is not None and event.action == "cancel":
                        ctx.stop()
                with contextlib.suppress(BackendError):
                    await d.ack()

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        log.warning("dead-lettering malformed task envelope %s: %s", delivery.message_id, reason)
        self.dead_lettered += 1
        headers = {**delivery.headers, "x-dlq-reason": reason[:1000], "x-dlq-topic": delivery.topic}
        await self.backend.publish(self.backend.dead_letter_topic(self.group), Message(delivery.body, headers))
        await delivery.ack()


class _Keepalive:
    """Extends a running task's invisibility every half of it, on a timer: most tasks end before
    the first extension, and a timer costs less than a task sleeping beside each of them."""

    def __init__(self, delivery: Delivery, invisible: float) -> None:
        self.delivery, self.invisible = delivery, invisible
        self._loop = asyncio.get_running_loop()
        self._extending: asyncio.Task | None = None
        self._timer = self._loop.call_later(invisible / 2, self._due)

    def _due(self) -> None:
        self._extending = self._loop.create_task(self._extend())

    async def _extend(self) -> None:
        with contextlib.suppress(BackendError):
            await self.delivery.extend(self.invisible)
        self._timer = self._loop.call_later(self.invisible / 2, self._due)

    def cancel(self) -> None:
        self._timer.cancel()
        if self._extending is not None:
            self._extending.cancel()
