"""Bearer tokens on the admin API and agent endpoints, public cards, body limits, and the refusal
to listen on a non-loopback address without authentication."""

from __future__ import annotations

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.client.card_resolver import A2ACardResolver
from a2a.types import a2a_pb2

from gateway.http.guard import is_loopback
from gateway.settings import load
from tests.spawned import clean_env, free_port, spawn_serve

from .a2a_servers import collect, send_request, state_of
from .serving import running_gateway

TOKEN = "s3cret-token-0123456789"
OTHER = "another-token-9876543210"
LIMIT = 64 * 1024
JSONRPC_SEND = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                "params": {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}}


def serving(tmp_path, **gateway_settings):
    return running_gateway({"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005},
                            "gateway": {"demo": True, "max_body_bytes": LIMIT, **gateway_settings}})


@pytest.fixture
async def gw(tmp_path):
    async with serving(tmp_path, bearer_tokens=[TOKEN, OTHER]) as gw:
        yield gw


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("headers", [{}, bearer("wrong-token-0123456789"), {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"}])
@pytest.mark.parametrize("method, path", [("GET", "/admin/agents"), ("GET", "/admin/openapi.json"),
                                          ("POST", "/agents/echo/"), ("GET", "/agents/echo/tasks"),
                                          ("POST", "/agents/")])
async def test_admin_and_agent_routes_refuse_a_missing_or_wrong_token_with_401(gw, headers, method, path):
    response = await gw.http.request(method, path, headers=headers, json=JSONRPC_SEND if method == "POST" else None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("token", [TOKEN, OTHER])
async def test_any_configured_token_is_accepted(gw, token):
    listing = await gw.http.get("/admin/agents", headers=bearer(token))
    assert listing.status_code == 200 and {"echo", "word-stats"} <= {a["name"] for a in listing.json()["agents"]}
    sent = await gw.http.post("/agents/echo/", json=JSONRPC_SEND, headers=bearer(token) | {"A2A-Version": "1.0"})
    assert sent.status_code == 200 and "error" not in sent.json(), sent.text


@pytest.mark.parametrize("path", ["/.well-known/agent-card.json", "/agents/echo/.well-known/agent-card.json",
                                  "/healthz", "/readyz"])
async def test_cards_and_health_stay_public(gw, path):
    assert (await gw.http.get(path)).status_code == 200


async def test_mcp_needs_a_gateway_token_when_only_bearer_tokens_are_set(gw):
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
    refused = await gw.http.post("/mcp", json=call, headers=headers)
    assert refused.status_code == 401 and "resource_metadata=" in refused.headers["www-authenticate"]
    assert (await gw.http.post("/mcp", json=call, headers=headers | bearer(TOKEN))).status_code != 401


async def test_the_a2a_sdk_client_calls_through_the_token(gw):
    async with httpx.AsyncClient(headers=bearer(TOKEN), timeout=10) as http:
        card = await A2ACardResolver(http, f"{gw.base}/agents/echo/").get_agent_card()
        client = await create_client(card, ClientConfig(streaming=False, httpx_client=http))
        events = await collect(client.send_message(send_request("with a token")))
        await client.close()
    assert state_of(events[-1]) == a2a_pb2.TASK_STATE_COMPLETED
    assert events[-1].task.artifacts[0].parts[0].text == "with a token"


async def test_without_tokens_configured_the_routes_are_open(tmp_path):
    async with serving(tmp_path) as gw:
        assert (await gw.http.get("/admin/agents")).status_code == 200


async def test_an_oversize_jsonrpc_body_is_413_with_a_jsonrpc_error(gw):
    response = await gw.http.post("/agents/echo/", content=b"x" * (LIMIT + 1), headers=bearer(TOKEN))
    assert response.status_code == 413
    assert response.json()["jsonrpc"] == "2.0" and response.json()["error"]["code"] < 0


async def test_an_oversize_streamed_rest_body_is_413_and_the_gateway_keeps_serving(gw):
    async def chunks():                 # no Content-Length: the limit is counted as it arrives
        for _ in range(4):
            yield b" " * (LIMIT // 2)

    response = await gw.http.post("/agents/echo/message:send", content=chunks(),
                                  headers=bearer(TOKEN) | {"Content-Type": "application/json", "A2A-Version": "1.0"})
    assert response.status_code == 413 and response.json()["error"]["code"] == 413
    sent = await gw.http.post("/agents/echo/", json=JSONRPC_SEND, headers=bearer(TOKEN) | {"A2A-Version": "1.0"})
    assert sent.status_code == 200


def test_serve_refuses_a_non_loopback_address_without_a_token(tmp_path):
    served = spawn_serve("--host", "0.0.0.0", "--port", str(free_port()), "--data-dir", str(tmp_path / "engine"))
    assert served.exit_code() == 2
    assert "refusing to listen on '0.0.0.0' without authentication" in served.text


def test_serve_listens_on_a_non_loopback_address_with_a_token(tmp_path):
    port = free_port()
    served = spawn_serve("--host", "0.0.0.0", "--port", str(port), "--data-dir", str(tmp_path / "engine"),
                    env=clean_env(gateway__bearer_tokens=TOKEN))
    try:
        served.wait_for("Uvicorn running on")
        assert httpx.get(f"http://127.0.0.1:{port}/admin/agents", timeout=10).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/admin/agents", headers=bearer(TOKEN), timeout=10).is_success
    finally:
        served.stop()


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True),
                                            ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                            ("::", False), ("10.1.2.3", False), ("gateway.example.com", False)])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_tokens_come_from_a_comma_separated_environment_variable():
    settings = load(env={"TOPICBRIDGE_GATEWAY__BEARER_TOKENS": f"{TOKEN}, {OTHER}"})
    assert settings["gateway"]["bearer_tokens"] == [TOKEN, OTHER]
    assert settings["gateway"]["max_body_bytes"] == 4 * 1024 * 1024 and settings["gateway"]["demo"] is False
