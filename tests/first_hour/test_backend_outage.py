"""A backend that goes away while the gateway runs: calls are answered at once with 503,
`Retry-After` and the reason (JSON-RPC -32603 on the A2A and MCP endpoints) instead of waiting
for the backend's timeouts; once it is back, calls pass again. The backend is a real
`topicbridge engine` process, stopped and started on the same port."""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway.serving import running_gateway
from tests.lite_engine.engine_process import EngineProcess

SEND = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
        "params": {"message": {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "hello"}]}}}
CALL = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "x"}}}


async def changed(watch, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        await watch.changed.wait()
    watch.changed.clear()


@pytest.fixture
def engine(tmp_path):
    with EngineProcess(tmp_path / "engine", settings={"session_timeout": 5.0}) as process:
        yield process


async def test_calls_to_a_stopped_backend_fail_at_once_with_503_and_pass_again_once_it_is_back(engine):
    settings = {"backend": "lite", "lite": {"mode": "remote", "target": engine.target}, "gateway": {"demo": True}}
    async with running_gateway(settings) as gw:
        watch = gw.gateway.backend_watch
        engine.stop()
        await changed(watch)
        a2a = await gw.http.post("/agents/echo/", json=SEND, headers={"A2A-Version": "1.0"})
        rest = await gw.http.post("/agents/echo/message:send", json=SEND["params"], headers={"A2A-Version": "1.0"})
        mcp = await gw.http.post("/mcp", json=CALL, headers={"Accept": "application/json, text/event-stream"})
        ready = await gw.http.get("/readyz")
        for answer in (a2a, rest, mcp):
            assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
        for answer in (a2a, mcp):
            assert answer.json()["error"]["code"] == -32603
            assert answer.json()["error"]["message"].startswith("the backend is unavailable: ")
        assert rest.json()["error"]["status"] == "UNAVAILABLE"
        assert ready.json()["backend"]["ok"] is False   # and says why
        engine.start()                                  # on the same port
        await changed(watch)
        back = await gw.http.post("/agents/echo/", json=SEND, headers={"A2A-Version": "1.0"})
    assert watch.reason is None and back.status_code != 503
