"""Malformed input that reaches the RocketMQ adapter gets a port error; the adapter keeps serving.

Most of it is refused before anything is sent: what RocketMQ itself would refuse (property names
it reserves, empty bodies) is either mapped (empty bodies travel marked) or refused up front.
"""

import math

import pytest

from adapters.base import Message, TopicSpec
from adapters.errors import ConflictError, InvalidRequestError, NotFoundError

from tests.contract.helpers import capability, lite_parent, poll_until, receive_until, unique


@pytest.mark.parametrize("message", [
    "not a Message",
    Message("text, not bytes"),
    Message(b"x", headers=["not", "a", "dict"]),
    Message(b"x", headers={"k": 1}),
    Message(b"x", headers={"": "empty name"}),
    Message(b"x", headers={"KEYS": "RocketMQ's own property"}),
    Message(b"x", headers={"INNER_MULTI_DISPATCH": "would re-route the message"}),
    Message(b"x", headers={"__tb.key": "the adapter's own property"}),
    Message(b"x", key=""),
    Message(b"x", key="k" * 1025),
    Message(b"x", key="tab\tkey"),
])
async def test_malformed_messages_are_refused_before_sending(backend, message):
    topic = await capability(backend)
    with pytest.raises(InvalidRequestError):
        await backend.publish(topic, message)


async def test_empty_bodies_and_keys_with_spaces_survive_the_round_trip(backend):
    topic = await capability(backend)
    consumer = await backend.group_consumer(topic, "g")
    await backend.publish(topic, Message(b"", {"h": "v"}, key="a key  with spaces"))
    [d] = await receive_until(consumer, 1)
    assert (d.body, d.headers, d.key) == (b"", {"h": "v"}, "a key  with spaces")
    await d.ack()


async def test_publishing_to_a_missing_topic_is_not_found(backend):
    with pytest.raises(NotFoundError):
        await backend.publish(unique("nowhere"), Message(b"x"))


async def test_topic_kinds_do_not_mix(backend):
    topic, parent = await capability(backend), await lite_parent(backend)
    with pytest.raises(ConflictError):
        await backend.publish(topic, Message(b"x"), lite_topic="t")
    with pytest.raises(ConflictError):
        await backend.publish(parent, Message(b"x"))
    with pytest.raises(ConflictError):
        await backend.create_topic(TopicSpec(topic, lite=True))
    with pytest.raises(ConflictError):
        await backend.lite_consumer(topic, "gw")
    with pytest.raises(ConflictError):
        await backend.group_consumer(parent, "g")


@pytest.mark.parametrize("spec", [
    TopicSpec("ok-name", max_attempts=0), TopicSpec("ok-name", max_attempts=True),
    TopicSpec("ok-name", lite=True, lite_idle_seconds=-1), TopicSpec("ok-name", lite=True, lite_idle_seconds=math.nan),
])
async def test_bad_topic_settings_are_refused(backend, spec):
    with pytest.raises(InvalidRequestError):
        await backend.create_topic(spec)


async def test_bad_consumer_arguments_are_refused(backend):
    topic, parent = await capability(backend), await lite_parent(backend)
    for invisible in (0, -1, math.inf, "30"):
        with pytest.raises(InvalidRequestError):
            await backend.group_consumer(topic, "g", invisible=invisible)
    with pytest.raises(InvalidRequestError):
        await backend.lite_consumer(parent, "gw", client_id="white space")
    with pytest.raises(InvalidRequestError):
        await backend.lite_consumer(parent, "g" * 120)   # "<group>|<parent>" exceeds RocketMQ's limit
    consumer = await backend.lite_consumer(parent, "gw")
    with pytest.raises(InvalidRequestError):
        await consumer.subscribe("task-1")                # one string, not a collection of names
    with pytest.raises(InvalidRequestError):
        await consumer.subscribe(42)
    with pytest.raises(InvalidRequestError):
        await consumer.sync(["ok", "not ok"])
    assert consumer.interest == frozenset()


async def test_bad_settle_arguments_are_refused_and_the_delivery_stays_settleable(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, "gw")
    await consumer.subscribe(["t"])
    await backend.publish(parent, Message(b"x"), lite_topic="t")
    [d] = await poll_until(consumer, 1)
    for bad in (-1, math.nan, "1"):
        with pytest.raises(InvalidRequestError):
            await d.nack(bad)
    for bad in (0, -5, math.inf):
        with pytest.raises(InvalidRequestError):
            await d.extend(bad)
    await d.ack()


async def test_without_an_admin_path_missing_topics_name_the_command_to_create_them(open_backend):
    backend = await open_backend(admin=None)
    name = unique("cap")
    with pytest.raises(NotFoundError) as err:
        await backend.create_topic(TopicSpec(name))
    assert f"mqadmin updateTopic -n <namesrv> -c <cluster> -t {name} -a +message.type=NORMAL" in str(err.value)


def test_lite_idle_seconds_may_reach_the_expiration_attributes_range():
    from adapters.rocketmq.backend import MAX_LITE_EXPIRATION_MINUTES, _check_idle

    _check_idle(24 * 3600)                                   # the gateway's reply channels: a day
    _check_idle(MAX_LITE_EXPIRATION_MINUTES * 60)
    for bad in (0, -1, MAX_LITE_EXPIRATION_MINUTES * 60 + 1, float("inf"), True, "600"):
        with pytest.raises(InvalidRequestError):
            _check_idle(bad)
