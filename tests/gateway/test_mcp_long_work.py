"""Long work through MCP: progress from status events, cancellation, and calls that outlive their wait."""

import asyncio

import anyio
import pytest
from a2a.types import a2a_pb2
from mcp import Client

from tests.gateway.mcp_support import agents_on, settings, three_steps, until_released, wait_until
from tests.gateway.serving import running_gateway

ERAS = ["auto", "legacy"]


@pytest.fixture
async def gw():
    async with running_gateway(settings(mcp_call_wait_seconds=1.0)) as running:
        yield running


@pytest.fixture
async def agents(gw):
    async with agents_on(gw.gateway.backend) as started:
        await started.serve("steps", three_steps)
        await started.serve("slow", until_released)
        yield started


@pytest.mark.parametrize("mode", ERAS)
async def test_status_events_become_progress_notifications(gw, agents, mode):
    progress = []

    async def on_progress(value, total, message):
        progress.append((value, message))

    async with Client(gw.url, mode=mode) as client:
        result = await client.call_tool("steps", {"message": "go"}, progress_callback=on_progress)
    assert result.content[0].text == "all three steps done"
    values = [v for v, _ in progress]
    assert len(values) >= 3 and values == sorted(set(values))
    assert {"step 1 of 3", "step 2 of 3", "step 3 of 3"} & {m for _, m in progress}


@pytest.mark.parametrize("mode", ERAS)
async def test_a_client_cancelling_its_call_cancels_the_task(gw, agents, mode):
    async with Client(gw.url, mode=mode) as client:
        async with anyio.create_task_group() as calls:
            calls.start_soon(client.call_tool, "slow", {"message": "never finishes"})
            await wait_until(_seen(agents, "slow"))
            calls.cancel_scope.cancel()
        async with asyncio.timeout(10):
            task_id = await agents.cancelled.get()
        task = await wait_until(_state(gw, task_id, a2a_pb2.TASK_STATE_CANCELED))
        assert task.id == agents.seen["slow"][0].task_id
        assert not (await client.call_tool("steps", {"message": "still serving"})).is_error


@pytest.mark.parametrize("mode", ERAS)
async def test_a_call_outliving_its_wait_returns_the_task_id_and_get_task_result_fetches_it(gw, agents, mode):
    async with Client(gw.url, mode=mode) as client:
        first = await client.call_tool("slow", {"message": "take your time"})
        task_id = first.meta["io.topicbridge/task"]["taskId"]
        assert not first.is_error and task_id in first.content[0].text and "get_task_result" in first.content[0].text
        pending = await client.call_tool("get_task_result", {"task_id": task_id, "wait_seconds": 0})
        assert "still running" in pending.content[0].text
        agents.release.set()
        done = await client.call_tool("get_task_result", {"task_id": task_id, "wait_seconds": 5})
    assert not done.is_error
    assert done.content[0].text == "released: take your time"


async def test_get_task_result_for_an_unknown_task_is_a_tool_error(gw, agents):
    async with Client(gw.url) as client:
        result = await client.call_tool("get_task_result", {"task_id": "0" * 32})
    assert result.is_error and "No task" in result.content[0].text


def _seen(agents, name):
    async def check():
        return bool(agents.seen.get(name))
    return check


def _state(gw, task_id, state):
    async def check():
        task = await gw.gateway.tasks.get(task_id)
        return task if task is not None and task.status.state == state else None
    return check


async def _asks(agents, task):
    if task.turn == 0:
        await task.require_input("which size?")
    else:
        await task.complete(f"one {task.text} coffee")


@pytest.mark.parametrize("mode", ERAS)
async def test_a_task_that_asks_for_input_is_answered_by_calling_again_with_its_task_id(gw, agents, mode):
    await agents.serve("barista", _asks)
    async with Client(gw.url, mode=mode) as client:
        asked = await client.call_tool("barista", {"message": "a coffee"})
        task_id = asked.meta["io.topicbridge/task"]["taskId"]
        assert "which size?" in asked.content[0].text and task_id in asked.content[0].text
        done = await client.call_tool("barista", {"message": "large", "task_id": task_id})
        assert done.content[0].text == "one large coffee" and not done.is_error
        assert done.meta["io.topicbridge/task"]["taskId"] == task_id
        for bad in (task_id, "0" * 32):        # now completed; never existed
            with pytest.raises(Exception) as refused:
                await client.call_tool("barista", {"message": "again", "task_id": bad})
            assert "task_id" in str(refused.value)
        assert (await client.call_tool("barista", {"message": "x", "task_id": 7})).is_error     # not a string
        assert not (await client.call_tool("steps", {"message": "still serving"})).is_error
