"""Republishes one remote A2A agent's task as the gateway's task (the bridge's half that maps
events; `bridge.py` makes the calls):

    remote Task snapshot   -> its new agent messages, changed artifacts, then its status
    status / artifact / message events -> the same event, under the gateway's task and context ids
    a Message answering the call (no task) -> TaskContext.reply: the caller gets a Message too
    remote SUBMITTED       -> WORKING (the gateway's task is already in a worker's hands; relayed
                              only when the worker did not announce WORKING itself)
"""

from __future__ import annotations

from a2a.types import a2a_pb2

from gateway.tasks import fold
from .worker import TaskContext


class Relay:
    """Republishes one remote task's events as the gateway's task."""

    def __init__(self, ctx: TaskContext, remote: dict | None = None, remember=None, *, announced: bool = True) -> None:
        """`remote`: the agent's ids of the task a continuation continues; `remember(relay)` is
        awaited before an interrupted state is relayed; `announced`: the worker published WORKING."""
        self.ctx = ctx
        self.remote_id = remote["task_id"] if remote else ""
        self.remote_context = remote["context_id"] if remote else ""
        self._continues = remote
        self._remember = remember
        self.sent = False           # a request left for the agent
        self.started = False        # something came back
        self.announced = announced
        self._state = a2a_pb2.TASK_STATE_WORKING if announced else a2a_pb2.TASK_STATE_SUBMITTED
        # On a continuation, the messages of earlier turns are in the gateway's task already.
        self._earlier: set[str] = {m.message_id for m in ctx.history} if remote else set()
        self._messages: set[str] = set(self._earlier)
        self._artifacts: dict[str, bytes] = {}

    @property
    def final(self) -> bool:
        return self.ctx.finished

    @property
    def interrupted(self) -> bool:
        return self._state in fold.INTERRUPTED

    def announce(self) -> None:
        """Publish WORKING now (a bridge's call outlasted its quiet start), unless something was relayed."""
        if self.announced or self.started or self.final:
            return
        self.announced, self._state = True, a2a_pb2.TASK_STATE_WORKING
        self.ctx._announce()

    def outgoing(self) -> a2a_pb2.Message:
        message = a2a_pb2.Message()
        message.CopyFrom(self.ctx.message)
        if self._continues:
            message.task_id, message.context_id = self._continues["task_id"], self._continues["context_id"]
            message.message_id = message.message_id or f"{self.ctx.task_id}-{self.ctx.turn}"
        else:
            message.task_id, message.context_id = "", self.ctx.context_id
            message.message_id = message.message_id or self.ctx.task_id
        message.role = message.role or a2a_pb2.ROLE_USER
        return message

    async def push(self, event: a2a_pb2.StreamResponse) -> None:
        self.started = True
        if self.final:
            return
        kind = event.WhichOneof("payload")
        if kind == "task":
            await self._task(event.task)
        elif kind == "status_update":
            self.remote_id = self.remote_id or event.status_update.task_id
            self.remote_context = self.remote_context or event.status_update.context_id
            await self._status(event.status_update.status, event.status_update.metadata)
        elif kind == "artifact_update":
            self.remote_id = self.remote_id or event.artifact_update.task_id
            await self._artifact(event.artifact_update)
        elif kind == "message" and not self.remote_id:     # the agent answered with a Message, no task
            await self._reply(event.message)
        elif kind == "message":
            await self._message(event.message)

    async def _task(self, task: a2a_pb2.Task) -> None:
        self.remote_id = self.remote_id or task.id
        self.remote_context = self.remote_context or task.context_id
        for message in task.history:
            if message.role == a2a_pb2.ROLE_AGENT and message.message_id not in self._messages:
                await self._message(message)
        for artifact in task.artifacts:
            if self._artifacts.get(artifact.artifact_id) != artifact.SerializeToString():
                await self._artifact(a2a_pb2.TaskArtifactUpdateEvent(artifact=artifact, last_chunk=True))
        await self._status(task.status, None)

    async def _status(self, status: a2a_pb2.TaskStatus, metadata) -> None:
        state = _STATES.get(status.state)
        if state is None or state == self._state and not status.HasField("message"):
            return
        if self._earlier and status.HasField("message") and status.message.message_id in self._earlier:
            return      # an earlier turn's status (the question this turn answers), in a snapshot
        if state in fold.INTERRUPTED and self._remember is not None and self.remote_id:
            await self._remember(self)
        self._state = state
        update = a2a_pb2.TaskStatusUpdateEvent(task_id=self.ctx.task_id, context_id=self.ctx.context_id)
        update.status.CopyFrom(status)
        update.status.state = state
        if status.HasField("message"):
            self._own(update.status.message)
            self._messages.add(status.message.message_id)
        if metadata is not None and metadata.fields:
            update.metadata.CopyFrom(metadata)
        await self.ctx.emit(a2a_pb2.StreamResponse(status_update=update))

    async def _artifact(self, remote: a2a_pb2.TaskArtifactUpdateEvent) -> None:
        update = a2a_pb2.TaskArtifactUpdateEvent()
        update.CopyFrom(remote)
        update.task_id, update.context_id = self.ctx.task_id, self.ctx.context_id
        key = update.artifact.artifact_id
        self._artifacts[key] = b"" if update.append else update.artifact.SerializeToString()
        await self.ctx.emit(a2a_pb2.StreamResponse(artifact_update=update))

    async def _message(self, remote: a2a_pb2.Message) -> None:
        message = a2a_pb2.Message()
        message.CopyFrom(remote)
        self._own(message)
        self._messages.add(remote.message_id)
        await self.ctx.emit(a2a_pb2.StreamResponse(message=message))

    async def _reply(self, remote: a2a_pb2.Message) -> None:
        message = a2a_pb2.Message()
        message.CopyFrom(remote)
        message.context_id = self.ctx.context_id
        message.task_id = self.ctx.task_id if self.ctx.turn else ""
        await self.ctx.reply(message=message)

    def _own(self, message: a2a_pb2.Message) -> None:
        message.task_id, message.context_id = self.ctx.task_id, self.ctx.context_id


_STATES = {a2a_pb2.TASK_STATE_SUBMITTED: a2a_pb2.TASK_STATE_WORKING,
           **{s: s for s in (a2a_pb2.TASK_STATE_WORKING, a2a_pb2.TASK_STATE_COMPLETED, a2a_pb2.TASK_STATE_FAILED,
                             a2a_pb2.TASK_STATE_CANCELED, a2a_pb2.TASK_STATE_REJECTED,
                             a2a_pb2.TASK_STATE_INPUT_REQUIRED, a2a_pb2.TASK_STATE_AUTH_REQUIRED)}}
