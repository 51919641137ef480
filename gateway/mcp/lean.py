"""A lean path for the one hot MCP request: a stateless (2026-07-28) `tools/call` of a capability.

The SDK's per-request machinery for a 2026-07-28 POST costs more CPU than the gateway's own work
for a call: a Starlette Request, a transport-security object, a task group with a sibling task
watching for the disconnect, a memory object stream for notifications, a Connection, a dispatch
context, a ServerRunner, a ServerSession and a request context, the middleware chain, and cancel
scopes around all of it. `LeanToolCalls` sits between the guard (mcp_auth.McpGuard: Origin, Host,
token) and the SDK's session manager and answers that one request itself:

- it runs the same checks the SDK runs, with the SDK's own functions where it has them: the body
  limit, Content-Type, Accept (`check_accept_headers`, its verdict remembered per value), JSON
  parsing, `JSONRPCRequest` (checked directly for a plain body: `plain_request`), the routing headers and the `_meta` envelope (`classify_inbound_request`), `Mcp-Param-*` (none
  declared and none sent), the per-version request surface (`validate_client_request`), the
  typed params a handler gets (`CallToolRequestParams`): for the common plain params both
  checked directly (`plain_params`, held to both models by tests), the models for the rest;
- it submits the task and waits for it as McpSurface does (the same wait, the same cancellation
  of the task when the client closes the response stream, the same hand-out of the task id when
  the call outlives `mcp_call_wait_seconds`), folding the task's events in the request's own
  coroutine (`_Waiting`) where McpSurface has a `Call` pump task and an asyncio.wait per wake-up;
- it shapes the result with the SDK's own serializer (`ServerRunner._serialize`: the result
  surface's sieve and the serverInfo stamp), except the common plain result (text blocks, the
  task's `_meta`), whose wire form `plain_wire_result` builds directly, or straight from the task
  for plain text artifacts (`plain_text_wire_result`; tests hold both to the serializer's
  output), and writes what the SDK writes: the JSON-RPC response
  as `application/json` when the task ends within the SDK's SSE deferral window, otherwise
  `text/event-stream` with the same keep-alive pings and the response as the final event;
  errors through the SDK's own mapping (`modern_error_data`) and writers.

Anything it does not fully recognise goes to the SDK untouched (the body replayed): other methods
and eras, a progress token or any `_meta` beyond the envelope, the tasks extension (the call may
become an MCP task), a tool that requires tasks, the gateway's own tools, unknown tools (the
registry is asked again there), arguments that fail the input schema, `Mcp-Param-*` headers,
repeated routing headers, and every malformed request, so errors keep the SDK's shape, codes and
HTTP statuses. tests/gateway/test_mcp_lean.py holds both paths to the same bytes.

`gateway.mcp_lean_dispatch = false` turns it off (the benchmark measures both).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from types import SimpleNamespace

from a2a.types import a2a_pb2
from mcp_types import (CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY, PROTOCOL_VERSION_META_KEY,
                       CallToolRequestParams, JSONRPCError, JSONRPCRequest)
from mcp_types import methods as _methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from gateway.http.body import read_body, replay
from gateway.tasks import fold
from gateway.tasks.service import TaskError
from gateway.workers import call_mode
from .auth import OWNER_KEY
from .resources import linked
from .results import tool_result
from .tasks import TASKS_EXTENSION, TaskRecord, rejection, reported_errors, still_running
from .tools import ToolEntry, to_message

log = logging.getLogger("topicbridge.mcp")

try:        # the SDK internals the lean path mirrors; without them it stays off
    from mcp.server import _streamable_http_modern as _sdk_http
    from mcp.server.runner import SERVER_INFO_META_KEY, ServerRunner, modern_error_data
    from mcp.server.streamable_http import check_accept_headers
    from mcp.shared.inbound import (MCP_METHOD_HEADER, MCP_NAME_HEADER, MCP_PARAM_HEADER_PREFIX,
                                    MCP_PROTOCOL_VERSION_HEADER, classify_inbound_request)
    _sdk_http._write, _sdk_http._sse_event, _sdk_http._SSE_HEADERS, _sdk_http._SSE_PING_INTERVAL  # noqa: B018
    AVAILABLE = True
except (ImportError, AttributeError) as e:      # pragma: no cover - a different SDK release
    log.warning("the lean MCP tools/call path is off: the SDK lacks what it mirrors (%r)", e)
    AVAILABLE = False

METHOD = "tools/call"
_VERSIONS = frozenset(v.encode() for v in MODERN_PROTOCOL_VERSIONS) if AVAILABLE else frozenset()
_MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)
_ENVELOPE_KEYS = frozenset({PROTOCOL_VERSION_META_KEY, CLIENT_INFO_META_KEY, CLIENT_CAPABILITIES_META_KEY})
_PARAMS_KEYS = frozenset({"name", "arguments", "_meta"})
_ID_TYPES = (int, str)      # `type(...) in`: a bool is not a JSON-RPC id (the model's int is strict)
_PING = b": ping\r\n\r\n"
if AVAILABLE:
    _VERSION_HEADER = MCP_PROTOCOL_VERSION_HEADER.encode()
    _METHOD_HEADER = MCP_METHOD_HEADER.encode()
    _NAME_HEADER = MCP_NAME_HEADER.encode()
    _PARAM_PREFIX = MCP_PARAM_HEADER_PREFIX.lower().encode()


class _Fallthrough(Exception):
    """Not the lean path's request: the SDK answers it."""


