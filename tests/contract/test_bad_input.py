"""Bad input gets a typed error and the backend keeps serving."""

import pytest

from adapters.base import Delivery, Message, TopicSpec
from adapters.errors import InvalidRequestError, MessageTooLargeError, UnknownReceiptError

from .helpers import capability, lite_parent, poll_until, publish_all, receive_until

BAD_NAMES = ["", "has space", "tab\there", "nul\x00", "x" * 300, "ünïcode"]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_invalid_topic_names_are_rejected(backend, name):
    with pytest.raises(InvalidRequestError):
        await backend.publish(name, Message(b"x"))
    with pytest.raises(InvalidRequestError):
        await backend.create_topic(TopicSpec(name))


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_invalid_lite_topic_names_are_rejected(backend, name):
    parent = await lite_parent(backend)
    with pytest.raises(InvalidRequestError):
        await backend.publish(parent, Message(b"x"), lite_topic=name)
    consumer = await backend.lite_consumer(parent, "gw")
    with pytest.raises(InvalidRequestError):
        await consumer.subscribe([name])


async def test_oversize_body_is_rejected_and_the_backend_keeps_serving(backend):
    topic = await capability(backend)
    with pytest.raises(MessageTooLargeError) as err:
        await backend.publish(topic, Message(b"x" * (backend.max_message_bytes + 1)))
    assert err.value.limit == backend.max_message_bytes
    await publish_all(backend, topic, [b"fine"])
    consumer = await backend.group_consumer(topic, "g")
    [d] = await receive_until(consumer, 1)
    await d.ack()


async def test_unknown_receipt_is_rejected(backend):
    topic = await capability(backend)
    consumer = await backend.group_consumer(topic, "g")
    forged = Delivery(topic, None, "0", b"", {}, None, 1, "not-a-receipt", consumer)
    with pytest.raises(UnknownReceiptError):
        await forged.ack()


async def test_double_ack_is_rejected(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, "gw")
    await consumer.subscribe(["t"])
    await publish_all(backend, parent, [b"x"], lite_topic="t")
    [d] = await poll_until(consumer, 1)
    await d.ack()
    with pytest.raises(UnknownReceiptError):
        await d.ack()


async def test_bad_poll_arguments_are_rejected(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, "gw")
    for kwargs in ({"max_messages": 0}, {"max_messages": 10**6}, {"wait": -1}):
        with pytest.raises(InvalidRequestError):
            await consumer.poll(**kwargs)


async def test_table_rejects_bad_keys_and_values(backend):
    table = await backend.table("registry")
    with pytest.raises(InvalidRequestError):
        await table.put("", b"x")
    with pytest.raises(InvalidRequestError):
        await table.put("k", "not bytes")
