"""The one error table (gateway/errors.py): every error class of every tree has a code on every
surface, and the surfaces report what the table says, seen by real peers."""

from __future__ import annotations

import asyncio

import grpc
import mcp_types as types
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types import a2a_pb2
from a2a.utils.errors import (A2A_ERROR_MAPPING, JSON_RPC_ERROR_CODE_MAP, InternalError, InvalidParamsError,
                              TaskNotFoundError as A2ATaskNotFound)
from mcp import Client
from mcp.shared.exceptions import MCPError

from adapters import errors as backend
from gateway import errors
from gateway.http import errors as http
from gateway.registry.cardfetch import CardError
from gateway.tasks import errors as task
from tests.gateway.mcp_support import agents_on, echo, remote_backend, settings
from tests.gateway.serving import running_gateway
from tests.lite_engine.engine_process import EngineProcess

ROOTS = (backend.BackendError, task.TaskError, CardError, http.RequestRefusedError)
MCP_CODES = {v for k, v in vars(types).items() if k.isupper() and isinstance(v, int)} | {
    errors.MCP_CONFLICT, errors.MCP_RESOURCE_EXHAUSTED, errors.MCP_UNAVAILABLE}
GRPC_STATUSES = {status.name for status in grpc.StatusCode}


def _tree(root: type) -> list[type]:
    found, stack = [], [root]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


ERROR_CLASSES = sorted({cls for root in ROOTS for cls in _tree(root)}, key=lambda c: (c.__module__, c.__name__))


# ---------------------------------------------------------------- the table itself

# One backend's own refinements (adapters/kafka, adapters/rocketmq, ...) are found only once that
# backend is imported, and take the row of the shared class they refine.
SHARED = [cls for cls in ERROR_CLASSES if not cls.__module__.startswith("adapters.") or cls.__module__ == "adapters.errors"]


@pytest.mark.parametrize("cls", SHARED, ids=lambda c: c.__name__)
def test_every_error_class_has_its_own_row_with_a_code_on_every_surface(cls):
    assert cls in errors.TABLE, f"{cls.__module__}.{cls.__name__} has no row in gateway/errors.py"
    codes = errors.TABLE[cls]
    assert 400 <= codes.http <= 599
    assert codes.a2a in JSON_RPC_ERROR_CODE_MAP and codes.a2a in A2A_ERROR_MAPPING     # the SDK knows its codes
    assert codes.mcp in MCP_CODES
    assert codes.grpc in GRPC_STATUSES


@pytest.mark.parametrize("cls", _tree(http.RequestRefusedError), ids=lambda c: c.__name__)
def test_the_guards_refusals_carry_the_statuses_the_table_gives_them(cls):
    codes = errors.TABLE[cls]
    assert (codes.http, codes.grpc) == (cls.http_status, cls.grpc_status)


def test_the_gateways_own_mcp_codes_stay_out_of_the_reserved_json_rpc_range():
    for code in (errors.MCP_CONFLICT, errors.MCP_RESOURCE_EXHAUSTED, errors.MCP_UNAVAILABLE):
        assert not -32768 <= code <= -32000


def test_a_subclass_without_a_row_is_reported_as_its_nearest_listed_base():
    class TopicKindConflict(backend.ConflictError):
        pass

    assert errors.codes_of(TopicKindConflict("a queue topic exists")) is errors.TABLE[backend.ConflictError]


def test_an_error_outside_the_trees_is_an_internal_error_naming_its_type():
    error = errors.a2a_error(ZeroDivisionError("division by zero"))
    assert type(error) is InternalError and error.message == "ZeroDivisionError: division by zero"
    assert errors.codes_of(ZeroDivisionError()).mcp == types.INTERNAL_ERROR


def test_protocol_errors_carry_the_data_of_the_error():
    quota = errors.mcp_error(backend.QuotaExceededError("max_lite_topics", 8))
    assert quota.error.code == errors.MCP_RESOURCE_EXHAUSTED
    assert quota.error.data == {"type": "QuotaExceededError", "message": "quota max_lite_topics exceeded: limit is 8",
                                "quota": "max_lite_topics", "limit": 8, "client_id": None}
    missing = errors.a2a_error(task.TaskNotFoundError("t-1"))
    assert type(missing) is A2ATaskNotFound and missing.data["task_id"] == "t-1"
    unknown = errors.a2a_error(task.UnknownCapabilityError("nobody"))
    assert type(unknown) is InvalidParamsError and unknown.data["capability"] == "nobody"


