"""Real, independent A2A agents for the tests: a2a-sdk's own server pieces (routes,
DefaultRequestHandler, an AgentExecutor), served by uvicorn on 127.0.0.1, port 0.

The summariser answers by the text it is sent:
    "wait"    works until cancelled          "ask"     asks for input
    "fail"    fails with a reason            "message" answers with a bare Message, no task
    anything else: a status, a "summary" artifact, completed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import urllib.parse

from a2a.server.agent_execution import AgentExecutor
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import a2a_pb2
from a2a.compat.v0_3 import conversions
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .serving import Server


class Summariser(AgentExecutor):
    def __init__(self) -> None:
        self.methods: list[str] = []            # JSON-RPC methods the agent was called with
        self.working = asyncio.Event()          # a "wait" task has started
        self.cancelled: list[str] = []          # remote task ids cancelled
        self.cancel_called = asyncio.Event()

    async def execute(self, context, queue) -> None:
        self.methods.append(context.call_context.state.get("method", ""))
        text = context.get_user_input()
        if text == "message":
            await queue.enqueue_event(a2a_pb2.Message(message_id="answer-1", role=a2a_pb2.ROLE_AGENT,
                                                      context_id=context.context_id,
                                                      parts=[a2a_pb2.Part(text="just a message")]))
            return
        updater = TaskUpdater(queue, context.task_id, context.context_id)
        if context.current_task is None:
            await queue.enqueue_event(a2a_pb2.Task(id=context.task_id, context_id=context.context_id,
                                                   status=a2a_pb2.TaskStatus(state=a2a_pb2.TASK_STATE_SUBMITTED),
                                                   history=[context.message]))
        await updater.start_work(updater.new_agent_message([a2a_pb2.Part(text="reading")]))
        if text == "wait":
            self.working.set()
            await asyncio.Event().wait()
        elif text == "ask":
            await updater.requires_input(updater.new_agent_message([a2a_pb2.Part(text="which pages?")]))
        elif text == "fail":
            await updater.failed(updater.new_agent_message([a2a_pb2.Part(text="cannot read that")]))
        else:
            await updater.add_artifact([a2a_pb2.Part(text=f"summary of: {text}")], name="summary")
            await updater.complete()

    async def cancel(self, context, queue) -> None:
        self.cancelled.append(context.task_id)
        self.cancel_called.set()
        await TaskUpdater(queue, context.task_id, context.context_id).cancel()


def summariser_card(url: str, *, streaming: bool, name: str = "PDF Summariser",
                    binding: str = "JSONRPC") -> a2a_pb2.AgentCard:
    return a2a_pb2.AgentCard(
        name=name, description="Summarises PDF documents and long reports into a few paragraphs.",
        version="1.0.0",
        supported_interfaces=[a2a_pb2.AgentInterface(url=url, protocol_binding=binding, protocol_version="1.0")],
        capabilities=a2a_pb2.AgentCapabilities(streaming=streaming),
        default_input_modes=["text/plain", "application/pdf"], default_output_modes=["text/plain"],
        skills=[a2a_pb2.AgentSkill(id="summarise", name="Summarize documents",
                                   description="Summarizes PDF files and reports",
                                   tags=["pdf", "summary", "documents"],
                                   examples=["Summarise this quarterly report"])])


class RequireHeader:
    """Pure ASGI: 401 for any request without `header: value` (the card too unless `open_card`);
    counts refusals."""

    def __init__(self, app, header: str, value: str, open_card: bool = False) -> None:
        self.app, self.header, self.value, self.open_card = app, header.lower().encode(), value.encode(), open_card
        self.refused = 0

    async def __call__(self, scope, receive, send) -> None:
        card = scope.get("path") == "/.well-known/agent-card.json"
        if scope["type"] == "http" and not (card and self.open_card) \
                and dict(scope["headers"]).get(self.header) != self.value:
            self.refused += 1
            await JSONResponse({"error": "unauthorised"}, status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class TokenServer(Server):
    """An OAuth 2.0 token endpoint (RFC 6749 section 4.4) at /token for one client authenticating
    with HTTP Basic: opaque tokens, `expires_in` seconds, counted. `honoured` (the tokens an agent
    guarded by `accepts` takes) can be emptied to make agents refuse tokens already issued."""

    def __init__(self, client_id: str, secret: str, *, expires_in: int = 3600) -> None:
        super().__init__()
        self.client_id, self.secret, self.expires_in = client_id, secret, expires_in
        self.token_url = self.base_url + "/token"
        self.requests = 0
        self.scopes: list[str | None] = []     # the scope parameter of each request
        self.honoured: set[str] = set()

    def accepts(self, token: str) -> bool:
        return token in self.honoured

    async def start(self) -> None:
        await super().start(Starlette(routes=[Route("/token", self._token, methods=["POST"])]))

    async def _token(self, request: Request) -> JSONResponse:
        self.requests += 1
        form = urllib.parse.parse_qs((await request.body()).decode())
        self.scopes.append(form.get("scope", [None])[0])
        if self._client(request.headers.get("authorization", "")) != (self.client_id, self.secret):
            return JSONResponse({"error": "invalid_client", "error_description": "client authentication failed"},
                                status_code=401, headers={"WWW-Authenticate": 'Basic realm="token"'})
        if form.get("grant_type") != ["client_credentials"]:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        token = secrets.token_urlsafe(16)
        self.honoured.add(token)
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in},
                            headers={"Cache-Control": "no-store"})

    @staticmethod
    def _client(authorization: str) -> tuple[str, str] | None:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)


class RequireToken:
    """Pure ASGI: 401 for any request but the card's without a bearer token `accepts` takes;
    counts refusals."""

    def __init__(self, app, accepts) -> None:
        self.app, self.accepts = app, accepts
        self.refused = 0

    async def __call__(self, scope, receive, send) -> None:
        card = scope.get("path") == "/.well-known/agent-card.json"
        authorization = dict(scope.get("headers", ())).get(b"authorization", b"").decode()
        if scope["type"] == "http" and not card and not self.accepts(authorization.removeprefix("Bearer ")):
            self.refused += 1
            await JSONResponse({"error": "invalid_token"}, status_code=401,
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})(scope, receive, send)
            return
        await self.app(scope, receive, send)


class Agent(Server):
    """The summariser, its card at /.well-known/agent-card.json, JSON-RPC at / (and HTTP+JSON at /rest).
    `legacy` serves the card in its A2A 0.3 form (JSON-RPC 0.3 is served at / either way).
    `require=(header, value)` refuses (401) every request without that header, the card too unless
    `open_card`; the card declares the matching security scheme. `oauth` (a TokenServer) refuses
    every request but the card's without one of its tokens; the card declares its client
    credentials flow."""

    def __init__(self, *, streaming: bool = True, name: str = "PDF Summariser", binding: str = "JSONRPC",
                 legacy: bool = False, require: tuple[str, str] | None = None, open_card: bool = False,
                 oauth: TokenServer | None = None) -> None:
        super().__init__()
        self.executor = Summariser()
        url = self.base_url + ("/" if binding == "JSONRPC" else "/rest")
        self.card = summariser_card(url, streaming=streaming, name=name, binding=binding)
        self.card_url = self.base_url + "/.well-known/agent-card.json"
        self.legacy = legacy
        self.require, self.open_card = require, open_card
        self.guard: RequireHeader | RequireToken | None = None
        self.oauth = oauth
        if oauth is not None:
            flow = self.card.security_schemes["oauth2"].oauth2_security_scheme.flows.client_credentials
            flow.token_url = oauth.token_url
            flow.scopes["summarise"] = "summarise documents"
        if require is not None and require[0].lower() == "authorization":
            self.card.security_schemes["bearer"].http_auth_security_scheme.scheme = "Bearer"
        elif require is not None:
            self.card.security_schemes["key"].api_key_security_scheme.CopyFrom(
                a2a_pb2.APIKeySecurityScheme(location="header", name=require[0]))

    async def start(self) -> None:
        handler = DefaultRequestHandler(agent_executor=self.executor, task_store=InMemoryTaskStore(),
                                        agent_card=self.card, validate_input_modes=True)
        card_routes = [Route("/.well-known/agent-card.json", self._legacy_card)] if self.legacy \
            else create_agent_card_routes(self.card)
        app = Starlette(routes=[*card_routes, *create_jsonrpc_routes(handler, "/", enable_v0_3_compat=True),
                                *create_rest_routes(handler, path_prefix="/rest")])
        if self.require is not None:
            app = self.guard = RequireHeader(app, *self.require, open_card=self.open_card)
        elif self.oauth is not None:
            app = self.guard = RequireToken(app, self.oauth.accepts)
        await super().start(app)

    async def _legacy_card(self, request) -> JSONResponse:
        card = a2a_pb2.AgentCard()
        card.CopyFrom(self.card)
        for interface in card.supported_interfaces:
            interface.protocol_version = "0.3.0"
        legacy = conversions.to_compat_agent_card(card)
        return JSONResponse(legacy.model_dump(mode="json", by_alias=True, exclude_none=True))


@contextlib.asynccontextmanager
async def running_agent(**kwargs):
    agent = Agent(**kwargs)
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()


@contextlib.asynccontextmanager
async def running_token_server(*args, **kwargs):
    server = TokenServer(*args, **kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
