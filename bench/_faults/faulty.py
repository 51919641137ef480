"""A fault-injecting wrapper around any real, started backend.

    faulty = FaultyBackend(EmbeddedLiteBackend(config))
    faulty.faults.fail("publish", times=3)                      # next 3 publishes raise
    faulty.faults.fail("put", error=StorageError("disk full"))  # every table put, until cleared
    faulty.faults.delay("poll", 0.5, times=10)
    faulty.faults.clear()

Operations: "publish" (Backend.publish), "put" (Table.put), "poll" (LiteConsumer.poll),
"receive" (GroupConsumer.receive) and "ack" (Delivery.ack, whoever hands the delivery out).
Everything else passes straight through to the real backend, so what a fault shows is how the
code above the port copes, never a stand-in's behaviour. The wrapper counts calls and injected
faults per operation (`faults.counts`), which a test uses to wait for the fault to have bitten.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Iterable

from adapters.base import Backend, Delivery, GroupConsumer, LiteConsumer, Message, Table
from adapters.errors import BackendUnavailableError

OPERATIONS = ("publish", "put", "poll", "receive", "ack")


@dataclass(slots=True)
class _Rule:
    error: BaseException | None      # raised when set
    delay: float                     # seconds to wait first
    times: int | None                # None: until cleared


@dataclass(slots=True)
class Faults:
    """The switchboard: one rule per operation, and counters of what happened."""

    rules: dict[str, _Rule] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {op: {"calls": 0, "failed": 0, "delayed": 0} for op in OPERATIONS})
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def fail(self, op: str, *, error: BaseException | None = None, times: int | None = None,
             delay: float = 0.0) -> None:
        """Make `op` raise `error` (default BackendUnavailableError) for `times` calls, or until cleared."""
        self._set(op, _Rule(error or BackendUnavailableError("faulty", f"injected {op} failure"), delay, times))

    def delay(self, op: str, seconds: float, *, times: int | None = None) -> None:
        self._set(op, _Rule(None, seconds, times))

    def clear(self, op: str | None = None) -> None:
        for name in [op] if op else list(self.rules):
            self.rules.pop(name, None)

    def _set(self, op: str, rule: _Rule) -> None:
        if op not in OPERATIONS:
            raise ValueError(f"unknown operation {op!r}: expected one of {OPERATIONS}")
        if rule.times is not None and rule.times < 1:
            raise ValueError(f"times must be positive, got {rule.times!r}")
        self.rules[op] = rule

    async def apply(self, op: str) -> None:
        """Called before the real operation: count it, then delay and/or raise as the rule says."""
        count = self.counts[op]
        count["calls"] += 1
        rule = self.rules.get(op)
        if rule is None:
            return
        if rule.times is not None:
            rule.times -= 1
            if rule.times == 0:
                del self.rules[op]
        if rule.delay:
            count["delayed"] += 1
            await asyncio.sleep(rule.delay)   # sleep-ok: the injected delay is the fault
        if rule.error is not None:
            count["failed"] += 1
            self.changed.set()
            raise _fresh(rule.error)

    async def bitten(self, op: str, kind: str = "failed", at_least: int = 1) -> None:
        """Wait until `op` has been failed (or delayed) `at_least` times."""
        while self.counts[op][kind] < at_least:
            self.changed.clear()
            await self.changed.wait()


def _fresh(error: BaseException) -> BaseException:
    """A new exception of the same kind each time: one instance raised twice grows its traceback."""
    clone = type(error).__new__(type(error), *error.args)
    clone.__dict__.update(getattr(error, "__dict__", {}))
    clone.args = error.args
    return clone


class FaultyBackend:
    """The Backend port over `inner`; see the module docstring."""

    def __init__(self, inner: Backend, faults: Faults | None = None) -> None:
        self.inner = inner
        self.faults = faults or Faults()
        self.name = inner.name
        self.ordered_publish = getattr(inner, "ordered_publish", False)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)      # optional extras of the real backend (stats, ...)

    @property
    def max_message_bytes(self) -> int:
        return self.inner.max_message_bytes   # read when asked: a remote engine tells it at start

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def health(self):
        return await self.inner.health()

    async def create_topic(self, spec) -> None:
        await self.inner.create_topic(spec)

    async def publish(self, topic: str, message: Message, *, lite_topic: str | None = None) -> str:
        await self.faults.apply("publish")
        return await self.inner.publish(topic, message, lite_topic=lite_topic)

    async def group_consumer(self, topic: str, group: str, *, invisible: float = 30.0) -> GroupConsumer:
        return _FaultyGroup(await self.inner.group_consumer(topic, group, invisible=invisible), self.faults)

    async def lite_consumer(self, topic: str, group: str, client_id: str | None = None,
                            *, invisible: float = 30.0) -> LiteConsumer:
        inner = await self.inner.lite_consumer(topic, group, client_id, invisible=invisible)
        return _FaultyLite(inner, self.faults)

    async def table(self, name: str) -> Table:
        return _FaultyTable(await self.inner.table(name), self.faults)

    def dead_letter_topic(self, group: str) -> str:
        return self.inner.dead_letter_topic(group)


class _AckGate:
    """The settler of a delivery handed out through the wrapper: `delivery.ack()` passes the switchboard."""

    __slots__ = ("_settler", "_faults")

    def __init__(self, settler, faults: Faults) -> None:
        self._settler = settler
        self._faults = faults

    async def ack(self, delivery: Delivery) -> None:
        await self._faults.apply("ack")
        await self._settler.ack(delivery)

    async def nack(self, delivery: Delivery, delay: float = 0.0) -> None:
        await self._settler.nack(delivery, delay)

    async def extend(self, delivery: Delivery, seconds: float) -> None:
        await self._settler.extend(delivery, seconds)


def _gated(deliveries: Iterable[Delivery], faults: Faults) -> list[Delivery]:
    for d in deliveries:
        if not isinstance(d._settler, _AckGate):
            d._settler = _AckGate(d._settler, faults)
    return list(deliveries)


class _FaultyGroup:
    def __init__(self, inner: GroupConsumer, faults: Faults) -> None:
        self._faults = faults
        self.inner = inner
        self.topic, self.group = inner.topic, inner.group

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    async def receive(self, max_messages: int = 1, wait: float = 0.0) -> list[Delivery]:
        await self._faults.apply("receive")
        return _gated(await self.inner.receive(max_messages, wait), self._faults)

    async def close(self) -> None:
        await self.inner.close()


class _FaultyLite:
    def __init__(self, inner: LiteConsumer, faults: Faults) -> None:
        self._faults = faults
        self.inner = inner
        self.client_id, self.group, self.topic = inner.client_id, inner.group, inner.topic

    def __getattr__(self, name: str):
        return getattr(self.inner, name)     # routed_name on Kafka, and the like

    async def subscribe(self, lite_topics, *, fresh: bool = False) -> None:
        await self.inner.subscribe(lite_topics, fresh=fresh)

    async def unsubscribe(self, lite_topics) -> None:
        await self.inner.unsubscribe(lite_topics)

    async def sync(self, lite_topics) -> None:
        await self.inner.sync(lite_topics)

    async def poll(self, max_messages: int = 16, wait: float = 0.0) -> list[Delivery]:
        await self._faults.apply("poll")
        return _gated(await self.inner.poll(max_messages, wait), self._faults)

    async def close(self) -> None:
        await self.inner.close()

    async def abandon(self) -> None:
        await self.inner.abandon()


class _FaultyTable:
    def __init__(self, inner: Table, faults: Faults) -> None:
        self.inner = inner
        self.name = inner.name
        self._faults = faults

    def __getattr__(self, name: str):
        return getattr(self.inner, name)      # compare-and-set and paging, where the backend has them

    async def put(self, key: str, value: bytes, **kwargs):
        await self._faults.apply("put")          # kwargs: compare-and-set (expect=) where the port has it
        return await self.inner.put(key, value, **kwargs)

    async def get(self, key: str) -> bytes | None:
        return await self.inner.get(key)

    async def delete(self, key: str, **kwargs) -> bool:
        return await self.inner.delete(key, **kwargs)

    async def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        return await self.inner.items(prefix)
