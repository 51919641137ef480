"""Where a capability topic's records land: keyless records go round-robin over the partitions,
one after another and inside a burst (members of a group share the work), a key keeps its own
partition. (A sticky partition per event-loop turn was tried for issue 17 and doubled the
broker's CPU per round trip in bench.backend_roundtrip --rounds 3 at c64; see the commit.)"""

import asyncio

from adapters.base import Message, TopicSpec
from adapters.kafka import names
from tests.contract.helpers import unique

from .support import PARTITIONS


def _partition(message_id: str) -> int:
    return int(message_id.split("-")[0])


async def test_keyless_records_published_one_after_another_rotate_over_every_partition(backend):
    topic = unique("cap")
    await backend.create_topic(TopicSpec(topic))
    ids = [await backend.publish(topic, Message(f"m{n}".encode())) for n in range(PARTITIONS)]
    assert sorted(_partition(i) for i in ids) == list(range(PARTITIONS))


async def test_a_burst_of_keyless_records_spreads_evenly_over_the_partitions(backend):
    topic = unique("cap")
    await backend.create_topic(TopicSpec(topic))
    ids = await asyncio.gather(*(backend.publish(topic, Message(b"x")) for _ in range(4 * PARTITIONS)))
    counts = [sum(1 for i in ids if _partition(i) == p) for p in range(PARTITIONS)]
    assert counts == [4] * PARTITIONS


async def test_a_keyed_record_keeps_its_keys_partition_inside_a_burst_of_keyless_ones(backend):
    topic = unique("cap")
    await backend.create_topic(TopicSpec(topic))
    keys = [f"key-{n}" for n in range(8)]
    ids = await asyncio.gather(*(backend.publish(topic, Message(b"k", key=k)) for k in keys),
                               *(backend.publish(topic, Message(b"plain")) for _ in range(8)))
    assert [_partition(i) for i in ids[:8]] == [names.lite_partition(k, PARTITIONS) for k in keys]
