"""Pipelined publishes (ordered_publish): a broker killed in the middle of a burst leaves every
caller with its message durable or an error, never a message acknowledged and then missing."""

import asyncio
import os
import signal

from adapters.base import Message, TopicSpec, publish_many
from adapters.errors import BackendUnavailableError
from adapters.kafka import names
from tests.contract.helpers import unique

from .conftest import raw_reader
from .support import PARTITIONS

STEP = 90             # a broker restart on a busy 2-core machine
IN_FLIGHT = 64        # publishes started and not yet finished, as a pipelining worker keeps them


async def _burst(backend, parent: str, results: dict, stop: asyncio.Event) -> None:
    """Start publishes one after another without waiting for each; keep IN_FLIGHT going until
    `stop` is set, then let the last ones finish."""
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(n: int) -> None:
        try:
            results[n] = await backend.publish(parent, Message(f"m-{n}".encode()), lite_topic="task-1")
        except BackendUnavailableError as exc:
            results[n] = exc
        finally:
            slots.release()

    started, n = [], 0
    while not stop.is_set():
        await slots.acquire()
        started.append(asyncio.create_task(one(n)))
        n += 1
    await asyncio.gather(*started)


async def _records(bootstrap: str, topic: str, partition: int) -> dict[int, bytes]:
    """Every record of one partition, by offset, as a plain Kafka consumer reads it."""
    async with raw_reader(bootstrap, topic, [partition]) as consumer:
        [tp] = consumer.assignment()
        end = (await consumer.end_offsets([tp]))[tp]
        out = {}
        while await consumer.position(tp) < end:
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, ()):
                out[record.offset] = record.value
        return out


async def test_a_broker_killed_during_a_burst_of_pipelined_publishes_loses_no_acknowledged_message(kafka, open_backend):
    backend = await open_backend(request_timeout=4)
    assert backend.ordered_publish
    parent = unique("reply")
    await backend.create_topic(TopicSpec(parent, lite=True))
    ports = kafka.ports()
    results: dict[int, object] = {}
    stop = asyncio.Event()
    burst = asyncio.create_task(_burst(backend, parent, results, stop))
    try:
        async with asyncio.timeout(STEP):
            while len(results) < 200:            # the burst is under way, some acknowledged
                await asyncio.sleep(0.01)        # sleep-ok: bounded poll of the burst's progress
            os.kill(kafka.pid, signal.SIGKILL)
            await asyncio.to_thread(kafka.stop)     # reaps it
            while not any(isinstance(r, BackendUnavailableError) for r in results.values()):
                await asyncio.sleep(0.05)        # sleep-ok: bounded poll until the deadline fails callers
            stop.set()
            await burst
    finally:
        stop.set()
        await asyncio.to_thread(kafka.restart, ports=ports)

    acked = {n: r for n, r in results.items() if isinstance(r, str)}
    failed = [n for n, r in results.items() if isinstance(r, BackendUnavailableError)]
    assert acked and failed and len(acked) + len(failed) == len(results)
    partition = names.lite_partition("task-1", PARTITIONS)
    async with asyncio.timeout(STEP):
        records = await _records(kafka.bootstrap, parent, partition)
    for n, message_id in acked.items():
        part, offset = map(int, message_id.split("-"))
        assert (part, records.get(offset)) == (partition, f"m-{n}".encode()), f"acknowledged publish {n} missing"
    # What reached the log did so in start order (a failed caller's record may be there or not).
    written = [int(value.split(b"-")[1]) for _, value in sorted(records.items())]
    assert written == sorted(set(written))

    # The backend carries on once the broker is back.
    async with asyncio.timeout(STEP):
        while True:
            try:
                ids = await publish_many(backend, parent, [Message(b"after-1"), Message(b"after-2")],
                                         lite_topic="task-1")
                break
            except BackendUnavailableError:
                await asyncio.sleep(0.2)   # sleep-ok: the producer reconnects on its own schedule
    assert [int(i.split("-")[1]) for i in ids] == sorted(int(i.split("-")[1]) for i in ids)
