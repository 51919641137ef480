"""Bad input to the Kafka adapter: refused before any broker call with a typed error, and
records the adapter did not write (other Kafka producers share these topics) are tolerated."""

import pytest
from aiokafka import AIOKafkaProducer

from adapters.base import Message, TopicSpec
from adapters.errors import ConflictError, InvalidRequestError, MessageTooLargeError
from adapters.kafka import KafkaBackend, names
from tests.contract.helpers import poll_until, receive_until, unique

from .test_mapping import name_on


@pytest.mark.parametrize("name", [".", "..", "a/b", "a:b", "tb.topics", "tb.retry.x", "x" * 250])
async def test_names_kafka_cannot_take_or_the_adapter_reserves_are_refused(backend, name):
    with pytest.raises(InvalidRequestError):
        await backend.create_topic(TopicSpec(name))
    with pytest.raises(InvalidRequestError):
        await backend.publish(name, Message(b"x"))


async def test_the_longest_kafka_name_is_accepted(backend):
    name = "n" * 249
    await backend.create_topic(TopicSpec(name))
    assert await backend.publish(name, Message(b"x"))


@pytest.mark.parametrize("headers", [{"tb-key": "x"}, {"tb-attempt": "9"}, {"": "x"}, {"h": 1}])
async def test_reserved_or_malformed_headers_are_refused(backend, headers):
    topic = unique("cap")
    with pytest.raises(InvalidRequestError):
        await backend.publish(topic, Message(b"x", headers))


async def test_a_body_over_the_configured_limit_is_refused_before_the_broker_sees_it(open_backend):
    backend = await open_backend(max_message_bytes=1000)
    with pytest.raises(MessageTooLargeError) as err:
        await backend.publish(unique("cap"), Message(b"x" * 1001))
    assert (err.value.size, err.value.limit) == (1001, 1000)
    table = await backend.table(unique("t"))
    with pytest.raises(MessageTooLargeError):
        await table.put("k", b"x" * 1001)


async def test_a_topic_keeps_its_kind(backend):
    cap, parent = unique("cap"), unique("reply")
    await backend.create_topic(TopicSpec(cap))
    await backend.create_topic(TopicSpec(parent, lite=True))
    with pytest.raises(ConflictError):
        await backend.create_topic(TopicSpec(cap, lite=True))
    with pytest.raises(ConflictError):
        await backend.publish(parent, Message(b"x"))
    with pytest.raises(ConflictError):
        await backend.publish(cap, Message(b"x"), lite_topic="t")
    with pytest.raises(ConflictError):
        await backend.lite_consumer(cap, "gw")


async def test_bad_timer_arguments_are_refused(backend):
    topic = unique("cap")
    with pytest.raises(InvalidRequestError):
        await backend.group_consumer(topic, "g", invisible=0)
    consumer = await backend.group_consumer(topic, "g")
    await backend.publish(topic, Message(b"x"))
    [d] = await receive_until(consumer, 1)
    for call in (lambda: d.nack(-1), lambda: d.extend(0), lambda: d.extend(float("nan"))):
        with pytest.raises(InvalidRequestError):
            await call()
    await d.ack()


async def test_one_client_id_cannot_serve_two_groups(backend):
    parent = unique("reply")
    first = await backend.lite_consumer(parent, "gw", "client-1")
    assert await backend.lite_consumer(parent, "gw", "client-1") is first
    with pytest.raises(InvalidRequestError):
        await backend.lite_consumer(parent, "other", "client-1")


@pytest.mark.parametrize("settings", [{"reply_partitions": 0}, {"session_timeout": -1},
                                      {"replication_factor": 0}, {"max_buffered": "many"}])
def test_bad_settings_fail_at_construction(settings):
    with pytest.raises(ValueError):
        KafkaBackend("127.0.0.1:9092", **settings)


async def test_foreign_records_on_a_lite_parent_are_skipped(kafka, backend):
    parent = unique("reply")
    await backend.create_topic(TopicSpec(parent, lite=True))
    consumer = await backend.lite_consumer(parent, "gw")
    mine = name_on(0, "mine")
    await consumer.subscribe([mine])
    async with AIOKafkaProducer(bootstrap_servers=kafka.bootstrap) as producer:
        await producer.send_and_wait(parent, b"no key", partition=0)
        await producer.send_and_wait(parent, b"bad key", key=b"\xff\xfe", partition=0)
        await producer.send_and_wait(parent, None, key=mine.encode(), partition=0)   # null value
    await backend.publish(parent, Message(b"fine"), lite_topic=mine)

    got = await poll_until(consumer, 2)

    assert [d.body for d in got] == [b"", b"fine"]
    assert consumer.stats()["skipped"] == 2


async def test_forged_retry_headers_are_read_as_a_first_attempt(kafka, backend):
    topic = unique("cap")
    consumer = await backend.group_consumer(topic, "g")
    async with AIOKafkaProducer(bootstrap_servers=kafka.bootstrap) as producer:
        await producer.send_and_wait(names.retry_topic(topic, "g"), b"odd",
                                     headers=[("tb-attempt", b"lots"), ("tb-not-before", b"soon")])

    [d] = await receive_until(consumer, 1)

    assert (d.body, d.attempt) == (b"odd", 1)
    await d.ack()


async def test_a_foreign_row_with_an_undecodable_key_does_not_break_a_table(kafka, backend):
    name = unique("registry")
    table = await backend.table(name)
    async with AIOKafkaProducer(bootstrap_servers=kafka.bootstrap) as producer:   # (keyless rows: Kafka refuses them)
        await producer.send_and_wait(f"tb.table.{name}", b"orphan", key=b"\xff", partition=0)
    await table.put("k", b"v")
    assert await table.items() == [("k", b"v"), ("\ufffd", b"orphan")]


async def test_a_session_timeout_the_broker_refuses_fails_when_joining_not_later(open_backend):
    backend = await open_backend(session_timeout=2.0)     # the broker's floor is 6 s
    with pytest.raises(InvalidRequestError, match="session_timeout"):
        await backend.group_consumer(unique("cap"), "g")
    with pytest.raises(InvalidRequestError, match="session_timeout"):
        await backend.lite_consumer(unique("reply"), "gw")
