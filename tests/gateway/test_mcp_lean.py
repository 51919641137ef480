"""The lean tools/call path (gateway/mcp_lean.py) answers exactly as the SDK path does.

Two real gateways side by side, each with the same native agents: one with the lean path (the
default), one with `mcp_lean_dispatch = false` (every request through the SDK). The same bytes go
to both; status, headers and body must match once the ids that differ per task are masked. Each
case also says whether the lean path answered it itself or passed it on to the SDK.
"""

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass

import httpx
import mcp_types as types
import pytest
from a2a.types import a2a_pb2
from mcp import Client
from mcp.server import Server, _streamable_http_modern
from mcp.server.runner import ServerRunner
from mcp.shared.exceptions import MCPError

from gateway.mcp.lean import plain_request, plain_text_wire_result, plain_wire_result
from gateway.mcp.results import tool_result
from gateway.mcp.tools import Catalog
from gateway.registry.capabilities import Capability
from gateway.tasks import fold

from tests.gateway.mcp_support import (ADD_INPUT, ADD_OUTPUT, agents_on, broken, card, echo, refusing,
                                       settings, structured, until_released, wait_until)
from tests.gateway.serving import running_gateway

MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "lean-test", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}
TOOLS = {"echo", "add", "broken", "refusing", "slow", "tasky", "regional"}
REGIONAL_INPUT = {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
                  "required": ["region"]}
_HEX_ID = re.compile(rb"[0-9a-f]{32}")


def headers(name: str | None = "echo", method: str = "tools/call", **extra) -> dict:
    out = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
           "MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    if name is not None:
        out["Mcp-Name"] = name
    return out | extra


def call(name: str, arguments=None, *, meta: dict | None = None, request_id=7, **params) -> bytes:
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": name, "arguments": {"message": "hi"} if arguments is None else arguments,
                       "_meta": ENVELOPE if meta is None else meta, **params}}
    return json.dumps(body).encode()


async def serve_agents(agents) -> None:
    await agents.serve("echo", echo)
    await agents.serve("add", structured, announce=False, input_schema=ADD_INPUT, output_schema=ADD_OUTPUT,
                       card=card("Adder", "Adds two integers."))
    await agents.serve("broken", broken)
    await agents.serve("refusing", refusing)
    await agents.serve("slow", until_released)
    await agents.serve("tasky", echo, card=card("Tasky", "Must be called as a task.", task_support="required"))
    await agents.serve("regional", structured, announce=False, input_schema=REGIONAL_INPUT,
                       card=card("Regional", "Routes on its region argument."))


@dataclass
class Side:
    running: object
    agents: object

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def lean(self):
        return self.running.gateway.mcp.lean_path


@dataclass
class Pair:
    lean: Side
    sdk: Side
    http: httpx.AsyncClient

    async def exchange(self, body: bytes, request_headers: dict) -> tuple[tuple, tuple, bool]:
        """The same request to both gateways: (lean's answer, sdk's answer, whether the lean path took it)."""
        before = self.lean.lean.answered
        lean = _answer(await self.http.post(self.lean.url, content=body, headers=request_headers))
        took = self.lean.lean.answered > before
        sdk = _answer(await self.http.post(self.sdk.url, content=body, headers=request_headers))
        return lean, sdk, took


def _answer(response: httpx.Response) -> tuple:
    """Status, headers (without date/server) and body, task and context ids masked."""
    kept = [(k, v) for k, v in response.headers.multi_items() if k not in ("date", "server")]
    return response.status_code, kept, _HEX_ID.sub(b"<id>", response.content)


@contextlib.asynccontextmanager
async def side(**gateway_settings):
    async with running_gateway(settings(**gateway_settings)) as running:
        async with agents_on(running.gateway.backend) as agents:
            await serve_agents(agents)
            await wait_until(lambda: _catalog_has(running, TOOLS))
            yield Side(running, agents)


async def _catalog_has(running, names) -> bool:
    await running.gateway.mcp.refresh()
    return names <= set(running.gateway.mcp.catalog.entries)


@pytest.fixture
async def pair():
    # Calls that may become MCP tasks wait 5 s before they do: long enough for both to answer alike.
    async with side(mcp_task_wait_seconds=5.0) as lean, side(mcp_task_wait_seconds=5.0, mcp_lean_dispatch=False) \
            as sdk, httpx.AsyncClient(timeout=20) as http:
        assert lean.lean is not None and sdk.lean is None
        yield Pair(lean, sdk, http)


