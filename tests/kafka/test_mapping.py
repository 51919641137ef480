"""How the Kafka adapter lays the port out on Kafka: what a plain Kafka client sees, and what a
lite client reads to serve its subscriptions."""

import asyncio
import itertools

from aiokafka import TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from adapters.base import Message, TopicSpec
from adapters.kafka import names
from tests.contract.helpers import ack_all, poll_until, receive_until, unique

from .conftest import raw_reader
from .support import PARTITIONS

STEP = 20


def name_on(partition: int, prefix: str = "t", partitions: int = PARTITIONS) -> str:
    """A lite topic name that routes to `partition`."""
    return next(n for n in (f"{prefix}{i}" for i in itertools.count())
                if names.lite_partition(n, partitions) == partition)


async def read_raw(bootstrap: str, topic: str, partitions, count: int):
    async with raw_reader(bootstrap, topic, partitions) as consumer, asyncio.timeout(STEP):
        out = []
        while len(out) < count:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += records
        return out


async def test_lite_message_is_a_record_keyed_by_its_lite_topic_on_the_murmur2_partition(kafka, backend):
    parent = unique("reply")
    await backend.create_topic(TopicSpec(parent, lite=True))
    mid = await backend.publish(parent, Message(b"body", {"h": "v"}, key="k1"), lite_topic="task-7")

    [record] = await read_raw(kafka.bootstrap, parent, range(PARTITIONS), 1)

    assert (record.key, record.value, record.partition) == (b"task-7", b"body", names.lite_partition("task-7", PARTITIONS))
    assert dict(record.headers) == {"h": b"v", "tb-key": b"k1"}
    assert mid == f"{record.partition}-{record.offset}"
    assert record.timestamp_type == 1        # LogAppendTime: idle expiry runs on the broker's clock


async def test_acks_commit_the_acked_prefix_of_each_partition_for_the_kafka_group_group_at_topic(backend, admin):
    topic = unique("cap")
    await backend.create_topic(TopicSpec(topic))
    consumer = await backend.group_consumer(topic, "workers")
    await backend.publish(topic, Message(b"a", key="same"))
    await backend.publish(topic, Message(b"b", key="same"))   # same key: same partition, offsets 0 and 1
    first, second = await receive_until(consumer, 2)
    partition = TopicPartition(topic, names.lite_partition("same", PARTITIONS))

    await second.ack()                       # offset 1 acked, offset 0 not: nothing can be committed
    assert await committed(admin, "workers@" + topic, partition) in (None, -1, 0)   # 0: nothing acked below
    await first.ack()
    async with asyncio.timeout(STEP):
        while await committed(admin, "workers@" + topic, partition) != 2:
            await asyncio.sleep(0.05)   # sleep-ok: commits are coalesced in the background


async def committed(admin, group: str, tp: TopicPartition):
    offsets = await admin.list_consumer_group_offsets(group)
    found = offsets.get(tp)
    return found.offset if found is not None else None


async def test_nack_republishes_to_the_groups_retry_topic_with_id_and_attempt_headers(kafka, backend):
    topic = unique("cap")
    await backend.create_topic(TopicSpec(topic))
    consumer = await backend.group_consumer(topic, "g")
    mid = await backend.publish(topic, Message(b"job", {"trace": "1"}, key="k"))
    [d] = await receive_until(consumer, 1)
    await d.nack(delay=0.2)

    [copy] = await read_raw(kafka.bootstrap, names.retry_topic(topic, "g"), range(PARTITIONS), 1)
    headers = dict(copy.headers)
    assert (copy.key, copy.value, headers["tb-id"], headers["tb-attempt"]) == (b"k", b"job", mid.encode(), b"1")
    assert headers["trace"] == b"1" and int(headers["tb-not-before"]) > 0
    [again] = await receive_until(consumer, 1)
    assert (again.message_id, again.attempt, again.headers, again.key) == (mid, 2, {"trace": "1"}, "k")
    await again.ack()


async def test_dead_letters_carry_where_they_came_from(backend):
    topic = unique("cap")
    await backend.create_topic(TopicSpec(topic, max_attempts=1))
    consumer = await backend.group_consumer(topic, "dl-group")
    mid = await backend.publish(topic, Message(b"poison"))
    [d] = await receive_until(consumer, 1)
    await d.nack()
    dead = await backend.group_consumer(backend.dead_letter_topic("dl-group"), unique("ops"))
    letters = await receive_until(dead, 1)
    letter = next(x for x in letters if x.headers.get("x-dlq-message-id") == mid)
    assert letter.headers["x-dlq-topic"] == topic and letter.body == b"poison"
    assert backend.dead_letter_topic("dl-group") == "tb.dlq.dl-group"


async def test_table_is_a_compacted_topic_another_instance_reads_at_open(backend, open_backend, admin):
    name = unique("registry")
    table = await backend.table(name)
    await table.put("agent", b"v1")
    await table.put("agent", b"v2")
    await table.put("gone", b"x")
    assert await table.delete("gone") is True
    assert await table.delete("never") is False

    other = await (await open_backend()).table(name)

    assert await other.items() == [("agent", b"v2")]
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, f"tb.table.{name}",
                                                              {"cleanup.policy": None})])
    [resource] = response.to_object()["resources"]
    assert {e["config_names"]: e["config_value"] for e in resource["config_entries"]} == {"cleanup.policy": "compact"}


