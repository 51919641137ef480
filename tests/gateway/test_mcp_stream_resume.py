"""2025-11-25 tools/call streams resume on any instance (gateway/mcp/streams.py): two gateways on
one `topicbridge engine`; a call's SSE stream on the first is cut after some progress events, and
a GET with `Last-Event-ID` on the second gets a priming event, exactly the progress after that id
(read from the task's reply channel) and the call's result."""

from __future__ import annotations

import asyncio
import json

import pytest

from adapters.errors import BackendUnavailableError
from gateway.mcp.streams import parse
from gateway.tasks import channels
from tests.gateway.faults import FaultyBackend
from tests.gateway.mcp_support import agents_on, engine_fixture, remote_backend, two_gateways

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
           "MCP-Protocol-Version": "2025-11-25"}


async def stepper(agents, task):
    await task.working("step 1")
    await task.working("step 2")
    await agents.release.wait()
    await task.working("step 3")
    await task.complete(f"done: {task.text}")


async def pacer(agents, task):
    """Steps the test lets go one at a time, so the live stream carries each as its own event
    (events that arrive together may share one progress note)."""
    for step in (1, 2, 3):
        await task.working(f"step {step}")
        await agents.paced.get()
    await task.complete(f"done: {task.text}")


engine = engine_fixture()


@pytest.fixture
async def gateways(engine):
    async with two_gateways(engine) as pair:
        yield pair


@pytest.fixture
async def agents(engine, gateways):
    async with remote_backend(engine) as backend, agents_on(backend) as started:
        started.paced = asyncio.Queue()
        await started.serve("stepper", stepper)
        await started.serve("pacer", pacer)
        yield started


