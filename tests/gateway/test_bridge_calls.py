"""How a bridge calls its agent depends on how the gateway's caller waits: a blocking SendMessage
reaches a streaming agent as one plain SendMessage (nobody sees intermediate events), a stream
or a call that returns at once as SendStreamingMessage. Real gateway (uvicorn, embedded engine),
real a2a-sdk agents on port 0."""

import asyncio
import json

import pytest
from a2a.server.agent_execution import AgentExecutor
from a2a.server.tasks import TaskUpdater
from a2a.types import a2a_pb2

from .remote_agents import Agent, running_agent
from .serving import running_gateway

TOKEN = "calls-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "A2A-Version": "1.0"}
SETTINGS = {"backend": "lite", "lite": {"data_dir": None, "tick": 0.005}, "gateway": {"bearer_tokens": [TOKEN]}}


def request(method: str, text: str, **configuration) -> dict:
    params = {"message": {"messageId": f"m-{text}", "role": "ROLE_USER", "parts": [{"text": text}]}}
    if configuration:
        params["configuration"] = configuration
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


@pytest.fixture
async def bridged():
    """A gateway with a streaming a2a-sdk agent registered as `summariser`."""
    async with running_gateway(SETTINGS) as gw, running_agent(streaming=True) as agent:
        await gw.gateway.bridges.register(agent.base_url, name="summariser")
        yield gw, agent


