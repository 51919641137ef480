"""MCP tasks over gateway tasks: one MCP task is one gateway task, same id.

A call that outlives its wait is not abandoned: its gateway task keeps running and its folded
state keeps landing in the backend's task index (TaskService), so any gateway instance can
answer for it. What MCP needs beyond the folded task is kept in the `mcp-tasks` table, written
before a task id is handed out (so a `tasks/get` for it resolves at once, on any instance):

    key: task id   value: {"capability": str, "created": unix time, "owner": str | null,
                           "cancelled": bool, "answers": {input request key: content}}

`owner` binds the task to the bearer token that created it (a digest, never the token);
`cancelled` makes a 2025-11-25 `tasks/cancel` stick, as that revision requires; `answers` holds
the answers to an agent's questions until every one of the round has come (task_input.py).

Two wire forms, chosen by the era of each request:
- 2026-07-28, extension `io.modelcontextprotocol/tasks`: `tools/call` may answer a flat
  CreateTaskResult (`resultType: "task"`); `tasks/get` inlines `result` or `error`;
  `tasks/update` and `tasks/cancel` answer an empty ack; requests without the extension in
  their `_meta` client capabilities are refused with -32021.
- 2025-11-25 experimental tasks: `tools/call` with a `task` param answers `{task: {...}}`;
  `tasks/get`, blocking `tasks/result`, `tasks/cancel`. No `tasks/list`: without an
  authorization context to scope it, a list would show every caller's tasks.

State mapping (A2A -> MCP): submitted/working -> working; input-required -> input_required when
the request's client declared elicitation (the question is asked and answered as task_input.py
says); else input-required and auth-required end the task with the agent's question ->
completed; failed -> completed with `isError` (2026: a tool error) or failed (2025); rejected ->
failed with a JSON-RPC error (the agent refused the request); canceled -> cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Awaitable, Callable

import anyio
import mcp_types as types
from a2a.types import a2a_pb2
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, decode_header_value
from mcp_types import HEADER_MISMATCH, INTERNAL_ERROR, METHOD_NOT_FOUND, MISSING_REQUIRED_CLIENT_CAPABILITY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from adapters.base import Backend
from adapters.errors import BackendError, ConflictError

from gateway.errors import codes_of, mcp_error
from gateway.tasks import fold
from gateway.tasks.errors import NotCancelableError, TaskNotFoundError
from gateway.tasks.service import TaskError, TaskService, Watch
from . import task_input
from .task_input import RELATED_TASK
from .results import status_text, task_meta, tool_result

log = logging.getLogger("topicbridge.mcp")

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
IMMEDIATE_RESPONSE = "io.modelcontextprotocol/model-immediate-response"
TABLE = "mcp-tasks"
TTL_MS = 24 * 3600 * 1000       # reply channels idle out after a day; the task index keeps the task
POLL_MS = 500
CHANGE_ATTEMPTS = 8             # conditional writes of one record racing other instances

_WORKING = {a2a_pb2.TASK_STATE_UNSPECIFIED, a2a_pb2.TASK_STATE_SUBMITTED, a2a_pb2.TASK_STATE_WORKING}

# The wording of the 2025-11-25 tasks spec for these two errors.
NOT_FOUND_MESSAGE = "Failed to retrieve task: Task not found"
NOT_CANCELABLE_MESSAGE = "Cannot cancel task: already in terminal status"


@contextlib.contextmanager
def reported_errors():
    """A backend or task error under an MCP request becomes the MCP error the gateway's error
    table (gateway/errors.py) names for it: a quota is a quota, an outage an outage."""
    try:
        yield
    except (BackendError, TaskError) as e:
        if codes_of(e).http >= 500:
            log.warning("backend failure under an MCP request: %r", e)
        raise mcp_error(e) from None


class TaskIdParams(types.RequestParams):
    task_id: str = Field(alias="taskId", min_length=1, max_length=128)


class UpdateTaskParams(TaskIdParams):
    input_responses: dict = Field(alias="inputResponses", default_factory=dict)


def is_modern(protocol_version: str) -> bool:
    return protocol_version in MODERN_PROTOCOL_VERSIONS


def missing_tasks_extension() -> MCPError:
    return MCPError(MISSING_REQUIRED_CLIENT_CAPABILITY, "Missing required client capability",
                    data={"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}})


def rejection(task: a2a_pb2.Task) -> MCPError:
    """A task the agent rejected is a protocol-level failure of the call."""
    return MCPError(INTERNAL_ERROR, "The agent rejected the request: " + (status_text(task) or "no reason given"),
                    data={"taskId": task.id, "state": "TASK_STATE_REJECTED"})


# ---------------------------------------------------------------- records

@dataclass
class TaskRecord:
    capability: str
    created: float
    owner: str | None = None
    cancelled: bool = False
    answers: dict = field(default_factory=dict)


class TaskRecords:
    """The `mcp-tasks` table (see the module docstring)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._table = None

    async def start(self) -> None:
        self._table = await self.backend.table(TABLE)

    async def put(self, task_id: str, record: TaskRecord) -> None:
        await self._table.put(task_id, json.dumps(asdict(record), separators=(",", ":")).encode())

    async def get(self, task_id: str, owner: str | None) -> TaskRecord | None:
        """The record, or None when there is none or it belongs to another caller."""
        raw = await self._table.get(task_id) if 0 < len(task_id) <= 128 else None
        if raw is None:
            return None
        try:
            record = TaskRecord(**json.loads(raw))
        except (ValueError, TypeError):
            log.warning("unreadable mcp task record %s", task_id)
            return None
        return record if record.owner is None or record.owner == owner else None

    async def change(self, task_id: str, owner: str | None, edit: Callable[[TaskRecord], object]):
        """Apply `edit` to the record with a conditional write, again when another writer came
        first; `edit`'s return value, or None when the record is missing or another caller's."""
        for _ in range(CHANGE_ATTEMPTS):
            row = await self._table.read(task_id) if 0 < len(task_id) <= 128 else None
            if row is None:
                return None
            try:
                record = TaskRecord(**json.loads(row[0]))
            except (ValueError, TypeError):
                return None
            if record.owner is not None and record.owner != owner:
                return None
            outcome = edit(record)
            try:
                await self._table.put(task_id, json.dumps(asdict(record), separators=(",", ":")).encode(),
                                      expect=row[1])
                return outcome
            except ConflictError:
                continue
        raise ConflictError(f"mcp task record {task_id!r} kept changing under {CHANGE_ATTEMPTS} writes")

    async def recent(self, owner: str | None, *, scan: int, limit: int) -> list[tuple[str, TaskRecord]]:
        """The caller's newest records among the first `scan` of the table (a bounded read)."""
        mine = []
        for task_id, raw in await self._table.scan(limit=scan):
            try:
                record = TaskRecord(**json.loads(raw))
            except (ValueError, TypeError):
                continue
            if record.owner == owner:
                mine.append((task_id, record))
        mine.sort(key=lambda row: row[1].created, reverse=True)
        return mine[:limit]