async def session_on(gw, headers: dict | None = None) -> dict:
    init = await gw.http.post("/mcp", headers={**HEADERS, **(headers or {})}, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    session = {**HEADERS, **(headers or {}), "Mcp-Session-Id": init.headers["mcp-session-id"]}
    await gw.http.post("/mcp", headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    return session


async def sse_events(response):
    """Each SSE event of a streamed response as a dict of its fields."""
    fields: dict = {}
    async for line in response.aiter_lines():
        if line:
            key, _, value = line.partition(":")
            fields[key] = value[1:] if value.startswith(" ") else value
        elif fields:
            yield fields
            fields = {}


async def test_a_call_stream_cut_on_one_instance_resumes_on_another_from_the_reply_channel(gateways, agents):
    first, second = gateways
    session = await session_on(first)
    call = {"jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": {
        "name": "stepper", "arguments": {"message": "go"}, "_meta": {"progressToken": "p-1"}}}
    seen = []
    async with asyncio.timeout(20):
        async with first.http.stream("POST", "/mcp", headers=session, json=call) as stream:
            async for event in sse_events(stream):
                seen.append(event)
                if "step 2" in event.get("data", ""):
                    break           # the connection drops here
    assert seen[0]["data"] == "" and seen[0]["retry"] == "1000"            # the priming event
    progress = [json.loads(e["data"]) for e in seen[1:]]
    assert all(p["method"] == "notifications/progress" for p in progress)
    cut = seen[-1]["id"]
    cursor = parse(cut)
    assert cursor is not None and cursor.ordinal == progress[-1]["params"]["progress"] and cursor.request_id == 42

    agents.release.set()
    resumed = []
    async with asyncio.timeout(20):
        async with second.http.stream("GET", "/mcp", headers={**HEADERS, "Accept": "text/event-stream",
                                                              "Last-Event-ID": cut}) as stream:
            assert stream.status_code == 200
            async for event in sse_events(stream):
                resumed.append(event)
    assert resumed[0] == {"id": cut, "retry": "1000", "data": ""}
    messages = [json.loads(e["data"]) for e in resumed[1:]]
    notes, response = messages[:-1], messages[-1]
    numbers = [n["params"]["progress"] for n in notes]
    assert numbers == list(range(cursor.ordinal + 1, cursor.ordinal + 1 + len(notes))) and numbers
    assert all(n["params"]["progressToken"] == "p-1" for n in notes)
    texts = " ".join(n["params"].get("message", "") for n in notes)
    assert "step 3" in texts and "step 1" not in texts and "step 2" not in texts
    assert all(parse(e["id"]) for e in resumed[1:-1])       # each resumable again, anywhere
    assert response["id"] == 42 and response["result"]["content"][0]["text"] == "done: go"


async def test_a_stream_resumed_after_the_call_ended_still_gives_each_note_the_text_of_its_step(gateways, agents):
    """The stored task already holds the end (a status without text) when the resume starts: each
    replayed note still says the step it followed, not the task's state now."""
    from a2a.types import a2a_pb2
    first, second = gateways
    cut, _ = await cut_call(first, await session_on(first), 43)
    agents.release.set()
    task_id = parse(cut).task_id
    async with asyncio.timeout(20):
        while (task := await second.gateway.tasks.get(task_id)) is None or \
                task.status.state != a2a_pb2.TASK_STATE_COMPLETED:
            await asyncio.sleep(0.02)       # sleep-ok: bounded wait until the task's end is stored
        response = await second.http.get("/mcp", headers={**HEADERS, "Accept": "text/event-stream",
                                                          "Last-Event-ID": cut})
    notes = [json.loads(e["data"]) for e in _events(response.text)[1:-1]]
    assert notes and notes[0]["params"].get("message") == "step 3"
    assert all(n["params"].get("message") == "step 3" for n in notes if "message" in n["params"])


async def test_resuming_from_a_later_cursor_replays_only_what_follows_it(gateways, agents):
    first, second = gateways
    session = await session_on(first)
    call = {"jsonrpc": "2.0", "id": "c-7", "method": "tools/call", "params": {
        "name": "pacer", "arguments": {"message": "again"}, "_meta": {"progressToken": 9}}}
    whole = []
    async with asyncio.timeout(20):
        async for event in sse_events(await first.http.send(
                first.http.build_request("POST", "/mcp", headers=session, json=call), stream=True)):
            whole.append(event)
            if "step" in event.get("data", ""):
                agents.paced.put_nowait(None)       # seen: the next step may go
    cursors = [e["id"] for e in whole if parse(e.get("id", ""))]
    assert len(cursors) >= 3
    async with asyncio.timeout(20):
        response = await second.http.get("/mcp", headers={**HEADERS, "Accept": "text/event-stream",
                                                          "Last-Event-ID": cursors[1]})
    replayed = [e.get("id") for e in _events(response.text)][1:-1]
    # every event after the cursor, one by one (the live stream may fold several into one progress)
    after = parse(cursors[1]).ordinal
    assert [parse(i).ordinal for i in replayed] == list(range(after + 1, parse(cursors[-1]).ordinal + 1))
    assert set(cursors[2:]) <= set(replayed)
    assert '"done: again"' in response.text and '"id":"c-7"' in response.text


async def cut_call(gw, session: dict, request_id, headers: dict | None = None) -> tuple[str, list]:
    """Start a stepper call on `gw` and drop its stream after the "step 2" progress: (its last id, events)."""
    call = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {
        "name": "stepper", "arguments": {"message": "go"}, "_meta": {"progressToken": "p"}}}
    seen = []
    async with asyncio.timeout(20):
        async with gw.http.stream("POST", "/mcp", headers={**session, **(headers or {})}, json=call) as stream:
            async for event in sse_events(stream):
                seen.append(event)
                if "step 2" in event.get("data", ""):
                    break
    return seen[-1]["id"], seen


async def test_a_backend_failure_while_resuming_ends_the_stream_and_the_same_id_resumes_later(gateways, agents):
    first, second = gateways
    cut, _ = await cut_call(first, await session_on(first), 5)
    tasks = second.gateway.tasks
    faulty = FaultyBackend(tasks.backend)
    faulty.fail_poll(channels.REPLY_TOPIC, BackendUnavailableError("lite", "the engine is away"))
    tasks.backend = faulty
    try:
        agents.release.set()
        get = {**HEADERS, "Accept": "text/event-stream", "Last-Event-ID": cut}
        async with asyncio.timeout(20):
            broken = await second.http.get("/mcp", headers=get)
        assert faulty.poll_failed.is_set() and broken.status_code == 200
        assert [e.get("id") for e in _events(broken.text)] == [cut]        # the priming event, no result
        async with asyncio.timeout(20):
            again = await second.http.get("/mcp", headers=get)
    finally:
        tasks.backend = faulty._inner
    assert '"done: go"' in again.text and '"id":5' in again.text


@pytest.mark.parametrize("last_event_id", ["tb1.garbage", "tb1.3.bm9wZQ.some-task",
                                           "tb1.1.WzAsMSwxXQ.no-such-task"])
async def test_a_malformed_or_unknown_cursor_is_404(gateways, last_event_id):
    _, second = gateways
    answer = await second.http.get("/mcp", headers={**HEADERS, "Accept": "text/event-stream",
                                                    "Last-Event-ID": last_event_id})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == -32600


def _events(text: str) -> list[dict]:
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) if ": " in line else (line.rstrip(":"), "")
                      for line in block.split("\n") if line)
        if fields:
            out.append(fields)
    return out


ALICE, BOB = "token-of-alice-0123456789", "token-of-bob-0123456789"


@pytest.fixture
async def guarded(engine):
    tokens = {"mcp_bearer_tokens": [ALICE, BOB]}
    async with two_gateways(engine, **tokens) as (first, second):
        yield first, second


async def test_only_the_caller_that_made_the_call_resumes_its_stream(guarded, agents):
    first, second = guarded
    alice = {"Authorization": f"Bearer {ALICE}"}
    session = await session_on(first, alice)
    cut, _ = await cut_call(first, session, 9, alice)
    agents.release.set()
    get = {**HEADERS, "Accept": "text/event-stream", "Last-Event-ID": cut}
    refused = await second.http.get("/mcp", headers={**get, "Authorization": f"Bearer {BOB}"})
    assert refused.status_code == 404
    async with asyncio.timeout(20):
        resumed = await second.http.get("/mcp", headers={**get, **alice})
    assert resumed.status_code == 200 and '"done: go"' in resumed.text