# ---------------------------------------------------------------- A2A: an unknown capability

V1 = {"A2A-Version": "1.0"}


def _send(request_id) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "SendMessage",
            "params": {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}}


@pytest.fixture
async def gw():
    async with running_gateway(settings()) as running:
        yield running


async def test_send_message_to_an_unknown_capability_answers_its_own_id_and_says_not_registered(gw):
    for request_id in (7, "req-seven"):
        response = await gw.http.post("/agents/nobody/", json=_send(request_id), headers=V1)
        doc = response.json()
        assert response.status_code == 200 and doc["id"] == request_id
        assert doc["error"]["code"] == JSON_RPC_ERROR_CODE_MAP[InvalidParamsError]
        assert doc["error"]["message"] == "capability 'nobody' is not registered"
    rest = await gw.http.post("/agents/nobody/message:send", json=_send(1)["params"], headers=V1)
    assert rest.status_code == 404 and rest.json()["error"]["status"] == "NOT_FOUND"


async def test_the_a2a_client_sees_capability_not_registered_not_task_not_found(gw):
    card = a2a_pb2.AgentCard(name="nobody", supported_interfaces=[a2a_pb2.AgentInterface(
        url=f"{gw.base}/agents/nobody/", protocol_binding="JSONRPC", protocol_version="1.0")])
    client = await create_client(card, ClientConfig(streaming=False, supported_protocol_bindings=["JSONRPC"]))
    message = a2a_pb2.Message(message_id="m1", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text="hi")])
    try:
        with pytest.raises(InvalidParamsError) as refused:
            async with asyncio.timeout(10):
                async for _ in client.send_message(a2a_pb2.SendMessageRequest(message=message)):
                    pass
    finally:
        await client.close()
    assert "'nobody' is not registered" in str(refused.value)
    assert refused.value.data["capability"] == "nobody"


# ---------------------------------------------------------------- MCP: a quota and an outage are what they are

async def test_over_mcp_a_full_engine_is_a_quota_error_not_an_internal_one():
    config = settings()
    config["lite"]["max_lite_topics"] = 12
    async with running_gateway(config) as running, agents_on(running.gateway.backend) as agents:
        await agents.serve("echo", echo)
        async with Client(running.url) as client:
            async with asyncio.timeout(30):
                with pytest.raises(MCPError) as full:
                    for _ in range(12):       # each call leaves its reply channel behind
                        await client.call_tool("echo", {"message": "hi"})
    assert full.value.code == errors.MCP_RESOURCE_EXHAUSTED
    assert "quota max_lite_topics exceeded" in full.value.message
    assert full.value.error.data["type"] == "QuotaExceededError" and full.value.error.data["limit"] == 12


@pytest.fixture
def engine(tmp_path):
    process = EngineProcess(tmp_path / "engine", fsync="never")
    process.start()
    yield process
    process.kill()


async def test_over_mcp_an_engine_that_died_is_unavailable_not_an_internal_error(engine):
    async with running_gateway(settings(remote=engine.target)) as running, remote_backend(engine.target) as b:
        async with agents_on(b) as agents:
            await agents.serve("echo", echo)
            async with Client(running.url) as client:
                async with asyncio.timeout(20):
                    while "echo" not in {t.name for t in (await client.list_tools()).tools}:
                        await asyncio.sleep(0.05)  # sleep-ok: the tool list follows the registry's heartbeat
                    assert not (await client.call_tool("echo", {"message": "hi"})).is_error
                engine.kill()
                with pytest.raises(MCPError) as down:
                    async with asyncio.timeout(30):
                        await client.call_tool("echo", {"message": "hi"})
    assert down.value.code == errors.MCP_UNAVAILABLE
    assert "unavailable" in down.value.message and down.value.error.data["type"] == "BackendUnavailableError"


def test_a_backends_own_error_class_takes_the_row_of_the_shared_class_it_refines():
    from adapters.rocketmq.admin import AdminError

    assert errors.codes_of(AdminError) == errors.TABLE[backend.BackendError]
