"""`topicbridge mcp-stdio` as an IDE runs it, when things go wrong: a gateway that is down or
refuses the token answers the waiting request with a JSON-RPC error at once, says why in one line
on stderr and exits without waiting for the client to close stdin; `--embedded` keeps its engine
in the per-user data directory, not in the folder the editor started it in."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from gateway.mcp_stdio import embedded_data_dir
from tests.gateway.serving import running_gateway

from tests.spawned import ROOT, TOPICBRIDGE, clean_env, free_port

INITIALIZE = {"jsonrpc": "2.0", "id": 7, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                         "clientInfo": {"name": "ide", "version": "1"}}}


async def first_answer(*args: str) -> tuple[dict, int, list[str]]:
    """Send initialize and keep stdin open: the answer, the exit status and stderr's lines."""
    process = await asyncio.create_subprocess_exec(*TOPICBRIDGE, "mcp-stdio", *args, cwd=ROOT, env=clean_env(),
                                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE)
    try:
        process.stdin.write(json.dumps(INITIALIZE).encode() + b"\n")
        await process.stdin.drain()
        async with asyncio.timeout(60):
            answer = json.loads(await process.stdout.readline())
            code = await process.wait()         # stdin is still open: the proxy does not wait for it
        return answer, code, (await process.stderr.read()).decode().splitlines()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_gateway_that_is_down_gets_the_request_an_error_at_once_and_one_line_on_stderr():
    url = f"http://127.0.0.1:{free_port()}/mcp"
    answer, code, stderr = await first_answer("--url", url)
    assert answer["id"] == 7 and answer["error"]["code"] == -32603
    assert answer["error"]["message"].startswith(f"cannot reach the gateway at {url}")
    assert code == 1 and stderr == [f"topicbridge mcp-stdio: {answer['error']['message']}"]


async def test_a_refused_token_gets_the_request_an_error_naming_the_refusal_and_the_proxy_exits():
    settings = {"lite": {"data_dir": None}, "gateway": {"mcp_bearer_tokens": ["the-right-one"]}}
    async with running_gateway(settings) as gw:
        answer, code, stderr = await first_answer("--url", gw.url, "--token", "a-wrong-one")
    assert answer["id"] == 7 and "refused the token (HTTP 401)" in answer["error"]["message"]
    assert code == 1 and len(stderr) == 1 and "refused the token" in stderr[0]


def test_embedded_data_goes_to_the_user_data_directory_unless_lite_data_dir_is_set(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert embedded_data_dir(".data/engine") == str(tmp_path / "topicbridge" / "engine")
    assert embedded_data_dir("/srv/engine") == "/srv/engine"
    assert embedded_data_dir(None) is None


async def test_embedded_mcp_stdio_started_in_any_folder_leaves_that_folder_alone(tmp_path):
    editor_folder, data_home = tmp_path / "project", tmp_path / "data"
    editor_folder.mkdir()
    env = clean_env(lite__listen="") | {"XDG_DATA_HOME": str(data_home), "PYTHONPATH": str(ROOT)}
    server = StdioServerParameters(command=sys.executable, args=["-m", "gateway.cli", "mcp-stdio", "--embedded"],
                                   cwd=str(editor_folder), env=env)
    async with asyncio.timeout(60):
        async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
    assert {"find_capabilities"} <= {tool.name for tool in tools.tools}
    assert (data_home / "topicbridge" / "engine").is_dir()
    assert os.listdir(editor_folder) == []