def _result(answer: tuple) -> dict:
    return json.loads(answer[2])


# ---------------------------------------------------------------- the default schema's shortcut

@pytest.mark.parametrize("arguments", [
    {"message": "x"}, {"message": "x", "data": {"k": [1]}, "context_id": "c"}, {"message": ""},
    {"message": "x", "data": None}, {"message": "x", "data": []}, {"message": "x", "context_id": 3},
    {"message": 1}, {}, {"message": "x", "other": 1}, [], "x", None,
])
def test_the_default_schema_shortcut_agrees_with_the_validator(arguments):
    entry = Catalog([Capability("echo", {"name": "Echo"})]).get("echo")
    assert entry.default_input
    assert (entry.invalid_arguments(arguments) is None) == entry.validator.is_valid(arguments)


@pytest.mark.parametrize("request_id", [7, 0, -1, 2 ** 70, "a", "", True, False, 1.0, None, [], {}])
@pytest.mark.parametrize("jsonrpc", ["2.0", "2", 2.0, None, "missing"])
@pytest.mark.parametrize("method, params", [
    ("tools/call", {"name": "echo"}), ("tools/call", {}), ("tools/call", None), ("tools/call", []),
    ("tools/call", "missing"), (1, {"name": "echo"}), (None, {}), ("missing", {}),
])
def test_the_plain_request_check_agrees_with_the_model(request_id, jsonrpc, method, params):
    decoded = {"id": request_id, "jsonrpc": jsonrpc, "method": method, "params": params}
    decoded = {k: v for k, v in decoded.items() if v != "missing"}
    plain = plain_request(decoded)
    try:
        model = types.JSONRPCRequest.model_validate(decoded)
    except ValueError:
        assert plain is None
        return
    if plain is not None:
        assert plain == (model.id, model.method, model.params)
        assert type(plain[0]) is type(model.id)


# ---------------------------------------------------------------- the result's direct wire form

def _task(state, *texts, status_text=None, data=None) -> a2a_pb2.Task:
    task = a2a_pb2.Task(id="t1", context_id="c1", status=a2a_pb2.TaskStatus(state=state))
    if texts or data is not None:
        artifact = task.artifacts.add(artifact_id="a1", parts=[a2a_pb2.Part(text=t) for t in texts])
        if data is not None:
            artifact.parts.add().data.struct_value.update(data)
    if status_text is not None:
        task.status.message.parts.add(text=status_text)
    return task


_SERIALIZER = ServerRunner(Server("topicbridge", version="0.1.0", title="topicbridge gateway"), None, None)


@pytest.mark.parametrize("task, output_schema", [
    (_task(a2a_pb2.TASK_STATE_COMPLETED, "echo: hi"), None),
    (_task(a2a_pb2.TASK_STATE_COMPLETED, "ünïcode ✓", "", "\u0000 and \"quotes\""), None),
    (_task(a2a_pb2.TASK_STATE_COMPLETED), None),
    (_task(a2a_pb2.TASK_STATE_FAILED, status_text="always fails"), None),
    (_task(a2a_pb2.TASK_STATE_CANCELED), None),
    (_task(a2a_pb2.TASK_STATE_INPUT_REQUIRED, status_text="which one?"), None),
    (_task(a2a_pb2.TASK_STATE_COMPLETED, data={"sum": 5}), ADD_OUTPUT),
    (_task(a2a_pb2.TASK_STATE_COMPLETED, data={"k": [1, 2.5]}), None),
])
def test_the_direct_wire_form_of_a_result_is_what_the_sdks_serializer_makes(task, output_schema):
    result = tool_result(task, output_schema) | {"resultType": "complete"}
    expected = _SERIALIZER._serialize("tools/call", MODERN, dict(result))
    direct = plain_wire_result(result, _SERIALIZER.server.server_info_stamp)
    if "structuredContent" in result:
        assert direct is None           # not a plain result: the SDK's serializer shapes it
    else:
        assert json.dumps(direct) == json.dumps(expected)      # key order included


def _replied(*texts) -> a2a_pb2.Task:
    task = _task(a2a_pb2.TASK_STATE_COMPLETED, "an artifact")
    task.status.message.CopyFrom(a2a_pb2.Message(role=a2a_pb2.ROLE_AGENT, parts=[a2a_pb2.Part(text=t) for t in texts]))
    fold.mark_reply(task.status.message)
    return task


