"""Real gateways for the MCP tests: uvicorn on 127.0.0.1 port 0 in this event loop, and the
native capabilities (worker SDK) the tests call through them."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from dataclasses import dataclass, field

import pytest
from a2a.types import a2a_pb2
from google.protobuf import json_format

from adapters.lite_remote import RemoteLiteBackend
from gateway.mcp.tools import TOOL_EXTENSION_URI
from gateway.registry.capabilities import Capability
from gateway.workers.worker import Worker
from tests.gateway.serving import running_gateway
from tests.lite_engine.engine_process import EngineProcess

BASE_SETTINGS = {"backend": "lite", "lite": {"data_dir": None, "tick": 0.005, "session_timeout": 5.0},
                 "gateway": {"host": "127.0.0.1", "mcp_registry_poll_seconds": 0.1,
                             "mcp_call_wait_seconds": 10.0, "mcp_task_wait_seconds": 0.2}}


def settings(remote: str | None = None, **gateway) -> dict:
    out = copy.deepcopy(BASE_SETTINGS)
    out["gateway"].update(gateway)
    if remote is not None:
        out["lite"] = {"mode": "remote", "target": remote, "session_timeout": 5.0}
    return out


@contextlib.contextmanager
def shared_engine():
    """A `topicbridge engine` process of its own, for gateways that share it: its target."""
    with EngineProcess(None, settings={"session_timeout": 5.0, "tick": 0.005}) as process:
        yield process.target


def engine_fixture():
    """A module-scoped fixture over `shared_engine` (`engine = engine_fixture()` in a test module):
    one engine process for the module's gateways and agents, started once."""
    @pytest.fixture(scope="module")
    def engine():
        with shared_engine() as target:
            yield target
    return engine


@contextlib.asynccontextmanager
async def two_gateways(target: str, **gateway):
    """Two gateway instances on the engine at `target`, with the same gateway settings."""
    async with running_gateway(settings(target, **gateway)) as first, \
            running_gateway(settings(target, **gateway)) as second:
        yield first, second


@contextlib.asynccontextmanager
async def remote_backend(target: str):
    """A backend connection of its own (as a worker process would have) to a shared engine."""
    backend = RemoteLiteBackend(target, session_timeout=5.0)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


def card(name: str, description: str, *, skills: list[dict] | None = None, task_support: str | None = None) -> dict:
    doc = {"name": name, "description": description, "version": "1.0.0",
           "skills": skills or [{"id": "main", "name": name, "description": description, "tags": []}]}
    if task_support:
        doc["capabilities"] = {"extensions": [{"uri": TOOL_EXTENSION_URI, "params": {"taskSupport": task_support}}]}
    return doc


@dataclass
class Agents:
    """Native capabilities served by the worker SDK; handlers record what they saw."""

    backend: object
    workers: list = field(default_factory=list)
    seen: dict = field(default_factory=dict)            # capability -> list of TaskContext
    release: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Queue = field(default_factory=asyncio.Queue)

    async def serve(self, name: str, handler, *, announce: bool = True, **capability) -> Worker:
        """Start a worker; `announce` registers it through its heartbeat, else with `registry.put`."""
        async def recording(task):
            self.seen.setdefault(name, []).append(task)
            await handler(self, task)

        card_doc = capability.pop("card", None) or card(name, f"The {name} test agent.")
        worker = Worker(self.backend, name, recording, card=card_doc if announce else None, heartbeat=1.0,
                        **capability)
        if not announce:
            from gateway.registry.capabilities import Registry
            registry = Registry(self.backend)
            await registry.start()
            await registry.put(Capability(name, card_doc, input_schema=capability.get("input_schema"),
                                          output_schema=capability.get("output_schema")))
        await worker.start()
        self.workers.append(worker)
        return worker

    async def close(self) -> None:
        for worker in self.workers:
            await worker.close()


@contextlib.asynccontextmanager
async def agents_on(backend):
    agents = Agents(backend)
    try:
        yield agents
    finally:
        await agents.close()


@contextlib.asynccontextmanager
async def gateway_serving(config: dict, **handlers):
    """A running gateway on `config` whose own backend serves one native agent per handler
    (capability name = keyword): the running gateway."""
    async with running_gateway(config) as running, agents_on(running.gateway.backend) as agents:
        for name, handler in handlers.items():
            await agents.serve(name, handler)
        yield running


# ---------------------------------------------------------------- handlers: (agents, task) -> None

async def echo(agents, task):
    await task.working("echoing")
    await task.complete(f"echo: {task.text}")


async def three_steps(agents, task):
    for step in (1, 2, 3):
        await task.working(f"step {step} of 3")
        await asyncio.sleep(0.02)  # sleep-ok: the agent's work, so that status events arrive apart
    await task.complete("all three steps done")


async def until_released(agents, task):
    """Works until the test sets `agents.release` (or the task is cancelled)."""
    await task.working("waiting to be released")
    try:
        await agents.release.wait()
    except asyncio.CancelledError:
        agents.cancelled.put_nowait(task.task_id)
        raise
    await task.complete(f"released: {task.text or task.data}")


async def structured(agents, task):
    args = task.data[0] if task.data else {}
    part = a2a_pb2.Part(media_type="application/json")
    json_format.ParseDict({"sum": args.get("a", 0) + args.get("b", 0)}, part.data)
    await task.complete(parts=[part])


