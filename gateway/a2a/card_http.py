"""Agent card responses: the strict 1.0 card, caching headers and conditional GET (A2A §8.6.1).

A card is served in one of two shapes:

    1.0 (default)            the AgentCard's ProtoJSON, nothing else: 0.3 endpoints are listed
                             only as `supportedInterfaces` entries with protocolVersion "0.3",
                             so the card validates against the 1.0 schema (no additional
                             properties) and a2a-sdk's 0.3-compat client still finds them
    0.3 (`A2A-Version: 0.x`) the same card plus the 0.3 top-level fields (`url`,
                             `preferredTransport`, `protocolVersion`, `additionalInterfaces`)
                             that a 0.3-only client reads

Every response carries a strong `ETag` (a hash of the body it belongs to, so the two shapes
differ), `Cache-Control: public, max-age=<gateway.card_max_age_seconds>` and `Vary:
A2A-Version`; a GET whose `If-None-Match` names the current ETag gets 304 without a body.
"""

from __future__ import annotations

import hashlib
import json

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.types import a2a_pb2
from google.protobuf import json_format
from starlette.requests import Request
from starlette.responses import Response

_VERSION_HEADER = "a2a-version"


def wants_0_3(request: Request) -> bool:
    """A client that names a 0.x protocol version asks for the 0.3 card shape."""
    return request.headers.get(_VERSION_HEADER, "").strip().startswith("0.")


def card_document(card: a2a_pb2.AgentCard, *, compat: bool) -> dict:
    return agent_card_to_dict(card) if compat else json_format.MessageToDict(card)


def card_response(request: Request, card: a2a_pb2.AgentCard, max_age: int) -> Response:
    doc = card_document(card, compat=wants_0_3(request))
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age}", "Vary": _VERSION_HEADER}
    if _matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def _matches(header: str, etag: str) -> bool:
    """RFC 9110 weak comparison over a list of entity tags, or `*`."""
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def with_grpc(card: a2a_pb2.AgentCard, request: Request, port: int | None, tenant: str = "") -> a2a_pb2.AgentCard:
    """`card` with the gRPC binding (grpc.py) among its 1.0 interfaces when it runs: host:port of
    the host the card was asked from, `tenant` naming the capability."""
    if port is not None:
        card.supported_interfaces.append(a2a_pb2.AgentInterface(
            url=f"{request.url.hostname}:{port}", protocol_binding="GRPC", protocol_version="1.0", tenant=tenant))
    return card
