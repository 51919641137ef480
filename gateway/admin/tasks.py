"""Admin task API: every task of the gateway, whatever its capability (the CLI and the UI use it).

    GET  /admin/tasks[?capability=&state=&limit=&page_token=]  -> {"tasks": [summary...], "next_page_token"}
    GET  /admin/tasks/live[?capability=&state=]                 -> SSE: one `task` event per summary as tasks change
    GET  /admin/tasks/{id}                                      -> {"summary": ..., "task": ProtoJSON Task}
    GET  /admin/tasks/{id}/events                               -> SSE: the task, then each event until it ends
    POST /admin/tasks/{id}/cancel                               -> {"summary": ..., "task": ...}

A summary is {"id", "context_id", "capability", "state", "updated", "message", "artifacts"}: the
state is the lower-case A2A name ("completed", "input_required"), `updated` the status time
(RFC 3339), `message` the text of the status message. The live stream reads the task index (so it
sees the tasks of every instance), a page of changes every `LIVE_INTERVAL` seconds. Errors are the
admin API's `{"error": {...}}` with the status of the gateway's error table.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json

from a2a.types import a2a_pb2
from google.protobuf import json_format
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from adapters.errors import BackendError, InvalidRequestError

from gateway.errors import codes_of, error_data
from gateway.tasks import fold
from gateway.tasks.errors import TaskError, TaskNotFoundError
from gateway.tasks.index import PageTokenError

LIVE_INTERVAL = 0.5         # seconds between two reads of the index by a live stream
LIVE_FIRST = 50             # tasks a live stream starts with
KEEPALIVE = 15.0            # seconds of silence before a comment line keeps proxies from closing the stream
DEFAULT_LIMIT, MAX_LIMIT = 50, 500
STATES = {a2a_pb2.TaskState.Name(v).removeprefix("TASK_STATE_").lower(): v
          for v in a2a_pb2.TaskState.values() if v}
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def routes(gateway) -> list:
    api = TaskAdmin(gateway.tasks)
    return [Route("/admin/tasks", api.list_tasks, methods=["GET"]),
            Route("/admin/tasks/live", api.live, methods=["GET"]),
            Route("/admin/tasks/{task_id}", api.show, methods=["GET"]),
            Route("/admin/tasks/{task_id}/events", api.events, methods=["GET"]),
            Route("/admin/tasks/{task_id}/cancel", api.cancel, methods=["POST"])]


def state_name(state: int) -> str:
    return a2a_pb2.TaskState.Name(state).removeprefix("TASK_STATE_").lower()


def capability_of(task: a2a_pb2.Task) -> str:
    own = task.metadata.fields.get(fold.OWN_METADATA)
    field = own.struct_value.fields.get("capability") if own is not None else None
    return field.string_value if field is not None else ""


def summary(task: a2a_pb2.Task) -> dict:
    message = " ".join(p.text for p in task.status.message.parts if p.text)
    return {"id": task.id, "context_id": task.context_id, "capability": capability_of(task),
            "state": state_name(task.status.state),
            "updated": task.status.timestamp.ToJsonString() if task.status.HasField("timestamp") else None,
            "message": message[:500], "artifacts": len(task.artifacts)}


def task_json(task: a2a_pb2.Task) -> dict:
    return json_format.MessageToDict(task)


def _handles_errors(endpoint):
    @functools.wraps(endpoint)
    async def wrapped(self, request: Request) -> Response:
        try:
            return await endpoint(self, request)
        except (BackendError, TaskError) as e:
            return JSONResponse({"error": error_data(e)}, status_code=codes_of(e).http)
        except PageTokenError as e:
            error = InvalidRequestError("page_token", e.token[:100], "not a token this gateway issued")
            return JSONResponse({"error": error_data(error)}, status_code=400)
    return wrapped


class TaskAdmin:
    def __init__(self, tasks) -> None:
        self.tasks = tasks

    @_handles_errors
    async def list_tasks(self, request: Request) -> Response:
        capability, state = _filters(request)
        limit = _limit(request.query_params.get("limit"))
        token = request.query_params.get("page_token", "")
        found: list[a2a_pb2.Task] = []
        # The index filters by state, not by capability: read on while pages pass that filter short.
        for _ in range(10):
            page = await self.tasks.list(state=state, page_size=limit, page_token=token)
            found += [t for t in page.tasks if not capability or capability_of(t) == capability]
            token = page.next_page_token
            if len(found) >= limit or not token:
                break
        return JSONResponse({"tasks": [summary(t) for t in found[:limit]], "next_page_token": token})

    @_handles_errors
    async def show(self, request: Request) -> Response:
        task = await self._task(request.path_params["task_id"])
        return JSONResponse({"summary": summary(task), "task": task_json(task)})

    @_handles_errors
    async def cancel(self, request: Request) -> Response:
        task = await self.tasks.cancel(request.path_params["task_id"], "canceled by an administrator")
        return JSONResponse({"summary": summary(task), "task": task_json(task)})

    @_handles_errors
    async def events(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        await self._task(task_id)          # a 404 before the stream starts
        return StreamingResponse(self._event_stream(task_id), media_type="text/event-stream", headers=SSE_HEADERS)

    async def _event_stream(self, task_id: str):
        try:
            async with contextlib.aclosing(self.tasks.subscribe(task_id, follow_turns=True)) as events:
                async for event in events:
                    yield _sse("event", json_format.MessageToDict(event))
        except (BackendError, TaskError) as e:
            yield _sse("error", {"error": error_data(e)})
        yield _sse("end", {})

    @_handles_errors
    async def live(self, request: Request) -> Response:
        capability, state = _filters(request)
        return StreamingResponse(self._live_stream(capability, state), media_type="text/event-stream",
                                 headers=SSE_HEADERS)

    async def _live_stream(self, capability: str, state: int):
        seen: dict[str, tuple] = {}         # task id -> (status time, state) last sent
        since: int | None = None
        quiet = 0.0
        while True:
            try:
                page = await self.tasks.list(state=state, page_size=LIVE_FIRST if since is None else 200,
                                             updated_after_ns=since)
            except BackendError as e:
                yield _sse("error", {"error": error_data(e)})
                page = None
            changed = [] if page is None else [t for t in reversed(page.tasks)
                                               if not capability or capability_of(t) == capability]
            for task in changed:
                item = summary(task)
                if seen.get(task.id) != (item["updated"], item["state"]):
                    seen[task.id] = (item["updated"], item["state"])
                    yield _sse("task", item)
            if page is not None and page.tasks:
                newest = max(t.status.timestamp.ToNanoseconds() for t in page.tasks)
                since = max(since or 0, newest - 1)     # the boundary task again: `seen` drops it
            elif since is None:
                since = 0
            if len(seen) > 10_000:
                seen.clear()
            quiet = 0.0 if changed else quiet + LIVE_INTERVAL
            if quiet >= KEEPALIVE:
                quiet = 0.0
                yield ": keepalive\n\n"
            await asyncio.sleep(LIVE_INTERVAL)

    async def _task(self, task_id: str) -> a2a_pb2.Task:
        task = await self.tasks.get(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        return task


def _sse(kind: str, data: dict) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _filters(request: Request) -> tuple[str, int]:
    capability = request.query_params.get("capability", "").strip()
    raw_state = request.query_params.get("state", "")       # exactly a name its document lists
    if raw_state and raw_state not in STATES:
        raise InvalidRequestError("state", raw_state, f"must be one of {', '.join(STATES)}")
    return capability, STATES.get(raw_state, 0)


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequestError("limit", raw, f"must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


# ---------------------------------------------------------------- OpenAPI 3.1 (merged by api.py)

def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(ref: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _sse_answer(description: str, kinds: list[str]) -> dict:
    """An event stream; the schema is one event's (its data is a JSON document, as text)."""
    event = {"type": "object", "required": ["event", "data"],
             "properties": {"event": {"enum": kinds},
                            "data": {"type": "string", "contentMediaType": "application/json"}}}
    return {"description": description, "headers": {"Cache-Control": {"schema": {"type": "string"}}},
            "content": {"text/event-stream": {"schema": event}}}


