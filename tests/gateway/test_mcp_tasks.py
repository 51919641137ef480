"""MCP tasks: one MCP task is one gateway task, created on one gateway instance and followed from
another over the same backend (two gateways on one `topicbridge engine` process)."""

import asyncio

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.gateway.mcp_support import (LegacyPeer, TasksExtension, agents_on, cancel_task, card, echo, engine_fixture,
                                       get_task, poll_until_done, remote_backend, task_payload,
                                       two_gateways, until_released)


engine = engine_fixture()


@pytest.fixture
async def gateways(engine):
    async with two_gateways(engine) as pair:
        yield pair


@pytest.fixture
async def agents(engine, gateways):
    async with remote_backend(engine) as backend, agents_on(backend) as started:
        await started.serve("slow", until_released)
        await started.serve("echo", echo)
        await started.serve("quick-job", echo, card=card("Quick job", "Always a task.", task_support="required"))
        await started.serve("inline", until_released, card=card("Inline", "Never a task.", task_support="forbidden"))
        yield started


def tasks_client(url: str, **kw) -> Client:
    return Client(url, extensions=[TasksExtension()], **kw)


async def test_a_task_created_on_one_gateway_is_polled_and_fetched_on_another(gateways, agents):
    first, second = gateways
    async with tasks_client(first.url) as creator, tasks_client(second.url) as poller:
        created = await creator.session.call_tool("slow", {"message": "later"}, allow_claimed=True)
        assert created.result_type == "task" and created.status == "working"
        seen = await get_task(poller.session, created.task_id)
        assert seen["taskId"] == created.task_id and seen["status"] == "working"
        assert "result" not in seen and seen["ttlMs"] > 0 and seen["pollIntervalMs"] > 0
        agents.release.set()
        done = await poll_until_done(poller.session, created.task_id)
    assert done["status"] == "completed"
    assert done["result"]["content"] == [{"type": "text", "text": "released: later"}]
    assert done["result"]["_meta"]["io.topicbridge/task"]["taskId"] == created.task_id


async def test_a_tasks_aware_client_resolves_the_task_transparently(gateways, agents):
    first, _ = gateways
    async with tasks_client(first.url) as client:
        call = asyncio.create_task(client.call_tool("slow", {"message": "resolve me"}))
        while not agents.seen.get("slow"):
            await asyncio.sleep(0.01)  # sleep-ok: waiting for the worker to pick the task up
        agents.release.set()
        async with asyncio.timeout(10):
            result = await call
    assert result.content[0].text == "released: resolve me"


async def test_a_fast_call_answers_directly_even_to_a_tasks_aware_client(gateways, agents):
    first, _ = gateways
    async with tasks_client(first.url) as client:
        result = await client.session.call_tool("echo", {"message": "quick"}, allow_claimed=True)
    assert isinstance(result, types.CallToolResult) and result.content[0].text == "echo: quick"


async def test_cancelling_on_the_second_gateway_cancels_the_task(gateways, agents):
    first, second = gateways
    async with tasks_client(first.url) as creator, tasks_client(second.url) as other:
        created = await creator.session.call_tool("slow", {"message": "doomed"}, allow_claimed=True)
        assert _is_empty_ack(await cancel_task(other.session, created.task_id))
        async with asyncio.timeout(10):
            assert await agents.cancelled.get() == created.task_id
        done = await poll_until_done(other.session, created.task_id)
        assert done["status"] == "cancelled"
        assert _is_empty_ack(await cancel_task(other.session, created.task_id))   # idempotent


async def test_tasks_methods_require_the_extension_in_the_request(gateways, agents):
    first, _ = gateways
    async with Client(first.url) as plain:
        for call in (get_task, cancel_task):
            with pytest.raises(MCPError) as err:
                await call(plain.session, "0" * 32)
            assert err.value.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY
            assert "io.modelcontextprotocol/tasks" in err.value.data["requiredCapabilities"]["extensions"]
        with pytest.raises(MCPError) as err:
            await plain.call_tool("quick-job", {"message": "needs a task"})
        assert err.value.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY


