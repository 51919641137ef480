"""The lite engine's network face: `topicbridge engine` in its own process, reached through the
remote adapter and through the raw generated stub; client upkeep against an in-process server."""

from __future__ import annotations

import asyncio
import itertools
import math
import socket

import grpc
import pytest

from adapters import errors
from adapters.base import Message, TopicSpec
from adapters.lite import EmbeddedLiteBackend
from adapters.lite_remote import RemoteLiteBackend
from lite_engine import EngineConfig
from lite_engine.proto import engine_pb2 as pb
from lite_engine.proto import engine_pb2_grpc as pb_grpc
from lite_engine.service import ERROR_KEY, REQUEST_OVERHEAD, decode_error, serve
from tests.lite_engine.engine_process import EngineProcess

MAX_BODY = 64 << 10
SETTINGS = dict(session_timeout=0.6, tick=0.01, max_message_bytes=MAX_BODY, max_subscriptions_per_client=50)
_names = itertools.count()


def fresh(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


@pytest.fixture(scope="module")
def engine_process():
    proc = EngineProcess(None, settings=SETTINGS)
    proc.start()
    yield proc
    assert proc.stop() == 0, proc.output


@pytest.fixture
async def backend(engine_process):
    b = RemoteLiteBackend(engine_process.target)
    await b.start()
    yield b
    await b.close()


@pytest.fixture
async def stub(engine_process):
    async with grpc.aio.insecure_channel(engine_process.target,
                                         options=[("grpc.max_send_message_length", -1)]) as channel:
        yield pb_grpc.LiteEngineStub(channel)


@pytest.fixture
async def served(make_engine):
    """An engine in this process behind a real gRPC server, for tests that look inside it."""
    engine = await make_engine()
    server, port = await serve(engine)
    yield engine, f"127.0.0.1:{port}"
    await server.stop(1)


@pytest.fixture
async def connect():
    """Start remote backends (`await connect(target, **options)`); closed after the test."""
    opened = []

    async def start(target: str, **options) -> RemoteLiteBackend:
        b = RemoteLiteBackend(target, **options)
        opened.append(b)
        await b.start()
        return b

    yield start
    for b in opened:
        await b.close()


def spy(engine, method: str, calls: list | None = None):
    """Record the calls the service makes to `engine.<method>` (in `calls`, shared if given);
    `calls.event` is set at each."""
    real = getattr(engine, method)
    calls = _Calls() if calls is None else calls

    def record(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(args)
        calls.event.set()
        return result

    setattr(engine, method, record)
    return calls


class _Calls(list):
    def __init__(self) -> None:
        super().__init__()
        self.event = asyncio.Event()


async def next_call(calls, timeout: float = 5.0):
    calls.event.clear()
    async with asyncio.timeout(timeout):
        await calls.event.wait()
    return calls[-1]


# ---------------------------------------------------------------- round trips

async def test_the_ready_line_carries_the_bound_port(engine_process):
    assert engine_process.port > 0
    assert f"listening on 127.0.0.1:{engine_process.port}" in engine_process.output


async def test_publish_receive_ack_round_trip(backend):
    topic = fresh("tasks")
    await backend.create_topic(TopicSpec(topic))
    message_id = await backend.publish(topic, Message(b"task", {"h": "v"}, "k"))
    group = await backend.group_consumer(topic, "workers")
    [d] = await group.receive(max_messages=4, wait=2)
    assert (d.topic, d.lite_topic, d.message_id, d.body, d.headers, d.key, d.attempt) == \
        (topic, None, message_id, b"task", {"h": "v"}, "k", 1)
    await d.ack()
    assert await group.receive(wait=0) == []
    with pytest.raises(errors.UnknownReceiptError):
        await d.ack()


async def test_nack_gives_the_message_back_with_the_next_attempt(backend):
    topic = fresh("tasks")
    await backend.publish(topic, Message(b"again"))
    group = await backend.group_consumer(topic, "workers")
    [first] = await group.receive(wait=2)
    await first.extend(10)
    await first.nack()
    [second] = await group.receive(wait=2)
    assert (second.body, second.attempt) == (b"again", 2)


async def test_lite_subscribe_poll_ack_round_trip(backend):
    parent, reply = fresh("replies"), fresh("task")
    await backend.create_topic(TopicSpec(parent, lite=True))
    consumer = await backend.lite_consumer(parent, "gateway")
    await consumer.subscribe([reply])
    await backend.publish(parent, Message(b"answer", {"a2a": "1"}), lite_topic=reply)
    [d] = await consumer.poll(wait=2)
    assert (d.topic, d.lite_topic, d.body, d.headers, d.key) == (parent, reply, b"answer", {"a2a": "1"}, None)
    await d.ack()
    await consumer.unsubscribe([reply])
    await backend.publish(parent, Message(b"late"), lite_topic=reply)
    assert await consumer.poll(wait=0) == []
    await consumer.close()


async def test_tables_put_get_list_delete(backend):
    table = await backend.table(fresh("registry"))
    await table.put("agent/b", b"2")
    await table.put("agent/a", b"1")
    await table.put("other", b"3")
    assert await table.get("agent/a") == b"1"
    assert await table.get("missing") is None
    assert await table.items("agent/") == [("agent/a", b"1"), ("agent/b", b"2")]
    assert await table.delete("agent/a") is True
    assert await table.delete("agent/a") is False
    assert await table.items() == [("agent/b", b"2"), ("other", b"3")]


async def test_health_reports_the_engine_limits(backend):
    health = await backend.health()
    assert health.ok and health.backend == "lite-remote"
    assert (backend.max_message_bytes, backend.session_timeout) == (MAX_BODY, 0.6)


# ---------------------------------------------------------------- long-polls

async def test_a_waiting_poll_wakes_when_a_message_arrives(backend):
    parent, reply = fresh("replies"), fresh("task")
    consumer = await backend.lite_consumer(parent, "gateway")
    await consumer.subscribe([reply])
    async with asyncio.timeout(5):
        waiting = asyncio.create_task(consumer.poll(wait=30))
        await backend.publish(parent, Message(b"wake"), lite_topic=reply)
        [d] = await waiting
    assert d.body == b"wake"


async def test_a_waiting_receive_wakes_when_a_message_arrives(backend):
    topic = fresh("tasks")
    group = await backend.group_consumer(topic, "workers")
    await group.receive(wait=0)   # the group exists before the publish
    async with asyncio.timeout(5):
        waiting = asyncio.create_task(group.receive(wait=30))
        await backend.publish(topic, Message(b"wake"))
        [d] = await waiting
    assert d.body == b"wake"


async def test_a_poll_cancelled_by_its_caller_loses_no_message(backend):
    parent, reply = fresh("replies"), fresh("task")
    consumer = await backend.lite_consumer(parent, "gateway")
    await consumer.subscribe([reply])
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(consumer.poll(wait=30), 0.2)
    await backend.publish(parent, Message(b"kept"), lite_topic=reply)
    async with asyncio.timeout(5):
        [d] = await consumer.poll(wait=5)
    assert d.body == b"kept"


# ---------------------------------------------------------------- bad requests on the raw stub

S = grpc.StatusCode
BAD_REQUESTS = [
    ("Publish", pb.PublishRequest(topic="", body=b"x"), S.INVALID_ARGUMENT, "InvalidNameError"),
    ("Publish", pb.PublishRequest(topic="bad\nname", body=b"x"), S.INVALID_ARGUMENT, "InvalidNameError"),
    ("Publish", pb.PublishRequest(topic="t", lite_topic="a\x00b", body=b"x"), S.INVALID_ARGUMENT, "InvalidNameError"),
    ("Publish", pb.PublishRequest(topic="t", body=b"x", headers={"a\x01": "v"}), S.INVALID_ARGUMENT,
     "InvalidArgumentError"),
    ("Publish", pb.PublishRequest(topic="t", body=bytes(MAX_BODY + 1)), S.INVALID_ARGUMENT, "MessageTooLargeError"),
    ("Publish", pb.PublishRequest(topic="t", body=bytes(MAX_BODY + REQUEST_OVERHEAD + 1)), S.RESOURCE_EXHAUSTED,
     None),
    ("Ack", pb.AckRequest(receipt="nope"), S.NOT_FOUND, "UnknownReceiptError"),
    ("Ack", pb.AckRequest(), S.INVALID_ARGUMENT, "InvalidArgumentError"),
    ("Nack", pb.NackRequest(receipt="nope", delay_seconds=-1), S.INVALID_ARGUMENT, "InvalidArgumentError"),
    ("Extend", pb.ExtendRequest(receipt="nope", seconds=0), S.INVALID_ARGUMENT, "InvalidArgumentError"),
    ("Receive", pb.ReceiveRequest(topic="t", group="g", max_messages=0), S.INVALID_ARGUMENT, "InvalidArgumentError"),
    ("Receive", pb.ReceiveRequest(topic="t", group="g", max_messages=4_000_000_000), S.INVALID_ARGUMENT,
     "InvalidArgumentError"),
    ("Receive", pb.ReceiveRequest(topic="t", group="g", max_messages=1, wait_seconds=-1), S.INVALID_ARGUMENT,
     "InvalidArgumentError"),
    ("Receive", pb.ReceiveRequest(topic="t", group="g", max_messages=1, wait_seconds=math.nan), S.INVALID_ARGUMENT,
     "InvalidArgumentError"),
    ("Receive", pb.ReceiveRequest(topic="t", max_messages=1), S.INVALID_ARGUMENT, "InvalidNameError"),
    ("Poll", pb.PollRequest(client_id="ghost", max_messages=1), S.NOT_FOUND, "UnknownClientError"),
    ("Heartbeat", pb.HeartbeatRequest(client_id="ghost"), S.NOT_FOUND, "UnknownClientError"),
    ("OpenClient", pb.OpenClientRequest(client_id="c", topic="replies"), S.INVALID_ARGUMENT, "InvalidNameError"),
    ("ChangeSubscription", pb.ChangeSubscriptionRequest(client_id="ghost", names=["a"]), S.INVALID_ARGUMENT,
     "InvalidArgumentError"),
    ("ChangeSubscription", pb.ChangeSubscriptionRequest(client_id="ghost", action=pb.ChangeSubscriptionRequest.ADD),
     S.NOT_FOUND, "UnknownClientError"),
    ("CreateTopic", pb.CreateTopicRequest(name="t2", max_attempts=0), S.INVALID_ARGUMENT, "InvalidArgumentError"),
    ("CreateTopic", pb.CreateTopicRequest(name="t2", lite_idle_seconds=-5), S.INVALID_ARGUMENT,
     "InvalidArgumentError"),
    ("KvPut", pb.KvPutRequest(table="", key="k"), S.INVALID_ARGUMENT, "InvalidNameError"),
    ("KvPut", pb.KvPutRequest(table="t", key=""), S.INVALID_ARGUMENT, "InvalidArgumentError"),
    ("KvGet", pb.KvGetRequest(table="bad table", key="k"), S.INVALID_ARGUMENT, "InvalidNameError"),
]


@pytest.mark.parametrize("method, request_, code, error_type", BAD_REQUESTS,
                         ids=[f"{m}-{i}" for i, (m, *_) in enumerate(BAD_REQUESTS)])
async def test_a_bad_request_gets_its_status_and_the_server_keeps_serving(stub, method, request_, code, error_type):
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await getattr(stub, method)(request_, timeout=5)
    assert failed.value.code() == code, failed.value.details()
    sent = dict(failed.value.trailing_metadata() or ()).get(ERROR_KEY)
    assert (type(decode_error(sent)).__name__ if sent else None) == error_type
    assert (await stub.Health(pb.HealthRequest(), timeout=5)).ok


async def test_a_lite_topic_under_a_capability_topic_is_a_failed_precondition(stub):
    topic = fresh("tasks")
    await stub.Publish(pb.PublishRequest(topic=topic, body=b"x"))
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.Publish(pb.PublishRequest(topic=topic, lite_topic="r", body=b"x"))
    assert failed.value.code() == S.FAILED_PRECONDITION


# ---------------------------------------------------------------- same errors as the embedded adapter

async def _failures(backend) -> list[tuple[str, dict]]:
    """Failing calls whose port errors must not depend on where the engine runs."""
    await backend.create_topic(TopicSpec("same-tasks"))
    await backend.publish("same-tasks", Message(b"x"))
    group = await backend.group_consumer("same-tasks", "g")
    consumer = await backend.lite_consumer("same-replies", "g", "same-client")
    [d] = await group.receive(wait=2)
    await d.ack()
    calls = [
        lambda: backend.publish("", Message(b"x")),
        lambda: backend.publish("same-tasks", Message(bytes(MAX_BODY + 1))),
        lambda: backend.publish("same-tasks", Message(b"x"), lite_topic="r"),
        lambda: backend.publish("same-tasks", Message(b"x", {"bad\x00": "v"})),
        lambda: backend.create_topic(TopicSpec("same-tasks", lite=True)),
        lambda: backend.create_topic(TopicSpec("other", max_attempts=0)),
        lambda: d.ack(),
        lambda: d.nack(-1.0),   # (an int would come back as a float: durations travel as doubles)
        lambda: group.receive(max_messages=0),
        lambda: group.receive(wait=-1.0),
        lambda: consumer.subscribe(["ok", "not ok"]),
        lambda: consumer.subscribe([f"s{i}" for i in range(51)]),
        lambda: consumer.poll(max_messages=5000),
        lambda: backend.table("bad table"),
        lambda: backend.lite_consumer("same-tasks", "g"),
    ]
    out = []
    for call in calls:
        with pytest.raises(errors.BackendError) as failed:
            await call()
        out.append((type(failed.value).__name__, _without(failed.value.to_dict(), d.receipt)))
    await consumer.close()
    with pytest.raises(errors.UnknownClientError) as failed:
        await consumer.poll()
    out.append((type(failed.value).__name__, failed.value.to_dict()))
    return out


def _without(data: dict, receipt: str) -> dict:
    return {k: v.replace(receipt, "<receipt>") if isinstance(v, str) else v for k, v in data.items()}


async def test_the_remote_adapter_raises_the_same_port_errors_as_the_embedded_one(backend):
    embedded = EmbeddedLiteBackend(EngineConfig(**SETTINGS))
    await embedded.start()
    try:
        expected = await _failures(embedded)
    finally:
        await embedded.close()
    assert await _failures(backend) == expected


async def test_an_engine_that_cannot_be_reached_is_backend_unavailable(connect):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(errors.BackendUnavailableError):
        await connect(f"127.0.0.1:{port}", connect_timeout=0.3)


# ---------------------------------------------------------------- client upkeep (in-process server)

async def test_a_forgotten_client_is_reopened_by_its_heartbeat_with_its_full_interest_set(served, connect):
    engine, target = served
    opened, synced = spy(engine, "open_client"), spy(engine, "sync")
    backend = await connect(target)
    consumer = await backend.lite_consumer("replies", "gateway", "c1")
    await consumer.subscribe(["r1", "r2"])
    engine.close_client("c1")     # as after a restart or an expired session
    await next_call(synced)
    assert len(opened) == 2 and engine.interest("c1") == {"r1", "r2"}


async def test_a_poll_on_a_forgotten_client_reopens_it_and_gets_the_waiting_messages(served, connect):
    engine, target = served
    backend = await connect(target, session_timeout=3600)   # no heartbeat gets there first
    consumer = await backend.lite_consumer("replies", "gateway", "c1")
    await consumer.subscribe(["r1"])
    engine.close_client("c1")
    await engine.publish("replies", b"waiting", lite="r1")
    async with asyncio.timeout(5):
        [d] = await consumer.poll(wait=2)
    assert d.body == b"waiting" and consumer.reopened == 1


async def test_the_periodic_full_sync_repairs_a_lost_change(served, connect):
    engine, target = served
    synced = spy(engine, "sync")
    backend = await connect(target, full_sync_every=0.1)
    consumer = await backend.lite_consumer("replies", "gateway", "c1")
    await consumer.subscribe(["r1", "r2"])
    engine.unsubscribe("c1", ["r1"])   # a change the client never made
    await next_call(synced)
    assert engine.interest("c1") == {"r1", "r2"}


async def test_subscription_versions_increase_across_reopens(served, connect):
    engine, target = served
    changes = _Calls()
    for method in ("subscribe", "unsubscribe", "sync"):
        spy(engine, method, changes)
    backend = await connect(target, full_sync_every=0.05)
    consumer = await backend.lite_consumer("replies", "gateway", "c1")
    await consumer.subscribe(["a"])
    await next_call(changes)          # a periodic full sync
    engine.close_client("c1")
    await consumer.unsubscribe(["a"])   # reopens first
    await consumer.sync(["b", "c"])
    versions = [args[2] for args in changes]
    assert versions == sorted(set(versions)) and len(versions) >= 5
    assert engine.interest("c1") == {"b", "c"}


async def test_an_abandoned_consumer_stops_heartbeating_and_its_client_expires(served, connect):
    engine, target = served
    backend = await connect(target)
    dropped = spy(engine, "_drop_client")
    consumer = await backend.lite_consumer("replies", "gateway", "c1")
    await consumer.abandon()
    [client] = await next_call(dropped)
    assert client.id == "c1"
    with pytest.raises(errors.UnknownClientError):
        await consumer.poll()


async def test_an_answer_over_the_byte_budget_gives_the_rest_back(make_engine, connect):
    engine = await make_engine()
    server, port = await serve(engine, response_budget=3000)   # two of these messages
    try:
        backend = await connect(f"127.0.0.1:{port}")
        for body in (b"a", b"b", b"c"):
            await engine.publish("tasks", bytes(1000) + body)
        group = await backend.group_consumer("tasks", "workers")
        first = await group.receive(max_messages=10)
        rest = await group.receive(max_messages=10)
        assert [len(first), len(rest)] == [2, 1]
        assert sorted(d.body[-1:] for d in first + rest) == [b"a", b"b", b"c"]
    finally:
        await server.stop(1)


async def test_a_bug_in_a_handler_is_an_internal_error_and_the_server_keeps_serving(served):
    engine, target = served

    def broken(client_id):
        raise RuntimeError("boom")

    engine.heartbeat = broken
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.LiteEngineStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.Heartbeat(pb.HeartbeatRequest(client_id="c1"))
        assert failed.value.code() == S.INTERNAL and "boom" in failed.value.details()
        assert (await stub.Health(pb.HealthRequest())).ok


# ---------------------------------------------------------------- restarts and shutdown

async def test_a_client_resends_its_full_interest_set_after_the_engine_restarts(connect):
    with EngineProcess(None, settings=SETTINGS) as proc:
        backend = await connect(proc.target)
        consumer = await backend.lite_consumer("replies", "gateway", "c1")
        await consumer.subscribe(["r1", "r2"])
        await asyncio.to_thread(proc.restart)   # a memory engine: it forgets every client
        async with asyncio.timeout(10), grpc.aio.insecure_channel(proc.target) as channel:
            waiting = asyncio.create_task(consumer.poll(max_messages=4, wait=5))
            stub = pb_grpc.LiteEngineStub(channel)
            for name in ("r1", "r2"):
                await stub.Publish(pb.PublishRequest(topic="replies", lite_topic=name, body=name.encode()),
                                   wait_for_ready=True)
            got = await waiting
            while len(got) < 2:
                got += await consumer.poll(max_messages=4, wait=5)
        assert sorted(d.body for d in got) == [b"r1", b"r2"]


async def test_messages_and_interest_survive_a_durable_engine_restart(tmp_path, connect):
    with EngineProcess(tmp_path / "engine", fsync="always", settings=SETTINGS) as proc:
        backend = await connect(proc.target)
        consumer = await backend.lite_consumer("replies", "gateway", "c1")
        await consumer.subscribe(["r1"])
        await backend.publish("replies", Message(b"before"), lite_topic="r1")
        await (await backend.table("tasks")).put("t1", b"working")
        await asyncio.to_thread(proc.restart)
        async with asyncio.timeout(10):
            [d] = await consumer.poll(wait=5)
            await d.ack()
        assert d.body == b"before"
        assert await (await backend.table("tasks")).get("t1") == b"working"


async def test_sigterm_ends_long_polls_and_exits_cleanly(connect):
    with EngineProcess(None, settings=SETTINGS) as proc:
        backend = await connect(proc.target)
        consumer = await backend.lite_consumer("replies", "gateway")
        group = await backend.group_consumer("tasks", "workers")
        polls = [asyncio.create_task(consumer.poll(wait=30)), asyncio.create_task(group.receive(wait=30))]
        await backend.health()   # sent after the polls on the same connection
        async with asyncio.timeout(8):
            assert await asyncio.to_thread(proc.stop) == 0, proc.output
            done = await asyncio.gather(*polls, return_exceptions=True)
        assert all(r == [] or isinstance(r, errors.BackendUnavailableError) for r in done), done
        assert "stopping" in proc.output
        with pytest.raises(errors.BackendUnavailableError):
            await backend.publish("tasks", Message(b"x"))


def test_engine_settings_must_be_positive():
    from gateway.cli import main
    with pytest.raises(SystemExit) as exited:
        main(["engine", "--session-timeout", "-1"])
    assert exited.value.code == 2
