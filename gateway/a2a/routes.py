"""The A2A 1.0 surface: one agent per capability under /agents/<name>/, and the gateway's own card.

    GET  /.well-known/agent-card.json                  the gateway: every capability as a skill
    POST /agents/                                      JSON-RPC, capability = params.tenant
    GET  /agents/<name>/.well-known/agent-card.json    the capability's card
    POST /agents/<name>/                               JSON-RPC 1.0 and 0.3 (method names differ)
         /agents/<name>/message:send, /tasks/...       HTTP+JSON 1.0 (also /agents/<tenant>/...)
         /agents/<name>/v1/message:send, ...           HTTP+JSON 0.3

Routes come from the a2a-sdk factories (parsing, A2A-Version checks, serialization, SSE, 0.3
conversion) over the gateway's lean handler (`a2a_handler.py`). Capabilities come and go at
runtime, so the routes carry `<name>` as a path parameter and `CapabilityGate` looks it up per
request (a second of positive caching keeps a remote registry off the hot path); an unknown
name gets "capability not registered" in the shape of the protocol asked for. JSON-RPC
`SendMessage`, the hot call, is answered in front of these routes by `a2a_lean.LeanSendMessage`
over the same handler.

The gRPC binding runs beside these routes on its own port (`grpc.py`); the cards here list it.
Cards are served by `card_http.py` (strict 1.0, ETag, max-age, 304). Not here yet: a custom
protocol binding over the broker itself (DESIGN.md "Beyond the peers" 3) that would be declared
by URI in `supportedInterfaces`.
"""

from __future__ import annotations

import json
import time

from a2a.extensions.common import HTTP_EXTENSION_HEADER, get_requested_extensions
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.response_helpers import build_error_response
from a2a.auth.user import UnauthenticatedUser
from a2a.server.routes import DefaultServerCallContextBuilder, create_jsonrpc_routes, create_rest_routes
from a2a.server.routes.common import StarletteUser
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from adapters.errors import BackendError

from gateway.errors import a2a_error, codes_of
from gateway.http.body import read_body
from gateway.registry import cards
from gateway.tasks.errors import NoLiveWorkerError, UnknownCapabilityError
from gateway.http.guard import principal_of
from .access import PRINCIPAL_STATE
from .card_http import card_response, with_grpc
from .handler import CAPABILITY_STATE, GatewayRequestHandler
from .push import PushService
from gateway.registry.capabilities import Capability

CAPABILITY_SCOPE_KEY = "topicbridge.capability"     # the Capability record the gate found, for the routes


class A2ASurface:
    """What the A2A routes and the lean SendMessage path (`lean.LeanSendMessage`) share: the
    handler over the task service, the capability cache and the call-context builder. Built
    once by the app, which also runs the push service it is given; building routes changes
    nothing."""

    def __init__(self, tasks, registry, push: PushService, *, blocking_wait: float | None,
                 security: cards.CardSecurity = cards.CardSecurity(), card_max_age: int = 300) -> None:
        self.registry = registry
        self.card_max_age = card_max_age    # Cache-Control max-age of the cards (card_http.py)
        self.grpc = None                    # the gRPC binding (grpc.GrpcSurface) when it runs: cards list it
        self.security = security       # what the cards declare the routes require
        self.handler = GatewayRequestHandler(tasks, registry, push, blocking_wait=blocking_wait)
        self.capabilities = CapabilityCache(registry)
        self.builder = _ContextBuilder()

    def lean_options(self) -> dict:
        """The keyword arguments of `lean.LeanSendMessage`."""
        return {"handler": self.handler, "capabilities": self.capabilities, "builder": self.builder}

    def routes(self) -> list:
        handler, builder = self.handler, self.builder
        rest = [r for r in create_rest_routes(handler, builder, enable_v0_3_compat=True)
                if not isinstance(r, Mount)]            # its /{tenant} mount: the capability is the tenant
        agent = [Route("/.well-known/agent-card.json", self._capability_card, methods=["GET"]),
                 *create_jsonrpc_routes(handler, "/", builder, enable_v0_3_compat=True), *rest]
        gate = Middleware(CapabilityGate, capabilities=self.capabilities, tasks=self.handler.tasks)
        return [Route("/.well-known/agent-card.json", self._gateway_card, methods=["GET"]),
                Mount(cards.AGENTS_PATH, routes=[
                    *create_jsonrpc_routes(handler, "/", builder, enable_v0_3_compat=True),
                    Mount("/{name}", routes=agent, middleware=[gate]),
                ])]

    async def _gateway_card(self, request: Request) -> Response:
        card = cards.gateway_card(await self.registry.list(), str(request.base_url), self.security)
        return card_response(request, with_grpc(card, request, self.grpc_port()), self.card_max_age)

    async def _capability_card(self, request: Request) -> Response:
        capability = request.scope[CAPABILITY_SCOPE_KEY]
        card = cards.capability_card(capability, str(request.base_url), self.security)
        return card_response(request, with_grpc(card, request, self.grpc_port(), capability.name), self.card_max_age)

    def grpc_port(self) -> int | None:
        return None if self.grpc is None else self.grpc.port


