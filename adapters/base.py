"""The Backend port: what the gateway needs from a messaging backend, and the data it moves.

Every backend (embedded or remote lite engine, Kafka, RocketMQ) implements `Backend` and keeps
the promises the contract suite in tests/contract/ checks:

* capability topics are consumed by groups: each group gets every message at least once, spread
  across the group's consumers; an unacked message comes back after its invisibility timeout;
  after `max_attempts` deliveries it goes to the group's dead-letter topic;
* lite topics live under a lite parent topic, are created by their first publish or subscribe
  and deleted after an idle time; a `LiteConsumer` is bound to one client id, holds an
  InterestSet of lite topics and polls with nothing but its client id; a client of another group
  subscribing to an existing lite topic reads its retained messages (re-attach);
* tables are small durable key-value maps shared by every process on the backend.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence, runtime_checkable

from .errors import UnknownReceiptError


@dataclass(frozen=True, slots=True)
class Message:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    key: str | None = None


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    lite: bool = False                      # a lite parent topic (reply channels live under it)
    ordered: bool = False                   # lite topics hand out one message at a time
    lite_idle_seconds: float | None = None  # None: the backend's default
    max_attempts: int | None = None         # None: the backend's default


class Settler(Protocol):
    """Acknowledges deliveries; implemented by the consumer that handed them out."""

    async def ack(self, delivery: "Delivery") -> None: ...
    async def nack(self, delivery: "Delivery", delay: float = 0.0) -> None: ...
    async def extend(self, delivery: "Delivery", seconds: float) -> None: ...
    # Optional: `async def ack_many(deliveries, *, gone_ok=False) -> None`, the promise of the
    # `ack_many` function below for deliveries it handed out, in one call (the embedded engine's
    # acks end at once: one coroutine for all of them instead of one each).


@dataclass(slots=True, eq=False)
class Delivery:
    topic: str
    lite_topic: str | None
    message_id: str
    body: bytes
    headers: dict[str, str]
    key: str | None
    attempt: int                            # 1 on first delivery
    receipt: str                            # opaque to callers
    _settler: Settler = field(repr=False, default=None)

    async def ack(self) -> None:
        await self._settler.ack(self)

    async def nack(self, delay: float = 0.0) -> None:
        """Give the message back; it is delivered again after `delay` seconds."""
        await self._settler.nack(self, delay)

    async def extend(self, seconds: float) -> None:
        """Keep the message invisible for `seconds` more, counted from now."""
        await self._settler.extend(self, seconds)


@runtime_checkable
class GroupConsumer(Protocol):
    """A member of a consumer group on a capability topic."""

    topic: str
    group: str

    async def receive(self, max_messages: int = 1, wait: float = 0.0) -> list[Delivery]: ...
    async def close(self) -> None: ...


@runtime_checkable
class LiteConsumer(Protocol):
    """One client id's view of the lite topics under one parent topic."""

    client_id: str
    group: str
    topic: str

    async def subscribe(self, lite_topics: Iterable[str], *, fresh: bool = False) -> None:
        """Add `lite_topics` to the InterestSet; their retained messages are delivered too.

        `fresh=True` is a promise: the caller named these lite topics just now, so no client of
        this group has read them and there is no position to resume from. A backend that would
        otherwise look up where the group left off (RocketMQ's committed offset) may skip that
        and read them from their first message, which still includes anything published on them
        before this call. Backends with nothing to look up ignore it. A broken promise costs
        redelivery of what the group had acked (at least once), never a lost message."""
    async def unsubscribe(self, lite_topics: Iterable[str]) -> None: ...
    async def sync(self, lite_topics: Iterable[str]) -> None: ...
    async def poll(self, max_messages: int = 16, wait: float = 0.0) -> list[Delivery]: ...
    async def close(self) -> None: ...
    async def abandon(self) -> None:
        """Vanish without telling the backend, as a crashed process would: stop heartbeating,
        release nothing. The backend must notice by itself (used by the liveness contract)."""

    # Optional: a consumer of a backend that emulates lite topics on shared partitions (Kafka)
    # may offer `async def routed_name(make: Callable[[], str]) -> str`, returning a new name from
    # `make()` that lands where this client reads. Callers use it when present.


