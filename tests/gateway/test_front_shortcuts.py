"""The front's shortcuts (issue 17) give what the longer way gave: the lean path's call context
built from the ASGI scope (no Request) is the one built from a Request, and the guard times a
body read only when uvicorn does not hold the message already."""

from __future__ import annotations

import asyncio

from a2a.auth.user import UnauthenticatedUser
from a2a.extensions.common import HTTP_EXTENSION_HEADER, get_requested_extensions
from a2a.server.routes.common import StarletteUser
from starlette.authentication import SimpleUser
from starlette.requests import Request
from uvicorn.protocols.http.h11_impl import RequestResponseCycle as H11Cycle
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle as HttpToolsCycle

from gateway.a2a.access import PRINCIPAL_STATE
from gateway.a2a.handler import CAPABILITY_STATE
from gateway.a2a.routes import CAPABILITY_SCOPE_KEY, _ContextBuilder
from gateway.http.auth import ANONYMOUS, Principal
from gateway.http.guard import PRINCIPAL_KEY, _holds_message
from gateway.registry.capabilities import Capability


def scope(headers: list[tuple[bytes, bytes]], **more) -> dict:
    return {"type": "http", "method": "POST", "path": "/agents/echo/", "headers": headers, **more}


def test_the_context_from_the_scope_is_the_context_from_a_request():
    principal = Principal("alice")
    capability = Capability(name="echo", card={})
    headers = [(b"content-type", b"application/json"), (b"a2a-extensions", b"urn:a, urn:b"),
               (b"a2a-extensions", b" ,urn:c"), (b"a2a-version", b"1.0")]
    asgi = scope(headers, auth="credentials", user=SimpleUser("alice"),
                 state={PRINCIPAL_KEY: principal}, **{CAPABILITY_SCOPE_KEY: capability})
    context = _ContextBuilder().build_scope(dict(asgi), tenant="t1")
    request = Request(dict(asgi))
    assert context.requested_extensions == get_requested_extensions(request.headers.getlist(HTTP_EXTENSION_HEADER))
    assert context.requested_extensions == {"urn:a", "urn:b", "urn:c"}
    assert context.tenant == "t1"
    assert isinstance(context.user, StarletteUser) and context.user.user_name == "alice"
    assert context.state["auth"] == "credentials"
    assert context.state[CAPABILITY_STATE] == "echo" and context.state[PRINCIPAL_STATE] is principal
    assert context.state["headers"]["A2A-Version"] == "1.0"
    assert context.state["headers"].getlist(HTTP_EXTENSION_HEADER) == ["urn:a, urn:b", " ,urn:c"]
    # the Request route (the SDK's routes) builds the same
    again = _ContextBuilder().build(request, tenant="t1")
    assert again.requested_extensions == context.requested_extensions and again.state.keys() == context.state.keys()


def test_a_plain_request_gets_an_unauthenticated_user_and_no_extensions():
    context = _ContextBuilder().build_scope(scope([(b"a2a-version", b"1.0")]))
    assert isinstance(context.user, UnauthenticatedUser)
    assert context.requested_extensions == set() and context.tenant == ""
    assert "auth" not in context.state
    assert context.state[CAPABILITY_STATE] == "" and context.state[PRINCIPAL_STATE] is ANONYMOUS


class _Cycle:
    """Stands in for a uvicorn cycle: only its message event is read."""

    def __init__(self, cls):
        self.cycle = cls.__new__(cls)
        self.cycle.message_event = asyncio.Event()


async def test_only_a_uvicorn_cycle_holding_its_message_is_read_untimed():
    for cls in (HttpToolsCycle, H11Cycle):
        cycle = _Cycle(cls).cycle
        assert not _holds_message(cycle.receive)        # the body has not arrived: the read is timed
        cycle.message_event.set()
        assert _holds_message(cycle.receive)

    async def receive():
        return {"type": "http.request"}
    assert not _holds_message(receive)                  # any other server's receive: always timed
    assert not _holds_message(_Cycle(HttpToolsCycle).cycle.send)
