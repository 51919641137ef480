"""An agent's question inside an MCP task (gateway/mcp/task_input.py), with the official mcp client
as the peer, across two gateways on one engine: on 2026-07-28 the task goes `input_required` with
`inputRequests` on tasks/get and `tasks/update` answers it (partially too); on 2025-11-25 tasks/get
says `input_required` and a blocking `tasks/result` asks with `elicitation/create`. A question asked
at once comes before the task (MRTR, then the task). Malformed answers get the protocol's errors."""

from __future__ import annotations

import asyncio
import json

import httpx2
import mcp_types as types
import pytest
from a2a.types import a2a_pb2
from google.protobuf import json_format
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.gateway.mcp_support import (LegacyPeer, TasksExtension, agents_on, card, engine_fixture, get_task,
                                       poll_until_done, remote_backend, task_payload, two_gateways,
                                       update_task, wait_until)

ALICE, BOB = "token-of-alice-0123456789", "token-of-bob-0123456789"
PAGES = {"type": "object", "title": "pages", "properties": {"pages": {"type": "integer"}}, "required": ["pages"]}
COLOUR = {"type": "object", "title": "colour", "properties": {"colour": {"type": "boolean"}}}


def _forms(*schemas) -> list[a2a_pb2.Part]:
    parts = []
    for schema in schemas:
        part = a2a_pb2.Part(media_type="application/schema+json")
        json_format.ParseDict(schema, part.data)
        parts.append(part)
    return parts


def asking_after_release(*schemas):
    """Works until the test releases it (so the call has become a task), then asks with
    `schemas`; the next turn completes with what it was told."""
    async def handler(agents, task):
        if task.turn == 0:
            await task.working("getting ready")
            await agents.release.wait()
            await task.status(a2a_pb2.TASK_STATE_INPUT_REQUIRED, "Some details, please?", parts=_forms(*schemas))
            return
        await task.complete(json.dumps({"turn": task.turn, "told": task.data[0] if task.data else task.text}))
    return handler


async def asking_at_once(agents, task):
    if task.turn == 0:
        await task.status(a2a_pb2.TASK_STATE_INPUT_REQUIRED, "How many pages?", parts=_forms(PAGES))
        return
    await task.complete(json.dumps({"told": task.data[0]}))


engine = engine_fixture()


@pytest.fixture
async def gateways(engine):
    tokens = {"mcp_bearer_tokens": [ALICE, BOB]}
    async with two_gateways(engine, **tokens) as (first, second):
        yield first, second


@pytest.fixture
async def agents(engine, gateways):
    async with remote_backend(engine) as backend, agents_on(backend) as started:
        await started.serve("printer", asking_after_release(PAGES))
        await started.serve("survey", asking_after_release(PAGES, COLOUR))
        await started.serve("booking", asking_at_once, card=card("Booking", "Always a task.", task_support="required"))
        yield started


def answering(*results):
    asked = []

    async def callback(context, params):
        asked.append(params)
        return results[len(asked) - 1]
    return callback, asked


def modern(gw, token: str = ALICE, **kw) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
    return Client(streamable_http_client(gw.url, http_client=http), extensions=[TasksExtension()], **kw)


def legacy(gw, token: str = ALICE, **kw) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
    return Client(streamable_http_client(gw.url, http_client=http), mode="legacy", **kw)


async def _until_status(session, task_id: str, status: str) -> dict:
    async def reached():
        task = await get_task(session, task_id)
        return task if task["status"] == status else None
    return await wait_until(reached)


async def _created_task(client, agents, name: str = "printer") -> str:
    created = await client.session.call_tool(name, {"message": "go"}, allow_claimed=True)
    assert created.result_type == "task" and created.status == "working"
    agents.release.set()
    return created.task_id


