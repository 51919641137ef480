"""Task state is the fold of its reply events."""

from __future__ import annotations

import time

from a2a.types import a2a_pb2
from google.protobuf import struct_pb2, timestamp_pb2

TERMINAL = {a2a_pb2.TASK_STATE_COMPLETED, a2a_pb2.TASK_STATE_FAILED, a2a_pb2.TASK_STATE_CANCELED,
            a2a_pb2.TASK_STATE_REJECTED}
INTERRUPTED = {a2a_pb2.TASK_STATE_INPUT_REQUIRED, a2a_pb2.TASK_STATE_AUTH_REQUIRED}
# The gateway's own bookkeeping in task.metadata (capability, turn: see tasks.TaskService.resume).
OWN_METADATA = "topicbridge"
# Marks the agent's message in a COMPLETED status as the answer itself (A2A: SendMessage answered
# with a Message, not a Task). A message reply is a task like any other on the reply channel and in
# the index, so every instance and surface can tell; the surfaces hand out the message unmarked.
REPLY_MARK = "topicbridge.reply"


def stamp_now(timestamp: timestamp_pb2.Timestamp) -> None:
    """Set `timestamp` to now. Timestamp.GetCurrentTime goes through a datetime: ~10x the CPU,
    several times per task."""
    timestamp.seconds, timestamp.nanos = divmod(time.time_ns(), 1_000_000_000)


def is_final(state: int) -> bool:
    return state in TERMINAL or state in INTERRUPTED


def mark_reply(message: a2a_pb2.Message) -> None:
    message.metadata.fields[REPLY_MARK].bool_value = True


def message_reply(task: a2a_pb2.Task) -> a2a_pb2.Message | None:
    """The agent's Message if it answered the task's latest turn with one (`mark_reply`), unmarked."""
    if task.status.state != a2a_pb2.TASK_STATE_COMPLETED or REPLY_MARK not in task.status.message.metadata.fields:
        return None
    message = a2a_pb2.Message()
    message.CopyFrom(task.status.message)
    del message.metadata.fields[REPLY_MARK]
    if not message.metadata.fields:
        message.ClearField("metadata")
    return message


def apply(task: a2a_pb2.Task, event: a2a_pb2.StreamResponse) -> None:
    """Fold one event into `task` in place."""
    kind = event.WhichOneof("payload")
    if kind == "task":
        own = task.metadata.fields.get(OWN_METADATA)
        own = struct_pb2.Value(struct_value=own.struct_value) if own is not None else None
        task.CopyFrom(event.task)
        if own is not None:     # a worker's snapshot does not know the gateway's bookkeeping
            task.metadata.fields[OWN_METADATA].CopyFrom(own)
    elif kind == "status_update":
        if task.status.HasField("message"):
            task.history.append(task.status.message)
        task.status.CopyFrom(event.status_update.status)
    elif kind == "artifact_update":
        _apply_artifact(task, event.artifact_update)
    elif kind == "message":
        task.history.append(event.message)


def _apply_artifact(task: a2a_pb2.Task, update: a2a_pb2.TaskArtifactUpdateEvent) -> None:
    for existing in task.artifacts:
        if existing.artifact_id == update.artifact.artifact_id:
            if update.append:
                existing.parts.extend(update.artifact.parts)
            else:
                existing.CopyFrom(update.artifact)
            return
    task.artifacts.append(update.artifact)