def _two_artifacts() -> a2a_pb2.Task:
    task = _task(a2a_pb2.TASK_STATE_COMPLETED, "first", "ünï")
    task.artifacts.add(artifact_id="a2", parts=[a2a_pb2.Part(text="x" * 40)])
    task.artifacts.add(artifact_id="a3")
    return task


def _odd_part(**part) -> a2a_pb2.Task:
    task = _task(a2a_pb2.TASK_STATE_COMPLETED, "plain")
    task.artifacts[0].parts.add(**part)
    return task


@pytest.mark.parametrize("task", [
    _task(a2a_pb2.TASK_STATE_COMPLETED, "echo: hi"),
    _task(a2a_pb2.TASK_STATE_COMPLETED, "ünïcode ✓", "", "\u0000 and \"quotes\""),
    _task(a2a_pb2.TASK_STATE_COMPLETED),
    _task(a2a_pb2.TASK_STATE_COMPLETED, status_text="only a status"),
    _task(a2a_pb2.TASK_STATE_FAILED, status_text="always fails"),
    _task(a2a_pb2.TASK_STATE_CANCELED),
    _task(a2a_pb2.TASK_STATE_INPUT_REQUIRED, status_text="which one?"),
    _task(a2a_pb2.TASK_STATE_COMPLETED, data={"k": [1, 2.5]}),
    _replied("a message reply"),
    _two_artifacts(),
    _odd_part(text="see", filename="https://example.com/x"),
    _odd_part(url="https://example.com/x"),
    _odd_part(raw=b"\x00\x01", media_type="image/png"),
])
@pytest.mark.parametrize("inline_limit", [None, 0, 5, 6, 40, 1 << 20])
def test_the_plain_text_wire_result_is_the_two_steps_in_one(task, inline_limit):
    stamp = _SERIALIZER.server.server_info_stamp
    direct = plain_text_wire_result(task, inline_limit, stamp)
    if direct is None:      # the lean path takes the two steps
        return
    result = tool_result(task, None, inline_limit) | {"resultType": "complete"}
    assert json.dumps(direct) == json.dumps(plain_wire_result(result, stamp))      # key order included
    assert json.dumps(direct) == json.dumps(_SERIALIZER._serialize("tools/call", MODERN, dict(result)))


def test_the_plain_text_wire_result_covers_the_common_answers():
    stamp = _SERIALIZER.server.server_info_stamp
    assert plain_text_wire_result(_task(a2a_pb2.TASK_STATE_COMPLETED, "echo: hi"), 1 << 20, stamp) is not None
    assert plain_text_wire_result(_two_artifacts(), 40, stamp) is not None
    assert plain_text_wire_result(_two_artifacts(), 39, stamp) is None         # "x" * 40 is linked
    assert plain_text_wire_result(_two_artifacts(), 6, stamp) is None          # "first" + "ünï" is 10 bytes
    assert plain_text_wire_result(_task(a2a_pb2.TASK_STATE_COMPLETED, "x"), None, None) is None


@pytest.mark.parametrize("result", [
    {"content": [{"type": "image", "data": "AA==", "mimeType": "image/png"}], "resultType": "complete"},
    {"content": [{"type": "text", "text": "x", "annotations": {"priority": 1}}], "resultType": "complete"},
    {"content": [{"type": "text", "text": "x"}], "isError": False, "resultType": "complete"},
    {"content": [{"type": "text", "text": "x"}], "resultType": "task"},
    {"content": [{"type": "text", "text": "x"}], "_meta": {"other": 1}, "resultType": "complete"},
])
def test_anything_but_a_plain_result_is_left_to_the_sdks_serializer(result):
    assert plain_wire_result(result, {"name": "topicbridge"}) is None


# ---------------------------------------------------------------- the lean path's own answers

