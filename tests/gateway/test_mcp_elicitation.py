"""An agent's question reaches an MCP user mid-call (gateway/mcp/elicit.py), with the official mcp
Client in both eras: `elicitation/create` on a 2025-11-25 session, an `input_required` result
(MRTR) on 2026-07-28. The answer continues the A2A task; the agent's own JSON Schema becomes the
form; decline and cancel; a client without elicitation keeps the plain result."""

from __future__ import annotations

import asyncio
import json

import mcp_types as types
import pytest
from a2a.types import a2a_pb2
from google.protobuf import json_format
from mcp import Client
from mcp.shared.exceptions import MCPError

from gateway.workers.worker import Worker
from tests.lite_engine.engine_process import EngineProcess

from .serving import running_gateway

FORM = {"type": "object", "properties": {"pages": {"type": "integer"}, "colour": {"type": "boolean"}},
        "required": ["pages"]}
MODES = ["auto", "legacy"]


async def _printer(task) -> None:
    """Asks how many pages (with its own form) then completes with what it was told."""
    if task.turn == 0:
        form = a2a_pb2.Part(media_type="application/schema+json")
        json_format.ParseDict(FORM, form.data)
        await task.status(a2a_pb2.TASK_STATE_INPUT_REQUIRED, "How many pages?", parts=[form])
        return
    answer = task.data[0] if task.data else task.text
    await task.complete(json.dumps({"turn": task.turn, "answer": answer}))


async def _asker(task) -> None:
    if task.turn < 2:
        await task.require_input(f"question {task.turn}?")
        return
    await task.complete(f"answers: {[m.parts[0].text for m in task.history if m.role == a2a_pb2.ROLE_USER]}"
                        f" + {task.text}")


@pytest.fixture
async def gw(tmp_path):
    settings = {"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005}, "gateway": {}}
    async with running_gateway(settings, client_timeout=20) as running:
        workers = [Worker(running.gateway.backend, name, handler, card={"name": name, "description": name})
                   for name, handler in (("printer", _printer), ("asker", _asker))]
        for worker in workers:
            await worker.start()
        try:
            yield running
        finally:
            for worker in workers:
                await worker.close()


def answering(*responses):
    """An elicitation callback giving `responses` in turn, keeping what it was asked."""
    asked, queue = [], list(responses)

    async def callback(context, params):
        asked.append(params)
        return queue.pop(0)
    return callback, asked


@pytest.mark.parametrize("mode", MODES)
async def test_the_agents_form_is_asked_and_the_answer_completes_the_task(gw, mode):
    callback, asked = answering(types.ElicitResult(action="accept", content={"pages": 3, "colour": True}))
    async with Client(gw.url, mode=mode, elicitation_callback=callback) as client:
        result = await client.call_tool("printer", {"message": "print the report"})
    assert not result.is_error, result
    assert [a.message for a in asked] == ["How many pages?"] and asked[0].requested_schema["properties"].keys() \
        == {"pages", "colour"}
    done = json.loads(result.content[0].text)
    assert done["turn"] == 1 and done["answer"] == {"pages": 3, "colour": True}


@pytest.mark.parametrize("mode", MODES)
async def test_each_question_of_the_agent_is_asked_in_the_same_call(gw, mode):
    callback, asked = answering(types.ElicitResult(action="accept", content={"answer": "one"}),
                                types.ElicitResult(action="accept", content={"answer": "two"}))
    async with Client(gw.url, mode=mode, elicitation_callback=callback) as client:
        result = await client.call_tool("asker", {"message": "start"})
    assert [a.message for a in asked] == ["question 0?", "question 1?"]
    assert list(asked[0].requested_schema["properties"]) == ["answer"]
    assert result.content[0].text == "answers: ['start', 'one'] + two"


@pytest.mark.parametrize("mode", MODES)
async def test_a_declined_question_leaves_the_task_waiting_and_a_cancelled_one_cancels_it(gw, mode):
    callback, _ = answering(types.ElicitResult(action="decline"), types.ElicitResult(action="cancel"))
    async with Client(gw.url, mode=mode, elicitation_callback=callback) as client:
        declined = await client.call_tool("asker", {"message": "a"})
        cancelled = await client.call_tool("asker", {"message": "b"})
    waiting = await gw.gateway.tasks.get(declined.meta["io.topicbridge/task"]["taskId"])
    assert not declined.is_error and "declined" in declined.content[0].text
    assert waiting.status.state == a2a_pb2.TASK_STATE_INPUT_REQUIRED
    assert cancelled.is_error
    async with asyncio.timeout(10):
        while (gone := await gw.gateway.tasks.get(cancelled.meta["io.topicbridge/task"]["taskId"])).status.state \
                != a2a_pb2.TASK_STATE_CANCELED:
            await asyncio.sleep(0.02)   # sleep-ok: GetTask until the cancel is indexed


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_elicitation_gets_the_question_as_the_result(gw, mode):
    async with Client(gw.url, mode=mode) as client:
        result = await client.call_tool("asker", {"message": "start"})
    assert "needs more input: question 0?" in result.content[0].text and "task_id=" in result.content[0].text


async def test_a_retry_with_a_state_the_gateway_did_not_issue_is_invalid_params(gw):
    async with Client(gw.url, mode="auto") as client:
        for state in ("forged", "topicbridge-task:" + "0" * 32):
            with pytest.raises(MCPError) as refused:
                await client.session.call_tool("asker", {"message": "x"}, input_responses={
                    "answer": types.ElicitResult(action="accept", content={"answer": "y"})}, request_state=state)
            assert refused.value.error.code == types.INVALID_PARAMS and "requestState" in refused.value.error.message


async def test_an_mrtr_answer_continues_the_task_on_another_instance(tmp_path):
    engine = EngineProcess(tmp_path / "shared", fsync="never")
    lite = {"mode": "remote", "target": engine.start()}
    callback, _ = answering()
    try:
        async with running_gateway({"lite": lite}) as first, running_gateway({"lite": lite}) as second:
            worker = Worker(first.gateway.backend, "asker", _asker, card={"name": "asker", "description": "asks"})
            await worker.start()
            try:
                async with Client(first.url, mode="auto", elicitation_callback=callback) as one, \
                        Client(second.url, mode="auto", elicitation_callback=callback) as two:
                    asked = await one.session.call_tool("asker", {"message": "start"}, allow_input_required=True)
                    again = await two.session.call_tool("asker", {"message": "start"}, allow_input_required=True,
                                                        input_responses={"answer": types.ElicitResult(
                                                            action="accept", content={"answer": "one"})},
                                                        request_state=asked.request_state)
                    # the same state again: that question was answered already
                    with pytest.raises(MCPError) as replayed:
                        await one.session.call_tool("asker", {"message": "start"}, input_responses={
                            "answer": types.ElicitResult(action="accept", content={"answer": "x"})},
                            request_state=asked.request_state)
            finally:
                await worker.close()
    finally:
        engine.kill()
    assert isinstance(asked, types.InputRequiredResult) and asked.input_requests["answer"].params.message == "question 0?"
    assert isinstance(again, types.InputRequiredResult) and again.input_requests["answer"].params.message == "question 1?"
    assert again.request_state != asked.request_state
    assert replayed.value.error.code == types.INVALID_PARAMS
