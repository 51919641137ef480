"""Where a capability topic's records land: keyless records of one event-loop turn share a
partition (fewer partitions per produce request for the broker) up to a bound, successive turns
rotate over the partitions (members of a group share the work), a key keeps its own partition."""

import asyncio

from adapters.base import Message, TopicSpec
from adapters.kafka import backend as kafka_backend
from adapters.kafka import names
from tests.contract.helpers import unique

from .support import PARTITIONS


def _partition(message_id: str) -> int:
    return int(message_id.split("-")[0])


async def test_keyless_records_started_in_one_loop_turn_share_one_partition(backend):
    topic = unique("cap")
    await backend.create_topic(TopicSpec(topic))
    for _ in range(3):
        ids = await asyncio.gather(*(backend.publish(topic, Message(f"m{n}".encode())) for n in range(16)))
        assert len({_partition(i) for i in ids}) == 1


async def test_keyless_records_published_one_after_another_rotate_over_every_partition(backend):
    topic = unique("cap")
    await backend.create_topic(TopicSpec(topic))
    ids = [await backend.publish(topic, Message(f"m{n}".encode())) for n in range(PARTITIONS)]
    assert sorted(_partition(i) for i in ids) == list(range(PARTITIONS))


async def test_successive_bursts_go_to_successive_partitions(backend):
    topic = unique("cap")
    await backend.create_topic(TopicSpec(topic))
    seen = []
    for _ in range(PARTITIONS):
        ids = await asyncio.gather(*(backend.publish(topic, Message(b"x")) for _ in range(8)))
        seen.append(_partition(ids[0]))
    assert sorted(seen) == list(range(PARTITIONS))


async def test_a_keyed_record_keeps_its_keys_partition_inside_a_burst_of_keyless_ones(backend):
    topic = unique("cap")
    await backend.create_topic(TopicSpec(topic))
    keys = [f"key-{n}" for n in range(8)]
    ids = await asyncio.gather(*(backend.publish(topic, Message(b"k", key=k)) for k in keys),
                               *(backend.publish(topic, Message(b"plain")) for _ in range(8)))
    assert [_partition(i) for i in ids[:8]] == [names.lite_partition(k, PARTITIONS) for k in keys]
    assert len({_partition(i) for i in ids[8:]}) == 1


async def test_a_burst_larger_than_the_sticky_bound_spreads_over_partitions_in_turn(backend):
    topic = unique("cap")
    await backend.create_topic(TopicSpec(topic))
    size = kafka_backend.STICKY_RECORDS
    ids = await asyncio.gather(*(backend.publish(topic, Message(b"x")) for _ in range(2 * size)))
    first, second = {_partition(i) for i in ids[:size]}, {_partition(i) for i in ids[size:]}
    assert len(first) == len(second) == 1 and first != second


async def test_large_bodies_move_to_the_next_partition_after_one_producer_batch_of_bytes(backend):
    topic = unique("cap")
    await backend.create_topic(TopicSpec(topic))
    body = b"b" * (kafka_backend.STICKY_BYTES // 2)
    ids = await asyncio.gather(*(backend.publish(topic, Message(body)) for _ in range(4)))
    assert [_partition(i) for i in ids][0::2] == [_partition(i) for i in ids][1::2]
    assert len({_partition(i) for i in ids}) == 2
