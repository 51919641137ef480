"""One task as its handler sees it (`TaskContext`), and how its reply events are published.

On a backend that keeps publishes in start order (the embedded engine), `await task.artifact(...)`
returns once the event is on its way, so a task's events share group commits, the final one's too:
the final event is appended after every earlier one has reached the log, and the worker waits for
all of them (a log synced in order makes the final durable only with the earlier ones), so a task
never shows COMPLETED over a lost artifact. Elsewhere the final event is published only once every
earlier event is durable. If an earlier event failed for good (the backend refused it, e.g. too large), the task
ends FAILED with a reason naming that event and the handler gets `ReplyLost`; if it failed for a
passing reason (backend unavailable), the error goes up and the worker lets the task run again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from a2a.types import a2a_pb2

from adapters.base import Message
from adapters.errors import InvalidRequestError

from gateway.observability import tracing
from gateway.tasks import channels
from gateway.tasks import eager
from gateway.tasks import fold
from gateway.tasks.envelope import ReplyEvent, TaskEnvelope

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("topicbridge.worker")
MAX_INFLIGHT = 16        # a task's reply events published but not yet waited for (ordered backends)


class ReplyLost(Exception):
    """A reply event of the task could not be published and never will be (the backend refused
    it): the task has been failed with `reason`. Raised to the handler from the emitting call."""

    def __init__(self, task_id: str, seq: int, reason: str) -> None:
        self.task_id, self.seq, self.reason = task_id, seq, reason
        super().__init__(f"task {task_id}: reply event {seq} was not published: {reason}")


class TaskContext:
    """One task as its handler sees it."""

    def __init__(self, worker: "Worker", envelope: TaskEnvelope, attempt: int) -> None:
        self._worker = worker
        self.envelope = envelope
        self.attempt = attempt
        self.cancelled = asyncio.Event()
        self.finished = False
        self._work: asyncio.Task | None = None      # the task running the handler (Worker._run)
        self._stopped = False                       # the caller's cancel stopped the handler
        self._late: asyncio.TimerHandle | None = None   # a WORKING not published yet (_announce_after)
        self._seq = 0
        self._inflight: list[tuple[int, asyncio.Task]] = []     # (seq, publish) started, not yet waited for

    @property
    def task_id(self) -> str:
        return self.envelope.task_id

    @property
    def context_id(self) -> str:
        return self.envelope.context_id

    @property
    def message(self) -> a2a_pb2.Message:
        """This turn's message: the request, or on a continuation the caller's answer."""
        return self.envelope.message

    @property
    def turn(self) -> int:
        """0 for a new task; n for its n-th continuation (the caller answered a require_input)."""
        return self.envelope.turn

    @property
    def history(self) -> list[a2a_pb2.Message]:
        """The task's messages before `message`, oldest first (empty on turn 0): the caller's
        earlier messages and the agent's, including the question this turn answers."""
        return self.envelope.history

    @property
    def text(self) -> str:
        """The text parts of the request, joined."""
        return "\n".join(p.text for p in self.message.parts if p.text)

    @property
    def data(self) -> list:
        from google.protobuf.json_format import MessageToDict
        return [MessageToDict(p.data) for p in self.message.parts if p.HasField("data")]

    async def status(self, state: int, text: str | None = None, *, parts=None) -> None:
        update = a2a_pb2.TaskStatusUpdateEvent(task_id=self.task_id, context_id=self.context_id)
        update.status.state = state
        fold.stamp_now(update.status.timestamp)
        if text is not None or parts:
            update.status.message.CopyFrom(self._agent_message(text, parts))
        await self._emit(a2a_pb2.StreamResponse(status_update=update), final=fold.is_final(state))

    async def emit(self, event: a2a_pb2.StreamResponse) -> None:
        """Publish a ready-made event (a bridge relaying a remote agent); a final state ends the task."""
        kind = event.WhichOneof("payload")
        state = event.status_update.status.state if kind == "status_update" else \
            event.task.status.state if kind == "task" else None
        await self._emit(event, final=state is not None and fold.is_final(state))

    async def working(self, text: str | None = None) -> None:
        await self.status(a2a_pb2.TASK_STATE_WORKING, text)

    async def artifact(self, text: str | None = None, *, parts=None, name: str = "", artifact_id: str = "",
                       append: bool = False, last_chunk: bool = True) -> None:
        default_id = f"artifact-{self._seq}" if not self.turn else f"artifact-{self.turn}-{self._seq}"
        art = a2a_pb2.Artifact(artifact_id=artifact_id or default_id, name=name,
                               parts=_parts(text, parts))
        update = a2a_pb2.TaskArtifactUpdateEvent(task_id=self.task_id, context_id=self.context_id,
                                                 artifact=art, append=append, last_chunk=last_chunk)
        await self._emit(a2a_pb2.StreamResponse(artifact_update=update))

    async def complete(self, text: str | None = None, *, parts=None) -> None:
        if text is not None or parts:
            await self.artifact(text, parts=parts, name="result")
        await self.status(a2a_pb2.TASK_STATE_COMPLETED)

    async def reply(self, text: str | None = None, *, parts=None, message: a2a_pb2.Message | None = None) -> None:
        """Answer with a Message instead of a task (A2A: SendMessage's Message result); ends the
        task. `message` (a bridged agent's own) is sent as it is, else one is built from the
        parts. The reply names the task only on a continuation: a new caller never saw it."""
        reply = a2a_pb2.Message()
        if message is not None:
            reply.CopyFrom(message)
        else:
            reply.CopyFrom(self._agent_message(text, parts))
            reply.task_id = self.task_id if self.turn else ""
        fold.mark_reply(reply)
        update = a2a_pb2.TaskStatusUpdateEvent(task_id=self.task_id, context_id=self.context_id)
        update.status.state = a2a_pb2.TASK_STATE_COMPLETED
        fold.stamp_now(update.status.timestamp)
        update.status.message.CopyFrom(reply)
        await self._emit(a2a_pb2.StreamResponse(status_update=update), final=True)

    async def fail(self, reason: str) -> None:
        await self.status(a2a_pb2.TASK_STATE_FAILED, reason)

    async def require_input(self, question: str) -> None:
        await self.status(a2a_pb2.TASK_STATE_INPUT_REQUIRED, question)

    def _agent_message(self, text, parts) -> a2a_pb2.Message:
        return a2a_pb2.Message(message_id=os.urandom(8).hex(), role=a2a_pb2.ROLE_AGENT, task_id=self.task_id,
                               context_id=self.context_id, parts=_parts(text, parts))

    def stop(self) -> None:
        """The caller cancelled the task: set `cancelled` and stop the handler if it still runs
        (the worker then publishes CANCELED unless the handler ended the task itself)."""
        self.cancelled.set()
        if self._work is not None and not self._work.done() and not self._stopped:
            self._stopped = True        # once: a second cancel of the handler's task would be the worker closing
            self._work.cancel()

    def _announce_after(self, seconds: float) -> None:
        """Publish WORKING only if the handler says nothing for `seconds`: a blocking caller sees
        no intermediate event, and most tasks end before."""
        self._late = asyncio.get_running_loop().call_later(seconds, self._announce_late)

    def _announce_late(self) -> None:
        self._late = None
        if not self.finished:
            self._announce()

    def _announce(self) -> None:
        """Publish WORKING while the handler starts (a bridge's call to its agent overlaps the
        publish); the handler's first event is published after it, so the order holds."""
        update = a2a_pb2.TaskStatusUpdateEvent(task_id=self.task_id, context_id=self.context_id)
        update.status.state = a2a_pb2.TASK_STATE_WORKING
        fold.stamp_now(update.status.timestamp)
        self._start(self._encode(a2a_pb2.StreamResponse(status_update=update), False))

    def _drop_unawaited(self) -> None:
        """Cancel publishes nobody waited for (only when the worker closes mid-task) and a WORKING
        not published yet."""
        if self._late is not None:
            self._late.cancel()
        for _, publish in self._inflight:
            publish.cancel()
        self._inflight.clear()

    async def _emit(self, event: a2a_pb2.StreamResponse, final: bool = False) -> None:
        """Publish `event` on the reply channel. On a backend that keeps the order of publishes
        started without waiting (`ordered_publish`), a non-final event is only started: the
        task's events then share group commits. The final event is started once every earlier
        one has reached the log and is waited for with them (the worker acks the task after
        it). Elsewhere each event waits for the one before it."""
        if self.finished:
            raise RuntimeError(f"task {self.task_id} already reached a final state")
        if self._late is not None:      # the handler speaks first: no WORKING of ours after it
            self._late.cancel()
            self._late = None
        body = self._encode(event, final)
        if self._worker.ordered_publish:
            if final:
                await self._publish_final(body)
                return
            self._start(body)
            if len(self._inflight) >= MAX_INFLIGHT:
                await self._settle()
            return
        await self._settle()
        self._start(body)
        await self._settle()
        self.finished = final

    async def _settle_refused(self) -> None:
        """Before a final event on an ordered backend: every started publish has reached the log
        (each appends at its first step, run as it was started: `_start`); settle them all if one
        was refused there. The final event then joins their group commit: in one log synced in order, it
        cannot be durable while an earlier one is not, so a wait for the earlier ones is not needed."""
        if not self._inflight:
            return
        if any(publish.done() and (publish.cancelled() or publish.exception() is not None)
               for _, publish in self._inflight):
            await self._settle()

    async def _publish_final(self, body: bytes) -> None:
        """Ordered backends: the final event is appended in this step (not as a task of its own),
        right behind the started ones, so one group commit carries them all."""
        await self._settle_refused()
        seq = self._seq - 1
        try:
            await self._publish(body)
        except InvalidRequestError as e:        # the final event itself was refused
            await self._settle()
            await self._lost(seq, e)
        await self._settle()        # durable with the final one: only their failures are left to see
        self.finished = True

    def _start(self, body: bytes) -> None:
        """Start publishing `body`: its first step (where an ordered backend appends it) runs
        now, and a task is made only of what is left (eager.py; none when it ends there)."""
        self._inflight.append((self._seq - 1, eager.start(self._publish(body))))

    async def _settle(self) -> None:
        """Wait for every publish started; on a failure, fail the task (refused for good: raises
        ReplyLost) or raise the BackendError (passing: the task runs again)."""
        inflight, self._inflight = self._inflight, []
        if not inflight:
            return
        results = await asyncio.gather(*(publish for _, publish in inflight), return_exceptions=True)
        for (seq, _), result in zip(inflight, results):
            if isinstance(result, InvalidRequestError):
                await self._lost(seq, result)
            if isinstance(result, BaseException):
                raise result

    async def _lost(self, seq: int, error: InvalidRequestError) -> None:
        reason = f"reply event {seq} of the task could not be published: {error}"
        log.warning("task %s: %s; failing the task", self.task_id, reason)
        self._inflight.clear()
        update = a2a_pb2.TaskStatusUpdateEvent(task_id=self.task_id, context_id=self.context_id)
        update.status.state = a2a_pb2.TASK_STATE_FAILED
        fold.stamp_now(update.status.timestamp)
        update.status.message.CopyFrom(self._agent_message(reason, None))
        await self._publish(self._encode(a2a_pb2.StreamResponse(status_update=update), True))
        self.finished = True
        raise ReplyLost(self.task_id, seq, str(error))

    def _encode(self, event: a2a_pb2.StreamResponse, final: bool) -> bytes:
        body = ReplyEvent(self.task_id, self.attempt, self._seq, event, final, self.envelope.turn,
                          tracing.carrier()).encode()
        self._seq += 1
        return body

    async def _publish(self, body: bytes) -> None:
        await self._worker.backend.publish(channels.REPLY_TOPIC, Message(body, {"task_id": self.task_id}),
                                           lite_topic=channels.reply_channel(self.task_id))


def _parts(text, parts) -> list:
    out = [a2a_pb2.Part(text=text)] if text is not None else []
    return out + list(parts or [])
