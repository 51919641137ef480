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

import logging
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
from mcp_types import (PARSE_ERROR, PROTOCOL_VERSION_META_KEY, ErrorData, JSONRPCError, JSONRPCNotification,
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


async def proxy(url: str, token: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    session = _Session()
    async with (httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0)) as http,
                streamable_http_client(url, http_client=http) as (remote_read, remote_write),
                stdio_server() as (local_read, local_write),
                anyio.create_task_group() as tg):
        async def uplink() -> None:
            async with remote_write:
                async for item in local_read:
                    if isinstance(item, Exception):
                        error = ErrorData(code=PARSE_ERROR, message=f"Parse error: {item}")
                        await local_write.send(SessionMessage(JSONRPCError(jsonrpc="2.0", id=None, error=error)))
                        continue
                    message = item.message
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
                if isinstance(message, JSONRPCResponse) and message.id in session.initializing:
                    session.initializing.discard(message.id)
                    session.version = (message.result or {}).get("protocolVersion") or session.version
                elif isinstance(message, JSONRPCResponse) and message.id in session.listing:
                    session.listing.discard(message.id)
                    session.learn_tools(message.result or {})
                await local_write.send(SessionMessage(message))

        tg.start_soon(uplink)
        tg.start_soon(downlink)


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
        anyio.run(embedded, settings)
    else:
        anyio.run(proxy, url, token)
    return 0
