"""Agents that require credentials: registered with the name of the gateway's environment variable
holding the secret, which goes with the card fetch and every call (lean and a2a-sdk paths) and is
never stored or returned. Real gateway (uvicorn, embedded engine), real a2a-sdk agents that
answer 401 to any request without the secret; for OAuth 2.0 client credentials a real token
endpoint (Starlette, HTTP Basic client authentication) whose tokens the agent takes."""

import asyncio
import json

import pytest

from gateway.workers import oauth_client

from .remote_agents import running_agent, running_token_server
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
    ({"type": "oauth2_client_credentials", "client_secret_env": "X", "token_url": "http://127.0.0.1/t"},
     "credentials.client_id"),
    ({"type": "oauth2_client_credentials", "client_id": "gw", "client_secret": SECRET}, "credentials.client_secret"),
    ({"type": "oauth2_client_credentials", "client_id": "gw", "client_secret_env": "no such"},
     "credentials.client_secret_env"),
    ({"type": "oauth2_client_credentials", "client_id": "gw", "client_secret_env": "X", "scopes": "a b",
      "token_url": "http://127.0.0.1/t"}, "credentials.scopes"),
    ({"type": "oauth2_client_credentials", "client_id": "gw", "client_secret_env": "X",
      "token_url": "ftp://127.0.0.1/t"}, "credentials.token_url"),
    ({"type": "oauth2_client_credentials", "client_id": "gw", "client_secret_env": "X"}, "credentials.token_url"),
])
async def test_malformed_credentials_are_refused_naming_the_field_and_never_echo_a_secret(gw, credentials, field):
    async with running_agent() as agent:
        refused = await gw.http.post("/admin/agents", headers=ADMIN,
                                     json={"card_url": agent.base_url, "credentials": credentials})
    assert refused.status_code == 400, refused.text
    assert field in refused.text
    assert SECRET not in refused.text


# ------------------------------------------------------------ OAuth 2.0 client credentials

CLIENT = "topicbridge-gw"
OAUTH = {"type": "oauth2_client_credentials", "client_id": CLIENT, "client_secret_env": "TB_TEST_CLIENT_SECRET"}


async def register_oauth(gw, agent, **extra) -> None:
    created = await gw.http.post("/admin/agents", headers=ADMIN, json={
        "card_url": agent.base_url, "name": "issued", "credentials": {**OAUTH, **extra}})
    assert created.status_code == 201, created.text
    assert SECRET not in created.text


async def blocking_answer(gw, text: str) -> dict:
    return (await gw.http.post("/agents/issued/", json=send(text), headers=A2A)).json()["result"]


def failure(answer: dict) -> str:
    assert answer["task"]["status"]["state"] == "TASK_STATE_FAILED"
    return answer["task"]["status"]["message"]["parts"][0]["text"]


