"""How a bridge calls its agent depends on how the gateway's caller waits: a blocking SendMessage
reaches a streaming agent as one plain SendMessage (nobody sees intermediate events), a stream
or a call that returns at once as SendStreamingMessage. Real gateway (uvicorn, embedded engine),
real a2a-sdk agents on port 0."""

import asyncio
import json

import pytest

from .remote_agents import running_agent
from .serving import running_gateway

TOKEN = "calls-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "A2A-Version": "1.0"}
SETTINGS = {"backend": "lite", "lite": {"data_dir": None, "tick": 0.005}, "gateway": {"bearer_tokens": [TOKEN]}}


def request(method: str, text: str, **configuration) -> dict:
    params = {"message": {"messageId": f"m-{text}", "role": "ROLE_USER", "parts": [{"text": text}]}}
    if configuration:
        params["configuration"] = configuration
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


@pytest.fixture
async def bridged():
    """A gateway with a streaming a2a-sdk agent registered as `summariser`."""
    async with running_gateway(SETTINGS) as gw, running_agent(streaming=True) as agent:
        await gw.gateway.bridges.register(agent.base_url, name="summariser")
        yield gw, agent


async def test_a_blocking_send_reaches_a_streaming_agent_as_one_plain_send_message(bridged):
    gw, agent = bridged
    answer = (await gw.http.post("/agents/summariser/", json=request("SendMessage", "the memo"),
                                 headers=HEADERS)).json()
    task = answer["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert [p["text"] for a in task["artifacts"] for p in a["parts"]] == ["summary of: the memo"]
    assert agent.executor.methods == ["SendMessage"]


async def test_a_streaming_caller_gets_the_agents_stream(bridged):
    gw, agent = bridged
    states = []
    async with asyncio.timeout(10):
        async with gw.http.stream("POST", "/agents/summariser/", json=request("SendStreamingMessage", "the memo"),
                                  headers={**HEADERS, "Accept": "text/event-stream"}) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    result = json.loads(line[5:])["result"]
                    states.append(result.get("statusUpdate", {}).get("status", {}).get("state"))
    assert states[-1] == "TASK_STATE_COMPLETED"
    assert agent.executor.methods == ["SendStreamingMessage"]


async def test_a_send_that_returns_at_once_still_streams_from_the_agent(bridged):
    gw, agent = bridged
    answer = (await gw.http.post("/agents/summariser/", json=request("SendMessage", "the memo",
                                                                     returnImmediately=True),
                                 headers=HEADERS)).json()
    task_id = answer["result"]["task"]["id"]
    async with asyncio.timeout(10):
        async with gw.http.stream("POST", "/agents/summariser/", headers={**HEADERS, "Accept": "text/event-stream"},
                                  json={"jsonrpc": "2.0", "id": 2, "method": "SubscribeToTask",
                                        "params": {"id": task_id}}) as response:
            async for _ in response.aiter_lines():
                pass
    assert agent.executor.methods == ["SendStreamingMessage"]
