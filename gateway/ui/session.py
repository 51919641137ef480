"""How a browser gets past the admin guard: a pure ASGI middleware in front of GatewayGuard.

A browser cannot put `Authorization: Bearer` on a page load, an EventSource or a form post, so
the UI's login form (pages.py) keeps the token in the `topicbridge_token` cookie (HttpOnly,
SameSite=Strict) and this middleware hands it to the guard as the Authorization header of a
same-origin request that has none. The guard then decides exactly as for any other client (a
wrong token is refused like a wrong header). A cross-site request never carries the cookie
(SameSite=Strict), and one that names another Origin is not given the header either.

With authentication on (gateway.bearer_tokens or gateway.oauth), a page of the UI asked for
without credentials, or refused with 401, becomes a redirect to the login form, which (with the
UI's style sheet and script) is served without a token.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.http.auth import token_list

UI_COOKIE = "topicbridge_token"
PREFIX = "/admin/ui"
_PUBLIC = (PREFIX + "/login", PREFIX + "/static/")


def auth_on(settings: dict) -> bool:
    gateway = settings.get("gateway") or {}
    return bool(token_list(gateway.get("bearer_tokens")) or (gateway.get("oauth") or {}).get("issuer"))


def middleware(gateway) -> list[Middleware]:
    """The middleware for `gateway`'s app, to go in front of GatewayGuard: none without
    authentication (no login to hand on; one layer less on every request)."""
    if not auth_on(gateway.settings):
        return []
    from .pages import public_app
    return [Middleware(UiSession, ui=public_app(gateway), auth_on=True)]


class UiSession:
    def __init__(self, app: ASGIApp, ui: ASGIApp, auth_on: bool) -> None:
        """`app` is the guard and all behind it; `ui` serves the public login page and static files."""
        self.app, self.ui, self.auth_on = app, ui, auth_on

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.auth_on:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == _PUBLIC[0] or path.startswith(_PUBLIC[1]):
            await self.ui(scope, receive, send)
            return
        headers = scope["headers"]
        has_header = any(k.lower() == b"authorization" for k, _ in headers)
        token = None if has_header else _cookie(headers)
        if token and _same_origin(headers):
            scope = dict(scope, headers=[*headers, (b"authorization", b"Bearer " + token.encode("latin-1"))])
        page = path.startswith(PREFIX) and scope["method"] == "GET"
        if page and not has_header and not token:
            await _to_login(scope, send)
            return
        await self.app(scope, receive, _login_on_401(scope, send) if page else send)


def _cookie(headers: list) -> str | None:
    for key, value in headers:
        if key.lower() != b"cookie":
            continue
        for item in value.decode("latin-1").split(";"):
            name, _, raw = item.strip().partition("=")
            if name == UI_COOKIE and raw:
                token = unquote(raw)
                return token if token.isprintable() and token.isascii() else None
    return None


def _same_origin(headers: list) -> bool:
    found = {k.lower(): v.decode("latin-1") for k, v in headers if k.lower() in (b"origin", b"host")}
    origin = found.get(b"origin")
    return origin is None or origin.split("://", 1)[-1].rstrip("/") == found.get(b"host", "")


def _login_on_401(scope: Scope, send: Send) -> Send:
    """A page refused for its credentials goes to the login form instead of showing JSON."""
    redirected = False

    async def wrapped(message) -> None:
        nonlocal redirected
        if message["type"] == "http.response.start" and message["status"] == 401:
            redirected = True
            await _to_login(scope, send, refused=True)
            return
        if redirected:
            return
        await send(message)
    return wrapped


async def _to_login(scope: Scope, send: Send, refused: bool = False) -> None:
    target = scope["path"] + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
    problem = "&problem=" + quote("The gateway refused that token.") if refused else ""
    location = f"{PREFIX}/login?next={quote(target, safe='')}{problem}".encode("latin-1")
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location), (b"content-length", b"0"), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b""})
