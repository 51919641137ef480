"""The MCP surface: every capability in the registry is a tool, served by one low-level SDK
server (`mcp.server.Server`) at `/mcp` over streamable HTTP, and over stdio by `topicbridge
mcp-stdio`.

Both protocol eras on one endpoint, as the SDK's session manager routes them:
- 2026-07-28 (stateless): each POST carries its own `_meta` envelope; tool-list changes reach a
  client through `subscriptions/listen`; closing a response stream cancels its call; tasks are
  the `io.modelcontextprotocol/tasks` extension.
- 2025-11-25 (sessions): `initialize`, `Mcp-Session-Id`, `notifications/tools/list_changed` on
  the session's GET stream, `notifications/cancelled`, experimental `tasks/*`. A session lives on
  one gateway instance; its tasks do not (see mcp_tasks).

A `tools/call` on a capability submits a gateway task and follows it: status and artifact events
become progress notifications, a client's cancellation cancels the task, and a call that outlives
its wait hands out the task instead of blocking (a CreateTaskResult to clients that speak tasks,
a task id for `get_task_result` to the others). Tools come from a snapshot of the registry that a
watcher refreshes every `mcp_registry_poll_seconds`; a change in any listed tool is announced.

Who calls what: the lifespan starts this part after the registry and task service (`start`
enters the SDK session manager's `run()`, which must outlive every request) and closes it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import weakref
from collections.abc import Mapping

import anyio
import mcp_types as types
from a2a.types import a2a_pb2
from mcp.server import Server
from mcp.server.caching import CacheHint
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND
from starlette.routing import Route

from adapters.errors import BackendError

from gateway.errors import mcp_error
from gateway.tasks import fold
from gateway.tasks.relay import recorded
from gateway.tasks.service import TaskError
from . import elicit
from .resources import ArtifactResources, linked
from .events import SessionManager
from .streams import ChannelEvents, ChannelResume, progress_reporter
from . import lean as mcp_lean
from .auth import AccessPolicy, McpGuard, metadata_routes, owner_from, principal_from
from .results import status_text, tool_result
from .tasks import (TASKS_EXTENSION, Call, TaskMethods, TaskRecord, TaskRecords, client_has_tasks, create_result,
                    is_modern, missing_tasks_extension, rejection, reported_errors, still_running)
from .tools import FIND_CAPABILITIES, GET_TASK_RESULT, Catalog, ToolEntry, to_message

log = logging.getLogger("topicbridge.mcp")

ENDPOINT = "/mcp"
INSTRUCTIONS = ("This gateway offers AI agents as tools: each tool is one agent (a capability registered at the "
                "gateway). Use find_capabilities to search them by what they do. A call that runs long returns "
                "a task id; fetch its result with get_task_result.")
NOTIFY_TIMEOUT = 5.0

DEFAULTS = {"mcp_call_wait_seconds": 30.0, "mcp_task_wait_seconds": 0.5, "mcp_registry_poll_seconds": 2.0,
            "mcp_session_idle_seconds": 1800.0, "mcp_lean_dispatch": True, "mcp_inline_artifact_bytes": 65536}


class _GatewayServer(Server):
    """The SDK's low-level server, advertising what the gateway adds: tool-list changes on every era
    and, on 2025-11-25, the experimental tasks capability (2026-07-28 gets the extension instead)."""

    def get_capabilities(self, notification_options=None, experimental_capabilities=None, extensions=None,
                         *, protocol_version=None):
        capabilities = super().get_capabilities(NotificationOptions(tools_changed=True), experimental_capabilities,
                                                extensions, protocol_version=protocol_version)
        if protocol_version is None or not is_modern(protocol_version):
            capabilities.tasks = types.ServerTasksCapability(
                cancel=types.TasksCancelCapability(),
                requests=types.ServerTasksRequestsCapability(tools=types.TasksToolsCapability(
                    call=types.TasksCallCapability())))
        return capabilities


class McpSurface:
    def __init__(self, gateway) -> None:
        settings = gateway.settings.get("gateway", {})
        self.tasks = gateway.tasks
        self.registry = gateway.registry
        self.call_wait = float(settings.get("mcp_call_wait_seconds", DEFAULTS["mcp_call_wait_seconds"]))
        self.task_wait = float(settings.get("mcp_task_wait_seconds", DEFAULTS["mcp_task_wait_seconds"]))
        self.poll = float(settings.get("mcp_registry_poll_seconds", DEFAULTS["mcp_registry_poll_seconds"]))
        self.inline_limit = int(settings.get("mcp_inline_artifact_bytes", DEFAULTS["mcp_inline_artifact_bytes"]))
        self.policy = AccessPolicy.from_settings(gateway.settings, ENDPOINT)
        self.lean = bool(settings.get("mcp_lean_dispatch", DEFAULTS["mcp_lean_dispatch"])) and mcp_lean.AVAILABLE
        self.records = TaskRecords(gateway.backend)
        self.catalog = Catalog([])
        self._source = ""                                   # digest of the registry the catalog was built from
        self._refresh_lock = asyncio.Lock()
        self.bus = InMemorySubscriptionBus()
        self.listen = ListenHandler(self.bus)
        self.server = self._build_server()
        self.manager = SessionManager(
            app=self.server, json_response=False, stateless=False, event_store=ChannelEvents(), retry_interval=1000,   # Last-Event-ID
            # The guard below does Origin/Host; the SDK still checks Content-Type.
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            session_idle_timeout=float(settings.get("mcp_session_idle_seconds",
                                                    DEFAULTS["mcp_session_idle_seconds"])))
        self.lean_path: mcp_lean.LeanToolCalls | None = None     # set by routes() when self.lean
        self._legacy: weakref.WeakSet = weakref.WeakSet()    # 2025-11-25 connections, for list_changed
        self._background: set[asyncio.Task] = set()
        self._watcher: asyncio.Task | None = None
        self._stack = contextlib.AsyncExitStack()
        self._closing = False

    # ------------------------------------------------------------ wiring

    def _build_server(self) -> Server:
        server = _GatewayServer("topicbridge", version="0.1.0", title="topicbridge gateway",
                                instructions=INSTRUCTIONS,
                                cache_hints={"tools/list": CacheHint(ttl_ms=0, scope="private")},
                                get_tool_input_schema=self._input_schema,
                                on_list_tools=self._list_tools, on_call_tool=self._call_tool,
                                on_subscriptions_listen=self.listen)
        server.extensions = {TASKS_EXTENSION: {}}
        server.middleware = [self._middleware]
        TaskMethods(self.tasks, self.records, self._output_schema, self._owner).register(server)
        ArtifactResources(self.tasks, self.records, self._owner).register(server)
        return server

    def routes(self) -> list:
        endpoint = self.manager.handle_request
        if self.lean:       # the hot tools/call in front of the SDK (mcp_lean); everything else is the SDK's
            self.lean_path = mcp_lean.LeanToolCalls(self, endpoint, self.manager.max_request_body_size)
            endpoint = self.lean_path
        endpoint = ChannelResume(endpoint, self)        # Last-Event-ID cursors of any instance (streams.py)
        return [Route(ENDPOINT, McpGuard(endpoint, self.policy)), *metadata_routes(self.policy)]

    async def start(self) -> None:
        await self.records.start()
        await self.refresh()
        await self._stack.enter_async_context(self.manager.run())
        self._watcher = asyncio.get_running_loop().create_task(self._watch_registry())

    async def close(self) -> None:
        self._closing = True                 # calls cut short now leave their tasks running
        if self.lean_path is not None:
            self.lean_path.stop_waiting()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        self.listen.close()
        await self._stack.aclose()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def serve_stdio(self) -> None:
        """Serve one MCP client on this process's stdin/stdout (either era)."""
        from mcp.server.stdio import stdio_server
        async with stdio_server() as (read_stream, write_stream):
            await self.server.run(read_stream, write_stream, self.server.create_initialization_options())

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ------------------------------------------------------------ the registry as tools

    async def refresh(self) -> bool:
        """Rebuild the catalog when the registry changed; announce it. True when it changed."""
        async with self._refresh_lock:
            capabilities = await self.registry.list()
            source = _digest(capabilities)
            if source == self._source:
                return False
            catalog = Catalog(capabilities)
            self._source = source
            changed = catalog.fingerprint != self.catalog.fingerprint
            self.catalog = catalog
        if changed:
            await self._announce_change()
        return changed

    async def _watch_registry(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            try:
                await self.refresh()
            except BackendError as e:
                log.warning("reading the registry failed (%s); the tool list may be stale", e)
            except Exception:           # the watcher must outlive a bad record or a bug
                log.exception("refreshing the MCP tool list failed")

    async def _announce_change(self) -> None:
        await self.bus.publish(ToolsListChanged())
        for connection in list(self._legacy):
            self._spawn(_notify_quietly(connection))

    async def _entry(self, name: str) -> ToolEntry | None:
        entry = self.catalog.get(name)
        if entry is None and await self.registry.get(name) is not None:
            await self.refresh()             # registered a moment ago, before the watcher saw it
            entry = self.catalog.get(name)
        return entry

    def _input_schema(self, name: str) -> dict | None:
        entry = self.catalog.get(name)
        return entry.input_schema if entry else None

    def _output_schema(self, capability: str) -> dict | None:
        entry = self.catalog.get(capability)
        return entry.output_schema if entry else None

    @staticmethod
    def _owner(ctx) -> str | None:
        return owner_from(ctx.request)

    # ------------------------------------------------------------ handlers

    async def _middleware(self, ctx, call_next):
        if ctx.request_id is not None and not is_modern(ctx.protocol_version):
            connection = getattr(ctx.session, "_connection", None)   # the SDK offers no public handle
            if connection is not None and connection.has_standalone_channel:
                self._legacy.add(connection)
            if ctx.method == "tools/call" and isinstance(ctx.params, Mapping) and ctx.params.get("task") is not None:
                # A CreateTaskResult is not a CallToolResult: answered here, past the SDK's result check.
                params = types.CallToolRequestParams.model_validate(ctx.params, by_name=False)
                return await self._call_tool(ctx, params, legacy_task=True)
        return await call_next(ctx)

    async def _list_tools(self, ctx, params) -> dict:
        if not (params and params.cursor):
            with contextlib.suppress(BackendError):
                await self.refresh()         # a listing shows what is registered now, not at the last poll
        tools, cursor = self.catalog.page(params.cursor if params else None, legacy=not is_modern(ctx.protocol_version),
                                          allowed=_allowed(ctx))
        result = {"resultType": "complete", "tools": tools}
        return result | {"nextCursor": cursor} if cursor else result

    async def _call_tool(self, ctx, params: types.CallToolRequestParams, *, legacy_task: bool = False) -> dict:
        with reported_errors():
            result = await self._dispatch_call(ctx, params, legacy_task)
        if "resultType" not in result and "task" not in result:
            result["resultType"] = "complete"      # required on 2026-07-28, ignored before
        return result

    async def _dispatch_call(self, ctx, params: types.CallToolRequestParams, legacy_task: bool) -> dict:
        entry = await self._entry(params.name)
        if entry is None or (entry.capability is not None and (allowed := _allowed(ctx)) and not allowed(entry.name)):
            raise MCPError(INVALID_PARAMS, f"Unknown tool: {params.name}")   # the guard's 403 comes first on HTTP
        arguments = params.arguments or {}
        if (problem := entry.invalid_arguments(arguments)) is not None:
            return _error_result(problem)
        if legacy_task and entry.capability is None:
            raise MCPError(METHOD_NOT_FOUND, f"Tool {entry.name!r} does not support task-augmented calls")
        if entry.name == FIND_CAPABILITIES:
            return self._find(arguments, _allowed(ctx))
        if entry.name == GET_TASK_RESULT:
            return await self._get_task_result(ctx, arguments)
        return await self._call_capability(ctx, entry, arguments, legacy_task, params)

    def _task_policy(self, ctx, entry: ToolEntry, legacy_task: bool) -> tuple[bool, float]:
        """(may this call become an MCP task, how long to wait for the result first); raises when the
        tool's task support and the client's cannot meet (the spec's -32021 and -32601)."""
        modern = is_modern(ctx.protocol_version)
        as_task = legacy_task or (modern and client_has_tasks(ctx))
        if entry.task_support == "forbidden":
            if legacy_task:
                raise MCPError(METHOD_NOT_FOUND, f"Tool {entry.name!r} does not support task-augmented calls")
            return False, self.call_wait
        if entry.task_support == "required" and not as_task:
            if modern:
                raise missing_tasks_extension()
            raise MCPError(METHOD_NOT_FOUND, f"Tool {entry.name!r} must be called as a task (the 'task' param)")
        if legacy_task or entry.task_support == "required":
            # A question the agent asks at once is asked before the task is created (MRTR), as the
            # tasks extension's "Task Creation" says a server SHOULD; only then is there a task.
            return True, self.task_wait if modern and not legacy_task and elicit.supported(ctx) else 0.0
        return as_task, self.task_wait if as_task else self.call_wait

    async def _call_capability(self, ctx, entry: ToolEntry, arguments: dict, legacy_task: bool,
                               params: types.CallToolRequestParams | None = None) -> dict:
        as_task, wait = self._task_policy(ctx, entry, legacy_task)
        created = time.time()
        if params is not None and params.request_state is not None:     # the answer to the agent's question
            call, result = await elicit.continue_retry(self.tasks, entry.name, params)
            if result is not None:
                return result
        else:
            call = Call(*await self._start(entry, arguments))
        self._spawn(call.pump())
        progress = await self._progress(ctx, entry, call, created) if wait > 0 else None
        try:
            finished = await call.wait(wait, progress) if wait > 0 else False
            if finished and not legacy_task and elicit.asks(call.task) and elicit.supported(ctx):
                if is_modern(ctx.protocol_version):
                    return elicit.input_required(call.task)
                call, finished = await elicit.ask_session(ctx, self.tasks, entry.name, call, wait, self._spawn)
                if isinstance(finished, dict):
                    return finished
        except BaseException as e:
            if isinstance(e, anyio.get_cancelled_exc_class()) and not self._closing:
                self._spawn(self._cancel(call.task.id))       # the client gave up: so does the task
            raise
        task = call.task
        if finished and not legacy_task and not (as_task and entry.task_support == "required"):
            if call.task.status.state == a2a_pb2.TASK_STATE_REJECTED:
                raise rejection(call.task)
            result = tool_result(call.task, entry.output_schema, self.inline_limit)
            if linked(result):          # its links are read with the task's record (resources.py)
                with reported_errors():
                    await self.records.put(task.id, TaskRecord(entry.name, created, self._owner(ctx)))
            return result
        record = TaskRecord(entry.name, created, self._owner(ctx))
        await self.records.put(task.id, record)
        if as_task:
            return create_result(call.task, record, modern=is_modern(ctx.protocol_version))
        return still_running(call.task, wait)

    async def _progress(self, ctx, entry: ToolEntry, call: Call, created: float):
        """How the call reports progress: on a 2025-11-25 HTTP stream, with ids that resume on any
        instance (streams.py), once the task's record says whose it is; else the SDK's."""
        request = ctx.request
        report = None
        if not is_modern(ctx.protocol_version) and request is not None and hasattr(request, "headers"):
            report = progress_reporter(ctx, call.task.id, recorded(call.task)[1])
        if report is None:
            return ctx.session.report_progress
        with reported_errors():
            await self.records.put(call.task.id, TaskRecord(entry.name, created, self._owner(ctx)))
        return report

    async def _start(self, entry: ToolEntry, arguments: dict):
        """A new task, or with `task_id` (default schema) the next turn of a task that asked for
        input (A2A multi-turn): the answer goes to the same agent on the same task."""
        message = to_message(entry, arguments)
        answering = arguments.get("task_id") if entry.default_input else None
        if not answering:
            return await self.tasks.submit(entry.name, message)
        try:
            return await self.tasks.resume(answering, message, capability=entry.name)
        except TaskError as e:
            raise mcp_error(e, f"task_id: {e.reason}") from None

    async def _cancel(self, task_id: str) -> None:
        try:
            await self.tasks.cancel(task_id, "the MCP client cancelled the call")
        except Exception as e:        # already finished, or the backend is away: nothing to undo
            log.debug("cancelling task %s after a client cancellation: %r", task_id, e)

    def _find(self, arguments: dict, allowed=None) -> dict:
        found = self.catalog.find(arguments["query"], arguments.get("limit", 10), allowed)
        lines = [f"{c['name']} ({c['status']}, score {c['score']}): {c['description']}" for c in found["capabilities"]]
        text = "\n".join(lines) or f"No capability matches {arguments['query']!r}."
        return {"content": [{"type": "text", "text": text}], "structuredContent": found}

    async def _get_task_result(self, ctx, arguments: dict) -> dict:
        task_id = arguments["task_id"]
        record = await self.records.get(task_id, self._owner(ctx))
        task = await self.tasks.get(task_id) if record is not None else None
        if task is None:
            return _error_result(f"No task {task_id!r} is known to this gateway (or it is not yours).")
        wait = min(float(arguments.get("wait_seconds", self.call_wait)), self.call_wait)
        if not fold.is_final(task.status.state) and wait > 0:
            events = 0
            with anyio.move_on_after(wait):
                async for event in self.tasks.subscribe(task_id):
                    fold.apply(task, event)
                    events += 1
                    await ctx.session.report_progress(float(events), None, status_text(task) or None)
        if not fold.is_final(task.status.state):
            return still_running(task, wait)
        if task.status.state == a2a_pb2.TASK_STATE_REJECTED:
            return _error_result(rejection(task).message)
        return tool_result(task, self._output_schema(record.capability), self.inline_limit)


def _allowed(ctx):
    """The caller's scope check (capability name -> bool), or None when it may use every capability."""
    principal = principal_from(ctx.request)
    return None if principal.capabilities is None else principal.may_use


def _error_result(text: str) -> dict:
    return {"content": [{"type": "text", "text": text}], "isError": True}


def _digest(capabilities) -> str:
    """What of the registry the tools show (heartbeat times and worker counts left out)."""
    rows = sorted([c.name, c.card, c.input_schema, c.output_schema, c.status, c.error] for c in capabilities)
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


async def _notify_quietly(connection) -> None:
    with contextlib.suppress(Exception):
        with anyio.fail_after(NOTIFY_TIMEOUT):
            await connection.send_tool_list_changed()