async def test_a_blocking_send_reaches_a_streaming_agent_as_one_plain_send_message(bridged):
    gw, agent = bridged
    answer = (await gw.http.post("/agents/summariser/", json=request("SendMessage", "the memo"),
                                 headers=HEADERS)).json()
    task = answer["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert [p["text"] for a in task["artifacts"] for p in a["parts"]] == ["summary of: the memo"]
    assert agent.executor.methods == ["SendMessage"]


async def test_a_streaming_caller_gets_the_agents_stream(bridged):
    gw, agent = bridged
    states = []
    async with asyncio.timeout(10):
        async with gw.http.stream("POST", "/agents/summariser/", json=request("SendStreamingMessage", "the memo"),
                                  headers={**HEADERS, "Accept": "text/event-stream"}) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    result = json.loads(line[5:])["result"]
                    states.append(result.get("statusUpdate", {}).get("status", {}).get("state"))
    assert states[-1] == "TASK_STATE_COMPLETED"
    assert agent.executor.methods == ["SendStreamingMessage"]


async def test_a_send_that_returns_at_once_still_streams_from_the_agent(bridged):
    gw, agent = bridged
    answer = (await gw.http.post("/agents/summariser/", json=request("SendMessage", "the memo",
                                                                     returnImmediately=True),
                                 headers=HEADERS)).json()
    task_id = answer["result"]["task"]["id"]
    async with asyncio.timeout(10):
        async with gw.http.stream("POST", "/agents/summariser/", headers={**HEADERS, "Accept": "text/event-stream"},
                                  json={"jsonrpc": "2.0", "id": 2, "method": "SubscribeToTask",
                                        "params": {"id": task_id}}) as response:
            async for _ in response.aiter_lines():
                pass
    assert agent.executor.methods == ["SendStreamingMessage"]


@pytest.mark.parametrize("text", ["the memo", "fail", "message", "ask"])
async def test_the_lean_blocking_call_answers_as_the_sdk_client_does(text):
    """The same blocking SendMessage through a gateway whose bridge writes the call itself (posted
    on its own HTTP/1.1 client, or on httpx) and one whose bridge goes through the a2a-sdk client:
    the same answer, ids and timestamps aside."""
    answers = []
    async with running_agent(streaming=True) as agent:
        for options in ({}, {"bridge_lean_http": "httpx"}, {"bridge_lean_call": False}):
            settings = {**SETTINGS, "gateway": {**SETTINGS["gateway"], **options}}
            async with running_gateway(settings) as gw:
                await gw.gateway.bridges.register(agent.base_url, name="summariser")
                answer = (await gw.http.post("/agents/summariser/", json=request("SendMessage", text),
                                             headers=HEADERS)).json()["result"]
                answers.append(_without_ids(answer))
        assert agent.executor.methods == ["SendMessage"] * 3
    assert answers[0] == answers[1] == answers[2]
    assert answers[0]


def _without_ids(doc):
    if isinstance(doc, dict):
        return {k: _without_ids(v) for k, v in doc.items() if k not in ("id", "contextId", "taskId", "messageId",
                                                                         "timestamp", "artifactId", "deadline")}
    if isinstance(doc, list):
        return [_without_ids(v) for v in doc]
    return doc


@pytest.mark.parametrize("doc, says", [
    ([], "expected an object"),
    ({"jsonrpc": "2.0", "id": 1, "error": {"code": -32001, "message": "Task not found"}}, "-32001: Task not found"),
    ({"jsonrpc": "2.0", "id": 1, "error": "boom"}, "error is not an object"),
    ({"jsonrpc": "2.0", "id": 1}, "no result object"),
    ({"jsonrpc": "2.0", "id": 1, "result": {}}, "neither task nor message"),
    ({"jsonrpc": "2.0", "id": 1, "result": {"task": {"history": "not a list"}}}, "Invalid A2A answer"),
])
def test_an_answer_that_is_not_a_send_message_result_is_a_client_error_naming_what_was_wrong(doc, says):
    from a2a.client.errors import A2AClientError
    from gateway.workers import lean_call
    with pytest.raises(A2AClientError, match=says):
        lean_call.answer(doc)


class Held(AgentExecutor):
    """Works on each task until `release` is set."""

    def __init__(self) -> None:
        self.entered, self.release = asyncio.Event(), asyncio.Event()

    async def execute(self, context, queue) -> None:
        updater = TaskUpdater(queue, context.task_id, context.context_id)
        await queue.enqueue_event(a2a_pb2.Task(id=context.task_id, context_id=context.context_id,
                                               status=a2a_pb2.TaskStatus(state=a2a_pb2.TASK_STATE_SUBMITTED),
                                               history=[context.message]))
        self.entered.set()
        await self.release.wait()
        await updater.add_artifact([a2a_pb2.Part(text="done")], name="result")
        await updater.complete()

    async def cancel(self, context, queue) -> None:
        await TaskUpdater(queue, context.task_id, context.context_id).cancel()


async def test_a_blocking_call_still_running_after_a_moment_shows_the_task_working_to_those_who_look():
    agent = Agent(streaming=True)
    agent.executor = Held()
    await agent.start()
    try:
        async with running_gateway(SETTINGS) as gw:
            await gw.gateway.bridges.register(agent.base_url, name="summariser")
            call = asyncio.create_task(gw.http.post("/agents/summariser/", json=request("SendMessage", "hold"),
                                                    headers=HEADERS))
            async with asyncio.timeout(10):
                await agent.executor.entered.wait()
                [task_id] = gw.gateway.tasks._relay.active
                while (await gw.gateway.tasks.get(task_id)).status.state != a2a_pb2.TASK_STATE_WORKING:
                    await asyncio.sleep(0.05)   # sleep-ok: GetTask until WORKING_AFTER has passed, bounded
                agent.executor.release.set()
                answer = (await call).json()["result"]["task"]
    finally:
        await agent.stop()
    assert answer["status"]["state"] == "TASK_STATE_COMPLETED"
    assert answer["artifacts"][0]["parts"] == [{"text": "done"}]


_STATUS = {"state": "TASK_STATE_COMPLETED", "timestamp": "2026-01-02T03:04:05.678Z",
           "message": {"messageId": "s", "role": "ROLE_AGENT", "parts": [{"text": "done"}]}}


@pytest.mark.parametrize("task", [
    {"id": "t", "contextId": "c", "status": _STATUS,
     "artifacts": [{"artifactId": "a", "name": "echo", "parts": [{"text": "echo: hi"}]}],
     "history": [{"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}], "contextId": "c"}]},
    {"id": "t", "kind": "task", "status": {"state": "TASK_STATE_FAILED"}},
    {"id": "t", "status": _STATUS, "metadata": {"k": "v"}},
    {"id": "t", "artifacts": [{"artifactId": "a", "parts": [{"url": "https://x/y", "mediaType": "text/plain"}]}]},
    {"id": "t"},
])
def test_an_agents_task_answer_reads_as_json_format_reads_it(task):
    from google.protobuf import json_format
    from gateway.workers import lean_call
    event = lean_call.answer({"jsonrpc": "2.0", "id": 1, "result": {"task": task}})
    assert event.task == json_format.ParseDict(task, a2a_pb2.Task(), ignore_unknown_fields=True)
    assert event.WhichOneof("payload") == "task"


@pytest.mark.parametrize("body", [b'{"a":"\xc3\xa9"}', b"{", b"", b"[1]", '{"a":1}'.encode("utf-16-le"),
                                  b'\xef\xbb\xbf{"a":1}', b"{\xff}", '{"a":"\ud800"}'.encode("utf-8", "surrogatepass")])
def test_the_lean_calls_shortcut_decodes_an_answer_as_json_loads_does(body):
    from gateway.workers.lean_call import _text

    def parsed(read):
        try:
            return read()
        except ValueError:      # the lean call reads any ValueError (UnicodeDecodeError too) as "not JSON"
            return ValueError
    assert parsed(lambda: json.loads(_text(body))) == parsed(lambda: json.loads(body))