@pytest.mark.parametrize("body, request_headers, check", [
    pytest.param(call("echo"), headers(), lambda r: r["result"]["content"] == [{"type": "text", "text": "echo: hi"}],
                 id="success"),
    pytest.param(call("add", {"a": 2, "b": 3}), headers("add"), lambda r: r["result"]["structuredContent"] == {
        "sum": 5}, id="structured-content"),
    pytest.param(call("broken", {"message": "go"}), headers("broken"), lambda r: r["result"]["isError"] is True
                 and "always fails" in r["result"]["content"][0]["text"], id="tool-error"),
    pytest.param(call("refusing", {"message": "go"}), headers("refusing"),
                 lambda r: r["error"]["code"] == types.INTERNAL_ERROR and "do not take" in r["error"]["message"],
                 id="rejected-json-rpc-error"),
    pytest.param(call("echo", request_id="a-string-id"), headers(), lambda r: r["id"] == "a-string-id",
                 id="string-id"),
    pytest.param(call("echo", meta={k: v for k, v in ENVELOPE.items() if "clientInfo" not in k}), headers(),
                 lambda r: "result" in r, id="no-client-info"),
])
async def test_the_lean_path_answers_byte_for_byte_like_the_sdk(pair, body, request_headers, check):
    lean, sdk, took = await pair.exchange(body, request_headers)
    assert took
    assert lean == sdk
    assert lean[0] == 200 and ("content-type", "application/json") in lean[1]
    assert check(_result(lean))


# ---------------------------------------------------------------- what it leaves to the SDK

ENVELOPE_JSON = json.dumps(ENVELOPE)


@pytest.mark.parametrize("body, request_headers, status, code", [
    pytest.param(call("ghost"), headers("ghost"), 400, types.INVALID_PARAMS, id="unknown-tool"),
    pytest.param(call("echo", {"message": 42}), headers(), 200, None, id="bad-arguments"),
    pytest.param(call("echo", {"text": "no message"}), headers(), 200, None, id="missing-argument"),
    pytest.param(call("echo"), headers(**{"MCP-Protocol-Version": "1999-01-01"}), 400, types.HEADER_MISMATCH,
                 id="protocol-version-header-disagrees"),
    pytest.param(call("echo", meta={**ENVELOPE, "io.modelcontextprotocol/protocolVersion": "1999-01-01"}),
                 headers(**{"MCP-Protocol-Version": "1999-01-01"}), 400, types.UNSUPPORTED_PROTOCOL_VERSION,
                 id="unsupported-protocol-version"),
    pytest.param(call("echo")[:-7], headers(), 400, types.PARSE_ERROR, id="bad-json"),
    pytest.param(b'[' + call("echo") + b']', headers(), 400, types.INVALID_REQUEST, id="batch"),
    pytest.param(call("echo").replace(b'"2.0"', b'"1.0"'), headers(), 400, types.INVALID_REQUEST,
                 id="not-json-rpc-2"),
    pytest.param(call("echo", request_id=True), headers(), 400, types.INVALID_REQUEST, id="bool-id"),
    pytest.param(call("echo", meta={}), headers(), 400, types.INVALID_PARAMS, id="no-envelope"),
    pytest.param(call("echo"), headers("other"), 400, types.HEADER_MISMATCH, id="name-header-disagrees"),
    pytest.param(call("echo"), headers(None), 400, types.HEADER_MISMATCH, id="no-name-header"),
    pytest.param(call("echo"), headers(method="tools/list"), 400, types.HEADER_MISMATCH, id="method-header"),
    pytest.param(call("echo", arguments=[1]), headers(), 400, types.INVALID_PARAMS, id="arguments-not-an-object"),
    pytest.param(call("echo", meta={**ENVELOPE, "io.modelcontextprotocol/clientInfo": {"name": 5}}), headers(),
                 400, types.INVALID_PARAMS, id="bad-client-info"),
    pytest.param(call("echo", task={"ttl": 1000}), headers(), None, None, id="extra-param"),
    pytest.param(call("find_capabilities", {"query": "echo"}), headers("find_capabilities"), 200, None,
                 id="a-gateway-tool"),
    pytest.param(call("echo"), headers(**{"Mcp-Param-Region": "eu"}), 200, None, id="mcp-param-header"),
    pytest.param(call("regional", {"region": "eu"}), headers("regional"), 400, types.HEADER_MISMATCH,
                 id="declared-mcp-param-header-missing"),
    pytest.param(call("regional", {"region": "eu"}), headers("regional", **{"Mcp-Param-Region": "eu"}), 200, None,
                 id="declared-mcp-param-header"),
    pytest.param(call("tasky"), headers("tasky"), 400, types.MISSING_REQUIRED_CLIENT_CAPABILITY,
                 id="tool-requires-tasks"),
    pytest.param(call("echo"), headers(Accept="application/json"), 406, None, id="no-sse-accept"),
    pytest.param(call("echo"), headers(**{"Content-Type": "text/plain"}), 400, None, id="wrong-content-type"),
    pytest.param(call("echo", meta={**ENVELOPE, "io.modelcontextprotocol/clientCapabilities": {
        "extensions": {"io.modelcontextprotocol/tasks": {}}}}), headers(), None, None, id="tasks-extension"),
])
async def test_what_the_lean_path_does_not_take_gets_the_sdks_answer(pair, body, request_headers, status, code):
    lean, sdk, took = await pair.exchange(body, request_headers)
    assert not took
    if status is not None:
        assert lean[0] == status
    if code is not None:
        assert _result(lean)["error"]["code"] == code
    assert lean == sdk


