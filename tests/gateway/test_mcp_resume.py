"""Resumable 2025-11-25 MCP streams (gateway/mcp/events.py): a tools/call answered over SSE starts
with a priming event and a retry field, every event has an id, and a GET with `Last-Event-ID`
replays what came after that id on the same session. The store is bounded."""

from __future__ import annotations

import asyncio

import mcp_types as types
import pytest

from gateway.mcp.events import RecentEvents
from gateway.workers.worker import Worker

from .serving import running_gateway

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
           "MCP-Protocol-Version": "2025-11-25"}


async def _echo(task) -> None:
    await task.working("on it")
    await task.complete(f"echo: {task.text}")


def events_of(text: str) -> list[dict]:
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if fields:
            out.append(fields)
    return out


@pytest.fixture
async def gw(tmp_path):
    async with running_gateway({"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005}}) as running:
        worker = Worker(running.gateway.backend, "echo", _echo, card={"name": "echo", "description": "echo"})
        await worker.start()
        try:
            yield running
        finally:
            await worker.close()


async def test_a_dropped_call_stream_is_replayed_after_its_last_event_id(gw):
    init = await gw.http.post("/mcp", headers=HEADERS, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    session = {**HEADERS, "Mcp-Session-Id": init.headers["mcp-session-id"]}
    await gw.http.post("/mcp", headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    call = await gw.http.post("/mcp", headers=session, json={
        "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "hi"}}})
    events = events_of(call.text)
    assert events[0].get("retry") == "1000" and "id" in events[0] and "result" not in events[0].get("data", "")
    assert all("id" in e for e in events) and '"echo: hi"' in events[-1]["data"]
    replayed = []
    async with asyncio.timeout(10):
        async with gw.http.stream("GET", "/mcp", headers={**session, "Accept": "text/event-stream",
                                                          "Last-Event-ID": events[0]["id"]}) as stream:
            assert stream.status_code == 200
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    replayed.append(line[6:])
                    if '"echo: hi"' in line:
                        break
    assert '"echo: hi"' in replayed[-1]


async def test_the_store_replays_only_later_events_and_forgets_old_streams():
    store = RecentEvents(max_streams=2, per_stream=3)
    message = types.JSONRPCNotification(jsonrpc="2.0", method="notifications/progress")
    first = await store.store_event("a", None)
    ids = [await store.store_event("a", message) for _ in range(4)]
    sent = []

    async def send(event):
        sent.append(event.event_id)

    assert await store.replay_events_after(ids[1], send) == "a" and sent == [ids[2], ids[3]]
    assert first == "a/0"
    await store.store_event("b", None)
    await store.store_event("c", None)          # "a" is the least recently written: gone
    assert await store.replay_events_after(ids[1], send) is None
    assert await store.replay_events_after("no-such-id", send) is None


async def _session(gw) -> dict:
    init = await gw.http.post("/mcp", headers=HEADERS, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    session = {**HEADERS, "Mcp-Session-Id": init.headers["mcp-session-id"]}
    await gw.http.post("/mcp", headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    return session


async def test_a_session_cannot_replay_another_sessions_stream_with_the_same_request_id(gw):
    alice, bob = await _session(gw), await _session(gw)
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "mine"}}}
    first = events_of((await gw.http.post("/mcp", headers=alice, json=call)).text)
    await gw.http.post("/mcp", headers=bob, json=call | {"params": {"name": "echo", "arguments": {"message": "bob's"}}})
    async with asyncio.timeout(10):
        foreign = await gw.http.get("/mcp", headers={**bob, "Accept": "text/event-stream",
                                                      "Last-Event-ID": first[0]["id"]})
    assert "mine" not in foreign.text and "bob's" not in foreign.text
