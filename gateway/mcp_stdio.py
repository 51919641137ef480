"""`topicbridge mcp-stdio`: MCP on stdin/stdout, for clients that launch a command.

Two ways to serve:
- proxy (default): every JSON-RPC message from stdin goes to a running gateway's `/mcp` with the
  SDK's streamable HTTP client transport, and everything the gateway sends comes back on stdout.
  The proxy stamps the headers the HTTP binding needs and stdio does not carry: on 2026-07-28
  requests `MCP-Protocol-Version` (from the request's `_meta`), `Mcp-Method`, `Mcp-Name` and the
  `Mcp-Param-*` headers of tools whose schema asks for them (learnt from the tools/list answers
  that pass through); on a 2025-11-25 session the version `initialize` negotiated. The transport keeps the session id,
  the GET stream for list changes, and turns a 2026 `notifications/cancelled` into closing the
  request's stream. The client's calls are served by whichever gateway instance the URL reaches.
- embedded (`--embedded`): a gateway in this process on the configured backend, its MCP server
  speaking stdio directly (no HTTP).

Logs go to stderr; stdout carries only MCP messages.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from dataclasses import dataclass, field

import anyio
import httpx2
from mcp.client.streamable_http import streamable_http_client
from mcp.server.stdio import stdio_server
from mcp.shared.inbound import (MCP_METHOD_HEADER, MCP_NAME_HEADER, MCP_PROTOCOL_VERSION_HEADER,
                                NAME_BEARING_METHODS, encode_header_value, find_invalid_x_mcp_header,
                                mcp_param_headers, x_mcp_header_map)
from mcp.shared.message import ClientMessageMetadata, SessionMessage
from mcp_types import (INTERNAL_ERROR, PARSE_ERROR, PROTOCOL_VERSION_META_KEY, ErrorData, JSONRPCError, JSONRPCNotification,
                       JSONRPCRequest, JSONRPCResponse)

log = logging.getLogger("topicbridge.mcp.stdio")

TASK_METHODS = ("tasks/get", "tasks/update", "tasks/cancel")


@dataclass
class _Session:
    version: str | None = None                      # negotiated by a 2025-11-25 initialize
    initializing: set = field(default_factory=set)  # ids of initialize requests in flight
    listing: set = field(default_factory=set)       # ids of tools/list requests in flight
    header_maps: dict = field(default_factory=dict)  # tool -> its x-mcp-header map, from tools/list

    def learn_tools(self, result: dict) -> None:
        """Keep each listed tool's `x-mcp-header` annotations, to mirror its arguments into headers."""
        for tool in result.get("tools") or []:
            schema = tool.get("inputSchema") if isinstance(tool, dict) else None
            if isinstance(tool.get("name"), str) and find_invalid_x_mcp_header(schema) is None:
                self.header_maps[tool["name"]] = x_mcp_header_map(schema)


def headers_for(message, session: _Session) -> dict[str, str] | None:
    """The per-message HTTP headers the HTTP binding wants and a stdio client does not send."""
    if not isinstance(message, JSONRPCRequest | JSONRPCNotification):
        return None
    params = message.params or {}
    meta = params.get("_meta")
    version = meta.get(PROTOCOL_VERSION_META_KEY) if isinstance(meta, dict) else None
    if not isinstance(version, str):
        return {MCP_PROTOCOL_VERSION_HEADER: session.version} if session.version else None
    headers = {MCP_PROTOCOL_VERSION_HEADER: version, MCP_METHOD_HEADER: message.method}
    key = "taskId" if message.method in TASK_METHODS else NAME_BEARING_METHODS.get(message.method)
    if key is not None and isinstance(params.get(key), str):
        headers[MCP_NAME_HEADER] = encode_header_value(params[key])
    if message.method == "tools/call" and isinstance(params.get("arguments"), dict):
        headers.update(mcp_param_headers(session.header_maps.get(params.get("name"), {}), params["arguments"]))
    return headers


class GatewayRefusedError(Exception):
    def __init__(self, status: int, url: str) -> None:
        self.status, self.url = status, url
        super().__init__(f"the gateway at {url} refused the token (HTTP {status})" if status in (401, 403)
                         else f"the gateway at {url} answered HTTP {status}")


async def proxy(url: str, token: str | None = None) -> int:
    """Relay until the client closes stdin (0). A gateway that cannot be reached or refuses the
    token ends the process (exit 1): every request still waiting gets a JSON-RPC error at once,
    and stderr one line saying why."""
    pending: dict = {}      # ids of requests sent to the gateway, not answered yet
    try:
        await _relay(url, token, pending)
    except Exception as e:      # anything else that breaks the SDK's transport
        _end(_reason(e, url), pending, sys.stdout.buffer)
    return 0


