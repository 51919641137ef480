"""An agent's question to an MCP caller mid-call: when the task of a `tools/call` reaches
INPUT_REQUIRED and the client declared the `elicitation` capability, the question goes to the
user and the answer continues the A2A task (TaskService.resume, any instance):

    2025-11-25   an `elicitation/create` request on the call's session; accept -> the answer
                 continues the task and the call keeps waiting; decline -> today's result (the
                 question and the task id to answer with); cancel -> the task is canceled
    2026-07-28   an `input_required` result (MRTR) whose one input request is that elicitation
                 (keyed by the form's `title` when it is a plain name, else `answer`) and whose
                 `requestState` names the task; the client retries the call with the response
                 and the state, which continues the task

The form is the agent's own when its status message carries a data part holding a JSON Schema
of an object (`requestedSchema`); otherwise one string field, `answer`. An accepted answer
becomes the next turn's message: the `answer` text, or the form's content as a data part.

Clients without elicitation keep the plain result. The state is not a secret: it names the
task and the question (the task's history length when it asked), and it is checked against the
task itself on whichever instance the retry lands: an altered or replayed state is INVALID_PARAMS.
The task id is already the capability to answer it (as the `task_id` argument is).
"""

from __future__ import annotations

import os
import re

from a2a.types import a2a_pb2
from google.protobuf import json_format
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from gateway.errors import mcp_error
from gateway.tasks.errors import TaskError
from .results import json_value, status_text, task_meta
from . import tasks as _tasks   # at call time: tasks.py imports task_input.py, which imports this

ANSWER = "answer"
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_STATE = re.compile(r"topicbridge-task:(?P<task>[0-9a-f]{32})/(?P<round>[0-9]{1,6})")
_STATE_PREFIX = "topicbridge-task:"


def supported(ctx) -> bool:
    capabilities = ctx.session.client_capabilities
    return capabilities is not None and capabilities.elicitation is not None


def asks(task: a2a_pb2.Task) -> bool:
    return task.status.state == a2a_pb2.TASK_STATE_INPUT_REQUIRED


def question(task: a2a_pb2.Task) -> str:
    return status_text(task) or "The agent needs more input."


def requested_schema(task: a2a_pb2.Task) -> dict:
    for part in task.status.message.parts:
        if part.HasField("data"):
            schema = json_value(part.data)
            if isinstance(schema, dict) and schema.get("type") == "object" and isinstance(schema.get("properties"), dict):
                return schema
    return {"type": "object", "properties": {ANSWER: {"type": "string", "title": "Answer",
                                                      "description": question(task)[:500]}},
            "required": [ANSWER]}


def answer_message(content: dict | None) -> a2a_pb2.Message:
    """The next turn's message from an accepted elicitation's `content`."""
    content = content or {}
    message = a2a_pb2.Message(message_id=os.urandom(16).hex(), role=a2a_pb2.ROLE_USER)
    if content.keys() == {ANSWER} and isinstance(content[ANSWER], str):
        message.parts.append(a2a_pb2.Part(text=content[ANSWER]))
    else:
        part = a2a_pb2.Part(media_type="application/json")
        json_format.ParseDict(content, part.data)
        message.parts.append(part)
    return message


def form_params(task: a2a_pb2.Task) -> dict:
    return {"mode": "form", "message": question(task), "requestedSchema": requested_schema(task)}


def input_required(task: a2a_pb2.Task) -> dict:
    """The 2026-07-28 result that asks the agent's question and names the task to continue. The
    request's key is the agent's form `title` when that is a plain name, else `answer`."""
    title = requested_schema(task).get("title")
    key = title if isinstance(title, str) and _KEY.fullmatch(title) else ANSWER
    return {"resultType": "input_required",
            "inputRequests": {key: {"method": "elicitation/create", "params": form_params(task)}},
            "requestState": f"{_STATE_PREFIX}{task.id}/{len(task.history)}"}     # a new state each round