def owner_of(token: str | None) -> str | None:
    return hashlib.sha256(token.encode()).hexdigest()[:32] if token else None


# ---------------------------------------------------------------- a running call

class Call:
    """One submitted task as an MCP call sees it: a pump folds its events until it ends, so the
    request can wait with a bound, report progress, and leave the task running when it stops
    waiting. The pump is owned by the surface's task set, not by the request."""

    def __init__(self, task: a2a_pb2.Task, watch: Watch) -> None:
        self.task = task
        self.watch = watch
        self.events = 0
        self.done = False           # the watch ended: a final state, or this instance is closing
        self._changed = asyncio.Event()
        self.ended = asyncio.get_running_loop().create_future()     # resolved when `done` turns True

    @property
    def final(self) -> bool:
        return self.done and fold.is_final(self.task.status.state)

    async def pump(self) -> None:
        try:
            async for event in self.watch.events():
                fold.apply(self.task, event)
                self.events += 1
                self._changed.set()
        except TaskError as e:       # too slow to keep up: the task index still has the truth
            log.warning("call on task %s lost its event stream: %s", self.task.id, e.reason)
        finally:
            self.done = True
            self._changed.set()
            if not self.ended.done():
                self.ended.set_result(None)

    async def wait(self, seconds: float,
                   progress: Callable[[float, float | None, str | None], Awaitable[None]] | None = None) -> bool:
        """Wait up to `seconds` for a final state, reporting progress; True when the task ended."""
        deadline = time.monotonic() + seconds
        reported = 0
        while True:
            self._changed.clear()
            if progress is not None and self.events > reported:
                reported = self.events
                await progress(float(reported), None, status_text(self.task) or None)
            if self.done:
                return self.final
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with anyio.move_on_after(remaining):
                await self._changed.wait()