async def test_client_credentials_from_the_cards_flow_get_one_token_for_many_calls_and_the_card_refresh(
        gw, monkeypatch):
    monkeypatch.setenv("TB_TEST_CLIENT_SECRET", SECRET)
    async with running_token_server(CLIENT, SECRET) as issuer, running_agent(oauth=issuer) as agent:
        await register_oauth(gw, agent, scopes=["summarise"])
        for text in ("one", "two", "three"):
            assert (await blocking_answer(gw, text))["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
        assert (await stream_states(gw, "issued", "four"))[-1] == "TASK_STATE_COMPLETED"
        refreshed = await gw.http.post("/admin/agents/issued/refresh", headers=ADMIN)
        shown = await gw.http.get("/admin/agents/issued", headers=ADMIN)
    assert refreshed.status_code == 200, refreshed.text
    assert (issuer.requests, issuer.scopes) == (1, ["summarise"])
    assert agent.guard.refused == 0
    assert agent.executor.methods == ["SendMessage"] * 3 + ["SendStreamingMessage"]
    assert SECRET not in shown.text


async def test_a_token_past_its_expiry_is_replaced_before_the_next_call(gw, monkeypatch):
    monkeypatch.setenv("TB_TEST_CLIENT_SECRET", SECRET)
    async with running_token_server(CLIENT, SECRET, expires_in=600) as issuer, running_agent(oauth=issuer) as agent:
        await register_oauth(gw, agent, token_url=issuer.token_url)
        assert (await blocking_answer(gw, "before"))["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
        later = oauth_client.clock() + 600
        monkeypatch.setattr(oauth_client, "clock", lambda: later)
        assert (await blocking_answer(gw, "after"))["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
        assert (await blocking_answer(gw, "again"))["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
    assert issuer.requests == 2
    assert agent.guard.refused == 0


async def test_a_401_from_the_agent_gets_one_new_token_and_the_call_goes_through_on_both_paths(gw, monkeypatch):
    monkeypatch.setenv("TB_TEST_CLIENT_SECRET", SECRET)
    async with running_token_server(CLIENT, SECRET) as issuer, running_agent(oauth=issuer) as agent:
        await register_oauth(gw, agent)
        issuer.honoured.clear()         # the agent no longer takes the token the gateway holds
        assert (await blocking_answer(gw, "lean"))["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
        assert (issuer.requests, agent.guard.refused) == (2, 1)
        issuer.honoured.clear()
        assert (await stream_states(gw, "issued", "sdk"))[-1] == "TASK_STATE_COMPLETED"
    assert (issuer.requests, agent.guard.refused) == (3, 2)


async def test_an_agent_refusing_every_token_fails_the_task_after_a_single_refresh(gw, monkeypatch):
    monkeypatch.setenv("TB_TEST_CLIENT_SECRET", SECRET)
    async with running_token_server(CLIENT, SECRET) as issuer, running_agent(oauth=issuer) as agent:
        await register_oauth(gw, agent)
        agent.guard.accepts = lambda token: False
        reason = failure(await blocking_answer(gw, "the memo"))
    assert "401" in reason
    assert (issuer.requests, agent.guard.refused) == (2, 2)
    assert agent.executor.methods == []


async def test_a_wrong_client_secret_fails_registration_naming_the_token_url_and_the_oauth_error(gw, monkeypatch):
    monkeypatch.setenv("TB_TEST_CLIENT_SECRET", "not-the-" + SECRET)
    async with running_token_server(CLIENT, SECRET) as issuer, running_agent(oauth=issuer) as agent:
        refused = await gw.http.post("/admin/agents", headers=ADMIN,
                                     json={"card_url": agent.base_url, "credentials": OAUTH})
    assert refused.status_code == 400, refused.text
    message = refused.json()["error"]["message"]
    assert issuer.token_url in message and "invalid_client" in message
    assert SECRET not in refused.text


async def test_a_secret_rotated_to_a_wrong_one_fails_the_task_naming_the_token_endpoint(gw, monkeypatch):
    monkeypatch.setenv("TB_TEST_CLIENT_SECRET", SECRET)
    async with running_token_server(CLIENT, SECRET) as issuer, running_agent(oauth=issuer) as agent:
        await register_oauth(gw, agent)
        monkeypatch.setenv("TB_TEST_CLIENT_SECRET", "rotated-" + SECRET)
        reason = failure(await blocking_answer(gw, "the memo"))
    assert issuer.token_url in reason and "invalid_client" in reason
    assert SECRET not in reason
    assert agent.executor.methods == []


async def test_a_token_url_the_outbound_policy_refuses_is_never_asked(gw, monkeypatch):
    monkeypatch.setenv("TB_TEST_CLIENT_SECRET", SECRET)
    async with running_agent(open_card=True) as agent:
        refused = await gw.http.post("/admin/agents", headers=ADMIN, json={
            "card_url": agent.base_url, "credentials": {**OAUTH, "token_url": "http://169.254.169.254/token"}})
    assert refused.status_code == 400, refused.text
    assert "169.254.169.254" in refused.text and "address refused" in refused.text


async def test_the_cli_registers_client_credentials_from_its_flags(monkeypatch, tmp_path):
    from .test_cli_agents import cli
    monkeypatch.setenv("TB_TEST_CLIENT_SECRET", SECRET)
    open_settings = {"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005}, "gateway": {}}
    async with running_gateway(open_settings) as gw, running_token_server(CLIENT, SECRET) as issuer, \
            running_agent(oauth=issuer) as agent:
        code, record, err = await cli("register", agent.base_url, "--name", "issued", "--client-id", CLIENT,
                                      "--client-secret-env", "TB_TEST_CLIENT_SECRET", "--scope", "summarise",
                                      gateway=gw.base)
        assert code == 0, err
        assert (await blocking_answer(gw, "the memo"))["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
    assert record["name"] == "issued"
    assert (issuer.requests, issuer.scopes) == (1, ["summarise"])
