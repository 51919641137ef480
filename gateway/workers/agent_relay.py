"""Republishes one remote A2A agent's task as the gateway's task (the bridge's half that maps
events; `bridge.py` makes the calls):

    remote Task snapshot   -> its new agent messages, changed artifacts, then its status
    status / artifact / message events -> the same event, under the gateway's task and context ids
    a Message answering the call (no task) -> TaskContext.reply: the caller gets a Message too
    remote SUBMITTED       -> WORKING (the gateway's task is already in a worker's hands; relayed
                              only when the worker did not announce WORKING itself)
    a finished remote Task answering a blocking caller, nothing relayed before -> one Task event
                              (the gateway's task as the events above would fold it: one reply
                              event instead of one per artifact plus the status)
"""

from __future__ import annotations

from a2a.types import a2a_pb2

from gateway.tasks import fold
from .worker import TaskContext


class Relay:
    """Republishes one remote task's events as the gateway's task."""

    def __init__(self, ctx: TaskContext, remote: dict | None = None, remember=None, *, announced: bool = True,
                 whole: bool = False) -> None:
        """`remote`: the agent's ids of the task a continuation continues; `remember(relay)` is
        awaited before an interrupted state is relayed; `announced`: the worker published WORKING;
        `whole`: a finished task may go as one Task event (the caller blocks: it sees the end only)."""
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
        self.whole = whole          # the caller blocks (call_mode.caller_blocks)
        self._whole_ok = whole and not remote

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
            await self._task(event.task, event)
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

    async def _task(self, task: a2a_pb2.Task, event: a2a_pb2.StreamResponse | None = None) -> None:
        """`event`: the StreamResponse `task` came in, if any; a whole task is made the gateway's
        in it and relayed as is (the relay takes the event over: nothing else reads it)."""
        self.remote_id = self.remote_id or task.id
        self.remote_context = self.remote_context or task.context_id
        if self._whole(task):
            if event is None:
                await self.ctx.emit(a2a_pb2.StreamResponse(task=self._snapshot(task)))
            else:
                self._take_over(task)
                await self.ctx.emit(event)
            return
        for message in task.history:
            if message.role == a2a_pb2.ROLE_AGENT and message.message_id not in self._messages:
                await self._message(message)
        for artifact in task.artifacts:
            if self._artifacts.get(artifact.artifact_id) != artifact.SerializeToString():
                await self._artifact(a2a_pb2.TaskArtifactUpdateEvent(artifact=artifact, last_chunk=True))
        await self._status(task.status, None)

    def _whole(self, task: a2a_pb2.Task) -> bool:
        """Whether the remote task can go as one snapshot: it ended (an interrupted one must be
        remembered first), on a first turn, before anything of it was relayed. Each reply event
        costs the gateway a publish, a commit-log record, a delivery and a fold: at c64 a bridged
        task's artifact and status events were a fifth of the gateway's CPU per task."""
        ids = [a.artifact_id for a in task.artifacts]
        return (self._whole_ok and task.status.state in fold.TERMINAL and not self._messages
                and not self._artifacts and self._state in _QUIET and len(set(ids)) == len(ids))

    def _snapshot(self, remote: a2a_pb2.Task) -> a2a_pb2.Task:
        """The gateway's task as folding the per-part events (_task) would leave it: its own ids,
        the caller's message, then the agent's messages, artifacts and status, under our ids."""
        task = a2a_pb2.Task(id=self.ctx.task_id, context_id=self.ctx.context_id, artifacts=remote.artifacts)
        task.history.add().CopyFrom(self.ctx.message)
        self._own(task.history[0])
        for message in remote.history:
            if message.role == a2a_pb2.ROLE_AGENT and message.message_id not in self._messages:
                self._messages.add(message.message_id)
                self._own(task.history.add(), message)
        task.status.CopyFrom(remote.status)
        if remote.status.HasField("message"):
            self._own(task.status.message)
        self._state = remote.status.state
        return task

    def _take_over(self, task: a2a_pb2.Task) -> None:
        """`task` made what `_snapshot(task)` returns, in place: no copy of its artifacts and
        status, and the event around it relayed without a copy either."""
        mine = a2a_pb2.ROLE_AGENT
        agents = []
        for message in task.history:
            if message.role == mine and message.message_id not in self._messages:
                self._messages.add(message.message_id)
                agents.append(message)
        if agents:      # copies: the originals go with the history cleared below
            agents = [_copy(m) for m in agents]
        for field, _ in task.ListFields():
            if field.name not in _SNAPSHOT_FIELDS:      # metadata: _snapshot keeps none of the agent's
                task.ClearField(field.name)
        task.id, task.context_id = self.ctx.task_id, self.ctx.context_id
        del task.history[:]
        self._own(task.history.add(), self.ctx.message)
        for message in agents:
            self._own(task.history.add(), message)
        if task.status.HasField("message"):
            self._own(task.status.message)
        self._state = task.status.state

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

    def _own(self, message: a2a_pb2.Message, source: a2a_pb2.Message | None = None) -> None:
        if source is not None:
            message.CopyFrom(source)
        message.task_id, message.context_id = self.ctx.task_id, self.ctx.context_id


def _copy(message: a2a_pb2.Message) -> a2a_pb2.Message:
    copy = a2a_pb2.Message()
    copy.CopyFrom(message)
    return copy


_SNAPSHOT_FIELDS = frozenset({"id", "context_id", "status", "artifacts", "history"})
_QUIET = (a2a_pb2.TASK_STATE_SUBMITTED, a2a_pb2.TASK_STATE_WORKING)     # no status relayed but ours
_STATES = {a2a_pb2.TASK_STATE_SUBMITTED: a2a_pb2.TASK_STATE_WORKING,
           **{s: s for s in (a2a_pb2.TASK_STATE_WORKING, a2a_pb2.TASK_STATE_COMPLETED, a2a_pb2.TASK_STATE_FAILED,
                             a2a_pb2.TASK_STATE_CANCELED, a2a_pb2.TASK_STATE_REJECTED,
                             a2a_pb2.TASK_STATE_INPUT_REQUIRED, a2a_pb2.TASK_STATE_AUTH_REQUIRED)}}