async def test_topic_settings_reach_another_instance_through_the_topics_table(backend, open_backend):
    parent = unique("reply")
    await backend.create_topic(TopicSpec(parent, lite=True, ordered=True))
    other = await open_backend()
    consumer = await other.lite_consumer(parent, "gw")
    await consumer.subscribe(["t"])
    await backend.publish(parent, Message(b"1"), lite_topic="t")
    await backend.publish(parent, Message(b"2"), lite_topic="t")

    [d] = await poll_until(consumer, 1)
    assert await consumer.poll(max_messages=5, wait=0.3) == []     # ordered: one at a time
    await d.ack()
    [d2] = await poll_until(consumer, 1)
    assert (d.body, d2.body) == (b"1", b"2")


async def test_a_lite_client_reads_only_its_partitions_and_counts_what_it_skips(backend):
    parent = unique("reply")
    await backend.create_topic(TopicSpec(parent, lite=True))
    mine, neighbour, elsewhere = name_on(1, "mine"), name_on(1, "other"), name_on(2, "far")
    consumer = await backend.lite_consumer(parent, "gw")
    await consumer.subscribe([mine])
    for name in (neighbour, elsewhere, neighbour, mine):
        await backend.publish(parent, Message(name.encode()), lite_topic=name)

    [d] = await poll_until(consumer, 1)
    stats = consumer.stats()

    assert d.body == mine.encode()
    assert stats["partitions_read"] == [1]
    assert (stats["read"], stats["skipped"], stats["matched"]) == (3, 2, 1)


async def test_subscribing_to_a_lite_topic_the_reader_already_passed_scans_its_history(backend):
    parent = unique("reply")
    await backend.create_topic(TopicSpec(parent, lite=True))
    first, later = name_on(3, "first"), name_on(3, "later")
    consumer = await backend.lite_consumer(parent, "gw")
    await consumer.subscribe([first])
    await backend.publish(parent, Message(b"l1"), lite_topic=later)
    await backend.publish(parent, Message(b"f1"), lite_topic=first)
    await ack_all(await poll_until(consumer, 1))       # the reader is now past "later"'s record

    await consumer.subscribe([later])
    await backend.publish(parent, Message(b"l2"), lite_topic=later)
    got = await poll_until(consumer, 2)

    assert [d.body for d in got] == [b"l1", b"l2"]
    assert consumer.stats()["scanned"] == 1


async def test_acked_messages_are_not_delivered_again_after_a_resubscribe(backend):
    parent = unique("reply")
    await backend.create_topic(TopicSpec(parent, lite=True))
    consumer = await backend.lite_consumer(parent, "gw")
    await consumer.subscribe(["t"])
    await backend.publish(parent, Message(b"1"), lite_topic="t")
    await ack_all(await poll_until(consumer, 1))
    await consumer.unsubscribe(["t"])
    await backend.publish(parent, Message(b"2"), lite_topic="t")

    await consumer.subscribe(["t"])

    [d] = await poll_until(consumer, 1)
    assert d.body == b"2"
    assert await consumer.poll(wait=0.3) == []


async def test_history_before_an_idle_gap_belongs_to_a_deleted_incarnation(backend):
    parent = unique("reply")
    await backend.create_topic(TopicSpec(parent, lite=True, lite_idle_seconds=0.5))
    await backend.publish(parent, Message(b"old"), lite_topic="t")
    await asyncio.sleep(1.0)   # sleep-ok: the gap itself is what is under test
    await backend.publish(parent, Message(b"new"), lite_topic="t")
    consumer = await backend.lite_consumer(parent, "late")

    await consumer.subscribe(["t"])

    [d] = await poll_until(consumer, 1)
    assert d.body == b"new"
    assert await consumer.poll(wait=0.3) == []


async def test_routed_names_land_on_partitions_their_instance_owns(open_backend):
    one, two = await open_backend(), await open_backend()
    parent = unique("reply")
    await one.create_topic(TopicSpec(parent, lite=True))
    a = await one.lite_consumer(parent, "gw-a")
    b = await two.lite_consumer(parent, "gw-b")
    await a.routed_name(lambda: unique("task"))
    await b.routed_name(lambda: unique("task"))      # joins: the partitions are split
    async with asyncio.timeout(STEP):
        while len(a.owned_partitions() | b.owned_partitions()) < PARTITIONS or a.owned_partitions() & b.owned_partitions():
            await asyncio.sleep(0.05)  # sleep-ok: the first owner learns of the split at its next heartbeat

    name = await b.routed_name(lambda: unique("task"))
    await b.subscribe([name])
    await one.publish(parent, Message(b"reply"), lite_topic=name)
    [d] = await poll_until(b, 1)

    assert names.lite_partition(name, PARTITIONS) in b.owned_partitions()
    assert d.body == b"reply" and b.stats()["skipped"] == 0 and b.stats()["scanned"] == 0


async def test_a_lite_message_past_its_retry_limit_goes_to_the_groups_dead_letter_topic(backend):
    parent = unique("reply")
    await backend.create_topic(TopicSpec(parent, lite=True, max_attempts=1))
    group = unique("gw")
    consumer = await backend.lite_consumer(parent, group)
    await consumer.subscribe(["t"])
    mid = await backend.publish(parent, Message(b"poison"), lite_topic="t")
    [d] = await poll_until(consumer, 1)
    await d.nack()

    assert await consumer.poll(wait=0.5) == []
    dead = await backend.group_consumer(backend.dead_letter_topic(group), "ops")
    [letter] = await receive_until(dead, 1)
    assert letter.body == b"poison"
    assert (letter.headers["x-dlq-lite-topic"], letter.headers["x-dlq-message-id"]) == ("t", mid)
