"""Who may call `topicbridge engine`: TLS (a server certificate; a client CA makes it mutual TLS)
and a shared bearer token that every call carries in its `authorization` metadata.

An engine on a loopback address may run without either; one reachable from other hosts must have
a token (`check_exposure`), since whoever reaches it could otherwise read and ack every message.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

import grpc

TOKEN_KEY = "authorization"


@dataclass(frozen=True)
class Access:
    cert: bytes | None = None        # PEM server certificate chain; set with `key` for TLS
    key: bytes | None = None
    client_ca: bytes | None = None   # PEM: clients must present a certificate it signed
    token: str | None = None         # every call carries "authorization: Bearer <token>"

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("TLS needs both a certificate and its key")
        if self.client_ca is not None and self.cert is None:
            raise ValueError("a client CA (mutual TLS) needs a server certificate and key")
        if self.token is not None and not (self.token and all(33 <= ord(c) < 127 for c in self.token)):
            raise ValueError("the token must be printable ASCII, without spaces, and not empty")

    def credentials(self) -> grpc.ServerCredentials | None:
        if self.cert is None:
            return None
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.client_ca,
                                           require_client_auth=self.client_ca is not None)

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        return [TokenCheck(self.token)] if self.token is not None else []


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False   # a name: it may resolve to anything


def check_exposure(host: str, access: Access) -> None:
    """Refuse to serve a host other machines can reach without a token."""
    if access.token is None and not is_loopback(host):
        raise ValueError(f"refusing to serve on {host!r} without a token: anyone who reaches it could read "
                         "and ack every message (give --token-file, or bind a loopback address)")


def bearer(token: str) -> tuple[tuple[str, str]]:
    """The call metadata a client sends."""
    return ((TOKEN_KEY, f"Bearer {token}"),)


class TokenCheck(grpc.aio.ServerInterceptor):
    """Answers UNAUTHENTICATED to a call without the token, before its handler runs."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        sent = next((value for key, value in details.invocation_metadata or () if key == TOKEN_KEY), "")
        sent = sent.encode() if isinstance(sent, str) else sent
        if handler is None or hmac.compare_digest(sent, self._expected):
            return handler
        return _refusal(handler)


async def _refuse(request, context: grpc.aio.ServicerContext):
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "this engine needs a valid bearer token")


def _refusal(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    make = (grpc.unary_unary_rpc_method_handler if handler.unary_unary else
            grpc.stream_stream_rpc_method_handler if handler.stream_stream else
            grpc.unary_stream_rpc_method_handler if handler.unary_stream else
            grpc.stream_unary_rpc_method_handler)
    return make(_refuse, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
