"""An agent's question inside an MCP task: when the gateway task behind an MCP task waits for
input (A2A INPUT_REQUIRED) and the client declared `elicitation`, the MCP task is
`input_required` and the client answers the way its era defines; the answer continues the A2A
task (TaskService.resume) on whichever gateway instance receives it. (A plain `tools/call` that
meets a question is elicit.py.)

2026-07-28, extension io.modelcontextprotocol/tasks, "Task Update Requests":
    "When a task requires input from the client (indicated by the `input_required` status), the
    server includes outstanding requests in the `inputRequests` field of the `tasks/get`
    response [...]. The client provides responses via the `inputResponses` field in one or more
    subsequent `tasks/update` requests."
    "Each request key in `inputRequests` MUST be unique over the lifetime of a single task."
    "A server SHOULD ignore any `inputResponses` responses mapped to a key that is not currently
    outstanding for the task [...]. A server MAY accept a partial set of responses [...]; in
    that case the task remains in `input_required` until the remaining responses arrive."
  One input request per form the agent sent (each data part of its status message holding a
  JSON Schema object; none: one `answer` string). Keys are `<name>-<round>`: the form's `title`
  when it is a plain name (else `answer`, `answer2`, ...) and the task's history length when it
  asked, so no key comes back in a later round. Accepted answers wait in the task's `mcp-tasks`
  record (a conditional write: two instances answering at once both count) until every request
  of the round has one; then they continue the task, as one message: the one answer as elicit.py
  makes it, or a data part {name: content} for several. A declined or cancelled request cancels
  the task: its key is answered, so nothing could answer the question any more. Keys that are not
  outstanding, and updates of a task that waits for nothing, are ignored (acked), as quoted;
  a response to an outstanding key that is not an elicitation result is INVALID_PARAMS.

2025-11-25, basic/utilities/tasks, "Input Required Status":
    "When the requestor encounters the `input_required` status, it SHOULD preemptively call
    `tasks/result`." "The receiver MUST include the `io.modelcontextprotocol/related-task`
    metadata in the request to associate it with the task."
  So the blocking `tasks/result` asks: the agent's form as `elicitation/create` on that request's
  own stream (the side channel), `related-task` in its `_meta`; an accepted answer continues the
  task and `tasks/result` keeps blocking. A declined or cancelled question cancels the task (the
  cancellation sticks, as `tasks/cancel`'s does) and `tasks/result` answers the cancelled result.
"""

from __future__ import annotations

import os
import re

import mcp_types as types
from a2a.types import a2a_pb2
from google.protobuf import json_format
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import INVALID_PARAMS

from gateway.tasks import fold
from gateway.tasks.errors import NotCancelableError, TaskRunningError, TaskTerminalError
from . import elicit
from .results import json_value

RELATED_TASK = "io.modelcontextprotocol/related-task"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_ENDED = (TaskRunningError, TaskTerminalError, NotCancelableError)   # another answer or a cancel came first


def shown(ctx, task: a2a_pb2.Task) -> bool:
    """Whether this request sees the task as `input_required` (else, as before, the question
    is the task's result: a client without elicitation could not answer it)."""
    return elicit.asks(task) and elicit.supported(ctx)


def forms(task: a2a_pb2.Task) -> list[dict]:
    """The agent's forms: each data part of its status message that is a JSON Schema object."""
    found = []
    for part in task.status.message.parts:
        if part.HasField("data"):
            schema = json_value(part.data)
            if isinstance(schema, dict) and schema.get("type") == "object" and isinstance(schema.get("properties"), dict):
                found.append(schema)
    return found or [elicit.requested_schema(task)]


def _names(schemas: list[dict]) -> list[str]:
    names = []
    for schema in schemas:
        title = schema.get("title")
        name = title if isinstance(title, str) and _NAME.fullmatch(title) and title not in names else elicit.ANSWER
        while name in names:
            name = f"{elicit.ANSWER}{len(names) + 1}"
        names.append(name)
    return names


def questions(task: a2a_pb2.Task) -> dict[str, tuple[str, dict]]:
    """key -> (name, elicitation params) for every request of the task's current round."""
    schemas = forms(task)
    round_ = len(task.history)
    return {f"{name}-{round_}": (name, {"mode": "form", "message": elicit.question(task), "requestedSchema": schema})
            for name, schema in zip(_names(schemas), schemas)}


def outstanding(task: a2a_pb2.Task, answers: dict) -> dict:
    """The `inputRequests` of tasks/get: the round's requests not answered yet."""
    return {key: {"method": "elicitation/create", "params": params}
            for key, (_, params) in questions(task).items() if key not in answers}


