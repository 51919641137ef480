"""Who may call the admin API and the agent endpoints, and how much they may send.

`GatewayGuard` is a pure ASGI middleware in front of the whole app:

- `/admin/*` and `/agents/*` need `Authorization: Bearer <token>` when `gateway.bearer_tokens`
  is set (401 with `WWW-Authenticate: Bearer` otherwise). Cards stay public, so clients can
  discover what to call and how: `/.well-known/agent-card.json` and
  `/agents/<name>/.well-known/agent-card.json`. `/healthz`, `/readyz` and `/mcp` (which has its
  own guard, `mcp_auth.py`) are not touched.
- A request body to `/agents/*` larger than `gateway.max_body_bytes` gets 413, whether it
  announces its length or streams it.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.errors import MessageTooLargeError, status_of

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
_PROTECTED = re.compile(r"^/(admin|agents)(/|$)")
_PUBLIC_CARD = re.compile(r"^/agents/[^/]+/\.well-known/agent-card\.json$")
_JSONRPC_ENDPOINT = re.compile(r"^/agents/([^/]+/)?$")


def token_list(value) -> list[str]:
    """Tokens from TOML (a list) or an environment variable (a comma-separated string)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [str(v).strip() for v in value if str(v).strip()]


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _BodyTooLarge(Exception):
    pass


class GatewayGuard:
    def __init__(self, app: ASGIApp, tokens: list[str] | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.tokens = [t.encode() for t in tokens or []]
        self.max_body_bytes = max_body_bytes

    @classmethod
    def settings_kwargs(cls, settings: dict) -> dict:
        gateway = settings.get("gateway", {})
        return {"tokens": token_list(gateway.get("bearer_tokens")),
                "max_body_bytes": gateway.get("max_body_bytes") or DEFAULT_MAX_BODY_BYTES}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not _PROTECTED.match(path):
            await self.app(scope, receive, send)
            return
        if self.tokens and not _PUBLIC_CARD.match(path) and not self._authorized(Headers(scope=scope)):
            await _send_json(send, 401, {"error": {"type": "Unauthorized", "message":
                                                   "a valid bearer token is required"}},
                             [(b"www-authenticate", b'Bearer realm="topicbridge"')])
            return
        if not path.startswith("/agents"):
            await self.app(scope, receive, send)
            return
        await self._limited(scope, receive, send)

    def _authorized(self, headers: Headers) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        given = token.strip().encode()
        # Compare against every token, so the time taken does not tell which one came close.
        return sum(hmac.compare_digest(given, t) for t in self.tokens) > 0

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_body_bytes
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(scope, send, int(declared), limit)
            return
        received = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not started and not refused:
                        refused = True
                        await _too_large(scope, send, received, limit)
                    raise _BodyTooLarge
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if refused:             # the app caught _BodyTooLarge and answered anyway: 413 stands
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _BodyTooLarge:
            if not refused:
                raise


async def _too_large(scope: Scope, send: Send, size: int, limit: int) -> None:
    error = MessageTooLargeError(size, limit)
    http, code, grpc_status = status_of(error)
    if scope["method"] == "POST" and _JSONRPC_ENDPOINT.match(scope["path"]):
        body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": str(error)}}
    else:
        body = {"error": {"code": http, "status": grpc_status, "message": str(error)}}
    await _send_json(send, http, body, [(b"connection", b"close")])


async def _send_json(send: Send, status: int, doc: dict, headers: list) -> None:
    body = json.dumps(doc).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
