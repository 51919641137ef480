"""Malformed MCP traffic gets the spec's errors, bad origins and tokens are refused, and the gateway
keeps serving."""

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.gateway.mcp_support import (TasksExtension, echo, gateway_serving, get_task, settings,
                                       until_released)

MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
ACCEPT = "application/json, text/event-stream"


def modern_headers(method: str, **extra) -> dict:
    return {"Accept": ACCEPT, "Content-Type": "application/json", "MCP-Protocol-Version": MODERN,
            "Mcp-Method": method, **extra}


def call(name, arguments=None, **params) -> dict:
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": name, "arguments": arguments or {}, "_meta": ENVELOPE, **params}}


@pytest.fixture
async def gw():
    async with gateway_serving(settings(), echo=echo) as running:
        yield running


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def still_serving(gw) -> None:
    async with Client(gw.url) as client:
        assert (await client.call_tool("echo", {"message": "alive"})).content[0].text == "echo: alive"


@pytest.mark.parametrize("body, headers, status, code", [
    pytest.param(b'{"jsonrpc": "2.0", "id": 1, "method"', modern_headers("tools/list"), 400, types.PARSE_ERROR,
                 id="broken-json"),
    pytest.param(b'[{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]', modern_headers("tools/list"), 400,
                 types.INVALID_REQUEST, id="batch"),
    pytest.param(b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}', modern_headers("tools/list"), 400,
                 types.INVALID_REQUEST, id="not-json-rpc-2"),
    pytest.param(b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}', modern_headers("tools/list"),
                 400, types.INVALID_PARAMS, id="no-envelope"),
    pytest.param(b'{"jsonrpc": "2.0", "id": 1, "method": "no/such", "params": {"_meta": %s}}'
                 % str(ENVELOPE).replace("'", '"').encode(), modern_headers("no/such"), 404, types.METHOD_NOT_FOUND,
                 id="unknown-method"),
    pytest.param(b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": %s}}'
                 % str(ENVELOPE).replace("'", '"').encode(), modern_headers("tools/call"), 400, types.HEADER_MISMATCH,
                 id="method-header-mismatch"),
    pytest.param(b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": %s}}'
                 % str(ENVELOPE).replace("'", '"').encode(),
                 {**modern_headers("tools/list"), "MCP-Protocol-Version": "1999-01-01"}, 400, None,
                 id="unsupported-version-header"),
])
async def test_malformed_requests_get_the_specs_errors(gw, http, body, headers, status, code):
    response = await http.post(gw.url, content=body, headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert code is None or error["code"] == code
    await still_serving(gw)


async def test_tool_calls_with_bad_params_or_names(gw, http):
    no_name = call("echo")
    del no_name["params"]["name"]
    response = await http.post(gw.url, json=no_name, headers=modern_headers("tools/call", **{"Mcp-Name": "echo"}))
    assert response.status_code == 400 and response.json()["error"]["code"] == types.INVALID_PARAMS
    response = await http.post(gw.url, json=call("echo", {"message": "x"}), headers=modern_headers("tools/call"))
    assert response.json()["error"]["code"] == types.HEADER_MISMATCH            # Mcp-Name missing
    response = await http.post(gw.url, json=call("ghost", {"message": "x"}),
                               headers=modern_headers("tools/call", **{"Mcp-Name": "ghost"}))
    assert response.json()["error"] == {"code": types.INVALID_PARAMS, "message": "Unknown tool: ghost"}
    response = await http.post(gw.url, json=call("echo", {"message": 42}),
                               headers=modern_headers("tools/call", **{"Mcp-Name": "echo"}))
    assert response.status_code == 200 and response.json()["result"]["isError"] is True
    await still_serving(gw)


async def test_wrong_http_shapes(gw, http):
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": ENVELOPE}}
    assert (await http.post(gw.url, json=listing, headers={**modern_headers("tools/list"), "Accept": "text/html"})
            ).status_code == 406
    assert (await http.post(gw.url, content=b"{}", headers={**modern_headers("tools/list"),
                                                             "Content-Type": "text/plain"})).status_code == 400
    assert (await http.get(gw.url, headers={"MCP-Protocol-Version": MODERN, "Accept": ACCEPT})).status_code == 405
    assert (await http.post(gw.url, json=listing, headers={**modern_headers("tools/list"),
                                                           "Mcp-Session-Id": "nope", "MCP-Protocol-Version":
                                                           "2025-11-25"})).status_code == 404
    big = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"x": "' + b"a" * (5 << 20) + b'"}}'
    assert (await http.post(gw.url, content=big, headers=modern_headers("tools/list"))).status_code == 413
    await still_serving(gw)


