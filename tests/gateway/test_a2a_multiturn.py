"""A2A multi-turn through the gateway: a task that needs input is continued by a SendMessage
naming it (`message.task_id`), with the official a2a-sdk client, blocking and streaming.

Native agents run on the shared `topicbridge engine` of the two gateway processes (a2a_servers);
the bridged agent is a real a2a-sdk server on port 0 behind an in-process gateway. Nothing is
mocked."""

import asyncio
import contextlib
import json
import os
import uuid

import httpx
import pytest
from a2a.client import ClientConfig, ClientFactory
from a2a.types import a2a_pb2

from adapters.lite_remote import RemoteLiteBackend
from gateway.registry.capabilities import Capability, Registry
from gateway.workers.worker import Worker
from tests.gateway.a2a_servers import (
    a2a_client,
    collect,
    send_request,
    state_of,
    task_id_of,
)

from .remote_agents import running_agent
from .serving import running_gateway

COMPLETED, INPUT_REQUIRED = a2a_pb2.TASK_STATE_COMPLETED, a2a_pb2.TASK_STATE_INPUT_REQUIRED
V1 = {"A2A-Version": "1.0"}


async def _asker(task) -> None:
    """Asks how many of what it was sent; an answer starting with "more" makes it ask again; any
    other answer completes the task with what the worker saw of it."""
    if task.turn == 0 or task.text.startswith("more"):
        await task.require_input(f"how many (turn {task.turn})?")
        return
    seen = [p.text for m in task.history for p in m.parts]
    await task.complete(json.dumps({"turn": task.turn, "history": seen, "answer": task.text}))


@pytest.fixture
async def asker(engine):
    backend = RemoteLiteBackend(engine)
    await backend.start()
    registry = Registry(backend)
    await registry.start()
    worker = Worker(backend, "asker", _asker)
    await worker.start()
    await registry.put(Capability("asker", {"name": "Asker", "description": "asks before it answers"}))
    yield worker
    await worker.close()
    await backend.close()


def answer(task_id: str, text: str, context_id: str = "", *, return_immediately: bool = False):
    request = send_request(text, context_id=context_id, return_immediately=return_immediately)
    request.message.task_id = task_id
    return request


def user_texts(task: a2a_pb2.Task) -> list[str]:
    return [p.text for m in task.history if m.role == a2a_pb2.ROLE_USER for p in m.parts]


# ------------------------------------------------------------------ native agents

@pytest.mark.parametrize("streaming", [False, True], ids=["send", "stream"])
@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_a_native_agent_asks_and_the_answer_continues_the_task(gateways, asker, binding, streaming):
    async with a2a_client(gateways[0], "asker", binding=binding, streaming=streaming) as client, \
            a2a_client(gateways[1], "asker", binding=binding, streaming=streaming) as other:
        first = await collect(client.send_message(send_request("tea")))
        task_id, context_id = first[0].task.id, first[0].task.context_id
        assert state_of(first[-1]) == INPUT_REQUIRED
        # the answers: one on the other gateway instance, naming the context; one without it
        again = await collect(other.send_message(answer(task_id, "more please", context_id)))
        done = await collect(client.send_message(answer(task_id, "two")))
        task = await client.get_task(a2a_pb2.GetTaskRequest(id=task_id))
    assert state_of(again[-1]) == INPUT_REQUIRED and state_of(done[-1]) == COMPLETED
    if streaming:       # the task as resubmitted, then the new turn's events
        assert done[0].task.id == task_id and done[0].task.status.state == a2a_pb2.TASK_STATE_SUBMITTED
        assert user_texts(done[0].task) == ["tea", "more please", "two"]
        assert {task_id_of(e) for e in done} == {task_id}
    else:
        assert len(done) == 1 and done[0].task.id == task_id
    assert task.status.state == COMPLETED and task.context_id == context_id
    assert user_texts(task) == ["tea", "more please", "two"]
    assert [p.text for m in task.history for p in m.parts] == \
        ["tea", "how many (turn 0)?", "more please", "how many (turn 1)?", "two"]
    result = json.loads(task.artifacts[0].parts[0].text)
    assert result == {"turn": 2, "answer": "two",
                      "history": ["tea", "how many (turn 0)?", "more please", "how many (turn 1)?"]}


