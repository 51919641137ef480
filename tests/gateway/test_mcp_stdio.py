"""`topicbridge mcp-stdio` driven by the official `stdio_client`: as a proxy to a running gateway,
and embedding a gateway on a shared engine."""

import os
import sys
from pathlib import Path

import mcp_types as types
import pytest
from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from tests.gateway.mcp_support import (TasksExtension, agents_on, echo, poll_until_done, remote_backend,
                                       settings, three_steps, until_released)
from tests.gateway.serving import running_gateway
from tests.lite_engine.engine_process import EngineProcess

ROOT = Path(__file__).resolve().parents[2]


def command(*args: str, **env: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "gateway.cli", "mcp-stdio", *args], cwd=str(ROOT),
                                 env={**os.environ, "PYTHONPATH": str(ROOT), **env})


@pytest.fixture(scope="module")
def engine():
    with EngineProcess(None, settings={"session_timeout": 5.0, "tick": 0.005}) as process:
        yield process.target


@pytest.fixture
async def agents(engine):
    async with remote_backend(engine) as backend, agents_on(backend) as started:
        await started.serve("echo", echo)
        await started.serve("steps", three_steps)
        await started.serve("slow", until_released)
        await started.serve("regional", echo, input_schema={
            "type": "object", "properties": {"message": {"type": "string"},
                                             "region": {"type": "string", "x-mcp-header": "Region"}},
            "required": ["message"]})
        yield started


@pytest.fixture
async def gw(engine, agents):
    async with running_gateway(settings(engine)) as running:
        yield running


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_proxy_carries_tools_progress_and_calls_to_a_running_gateway(gw, agents, mode):
    progress = []

    async def on_progress(value, total, message):
        progress.append(value)

    async with Client(command("--url", gw.url), mode=mode) as client:
        assert client.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
        assert {"echo", "steps", "find_capabilities"} <= {t.name for t in (await client.list_tools()).tools}
        assert (await client.call_tool("echo", {"message": "over stdio"})).content[0].text == "echo: over stdio"
        assert (await client.call_tool("steps", {"message": "go"}, progress_callback=on_progress)).content
        missing = await client.call_tool("echo", {})
        mirrored = await client.call_tool("regional", {"message": "from eu", "region": "eu-west-1"})
    assert missing.is_error
    assert not mirrored.is_error       # on 2026-07-28 the gateway checks Mcp-Param-Region, which the proxy added
    assert agents.seen["regional"][-1].data == [{"message": "from eu", "region": "eu-west-1"}]
    assert len(progress) >= 3


async def test_the_proxy_carries_2026_tasks(gw, agents):
    async with Client(command("--url", gw.url), extensions=[TasksExtension()]) as client:
        created = await client.session.call_tool("slow", {"message": "stdio task"}, allow_claimed=True)
        assert created.result_type == "task"
        agents.release.set()
        done = await poll_until_done(client.session, created.task_id)
    assert done["result"]["content"][0]["text"] == "released: stdio task"


async def test_stdio_client_with_client_session_against_an_embedded_gateway(engine, agents):
    params = command("--embedded", TOPICBRIDGE_LITE__MODE="remote", TOPICBRIDGE_LITE__TARGET=engine)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        assert init.server_info.name == "topicbridge"
        tools = await session.list_tools()
        assert "echo" in {t.name for t in tools.tools}
        result = await session.call_tool("echo", {"message": "embedded"})
        assert result.content[0].text == "echo: embedded"
        with pytest.raises(MCPError) as err:
            await session.call_tool("ghost", {})
    assert err.value.code == types.INVALID_PARAMS
