"""Hostile requests on every unary method of the engine's gRPC service: a well-formed message with
hostile field values gets a status that names the problem (never UNKNOWN, the sign of an
unhandled exception in a handler); bytes that are not a message at all are refused by grpc's own
deserializer (UNKNOWN "Wire format was corrupt", before any handler runs) and the engine keeps
serving."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lite_engine.proto import engine_pb2 as pb
from lite_engine.service import serve

SERVICE = next(iter(pb.DESCRIPTOR.services_by_name.values()))
UNARY = sorted(m.name for m in SERVICE.methods if not m.client_streaming and not m.server_streaming)


@pytest.fixture
async def target(make_engine):
    engine = await make_engine()
    server, port = await serve(engine)
    yield f"127.0.0.1:{port}"
    await server.stop(1)


def _fields(method: str) -> st.SearchStrategy[bytes]:
    """Valid-looking requests with random field values, and raw garbage."""
    request_type = SERVICE.methods_by_name[method].input_type._concrete_class
    texts = st.text(max_size=30) | st.sampled_from(["", "..", "a/b", "\x00", "x" * 300, "tb-cap-x"])
    numbers = st.integers(min_value=-2 ** 63, max_value=2 ** 63 - 1)

    def build(values):
        message = request_type()
        for field, (text, number, raw) in zip(request_type.DESCRIPTOR.fields, values):
            try:
                if field.type == field.TYPE_STRING and not field.is_repeated:
                    setattr(message, field.name, text)
                elif field.type in (field.TYPE_INT64, field.TYPE_INT32, field.TYPE_UINT32, field.TYPE_UINT64) \
                        and not field.is_repeated:
                    setattr(message, field.name, number if field.type == field.TYPE_INT64 else abs(number) % 2 ** 31)
                elif field.type == field.TYPE_BYTES and not field.is_repeated:
                    setattr(message, field.name, raw)
            except (ValueError, TypeError, AttributeError):
                pass
        return message.SerializeToString()
    per_field = st.tuples(texts, numbers, st.binary(max_size=64))
    shaped = st.lists(per_field, min_size=len(request_type.DESCRIPTOR.fields),
                      max_size=len(request_type.DESCRIPTOR.fields)).map(build)
    return st.tuples(st.just(True), shaped) | st.tuples(st.just(False), st.binary(max_size=80))


@pytest.mark.parametrize("method", UNARY)
async def test_hostile_requests_get_a_named_status_never_unknown(target, method):
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(f"/{SERVICE.full_name}/{method}")
        seen = []

        @settings(max_examples=40, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
        @given(_fields(method))
        def draw(raw):
            seen.append(raw)

        draw()
        for well_formed, raw in seen:
            try:
                await call(raw, timeout=10)
            except grpc.aio.AioRpcError as e:
                corrupt = not well_formed and "Wire format was corrupt" in (e.details() or "")
                assert e.code() != grpc.StatusCode.UNKNOWN or corrupt, (method, raw, e.details())
        health = channel.unary_unary(f"/{SERVICE.full_name}/Health")
        await health(pb.HealthRequest().SerializeToString(), timeout=10)
