"""Lean dispatch of the one hot A2A call: JSON-RPC `SendMessage` (protocol 1.0) to a capability.

The a2a-sdk's JSON-RPC dispatcher costs more CPU per call than the gateway's whole task flow
(its request model validation, version decorator, OpenTelemetry spans, Starlette routing and a
Request object per call). This pure ASGI middleware answers `POST /agents/<name>/` with method
`SendMessage` itself, calling the same `GatewayRequestHandler` and producing the same JSON-RPC
response. Anything it does not fully recognise (other methods, 0.3 requests, a missing or
different A2A-Version, malformed JSON or params, unknown capabilities) goes on to the SDK's
routes with the body replayed, so errors keep the SDK's shape and codes.

`gateway.a2a_lean_dispatch = false` turns it off (the benchmark measures both).
"""

from __future__ import annotations

import json
import logging

from a2a.server.request_handlers.response_helpers import build_error_response
from a2a.types import a2a_pb2
from a2a.utils.errors import A2AError
from google.protobuf import json_format
from starlette.requests import Request

from adapters.errors import BackendError

from gateway.errors import a2a_error
from gateway.http.body import read_body, replay
from gateway.registry import cards
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

    async def __call__(self, scope, receive, send) -> None:
        name = _capability_path(scope)
        if name is None or not _speaks_1_0(scope["headers"]):
            await self.app(scope, receive, send)
            return
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
        context = self.builder.build(Request(scope))
        context.tenant = params.tenant
        context.state.update(method="SendMessage", request_id=request_id)     # as the SDK's dispatcher
        try:
            result = await self.handler.on_message_send(params, context)
            response = a2a_pb2.SendMessageResponse(message=result) if isinstance(result, a2a_pb2.Message) \
                else a2a_pb2.SendMessageResponse(task=result)
            answer = {"jsonrpc": "2.0", "id": request_id, "result": json_format.MessageToDict(response)}
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
    try:
        return request_id, json_format.ParseDict(params, a2a_pb2.SendMessageRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError):
        return None


async def _send_json(send, doc: dict) -> None:
    body = json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
