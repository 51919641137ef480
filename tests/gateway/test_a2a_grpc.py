"""The A2A gRPC binding (gateway/a2a/grpc.py) with a2a-sdk's own gRPC client: advertised in
every card, the same task semantics as the HTTP bindings (blocking, streaming, multi-turn with
SubscribeToTask, cancel, push configs, any instance), bearer tokens, malformed requests, and a
server that stops on its own coming back under the supervisor."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import grpc
import grpc.aio
import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.client.card_resolver import A2ACardResolver
from a2a.types import a2a_pb2, a2a_pb2_grpc
from a2a.utils.errors import InvalidParamsError, TaskNotFoundError

from gateway.app import Gateway
from tests.gateway.a2a_servers import collect, send_request, state_of
from tests.lite_engine.engine_process import EngineProcess

from .serving import running_gateway

COMPLETED, INPUT_REQUIRED = a2a_pb2.TASK_STATE_COMPLETED, a2a_pb2.TASK_STATE_INPUT_REQUIRED
TOKEN = "grpc-test-token-0123456789"


def settings(tmp_path, **gateway) -> dict:
    return {"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005},
            "gateway": {"demo": True, "grpc_port": 0, **gateway}}


@pytest.fixture
async def gw(tmp_path):
    async with running_gateway(settings(tmp_path)) as running:
        yield running


async def card_of(base: str, name: str) -> a2a_pb2.AgentCard:
    async with httpx.AsyncClient() as http:
        return await A2ACardResolver(http, f"{base}/agents/{name}/").get_agent_card()


@contextlib.asynccontextmanager
async def grpc_client(base: str, name: str, *, streaming: bool = False, token: str | None = None):
    """a2a-sdk's client for `name`, from its card, on the GRPC interface only."""
    card = await card_of(base, name)
    metadata = [("authorization", f"Bearer {token}")] if token else None

    def channel(url: str) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(url, interceptors=[_Metadata(metadata)] if metadata else None)

    client = await create_client(card, ClientConfig(streaming=streaming, supported_protocol_bindings=["GRPC"],
                                                    grpc_channel_factory=channel))
    try:
        yield client
    finally:
        await client.close()


class _Metadata(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, metadata) -> None:
        self.metadata = metadata

    def _with(self, details):
        return details._replace(metadata=list(details.metadata or ()) + self.metadata)

    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(self._with(details), request)

    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(self._with(details), request)


def answer(task_id: str, text: str) -> a2a_pb2.SendMessageRequest:
    request = send_request(text)
    request.message.task_id = task_id
    return request


# ------------------------------------------------------------------ cards

async def test_every_card_lists_the_grpc_interface_with_the_capability_as_tenant(gw):
    card = await card_of(gw.base, "echo")
    grpc_interfaces = [i for i in card.supported_interfaces if i.protocol_binding == "GRPC"]
    assert [(i.url, i.tenant, i.protocol_version) for i in grpc_interfaces] == \
        [(f"127.0.0.1:{gw.gateway.a2a.grpc.port}", "echo", "1.0")]
    own = (await gw.http.get("/.well-known/agent-card.json")).json()
    assert {"url": f"127.0.0.1:{gw.gateway.a2a.grpc.port}", "protocolBinding": "GRPC",
            "protocolVersion": "1.0"} in own["supportedInterfaces"]


async def test_the_binding_is_off_by_default(tmp_path):
    async with running_gateway({"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005},
                                "gateway": {"demo": True}}) as running:
        card = await card_of(running.base, "echo")
    assert running.gateway.a2a.grpc is None
    assert "GRPC" not in {i.protocol_binding for i in card.supported_interfaces}


# ------------------------------------------------------------------ task semantics

@pytest.mark.parametrize("streaming", [False, True], ids=["send", "stream"])
async def test_send_message_over_grpc_completes_the_task(gw, streaming):
    async with grpc_client(gw.base, "echo", streaming=streaming) as client:
        events = await collect(client.send_message(send_request("over grpc")))
        task = await client.get_task(a2a_pb2.GetTaskRequest(id=events[-1].task.id or events[0].task.id))
    assert state_of(events[-1]) == COMPLETED or task.status.state == COMPLETED
    assert task.status.state == COMPLETED and task.artifacts[0].parts[0].text == "over grpc"


async def test_a_task_waiting_for_input_is_followed_by_subscribe_and_answered_over_grpc(gw):
    async with grpc_client(gw.base, "word-stats") as client, \
            grpc_client(gw.base, "word-stats", streaming=True) as streaming:
        asked = await collect(client.send_message(send_request("")))
        task_id = asked[-1].task.id
        assert state_of(asked[-1]) == INPUT_REQUIRED
        seen, answered = [], None
        async with asyncio.timeout(20):
            async for event in streaming.subscribe(a2a_pb2.SubscribeToTaskRequest(id=task_id)):
                seen.append(event)
                if answered is None:
                    answered = asyncio.create_task(collect(client.send_message(answer(task_id, "One. Two."))))
        await answered
    assert state_of(seen[0]) == INPUT_REQUIRED and state_of(seen[-1]) == COMPLETED


