"""Who may call the admin API and the agent endpoints, and how much and how slowly they may send.

`GatewayGuard` is a pure ASGI middleware in front of the whole app:

- `/admin/*` and `/agents/*` need `Authorization: Bearer <token>` when `gateway.bearer_tokens`
  or `gateway.oauth` is set (auth.py: a static token or a JWT; 401 with `WWW-Authenticate:
  Bearer` naming the RFC 9728 metadata otherwise), unless the surface is listed in
  `gateway.open_surfaces`. `/admin/*` needs an admin principal and `/agents/<name>/…` one that
  may use `<name>` (403 otherwise); the principal is left in `scope["state"]` (`PRINCIPAL_KEY`)
  for the handlers (task isolation, gateway/a2a/access.py). Cards stay public, so clients can
  discover what to call and how: `/.well-known/agent-card.json` and
  `/agents/<name>/.well-known/agent-card.json`. `/healthz`, `/readyz` and `/mcp` (which has its
  own guard, `mcp/auth.py`, over the same authenticator) need no token here.
- A request body to `/agents/*` larger than `gateway.max_body_bytes` gets 413, whether it
  announces its length or streams it.
- A request body to `/agents/*`, `/admin/*` or `/mcp` whose JSON nests deeper than
  `gateway.max_json_depth`, or that is not UTF-8 (NUL bytes: UTF-16/32, which `json.loads`
  would otherwise decode), gets 400 before any handler parses it (`JsonDepth` below reads each
  chunk as it arrives, without building Python objects). With the depth bounded, no parser
  behind the guard can recurse into a RecursionError.
- A body on those routes that has not fully arrived `gateway.body_timeout_seconds` after its
  headers gets 408. Only the body is timed: a response may take as long as it takes (SSE
  streams, a blocking SendMessage).

Load (ratelimit.py, tasks/admission.py): past `gateway.rate_limit` a principal gets 429, and a
submission to a capability at `gateway.max_tasks_in_flight` gets 503, both with `Retry-After`,
before the body is read. (A POST to `/agents/<name>/` counts as a submission: which JSON-RPC
method it carries is only known after the body.)

Refusals are in the shape of the route: a JSON-RPC error (`id` null) for `POST /agents/`,
`POST /agents/<name>/` and `POST /mcp`, `{"error": {"code", "status", "message"}}` for the A2A
HTTP+JSON routes, the admin API's `{"error": {"type", "message", ...}}` under `/admin`, each with
`Connection: close`; each refusal is a `RequestRefusedError` (errors.py), which carries its
HTTP and gRPC status. The app then sees the body end in a byte no JSON parser accepts, so it
answers (unheard) a parse error instead of acting on a partial body, and logs no traceback.

How `serve` runs uvicorn (header deadline and size cap, keep-alive, concurrency): serving.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import ipaddress
import json
import re
import time

from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import ANONYMOUS, AuthError, Authenticator, open_surfaces
from .errors import (BodyTimeoutError, BodyTooLargeError, ForbiddenError, MalformedBodyError, OverloadedError,
                     RateLimitedError, RequestRefusedError, UnauthorizedError)
from .ratelimit import from_setting
from .json_depth import JsonDepth

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_JSON_DEPTH = 64
DEFAULT_BODY_TIMEOUT = 30.0

_PROTECTED = re.compile(r"^/(admin|agents|metrics)(/|$)")
_CAPABILITY = re.compile(r"^/agents/([^/]+)(/|$)")
_SUBMISSION = re.compile(r"^/agents/[^/]+/((v1/)?message:(send|stream))?$")
PRINCIPAL_KEY = "topicbridge.principal"     # scope["state"] key: the auth.Principal of the request
METADATA_PATH = "/.well-known/oauth-protected-resource"
_MCP = re.compile(r"^/mcp/?$")
_PUBLIC_CARD = re.compile(r"^/agents/[^/]+/\.well-known/agent-card\.json$")
_JSONRPC_ENDPOINT = re.compile(r"^/(agents/([^/]+/)?|mcp/?)$")
_INVALID_REQUEST = -32600               # JSON-RPC: the request is not acceptable as a whole
_PARSE_ERROR = -32700                   # JSON-RPC: the body is not JSON text
# What the app reads last once a body has been refused: a NUL is never valid JSON, so whatever
# was passed on before it cannot parse, and nothing acts on a partial body.
_UNPARSABLE = b"\x00"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class GatewayGuard:
    def __init__(self, app: ASGIApp, tokens: list[str] | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
                 body_timeout: float = DEFAULT_BODY_TIMEOUT, authenticator: Authenticator | None = None,
                 open_surfaces: frozenset[str] = frozenset(), rate_limit: str | None = None,
                 admission=None) -> None:
        self.app = app
        self.rate_limiter = from_setting(rate_limit)
        self.admission = admission      # tasks.admission.Admission: over(capability) -> retry-after or None
        self.authenticator = authenticator or Authenticator(tokens or [])
        self.open = open_surfaces
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.body_timeout = body_timeout

    @classmethod
    def settings_kwargs(cls, settings: dict) -> dict:
        gateway = settings.get("gateway", {})
        return {"authenticator": Authenticator.from_settings(settings), "open_surfaces": open_surfaces(settings),
                "rate_limit": gateway.get("rate_limit"),
                "max_body_bytes": gateway.get("max_body_bytes") or DEFAULT_MAX_BODY_BYTES,
                "max_json_depth": gateway.get("max_json_depth") or DEFAULT_MAX_JSON_DEPTH,
                "body_timeout": float(gateway.get("body_timeout_seconds") or DEFAULT_BODY_TIMEOUT)}

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine function: a request the guard lets by is the app's own coroutine, and a
        # guarded one runs in one frame (_guarded), not two: every resumption of a request's task
        # (each await of a blocking SendMessage) walks the frames of all the layers above it.
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        path = scope["path"]
        if _PROTECTED.match(path):
            return self._guarded(scope, receive, send, authorize=not _PUBLIC_CARD.match(path))
        if not _MCP.match(path):
            return self.app(scope, receive, send)
        return self._guarded(scope, receive, send, mcp=True)

    async def _authorized(self, scope: Scope, send: Send) -> bool:
        """Find the request's principal and check its right to the route, or answer 401/403."""
        path = scope["path"]
        surface = "admin" if path.startswith(("/admin", "/metrics")) else "agents"     # /metrics: admin rules
        principal = ANONYMOUS
        if surface not in self.open and self.authenticator.enabled:     # else ANONYMOUS, without a coroutine
            value = next((v for k, v in scope["headers"] if k.lower() == b"authorization"), b"")
            try:
                principal = await self.authenticator.authenticate(value.decode("latin-1"))
            except AuthError as e:
                await _refuse(scope, send, UnauthorizedError(), [(b"www-authenticate", e.challenge(
                    f'resource_metadata="{_base(scope)}{METADATA_PATH}"').encode("latin-1"))])
                return False
        capability = _CAPABILITY.match(path)
        if surface == "admin" and not principal.admin:
            await _refuse(scope, send, ForbiddenError("the admin API"))
            return False
        if capability and not principal.may_use(capability.group(1)):
            await _refuse(scope, send, ForbiddenError(f"capability {capability.group(1)[:100]!r}"))
            return False
        if self.rate_limiter is not None and not await self._within_rate(scope, send,
                                                                         principal.id or _client_key(scope)):
            return False
        if self.admission is not None and scope["method"] == "POST" and _SUBMISSION.match(path):
            retry = self.admission.over(capability.group(1))
            if retry is not None:
                await _refuse(scope, send, OverloadedError(capability.group(1), retry), _retry_after(retry))
                return False
        scope.setdefault("state", {})[PRINCIPAL_KEY] = principal
        return True

    async def _within_rate(self, scope: Scope, send: Send, key: str) -> bool:
        if self.rate_limiter is None:
            return True
        retry = await self.rate_limiter.retry_after(key)
        if retry is None:
            return True
        await _refuse(scope, send, RateLimitedError(retry), _retry_after(retry))
        return False

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, *, authorize: bool = False,
                       mcp: bool = False) -> None:
        """The request through the guard: `authorize` (its principal and rights, /admin and
        /agents but their cards), `mcp` (/mcp: only its rate here), then its body, timed,
        measured and (under /agents) capped."""
        if authorize:
            if not await self._authorized(scope, send):
                return
        elif mcp and self.rate_limiter is not None and not await self._within_rate(scope, send, _mcp_key(scope)):
            return
        size_limit = self.max_body_bytes if scope["path"].startswith("/agents") else None
        if size_limit is not None:
            declared = next((v for k, v in scope["headers"] if k.lower() == b"content-length"), b"")
            if declared.isdigit() and int(declared) > size_limit:
                await _refuse(scope, send, BodyTooLargeError(int(declared), size_limit))
                return
        meter = JsonDepth(self.max_json_depth)
        deadline = time.monotonic() + self.body_timeout
        received = 0
        complete = started = refused = expired = False
        timer: asyncio.TimerHandle | None = None       # armed at the first read that may wait
        reader: asyncio.Task | None = None              # the task waiting for the body, while one is

        def on_deadline() -> None:
            # One timer per request rather than asyncio.timeout per read: this is on every request.
            nonlocal expired
            expired = True
            if reader is not None:
                reader.cancel()

        async def read() -> Message | None:
            """The next message of the body, or None once the deadline has passed."""
            nonlocal timer, reader
            if expired:
                return None
            if timer is None:
                # Armed only for a read that may wait: uvicorn has usually read the whole body
                # with the headers, and a timer made and cancelled per request (with
                # get_running_loop and current_task, each a getpid() on Python 3.11) was ~1/3 of
                # the guard's own CPU per request (in-process A/B, issue 17).
                if _holds_message(receive):
                    return await receive()
                timer = asyncio.get_running_loop().call_later(max(0.0, deadline - time.monotonic()), on_deadline)
            reader = asyncio.current_task()
            cancelling = reader.cancelling()
            try:
                return await receive()
            except asyncio.CancelledError:
                if not expired or reader.uncancel() > cancelling:      # not (only) the deadline
                    raise
                return None
            finally:
                reader = None

        async def refuse(error: RequestRefusedError, more: bool = False) -> Message:
            nonlocal complete, refused, received
            complete = True
            # A bad body that is still arriving is read on (and dropped) within the size limit and
            # the deadline, so that the client, which may not read before it has sent all, gets
            # the answer rather than a connection reset.
            while more and received <= self.max_body_bytes:
                message = await read()
                if message is None or message["type"] != "http.request":
                    break
                received += len(message.get("body", b""))
                more = message.get("more_body", False)
            if timer is not None:
                timer.cancel()
            if not started and not refused:
                refused = True
                await _refuse(scope, send, error)
            return {"type": "http.request", "body": _UNPARSABLE, "more_body": False}

        async def guarded_receive() -> Message:
            nonlocal complete, received
            if complete:                # past the body: disconnect watching, never timed
                return await receive()
            message = await read()
            if message is None:
                return await refuse(BodyTimeoutError(self.body_timeout))
            if message["type"] != "http.request":
                complete = True
                if timer is not None:
                    timer.cancel()
                return message
            more = message.get("more_body", False)
            if not more:
                complete = True
                if timer is not None:
                    timer.cancel()
            body = message.get("body", b"")
            if body or not more:        # an empty last chunk may still end a UTF-8 sequence early
                received += len(body)
                if size_limit is not None and received > size_limit:
                    return await refuse(BodyTooLargeError(received, size_limit))
                problem = meter.feed(body, last=not more)
                if problem is not None:
                    return await refuse(MalformedBodyError(received, problem), more)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if refused:             # the app answers the unparsable body too: the refusal stands
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, watching_send)
        finally:
            if timer is not None:
                timer.cancel()