async def test_an_unknown_task_id_is_invalid_params(gateways, agents):
    _, second = gateways
    async with tasks_client(second.url) as client:
        with pytest.raises(MCPError) as err:
            await get_task(client.session, "f" * 32)
    assert err.value.code == types.INVALID_PARAMS


async def test_required_and_forbidden_task_support_follow_the_card(gateways, agents):
    first, _ = gateways
    async with tasks_client(first.url) as client:
        required = await client.session.call_tool("quick-job", {"message": "fast anyway"}, allow_claimed=True)
        assert required.result_type == "task"
        assert (await poll_until_done(client.session, required.task_id))["result"]["content"][0]["text"] == \
            "echo: fast anyway"
        inline = asyncio.create_task(client.session.call_tool("inline", {"message": "wait for me"}, allow_claimed=True))
        while not agents.seen.get("inline"):
            await asyncio.sleep(0.01)  # sleep-ok: waiting for the worker to pick the task up
        # Twice the task wait (0.2 s): a call that made a task would have ended with it by then.
        done, _ = await asyncio.wait({inline}, timeout=0.4)
        assert not done
        agents.release.set()
        async with asyncio.timeout(10):
            assert (await inline).content[0].text == "released: wait for me"


async def test_2025_experimental_tasks_across_gateways(gateways, agents):
    first, second = gateways
    async with LegacyPeer(first.url) as peer:
        reply = await peer.request("tools/call", {"name": "slow", "arguments": {"message": "v1"}, "task": {"ttl": 60000}})
        task = reply["result"]["task"]
        assert task["status"] == "working" and task["ttl"] > 0 and "createdAt" in task
        assert "io.modelcontextprotocol/model-immediate-response" in reply["result"]["_meta"]
        forbidden = await peer.request("tools/call", {"name": "inline", "arguments": {"message": "x"}, "task": {}})
        assert forbidden["error"]["code"] == types.METHOD_NOT_FOUND
        required = await peer.request("tools/call", {"name": "quick-job", "arguments": {"message": "x"}})
        assert required["error"]["code"] == types.METHOD_NOT_FOUND
    async with Client(second.url, mode="legacy") as client:
        assert (await get_task(client.session, task["taskId"]))["status"] == "working"
        payload = asyncio.create_task(task_payload(client.session, task["taskId"]))   # blocks until the end
        agents.release.set()
        async with asyncio.timeout(10):
            result = await payload
        assert result["content"] == [{"type": "text", "text": "released: v1"}]
        assert result["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task["taskId"]}
        assert (await get_task(client.session, task["taskId"]))["status"] == "completed"
        with pytest.raises(MCPError) as err:
            await cancel_task(client.session, task["taskId"])
        assert err.value.code == types.INVALID_PARAMS and "terminal" in err.value.message


async def test_2025_cancel_sticks_and_tasks_result_reports_it(gateways, agents):
    first, second = gateways
    async with LegacyPeer(first.url) as peer:
        task = (await peer.request("tools/call", {"name": "slow", "arguments": {"message": "v1"}, "task": {}}))
    task_id = task["result"]["task"]["taskId"]
    async with Client(second.url, mode="legacy") as client:
        cancelled = await cancel_task(client.session, task_id)
        assert cancelled["status"] == "cancelled" and cancelled["taskId"] == task_id
        assert (await get_task(client.session, task_id))["status"] == "cancelled"
        result = await task_payload(client.session, task_id)
    assert result["isError"] is True and "cancelled" in result["content"][0]["text"]


async def test_modern_only_and_legacy_only_tasks_methods_are_not_found_in_the_other_era(gateways, agents):
    first, _ = gateways
    async with tasks_client(first.url) as modern:
        with pytest.raises(MCPError) as err:
            await task_payload(modern.session, "0" * 32)
        assert err.value.code == types.METHOD_NOT_FOUND
    async with LegacyPeer(first.url) as peer:
        reply = await peer.request("tasks/update", {"taskId": "0" * 32, "inputResponses": {}})
        assert reply["error"]["code"] == types.METHOD_NOT_FOUND


def _is_empty_ack(result: dict) -> bool:
    return result.get("resultType") == "complete" and set(result) <= {"resultType", "_meta"}