async def test_cancel_and_push_configs_over_grpc(gw):
    async with grpc_client(gw.base, "word-stats") as client:
        asked = await collect(client.send_message(send_request("")))
        task_id = asked[-1].task.id
        config = a2a_pb2.TaskPushNotificationConfig(task_id=task_id, id="cfg-1", url="http://127.0.0.1:9/hook")
        created = await client.create_task_push_notification_config(config)
        listed = await client.list_task_push_notification_configs(
            a2a_pb2.ListTaskPushNotificationConfigsRequest(task_id=task_id))
        await client.delete_task_push_notification_config(
            a2a_pb2.DeleteTaskPushNotificationConfigRequest(task_id=task_id, id="cfg-1"))
        with pytest.raises(TaskNotFoundError):
            await client.get_task_push_notification_config(
                a2a_pb2.GetTaskPushNotificationConfigRequest(task_id=task_id, id="cfg-1"))
        canceled = await client.cancel_task(a2a_pb2.CancelTaskRequest(id=task_id))
        page = await client.list_tasks(a2a_pb2.ListTasksRequest())
    assert created.url == config.url and [c.id for c in listed.configs] == ["cfg-1"]
    assert canceled.status.state == a2a_pb2.TASK_STATE_CANCELED
    assert task_id in {t.id for t in page.tasks}


async def test_a_task_sent_over_grpc_to_one_instance_is_read_and_continued_on_another(tmp_path):
    engine = EngineProcess(tmp_path / "shared", fsync="never")
    target = engine.start()
    lite = {"mode": "remote", "target": target}
    try:
        async with running_gateway({"lite": lite, "gateway": {"demo": True, "grpc_port": 0}}) as first, \
                running_gateway({"lite": lite, "gateway": {"grpc_port": 0}}) as second:
            async with grpc_client(first.base, "word-stats") as one, grpc_client(second.base, "word-stats") as two:
                asked = await collect(one.send_message(send_request("")))
                task_id = asked[-1].task.id
                seen = await two.get_task(a2a_pb2.GetTaskRequest(id=task_id))
                done = await collect(two.send_message(answer(task_id, "Three words here.")))
    finally:
        engine.kill()
    assert seen.status.state == INPUT_REQUIRED and state_of(done[-1]) == COMPLETED


# ------------------------------------------------------------------ bad input and access

async def raw_call(port: int, method: str, body: bytes, metadata=None):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(f"/lf.a2a.v1.A2AService/{method}")
        return await call(body, metadata=metadata, timeout=10)


async def test_bytes_that_are_not_a_request_get_an_error_status_and_the_server_stays_up(gw):
    port = gw.gateway.a2a.grpc.port
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await raw_call(port, "SendMessage", b"\xff\xff\xff\x07not protobuf")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "does not parse" in refused.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await raw_call(port, "NoSuchMethod", b"")
    assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
    async with grpc_client(gw.base, "echo") as client:      # still serving
        assert state_of((await collect(client.send_message(send_request("after"))))[-1]) == COMPLETED


@pytest.mark.parametrize("request_,code", [
    (a2a_pb2.SendMessageRequest(tenant="echo"), grpc.StatusCode.INVALID_ARGUMENT),            # no message
    (send_request("no tenant"), grpc.StatusCode.INVALID_ARGUMENT),                            # no capability
    (a2a_pb2.SendMessageRequest(tenant="nobody", message=send_request("x").message), grpc.StatusCode.INVALID_ARGUMENT),
], ids=["no-message", "no-tenant", "unknown-tenant"])
async def test_requests_with_bad_fields_get_invalid_argument(gw, request_, code):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.gateway.a2a.grpc.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await a2a_pb2_grpc.A2AServiceStub(channel).SendMessage(request_, timeout=10)
    assert refused.value.code() == code and refused.value.details()


async def test_an_unknown_task_is_not_found(gw):
    async with grpc_client(gw.base, "echo") as client:
        with pytest.raises(TaskNotFoundError):
            await client.get_task(a2a_pb2.GetTaskRequest(id="0" * 32))
        with pytest.raises(InvalidParamsError):
            await client.get_task(a2a_pb2.GetTaskRequest())


async def test_with_bearer_tokens_a_call_needs_one(tmp_path):
    async with running_gateway(settings(tmp_path, bearer_tokens=[TOKEN])) as running:
        port = running.gateway.a2a.grpc.port
        request = send_request("secret")
        request.tenant = "echo"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = a2a_pb2_grpc.A2AServiceStub(channel)
            for metadata in (None, [("authorization", "Bearer wrong-token")], [("authorization", "Basic abc")]):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.SendMessage(request, metadata=metadata, timeout=10)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            ok = await stub.SendMessage(request, metadata=[("authorization", f"Bearer {TOKEN}")], timeout=15)
    assert ok.task.status.state == COMPLETED


# ------------------------------------------------------------------ supervision

async def test_a_grpc_server_that_stops_on_its_own_is_opened_again(gw):
    surface = gw.gateway.a2a.grpc
    port, stopped = surface.port, surface._server
    await stopped.stop(0)           # the fault: the server ends while the gateway runs
    async with asyncio.timeout(10):
        while surface._server is None or surface._server is stopped:
            await asyncio.sleep(0.02)   # sleep-ok: the supervisor reopens it after its backoff
    assert surface.port == port
    async with grpc_client(gw.base, "echo") as client:
        assert state_of((await collect(client.send_message(send_request("again"))))[-1]) == COMPLETED


async def test_a_grpc_port_in_use_fails_the_gateway_start_naming_it(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gateway = Gateway(settings(tmp_path, grpc_port=port, demo=False))
        with pytest.raises((OSError, RuntimeError)) as refused:
            await gateway.start()
    assert str(port) in str(refused.value)
