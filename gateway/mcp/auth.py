"""Who may talk to /mcp: Origin and Host checks against DNS rebinding, and bearer tokens.

`McpGuard` is a pure ASGI wrapper in front of the MCP endpoint. In order:

1. Origin. A browser always sends one; an Origin that is not allowed is refused with 403 and a
   JSON-RPC error without id (the transport spec's MUST). No Origin (a non-browser client) passes.
2. Host. On a loopback gateway only loopback Host values pass (421 otherwise): a page on a
   rebound name reaches 127.0.0.1 with its own name in Host.
3. Bearer token, when any authentication is configured (`gateway.mcp_bearer_tokens`, else
   `gateway.bearer_tokens`, and `gateway.oauth`; not when "mcp" is in `gateway.open_surfaces`):
   401 with `WWW-Authenticate: Bearer resource_metadata="…"` naming the RFC 9728 protected
   resource metadata, which `metadata_routes` serves at `/.well-known/oauth-protected-resource[/mcp]`.
4. Scopes. A JWT whose scopes name only some capabilities (`<agent_scope_prefix><name>`, as on the
   A2A routes) sees only those tools (server.py filters tools/list and find_capabilities); its
   `tools/call` of another capability is refused here with 403 and `WWW-Authenticate: Bearer
   error="insufficient_scope", scope="…"`, the 2025-11-25 authorization spec's scope challenge,
   so a client can step up its authorization. Only such callers' bodies are read here.

The gateway is an OAuth 2.1 resource server (gateway/http/auth.py): static tokens and JWTs of
the issuer in `gateway.oauth`. A caller's identity is a digest of its token (static) or of its
principal (JWT): it binds 2025-11-25 sessions (through the SDK's session owner check,
`scope["user"]`) and MCP tasks to the caller that created them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.http.auth import ANONYMOUS, AuthError, Authenticator, OAuthSettings, Principal, open_surfaces
from gateway.http.body import read_body, replay

from .tasks import owner_of
from .tools import FIND_CAPABILITIES, GET_TASK_RESULT

LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")
METADATA_PATH = "/.well-known/oauth-protected-resource"
OWNER_KEY = "topicbridge.mcp_owner"
PRINCIPAL_KEY = "topicbridge.mcp_principal"
GATEWAY_TOOLS = frozenset({FIND_CAPABILITIES, GET_TASK_RESULT})       # every caller's
SCOPE_PEEK_LIMIT = 4 * 1024 * 1024          # a larger body goes on unread: the SDK refuses it anyway
_TOOLS_CALL = re.compile(rb'"method"\s*:\s*"tools/call"')
_OWS = (b" ", b"\t")


@dataclass
class AccessPolicy:
    tokens: list[str] = field(default_factory=list)
    allowed_hosts: list[str] | None = None      # None: any Host
    allowed_origins: list[str] = field(default_factory=list)
    authorization_servers: list[str] = field(default_factory=list)
    endpoint: str = "/mcp"
    oauth: OAuthSettings | None = None

    def __post_init__(self) -> None:
        self.authenticator = Authenticator(self.tokens, self.oauth)
        if self.oauth is not None and self.oauth.issuer not in self.authorization_servers:
            self.authorization_servers = [*self.authorization_servers, self.oauth.issuer]

    @classmethod
    def from_settings(cls, settings: dict, endpoint: str = "/mcp") -> "AccessPolicy":
        gateway = settings.get("gateway", {})
        loopback = gateway.get("host", "127.0.0.1") in LOOPBACK
        hosts = _listing(gateway.get("mcp_allowed_hosts"))
        if hosts is None:
            hosts = [f"{h}:*" for h in LOOPBACK] + list(LOOPBACK) if loopback else None
        origins = _listing(gateway.get("mcp_allowed_origins"))
        if origins is None:
            origins = [f"{scheme}://{h}{port}" for scheme in ("http", "https") for h in LOOPBACK
                       for port in ("", ":*")]
        opened = "mcp" in open_surfaces(settings)
        tokens = [] if opened else (_listing(gateway.get("mcp_bearer_tokens"))
                                    or _listing(gateway.get("bearer_tokens")) or [])
        return cls(tokens=tokens, allowed_hosts=hosts, allowed_origins=origins,
                   oauth=None if opened else OAuthSettings.from_settings(settings),
                   authorization_servers=_listing(gateway.get("mcp_authorization_servers")) or [],
                   endpoint=endpoint)

    def host_allowed(self, host: str | None) -> bool:
        if self.allowed_hosts is None or "*" in self.allowed_hosts:
            return True
        return bool(host) and _matches(host.lower(), self.allowed_hosts)

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        if "*" in self.allowed_origins or _matches(origin.lower().rstrip("/"), self.allowed_origins):
            return True
        # Same-origin pages are fine where the Host check means something.
        return self.allowed_hosts is not None and bool(host) and urlsplit(origin).netloc.lower() == host.lower()

    async def identify(self, authorization: str | None) -> tuple[str | None, Principal]:
        """(the caller's owner digest, None when no authentication is configured; its principal).
        Raises AuthError."""
        if not self.authenticator.enabled:
            return None, ANONYMOUS
        principal = await self.authenticator.authenticate(authorization)
        if principal.id.startswith("token:"):      # as MCP tasks were bound before JWTs: the token's digest
            return owner_of(authorization.partition(" ")[2].strip()), principal
        return hashlib.sha256(principal.id.encode()).hexdigest()[:32], principal

    def scope_for(self, capability: str) -> str:
        """The scope that grants one capability (the A2A routes' mapping, gateway/http/auth.py)."""
        prefix = self.oauth.agent_scope_prefix if self.oauth is not None else "topicbridge:agent:"
        return prefix + capability


def _listing(value) -> list[str] | None:
    """A list from TOML, or a comma-separated string from an environment variable."""
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _matches(value: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        pattern = pattern.lower()
        if value == pattern or (pattern.endswith(":*") and value.startswith(pattern[:-1])
                                and value[len(pattern) - 1:].isdigit()):
            return True
    return False


class McpGuard:
    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy
        self._hosts: dict[bytes | None, bool] = {}      # Host value -> policy.host_allowed; clients send few

    def __call__(self, scope: Scope, receive: Receive, send: Send):
        # Not a coroutine function: where no token is checked, the request is the app's own
        # coroutine, with no frame of this layer in the chain every resumption of its task walks.
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        host = origin = None        # the first of each, as starlette's Headers.get finds them
        for key, value in scope["headers"]:
            if value[:1] in _OWS or value[-1:] in _OWS:
                # RFC 9110 §5.5: whitespace around a field value is not part of it (the SDK compares exactly).
                scope = {**scope, "headers": [(k, v.strip(b" \t")) for k, v in scope["headers"]]}
                host, origin = _first(scope["headers"], b"host"), _first(scope["headers"], b"origin")
                break
            if key == b"host":
                host = value if host is None else host
            elif key == b"origin":
                origin = value if origin is None else origin
        if origin is not None and not self.policy.origin_allowed(origin.decode("latin-1"), _text(host)):
            return _error(403, "Forbidden: Origin not allowed")(scope, receive, send)
        if not self._host_allowed(host):
            return _error(421, "Misdirected request: Host not allowed")(scope, receive, send)
        if not self.policy.authenticator.enabled:      # AccessPolicy.identify's answer, without a coroutine
            scope.setdefault("state", {})[PRINCIPAL_KEY] = ANONYMOUS
            return self.app(scope, receive, send)
        return self._identified(scope, receive, send, Headers(scope=scope))

    def _host_allowed(self, host: bytes | None) -> bool:
        """policy.host_allowed of a raw Host value, remembered per value."""
        verdict = self._hosts.get(host)
        if verdict is None:
            verdict = self.policy.host_allowed(_text(host))
            if len(self._hosts) < 64:
                self._hosts[host] = verdict
        return verdict

    async def _identified(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        try:
            owner, principal = await self.policy.identify(headers.get("authorization"))
        except AuthError as e:
            bad = "authorization" in headers
            challenge = f'Bearer resource_metadata="{metadata_url(scope, self.policy.endpoint)}"'
            if bad:
                challenge += f', error="invalid_token", error_description="{e.description or "The access token is not valid"}"'
            await _error(401, "Unauthorized: a valid bearer token is required",
                         {"WWW-Authenticate": challenge})(scope, receive, send)
            return
        if principal.capabilities is not None and scope["method"] == "POST":
            refused, receive = await self._outside_scopes(principal, receive)
            if refused is not None:
                challenge = (f'Bearer error="insufficient_scope", scope="{self.policy.scope_for(refused)}", '
                             f'resource_metadata="{metadata_url(scope, self.policy.endpoint)}", '
                             f'error_description="the access token does not grant the tool {refused!r}"')
                await _error(403, f"Forbidden: the access token does not grant the tool {refused!r}",
                             {"WWW-Authenticate": challenge})(scope, receive, send)
                return
        state = scope.setdefault("state", {})
        state[PRINCIPAL_KEY] = principal
        if owner is not None:
            state[OWNER_KEY] = owner
            scope["user"] = AuthenticatedUser(AccessToken(token=owner, client_id=owner, scopes=[]))
        await self.app(scope, receive, send)

    async def _outside_scopes(self, principal: Principal, receive: Receive) -> tuple[str | None, Receive]:
        """(the tool a `tools/call` names that the principal's scopes do not grant, or None; the
        `receive` for the app behind, which replays what was read)."""
        body, messages = await read_body(receive, SCOPE_PEEK_LIMIT)
        receive = replay(messages, receive)
        if not body or not _TOOLS_CALL.search(body):
            return None, receive
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            return None, receive        # the SDK answers a parse error
        params = message.get("params") if isinstance(message, dict) else None
        name = params.get("name") if isinstance(params, dict) and message.get("method") == "tools/call" else None
        if not isinstance(name, str) or name in GATEWAY_TOOLS or principal.may_use(name):
            return None, receive
        return name[:100], receive


def _first(headers: list, key: bytes) -> bytes | None:
    return next((v for k, v in headers if k == key), None)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _error(status: int, message: str, headers: dict | None = None) -> Response:
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=headers)


def base_url(scope: Scope) -> str:
    request = Request(scope)
    return f"{request.url.scheme}://{request.url.netloc}"


def metadata_url(scope: Scope, endpoint: str) -> str:
    return f"{base_url(scope)}{METADATA_PATH}{endpoint}"


def metadata_routes(policy: AccessPolicy) -> list[Route]:
    """RFC 9728 protected resource metadata, at the path-suffixed and the root well-known URL."""

    def document(request: Request, path: str, name: str) -> JSONResponse:
        doc = {"resource": f"{base_url(request.scope)}{path}",
               "bearer_methods_supported": ["header"], "resource_name": name}
        if policy.authorization_servers:
            doc["authorization_servers"] = policy.authorization_servers
        if policy.oauth is not None:
            doc["scopes_supported"] = [policy.oauth.admin_scope, policy.oauth.agents_scope]
        return JSONResponse(doc, headers={"Cache-Control": "public, max-age=3600"})

    async def for_mcp(request: Request) -> JSONResponse:
        return document(request, policy.endpoint, "topicbridge gateway (MCP)")

    async def for_gateway(request: Request) -> JSONResponse:      # /agents/* and /admin/* (the guard's challenge)
        return document(request, "", "topicbridge gateway")

    return [Route(METADATA_PATH + policy.endpoint, for_mcp, methods=["GET"]),
            Route(METADATA_PATH, for_gateway, methods=["GET"])]


def principal_from(request) -> Principal:
    """The principal the guard put on a request (ANONYMOUS off HTTP or without authentication)."""
    scope = getattr(request, "scope", None)
    return (scope.get("state") or {}).get(PRINCIPAL_KEY, ANONYMOUS) if scope else ANONYMOUS


def owner_from(request) -> str | None:
    """The owner digest the guard put on a request (None without tokens, or off HTTP)."""
    scope = getattr(request, "scope", None)
    return (scope.get("state") or {}).get(OWNER_KEY) if scope else None