def _uvicorn_cycles() -> tuple[type, ...]:
    """uvicorn's request cycle classes (h11's, and httptools' where it is installed)."""
    cycles = []
    for module in ("httptools_impl", "h11_impl"):
        try:
            cycles.append(importlib.import_module(f"uvicorn.protocols.http.{module}").RequestResponseCycle)
        except ImportError:
            pass
    return tuple(cycles)


_UVICORN_CYCLES = _uvicorn_cycles()


def _holds_message(receive: Receive) -> bool:
    """`receive` is a uvicorn request cycle's own and has its next message already: it returns
    without waiting (its message event is set once the body, its end or a disconnect arrived)."""
    cycle = getattr(receive, "__self__", None)
    return type(cycle) in _UVICORN_CYCLES and cycle.message_event.is_set()


def _base(scope: Scope) -> str:
    host = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
    if not host or any(c in host for c in '"\\ ,'):
        server = scope.get("server") or ("localhost", None)
        host = f"{server[0]}:{server[1]}" if server[1] else server[0]
    return f"{scope.get('scheme', 'http')}://{host}"


def _retry_after(seconds: float) -> list:
    return [(b"retry-after", str(max(1, round(seconds))).encode())]


def _client_key(scope: Scope) -> str:
    client = scope.get("client") or ("?", 0)
    return f"ip:{client[0]}"