async def broken(agents, task):
    raise ValueError("this agent always fails")


async def refusing(agents, task):
    await task.status(a2a_pb2.TASK_STATE_REJECTED, "I do not take such requests")


ADD_INPUT = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
             "required": ["a", "b"], "additionalProperties": False}
ADD_OUTPUT = {"type": "object", "properties": {"sum": {"type": "integer"}}, "required": ["sum"]}


async def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Poll a condition another process or instance makes true (bounded)."""
    async with asyncio.timeout(timeout):
        while not (value := await predicate()):
            await asyncio.sleep(interval)  # sleep-ok: polling state owned by another party
    return value


# ---------------------------------------------------------------- tasks from the client's side
# The SDK types the tasks methods but does not drive them; these are the requests and the
# result claim a tasks-aware client needs, built on the SDK's extension points.

import json  # noqa: E402
from typing import Literal  # noqa: E402

import httpx  # noqa: E402
import mcp_types as types  # noqa: E402
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim  # noqa: E402
from pydantic import ConfigDict, Field  # noqa: E402

TASKS = "io.modelcontextprotocol/tasks"


class TaskIdParams(types.RequestParams):
    task_id: str = Field(alias="taskId")


class GetTask(types.Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param = "taskId"


class CancelTask(types.Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams
    name_param = "taskId"


class TaskPayload(types.Request[TaskIdParams, Literal["tasks/result"]]):
    method: Literal["tasks/result"] = "tasks/result"
    params: TaskIdParams


class AnyResult(types.Result):
    """A task (either era) or an empty ack, fields kept as sent."""
    model_config = ConfigDict(extra="allow")


class CreatedTask(types.Result):
    """The 2026-07-28 CreateTaskResult (flat: Result & Task)."""
    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"]
    task_id: str
    status: str
    created_at: str
    last_updated_at: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


async def get_task(session, task_id: str) -> dict:
    result = await session.send_request(GetTask(params=TaskIdParams(taskId=task_id)), AnyResult)
    return result.model_dump(by_alias=True, exclude_none=True)


async def cancel_task(session, task_id: str) -> dict:
    result = await session.send_request(CancelTask(params=TaskIdParams(taskId=task_id)), AnyResult)
    return result.model_dump(by_alias=True, exclude_none=True)


async def task_payload(session, task_id: str) -> dict:
    result = await session.send_request(TaskPayload(params=TaskIdParams(taskId=task_id)), AnyResult)
    return result.model_dump(by_alias=True, exclude_none=True)


async def poll_until_done(session, task_id: str, timeout: float = 10.0) -> dict:
    async with asyncio.timeout(timeout):
        while (task := await get_task(session, task_id))["status"] in ("working", "input_required"):
            await asyncio.sleep(task.get("pollIntervalMs", 500) / 1000 / 5)  # sleep-ok: polling is the protocol
    return task


class TasksExtension(ClientExtension):
    """Declares io.modelcontextprotocol/tasks and resolves a CreateTaskResult by polling tasks/get."""

    identifier = TASKS

    def claims(self):
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=self._resolve)]

    @staticmethod
    async def _resolve(created: CreatedTask, ctx: ClaimContext) -> types.CallToolResult:
        task = await poll_until_done(ctx.session, created.task_id)
        if task["status"] == "failed":
            raise RuntimeError(f"task failed: {task['error']}")
        return types.CallToolResult.model_validate(task["result"])


class LegacyPeer:
    """A 2025-11-25 session spoken with plain HTTP, for what the SDK client refuses to send or
    receive: a task-augmented tools/call answers a CreateTaskResult, not a CallToolResult."""

    def __init__(self, url: str, headers: dict | None = None) -> None:
        self.url = url
        self.http = httpx.AsyncClient(timeout=30, headers=headers or {})
        self.session_id: str | None = None
        self._ids = iter(range(1, 1 << 30))

    async def __aenter__(self) -> "LegacyPeer":
        await self.request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                          "clientInfo": {"name": "legacy-peer", "version": "1"}})
        await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return self

    async def __aexit__(self, *exc) -> None:
        await self.http.aclose()

    async def request(self, method: str, params: dict) -> dict:
        reply = await self.post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params})
        return reply

    async def post(self, body: dict) -> dict | None:
        headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        response = await self.http.post(self.url, json=body, headers=headers)
        self.session_id = response.headers.get("mcp-session-id", self.session_id)
        if response.status_code == 202:
            return None
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            frames = [json.loads(line[5:]) for line in response.text.splitlines()
                      if line.startswith("data:") and line[5:].strip()]      # a priming event has no data
            return next(f for f in frames if "id" in f and f.get("id") == body.get("id"))
        return response.json()


class UpdateTaskParams(TaskIdParams):
    input_responses: dict = Field(alias="inputResponses")


class UpdateTask(types.Request[UpdateTaskParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    params: UpdateTaskParams
    name_param = "taskId"


async def update_task(session, task_id: str, responses: dict) -> dict:
    """2026-07-28 tasks/update: `responses` (key -> elicitation result) as the wire shows them."""
    request = UpdateTask(params=UpdateTaskParams(taskId=task_id, inputResponses=responses))
    result = await session.send_request(request, AnyResult)
    return result.model_dump(by_alias=True, exclude_none=True)
