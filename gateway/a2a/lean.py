"""Lean dispatch of the one hot A2A call: JSON-RPC `SendMessage` (protocol 1.0) to a capability.

The a2a-sdk's JSON-RPC dispatcher costs more CPU per call than the gateway's whole task flow
(its request model validation, version decorator, OpenTelemetry spans, Starlette routing and a
Request object per call). This pure ASGI middleware answers `POST /agents/<name>/` with method
`SendMessage` itself, calling the same `GatewayRequestHandler` and producing the same JSON-RPC
response. Anything it does not fully recognise (other methods, 0.3 requests, a missing or
different A2A-Version, malformed JSON or params, unknown capabilities) goes on to the SDK's
routes with the body replayed, so errors keep the SDK's shape and codes.

The request's message and the answer go through the fast ProtoJSON converters
(gateway/tasks/protojson.py; json_format for whatever they do not handle): json_format's
ParseDict and MessageToDict took ~2% of the gateway's CPU per bridged task at 64 connections
(py-spy, bench.gateway_e2e), ~50 us and ~160 us per call.

`gateway.a2a_lean_dispatch = false` turns it off (the benchmark measures both).
"""

from __future__ import annotations

import json
import logging
import math

from a2a.server.request_handlers.response_helpers import build_error_response
from a2a.types import a2a_pb2
from a2a.utils.errors import A2AError
from google.protobuf import json_format

from adapters.errors import BackendError

from gateway.errors import a2a_error
from gateway.http.body import read_body, replay
from gateway.registry import cards
from gateway.tasks import protojson
from .handler import GatewayRequestHandler
from .routes import CAPABILITY_SCOPE_KEY

log = logging.getLogger("topicbridge.a2a")

_PREFIX = cards.AGENTS_PATH + "/"
_VERSION = b"a2a-version"


class LeanSendMessage:
    def __init__(self, app, *, handler: GatewayRequestHandler, capabilities, builder) -> None:
        self.app = app
        self.handler = handler
        self.capabilities = capabilities      # a2a_surface.CapabilityCache
        self.builder = builder                # the routes' context builder (a2a_surface._ContextBuilder)

    def __call__(self, scope, receive, send):
        # Not a coroutine function: what is not for it is the app's own coroutine, with no frame of
        # this layer in the chain every resumption of that request's task walks.
        name = _capability_path(scope)
        if name is None or not _speaks_1_0(scope["headers"]):
            return self.app(scope, receive, send)
        return self._answer(scope, receive, send, name)

    async def _answer(self, scope, receive, send, name: str) -> None:
        body, messages = await read_body(receive)
        request = None if body is None else _send_message_request(body)
        capability = None
        if request is not None:
            try:
                capability = await self.capabilities.get(name)
            except BackendError:
                capability = None       # the SDK path's gate answers with the error
        if capability is None:
            await self.app(scope, replay(messages, receive), send)
            return
        request_id, params = request
        scope[CAPABILITY_SCOPE_KEY] = capability
        context = self.builder.build_scope(scope, tenant=params.tenant)
        state = context.state
        state["method"], state["request_id"] = "SendMessage", request_id     # as the SDK's dispatcher
        try:
            result = await self.handler.on_message_send(params, context)
            answer = {"jsonrpc": "2.0", "id": request_id, "result": response_dict(result)}
        except A2AError as e:
            answer = build_error_response(request_id, e)
        except Exception as e:      # the SDK dispatcher's last resort, in its shape
            log.exception("SendMessage to %s failed", capability.name)
            answer = build_error_response(request_id, a2a_error(e))
        await _send_json(send, answer)


def _capability_path(scope) -> str | None:
    """`<name>` of `POST /agents/<name>/`, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path = scope["path"]
    if not path.startswith(_PREFIX) or not path.endswith("/"):
        return None
    name = path[len(_PREFIX):-1]
    return name if name and "/" not in name else None


def _speaks_1_0(headers) -> bool:
    """The SDK's version rule: a missing header means 0.3; any 1.x is accepted."""
    for key, value in headers:
        if key.lower() == _VERSION:
            return value == b"1.0" or value.startswith(b"1.")
    return False


def _send_message_request(body: bytes) -> tuple[int | str | None, a2a_pb2.SendMessageRequest] | None:
    """(id, params) of a well-formed JSON-RPC SendMessage, or None for the SDK to judge."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("jsonrpc") != "2.0" or doc.get("method") != "SendMessage":
        return None
    request_id, params = doc.get("id"), doc.get("params", {})
    if isinstance(request_id, bool) or not (request_id is None or isinstance(request_id, (int, str))):
        return None
    if not isinstance(params, dict) or not doc.keys() <= {"jsonrpc", "id", "method", "params"}:
        return None
    if params.keys() == {"message"}:        # the common call: one plain message
        message = protojson.message_from_dict(params["message"])
        if message is not None:
            return request_id, a2a_pb2.SendMessageRequest(message=message)
    try:
        return request_id, json_format.ParseDict(params, a2a_pb2.SendMessageRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError):
        return None


def response_dict(result: a2a_pb2.Task | a2a_pb2.Message) -> dict:
    """json_format.MessageToDict of the SendMessageResponse carrying `result`."""
    if isinstance(result, a2a_pb2.Message):
        doc = protojson.message_to_dict(result)
        response = a2a_pb2.SendMessageResponse(message=result) if doc is None else None
        key = "message"
    else:
        doc = _plain_task_dict(result)
        response = a2a_pb2.SendMessageResponse(task=result) if doc is None else None
        key = "task"
    return {key: doc} if response is None else json_format.MessageToDict(response)


def _plain_task_dict(task: a2a_pb2.Task) -> dict | None:
    """MessageToDict(task) in one walk of protojson's Task table, which has no `metadata`: that
    (the last field by number, so the last key) is added after. A copy into a StreamResponse costs
    ~2 us; wrapping each status and artifact in an event of its own cost ~10 us more. None where
    the table cannot convert it (response_dict then takes MessageToDict's answer)."""
    event = a2a_pb2.StreamResponse(task=task)
    metadata = task.metadata if task.HasField("metadata") else None
    if metadata is not None:
        event.task.ClearField("metadata")
    event = protojson.event_to_dict(event)
    if event is None:
        return None
    doc = event["task"]
    if metadata is not None:
        try:
            doc["metadata"] = _struct(metadata)
        except _Unusual:
            return None
    return doc


class _Unusual(Exception):
    """A Struct value json_format refuses or handles in its own way: it converts the task."""


def _struct(struct) -> dict:
    return {key: _value(value) for key, value in struct.fields.items()}


def _value(value):
    """As json_format's Value conversion (a double stays a float; inf and NaN it refuses)."""
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "number_value":
        number = value.number_value
        if math.isinf(number) or math.isnan(number):
            raise _Unusual
        return number
    if kind == "string_value" or kind == "bool_value":
        return getattr(value, kind)
    if kind == "struct_value":
        return _struct(value.struct_value)
    if kind == "list_value":
        return [_value(item) for item in value.list_value.values]
    raise _Unusual


# json.dumps with options builds a JSONEncoder per call: one, built once.
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_JSON_TYPE = (b"content-type", b"application/json")


async def _send_json(send, doc: dict) -> None:
    body = _encode(doc).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [_JSON_TYPE, (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