async def test_return_immediately_on_a_continuation_answers_with_the_resubmitted_task(gateways, asker):
    async with a2a_client(gateways[0], "asker") as client:
        [asked] = await collect(client.send_message(send_request("coffee")))
        [resumed] = await collect(client.send_message(answer(asked.task.id, "one", return_immediately=True)))
        async with asyncio.timeout(15):
            while (done := await client.get_task(a2a_pb2.GetTaskRequest(id=asked.task.id))).status.state != COMPLETED:
                await asyncio.sleep(0.02)  # sleep-ok: GetTask until the worker's next turn is folded
    assert resumed.task.id == asked.task.id and user_texts(resumed.task) == ["coffee", "one"]
    assert resumed.task.status.state == a2a_pb2.TASK_STATE_SUBMITTED
    assert json.loads(done.artifacts[0].parts[0].text)["answer"] == "one"


async def test_a_task_waiting_for_input_can_be_canceled_on_another_instance(gateways, asker):
    async with a2a_client(gateways[0], "asker") as first, a2a_client(gateways[1], "asker") as second:
        [asked] = await collect(first.send_message(send_request("tea")))
        assert asked.task.status.state == INPUT_REQUIRED
        canceled = await second.cancel_task(a2a_pb2.CancelTaskRequest(id=asked.task.id))
        async with asyncio.timeout(15):
            while (seen := await first.get_task(a2a_pb2.GetTaskRequest(id=asked.task.id))).status.state \
                    != a2a_pb2.TASK_STATE_CANCELED:
                await asyncio.sleep(0.02)  # sleep-ok: GetTask until the cancel is folded
        with pytest.raises(Exception) as again:
            await collect(first.send_message(answer(asked.task.id, "one")))
    assert canceled.status.state == a2a_pb2.TASK_STATE_CANCELED
    assert user_texts(seen) == ["tea"]
    assert "TASK_STATE_CANCELED" in str(again.value)


# ------------------------------------------------------------------ bad continuations

def rpc(method: str, params) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


def message(text: str, **ids) -> dict:
    return {"messageId": os.urandom(8).hex(), "role": "ROLE_USER", "parts": [{"text": text}], **ids}


@pytest.fixture
async def http(gateways, agents, asker):
    async with httpx.AsyncClient(base_url=gateways[0], timeout=15) as client:
        yield client
        # whatever came before, the gateway still answers
        ok = await client.post("/agents/echo/", json=rpc("SendMessage", {"message": message("hi")}), headers=V1)
        assert ok.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"


async def send(http, capability: str, msg: dict) -> dict:
    return (await http.post(f"/agents/{capability}/", json=rpc("SendMessage", {"message": msg}), headers=V1)).json()


async def test_a_completed_task_cannot_be_continued(http):
    done = await send(http, "echo", message("hi"))
    task_id = done["result"]["task"]["id"]
    error = (await send(http, "echo", message("again", taskId=task_id)))["error"]
    assert error["code"] == -32004 and "TASK_STATE_COMPLETED" in error["message"]
    assert "cannot be restarted" in error["message"]


async def test_a_working_task_takes_no_message(http, gateways, agents):
    async with a2a_client(gateways[0], "slow", streaming=True) as client:
        stream = client.send_message(send_request("take your time"))
        async with asyncio.timeout(15):
            async for event in stream:
                if state_of(event) == a2a_pb2.TASK_STATE_WORKING:
                    break
        task_id = task_id_of(event)
        error = (await send(http, "slow", message("are you done?", taskId=task_id)))["error"]
        canceled = await client.cancel_task(a2a_pb2.CancelTaskRequest(id=task_id))
        await collect(stream)
    assert error["code"] == -32004 and "TASK_STATE_WORKING" in error["message"]
    assert canceled.status.state == a2a_pb2.TASK_STATE_CANCELED