async def test_a_foreign_origin_is_forbidden_and_a_rebound_host_misdirected(gw, http):
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": ENVELOPE}}
    response = await http.post(gw.url, json=listing, headers={**modern_headers("tools/list"),
                                                              "Origin": "http://evil.example"})
    assert response.status_code == 403
    assert response.json() == {"jsonrpc": "2.0", "id": None, "error": {
        "code": types.INVALID_REQUEST, "message": "Forbidden: Origin not allowed"}}
    response = await http.post(gw.url, json=listing, headers={**modern_headers("tools/list"),
                                                              "Host": f"evil.example:{gw.port}"})
    assert response.status_code == 421
    local = await http.post(gw.url, json=listing, headers={**modern_headers("tools/list"),
                                                           "Origin": f"http://localhost:{gw.port}"})
    assert local.status_code == 200
    await still_serving(gw)


@pytest.fixture
async def guarded():
    config = settings(mcp_bearer_tokens=["token-of-alice-0123456789", "token-of-bob-0123456789"],
                      mcp_authorization_servers=["https://auth.example"], mcp_task_wait_seconds=0.1)
    async with gateway_serving(config, slow=until_released) as running:
        yield running


async def test_without_a_valid_token_the_answer_is_401_naming_the_resource_metadata(guarded, http):
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": ENVELOPE}}
    missing = await http.post(guarded.url, json=listing, headers=modern_headers("tools/list"))
    assert missing.status_code == 401
    challenge = missing.headers["WWW-Authenticate"]
    metadata_url = f"{guarded.base}/.well-known/oauth-protected-resource/mcp"
    assert challenge == f'Bearer resource_metadata="{metadata_url}"'
    bad = await http.post(guarded.url, json=listing,
                          headers={**modern_headers("tools/list"), "Authorization": "Bearer guess"})
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    metadata = (await http.get(metadata_url)).json()
    assert metadata == {"resource": guarded.url, "authorization_servers": ["https://auth.example"],
                        "bearer_methods_supported": ["header"], "resource_name": "topicbridge gateway (MCP)"}
    good = await http.post(guarded.url, json=listing, headers={**modern_headers("tools/list"),
                                                               "Authorization": "Bearer token-of-bob-0123456789"})
    assert good.status_code == 200 and "slow" in {t["name"] for t in good.json()["result"]["tools"]}


async def test_a_task_belongs_to_the_token_that_created_it(guarded):
    def client(token):
        return Client(streamable_http_client(guarded.url, http_client=httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"})), extensions=[TasksExtension()])

    async with client("token-of-alice-0123456789") as alice, client("token-of-bob-0123456789") as bob:
        created = await alice.session.call_tool("slow", {"message": "mine"}, allow_claimed=True)
        assert (await get_task(alice.session, created.task_id))["status"] == "working"
        with pytest.raises(MCPError) as err:
            await get_task(bob.session, created.task_id)
        assert err.value.code == types.INVALID_PARAMS


async def test_a_2025_session_is_bound_to_its_token(guarded):
    http_alice = httpx2.AsyncClient(headers={"Authorization": "Bearer token-of-alice-0123456789"})
    async with streamable_http_client(guarded.url, http_client=http_alice) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        assert "slow" in {t.name for t in (await session.list_tools()).tools}
    async with httpx.AsyncClient(timeout=10) as http:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        headers = {"Accept": ACCEPT, "Authorization": "Bearer token-of-alice-0123456789"}
        opened = await http.post(guarded.url, json=init, headers=headers)
        sid = opened.headers["mcp-session-id"]
        as_bob = await http.post(guarded.url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers={
            "Accept": ACCEPT, "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25",
            "Authorization": "Bearer token-of-bob-0123456789"})
    assert as_bob.status_code == 404
