"""One blocking JSON-RPC `SendMessage` to an A2A 1.0 agent, without the a2a-sdk client.

The hot call of a bridge: a caller blocks, so the bridge sends one SendMessage and relays the
Task (or Message) that comes back. Through the a2a-sdk client it cost ~40% of the gateway's CPU
per bridged task (bench.gateway_e2e, py-spy): interceptors, telemetry wrappers, a request built
and an answer parsed by google.protobuf.json_format. Here the request is written with the
gateway's fast ProtoJSON converters (gateway/tasks/protojson.py); the answer's task is read the
same way, falling back to json_format for anything the converters do not know (metadata, a 0.3
agent's "kind", file parts...). Errors take the SDK client's shape (`A2AClientError` from
the httpx error), so the bridge's retry and failure rules hold for both paths.

The POST itself goes out on the bridge's own HTTP/1.1 client (gateway/http/http1.py: the same
guards as the httpx client, a fraction of its CPU); `gateway.bridge_lean_call = "httpx"` posts on
the guarded httpx client instead, and `false` sends every call through the a2a-sdk client (the
benchmark's `bridged_httpx` and `bridged_sdk` targets measure them against the default in one run).
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Awaitable, Callable

import httpx
from a2a.client.errors import A2AClientError, A2AClientTimeoutError
from a2a.types import a2a_pb2
from a2a.utils.constants import TransportProtocol
from google.protobuf import json_format

from gateway.tasks import protojson

HEADERS = {"Content-Type": "application/json", "Accept": "application/json", "A2A-Version": "1.0"}
Post = Callable[[bytes], Awaitable[bytes]]      # the request's body -> the answer's body (httpx errors)


def lean_url(card: a2a_pb2.AgentCard) -> str | None:
    """The JSON-RPC URL a lean call can use: the card's preferred bridgeable interface when it is
    JSON-RPC at protocol 1.x (a 0.3 agent, or HTTP+JSON, goes through the SDK client)."""
    for interface in card.supported_interfaces:
        if interface.protocol_binding in (TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON):
            lean = interface.protocol_binding == TransportProtocol.JSONRPC and \
                interface.protocol_version.split(".")[0] in ("", "1")
            return interface.url if lean else None
    return None


_IDS = itertools.count(1)
_ID_PREFIX = os.urandom(6).hex() + "-"     # a request id: this process's prefix, then a count (no getrandom per call)


def request_body(message: a2a_pb2.Message) -> bytes:
    plain = protojson.message_to_dict(message)
    params = {"message": plain if plain is not None else json_format.MessageToDict(message)}
    return json.dumps({"jsonrpc": "2.0", "id": f"{_ID_PREFIX}{next(_IDS)}", "method": "SendMessage", "params": params},
                      separators=(",", ":")).encode()


async def send_message(post: Post, message: a2a_pb2.Message) -> a2a_pb2.StreamResponse:
    """The agent's answer to one blocking SendMessage, as the one event the SDK client would yield."""
    try:
        doc = json.loads(_text(await post(request_body(message))))
    except httpx.TimeoutException as e:
        raise A2AClientTimeoutError("Client Request timed out") from e
    except httpx.HTTPStatusError as e:
        raise A2AClientError(f"HTTP Error {e.response.status_code}: {e}") from e
    except httpx.RequestError as e:
        raise A2AClientError(f"Network communication error: {e}") from e
    except (ValueError, RecursionError) as e:       # not JSON (a JSONDecodeError is a ValueError)
        raise A2AClientError(f"JSON Decode Error: {e}") from e
    return answer(doc)


def _text(body: bytes) -> str | bytes:
    """The answer as json.loads would decode it: an object's opening brace then a byte that is not
    NUL is UTF-8 by its detect_encoding (no BOM, not UTF-16/32), decoded here without that walk;
    anything else goes to json.loads as bytes."""
    return body.decode("utf-8", "surrogatepass") if body[:1] == b"{" and body[1:2] not in (b"", b"\0") else body


def httpx_post(http: httpx.AsyncClient, url: str) -> Post:
    """A Post on an httpx client (its hooks add credentials and traceparent)."""
    async def post(body: bytes) -> bytes:
        response = await http.post(url, content=body, headers=HEADERS)
        response.raise_for_status()
        return response.content
    return post


def answer(doc: object) -> a2a_pb2.StreamResponse:
    """The StreamResponse of a JSON-RPC SendMessage response document; A2AClientError for an error
    answer or a document that is not one."""
    if not isinstance(doc, dict):
        raise A2AClientError(f"Invalid JSON-RPC response: expected an object, got {type(doc).__name__}")
    error = doc.get("error")
    if error:
        if not isinstance(error, dict):
            raise A2AClientError(f"Invalid JSON-RPC response: error is not an object: {error!r}")
        raise A2AClientError(f"JSON-RPC error {error.get('code')}: {error.get('message', '')}")
    result = doc.get("result")
    if not isinstance(result, dict):
        raise A2AClientError("Invalid JSON-RPC response: it has no result object")
    if isinstance(result.get("task"), dict):
        doc = result["task"]
        if "kind" in doc:       # the a2a-sdk's 0.3 compatibility writes it; json_format would ignore it
            doc = {k: v for k, v in doc.items() if k != "kind"}
        event = protojson.event_from_dict({"task": doc})
        return event if event is not None else a2a_pb2.StreamResponse(task=_parse(doc, a2a_pb2.Task()))
    if isinstance(result.get("message"), dict):
        message = protojson.message_from_dict(result["message"])
        return a2a_pb2.StreamResponse(message=message if message is not None else _parse(result["message"],
                                                                                        a2a_pb2.Message()))
    raise A2AClientError("Response has neither task nor message")


def _parse(doc: dict, proto):
    try:
        return json_format.ParseDict(doc, proto, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as e:
        raise A2AClientError(f"Invalid A2A answer: {e}") from e