async def test_a_question_makes_the_task_input_required_and_tasks_update_on_another_gateway_continues_it(
        gateways, agents):
    first, second = gateways
    callback, _ = answering()
    async with modern(first, elicitation_callback=callback) as creator, \
            modern(second, elicitation_callback=callback) as other:
        task_id = await _created_task(creator, agents)
        waiting = await _until_status(other.session, task_id, "input_required")
        [(key, request)] = waiting["inputRequests"].items()
        assert request["method"] == "elicitation/create" and request["params"]["message"] == "Some details, please?"
        assert request["params"]["requestedSchema"]["properties"] == PAGES["properties"]
        ack = await update_task(other.session, task_id, {key: {"action": "accept", "content": {"pages": 3}}})
        assert ack == {"resultType": "complete"} or set(ack) <= {"resultType", "_meta"}
        done = await poll_until_done(creator.session, task_id)
    assert done["status"] == "completed"
    assert json.loads(done["result"]["content"][0]["text"]) == {"turn": 1, "told": {"pages": 3}}


async def test_a_partial_update_keeps_the_task_waiting_for_the_other_request_until_both_answers_continue_it(
        gateways, agents):
    first, second = gateways
    callback, _ = answering()
    async with modern(first, elicitation_callback=callback) as one, modern(second, elicitation_callback=callback) as two:
        task_id = await _created_task(one, agents, "survey")
        keys = sorted((await _until_status(one.session, task_id, "input_required"))["inputRequests"])
        assert [k.rsplit("-", 1)[0] for k in keys] == ["colour", "pages"]
        await update_task(two.session, task_id, {keys[1]: {"action": "accept", "content": {"pages": 2}}})
        still = await get_task(one.session, task_id)
        assert still["status"] == "input_required" and list(still["inputRequests"]) == [keys[0]]
        # an answered key is satisfied: answering it again changes nothing
        await update_task(one.session, task_id, {keys[1]: {"action": "accept", "content": {"pages": 99}},
                                                 keys[0]: {"action": "accept", "content": {"colour": True}}})
        done = await poll_until_done(two.session, task_id)
    assert json.loads(done["result"]["content"][0]["text"])["told"] == {"pages": {"pages": 2}, "colour": {"colour": True}}


async def test_answers_given_at_once_on_two_gateways_both_count(gateways, agents):
    first, second = gateways
    callback, _ = answering()
    async with modern(first, elicitation_callback=callback) as one, modern(second, elicitation_callback=callback) as two:
        task_id = await _created_task(one, agents, "survey")
        keys = sorted((await _until_status(one.session, task_id, "input_required"))["inputRequests"])
        await asyncio.gather(
            update_task(one.session, task_id, {keys[0]: {"action": "accept", "content": {"colour": False}}}),
            update_task(two.session, task_id, {keys[1]: {"action": "accept", "content": {"pages": 7}}}))
        done = await poll_until_done(one.session, task_id)
    assert json.loads(done["result"]["content"][0]["text"])["told"] == {"pages": {"pages": 7}, "colour": {"colour": False}}


async def test_malformed_updates_get_the_protocols_answers(gateways, agents):
    first, _ = gateways
    callback, _ = answering()
    async with modern(first, elicitation_callback=callback) as client, \
            modern(first, BOB, elicitation_callback=callback) as bob:
        created = await client.session.call_tool("printer", {"message": "go"}, allow_claimed=True)
        # not waiting for input yet: the response is for no outstanding key, so it is ignored
        ignored = await update_task(client.session, created.task_id, {"pages-1": {"action": "accept", "content": {}}})
        assert set(ignored) <= {"resultType", "_meta"}
        assert (await get_task(client.session, created.task_id))["status"] == "working"
        agents.release.set()
        key = next(iter((await _until_status(client.session, created.task_id, "input_required"))["inputRequests"]))
        for task_id, who in (("f" * 32, client), (created.task_id, bob)):     # unknown; another caller's
            with pytest.raises(MCPError) as unknown:
                await update_task(who.session, task_id, {key: {"action": "accept", "content": {"pages": 1}}})
            assert unknown.value.error.code == types.INVALID_PARAMS
        with pytest.raises(MCPError) as shapeless:
            await update_task(client.session, created.task_id, {key: {"pages": 1}})
        assert shapeless.value.error.code == types.INVALID_PARAMS and key in shapeless.value.error.message
        assert (await update_task(client.session, created.task_id, {"no-such-key": {"x": 1}})).get("resultType") \
            == "complete"
        await update_task(client.session, created.task_id, {key: {"action": "decline"}})
        assert (await poll_until_done(client.session, created.task_id))["status"] == "cancelled"