def task_of_state(state: str) -> tuple[str, int]:
    """(task id, round) of a retried call's `requestState`; INVALID_PARAMS for anything else."""
    found = _STATE.fullmatch(state) if isinstance(state, str) else None
    if found is None:
        raise MCPError(INVALID_PARAMS, "requestState: not a state this gateway issued")
    return found["task"], int(found["round"])


async def _waiting_task(tasks, state: str) -> a2a_pb2.Task:
    """The task the state names, checked against the task itself: it must be waiting for the
    answer to exactly the question that state was issued with (a changed id or round, or an
    answer given already, is refused)."""
    task_id, round_ = task_of_state(state)
    task = await tasks.get(task_id)
    if task is None or not asks(task) or len(task.history) != round_:
        raise MCPError(INVALID_PARAMS, "requestState: no task waits for this answer (tampered or stale state)")
    return task


def response_content(responses: dict | None) -> tuple[str, dict | None]:
    """(action, content) of the answer in a retried call's `inputResponses`."""
    responses = responses or {}
    response = responses.get(ANSWER) or (next(iter(responses.values())) if len(responses) == 1 else None)
    if response is None:
        raise MCPError(INVALID_PARAMS, f"inputResponses: no {ANSWER!r} response to the agent's question")
    action = getattr(response, "action", None)
    if action not in ("accept", "decline", "cancel"):
        raise MCPError(INVALID_PARAMS, f"inputResponses.{ANSWER}: not an elicitation result")
    return action, getattr(response, "content", None)


# ------------------------------------------------------------ the two flows (McpSurface calls these)

def declined(task: a2a_pb2.Task, action: str) -> dict:
    """The result when the user would not answer: the question stays open (decline) or the task
    was canceled (cancel)."""
    text = (f"The user declined to answer the agent's question: {question(task)}\nCall the tool again with "
            f"task_id={task.id!r} to answer it later." if action == "decline"
            else "The user cancelled the agent's question; the task was cancelled.")
    return {"content": [{"type": "text", "text": text}], "isError": action == "cancel",
            "_meta": {"io.topicbridge/task": task_meta(task)}}


async def continue_retry(tasks, capability: str, params) -> tuple[_tasks.Call | None, dict | None]:
    """A 2026-07-28 retry carrying the answer: (the continued call, None), or (None, the result)
    when the user declined or cancelled."""
    action, content = response_content(params.input_responses)
    try:
        task = await _waiting_task(tasks, params.request_state)
        task_id = task.id
        if action == "accept":
            task, watch = await tasks.resume(task_id, answer_message(content), capability=capability)
            return _tasks.Call(task, watch), None
        if action == "cancel":
            await tasks.cancel(task_id, "the user cancelled the agent's question")
        return None, declined(task, action)
    except TaskError as e:
        raise mcp_error(e, f"requestState: {e.reason}") from None


async def ask_session(ctx, tasks, capability: str, call: _tasks.Call, wait: float,
                      spawn) -> tuple[_tasks.Call, bool | dict]:
    """2025-11-25: ask on the session while the task waits for input; each accepted answer
    continues it and the call waits again. (call, finished), or (call, result) when the user
    would not answer."""
    finished: bool | dict = True
    while finished is True and asks(call.task):
        answer = await ctx.session.elicit_form(question(call.task), requested_schema(call.task),
                                               related_request_id=ctx.request_id)
        if answer.action != "accept":
            if answer.action == "cancel":
                await tasks.cancel(call.task.id, "the user cancelled the agent's question")
            return call, declined(call.task, answer.action)
        try:
            task, watch = await tasks.resume(call.task.id, answer_message(answer.content), capability=capability)
        except TaskError as e:
            raise mcp_error(e) from None
        call = _tasks.Call(task, watch)
        spawn(call.pump())
        finished = await call.wait(wait, ctx.session.report_progress) if wait > 0 else False
    return call, finished
