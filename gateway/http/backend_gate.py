"""Fail fast while the backend is down. `BackendWatch` asks the backend for its health every
`interval` seconds (a supervised loop); while the answer is "down", `BackendGate` answers calls
that would need the backend at once — 503 with `Retry-After` and the reason, in the route's
error shape (JSON-RPC on the A2A and MCP endpoints) — instead of letting them wait for the
backend's own timeouts (Kafka's are 30 s and more). Reads that need no backend (cards, health,
the admin API's GETs) pass."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable

from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.base import Backend
from gateway.supervisor import Supervisor

from .errors import BackendDownError

log = logging.getLogger("topicbridge.gateway")
WATCH_LOOP = "backend-watch"
INTERNAL_ERROR = -32603     # JSON-RPC: what A2A and MCP clients get for an unavailable backend
_JSONRPC_ENDPOINT = re.compile(r"^/(agents/[^/]+/?|mcp/?)$")


class BackendWatch:
    """The backend's health as last seen: `reason` is None while it is up."""

    def __init__(self, backend: Backend, supervisor: Supervisor, *, interval: float = 1.0,
                 probe_timeout: float = 3.0) -> None:
        self.backend, self.supervisor = backend, supervisor
        self.interval, self.probe_timeout = interval, probe_timeout
        self.reason: str | None = None
        self.changed = asyncio.Event()      # set at each change between up and down (cleared by whoever waits)

    async def start(self) -> None:
        self.supervisor.spawn(WATCH_LOOP, self._loop)

    async def close(self) -> None:
        await self.supervisor.stop(WATCH_LOOP)

    async def _loop(self) -> None:
        while True:
            self._note(await self.probe())
            await asyncio.sleep(self.interval)

    async def probe(self) -> str | None:
        try:
            async with asyncio.timeout(self.probe_timeout):
                health = await self.backend.health()
        except TimeoutError:
            return f"no health answer within {self.probe_timeout:g} s"
        if health.ok:
            return None
        detail = health.detail or {}
        return str(detail.get("error") or detail.get("reason") or "unhealthy")

    def _note(self, reason: str | None) -> None:
        if (reason is None) != (self.reason is None):      # one line per change, not per probe
            if reason is None:
                log.warning("backend %s is back", self.backend.name)
            else:
                log.warning("backend %s is down: %s; calls are refused (503) until it is back", self.backend.name,
                            reason)
            self.reason = reason
            self.changed.set()
        self.reason = reason


class BackendGate:
    """Pure ASGI middleware in front of the app: POSTs to /agents/* and /mcp while `watch` says down."""

    def __init__(self, app: ASGIApp, watch: BackendWatch, retry_after: int = 5) -> None:
        self.app, self.watch, self.retry_after = app, watch, retry_after

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine function: a request it lets by is the app's own coroutine, with no frame
        # of this layer for every resumption of the request's task to walk through.
        reason = self.watch.reason
        if reason is not None and scope["type"] == "http" and scope["method"] == "POST" and (
                scope["path"].startswith("/agents/") or scope["path"].rstrip("/") == "/mcp"):
            return self._refuse(scope, send, BackendDownError(reason, self.retry_after))
        return self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, error: BackendDownError) -> None:
        if _JSONRPC_ENDPOINT.match(scope["path"]):
            doc = {"jsonrpc": "2.0", "id": None, "error": {"code": INTERNAL_ERROR, "message": str(error),
                                                           "data": error.to_dict()}}
        else:                   # the HTTP+JSON binding's routes
            doc = {"error": {"code": error.http_status, "status": error.grpc_status, "message": str(error)}}
        body = json.dumps(doc).encode()
        await send({"type": "http.response.start", "status": error.http_status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", str(error.retry_after).encode())]})
        await send({"type": "http.response.body", "body": body})