class _ContextBuilder(DefaultServerCallContextBuilder):
    """The SDK's context plus the capability the gate resolved; headers are passed as they are
    (case-insensitive, which the SDK's A2A-Version check relies on) rather than copied."""

    def build(self, request: Request, tenant: str = "") -> ServerCallContext:
        return self.build_scope(request.scope, tenant)

    def build_scope(self, scope, tenant: str = "") -> ServerCallContext:
        """The context of a request from its ASGI scope: the lean path builds no Request (a Request
        and the getlist of its Headers were ~0.7 of the ~9 us a context took, issue 17)."""
        capability = scope.get(CAPABILITY_SCOPE_KEY)
        state = {"headers": Headers(scope=scope), CAPABILITY_STATE: capability.name if capability else "",
                 PRINCIPAL_STATE: principal_of(scope)}
        if "auth" in scope:
            state["auth"] = scope["auth"]
        # built from values of the right types: pydantic's validation of them was ~1% of the
        # gateway's CPU per native task (issue 17)
        # (`tenant` here rather than set after: a pydantic attribute assignment costs as much again)
        return ServerCallContext.model_construct(
            user=StarletteUser(scope["user"]) if "user" in scope else UnauthenticatedUser(), state=state,
            tenant=tenant, requested_extensions=_extensions(scope["headers"]))


_EXTENSION_HEADER = HTTP_EXTENSION_HEADER.lower().encode("latin-1")


def _extensions(headers) -> set[str]:
    """get_requested_extensions of the request's A2A-Extensions headers (ASGI header names are lower case)."""
    values = [value.decode("latin-1") for key, value in headers if key == _EXTENSION_HEADER]
    return get_requested_extensions(values) if values else set()


class CapabilityCache:
    """Capability records by name, with a second of positive caching: keeps a remote registry
    off the hot path. An unknown name is looked up every time (it may be registered any moment)."""

    def __init__(self, registry, ttl: float = 1.0) -> None:
        self.registry = registry
        self.ttl = ttl
        self._known: dict[str, tuple[float, Capability]] = {}

    async def get(self, name: str) -> Capability | None:
        now = time.monotonic()
        hit = self._known.get(name)
        if hit is not None and hit[0] > now:
            return hit[1]
        capability = await self.registry.get(name)
        if capability is None:
            self._known.pop(name, None)
        else:
            self._known[name] = (now + self.ttl, capability)
        return capability


class CapabilityGate:
    """Pure ASGI middleware in front of one capability's routes: resolves `<name>` or answers that
    it is not registered, in the shape of the protocol asked for (`_refuse`). An HTTP+JSON send to
    a capability with no live worker is refused here too, with its 503: past this gate the SDK
    would render the task service's NoLiveWorkerError as a 500 (JSON-RPC gets it from the
    service, in the JSON-RPC error shape)."""

    def __init__(self, app, capabilities: CapabilityCache, tasks=None) -> None:
        self.app = app
        self.capabilities = capabilities
        self.tasks = tasks          # its `availability` (registry/liveness.py), when the gateway refuses

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = scope["path_params"].get("name", "")
        try:
            capability = await self.capabilities.get(name)
            error = None if capability is not None else UnknownCapabilityError(name)
            if error is None and _rest_send(scope):
                error = await self._no_live_worker(name)
        except BackendError as e:
            capability, error = None, e
        if error is not None:
            await _refuse(scope, receive, send, name, error)
            return
        scope[CAPABILITY_SCOPE_KEY] = capability
        await self.app(scope, receive, send)


    async def _no_live_worker(self, name: str) -> NoLiveWorkerError | None:
        availability = getattr(self.tasks, "availability", None)
        why = await availability(name) if availability is not None else None
        return NoLiveWorkerError(name, why) if why else None


def _rest_send(scope) -> bool:
    return scope["method"] == "POST" and scope["path"].endswith(("/message:send", "/message:stream"))


async def _refuse(scope, receive, send, name: str, error: Exception) -> None:
    """JSON-RPC for POST /agents/<name>/: the request's own id, in a 200 as every JSON-RPC error
    (a client reads the error object only then); else the A2A HTTP+JSON error with its status."""
    if scope["method"] == "POST" and scope["path"].endswith(f"{cards.AGENTS_PATH}/{name}/"):
        body, _ = await read_body(receive)      # the guard in front has bounded its size and depth
        response = JSONResponse(build_error_response(_request_id(body), a2a_error(error)))
    else:
        codes = codes_of(error)
        retry = getattr(error, "retry_after", None)
        response = JSONResponse({"error": {"code": codes.http, "status": codes.grpc, "message": str(error)}},
                                status_code=codes.http, headers={"Retry-After": f"{retry:g}"} if retry else None)
    await response(scope, receive, send)


def _request_id(body: bytes | None) -> int | str | None:
    """The id of a JSON-RPC request body, when it has a valid one."""
    try:
        doc = json.loads(body) if body else None
    except (ValueError, RecursionError):
        return None
    request_id = doc.get("id") if isinstance(doc, dict) else None
    return request_id if isinstance(request_id, (int, str)) and not isinstance(request_id, bool) else None
