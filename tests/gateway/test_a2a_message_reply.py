"""Message replies: an agent may answer SendMessage with a Message instead of a Task. A native
worker does it with `TaskContext.reply`; a bridged a2a-sdk agent that answers with a bare Message
is passed through as one. Checked with the official clients: a2a-sdk on JSON-RPC (lean dispatch
on and off), HTTP+JSON and 0.3, and the mcp Client (the message's parts are the tool result)."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from a2a.types import a2a_pb2
from mcp import Client

from gateway.tasks import fold
from gateway.workers.worker import Worker
from tests.gateway.a2a_servers import a2a_client, collect, send_request

from .remote_agents import running_agent
from .serving import running_gateway

REPLIER_CARD = {"name": "replier", "description": "Answers with a message, never a task.",
                "skills": [{"id": "reply", "name": "reply", "description": "replies", "tags": ["text"]}]}


async def _reply(task) -> None:
    if task.text == "ask":
        await task.require_input("what?")
    else:
        await task.reply(f"you said {task.text}")


@contextlib.asynccontextmanager
async def gateway(tmp_path, **options):
    settings = {"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005}, "gateway": options}
    async with running_gateway(settings, client_timeout=15) as gw:
        worker = Worker(gw.gateway.backend, "replier", _reply, card=REPLIER_CARD)
        await worker.start()
        try:
            yield gw
        finally:
            await worker.close()


@pytest.mark.parametrize("binding,version,lean", [("JSONRPC", "1.0", True), ("JSONRPC", "1.0", False),
                                                  ("HTTP+JSON", "1.0", True), ("JSONRPC", "0.3", True)],
                         ids=["jsonrpc-lean", "jsonrpc-sdk", "http-json", "jsonrpc-0.3"])
async def test_a_worker_that_replies_answers_send_message_with_a_message(tmp_path, binding, version, lean):
    async with gateway(tmp_path, a2a_lean_dispatch=lean) as gw, \
            a2a_client(gw.base, "replier", binding=binding, version=version) as client:
        events = await collect(client.send_message(send_request("tea")))
    assert [e.WhichOneof("payload") for e in events] == ["message"]
    message = events[0].message
    assert message.role == a2a_pb2.ROLE_AGENT and [p.text for p in message.parts] == ["you said tea"]
    assert fold.REPLY_MARK not in message.metadata.fields and not message.task_id


async def test_a_reply_to_a_continuation_names_the_task_it_continues(tmp_path):
    async with gateway(tmp_path) as gw, a2a_client(gw.base, "replier") as client:
        asked = await collect(client.send_message(send_request("ask")))
        task_id = asked[-1].task.id
        request = send_request("coffee")
        request.message.task_id = task_id
        answered = await collect(client.send_message(request))
        task = await client.get_task(a2a_pb2.GetTaskRequest(id=task_id))
    assert answered[0].message.task_id == task_id and answered[0].message.parts[0].text == "you said coffee"
    assert task.status.state == a2a_pb2.TASK_STATE_COMPLETED    # the gateway's task records how it ended


async def test_a_streaming_caller_gets_the_reply_in_the_completed_status(tmp_path):
    async with gateway(tmp_path) as gw, a2a_client(gw.base, "replier", streaming=True) as client:
        events = await collect(client.send_message(send_request("tea")))
    last = events[-1].status_update.status
    assert last.state == a2a_pb2.TASK_STATE_COMPLETED and last.message.parts[0].text == "you said tea"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_over_mcp_the_replys_parts_are_the_tool_result(tmp_path, mode):
    async with gateway(tmp_path) as gw, Client(gw.url, mode=mode) as client:
        result = await client.call_tool("replier", {"message": "tea"})
    assert not result.is_error and [c.text for c in result.content] == ["you said tea"]


@pytest.mark.parametrize("agent_streaming", [True, False], ids=["agent-streams", "agent-blocks"])
async def test_a_bridged_agents_message_answer_reaches_the_caller_as_a_message(tmp_path, agent_streaming):
    async with running_agent(streaming=agent_streaming) as agent, gateway(tmp_path) as gw:
        registered = await gw.http.post("/admin/agents", json={"card_url": agent.base_url})
        assert registered.status_code == 201, registered.text
        name = registered.json()["name"]
        async with a2a_client(gw.base, name) as client:
            events = await collect(client.send_message(send_request("message")))
        async with Client(gw.url) as mcp:
            result = await mcp.call_tool(name, {"message": "message"})
    assert [e.WhichOneof("payload") for e in events] == ["message"]
    assert events[0].message.message_id == "answer-1" and events[0].message.parts[0].text == "just a message"
    assert [c.text for c in result.content] == ["just a message"]
