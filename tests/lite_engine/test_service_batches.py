"""Batched and streamed calls between the remote adapter and `topicbridge engine`: publishes and
acks made together share one call, polls and receives share one stream, each caller still gets
its own result or error; bad batches get INVALID_ARGUMENT; a killed engine fails every pending
caller and the streams reconnect once it is back."""

from __future__ import annotations

import asyncio
import collections

import grpc
import pytest

from adapters import errors
from adapters.base import Message, TopicSpec
from lite_engine.proto import engine_pb2 as pb
from lite_engine.proto import engine_pb2_grpc as pb_grpc
from lite_engine.service import ERROR_KEY, MAX_BATCH_ITEMS, decode_error, serve
from tests.lite_engine.engine_process import EngineProcess

S = grpc.StatusCode


class CountCalls(grpc.aio.ServerInterceptor):
    """Counts the calls the server gets, by method name."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()

    async def intercept_service(self, continuation, details):
        self.calls[details.method.rsplit("/", 1)[-1]] += 1
        return await continuation(details)


@pytest.fixture
async def counted(make_engine):
    """An engine in this process behind a real gRPC server that counts its calls."""
    engine = await make_engine()
    counter = CountCalls()
    server, port = await serve(engine, interceptors=[counter])
    yield engine, f"127.0.0.1:{port}", counter.calls
    await server.stop(1)


@pytest.fixture
async def connect():
    from adapters.lite_remote import RemoteLiteBackend
    opened = []

    async def start(target: str, **options):
        b = RemoteLiteBackend(target, **options)
        opened.append(b)
        await b.start()
        return b

    yield start
    for b in opened:
        await b.close()


@pytest.fixture
async def stub(counted):
    async with grpc.aio.insecure_channel(counted[1]) as channel:
        yield pb_grpc.LiteEngineStub(channel)


# ---------------------------------------------------------------- batches through the adapter

async def test_publishes_made_together_share_one_call_and_keep_their_order(counted, connect):
    engine, target, calls = counted
    backend = await connect(target)
    await backend.create_topic(TopicSpec("tasks"))
    ids = await asyncio.gather(*(backend.publish("tasks", Message(b"%d" % i)) for i in range(50)))
    assert calls["PublishMany"] == 1 and calls["Publish"] == 0
    assert len(set(ids)) == 50 and ids == sorted(ids)
    got = await engine.receive("tasks", "workers", max_messages=64)
    assert [d.body for d in got] == [b"%d" % i for i in range(50)]


async def test_a_bad_publish_fails_alone_and_its_neighbours_are_published(counted, connect):
    engine, target, calls = counted
    backend = await connect(target)
    results = await asyncio.gather(
        backend.publish("tasks", Message(b"before")),
        backend.publish("tasks", Message(b"x", {"bad\x00": "v"})),
        backend.publish("tasks", Message(b"x"), lite_topic="not/a lite topic here"),
        backend.publish("tasks", Message(b"after")),
        return_exceptions=True)
    assert calls["PublishMany"] == 1
    assert isinstance(results[1], errors.InvalidRequestError) and isinstance(results[2], errors.BackendError)
    assert isinstance(results[0], str) and isinstance(results[3], str)
    assert [d.body for d in await engine.receive("tasks", "g", max_messages=10)] == [b"before", b"after"]


async def test_a_batch_stays_within_the_engine_request_limit(make_engine, connect):
    engine = await make_engine(max_message_bytes=64 << 10)
    counter = CountCalls()
    server, port = await serve(engine, interceptors=[counter])
    try:
        backend = await connect(f"127.0.0.1:{port}")
        bodies = [bytes([i]) * (60 << 10) for i in range(6)]   # together far above one request
        await asyncio.gather(*(backend.publish("tasks", Message(b)) for b in bodies))
        assert counter.calls["PublishMany"] == 6
        assert [d.body for d in await engine.receive("tasks", "g", max_messages=10)] == bodies
    finally:
        await server.stop(1)


async def test_acks_made_together_share_one_call_and_a_stale_receipt_fails_alone(counted, connect):
    engine, target, calls = counted
    backend = await connect(target)
    for i in range(20):
        await backend.publish("tasks", Message(b"%d" % i))
    group = await backend.group_consumer("tasks", "workers")
    got = await group.receive(max_messages=20)
    await got[0].ack()
    before = calls["AckMany"]
    results = await asyncio.gather(*(d.ack() for d in got), return_exceptions=True)
    assert calls["AckMany"] == before + 1 and calls["Ack"] == 0
    assert isinstance(results[0], errors.UnknownReceiptError)
    assert results[1:] == [None] * 19
    assert engine.sizes()["inflight"] == 0


async def test_a_caller_cancelled_before_its_batch_left_publishes_nothing(counted, connect):
    engine, target, _ = counted
    backend = await connect(target)
    await backend.create_topic(TopicSpec("tasks"))
    kept = asyncio.ensure_future(backend.publish("tasks", Message(b"kept")))
    dropped = asyncio.ensure_future(backend.publish("tasks", Message(b"dropped")))
    await asyncio.sleep(0)   # sleep-ok: both are queued, their batch has not left yet
    dropped.cancel()
    await kept
    assert [d.body for d in await engine.receive("tasks", "g", max_messages=10)] == [b"kept"]


class FailOnePublishMany(grpc.aio.ServerInterceptor):
    """Fault injection: the first PublishMany once armed waits at `held` until `release` is set,
    then fails UNAVAILABLE without reaching the engine (a call lost on its way: the engine up)."""

    def __init__(self) -> None:
        self.armed = False
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if not (self.armed and details.method.endswith("/PublishMany")):
            return handler
        self.armed = False

        async def fail(request, context):
            self.held.set()
            await self.release.wait()
            await context.abort(grpc.StatusCode.UNAVAILABLE, "injected: the call was lost")

        return grpc.unary_unary_rpc_method_handler(fail, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)


async def test_a_lost_publish_call_fails_the_publishes_queued_behind_it_so_none_lands_after_a_lost_one(
        make_engine, connect):
    engine = await make_engine()
    fault = FailOnePublishMany()
    server, port = await serve(engine, interceptors=[fault])
    try:
        backend = await connect(f"127.0.0.1:{port}")
        assert backend.ordered_publish
        await backend.create_topic(TopicSpec("replies", lite=True))
        await backend.publish("replies", Message(b"before"), lite_topic="task-1")
        fault.armed = True
        lost = asyncio.ensure_future(backend.publish("replies", Message(b"lost"), lite_topic="task-1"))
        async with asyncio.timeout(10):
            await fault.held.wait()              # its call is on its way and will fail
        # Started while that call is out: a pipelining worker's next events and its final one.
        behind = [asyncio.ensure_future(backend.publish("replies", Message(b), lite_topic="task-1"))
                  for b in (b"next", b"final")]
        await asyncio.sleep(0)      # sleep-ok: both reach the queue (their first step) before the failure
        fault.release.set()
        outcomes = await asyncio.gather(lost, *behind, return_exceptions=True)
        assert all(isinstance(o, errors.BackendUnavailableError) for o in outcomes), outcomes
        await backend.publish("replies", Message(b"after"), lite_topic="task-1")   # later ones go on
        consumer = await backend.lite_consumer("replies", "gw")
        await consumer.subscribe(["task-1"])
        got = await consumer.poll(max_messages=10, wait=1)
        assert [d.body for d in got] == [b"before", b"after"]
    finally:
        await server.stop(1)


# ---------------------------------------------------------------- streams through the adapter

async def test_polls_and_receives_share_one_stream_per_consumer(counted, connect):
    engine, target, calls = counted
    backend = await connect(target)
    consumer = await backend.lite_consumer("replies", "gateway")
    group = await backend.group_consumer("tasks", "workers")
    for i in range(5):
        await consumer.subscribe([f"r{i}"])
        await backend.publish("replies", Message(b"reply"), lite_topic=f"r{i}")
        await backend.publish("tasks", Message(b"task"))
        async with asyncio.timeout(5):
            assert len(await consumer.poll(wait=2)) == 1
            assert len(await group.receive(wait=2)) == 1
    assert calls["PollStream"] == 1 and calls["ReceiveStream"] == 1
    assert calls["Poll"] == 0 and calls["Receive"] == 0


async def test_a_second_poll_while_one_waits_on_the_stream_is_answered_too(counted, connect):
    engine, target, calls = counted
    backend = await connect(target)
    consumer = await backend.lite_consumer("replies", "gateway")
    await consumer.subscribe(["a", "b"])
    first = asyncio.ensure_future(consumer.poll(max_messages=1, wait=5))
    second = asyncio.ensure_future(consumer.poll(max_messages=1, wait=5))
    await backend.publish("replies", Message(b"1"), lite_topic="a")
    await backend.publish("replies", Message(b"2"), lite_topic="b")
    async with asyncio.timeout(5):
        got = await first + await second
    assert sorted(d.body for d in got) == [b"1", b"2"]
    assert calls["Poll"] == 1   # the second went alone


async def test_a_stream_poll_on_a_forgotten_client_reopens_it(counted, connect):
    engine, target, calls = counted
    backend = await connect(target, session_timeout=3600)
    consumer = await backend.lite_consumer("replies", "gateway", "c1")
    await consumer.subscribe(["r1"])
    assert await consumer.poll() == []
    engine.close_client("c1")
    await engine.publish("replies", b"waiting", lite="r1")
    async with asyncio.timeout(5):
        [d] = await consumer.poll(wait=2)
    assert d.body == b"waiting" and consumer.reopened == 1 and calls["PollStream"] == 2


# ---------------------------------------------------------------- bad batches on the raw stub

BAD_BATCHES = [
    ("PublishMany", pb.PublishManyRequest()),
    ("PublishMany", pb.PublishManyRequest(items=[pb.PublishRequest(topic="t", body=b"x")] * (MAX_BATCH_ITEMS + 1))),
    ("AckMany", pb.AckManyRequest()),
    ("AckMany", pb.AckManyRequest(receipts=["r"] * (MAX_BATCH_ITEMS + 1))),
]


@pytest.mark.parametrize("method, request_", BAD_BATCHES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(BAD_BATCHES)])
async def test_a_malformed_batch_is_invalid_argument_and_the_server_keeps_serving(stub, method, request_):
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await getattr(stub, method)(request_, timeout=5)
    assert failed.value.code() == S.INVALID_ARGUMENT, failed.value.details()
    sent = dict(failed.value.trailing_metadata() or ()).get(ERROR_KEY)
    assert type(decode_error(sent)).__name__ == "InvalidArgumentError"
    assert (await stub.Health(pb.HealthRequest(), timeout=5)).ok


async def test_each_bad_item_of_a_batch_carries_its_own_status_and_error(stub):
    published = await stub.PublishMany(pb.PublishManyRequest(items=[
        pb.PublishRequest(topic="t", body=b"ok"), pb.PublishRequest(topic="", body=b"x")]), timeout=5)
    ok, bad = published.results
    assert ok.message_id and not ok.HasField("error")
    assert S(next(c for c in S if c.value[0] == bad.error.code)) == S.INVALID_ARGUMENT
    assert type(decode_error(bad.error.error)).__name__ == "InvalidNameError"
    acked = await stub.AckMany(pb.AckManyRequest(receipts=["nope", ""]), timeout=5)
    assert [type(decode_error(r.error.error)).__name__ for r in acked.results] == \
        ["UnknownReceiptError", "InvalidArgumentError"]


async def test_a_bad_request_on_a_stream_ends_it_with_its_status(stub):
    call = stub.PollStream()
    await call.write(pb.PollRequest(client_id="ghost", max_messages=1))
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        async with asyncio.timeout(5):
            await call.read()
    assert failed.value.code() == S.NOT_FOUND
    assert type(decode_error(dict(failed.value.trailing_metadata())[ERROR_KEY])).__name__ == "UnknownClientError"
    call = stub.ReceiveStream()
    await call.write(pb.ReceiveRequest(topic="t", group="g", max_messages=0))
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        async with asyncio.timeout(5):
            await call.read()
    assert failed.value.code() == S.INVALID_ARGUMENT
    assert (await stub.Health(pb.HealthRequest(), timeout=5)).ok


# ---------------------------------------------------------------- a killed engine

async def test_a_killed_engine_fails_every_pending_caller_and_the_streams_reconnect(tmp_path, connect):
    proc = EngineProcess(tmp_path / "engine", fsync="always")
    try:
        backend = await connect(proc.start(), rpc_timeout=5.0)
        await backend.create_topic(TopicSpec("tasks"))
        consumer = await backend.lite_consumer("replies", "gateway")
        await consumer.subscribe(["r1"])
        group = await backend.group_consumer("tasks", "workers")
        published = asyncio.Event()

        async def publish_until_it_fails():
            while True:
                await backend.publish("tasks", Message(b"x"))
                published.set()

        polling = asyncio.ensure_future(consumer.poll(wait=30))
        publishers = [asyncio.ensure_future(publish_until_it_fails()) for _ in range(32)]
        async with asyncio.timeout(10):
            await published.wait()
        receiving = asyncio.ensure_future(group.receive(max_messages=1000, wait=30))
        acks = [asyncio.ensure_future(d.ack()) for d in await group.receive(max_messages=50)]
        proc.kill()
        async with asyncio.timeout(10):   # nobody hangs
            outcomes = await asyncio.gather(polling, *publishers, return_exceptions=True)
            late = await asyncio.gather(receiving, *acks, return_exceptions=True)
        assert all(isinstance(o, errors.BackendUnavailableError) for o in outcomes), outcomes
        assert all(o is None or isinstance(o, (list, errors.BackendUnavailableError)) for o in late), late

        proc.start()
        async with asyncio.timeout(20):
            assert await consumer.poll(wait=0.5) == []   # a new stream, waiting for the engine to be back
            await backend.publish("replies", Message(b"back"), lite_topic="r1")
            got = await consumer.poll(wait=5)
        assert [d.body for d in got] == [b"back"]
        await got[0].ack()
    finally:
        proc.kill()
