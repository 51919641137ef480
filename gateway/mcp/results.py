"""A folded A2A task as an MCP `CallToolResult`.

How a task's parts become MCP content blocks:

    text part                          -> text
    text part, filename "<scheme>://…" -> embedded text resource at that URI (with its media type)
    raw part, media type image/*       -> image        audio/* -> audio
    raw part, other media types        -> embedded blob resource
    url part                           -> resource_link
    data part                          -> text (the JSON), and `structuredContent` when the
                                          capability declares an output schema
    an artifact larger than `inline_limit` -> one resource_link to it (resources.py serves it)

A task that needs input ends the call with the agent's question and the task id to answer with;
a failed or canceled task is a tool error (`isError`); a rejected one is a protocol error, which
is the caller's to raise (mcp/tasks.py `rejection`).
"""

from __future__ import annotations

import base64
import json

import jsonschema
from a2a.types import a2a_pb2
from google.protobuf import json_format

from gateway.tasks import fold


def tool_result(task: a2a_pb2.Task, output_schema: dict | None, inline_limit: int | None = None) -> dict:
    """The CallToolResult for a task in a final state (REJECTED is a protocol error: see `rejection`).
    With `inline_limit`, larger artifacts are linked, not inlined (the caller keeps the task's
    record, so that the link can be read: resources.py)."""
    state = task.status.state
    if state == a2a_pb2.TASK_STATE_COMPLETED:
        return _completed(task, output_schema, inline_limit)
    if state in (a2a_pb2.TASK_STATE_INPUT_REQUIRED, a2a_pb2.TASK_STATE_AUTH_REQUIRED):
        question = status_text(task) or "the agent needs more input"
        return {"content": [{"type": "text", "text": f"The agent needs more input: {question}\n"
                             f"Call the tool again with task_id={task.id!r} and your answer as the message."}],
                "_meta": {"io.topicbridge/task": task_meta(task)}}
    reason = status_text(task)
    if state == a2a_pb2.TASK_STATE_CANCELED:
        text = "The task was cancelled" + (f": {reason}" if reason else ".")
    else:
        text = reason or "The task failed."
    return {"content": [{"type": "text", "text": text}], "isError": True,
            "_meta": {"io.topicbridge/task": task_meta(task)}}


def _completed(task: a2a_pb2.Task, output_schema: dict | None, inline_limit: int | None) -> dict:
    reply = fold.message_reply(task)      # the agent answered with a Message: its parts are the answer
    links = []
    if reply is None and inline_limit is not None:
        from .resources import artifact_size, link      # resources.py -> tasks.py -> this module
        artifacts = [a for a in task.artifacts if artifact_size(a) <= inline_limit]
        links = [link(task.id, a) for a in task.artifacts if artifact_size(a) > inline_limit]
    else:
        artifacts = list(task.artifacts)
    parts = list(reply.parts) if reply is not None else [p for a in artifacts for p in a.parts] or \
        ([] if links else _reply_parts(task))
    content = [block for i, p in enumerate(parts) if (block := content_block(p, task.id, i)) is not None] + links
    if not content:
        content = [{"type": "text", "text": status_text(task) or "Done (the agent returned no output)."}]
    result = {"content": content, "_meta": {"io.topicbridge/task": task_meta(task)}}
    if output_schema is None:
        return result
    structured = _structured(parts)
    error = _schema_error(structured, output_schema)
    if error is not None:
        return {"content": [{"type": "text", "text": f"The agent's output does not match its output schema: {error}"},
                            *content], "isError": True, "_meta": result["_meta"]}
    result["structuredContent"] = structured
    return result


def _reply_parts(task: a2a_pb2.Task) -> list[a2a_pb2.Part]:
    """Without artifacts, the answer is the agent's last message (or the final status message)."""
    if task.status.HasField("message") and task.status.message.parts:
        return list(task.status.message.parts)
    for message in reversed(task.history):
        if message.role == a2a_pb2.ROLE_AGENT and message.parts:
            return list(message.parts)
    return []


def json_value(value):
    """A protobuf Value as plain JSON: Value keeps every number as a double, so 5 comes back as 5.0."""
    return _integral(json_format.MessageToDict(value))


def _integral(value):
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2 ** 53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _structured(parts: list[a2a_pb2.Part]):
    for part in parts:
        if part.HasField("data"):
            return json_value(part.data)
    for part in parts:
        if part.text:
            try:
                return json.loads(part.text)
            except ValueError:
                continue
    return None


def _schema_error(value, schema: dict) -> str | None:
    if value is None:
        return "no structured output"
    if not isinstance(value, dict):
        return "structured output is not an object"
    error = jsonschema.exceptions.best_match(_output_validator(schema).iter_errors(value))
    return None if error is None else error.message


_VALIDATORS: dict[int, tuple[dict, jsonschema.Draft202012Validator]] = {}
_MAX_VALIDATORS = 256


def _output_validator(schema: dict) -> jsonschema.Draft202012Validator:
    """One validator per output schema object (a catalog entry keeps its schema while it lives;
    the entry held here keeps the id from being reused)."""
    held = _VALIDATORS.get(id(schema))
    if held is not None and held[0] is schema:
        return held[1]
    if len(_VALIDATORS) >= _MAX_VALIDATORS:
        _VALIDATORS.clear()
    validator = jsonschema.Draft202012Validator(schema)
    _VALIDATORS[id(schema)] = (schema, validator)
    return validator


def content_block(part: a2a_pb2.Part, task_id: str, index: int) -> dict | None:
    kind = part.WhichOneof("content")
    media = part.media_type
    if kind == "text":
        if "://" in part.filename:
            return {"type": "resource", "resource": {"uri": part.filename, "mimeType": media or "text/plain",
                                                     "text": part.text}}
        return {"type": "text", "text": part.text}
    if kind == "raw":
        data = base64.b64encode(part.raw).decode()
        if media.startswith("image/"):
            return {"type": "image", "data": data, "mimeType": media}
        if media.startswith("audio/"):
            return {"type": "audio", "data": data, "mimeType": media}
        uri = part.filename if "://" in part.filename else f"topicbridge://tasks/{task_id}/parts/{index}"
        return {"type": "resource", "resource": {"uri": uri, "mimeType": media or "application/octet-stream",
                                                 "blob": data}}
    if kind == "url":
        link = {"type": "resource_link", "uri": part.url, "name": part.filename or part.url}
        if media:
            link["mimeType"] = media
        return link
    if kind == "data":
        return {"type": "text", "text": json.dumps(json_value(part.data), ensure_ascii=False)}
    return None


def status_text(task: a2a_pb2.Task) -> str:
    return "\n".join(p.text for p in task.status.message.parts if p.text)


def task_meta(task: a2a_pb2.Task) -> dict:
    return {"taskId": task.id, "contextId": task.context_id,
            "state": a2a_pb2.TaskState.Name(task.status.state)}
