"""Capabilities as MCP tools, seen by the official `mcp` client over streamable HTTP, both eras."""

import asyncio

import mcp_types as types
import pytest
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.gateway.mcp_support import (ADD_INPUT, ADD_OUTPUT, agents_on, broken, card, echo, refusing, settings,
                                       structured)
from tests.gateway.remote_agents import running_agent
from tests.gateway.serving import running_gateway

ERAS = ["auto", "legacy"]          # auto negotiates 2026-07-28 with this gateway


@pytest.fixture
async def gw():
    async with running_gateway(settings()) as running:
        yield running


@pytest.fixture
async def agents(gw):
    async with agents_on(gw.gateway.backend) as started:
        yield started


@pytest.fixture
async def catalog(agents):
    await agents.serve("echo", echo, card=card("Echo", "Repeats the message it is given.", skills=[
        {"id": "echo", "name": "Echo", "description": "Says your words back", "tags": ["text"],
         "examples": ["say hello back"]}]))
    await agents.serve("add", structured, announce=False, input_schema=ADD_INPUT, output_schema=ADD_OUTPUT,
                       card=card("Adder", "Adds two integers."))
    await agents.serve("broken", broken)
    await agents.serve("refusing", refusing)
    return agents


@pytest.mark.parametrize("mode", ERAS)
async def test_every_capability_is_a_tool_with_its_card_and_schemas(gw, catalog, mode):
    async with Client(gw.url, mode=mode) as client:
        assert client.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
        assert client.server_capabilities.tools.list_changed
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {"echo", "add", "broken", "refusing", "find_capabilities", "get_task_result"} <= set(tools)
    echo_tool, add_tool = tools["echo"], tools["add"]
    assert echo_tool.title == "Echo"
    assert "Repeats the message" in echo_tool.description and "say hello back" in echo_tool.description
    assert echo_tool.input_schema["required"] == ["message"]
    assert set(echo_tool.input_schema["properties"]) == {"message", "data", "context_id", "task_id"}
    assert add_tool.input_schema == ADD_INPUT and add_tool.output_schema == ADD_OUTPUT
    if mode == "legacy":
        assert echo_tool.execution.task_support == "optional"


@pytest.mark.parametrize("mode", ERAS)
async def test_calling_a_native_capability_returns_its_answer(gw, catalog, mode):
    async with Client(gw.url, mode=mode) as client:
        result = await client.call_tool("echo", {"message": "hello"})
    assert not result.is_error
    assert [c.text for c in result.content] == ["echo: hello"]
    assert result.meta["io.topicbridge/task"]["state"] == "TASK_STATE_COMPLETED"
    assert catalog.seen["echo"][0].text == "hello"


@pytest.mark.parametrize("mode", ERAS)
async def test_a_capability_with_an_output_schema_answers_with_structured_content(gw, catalog, mode):
    async with Client(gw.url, mode=mode) as client:
        await client.list_tools()
        result = await client.call_tool("add", {"a": 2, "b": 3})
    assert not result.is_error
    assert result.structured_content == {"sum": 5}
    assert catalog.seen["add"][0].data == [{"a": 2, "b": 3}]


async def test_find_capabilities_ranks_agents_by_what_they_do(gw, catalog):
    async with Client(gw.url) as client:
        await client.list_tools()
        result = await client.call_tool("find_capabilities", {"query": "add two numbers", "limit": 3})
    names = [c["name"] for c in result.structured_content["capabilities"]]
    assert names[0] == "add"
    assert "add" in result.content[0].text


@pytest.mark.parametrize("mode", ERAS)
async def test_arguments_failing_the_input_schema_are_a_tool_error_the_model_can_fix(gw, catalog, mode):
    async with Client(gw.url, mode=mode) as client:
        missing = await client.call_tool("echo", {"text": "no message field"})
        wrong_type = await client.call_tool("add", {"a": "two", "b": 3})
    assert missing.is_error and "message" in missing.content[0].text
    assert wrong_type.is_error and "'two' is not of type 'integer'" in wrong_type.content[0].text
    assert "echo" not in catalog.seen and "add" not in catalog.seen


