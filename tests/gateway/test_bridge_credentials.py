"""Agents that require credentials: registered with the name of the gateway's environment variable
holding the secret, which goes with the card fetch and every call (lean and a2a-sdk paths) and is
never stored or returned. Real gateway (uvicorn, embedded engine), real a2a-sdk agents that
answer 401 to any request without the secret."""

import asyncio
import json

import pytest

from .remote_agents import running_agent
from .serving import running_gateway

TOKEN = "credentials-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
A2A = {**ADMIN, "A2A-Version": "1.0"}
SETTINGS = {"backend": "lite", "lite": {"data_dir": None, "tick": 0.005}, "gateway": {"bearer_tokens": [TOKEN]}}
SECRET = "agent-secret-7f3a"


def send(text: str, method: str = "SendMessage") -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": method,
            "params": {"message": {"messageId": f"m-{text}", "role": "ROLE_USER", "parts": [{"text": text}]}}}


async def stream_states(gw, name: str, text: str) -> list[str]:
    states = []
    async with asyncio.timeout(10):
        async with gw.http.stream("POST", f"/agents/{name}/", json=send(text, "SendStreamingMessage"),
                                  headers={**A2A, "Accept": "text/event-stream"}) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    result = json.loads(line[5:])["result"]
                    states.append(result.get("statusUpdate", {}).get("status", {}).get("state"))
    return states


@pytest.fixture
async def gw():
    async with running_gateway(SETTINGS) as gw:
        yield gw


async def test_an_agent_requiring_a_bearer_token_gets_it_from_the_variable_named_at_registration(gw, monkeypatch):
    monkeypatch.setenv("TB_TEST_AGENT_TOKEN", SECRET)
    async with running_agent(require=("authorization", f"Bearer {SECRET}")) as agent:
        created = await gw.http.post("/admin/agents", headers=ADMIN, json={
            "card_url": agent.base_url, "name": "guarded",
            "credentials": {"type": "bearer", "token_env": "TB_TEST_AGENT_TOKEN"}})
        assert created.status_code == 201, created.text
        blocking = (await gw.http.post("/agents/guarded/", json=send("the memo"), headers=A2A)).json()["result"]
        assert blocking["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
        assert (await stream_states(gw, "guarded", "the memo"))[-1] == "TASK_STATE_COMPLETED"
        refreshed = await gw.http.post("/admin/agents/guarded/refresh", headers=ADMIN)
        assert refreshed.status_code == 200, refreshed.text
        assert agent.executor.methods == ["SendMessage", "SendStreamingMessage"]
        assert agent.guard.refused == 0
        listed = await gw.http.get("/admin/agents", headers=ADMIN)
        shown = await gw.http.get("/admin/agents/guarded", headers=ADMIN)
    for answer in (created, listed, shown, refreshed):
        assert SECRET not in answer.text


async def test_an_api_key_goes_in_the_header_the_cards_security_scheme_names(gw, monkeypatch):
    monkeypatch.setenv("TB_TEST_AGENT_KEY", SECRET)
    async with running_agent(require=("x-agent-key", SECRET), open_card=True) as agent:
        created = await gw.http.post("/admin/agents", headers=ADMIN, json={
            "card_url": agent.base_url, "name": "keyed",
            "credentials": {"type": "api_key", "token_env": "TB_TEST_AGENT_KEY"}})
        assert created.status_code == 201, created.text
        answer = (await gw.http.post("/agents/keyed/", json=send("the memo"), headers=A2A)).json()["result"]
    assert answer["task"]["status"]["state"] == "TASK_STATE_COMPLETED"


async def test_without_credentials_registration_fails_with_the_agents_401(gw):
    async with running_agent(require=("authorization", f"Bearer {SECRET}")) as agent:
        refused = await gw.http.post("/admin/agents", headers=ADMIN, json={"card_url": agent.base_url})
    assert refused.status_code >= 400
    assert "HTTP 401" in refused.json()["error"]["message"]


async def test_a_variable_unset_at_call_time_fails_the_task_with_a_reason_naming_it(gw, monkeypatch):
    monkeypatch.setenv("TB_TEST_AGENT_TOKEN", SECRET)
    async with running_agent(require=("authorization", f"Bearer {SECRET}")) as agent:
        created = await gw.http.post("/admin/agents", headers=ADMIN, json={
            "card_url": agent.base_url, "name": "guarded",
            "credentials": {"type": "bearer", "token_env": "TB_TEST_AGENT_TOKEN"}})
        assert created.status_code == 201, created.text
        monkeypatch.delenv("TB_TEST_AGENT_TOKEN")
        answer = (await gw.http.post("/agents/guarded/", json=send("the memo"), headers=A2A)).json()["result"]
        assert agent.executor.methods == []
    assert answer["task"]["status"]["state"] == "TASK_STATE_FAILED"
    assert "TB_TEST_AGENT_TOKEN" in answer["task"]["status"]["message"]["parts"][0]["text"]


@pytest.mark.parametrize("credentials, field", [
    ({"type": "bearer", "token": SECRET}, "credentials.token"),
    ({"type": "basic", "token_env": "X"}, "credentials.type"),
    ({"type": "bearer", "token_env": "1-not a name"}, "credentials.token_env"),
    ({"type": "api_key", "token_env": "X", "header": "bad header"}, "credentials.header"),
    ("Bearer x", "credentials"),
])
async def test_malformed_credentials_are_refused_naming_the_field_and_never_echo_a_secret(gw, credentials, field):
    async with running_agent() as agent:
        refused = await gw.http.post("/admin/agents", headers=ADMIN,
                                     json={"card_url": agent.base_url, "credentials": credentials})
    assert refused.status_code == 400, refused.text
    assert field in refused.text
    assert SECRET not in refused.text
