"""The private names of our dependencies that the code leans on, checked against the installed
packages, so an upgrade that renames or reshapes one fails here, loudly, instead of turning a
feature off (the MCP lean path only logs a warning), bypassing a guard (the SSRF policy lives in
the transport pool httpx builds), or breaking the Kafka group protocol at run time.

pyproject.toml caps each of these dependencies below its next minor release; raising a cap means
running this file against the new release first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect

import pytest


def params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


# ---------------------------------------------------------------- mcp (gateway/mcp/lean.py, server.py)


def test_the_mcp_lean_path_finds_every_sdk_internal_it_mirrors():
    from gateway.mcp import lean

    assert lean.AVAILABLE, "the SDK lacks a name gateway/mcp/lean.py mirrors: the lean path is off"


def test_the_mcp_sdk_http_writers_keep_their_shape():
    from mcp.server import _streamable_http_modern as sdk_http

    assert params(sdk_http._write) == ["msg", "scope", "receive", "send"]
    assert inspect.iscoroutinefunction(sdk_http._write)
    assert params(sdk_http._sse_event) == ["msg"]
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in sdk_http._SSE_HEADERS)
    assert isinstance(sdk_http._SSE_PING_INTERVAL, (int, float)) and sdk_http._SSE_PING_INTERVAL > 0


def test_the_mcp_server_runner_serializer_keeps_its_signature():
    from mcp.server.runner import ServerRunner, modern_error_data

    assert params(ServerRunner._serialize) == ["self", "method", "version", "result"]
    # LeanToolCalls builds ServerRunner(server, None, None) for the serializer alone.
    assert [f.name for f in dataclasses.fields(ServerRunner)][:3] == ["server", "connection", "lifespan_state"]
    assert params(modern_error_data) == ["exc"]


def test_the_mcp_request_checks_the_lean_path_reuses_keep_their_signatures():
    from mcp.server.streamable_http import check_accept_headers
    from mcp.shared.inbound import classify_inbound_request

    assert params(check_accept_headers) == ["request"]
    assert params(classify_inbound_request)[:2] == ["body", "headers"]
    assert inspect.signature(classify_inbound_request).parameters["headers"].kind is inspect.Parameter.KEYWORD_ONLY


def test_an_mcp_session_exposes_its_connection_and_whether_it_has_a_back_channel():
    from mcp.server.connection import Connection, NotifyOnlyOutbound
    from mcp.server.session import ServerSession

    bare = Connection.from_envelope("2025-06-18", None, None)      # the no-channel sentinel
    session = ServerSession(None, bare)
    assert session._connection is bare          # McpSurface._middleware reads ctx.session._connection
    assert bare.has_standalone_channel is False
    assert Connection(NotifyOnlyOutbound(None), protocol_version="2025-06-18").has_standalone_channel is True


# ---------------------------------------------------------------- uvicorn (gateway/http/serving.py)


@pytest.mark.parametrize("module, name", [("uvicorn.protocols.http.h11_impl", "H11Protocol"),
                                          ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol")])
def test_uvicorn_http_protocols_keep_the_hooks_the_header_deadline_extends(module, name):
    import importlib

    protocol = getattr(importlib.import_module(module), name)
    for hook, arguments in (("connection_made", ["self", "transport"]), ("data_received", ["self", "data"]),
                            ("on_response_complete", ["self"]), ("connection_lost", ["self", "exc"])):
        assert params(getattr(protocol, hook)) == arguments, hook
    source = inspect.getsource(protocol)
    for attribute in ("self.cycle", "self.loop", "self.transport"):
        assert attribute in source, attribute
    cycle = importlib.import_module(module).RequestResponseCycle
    assert "self.response_complete" in inspect.getsource(cycle.__init__)


def test_uvicorn_picks_one_of_the_protocols_serving_extends():
    from uvicorn.protocols.http.auto import AutoHTTPProtocol
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert AutoHTTPProtocol in (H11Protocol, HttpToolsProtocol)


def test_uvicorn_takes_the_serving_options():
    import uvicorn

    from gateway.http.serving import uvicorn_options

    accepted = inspect.signature(uvicorn.Config).parameters
    assert set(uvicorn_options({})) <= set(accepted)


# ---------------------------------------------------------------- httpx (gateway/http/outbound.py)


def test_httpx_transport_sends_through_the_pool_the_guard_replaces():
    import httpcore
    import httpx

    from gateway.http.outbound import AddressPolicy, GuardedNetworkBackend, GuardedTransport

    assert "self._pool" in inspect.getsource(httpx.AsyncHTTPTransport.handle_async_request)
    transport = GuardedTransport(AddressPolicy())
    assert isinstance(transport._pool, httpcore.AsyncConnectionPool)
    assert isinstance(transport._pool._network_backend, GuardedNetworkBackend)


@pytest.fixture
async def http_server():
    """A real HTTP/1.1 server on 127.0.0.1 that answers every request with 200 "ok"."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_a_guarded_client_refuses_an_address_its_policy_refuses_even_when_a_server_listens(http_server):
    from gateway.http.outbound import AddressPolicy, RefusedURLError, guarded_client

    url = f"http://127.0.0.1:{http_server}/"
    async with guarded_client(AddressPolicy()) as open_client:
        assert (await open_client.get(url)).text == "ok"           # the server is there
    async with guarded_client(AddressPolicy(["agents.example.com"])) as client:
        with pytest.raises(RefusedURLError):
            await client.get(url)


async def test_a_guarded_client_connects_only_to_the_addresses_the_guard_resolved(http_server):
    from gateway.http.outbound import AddressPolicy, guarded_client

    asked = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["127.0.0.1"]

    # `agent.invalid` resolves nowhere but through the guard's resolver.
    async with guarded_client(AddressPolicy(resolver=resolver)) as client:
        assert (await client.get(f"http://agent.invalid:{http_server}/")).text == "ok"
    assert asked == [("agent.invalid", http_server)]


# ---------------------------------------------------------------- aiokafka (adapters/kafka)


def test_aiokafka_consumer_keeps_its_group_coordinator_where_membership_reaches_it():
    pytest.importorskip("aiokafka")
    from aiokafka import AIOKafkaConsumer
    from aiokafka.consumer.group_coordinator import GroupCoordinator

    assert "self._coordinator = GroupCoordinator(" in inspect.getsource(AIOKafkaConsumer.start)
    assert params(GroupCoordinator.request_rejoin) == ["self"]
    # membership._stop replaces it with a no-op coroutine so a crash-like stop sends no LeaveGroup.
    assert params(GroupCoordinator._maybe_leave_group) == ["self"]
    assert inspect.iscoroutinefunction(GroupCoordinator._maybe_leave_group)
    assert "self._maybe_leave_group()" in inspect.getsource(GroupCoordinator.close)


def test_aiokafka_assignor_protocol_types_keep_their_fields():
    pytest.importorskip("aiokafka")
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

    assert RoundRobinPartitionAssignor.name == "roundrobin"
    metadata = ConsumerProtocolMemberMetadata(0, ["t"], b"x")
    assert (metadata.version, metadata.subscription, metadata.user_data) == (0, ["t"], b"x")
    assignment = ConsumerProtocolMemberAssignment(0, [], b"y")
    assert assignment.user_data == b"y"