@pytest.mark.parametrize("mode", ERAS)
async def test_an_unknown_tool_is_a_protocol_error(gw, catalog, mode):
    async with Client(gw.url, mode=mode) as client:
        with pytest.raises(MCPError) as err:
            await client.call_tool("no-such-agent", {"message": "hi"})
        assert err.value.code == types.INVALID_PARAMS and "Unknown tool" in err.value.message
        assert not (await client.call_tool("echo", {"message": "still serving"})).is_error


@pytest.mark.parametrize("mode", ERAS)
async def test_a_failing_agent_is_a_tool_error_and_a_refusing_one_a_protocol_error(gw, catalog, mode):
    async with Client(gw.url, mode=mode) as client:
        failed = await client.call_tool("broken", {"message": "go"})
        with pytest.raises(MCPError) as refused:
            await client.call_tool("refusing", {"message": "go"})
    assert failed.is_error and "this agent always fails" in failed.content[0].text
    assert refused.value.code == types.INTERNAL_ERROR and "do not take such requests" in refused.value.message


async def test_a_registration_is_announced_on_a_2026_listen_stream(gw, agents):
    async with Client(gw.url) as client:
        before = {t.name for t in (await client.list_tools()).tools}
        async with client.listen(tools_list_changed=True) as subscription:
            await agents.serve("newcomer", echo)
            async with asyncio.timeout(10):
                event = await anext(aiter(subscription))
        assert type(event).__name__ == "ToolsListChanged"
        after = {t.name for t in (await client.list_tools()).tools}
    assert after - before == {"newcomer"}


async def test_a_registration_is_announced_to_a_2025_session(gw, agents):
    changed = asyncio.Event()

    async def on_message(message):
        if isinstance(message, types.ServerNotification) and message.method == "notifications/tools/list_changed":
            changed.set()

    async with Client(gw.url, mode="legacy", message_handler=on_message) as client:
        await client.list_tools()
        await agents.serve("newcomer", echo)
        async with asyncio.timeout(10):
            await changed.wait()
        assert "newcomer" in {t.name for t in (await client.list_tools()).tools}


async def test_a_worker_going_away_changes_the_tool_description(gw, agents):
    worker = await agents.serve("fleeting", echo)
    async with Client(gw.url, mode="legacy") as client:
        assert "Currently" not in {t.name: t for t in (await client.list_tools()).tools}["fleeting"].description
        await worker.close()
        agents.workers.remove(worker)
        async with asyncio.timeout(15):
            while "Currently unavailable" not in (await _tool(client, "fleeting")).description:
                await asyncio.sleep(0.1)  # sleep-ok: health follows heartbeats that expire


async def _tool(client, name):
    return {t.name: t for t in (await client.list_tools()).tools}[name]


async def test_client_session_over_streamable_http_client(gw, catalog):
    async with streamable_http_client(gw.url) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        assert init.server_info.name == "topicbridge"
        assert init.capabilities.tasks.requests.tools.call is not None
        tools = await session.list_tools()
        assert "echo" in {t.name for t in tools.tools}
        result = await session.call_tool("echo", {"message": "via ClientSession"})
    assert result.content[0].text == "echo: via ClientSession"


@pytest.mark.parametrize("mode", ERAS)
async def test_an_a2a_agent_registered_by_url_is_a_tool_too(gw, mode):
    async with running_agent(streaming=True) as agent:
        capability = await gw.gateway.bridges.register(agent.base_url)
        async with Client(gw.url, mode=mode) as client:
            tool = {t.name: t for t in (await client.list_tools()).tools}[capability.name]
            assert "Summarises PDF documents" in tool.description and "Summarise this quarterly report" in \
                tool.description
            answer = await client.call_tool(capability.name, {"message": "the quarterly report"})
            question = await client.call_tool(capability.name, {"message": "ask"})
            failure = await client.call_tool(capability.name, {"message": "fail"})
    assert answer.content[0].text == "summary of: the quarterly report" and not answer.is_error
    assert "which pages?" in question.content[0].text and "task_id" in question.content[0].text
    assert question.meta["io.topicbridge/task"]["state"] == "TASK_STATE_INPUT_REQUIRED"
    assert failure.is_error and "cannot read that" in failure.content[0].text