_TASK_ID = {"name": "task_id", "in": "path", "required": True, "description": "The task's id.",
            "schema": {"type": "string", "minLength": 1}}
_FILTERS = [
    {"name": "capability", "in": "query", "required": False, "description": "Only this capability's tasks.",
     "schema": {"type": "string"}},
    {"name": "state", "in": "query", "required": False,
     "description": "Only tasks in this state (empty: every state).", "schema": {"enum": ["", *sorted(STATES)]}},
]

OPENAPI_PATHS: dict = {
    "/admin/tasks": {"get": {
        "operationId": "listTasks", "summary": "Every task of the gateway, a page at a time",
        "parameters": [*_FILTERS,
                       {"name": "limit", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
                       {"name": "page_token", "in": "query", "required": False,
                        "description": "next_page_token of the previous page.", "schema": {"type": "string"}}],
        "responses": {"200": _json("#/components/schemas/TaskList", "A page of task summaries."),
                      "400": _error("Bad parameter or a page token this gateway did not issue.")}}},
    "/admin/tasks/live": {"get": {
        "operationId": "liveTasks", "summary": "Server-sent events: one `task` event per summary as tasks change",
        "description": "Never ends on its own: the client closes it.",
        "parameters": _FILTERS,
        "responses": {"200": _sse_answer("`task` events (data: a TaskSummary), `error` events, keepalive comments.",
                                          ["task", "error"]),
                      "400": _error("Bad parameter.")}}},
    "/admin/tasks/{task_id}": {"parameters": [_TASK_ID], "get": {
        "operationId": "getTask", "summary": "One task: its summary and the A2A Task (ProtoJSON)",
        "responses": {"200": _json("#/components/schemas/TaskDetail", "The task."),
                      "404": _error("No such task.")}}},
    "/admin/tasks/{task_id}/events": {"parameters": [_TASK_ID], "get": {
        "operationId": "taskEvents", "summary": "Server-sent events: the task, then each of its events until it ends",
        "responses": {"200": _sse_answer("`event` events (data: an A2A StreamResponse), then `end`.",
                                          ["event", "error", "end"]),
                      "404": _error("No such task.")}}},
    "/admin/tasks/{task_id}/cancel": {"parameters": [_TASK_ID], "post": {
        "operationId": "cancelTask", "summary": "Cancel a task, whoever created it",
        "responses": {"200": _json("#/components/schemas/TaskDetail", "The task, canceled."),
                      "404": _error("No such task."),
                      "409": _error("The task has ended already.")}}},
}

OPENAPI_SCHEMAS: dict = {
    "TaskSummary": {
        "type": "object", "required": ["id", "context_id", "capability", "state", "updated", "message", "artifacts"],
        "properties": {"id": {"type": "string"}, "context_id": {"type": "string"},
                       "capability": {"type": "string"}, "state": {"type": "string"},
                       "updated": {"type": ["string", "null"], "description": "Status time, RFC 3339."},
                       "message": {"type": "string", "description": "The status message's text (500 chars)."},
                       "artifacts": {"type": "integer", "minimum": 0}}},
    "TaskList": {
        "type": "object", "required": ["tasks", "next_page_token"],
        "properties": {"tasks": {"type": "array", "items": {"$ref": "#/components/schemas/TaskSummary"}},
                       "next_page_token": {"type": "string", "description": "Empty on the last page."}}},
    "TaskDetail": {
        "type": "object", "required": ["summary", "task"],
        "properties": {"summary": {"$ref": "#/components/schemas/TaskSummary"},
                       "task": {"type": "object", "description": "The A2A 1.0 Task (ProtoJSON)."}}},
}