async def test_a_progress_token_goes_to_the_sdk_and_gets_progress(pair):
    body = call("echo", meta={**ENVELOPE, "progressToken": "p1"})
    lean, sdk, took = await pair.exchange(body, headers())
    assert not took
    assert lean[:2] == sdk[:2] and ("content-type", "text/event-stream") in lean[1]
    for answer in (lean, sdk):              # how many progress events there are depends on timing
        assert b"notifications/progress" in answer[2]
    assert _frames(lean[2])[-1] == _frames(sdk[2])[-1]      # the result


def _frames(stream: bytes) -> list[bytes]:
    """The SSE frames of a response body, in order."""
    return [frame for frame in stream.split(b"\r\n\r\n") if frame]


async def test_a_duplicated_routing_header_is_the_sdks_to_refuse(pair):
    doubled = [(k, v) for k, v in headers().items()] + [("Mcp-Name", "echo")]
    lean = await pair.http.post(pair.lean.url, content=call("echo"), headers=doubled)
    sdk = await pair.http.post(pair.sdk.url, content=call("echo"), headers=doubled)
    assert lean.status_code == sdk.status_code == 400
    assert lean.json() == sdk.json() and lean.json()["error"]["code"] == types.HEADER_MISMATCH


# ---------------------------------------------------------------- the official client as the peer

async def test_the_mcp_client_sees_the_same_results_through_either_path(pair):
    seen = {}
    for name, gw in (("lean", pair.lean), ("sdk", pair.sdk)):
        before = pair.lean.lean.answered
        async with Client(gw.url) as client:
            ok = await client.call_tool("echo", {"message": "hello"})
            added = await client.call_tool("add", {"a": 20, "b": 22})
            failed = await client.call_tool("broken", {"message": "go"})
            bad = await client.call_tool("add", {"a": "two", "b": 3})
            with pytest.raises(MCPError) as unknown:
                await client.call_tool("ghost", {"message": "hi"})
            with pytest.raises(MCPError) as refused:
                await client.call_tool("refusing", {"message": "go"})
        if name == "lean":
            assert pair.lean.lean.answered - before == 4      # echo, add, broken, refusing
        seen[name] = [_masked(r.model_dump(by_alias=True, exclude_none=True)) for r in (ok, added, failed, bad)] + \
            [(e.value.code, e.value.message, _masked(e.value.data)) for e in (unknown, refused)]
    assert seen["lean"] == seen["sdk"]
    assert seen["lean"][1]["structuredContent"] == {"sum": 42} and seen["lean"][2]["isError"]


def _masked(value):
    return json.loads(_HEX_ID.sub(b"<id>", json.dumps(value).encode())) if value is not None else None


# ---------------------------------------------------------------- long calls

async def test_a_call_past_the_sse_window_streams_pings_then_the_result_like_the_sdk(pair, monkeypatch):
    monkeypatch.setattr(_streamable_http_modern, "_SSE_PING_INTERVAL", 0.2)
    answers = []
    for gw in (pair.lean, pair.sdk):
        before = pair.lean.lean.answered
        gw.agents.release.clear()
        async with pair.http.stream("POST", gw.url, content=call("slow", {"message": "later"}),
                                    headers=headers("slow")) as response:
            chunks = aiter(response.aiter_raw())
            first = await anext(chunks)               # the stream committed: keep-alive pings
            gw.agents.release.set()
            rest = b"".join([c async for c in chunks])
        if gw is pair.lean:
            assert pair.lean.lean.answered == before + 1
        *pings, final = _frames(first + rest)
        assert pings and set(pings) == {b": ping"} and first.startswith(b": ping\r\n\r\n")
        assert json.loads(final.removeprefix(b"event: message\r\ndata: "))["result"]["content"][0]["text"] == \
            "released: later"
        answers.append((response.status_code, [(k, v) for k, v in response.headers.multi_items()
                                                if k not in ("date", "server")], _HEX_ID.sub(b"<id>", final)))
    lean, sdk = answers
    assert lean == sdk
    assert lean[0] == 200 and ("content-type", "text/event-stream") in lean[1]