class _Answered(Exception):
    """The result is in its wire form already (plain_text_wire_result)."""


_encode = json.JSONEncoder(separators=(",", ":")).encode      # json.dumps(..., separators=...) builds one per call


class LeanToolCalls:
    """ASGI app in front of the SDK's `handle_request` (see the module docstring)."""

    def __init__(self, surface, app, max_body_size: int) -> None:
        self.surface = surface
        self.app = app
        self.max_body_size = max_body_size
        self.runner = ServerRunner(surface.server, None, None)     # for its result serializer only
        # The stamp every result carries; one copy serves every response (it is dumped, never kept).
        # A cache hint on tools/call would change the wire form: then the SDK's serializer does it all.
        self.server_info = surface.server.server_info_stamp if METHOD not in surface.server.cache_hints else None
        self.answered = 0           # calls the lean path took (the rest went to the SDK)
        self._waiting: set[_Waiting] = set()        # calls waiting for their tasks now
        self._closed = False

    def stop_waiting(self) -> None:
        """The surface is closing: every waiting call answers now with what it has (its task runs on)."""
        self._closed = True
        for waiting in list(self._waiting):
            waiting.wake()

    async def __call__(self, scope, receive, send) -> None:
        headers = _routing_headers(scope, self.max_body_size) if scope["type"] == "http" else None
        if headers is None:
            await self.app(scope, receive, send)
            return
        body, messages = await read_body(receive, self.max_body_size)
        try:
            if body is None:
                raise _Fallthrough
            request_id, version, entry, arguments = self._recognise(body, headers)
        except Exception as e:      # _Fallthrough, or a surprise: the SDK judges the request
            if not isinstance(e, _Fallthrough):
                log.debug("the lean tools/call path passes a request on after %r", e)
            await self.app(scope, replay(messages, receive), send)
            return
        self.answered += 1
        await self._serve(scope, receive, send, request_id, version, entry, arguments)

    # ------------------------------------------------------------ what the SDK would check

    def _recognise(self, body: bytes, headers: dict) -> tuple[object, str, ToolEntry, dict]:
        """(request id, protocol version, tool, arguments) of a call the lean path serves exactly
        as the SDK would, else _Fallthrough."""
        try:
            decoded = json.loads(body)
            if not isinstance(decoded, dict) or "id" not in decoded:
                raise _Fallthrough
            plain = plain_request(decoded)
            if plain is None:
                request = JSONRPCRequest.model_validate(decoded)
                plain = request.id, request.method, request.params
            request_id, method, params = plain
        except (ValueError, RecursionError, ValidationError):
            raise _Fallthrough from None
        if method != METHOD or not isinstance(params, dict) or not params.keys() <= _PARAMS_KEYS:
            raise _Fallthrough
        meta = params.get("_meta")
        if not isinstance(meta, dict) or not meta.keys() <= _ENVELOPE_KEYS:
            raise _Fallthrough                  # a progress token, a log level, ...: the SDK's
        route = classify_inbound_request(decoded, headers=headers)
        if not hasattr(route, "protocol_version"):
            raise _Fallthrough                  # the ladder's rejection, from the SDK
        capabilities = route.client_capabilities
        if isinstance(capabilities, dict) and TASKS_EXTENSION in (capabilities.get("extensions") or ()):
            raise _Fallthrough                  # the call may become an MCP task
        if isinstance(capabilities, dict) and "elicitation" in capabilities:
            raise _Fallthrough                  # the agent's question may go to the user (mcp/elicit.py)
        plain = plain_params(params, route)
        if plain is None:       # the models judge what plain_params cannot vouch for
            try:
                _methods.validate_client_request(METHOD, route.protocol_version, params)
                typed = CallToolRequestParams.model_validate(params, by_name=False)     # what a handler gets
            except (KeyError, ValueError, ValidationError):
                raise _Fallthrough from None
            plain = typed.name, typed.arguments or {}
        name, arguments = plain
        entry = self.surface.catalog.get(name)
        if entry is None or entry.capability is None or entry.task_support == "required" \
                or entry.param_headers or entry.invalid_arguments(arguments) is not None \
                or entry.default_input and arguments.get("task_id"):      # an answer: the SDK path resumes
            raise _Fallthrough
        return request_id, route.protocol_version, entry, arguments

    # ------------------------------------------------------------ the call

    async def _serve(self, scope, receive, send, request_id, version: str, entry: ToolEntry, arguments: dict) -> None:
        surface = self.surface
        loop = asyncio.get_running_loop()
        gone = loop.create_task(_disconnect(receive))
        waiting = _Waiting(gone)
        streaming = False
        task_id = watch = None
        try:
            try:
                created = time.time()
                with reported_errors():
                    # Served here only without a progress token, task or elicitation: the caller
                    # sees no intermediate event (no WORKING for a quick task; a bridge may skip the stream).
                    task, watch = await surface.tasks.submit(entry.name, to_message(entry, arguments),
                                                             metadata=call_mode.mark_blocking(None))
                task_id = task.id
                wait = surface.call_wait
                now = loop.time()
                deadline, ping = now + wait, now + _sdk_http._SSE_PING_INTERVAL
                ended = False
                self._waiting.add(waiting)
                try:
                    while now < deadline and not self._closed:
                        if await waiting.until_ended(task, watch, min(deadline, ping)):
                            ended = True
                            break
                        if gone.done():
                            raise asyncio.CancelledError      # the client closed the response stream
                        now = loop.time()
                        if now >= ping:
                            if not streaming:       # as the SDK: commit to SSE and keep the stream alive
                                streaming = True
                                await send({"type": "http.response.start", "status": 200,
                                            "headers": _sdk_http._SSE_HEADERS})
                            await send({"type": "http.response.body", "body": _PING, "more_body": True})
                            ping = now + _sdk_http._SSE_PING_INTERVAL
                finally:
                    self._waiting.discard(waiting)
                    if not ended:
                        surface.tasks.unwatch(watch)      # nobody folds this task's events any more
                if wait > 0 and ended and fold.is_final(task.status.state):
                    if task.status.state == a2a_pb2.TASK_STATE_REJECTED:
                        raise rejection(task)
                    result = None if entry.output_schema is not None else \
                        plain_text_wire_result(task, surface.inline_limit, self.server_info)
                    if result is not None:      # the common answer, in its wire form at once
                        message = {"jsonrpc": "2.0", "id": request_id, "result": result}
                        raise _Answered
                    result = tool_result(task, entry.output_schema, surface.inline_limit)
                    if linked(result):      # a large artifact is linked: its reader needs the task's record
                        record = TaskRecord(entry.name, created, (scope.get("state") or {}).get(OWNER_KEY))
                        with reported_errors():
                            await surface.records.put(task.id, record)
                else:
                    record = TaskRecord(entry.name, created, (scope.get("state") or {}).get(OWNER_KEY))
                    with reported_errors():
                        await surface.records.put(task.id, record)
                    result = still_running(task, wait)
                result.setdefault("resultType", "complete")
                result = plain_wire_result(result, self.server_info) or \
                    self.runner._serialize(METHOD, version, result)
                message = {"jsonrpc": "2.0", "id": request_id, "result": result}
            except _Answered:
                pass
            except Exception as e:
                message = JSONRPCError(jsonrpc="2.0", id=request_id, error=modern_error_data(e))
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError) and task_id is not None and not surface._closing:
                surface._spawn(surface._cancel(task_id))     # the client gave up: so does the task
            if gone.done() and isinstance(e, asyncio.CancelledError):
                return          # nobody to answer (the SDK's task group ends the same way)
            raise
        finally:
            if not gone.done():
                gone.cancel()
        if isinstance(message, dict):       # a result: what the SDK's JSONRPCResponse dumps to, as is
            data = _encode(message)
            if streaming:
                body = f"event: message\r\ndata: {data}\r\n\r\n".encode()
                await send({"type": "http.response.body", "body": body, "more_body": False})
            else:
                body = data.encode()
                await send({"type": "http.response.start", "status": 200, "headers": [
                    (b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
        elif streaming:
            await send({"type": "http.response.body", "body": _sdk_http._sse_event(message), "more_body": False})
        else:
            await _sdk_http._write(message, scope, receive, send)


def plain_request(decoded: dict) -> tuple | None:
    """(id, method, params) of a decoded body that JSONRPCRequest surely accepts as it is (an int
    or str id: the model's int is strict, so no bool; the "2.0" literal; a str method; object
    params), checked directly; None for the model to judge. tests/gateway/test_mcp_lean.py holds
    it to the model."""
    request_id, method, params = decoded["id"], decoded.get("method"), decoded.get("params")
    if decoded.get("jsonrpc") == "2.0" and type(request_id) in _ID_TYPES and type(method) is str \
            and type(params) is dict:
        return request_id, method, params
    return None


_CAPABILITY_KEYS = frozenset({"roots"})
_CLIENT_INFO_KEYS = frozenset({"name", "version", "title", "description", "websiteUrl"})
_OPTIONAL_STR = (str, type(None))


def plain_params(params: dict, route) -> tuple[str, dict] | None:
    """(name, arguments) of `tools/call` params that the SDK's per-version surface
    (`validate_client_request`) and `CallToolRequestParams` surely accept as they are, checked
    directly; None for the models to judge. The caller has already held the params to the lean
    path's keys (name, arguments, the `_meta` envelope) and `classify_inbound_request` the
    envelope (a modern protocol version equal to the header, the capabilities present). Plain
    here: a str name; arguments absent, null or an object; capabilities an object with at most
    `roots` (an object or null); clientInfo absent, null, or str name and version with at most
    str-or-null title, description and websiteUrl. Their pydantic validation was ~1/5 of the
    lean path's own CPU per call. tests/gateway/test_mcp_lean_params.py holds it to the models."""
    name, arguments = params.get("name"), params.get("arguments")
    if type(name) is not str or (arguments is not None and type(arguments) is not dict) \
            or route.protocol_version not in _MODERN:
        return None
    meta = params["_meta"]
    capabilities, info = meta[CLIENT_CAPABILITIES_META_KEY], meta.get(CLIENT_INFO_META_KEY)
    if type(capabilities) is not dict or not capabilities.keys() <= _CAPABILITY_KEYS \
            or type(capabilities.get("roots", {})) not in (dict, type(None)):
        return None
    if info is not None and (type(info) is not dict or type(info.get("name")) is not str
                             or type(info.get("version")) is not str or not info.keys() <= _CLIENT_INFO_KEYS
                             or not all(type(v) in _OPTIONAL_STR for v in info.values())):
        return None
    return name, arguments or {}


# ---------------------------------------------------------------- the result's wire form

_TASK_META = "io.topicbridge/task"          # results.task_meta's key
_TASK_META_KEYS = frozenset({"taskId", "contextId", "state"})
_RESULT_KEYS = frozenset({"content", "_meta", "resultType", "isError"})


def plain_wire_result(result: dict, server_info: dict | None) -> dict | None:
    """What the SDK's serializer (`ServerRunner._serialize`) makes of the common result, built
    directly: text blocks, the task's `_meta`, `isError` when set. Its pydantic validation and
    dump of the CallToolResult surface was ~1/2 of the lean path's own CPU per call. None for
    anything else (the SDK's serializer shapes it). tests/gateway/test_mcp_lean.py holds both to
    the same dict, key order included."""
    if server_info is None or not result.keys() <= _RESULT_KEYS or result.get("resultType") != "complete" \
            or result.get("isError", True) is not True:
        return None
    meta, content = result.get("_meta"), result.get("content")
    task = meta.get(_TASK_META) if type(meta) is dict and len(meta) == 1 else None
    if type(task) is not dict or task.keys() != _TASK_META_KEYS or type(content) is not list \
            or not all(type(v) is str for v in task.values()):
        return None
    blocks = []
    for block in content:
        if type(block) is not dict or len(block) != 2 or block.get("type") != "text" or type(block.get("text")) is not str:
            return None
        blocks.append({"text": block["text"], "type": "text"})
    wire = {"_meta": {_TASK_META: task, SERVER_INFO_META_KEY: server_info}, "content": blocks}
    if "isError" in result:
        wire["isError"] = True
    wire["resultType"] = "complete"
    return wire


def plain_text_wire_result(task: a2a_pb2.Task, inline_limit: int | None, server_info: dict | None) -> dict | None:
    """plain_wire_result(tool_result(task, None, inline_limit)) for the commonest answer, in one
    walk of the task: COMPLETED, no Message reply, artifacts of plain text parts only, none over
    `inline_limit` (nothing linked). None for anything else (tool_result then shapes it).
    tests/gateway/test_mcp_lean.py holds both to the same dict, key order included."""
    status = task.status
    if server_info is None or status.state != a2a_pb2.TASK_STATE_COMPLETED \
            or (status.HasField("message") and fold.REPLY_MARK in status.message.metadata.fields):
        return None
    blocks = []
    for artifact in task.artifacts:
        size = 0
        for part in artifact.parts:
            if part.WhichOneof("content") != "text" or "://" in part.filename:
                return None
            text = part.text
            size += len(text) if text.isascii() else len(text.encode())
            blocks.append({"text": text, "type": "text"})
        if inline_limit is not None and size > inline_limit:
            return None
    if not blocks:
        return None
    meta = {"taskId": task.id, "contextId": task.context_id, "state": "TASK_STATE_COMPLETED"}
    return {"_meta": {_TASK_META: meta, SERVER_INFO_META_KEY: server_info}, "content": blocks,
            "resultType": "complete"}


# ---------------------------------------------------------------- ASGI helpers

def _routing_headers(scope, max_body_size: int) -> dict | None:
    """The routing headers of a POST that may be a lean `tools/call`, else None (the SDK's).

    Every check here is one the SDK makes before reading the body: the era (a modern
    MCP-Protocol-Version), Content-Type, Accept (JSON and SSE: the manager serves SSE mode), the
    body limit; plus what the lean path leaves to the SDK: repeated routing headers (a
    rejection), `Mcp-Param-*` headers, another method."""
    if scope["method"] != "POST":
        return None
    version = method = name = content_type = accept = length = None
    for key, value in scope["headers"]:
        if key == _VERSION_HEADER:
            if version is not None:
                return None
            version = value
        elif key == _METHOD_HEADER:
            if method is not None:
                return None
            method = value
        elif key == _NAME_HEADER:
            if name is not None:
                return None
            name = value
        elif key == b"content-type":
            content_type = content_type or value
        elif key == b"accept":
            accept = accept or value
        elif key == b"content-length":
            length = length or value
        elif key.startswith(_PARAM_PREFIX):
            return None
    if version not in _VERSIONS or method != b"tools/call" or name is None or content_type is None:
        return None
    if not content_type.decode("latin-1").lower().startswith("application/json"):
        return None
    if not _accepts_both(accept):
        return None
    if length is not None and length.isdigit() and int(length) > max_body_size:
        return None
    return {MCP_PROTOCOL_VERSION_HEADER: version.decode("latin-1"), MCP_METHOD_HEADER: method.decode("latin-1"),
            MCP_NAME_HEADER: name.decode("latin-1")}


_ACCEPTS: dict[bytes | None, bool] = {}     # Accept value -> JSON and SSE both accepted; clients send few values


def _accepts_both(accept: bytes | None) -> bool:
    """The SDK's `check_accept_headers` verdict on an Accept value (JSON and SSE), remembered."""
    verdict = _ACCEPTS.get(accept)
    if verdict is None:
        has_json, has_sse = check_accept_headers(_accept_only(accept))
        verdict = bool(has_json and has_sse)
        if len(_ACCEPTS) < 64:
            _ACCEPTS[accept] = verdict
    return verdict


def _accept_only(accept: bytes | None) -> SimpleNamespace:
    """What `check_accept_headers` reads of a request."""
    return SimpleNamespace(headers={"accept": accept.decode("latin-1")} if accept is not None else {})


class _Waiting:
    """One call's wait for its task: folds the watch's events into the task in the request's own
    coroutine (no pump task, no asyncio.wait per wake-up), under a timeout that the client's going
    (`gone`) or the surface's closing cuts short."""

    __slots__ = ("gone", "timeout")

    def __init__(self, gone: asyncio.Task) -> None:
        self.gone = gone
        self.timeout: asyncio.Timeout | None = None
        gone.add_done_callback(self._woken)

    def _woken(self, _) -> None:
        self.wake()

    def wake(self) -> None:
        timeout = self.timeout
        if timeout is not None and not timeout.expired():
            timeout.reschedule(asyncio.get_running_loop().time())   # ends the wait at once

    async def until_ended(self, task: a2a_pb2.Task, watch, until: float) -> bool:
        """Fold events into `task` until the watch ends (True: a final state, or the relay is
        closing, or it cut off a slow reader) or `until` (loop time) or a wake-up (False)."""
        if self.gone.done():
            return False
        try:
            async with asyncio.timeout_at(until) as timeout:
                self.timeout = timeout
                async for event in watch.events():
                    fold.apply(task, event)
        except TimeoutError:
            return False
        except TaskError as e:       # too slow to keep up: the task index still has the truth
            log.warning("call on task %s lost its event stream: %s", task.id, e.reason)
        finally:
            self.timeout = None
        return True


async def _disconnect(receive) -> None:
    """Returns when the client has gone (or the response is complete), as the SDK's watch does."""
    try:
        while (await receive()).get("type") != "http.disconnect":
            pass
    except Exception as e:      # a server that cannot tell: treat it as gone, as the SDK's task group would
        log.debug("receive failed while a lean tools/call waited: %r", e)