@runtime_checkable
class Table(Protocol):
    """A small durable key-value table (registry, task index), shared by every process.

    Every row has a version: an int > 0 that grows with every write of its key. `expect` makes a
    write conditional: None writes anyway, 0 only if the key has no row, v > 0 only if the row's
    version is v; otherwise ConflictError (with `key`, `expected` and `actual`, 0 for no row).
    Of several processes racing a write with the same expectation, exactly one wins.
    """

    name: str

    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        """Write the row; return its new version."""
    async def get(self, key: str) -> bytes | None: ...
    async def read(self, key: str) -> tuple[bytes, int] | None:
        """The row's value and version, None when there is no row."""
    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        """Remove the row; False when there was none."""
    async def items(self, prefix: str = "") -> list[tuple[str, bytes]]: ...
    async def scan(self, prefix: str = "", *, after: str = "", limit: int = 100) -> list[tuple[str, bytes]]:
        """One page of rows: keys starting with `prefix` and greater than `after`, in ascending
        order, at most `limit` (1..1000, else InvalidRequestError). The last key returned is
        the `after` of the next page."""


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    backend: str
    detail: dict = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    name: str
    max_message_bytes: int
    # True when publishes land in the order they were started even if the caller does not wait
    # for one to be durable before starting the next (coroutines first run in start order). A
    # worker then pipelines a task's reply events: several share one group commit. Optional:
    # a backend without it is taken to be False.
    ordered_publish: bool

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def health(self) -> Health: ...

    async def create_topic(self, spec: TopicSpec) -> None: ...
    async def publish(self, topic: str, message: Message, *, lite_topic: str | None = None) -> str: ...
    # Optional: `async def publish_many(topic, messages, *, lite_topic=None) -> list[str]`, the
    # promise of the `publish_many` function below, which callers use (it falls back to publish).

    async def group_consumer(self, topic: str, group: str, *, invisible: float = 30.0) -> GroupConsumer: ...
    async def lite_consumer(self, topic: str, group: str, client_id: str | None = None,
                            *, invisible: float = 30.0) -> LiteConsumer: ...
    async def table(self, name: str) -> Table: ...
    # Optional: `def defer_durability() -> ContextManager` whose value has
    # `async durable(*, lazy=False)` and `defers = True`:
    # table writes started inside the block return once readable by every reader, not once
    # durable; `durable()` returns once they all are, or raises the BackendError that prevents
    # it; `durable(lazy=True)` the same without hurrying a commit for them (a wait nobody is
    # blocked on: the backend's next commit, or its own deferred one, takes them). Only a backend whose rows are readable before they are durable (the embedded engine)
    # has it; callers use the `deferred_durability` function below, which falls back to waiting.

    def dead_letter_topic(self, group: str) -> str:
        """The topic where `group`'s messages go after `max_attempts` deliveries."""


async def publish_many(backend: Backend, topic: str, messages: Sequence[Message], *,
                       lite_topic: str | None = None) -> list[str]:
    """Publish `messages` on `topic` (on `lite_topic` under it) in order; their ids, in order.

    They land in the given order. A backend that can send several messages at once (one
    produce request, one group commit) offers its own `publish_many`; any other backend
    publishes them one by one, each waiting for the one before. On an error the call raises it:
    the messages before the failed one may be durable and those after it may or may not be,
    so a caller retries the whole list (delivery is at-least-once anyway).
    """
    own = getattr(backend, "publish_many", None)
    if own is not None:
        return await own(topic, messages, lite_topic=lite_topic)
    return [await backend.publish(topic, m, lite_topic=lite_topic) for m in messages]


async def ack_many(deliveries: Sequence[Delivery], *, gone_ok: bool = False) -> None:
    """Ack every delivery of `deliveries`: each is tried, and the first error is raised once all
    have been. With `gone_ok`, a receipt already gone (UnknownReceiptError: acked by an earlier
    try, or expired and on its way back) is not an error. The deliveries of a settler (the
    consumer that handed them out) that offers its own `ack_many` are acked in one call to it;
    any other delivery through its own `ack`, all of those concurrently."""
    if not deliveries:
        return
    settler = deliveries[0]._settler
    own = getattr(settler, "ack_many", None)
    if own is not None and all(d._settler is settler for d in deliveries):    # one poll's deliveries
        await own(deliveries, gone_ok=gone_ok)
        return
    groups: dict[int, list[Delivery]] = {}
    singles: list[Delivery] = []
    for d in deliveries:
        if getattr(d._settler, "ack_many", None) is not None:
            groups.setdefault(id(d._settler), []).append(d)
        else:
            singles.append(d)
    waits = [group[0]._settler.ack_many(group, gone_ok=gone_ok) for group in groups.values()]
    waits += [d.ack() for d in singles]
    first = None
    for result in await asyncio.gather(*waits, return_exceptions=True):
        if isinstance(result, BaseException) and not (gone_ok and isinstance(result, UnknownReceiptError)):
            if not isinstance(result, Exception):
                raise result        # CancelledError, KeyboardInterrupt: at once
            first = first or result
    if first is not None:
        raise first


class _Durable:
    """What `deferred_durability` gives for a backend whose table writes return durable."""

    defers = False      # writes inside return durable (a deferring block's is True)

    def __enter__(self) -> "_Durable":
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    async def durable(self, *, lazy: bool = False) -> None:
        return None


def deferred_durability(backend: object):
    """`backend.defer_durability()` if the backend offers it; else a block whose writes are
    durable when they return, and whose `durable()` has nothing left to wait for."""
    own = getattr(backend, "defer_durability", None)
    return own() if own is not None else _Durable()
