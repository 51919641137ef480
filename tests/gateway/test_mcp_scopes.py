"""Per-capability JWT scopes on /mcp (gateway/mcp/auth.py): a token whose scopes name some
capabilities lists and finds only those tools (plus the gateway's own), and its tools/call of
another capability is refused with the 2025-11-25 authorization spec's scope challenge: 403 and
`WWW-Authenticate: Bearer error="insufficient_scope", scope="…"`. Real keys, a real JWKS endpoint,
the official MCP client, both eras."""

from __future__ import annotations

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.gateway.mcp_support import echo, gateway_serving, settings
from tests.gateway.test_oauth import AUDIENCE, ISSUER, issuer  # noqa: F401 - the JWKS fixture

ERAS = ["auto", "legacy"]
MODERN = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
          "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call"}


@pytest.fixture
async def gw(issuer):  # noqa: F811
    oauth = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": issuer.url, "jwks_min_refresh_seconds": 0}
    async with gateway_serving(settings(oauth=oauth), echo=echo, shout=echo, secret=echo) as running:
        yield running


def client(gw, token: str, mode: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
    return Client(streamable_http_client(gw.url, http_client=http), mode=mode)


def modern_call(name: str) -> dict:
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": name, "arguments": {"message": "hi"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                  "io.modelcontextprotocol/clientCapabilities": {}}}}


@pytest.mark.parametrize("mode", ERAS)
async def test_a_scoped_token_lists_and_finds_only_its_capabilities(gw, issuer, mode):  # noqa: F811
    async with client(gw, issuer.token(scope="topicbridge:agent:echo topicbridge:agent:shout"), mode) as mcp:
        names = {t.name for t in (await mcp.list_tools()).tools}
        found = await mcp.call_tool("find_capabilities", {"query": "test agent"})
    assert names == {"echo", "shout", "find_capabilities", "get_task_result"}
    assert {c["name"] for c in found.structured_content["capabilities"]} <= {"echo", "shout"}


@pytest.mark.parametrize("mode", ERAS)
async def test_a_scoped_token_calls_the_capability_its_scope_grants(gw, issuer, mode):  # noqa: F811
    async with client(gw, issuer.token(scope="topicbridge:agent:echo"), mode) as mcp:
        result = await mcp.call_tool("echo", {"message": "hi"})
    assert not result.is_error and result.content[0].text == "echo: hi"


@pytest.mark.parametrize("mode", ERAS)
async def test_the_agents_scope_sees_every_capability(gw, issuer, mode):  # noqa: F811
    async with client(gw, issuer.token(scope="topicbridge:agents"), mode) as mcp:
        names = {t.name for t in (await mcp.list_tools()).tools}
    assert {"echo", "shout", "secret"} <= names


async def test_calling_a_capability_outside_the_scopes_is_a_403_scope_challenge(gw, issuer):  # noqa: F811
    token = issuer.token(scope="topicbridge:agent:echo")
    refused = await gw.http.post("/mcp", json=modern_call("secret"),
                                 headers=MODERN | {"Mcp-Name": "secret", "Authorization": f"Bearer {token}"})
    assert refused.status_code == 403, refused.text
    challenge = refused.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="insufficient_scope"' in challenge
    assert 'scope="topicbridge:agent:secret"' in challenge and "oauth-protected-resource/mcp" in challenge
    assert refused.json()["error"]["code"] == -32600 and "secret" in refused.json()["error"]["message"]
    allowed = await gw.http.post("/mcp", json=modern_call("echo"),
                                 headers=MODERN | {"Mcp-Name": "echo", "Authorization": f"Bearer {token}"})
    assert allowed.status_code == 200 and "echo: hi" in allowed.text, allowed.text


async def test_the_sdk_client_sees_the_scope_refusal_as_an_error_in_a_session(gw, issuer):  # noqa: F811
    async with client(gw, issuer.token(scope="topicbridge:agent:echo"), "legacy") as mcp:
        with pytest.raises(MCPError) as refused:
            await mcp.call_tool("secret", {"message": "hi"})
        assert refused.value.error.code == -32600 and "'secret'" in refused.value.error.message
        assert (await mcp.call_tool("echo", {"message": "still fine"})).content[0].text == "echo: still fine"