def _response(key: str, response) -> tuple[str, dict | None]:
    action = response.get("action") if isinstance(response, dict) else None
    content = response.get("content") if isinstance(response, dict) else None
    if action not in ("accept", "decline", "cancel") or not (content is None or isinstance(content, dict)):
        raise MCPError(INVALID_PARAMS, f"inputResponses.{key}: not an elicitation result "
                                       "(an object with action accept, decline or cancel)")
    return action, content


def answer_message(task: a2a_pb2.Task, answers: dict) -> a2a_pb2.Message:
    """The next turn's message: the one answer as a plain call's, or {name: content} for several."""
    asked = questions(task)
    if len(asked) == 1:
        return elicit.answer_message(answers[next(iter(asked))])
    message = a2a_pb2.Message(message_id=os.urandom(16).hex(), role=a2a_pb2.ROLE_USER)
    part = a2a_pb2.Part(media_type="application/json")
    json_format.ParseDict({name: answers[key] or {} for key, (name, _) in asked.items()}, part.data)
    message.parts.append(part)
    return message


# ------------------------------------------------------------ 2026-07-28: tasks/update

async def update(tasks, records, task: a2a_pb2.Task, record, owner: str | None, responses: dict) -> None:
    """Take the responses to outstanding requests; continue the task once all are answered."""
    if not elicit.asks(task):
        return                          # nothing is outstanding: ignored, as the spec says
    asked = questions(task)
    given = {key: _response(key, value) for key, value in responses.items() if key in asked}
    if not given:
        return
    refused = next((action for action, _ in given.values() if action != "accept"), None)
    if refused is not None:
        await _cancel(tasks, task.id, f"the user {refused}d the agent's question")
        return
    answers = await records.change(task.id, owner, lambda r: _take(r, asked, given))
    if answers is None or not asked.keys() <= answers.keys():
        return                          # the task remains input_required for the other requests
    await _resume(tasks, task, record.capability, answer_message(task, answers))


def _take(record, asked: dict, given: dict) -> dict:
    """Record the accepted answers of this round (those of earlier rounds are dropped)."""
    record.answers = {key: content for key, content in record.answers.items() if key in asked}
    for key, (_, content) in given.items():
        record.answers.setdefault(key, content)        # an answered key is already satisfied
    return record.answers


async def _resume(tasks, task: a2a_pb2.Task, capability: str, message: a2a_pb2.Message) -> a2a_pb2.Task | None:
    """The task as resubmitted, or None when it no longer waited for this answer."""
    try:
        resumed, watch = await tasks.resume(task.id, message, capability=capability)
    except _ENDED:
        return None
    tasks.unwatch(watch)                # followed through the task index, like any MCP task
    return resumed


async def _cancel(tasks, task_id: str, reason: str) -> None:
    try:
        await tasks.cancel(task_id, reason)
    except _ENDED:
        pass


# ------------------------------------------------------------ 2025-11-25: tasks/result asks

async def ask_until_final(ctx, tasks, records, task: a2a_pb2.Task, record, owner: str | None) -> a2a_pb2.Task:
    """Block until the task ends, asking the agent's questions on this request's stream."""
    while True:
        if not fold.is_final(task.status.state):
            async for event in tasks.subscribe(task.id):       # until the turn ends
                fold.apply(task, event)
        if record.cancelled or not shown(ctx, task):
            return task
        answers = {}
        for key, (_, params) in questions(task).items():     # one form at a time, on this stream
            answer = await _ask(ctx, task.id, params)
            if answer.action != "accept":
                await _cancel(tasks, task.id, f"the user {answer.action}d the agent's question")
                record.cancelled = True
                await records.change(task.id, owner, _mark_cancelled)
                task.status.state = a2a_pb2.TASK_STATE_CANCELED
                return task
            answers[key] = answer.content
        task = await _resume(tasks, task, record.capability, answer_message(task, answers)) \
            or await tasks.get(task.id) or task


def _mark_cancelled(record) -> bool:
    record.cancelled = True
    return True


async def _ask(ctx, task_id: str, params: dict) -> types.ElicitResult:
    params = types.ElicitRequestFormParams(message=params["message"], requested_schema=params["requestedSchema"],
                                           _meta={RELATED_TASK: {"taskId": task_id}})
    return await ctx.session.send_request(types.ElicitRequest(params=params), types.ElicitResult,
                                          metadata=ServerMessageMetadata(related_request_id=ctx.request_id))
