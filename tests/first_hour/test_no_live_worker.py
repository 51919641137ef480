"""A capability whose native workers have all gone takes no new task: the caller is told at
once that no worker is online (A2A JSON-RPC and HTTP+JSON, MCP), instead of waiting for a task
nobody runs; with gateway.accept_without_live_worker the task queues until a worker is back."""

from __future__ import annotations

import uuid

import pytest
from mcp import Client

from tests.gateway.mcp_support import agents_on, echo, wait_until
from tests.gateway.serving import running_gateway

A2A = {"A2A-Version": "1.0"}


def send(text: str, *, wait: bool = True) -> dict:
    message = {"messageId": uuid.uuid4().hex, "role": "ROLE_USER", "parts": [{"text": text}]}
    return {"jsonrpc": "2.0", "id": 7, "method": "SendMessage",
            "params": {"message": message, "configuration": {"returnImmediately": not wait}}}


def settings(**gateway) -> dict:
    return {"lite": {"data_dir": None}, "gateway": {"capability_expiry_seconds": None, **gateway}}


async def departed(gw, agents, name: str = "solo") -> None:
    """`name` served by one worker that then stops cleanly: listed, unavailable."""
    worker = await agents.serve(name, echo)
    await wait_until(lambda: gw.gateway.registry.get(name), timeout=10)
    await worker.close()
    agents.workers.remove(worker)

    async def unavailable():
        return (await gw.http.get(f"/admin/agents/{name}")).json().get("status") == "unavailable"
    await wait_until(unavailable, timeout=10)


async def test_a_jsonrpc_send_to_a_capability_without_a_live_worker_is_refused_at_once_naming_it():
    async with running_gateway(settings()) as gw, agents_on(gw.gateway.backend) as agents:
        await departed(gw, agents)
        answer = await gw.http.post("/agents/solo/", json=send("anyone there?"), headers=A2A)
        listed = (await gw.http.get("/admin/tasks")).json()
    error = answer.json()["error"]
    info = error["data"][0]["metadata"]           # A2A 1.0: a google.rpc.ErrorInfo
    assert answer.status_code == 200 and info["type"] == "NoLiveWorkerError" and info["capability"] == "solo"
    assert "no worker online" in error["message"] and float(info["retry_after"]) > 0
    assert listed["tasks"] == []          # nothing was accepted, so nothing is left behind


async def test_an_http_json_send_without_a_live_worker_is_a_503():
    async with running_gateway(settings()) as gw, agents_on(gw.gateway.backend) as agents:
        await departed(gw, agents)
        answer = await gw.http.post("/agents/solo/message:send", json=send("hello")["params"], headers=A2A)
    assert answer.status_code == 503 and "no worker online" in answer.json()["error"]["message"]
    assert float(answer.headers["Retry-After"]) > 0


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_an_mcp_tool_call_without_a_live_worker_answers_at_once_that_no_worker_is_online(mode):
    async with running_gateway(settings()) as gw, agents_on(gw.gateway.backend) as agents:
        await departed(gw, agents)
        async with Client(gw.url, mode=mode) as client:
            try:
                result = await client.call_tool("solo", {"message": "hello"})
                text = " ".join(c.text for c in result.content if c.type == "text")
                assert result.is_error
            except Exception as e:          # an MCP error is as good as an error result
                text = str(e)
    assert "no worker online" in text


async def test_with_accept_without_live_worker_the_task_waits_for_a_worker_to_come_back():
    async with running_gateway(settings(accept_without_live_worker=True)) as gw, \
            agents_on(gw.gateway.backend) as agents:
        await departed(gw, agents)
        task = (await gw.http.post("/agents/solo/", json=send("later", wait=False), headers=A2A)).json()["result"]["task"]
        assert task["status"]["state"] == "TASK_STATE_SUBMITTED"
        await agents.serve("solo", echo)

        async def completed():
            got = (await gw.http.post("/agents/solo/", headers=A2A, json={
                "jsonrpc": "2.0", "id": 8, "method": "GetTask", "params": {"id": task["id"]}})).json()
            return got["result"]["status"]["state"] == "TASK_STATE_COMPLETED"
        await wait_until(completed, timeout=30)


async def test_a_capability_with_a_live_worker_takes_the_task_as_before():
    async with running_gateway(settings()) as gw, agents_on(gw.gateway.backend) as agents:
        await agents.serve("solo", echo)
        await wait_until(lambda: gw.gateway.registry.get("solo"), timeout=10)
        answer = (await gw.http.post("/agents/solo/", json=send("hi"), headers=A2A)).json()
    assert answer["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