def _mcp_key(scope: Scope) -> str:
    """/mcp authenticates in its own guard: its callers are told apart by credential, else address."""
    value = next((v for k, v in scope["headers"] if k.lower() == b"authorization"), b"")
    return "cred:" + hashlib.sha256(value).hexdigest()[:32] if value else _client_key(scope)


def principal_of(scope: Scope):
    """The auth.Principal the guard found for a request (ANONYMOUS where none was needed)."""
    return (scope.get("state") or {}).get(PRINCIPAL_KEY, ANONYMOUS)


async def _refuse(scope: Scope, send: Send, error: RequestRefusedError, headers: list | None = None) -> None:
    """Answer for the app, in the shape of the route the request was for."""
    path = scope["path"]
    if path.startswith("/admin"):
        body = {"error": error.to_dict()}
    elif scope["method"] == "POST" and _JSONRPC_ENDPOINT.match(path):
        code = _PARSE_ERROR if getattr(error, "not_json", False) else _INVALID_REQUEST
        body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": str(error)}}
    else:
        body = {"error": {"code": error.http_status, "status": error.grpc_status, "message": str(error)}}
    await _send_json(send, error.http_status, body, [(b"connection", b"close"), *(headers or [])])


async def _send_json(send: Send, status: int, doc: dict, headers: list) -> None:
    body = json.dumps(doc).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