# ---------------------------------------------------------------- wire forms

def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def updated_at(task: a2a_pb2.Task, record: TaskRecord) -> str:
    if task.status.HasField("timestamp") and task.status.timestamp.seconds:
        return iso(task.status.timestamp.ToNanoseconds() / 1e9)
    return iso(record.created)


def mcp_status(task: a2a_pb2.Task, record: TaskRecord, *, modern: bool, asking: bool = False) -> str:
    """`asking`: the requesting client can answer the agent's question (task_input.shown)."""
    state = task.status.state
    if record.cancelled and not modern:
        return "cancelled"
    if state in _WORKING:
        return "working"
    if asking and state == a2a_pb2.TASK_STATE_INPUT_REQUIRED:
        return "input_required"
    if state == a2a_pb2.TASK_STATE_CANCELED:
        return "cancelled"
    if state == a2a_pb2.TASK_STATE_REJECTED or (state == a2a_pb2.TASK_STATE_FAILED and not modern):
        return "failed"
    return "completed"


def modern_task(task: a2a_pb2.Task, record: TaskRecord, output_schema: dict | None, *,
                detailed: bool, asking: bool = False) -> dict:
    """A 2026-07-28 Task; `detailed` inlines the result, error or input requests (tasks/get)."""
    status = mcp_status(task, record, modern=True, asking=asking)
    wire = {"taskId": task.id, "status": status, "createdAt": iso(record.created),
            "lastUpdatedAt": updated_at(task, record), "ttlMs": TTL_MS, "pollIntervalMs": POLL_MS}
    if text := status_text(task):
        wire["statusMessage"] = text
    if detailed and status == "completed":
        wire["result"] = tool_result(task, output_schema)
    elif detailed and status == "failed":
        error = rejection(task).error
        wire["error"] = {"code": error.code, "message": error.message, "data": error.data}
    elif detailed and status == "input_required":
        wire["inputRequests"] = task_input.outstanding(task, record.answers)
    return wire


def legacy_task(task: a2a_pb2.Task, record: TaskRecord, *, asking: bool = False) -> dict:
    """A 2025-11-25 Task."""
    wire = {"taskId": task.id, "status": mcp_status(task, record, modern=False, asking=asking),
            "createdAt": iso(record.created),
            "lastUpdatedAt": updated_at(task, record), "ttl": TTL_MS, "pollInterval": POLL_MS}
    if text := status_text(task):
        wire["statusMessage"] = text
    elif record.cancelled:
        wire["statusMessage"] = "The task was cancelled by request."
    return wire


def create_result(task: a2a_pb2.Task, record: TaskRecord, *, modern: bool) -> dict:
    if modern:
        return {"resultType": "task", **modern_task(task, record, None, detailed=False)}
    return {"task": legacy_task(task, record),
            "_meta": {IMMEDIATE_RESPONSE: f"Started task {task.id} on {record.capability}; "
                                          "its result will be available through tasks/result."}}


def still_running(task: a2a_pb2.Task, seconds: float) -> dict:
    """What a client without tasks gets when a call outlives its wait."""
    text = (f"The task is still running after {seconds:g} s (task_id: {task.id}). Call the "
            f"get_task_result tool with this task_id to fetch its result later.")
    return {"content": [{"type": "text", "text": text}], "_meta": {"io.topicbridge/task": task_meta(task)}}


# ---------------------------------------------------------------- tasks/* handlers