async def test_a_client_without_elicitation_sees_the_question_as_the_tasks_result(gateways, agents):
    first, _ = gateways
    async with modern(first) as client:
        task_id = await _created_task(client, agents)
        done = await poll_until_done(client.session, task_id)
    assert done["status"] == "completed" and "needs more input" in done["result"]["content"][0]["text"]


async def test_a_question_asked_at_once_comes_before_the_task_and_the_answer_becomes_the_task(gateways, agents):
    first, second = gateways
    callback, _ = answering()
    async with modern(first, elicitation_callback=callback) as one, modern(second, elicitation_callback=callback) as two:
        asked = await one.session.call_tool("booking", {"message": "book"}, allow_input_required=True)
        assert isinstance(asked, types.InputRequiredResult)
        [(key, request)] = asked.input_requests.items()
        created = await two.session.call_tool("booking", {"message": "book"}, allow_claimed=True,
                                              input_responses={key: types.ElicitResult(action="accept",
                                                                                       content={"pages": 4})},
                                              request_state=asked.request_state)
        assert created.result_type == "task" and "requestState" not in created.model_dump(by_alias=True)
        done = await poll_until_done(one.session, created.task_id)
    assert json.loads(done["result"]["content"][0]["text"]) == {"told": {"pages": 4}}


# ---------------------------------------------------------------- 2025-11-25

async def _legacy_task(gw, agents) -> str:
    async with LegacyPeer(gw.url, {"Authorization": f"Bearer {ALICE}"}) as peer:
        reply = await peer.request("tools/call", {"name": "printer", "arguments": {"message": "go"}, "task": {}})
    agents.release.set()
    return reply["result"]["task"]["taskId"]


async def test_2025_tasks_result_asks_the_question_with_the_related_task_and_the_answer_completes_it(
        gateways, agents):
    first, second = gateways
    task_id = await _legacy_task(first, agents)
    callback, asked = answering(types.ElicitResult(action="accept", content={"pages": 5}))
    async with legacy(second, elicitation_callback=callback) as client:
        assert (await _until_status(client.session, task_id, "input_required"))["taskId"] == task_id
        result = await task_payload(client.session, task_id)
        assert (await get_task(client.session, task_id))["status"] == "completed"
    assert [a.message for a in asked] == ["Some details, please?"]
    assert asked[0].meta["io.modelcontextprotocol/related-task"] == {"taskId": task_id}
    assert json.loads(result["content"][0]["text"]) == {"turn": 1, "told": {"pages": 5}}
    assert result["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task_id}


async def test_2025_a_declined_question_cancels_the_task_and_other_callers_cannot_reach_it(gateways, agents):
    first, second = gateways
    task_id = await _legacy_task(first, agents)
    callback, _ = answering(types.ElicitResult(action="decline"))
    async with legacy(second, BOB, elicitation_callback=callback) as bob:
        for call in (get_task, task_payload):
            with pytest.raises(MCPError) as foreign:
                await call(bob.session, task_id)
            assert foreign.value.error.code == types.INVALID_PARAMS
    async with legacy(second, elicitation_callback=callback) as client:
        with pytest.raises(MCPError) as unknown:
            await task_payload(client.session, "f" * 32)
        assert unknown.value.error.code == types.INVALID_PARAMS
        await _until_status(client.session, task_id, "input_required")
        result = await task_payload(client.session, task_id)
        assert result["isError"] is True and "cancelled" in result["content"][0]["text"]
        assert (await get_task(client.session, task_id))["status"] == "cancelled"
