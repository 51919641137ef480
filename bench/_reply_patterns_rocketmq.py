"""bench.reply_patterns on RocketMQ (`--backend rocketmq`): the same exchange as on Kafka, with
the patterns expressed through the RocketMQ backend's own port (adapters.rocketmq).

* ``exclusive``: one NORMAL topic (`--partitions` ignored: 1 queue) and one consumer group per
  instance; the reply-to names the instance's topic.
* ``broadcast``: one NORMAL topic of `--partitions` queues; every instance reads it through a
  consumer group of its own (RocketMQ's clustering consumption hands every group every message)
  and drops other instances' replies.
* ``polling``: replies are upserted into the backend's Table (one lite topic under the LITE
  parent `tb-tables`, replayed into memory by every process through a private group) and each
  instance checks its pending tasks every `--poll-interval` seconds.
* ``lite``: native LiteTopic (RIP-83): one LITE parent; each instance is a LITE_PUSH_CONSUMER
  of its own group whose lite subscription set is exactly its tasks' reply channels
  (`task-<id>`), so the broker delivers each instance only its own replies: one read per reply
  by construction, measured here (`reads_per_reply`, `foreign_per_reply`).

Kafka's ``lite-routed`` / ``lite-hashed`` are ways of emulating lite topics on partitions; there
is nothing to route or hash on RocketMQ, so they are reported as not expressible.

``reads_per_reply`` counts the messages the instances' consumers received from the broker
(deliveries for the group readers and lite consumers, table records applied for polling),
counted once the counts have stayed put for 1 s after the last reply arrived.
``topics`` / ``groups`` / ``lite_topics`` are what the pattern created on the broker for reply
channels (the worker's producer needs no group).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from adapters import errors
from adapters.base import Message, TopicSpec

from ._reply_exchange import Instance, Polling, exchange

PATTERNS = ("exclusive", "broadcast", "polling", "lite")
NOT_EXPRESSIBLE = {
    "lite-routed": "Kafka-only: routes task ids onto partitions the instance owns to emulate lite topics; "
                   "RocketMQ has native lite topics, nothing to route",
    "lite-hashed": "Kafka-only: emulated lite topics on hashed partitions; RocketMQ has native lite topics",
}


class _Retrying:
    """Publishes through `send`, retrying the broker's flow control (TOO_MANY_REQUESTS: the send
    queue waited over `waitTimeMillsInSendQueue`) as RocketMQ's own producers do; the retries
    are counted and their time is part of the reply latency."""

    def __init__(self, send) -> None:
        self._send, self.retries = send, 0

    async def __call__(self, address: str, task_id: str, body: bytes) -> None:
        delay = 0.02
        for _ in range(20):
            try:
                return await self._send(address, task_id, body)
            except errors.BackendUnavailableError as exc:
                if "TOO_MANY_REQUESTS" not in str(exc):
                    raise
            self.retries += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        return await self._send(address, task_id, body)


def _backend(address: str, **settings):
    from .brokers import new_backend

    return new_backend("rocketmq", address, **settings)


class _Loop(Instance):
    """Runs `_step` until closed; a failing step fails every waiting task (instead of a 120 s
    timeout with no reason)."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future] = {}
        self._task: asyncio.Task | None = None
        self.reads = 0
        self.foreign = 0

    def _spawn(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                await self._step()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(exc)
            raise

    def _arrived(self, key: str | None, now: float) -> None:
        fut = self._waiting.pop(key, None) if key is not None else None
        if fut is None:
            self.foreign += 1
        elif not fut.done():
            fut.set_result(now)

    async def _stop_loop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


class GroupReader(_Loop):
    """A SIMPLE_CONSUMER of its own group on a NORMAL topic; resolves waiting tasks by key."""

    def __init__(self, address: str, topic: str, group: str) -> None:
        super().__init__()
        self._backend, self.topic, self.group = _backend(address), topic, group

    async def start(self) -> None:
        await self._backend.start()
        self._consumer = await self._backend.group_consumer(self.topic, self.group)
        self._spawn()

    async def _step(self) -> None:
        batch = await self._consumer.receive(max_messages=32, wait=1.0)
        now = time.perf_counter()
        self.reads += len(batch)
        for d in batch:
            self._arrived(d.key, now)
        await asyncio.gather(*(d.ack() for d in batch))

    async def expect(self, task_id: str, arrived: asyncio.Future) -> str:
        self._waiting[task_id] = arrived
        return self.topic

    async def close(self) -> None:
        await self._stop_loop()
        await self._backend.close()


class TablePolling(Polling):
    """The Kafka pattern's polling loop on the RocketMQ Table; reads = table records this
    instance's private reader applied."""

    records = 0

    async def start(self) -> None:
        await super().start()
        tables = self._backend._tables
        apply = tables._apply

        def counted(delivery) -> None:
            self.records += 1
            apply(delivery)
        tables._apply = counted     # the reader loop looks it up per record

    @property
    def reads(self) -> int:
        return self.records


class NativeLite(_Loop):
    """A gateway instance as a lite consumer of its own group: subscribes `task-<id>` per task."""

    def __init__(self, address: str, parent: str) -> None:
        super().__init__()
        self._backend, self._parent = _backend(address), parent
        self.group = f"gw-{uuid.uuid4().hex[:8]}"

    async def start(self) -> None:
        await self._backend.start()
        self.consumer = await self._backend.lite_consumer(self._parent, self.group, self.group)
        self._spawn()

    async def _step(self) -> None:
        batch = await self.consumer.poll(max_messages=32, wait=1.0)
        now = time.perf_counter()
        self.reads += len(batch)
        for d in batch:
            self._arrived(d.lite_topic, now)
        await asyncio.gather(*(d.ack() for d in batch))

    async def expect(self, task_id: str, arrived: asyncio.Future) -> str:
        name = f"task-{task_id}"
        self._waiting[name] = arrived
        await self.consumer.subscribe([name], fresh=True)   # a new task's channel, as the gateway's submit
        return name

    async def close(self) -> None:
        await self._stop_loop()
        await self._backend.close()


async def run_pattern(pattern: str, args, address: str) -> dict:
    if pattern in NOT_EXPRESSIBLE:
        return {"expressible": False, "why": NOT_EXPRESSIBLE[pattern]}
    run = f"rp-{pattern}-{uuid.uuid4().hex[:6]}"
    n = args.instances
    worker = _backend(address, queues=args.partitions)
    await worker.start()
    footprint: dict[str, object] = {}
    groups: list[str] = []          # plain groups the bench made (deleted afterwards)
    lite_groups: list[str] = []
    if pattern == "exclusive":
        names = [f"{run}-{i}" for i in range(n)]
        worker.queues = 1           # one queue per instance topic, as Kafka's one partition
        for t in names:
            await worker.create_topic(TopicSpec(t))
        worker.queues = args.partitions
        instances = [GroupReader(address, t, f"{t}-g") for t in names]
        groups = [i.group for i in instances]
        footprint = {"topics": n, "queues": n, "groups": n}

        async def publish(address_, task_id, body):
            await worker.publish(address_, Message(body, key=task_id))
    elif pattern == "broadcast":
        await worker.create_topic(TopicSpec(run))
        instances = [GroupReader(address, run, f"{run}-g{i}") for i in range(n)]
        groups = [i.group for i in instances]
        footprint = {"topics": 1, "queues": args.partitions, "groups": n}

        async def publish(address_, task_id, body):
            await worker.publish(address_, Message(body, key=task_id))
    elif pattern == "polling":
        # Every backend re-declares the tables parent with its own `queues` on first use (shrinking
        # it under the proxy's cached route breaks publishes): keep whatever queue count it has.
        config = await worker.admin.topic_config(worker.tables_topic) or {}
        queues = config.get("writeQueueNums", 8)
        instances = [TablePolling(_backend(address, queues=queues), run, args.poll_interval) for _ in range(n)]
        worker.queues = queues
        store = await worker.table(run)
        footprint = {"topics": 1, "lite_topics": 1, "groups": n + 1,
                     "note": f"topic = the shared LITE parent {worker.tables_topic!r} (created once, kept), one "
                             "lite topic per table; groups = one private reader group per process "
                             "(the instances and the worker), deleted on close"}

        async def publish(address_, task_id, body):
            await store.put(address_, body)
    else:   # lite
        await worker.create_topic(TopicSpec(run, lite=True))
        instances = [NativeLite(address, run) for _ in range(n)]
        lite_groups = [i.group for i in instances]
        footprint = {"topics": 1, "queues": args.partitions, "groups": n, "lite_topics": args.tasks,
                     "note": "one LITE parent; one lite group per instance; one lite topic per task "
                             "(RocketMQ expires idle ones after lite.topic.expiration, >= 15 min)"}

        async def publish(address_, task_id, body):
            await worker.publish(run, Message(body), lite_topic=address_)
    publish = _Retrying(publish)
    try:
        for instance in instances:
            await instance.start()
        result = await exchange(instances, publish, args, settle=1.0)
    finally:
        for instance in instances:
            with contextlib.suppress(Exception):
                await instance.close()
        for group in groups:
            with contextlib.suppress(Exception):
                await worker.admin.delete_group(group)
        for group in lite_groups:
            with contextlib.suppress(Exception):
                await worker.drop_lite_group(run, group)
        await worker.close()
    foreign = sum(getattr(i, "foreign", 0) for i in instances)
    if pattern != "polling":
        result["foreign_per_reply"] = round(foreign / result["replies"], 3)   # read, then dropped
    result["publish_retries_flow_control"] = publish.retries
    result.update(footprint)
    return result
