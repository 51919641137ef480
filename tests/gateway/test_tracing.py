"""One trace from the caller's `traceparent` to a remote agent and back, across two gateway
instances on one engine: the caller asks gateway A, gateway B's bridge calls the agent (a real
a2a-sdk server that records the headers it receives), A's relay folds the answer. Spans are read
from the OpenTelemetry SDK's in-memory exporter."""

import asyncio
import json

import pytest
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette

from gateway.observability import tracing
from tests.lite_engine.engine_process import EngineProcess

from .remote_agents import Summariser, summariser_card
from .serving import Server, running_app, running_gateway

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def send(text: str) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
            "params": {"message": {"messageId": f"m-{text}", "role": "ROLE_USER", "parts": [{"text": text}]}}}


@pytest.fixture(scope="module")
def exporter():
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield memory
    tracing.enabled = False


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    process = EngineProcess(tmp_path_factory.mktemp("engine"), fsync="never")
    yield process.start()
    process.kill()


class HeaderRecorder:
    """ASGI middleware keeping the traceparent of every request the agent receives."""

    def __init__(self, app) -> None:
        self.app, self.traceparents = app, []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            self.traceparents.append(dict(scope["headers"]).get(b"traceparent", b"").decode())
        await self.app(scope, receive, send)


@pytest.fixture
async def agent():
    server = Server()
    card = summariser_card(server.base_url + "/", streaming=True)
    handler = DefaultRequestHandler(agent_executor=Summariser(), task_store=InMemoryTaskStore(), agent_card=card)
    recorder = HeaderRecorder(Starlette(routes=[*create_agent_card_routes(card),
                                                *create_jsonrpc_routes(handler, "/")]))
    await server.start(recorder)
    yield server, recorder
    await server.stop()


def settings(engine: str, instance: str) -> dict:
    return {"backend": "lite", "lite": {"mode": "remote", "target": engine},
            "gateway": {"instance_id": instance}, "observability": {"tracing": True}}


async def test_one_trace_runs_from_the_caller_to_the_remote_agent_and_back_across_two_instances(
        exporter, engine, agent):
    server, recorder = agent
    exporter.clear()
    async with running_gateway(settings(engine, "gw-a")) as a, running_gateway(settings(engine, "gw-b")) as b:
        capability = await b.gateway.bridges.register(server.base_url)
        await a.gateway.bridges.close()         # only B bridges the agent: the task crosses instances
        async with asyncio.timeout(20):
            answer = await a.http.post(f"/agents/{capability.name}/", json=send("the report"),
                                       headers={"A2A-Version": "1.0", "traceparent": TRACEPARENT})
        task = answer.json()["result"]["task"]
        assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert recorder.traceparents and all(tp.split("-")[1] == TRACE_ID for tp in recorder.traceparents)
    spans = [s for s in exporter.get_finished_spans() if s.attributes.get("topicbridge.task_id") == task["id"]]
    by_name = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert {"topicbridge.submit", "topicbridge.worker", "topicbridge.bridge.call",
            "topicbridge.relay.fold"} <= set(by_name)
    assert {format(s.context.trace_id, "032x") for s in spans} == {TRACE_ID}
    submit, worker = by_name["topicbridge.submit"][0], by_name["topicbridge.worker"][0]
    assert format(submit.parent.span_id, "016x") == "00f067aa0ba902b7"     # the caller's span
    assert worker.parent.span_id == submit.context.span_id
    call = by_name["topicbridge.bridge.call"][0]
    assert call.parent.span_id == worker.context.span_id
    # each reply event carries the span that published it: the bridge's call, or the worker's
    assert all(f.parent.span_id in (worker.context.span_id, call.context.span_id)
               for f in by_name["topicbridge.relay.fold"])
    assert submit.attributes["topicbridge.capability"] == capability.name
    assert submit.attributes["topicbridge.backend"]
    assert by_name["topicbridge.relay.fold"][-1].attributes["topicbridge.state"] == "completed"


