"""Reply channels on a broker: the patterns the design rejects against the emulated lite topics.

    python -m bench.reply_patterns --backend kafka --instances 4 [--tasks 1000] [--partitions 16]
    python -m bench.reply_patterns --backend rocketmq --instances 4 [--tasks 50] [--broker-jvm fast|perf]
                                   [--warmup-bursts N]

On RocketMQ the patterns are ``exclusive``, ``broadcast``, ``polling`` and ``lite`` (native
LiteTopic); see bench/_reply_patterns_rocketmq.py. `--bootstrap` is then "proxy|namesrv".

`instances` gateway instances (each with its own connections, as separate processes would have)
wait for `tasks` replies at once, spread evenly; one worker publishes every reply (at most
`--inflight` publishes at a time). Per pattern the result gives:

* ``reads_per_reply``: records all instances fetched from the broker, per reply needed (1.0 is
  the floor: each reply read once, by the instance waiting for it);
* ``p50_ms`` / ``p99_ms`` / ``max_ms``: publish call -> reply in the waiting instance's hands;
  ``share_over_1s`` / ``share_over_15s``: the fraction of replies slower than that (a tail
  p99 would hide, like RocketMQ's re-dispatch of dropped lite events every ~10 s);
* ``topics`` / ``partitions``: what the pattern keeps on the broker for reply channels.

Patterns:

* ``exclusive``: one reply topic per instance; the reply-to names the instance. Reads are
  minimal, but a task is pinned to its instance: no other instance can take it over when that
  one dies or is scaled in (its topic has no reader), and every instance is a topic to manage.
* ``broadcast``: one reply topic; every instance reads all of it and drops other instances'
  replies.
* ``polling``: replies are upserted into a shared store (a compacted topic keyed by task id,
  the adapter's Table: on Kafka every instance's store view reads every write) and each
  instance checks its pending tasks every `--poll-interval` seconds.
* ``lite-routed``: the Kafka adapter's lite topics, task ids minted by
  `KafkaLiteConsumer.routed_name` onto partitions the instance owns.
* ``lite-hashed``: the same without routing: task ids are random, so an instance reads every
  partition that holds one of its tasks.

Latency figures come from one Python process that runs every instance and the worker on a
shared machine: compare patterns within one run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from adapters.base import Message, TopicSpec

from ._reply_exchange import Instance, Polling, exchange
from ._reply_patterns_rocketmq import PATTERNS as ROCKETMQ_PATTERNS
from ._util import emit, environment, progress, words

PATTERNS = ("exclusive", "broadcast", "polling", "lite-routed", "lite-hashed")


class _KafkaReader(Instance):
    """A plain consumer on some partitions from their end, resolving waiting tasks by key."""

    def __init__(self, bootstrap: str, tps: list[TopicPartition]) -> None:
        self._bootstrap, self._tps = bootstrap, tps
        self._waiting: dict[str, asyncio.Future] = {}
        self._consumer = None
        self._task = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False,
                                          fetch_max_wait_ms=100)
        await self._consumer.start()
        self._consumer.assign(self._tps)
        await self._consumer.seek_to_end(*self._tps)
        for tp in self._tps:
            await self._consumer.position(tp)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            for records in (await self._consumer.getmany(timeout_ms=1000)).values():
                now = time.perf_counter()
                self.reads += len(records)
                for record in records:
                    fut = self._waiting.pop(record.key.decode(), None)
                    if fut is not None and not fut.done():
                        fut.set_result(now)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._consumer.stop()


class Exclusive(_KafkaReader):
    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, [TopicPartition(topic, 0)])
        self.topic = topic

    async def expect(self, task_id: str, arrived: asyncio.Future) -> str:
        self._waiting[task_id] = arrived
        return self.topic


class Broadcast(_KafkaReader):
    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        super().__init__(bootstrap, [TopicPartition(topic, p) for p in range(partitions)])
        self.topic = topic

    async def expect(self, task_id: str, arrived: asyncio.Future) -> str:
        self._waiting[task_id] = arrived
        return self.topic


class Lite(Instance):
    def __init__(self, backend, parent: str, routed: bool) -> None:
        self._backend, self._parent, self._routed = backend, parent, routed
        self._waiting: dict[str, asyncio.Future] = {}

    async def start(self) -> None:
        await self._backend.start()
        instance_id = f"gw-{uuid.uuid4().hex[:8]}"
        self.consumer = await self._backend.lite_consumer(self._parent, instance_id, instance_id)
        if self._routed:
            await self.consumer.routed_name(lambda: "warm-up")   # joins the owner group once
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.poll(max_messages=256, wait=1.0)
            now = time.perf_counter()
            for d in batch:
                fut = self._waiting.pop(d.lite_topic, None)
                if fut is not None and not fut.done():
                    fut.set_result(now)
            await asyncio.gather(*(d.ack() for d in batch))

    async def expect(self, task_id: str, arrived: asyncio.Future) -> str:
        if self._routed:
            name = await self.consumer.routed_name(lambda: f"task-{uuid.uuid4().hex}")
        else:
            name = f"task-{task_id}"
        self._waiting[name] = arrived
        await self.consumer.subscribe([name])
        return name

    @property
    def reads(self) -> int:
        return self.consumer.stats()["read"]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._backend.close()


# ------------------------------------------------------------------ one pattern end to end


async def run_pattern(pattern: str, args, bootstrap: str) -> dict:
    from adapters.kafka import KafkaBackend

    run = f"rp-{pattern}-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    worker = KafkaBackend(bootstrap, reply_partitions=args.partitions)
    await worker.start()
    n = args.instances
    topics = partitions = 0
    if pattern == "exclusive":
        names = [f"{run}-{i}" for i in range(n)]
        await _create(admin, [NewTopic(t, 1, 1) for t in names])
        instances = [Exclusive(bootstrap, t) for t in names]
        topics, partitions = n, n
        publish = lambda address, task_id, body: producer.send_and_wait(address, body, key=task_id.encode())
    elif pattern == "broadcast":
        await _create(admin, [NewTopic(run, args.partitions, 1)])
        instances = [Broadcast(bootstrap, run, args.partitions) for _ in range(n)]
        topics, partitions = 1, args.partitions
        publish = lambda address, task_id, body: producer.send_and_wait(address, body, key=task_id.encode())
    elif pattern == "polling":
        instances = [Polling(KafkaBackend(bootstrap), run, args.poll_interval) for _ in range(n)]
        store = await worker.table(run)
        topics, partitions = 1, 1
        publish = lambda address, task_id, body: store.put(address, body)
    else:
        await worker.create_topic(TopicSpec(run, lite=True))
        routed = pattern == "lite-routed"
        instances = [Lite(KafkaBackend(bootstrap, reply_partitions=args.partitions), run, routed) for _ in range(n)]
        topics, partitions = 1, args.partitions
        publish = lambda address, task_id, body: worker.publish(run, Message(body), lite_topic=address)
    try:
        for instance in instances:
            await instance.start()
        result = await exchange(instances, publish, args)
    finally:
        for instance in instances:
            with contextlib.suppress(Exception):
                await instance.close()
        await worker.close()
        await producer.stop()
        await admin.close()
    stats = [i.consumer.stats() for i in instances if isinstance(i, Lite)]
    if stats:
        result["partitions_read_per_instance"] = [len(s["partitions_read"]) for s in stats]
        result["skipped_per_reply"] = round(sum(s["skipped"] for s in stats) / result["replies"], 3)
    result.update({"topics": topics, "partitions": partitions})
    if pattern.startswith("lite"):
        result["note"] = "plus the adapter's shared tb.topics table (1 partition, all parents)"
    return result


async def _create(admin: AIOKafkaAdminClient, topics: list[NewTopic]) -> None:
    response = await admin.create_topics(topics)
    failed = [t for t in response.to_object()["topic_errors"] if t["error_code"]]
    if failed:
        raise RuntimeError(f"could not create topics: {failed}")
    await asyncio.sleep(0.5)   # let leadership settle before the first fetch (not measured)


async def main(args) -> dict:
    if args.patterns is None:
        args.patterns = list(ROCKETMQ_PATTERNS if args.backend == "rocketmq" else PATTERNS)
    if args.backend == "kafka" and "lite" in args.patterns:
        raise SystemExit("pattern 'lite' (native LiteTopic) exists on --backend rocketmq only")
    if args.backend == "rocketmq":
        from ._reply_patterns_rocketmq import run_pattern as run
    else:
        run = run_pattern
    result = {"bench": "reply_patterns", "backend": args.backend, "instances": args.instances,
              "tasks": args.tasks, "partitions": args.partitions, "inflight": args.inflight,
              "poll_interval_s": args.poll_interval, "warmup_bursts": args.warmup_bursts, **environment(),
              "patterns": {}}
    async with contextlib.AsyncExitStack() as stack:
        bootstrap = args.bootstrap
        if bootstrap is None:
            from .brokers import broker, broker_jvm
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tb-rp-")))
            progress(f"starting the {args.backend} broker")
            bootstrap = await stack.enter_async_context(broker(args.backend, workdir, jvm=args.broker_jvm))
            result["broker_jvm"] = broker_jvm(args.backend, args.broker_jvm)
        else:
            result["broker_jvm"] = "given (--bootstrap)"
        for pattern in args.patterns:
            for n in range(args.warmup_bursts):   # e.g. a perf-profile JVM's C2 compiles during these
                progress(f"{pattern}: warm-up burst {n + 1} of {args.warmup_bursts}")
                await run(pattern, args, bootstrap)
            progress(f"{pattern}: {args.instances} instances, {args.tasks} tasks")
            result["patterns"][pattern] = await run(pattern, args, bootstrap)
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="kafka", choices=["kafka", "rocketmq"])
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=1000, help="concurrent tasks (replies) in total")
    parser.add_argument("--partitions", type=int, default=16, help="partitions of a shared reply topic")
    parser.add_argument("--inflight", type=int, default=64, help="replies being published at once")
    parser.add_argument("--poll-interval", type=float, default=0.1, help="seconds between store polls")
    parser.add_argument("--patterns", type=words(PATTERNS + ROCKETMQ_PATTERNS[-1:]), default=None,
                        help=f"kafka: {','.join(PATTERNS)} (default all); rocketmq: "
                             f"{','.join(ROCKETMQ_PATTERNS)} (default), lite-routed/lite-hashed are "
                             "reported as not expressible")
    parser.add_argument("--bootstrap", help='use this running broker instead of starting one '
                                            '(rocketmq: "proxy-host:port|namesrv-host:port")')
    parser.add_argument("--warmup-bursts", type=int, default=0,
                        help="unmeasured bursts per pattern before the measured one (a young broker JVM "
                             "spends the first ones compiling)")
    parser.add_argument("--broker-jvm", choices=["fast", "perf"], default=None,
                        help="rocketmq, a broker this bench starts: its JVM profile (default fast, or "
                             "TB_BENCH_ROCKETMQ_JVM; perf = C2, big heaps: pays off only after --warmup-bursts)")
    args = parser.parse_args(argv)
    if args.instances < 1 or args.tasks < args.instances or args.partitions < 1 or args.warmup_bursts < 0:
        parser.error("need instances >= 1, tasks >= instances, partitions >= 1, warmup-bursts >= 0")
    return args


if __name__ == "__main__":
    emit(asyncio.run(main(parse())))