async def test_closing_the_request_cancels_the_task_on_the_lean_path(pair):
    before = pair.lean.lean.answered
    posting = asyncio.get_running_loop().create_task(
        pair.http.post(pair.lean.url, content=call("slow", {"message": "never"}), headers=headers("slow")))
    await wait_until(_seen(pair.lean.agents, "slow"))
    posting.cancel()                # the client gives up: its connection closes
    with contextlib.suppress(asyncio.CancelledError):
        await posting
    assert pair.lean.lean.answered == before + 1
    async with asyncio.timeout(10):
        task_id = await pair.lean.agents.cancelled.get()
    task = await wait_until(_state(pair.lean.running, task_id, a2a_pb2.TASK_STATE_CANCELED))
    assert task.id == pair.lean.agents.seen["slow"][0].task_id


async def test_a_call_outliving_its_wait_hands_out_the_task_on_both_paths():
    async with side(mcp_call_wait_seconds=0.3) as lean, side(mcp_call_wait_seconds=0.3, mcp_lean_dispatch=False) \
            as sdk, httpx.AsyncClient(timeout=20) as http:
        both = Pair(lean, sdk, http)
        first, second, took = await both.exchange(call("slow", {"message": "take your time"}), headers("slow"))
        assert took and first == second
        result = _result(first)["result"]
        assert "still running after 0.3 s" in result["content"][0]["text"]
        task_id = lean.agents.seen["slow"][0].task_id
        lean.agents.release.set()
        async with Client(lean.url) as client:
            done = await client.call_tool("get_task_result", {"task_id": task_id, "wait_seconds": 5})
        assert done.content[0].text == "released: take your time"


def _seen(agents, name):
    async def check():
        return bool(agents.seen.get(name))
    return check


def _state(running, task_id, state):
    async def check():
        task = await running.gateway.tasks.get(task_id)
        return task if task is not None and task.status.state == state else None
    return check


async def test_a_task_handed_out_by_the_lean_path_belongs_to_the_callers_token():
    alice, bob = "token-of-alice-0123456789", "token-of-bob-0123456789"
    async with side(mcp_bearer_tokens=[alice, bob], mcp_call_wait_seconds=0.3) as lean, \
            httpx.AsyncClient(timeout=20) as http:
        async def post(token, name, arguments):
            return await http.post(lean.url, content=call(name, arguments), headers=headers(
                name, Authorization=f"Bearer {token}"))

        assert (await post("guess", "slow", {"message": "x"})).status_code == 401
        assert lean.lean.answered == 0
        handed = (await post(alice, "slow", {"message": "mine"})).json()["result"]
        assert lean.lean.answered == 1
        task_id = handed["_meta"]["io.topicbridge/task"]["taskId"]
        as_bob = (await post(bob, "get_task_result", {"task_id": task_id, "wait_seconds": 0})).json()["result"]
        as_alice = (await post(alice, "get_task_result", {"task_id": task_id, "wait_seconds": 0})).json()["result"]
        assert as_bob["isError"] and "No task" in as_bob["content"][0]["text"]
        assert "still running" in as_alice["content"][0]["text"]


async def test_a_lean_call_tells_the_worker_its_caller_sees_no_intermediate_event(pair):
    """The lean path serves only calls without a progress token, task or elicitation: its worker
    may skip WORKING for a quick task (and a bridge its stream). A call with a progress token
    goes to the SDK path and is not marked."""
    from gateway.workers import call_mode
    seen = []

    async def record(_agents, task):
        seen.append(call_mode.caller_blocks(task.envelope.metadata))
        await task.complete("ok")

    await pair.lean.agents.serve("blocks", record)
    await wait_until(lambda: _catalog_has(pair.lean.running, TOOLS | {"blocks"}))
    before = pair.lean.lean.answered
    plain = await pair.http.post(pair.lean.url, content=call("blocks"), headers=headers("blocks"))
    assert plain.status_code == 200 and pair.lean.lean.answered == before + 1
    progress = await pair.http.post(pair.lean.url, content=call("blocks", meta={**ENVELOPE, "progressToken": "p"}),
                                    headers=headers("blocks"))
    assert progress.status_code == 200 and pair.lean.lean.answered == before + 1
    assert seen == [True, False]
