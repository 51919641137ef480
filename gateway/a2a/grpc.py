"""The A2A gRPC binding: a2a-sdk's `GrpcHandler` (the `A2AService` of a2a.proto) over the
gateway's own request handler, on `gateway.host`:`gateway.grpc_port` (null: off; 0: a free port).

Same semantics as the HTTP bindings because it is the same handler: the capability is the
request's `tenant` (every card's GRPC interface names it), tasks live in the shared task
service (any instance, streaming, cancel, push configs). Callers authenticate as on the HTTP
agents surface: `authorization: Bearer <token>` metadata, checked by the same Authenticator
(UNAUTHENTICATED otherwise), and the principal reaches the handler's access checks in the call
context. Bytes that do not parse as the method's request get INVALID_ARGUMENT; a request with
missing or bad fields gets INVALID_ARGUMENT with the A2A ErrorInfo, as the SDK maps it.

The server runs as a supervised loop: if it stops on its own, the loop raises, /readyz names
it, and the supervisor opens it again on the same port.
"""

from __future__ import annotations

import contextvars
import logging

import grpc
import grpc.aio
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.grpc_handler import DefaultGrpcServerCallContextBuilder, GrpcHandler
from a2a.types import a2a_pb2_grpc
from google.protobuf.message import DecodeError

from gateway.http.auth import AuthError, Authenticator, open_surfaces
from gateway.supervisor import Supervisor

log = logging.getLogger("topicbridge.a2a.grpc")

PRINCIPAL_STATE = "topicbridge.principal"       # the key gateway/a2a/access.py reads
_PRINCIPAL: contextvars.ContextVar = contextvars.ContextVar("topicbridge_grpc_principal", default=None)
STOP_GRACE = 2.0


class GrpcSurface:
    """A gateway part (start/close) serving A2A over gRPC; `port` is the bound port once started."""

    def __init__(self, handler, *, host: str, port: int, authenticator: Authenticator,
                 supervisor: Supervisor) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.authenticator = authenticator
        self.supervisor = supervisor
        self._server: grpc.aio.Server | None = None
        self._closing = False

    @classmethod
    def from_settings(cls, handler, settings: dict, supervisor: Supervisor) -> "GrpcSurface | None":
        options = settings.get("gateway") or {}
        if options.get("grpc_port") is None:
            return None
        authenticator = Authenticator() if "agents" in open_surfaces(settings) else Authenticator.from_settings(settings)
        return cls(handler, host=options.get("host", "127.0.0.1"), port=options["grpc_port"],
                   authenticator=authenticator, supervisor=supervisor)

    async def start(self) -> None:
        await self._open()      # a port that cannot be bound fails the gateway's start, loudly
        self.supervisor.spawn("a2a-grpc", self._serve)

    async def _open(self) -> None:
        server = grpc.aio.server(interceptors=[_Admission(self.authenticator)])
        a2a_pb2_grpc.add_A2AServiceServicer_to_server(GrpcHandler(self.handler, _ContextBuilder()), server)
        bound = server.add_insecure_port(f"{self.host}:{self.port}")
        if not bound:
            raise OSError(f"gateway.grpc_port: cannot listen on {self.host}:{self.port}")
        await server.start()
        self.port, self._server = bound, server
        log.info("A2A gRPC binding on %s:%d", self.host, bound)

    async def _serve(self) -> None:
        if self._server is None:
            await self._open()
        await self._server.wait_for_termination()
        if not self._closing:
            self._server = None
            raise RuntimeError(f"the A2A gRPC server on port {self.port} stopped")

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            await self._server.stop(STOP_GRACE)


class _ContextBuilder(DefaultGrpcServerCallContextBuilder):
    def build(self, context: grpc.aio.ServicerContext) -> ServerCallContext:
        built = super().build(context)
        built.state[PRINCIPAL_STATE] = _PRINCIPAL.get()
        return built


class _Malformed:
    """What the request deserializer gives for bytes that are not the method's request."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _lenient(deserialize):
    def parse(raw: bytes):
        try:
            return deserialize(raw)
        except DecodeError as e:
            return _Malformed(e)
    return parse


class _Admission(grpc.aio.ServerInterceptor):
    """Every call passes here first: bytes that do not parse get INVALID_ARGUMENT (not grpcio's
    UNKNOWN with a traceback in the log); a bearer token the Authenticator refuses gets
    UNAUTHENTICATED; the principal goes into a context variable of the call's task, where the
    context builder picks it up."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return None
        options = {"request_deserializer": _lenient(handler.request_deserializer),
                   "response_serializer": handler.response_serializer}
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary), **options)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(self._stream(handler.unary_stream), **options)
        return handler      # A2AService has no client-streaming methods

    def _unary(self, inner):
        async def call(request, context):
            await self._admit(request, context)
            return await inner(request, context)
        return call

    def _stream(self, inner):
        async def call(request, context):
            await self._admit(request, context)
            async for item in inner(request, context):
                yield item
        return call

    async def _admit(self, request, context: grpc.aio.ServicerContext) -> None:
        authorization = next((v for k, v in context.invocation_metadata() or () if k.lower() == "authorization"), None)
        if isinstance(authorization, bytes):
            authorization = authorization.decode("latin-1")
        try:
            _PRINCIPAL.set(await self.authenticator.authenticate(authorization))
        except AuthError as e:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, e.description or "a bearer token is required")
        if isinstance(request, _Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request does not parse: {request.error}")