class TaskMethods:
    """Serves tasks/get, tasks/update, tasks/cancel (both eras) and tasks/result (2025-11-25)."""

    def __init__(self, tasks: TaskService, records: TaskRecords,
                 output_schema: Callable[[str], dict | None], principal: Callable) -> None:
        self.tasks = tasks
        self.records = records
        self.output_schema = output_schema      # capability name -> its output schema (or None)
        self.principal = principal              # ctx -> owner digest (or None)

    def register(self, server) -> None:
        server.add_request_handler("tasks/get", TaskIdParams, self.get)
        server.add_request_handler("tasks/cancel", TaskIdParams, self.cancel)
        server.add_request_handler("tasks/update", UpdateTaskParams, self.update)
        server.add_request_handler("tasks/result", TaskIdParams, self.result)

    async def _load(self, ctx, params: TaskIdParams) -> tuple[a2a_pb2.Task, TaskRecord]:
        if is_modern(ctx.protocol_version):
            _require_extension(ctx)
            _check_name_header(ctx, params.task_id)
        with reported_errors():
            record = await self.records.get(params.task_id, self.principal(ctx))
            task = await self.tasks.get(params.task_id) if record is not None else None
        if task is None:
            raise mcp_error(TaskNotFoundError(params.task_id), NOT_FOUND_MESSAGE)
        return task, record

    async def get(self, ctx, params: TaskIdParams) -> dict:
        task, record = await self._load(ctx, params)
        asking = task_input.shown(ctx, task)
        if is_modern(ctx.protocol_version):
            return modern_task(task, record, self.output_schema(record.capability), detailed=True, asking=asking)
        return legacy_task(task, record, asking=asking)

    async def update(self, ctx, params: UpdateTaskParams) -> dict:
        """2026-07-28: answers to the task's input requests (task_input.py); always an empty ack."""
        if not is_modern(ctx.protocol_version):
            raise MCPError(METHOD_NOT_FOUND, "Method not found", data="tasks/update")
        task, record = await self._load(ctx, params)
        with reported_errors():
            await task_input.update(self.tasks, self.records, task, record, self.principal(ctx),
                                    params.input_responses)
        return {}

    async def cancel(self, ctx, params: TaskIdParams) -> dict:
        task, record = await self._load(ctx, params)
        modern = is_modern(ctx.protocol_version)
        status = mcp_status(task, record, modern=modern, asking=task_input.shown(ctx, task))
        if status not in ("working", "input_required") or record.cancelled:
            if modern:
                return {}
            raise mcp_error(NotCancelableError(task.id, f"task {task.id!r} is {status}"),
                            f"{NOT_CANCELABLE_MESSAGE} '{status}'")
        try:
            await self.tasks.cancel(task.id, "cancelled by the MCP client")
        except TaskError as e:
            if modern:
                return {}
            spec_wording = {TaskNotFoundError: NOT_FOUND_MESSAGE, NotCancelableError: NOT_CANCELABLE_MESSAGE}
            raise mcp_error(e, spec_wording.get(type(e))) from None
        except BackendError as e:
            raise mcp_error(e) from None
        if modern:
            return {}
        record.cancelled = True
        with reported_errors():
            await self.records.put(task.id, record)
        return legacy_task(task, record)

    async def result(self, ctx, params: TaskIdParams) -> dict:
        if is_modern(ctx.protocol_version):
            raise MCPError(METHOD_NOT_FOUND, "Method not found", data="tasks/result")
        task, record = await self._load(ctx, params)
        if not record.cancelled:
            with reported_errors():     # blocks until the task ends, asking its questions on the way
                task = await task_input.ask_until_final(ctx, self.tasks, self.records, task, record,
                                                        self.principal(ctx))
        if record.cancelled and task.status.state not in fold.TERMINAL:
            task.status.state = a2a_pb2.TASK_STATE_CANCELED
        if task.status.state == a2a_pb2.TASK_STATE_REJECTED:
            raise rejection(task)
        result = tool_result(task, self.output_schema(record.capability))
        result["_meta"] = {**result.get("_meta", {}), RELATED_TASK: {"taskId": task.id}}
        return result


def client_has_tasks(ctx) -> bool:
    capabilities = ctx.session.client_capabilities
    return bool(capabilities and capabilities.extensions and TASKS_EXTENSION in capabilities.extensions)


def _require_extension(ctx) -> None:
    if not client_has_tasks(ctx):
        raise missing_tasks_extension()


def _check_name_header(ctx, task_id: str) -> None:
    """SEP-2663: tasks/* over HTTP carry `Mcp-Name: <taskId>`, validated like any routing header."""
    request = ctx.request
    if request is None or not hasattr(request, "headers"):
        return
    if decode_header_value(request.headers.get(MCP_NAME_HEADER)) != task_id:
        raise MCPError(HEADER_MISMATCH, f"{MCP_NAME_HEADER} header does not match params.taskId")