async def _relay(url: str, token: str | None, pending: dict) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    session = _Session()
    # Our own handle on stdout, so a failure can still answer on it synchronously (the SDK's
    # stdio_server would divert fd 1 while it serves).
    wire = open(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    transport = _EndOnFailure(httpx2.AsyncHTTPTransport(), url, pending, wire)
    async with (httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0),
                                   transport=transport) as http,
                streamable_http_client(url, http_client=http) as (remote_read, remote_write),
                stdio_server(stdout=anyio.wrap_file(io.TextIOWrapper(wire, encoding="utf-8"))) as (
                    local_read, local_write),
                anyio.create_task_group() as tg):
        async def uplink() -> None:
            async with remote_write:
                async for item in local_read:
                    if isinstance(item, Exception):
                        error = ErrorData(code=PARSE_ERROR, message=f"Parse error: {item}")
                        await local_write.send(SessionMessage(JSONRPCError(jsonrpc="2.0", id=None, error=error)))
                        continue
                    message = item.message
                    if isinstance(message, JSONRPCRequest):
                        pending[message.id] = None
                    if isinstance(message, JSONRPCRequest) and message.method == "initialize":
                        session.initializing.add(message.id)
                    elif isinstance(message, JSONRPCRequest) and message.method == "tools/list":
                        session.listing.add(message.id)
                    stamped = headers_for(message, session)
                    await remote_write.send(SessionMessage(message, metadata=ClientMessageMetadata(headers=stamped)))
            tg.cancel_scope.cancel()                 # the client closed stdin: we are done

        async def downlink() -> None:
            async for item in remote_read:
                if isinstance(item, Exception):
                    log.warning("from the gateway: %s", item)
                    continue
                message = item.message
                if isinstance(message, JSONRPCResponse | JSONRPCError):
                    pending.pop(message.id, None)
                if isinstance(message, JSONRPCResponse) and message.id in session.initializing:
                    session.initializing.discard(message.id)
                    session.version = (message.result or {}).get("protocolVersion") or session.version
                elif isinstance(message, JSONRPCResponse) and message.id in session.listing:
                    session.listing.discard(message.id)
                    session.learn_tools(message.result or {})
                await local_write.send(SessionMessage(message))

        tg.start_soon(uplink)
        tg.start_soon(downlink)


class _EndOnFailure(httpx2.AsyncBaseTransport):
    """The HTTP transport, ending the process the moment the gateway cannot be reached or refuses
    the token: unwinding the SDK's transport would wait for stdin's reader thread, that is, for
    the client's next line."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, url: str, pending: dict, wire) -> None:
        self.inner, self.url, self.pending, self.wire = inner, url, pending, wire

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            response = await self.inner.handle_async_request(request)
        except httpx2.TransportError as e:
            _end(_reason(e, self.url), self.pending, self.wire)
        if response.status_code in (401, 403):
            _end(str(GatewayRefusedError(response.status_code, self.url)), self.pending, self.wire)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _end(reason: str, pending: dict, wire) -> None:
    for request_id in pending:
        _answer_error(wire, request_id, reason)
    print(f"topicbridge mcp-stdio: {reason}", file=sys.stderr, flush=True)
    os._exit(1)


def _reason(error: BaseException, url: str) -> str:
    """One line for what ended the proxy: the first refusal or connection failure inside `error`."""
    leaves = [error]
    while leaves and isinstance(leaves[0], BaseExceptionGroup):
        leaves = list(leaves[0].exceptions) + leaves[1:]
    leaf = next((e for e in leaves if isinstance(e, GatewayRefusedError | httpx2.TransportError)), leaves[0])
    if isinstance(leaf, GatewayRefusedError):
        return str(leaf)
    if isinstance(leaf, httpx2.TransportError):
        return f"cannot reach the gateway at {url}: {leaf or type(leaf).__name__}"
    return f"the connection to the gateway at {url} failed: {type(leaf).__name__}: {leaf}"


def _answer_error(wire, request_id, reason: str) -> None:
    """Write a JSON-RPC error straight to the client, bypassing the SDK's writer task."""
    error = JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(code=INTERNAL_ERROR, message=reason))
    wire.write((error.model_dump_json(by_alias=True, exclude_none=True) + "\n").encode())


async def embedded(settings: dict) -> None:
    from gateway.app import Gateway
    gateway = Gateway(settings)
    await gateway.start()
    try:
        await gateway.mcp.serve_stdio()
    finally:
        await gateway.close()


def main(*, url: str, token: str | None, embedded_gateway: bool, config: str | None) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if embedded_gateway:
        from gateway.settings import ConfigError, load
        try:
            settings = load(config)
        except ConfigError as e:
            print(f"topicbridge: {e}", file=sys.stderr)
            return 2
        settings["lite"]["data_dir"] = embedded_data_dir(settings["lite"].get("data_dir"))
        anyio.run(embedded, settings)
        return 0
    return anyio.run(proxy, url, token)


def embedded_data_dir(configured: str | None) -> str | None:
    """An editor starts `mcp-stdio --embedded` in whatever folder it likes: unless lite.data_dir
    was set, the engine lives in the per-user data directory, not in `./.data/engine`."""
    from gateway.settings import schema
    default = schema()["properties"]["lite"]["properties"]["data_dir"]["default"]
    if configured != default:
        return configured
    import platformdirs
    return str(platformdirs.user_data_path("topicbridge") / "engine")
