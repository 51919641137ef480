"""The remote adapter's batch items built in place (issue 17): a publish protobuf cannot carry
fails alone in its batch, whether refused when it is queued or when the batch is built; headers and keys ride along with plain items;
ack_many sends a consumer's acks as one AckMany and keeps adapters.base.ack_many's promise; the
engine's PublishMany answers each item as the unary Publish would, without a task per item."""

from __future__ import annotations

import asyncio

import pytest

from adapters import errors
from adapters.base import Message, TopicSpec, ack_many
from lite_engine import TopicConfig
from lite_engine.proto import engine_pb2 as pb
from tests.lite_engine.test_service_batches import connect, counted, stub  # noqa: F401 (fixtures)


async def test_a_name_protobuf_cannot_carry_fails_alone_in_a_batch_of_plain_and_rich_items(counted, connect):
    engine, target, calls = counted
    backend = await connect(target)
    await backend.create_topic(TopicSpec("replies", lite=True))
    results = await asyncio.gather(
        backend.publish("tasks", Message(b"plain")),
        backend.publish("tasks\ud800", Message(b"bad")),                      # a lone surrogate
        backend.publish("tasks", Message(b"rich", {"trace": "t-1"}, key="k")),
        backend.publish("replies", Message(bytearray(b"x")), lite_topic="r-1"),   # not bytes: refused here
        backend.publish("replies", Message(b"lite"), lite_topic="r-1"),
        backend.publish("tasks", Message(b"last")),
        return_exceptions=True)
    assert calls["PublishMany"] == 1
    assert [type(r) for r in results] == [str, errors.InvalidRequestError, str, errors.InvalidRequestError, str, str]
    got = await engine.receive("tasks", "g", max_messages=10)
    assert [(d.body, d.headers, d.key) for d in got] == [
        (b"plain", {}, None), (b"rich", {"trace": "t-1"}, "k"), (b"last", {}, None)]


async def test_a_batch_whose_every_item_is_refused_makes_no_call(counted, connect):
    _, target, calls = counted
    backend = await connect(target)
    with pytest.raises(errors.InvalidRequestError):
        await backend.publish("tasks", Message(b"x"), lite_topic="r\udc00")
    assert calls["PublishMany"] == 0


async def test_ack_many_acks_a_consumers_deliveries_in_one_call_and_keeps_its_promise(counted, connect):
    engine, target, calls = counted
    backend = await connect(target)
    for i in range(10):
        await backend.publish("tasks", Message(b"%d" % i))
    group = await backend.group_consumer("tasks", "workers")
    got = await group.receive(max_messages=10)
    await got[0].ack()
    before = calls["AckMany"]
    with pytest.raises(errors.UnknownReceiptError):
        await ack_many(got[:5])                  # the stale one raises after the rest are acked
    assert calls["AckMany"] == before + 1
    await ack_many(got, gone_ok=True)            # every one already gone but the last five
    assert calls["AckMany"] == before + 2
    assert engine.sizes()["inflight"] == 0


async def test_ack_many_fails_a_receipt_protobuf_cannot_carry_alone(counted, connect):
    engine, target, _ = counted
    backend = await connect(target)
    await backend.publish("tasks", Message(b"x"))
    group = await backend.group_consumer("tasks", "workers")
    (good,) = await group.receive(max_messages=1)
    bad = type(good)(good.topic, None, good.message_id, good.body, {}, None, 1, "r\ud800", good._settler)
    with pytest.raises(errors.InvalidRequestError):
        await ack_many([bad, good])
    assert engine.sizes()["inflight"] == 0


async def test_publish_many_answers_each_item_as_publish_does(counted, stub):
    engine, _, _ = counted
    await engine.create_topic("replies", TopicConfig(lite=True))
    items = [pb.PublishRequest(topic="tasks", body=b"a"),
             pb.PublishRequest(topic="replies", body=b"b"),            # a lite parent without a lite topic
             pb.PublishRequest(topic="replies", lite_topic="r-1", body=b"c", headers={"h": "v"}, key="k"),
             pb.PublishRequest(topic="tasks", body=b"d")]
    got = await stub.PublishMany(pb.PublishManyRequest(items=items))
    assert [r.HasField("error") for r in got.results] == [False, True, False, False]
    assert got.results[1].error.code != 0 and b"TopicKindError" in got.results[1].error.error
    assert [d.body for d in await engine.receive("tasks", "g", max_messages=10)] == [b"a", b"d"]
    ids = [r.message_id for r in got.results if not r.HasField("error")]
    assert ids == sorted(ids) and len(set(ids)) == 3