async def test_an_unknown_task_is_task_not_found(http):
    for task_id in (uuid.uuid4().hex, "x" * 5000):
        error = (await send(http, "asker", message("hello?", taskId=task_id)))["error"]
        assert error["code"] == -32001


async def test_a_context_other_than_the_tasks_or_another_agents_route_is_refused(http):
    asked = (await send(http, "asker", message("tea")))["result"]["task"]
    assert asked["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
    mismatched = (await send(http, "asker", message("two", taskId=asked["id"], contextId="another")))["error"]
    elsewhere = (await send(http, "echo", message("two", taskId=asked["id"])))["error"]
    assert mismatched["code"] == -32602 and "does not match" in mismatched["message"]
    assert elsewhere["code"] == -32001      # through another agent's route the task is not there (access.py)
    # the refusals left the task waiting for its answer
    done = (await send(http, "asker", message("two", taskId=asked["id"], contextId=asked["contextId"])))
    assert done["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"


async def test_a_streaming_continuation_of_a_finished_task_is_an_error_not_a_stream(http):
    done = await send(http, "echo", message("hi"))
    response = await http.post("/agents/echo/", headers=V1, json=rpc("SendStreamingMessage", {
        "message": message("again", taskId=done["result"]["task"]["id"])}))
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == -32004


# ------------------------------------------------------------------ bridged A2A agents

@contextlib.asynccontextmanager
async def in_process_gateway(tmp_path):
    settings = {"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005}}
    async with running_gateway(settings) as gw:
        yield gw.base


@pytest.mark.parametrize("client_streaming", [False, True], ids=["send", "stream"])
@pytest.mark.parametrize("agent_streaming", [True, False], ids=["agent-streams", "agent-blocks"])
async def test_a_bridged_agent_that_asks_gets_the_answer_on_its_own_task(tmp_path, agent_streaming,
                                                                        client_streaming):
    async with running_agent(streaming=agent_streaming) as agent, in_process_gateway(tmp_path) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            registered = await http.post("/admin/agents", json={"card_url": agent.base_url})
            assert registered.status_code == 201, registered.text
        name = registered.json()["name"]
        async with a2a_client(base, name, streaming=client_streaming) as client:
            first = await collect(client.send_message(send_request("ask")))
            task_id = task_id_of(first[0])
            asked = await settled(client, task_id, INPUT_REQUIRED)
            done = await collect(client.send_message(answer(task_id, "pages 1-3")))
            task = await settled(client, task_id, COMPLETED)
        remote_tasks = await tasks_of(agent)
    assert asked.status.message.parts[0].text == "which pages?"
    # A blocking agent's "reading" is relayed as a Message event, which ends an SDK client's stream.
    if agent_streaming or not client_streaming:
        assert state_of(first[-1]) == INPUT_REQUIRED and state_of(done[-1]) == COMPLETED
    assert task.artifacts[0].parts[0].text == "summary of: pages 1-3"
    assert user_texts(task) == ["ask", "pages 1-3"]
    texts = [p.text for m in task.history for p in m.parts]
    assert texts.count("which pages?") == 1 and texts.count("reading") == 2     # one per turn, none twice
    # the agent continued its own task: one task, with both user messages
    assert len(remote_tasks) == 1 and user_texts(remote_tasks[0]) == ["ask", "pages 1-3"]
    assert remote_tasks[0].context_id == task.context_id


async def settled(client, task_id: str, state: int) -> a2a_pb2.Task:
    async with asyncio.timeout(15):
        while (task := await client.get_task(a2a_pb2.GetTaskRequest(id=task_id))).status.state != state:
            await asyncio.sleep(0.02)  # sleep-ok: GetTask until the bridged turn is folded
    return task


async def tasks_of(agent) -> list[a2a_pb2.Task]:
    async with httpx.AsyncClient() as http:
        client = ClientFactory(ClientConfig(httpx_client=http)).create(agent.card)
        return list((await client.list_tasks(a2a_pb2.ListTasksRequest())).tasks)