async def test_a_request_without_traceparent_starts_a_new_trace(exporter, engine, agent):
    server, recorder = agent
    exporter.clear()
    async with running_gateway(settings(engine, "gw-c")) as c:
        capability = await c.gateway.bridges.register(server.base_url, name="summariser-c")
        async with asyncio.timeout(20):
            answer = await c.http.post(f"/agents/{capability.name}/", json=send("new"), headers={"A2A-Version": "1.0"})
        task = answer.json()["result"]["task"]
    spans = [s for s in exporter.get_finished_spans() if s.attributes.get("topicbridge.task_id") == task["id"]]
    submit = next(s for s in spans if s.name == "topicbridge.submit")
    assert submit.parent is None
    assert {s.context.trace_id for s in spans} == {submit.context.trace_id}
    assert recorder.traceparents[-1].split("-")[1] == format(submit.context.trace_id, "032x")


async def test_with_tracing_off_nothing_is_recorded_and_no_header_is_sent(exporter, engine, agent):
    server, recorder = agent
    exporter.clear()
    off = {**settings(engine, "gw-d"), "observability": {"tracing": False}}
    async with running_gateway(off) as d:
        capability = await d.gateway.bridges.register(server.base_url, name="summariser-d")
        async with asyncio.timeout(20):
            answer = await d.http.post(f"/agents/{capability.name}/", json=send("quiet"),
                                       headers={"A2A-Version": "1.0", "traceparent": TRACEPARENT})
        assert answer.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
    assert not [s for s in exporter.get_finished_spans() if s.name.startswith("topicbridge.")]
    assert recorder.traceparents[-1] == ""


MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "traced-echo",
               "traceparent": TRACEPARENT}
MCP_CALL = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "traced-echo", "arguments": {"message": "hi"},
                       "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                 "io.modelcontextprotocol/clientInfo": {"name": "trace-test", "version": "1"},
                                 "io.modelcontextprotocol/clientCapabilities": {}}}}


async def echo(task) -> None:
    await task.artifact(f"echo: {task.text}")
    await task.complete()


async def test_an_mcp_tool_call_joins_the_callers_trace(exporter):
    from gateway.workers.worker import Worker
    exporter.clear()
    memory = {"backend": "lite", "lite": {"data_dir": None, "tick": 0.005}, "observability": {"tracing": True}}
    async with running_gateway(memory) as gw:
        await gw.gateway.add_part(Worker(gw.gateway.backend, "traced-echo", echo,
                                         card={"name": "Traced echo", "description": "Echoes."}))
        await gw.gateway.mcp.refresh()
        async with asyncio.timeout(20):
            answer = await gw.http.post("/mcp", json=MCP_CALL, headers=MCP_HEADERS)
        assert answer.status_code == 200, answer.text
    spans = [s for s in exporter.get_finished_spans() if s.name.startswith("topicbridge.")]
    submit = next(s for s in spans if s.name == "topicbridge.submit")
    assert format(submit.context.trace_id, "032x") == TRACE_ID
    task_spans = [s for s in spans if s.attributes.get("topicbridge.task_id") == submit.attributes["topicbridge.task_id"]]
    assert {"topicbridge.submit", "topicbridge.worker", "topicbridge.relay.fold"} <= {s.name for s in task_spans}
    assert {format(s.context.trace_id, "032x") for s in task_spans} == {TRACE_ID}


def test_a_reply_event_whose_trace_is_not_strings_is_refused():
    from gateway.tasks.envelope import EnvelopeError, ReplyEvent
    raw = json.dumps({"version": 1, "task_id": "t-1", "attempt": 1, "seq": 0, "trace": {"traceparent": 5},
                      "event": {"statusUpdate": {"taskId": "t-1", "status": {"state": "TASK_STATE_WORKING"}}}})
    with pytest.raises(EnvelopeError, match="trace"):
        ReplyEvent.decode(raw.encode())


async def test_a_malformed_traceparent_starts_a_new_trace(exporter):
    from gateway.workers.worker import Worker
    exporter.clear()
    memory = {"backend": "lite", "lite": {"data_dir": None, "tick": 0.005}, "observability": {"tracing": True}}
    async with running_gateway(memory) as gw:
        await gw.gateway.add_part(Worker(gw.gateway.backend, "garbled", echo,
                                         card={"name": "Garbled", "description": "Echoes."}))
        answer = await gw.http.post("/agents/garbled/", json=send("x"),
                                    headers={"A2A-Version": "1.0", "traceparent": "00-not-a-trace-01"})
        assert answer.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
    submit = next(s for s in exporter.get_finished_spans() if s.name == "topicbridge.submit")
    assert submit.parent is None and format(submit.context.trace_id, "032x") != TRACE_ID
