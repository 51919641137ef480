"""Tables (registry, task index) on RocketMQ, which has no compacted topics.

Each table is a changelog: one lite topic, named after the table, under a LITE parent kept for
tables (`tb-tables`, no expiry). A put or delete publishes one record there; one lite topic is
one queue, so every process sees the records in the same order. Each backend holds the tables it
opened in memory, like the embedded engine does:

* a private lite group (`tbr-<random>|tb-tables`, created through the admin path and deleted at
  close) subscribes the table's lite topic from its first retained record (offset MIN) and
  folds it (`adapters/changelog.py`); a background loop keeps reading, so other processes'
  writes show up within a delivery (milliseconds);
* `table()` returns once the replay has caught up: the opener publishes a barrier record and
  waits until it comes back (`sync` does the same);
* compare-and-set: every record carries its expectation; every process folds the log in order
  and rejects the records whose expectation fails there, so all agree. A write returns (or raises
  ConflictError) once its own record came back through the log and was decided.

Record = message on lite topic <table>: key = the table key, headers = the changelog fields (op =
put | del | restore, base, id, expect, version) plus op = barrier for barriers and "at" = the
writer's wall clock (seconds), body = the value (empty for del and barrier). Versions are per-key
counters (the log offset does not reach the reader): max(known, base) + 1.

RocketMQ deletes commit-log files after `fileReservedTime` (72 h by default) whatever topic they
hold, so rows are restated (a `restore` record) once they are `refresh_after` old (24 h): the log
always holds every live row, and replay time is bounded by the records of one retention period.
Tables are meant to be small (the port says so): every process that opens one holds all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from .. import errors
from ..base import Delivery, LiteConsumer, Message
from ..changelog import Fold, Outcome, Record, check_expect, check_scan, conflict, fields, parse
from . import names

log = logging.getLogger(__name__)

MAX_KEY_BYTES = 1024
SETTLE_ATTEMPTS = 3


class TableHost(Protocol):
    """What the tables need from the backend (implemented by `RocketMQBackend`)."""

    async def ensure_tables_parent(self, parent: str) -> None: ...
    async def lite_consumer(self, topic: str, group: str, client_id: str | None = None, *,
                            invisible: float = 30.0) -> LiteConsumer: ...
    async def send(self, topic: str, message: Message, *, lite_topic: str | None = None,
                   message_id: str | None = None) -> str: ...
    async def drop_lite_group(self, parent: str, group: str) -> None: ...


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key or len(key.encode()) > MAX_KEY_BYTES or not key.isprintable():
        raise errors.InvalidRequestError("key", key, f"keys must be 1..{MAX_KEY_BYTES} bytes of printable text")
    return key


@dataclass
class _Log:
    fold: Fold = field(default_factory=Fold)
    written_at: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, asyncio.Future] = field(default_factory=dict)   # record id -> writer's future
    barriers: dict[str, asyncio.Event] = field(default_factory=dict)


class RocketMQTable:
    def __init__(self, tables: "Tables", name: str, log_: _Log) -> None:
        self._tables, self.name, self._log = tables, name, log_

    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        check_key(key)
        if not isinstance(value, (bytes, bytearray)):
            raise errors.InvalidRequestError("value", type(value).__name__, "value must be bytes")
        return (await self._write("put", key, bytes(value), check_expect(expect))).version

    async def get(self, key: str) -> bytes | None:
        check_key(key)
        return self._log.fold.values.get(key)

    async def read(self, key: str) -> tuple[bytes, int] | None:
        check_key(key)
        fold = self._log.fold
        return (fold.values[key], fold.versions[key]) if key in fold.values else None

    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        check_key(key)
        expect, fold = check_expect(expect), self._log.fold
        if (fold.current(key) == 0) if expect is None else (fold.current(key) != expect):
            await self._tables.sync(self.name)   # a row another process wrote a moment ago counts too
        fold.check(self.name, key, expect)
        if key not in fold.values:
            return False
        return (await self._write("del", key, None, expect)).existed

    async def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        if not isinstance(prefix, str):
            raise errors.InvalidRequestError("prefix", prefix, "must be a string")
        return self._log.fold.items(prefix)

    async def scan(self, prefix: str = "", *, after: str = "", limit: int = 100) -> list[tuple[str, bytes]]:
        check_scan(prefix, after, limit)
        return self._log.fold.scan(prefix, after, limit)

    async def _write(self, op: str, key: str, value: bytes | None, expect: int | None) -> Outcome:
        fold = self._log.fold
        if expect is not None and fold.current(key) != expect:
            await self._tables.sync(self.name)   # the expected version may come from a fresher view
            fold.check(self.name, key, expect)
        record = Record(op, key, value, expect, base=fold.versions.get(key, 0), id=new_id())
        outcome = await self._tables.write(self.name, record)
        if not outcome.accepted:
            await self._tables.settle(self.name, key)
            raise conflict(self.name, key, expect, outcome.version)
        return outcome


def new_id() -> str:
    return uuid.uuid4().hex


class Tables:
    """The tables one backend opened, all read by one lite consumer of a private group."""

    def __init__(self, host: TableHost, parent: str, *, refresh_after: float, open_timeout: float = 30.0) -> None:
        self._host = host
        self.parent = parent
        self.refresh_after = refresh_after
        self.open_timeout = open_timeout
        self.group = f"tbr-{uuid.uuid4().hex[:12]}"
        self._logs: dict[str, _Log] = {}
        self._tables: dict[str, RocketMQTable] = {}
        self._reader: LiteConsumer | None = None
        self._loop_task: asyncio.Task | None = None
        self._opening = asyncio.Lock()

    async def open(self, name: str) -> RocketMQTable:
        names.table(name)
        async with self._opening:
            if name in self._tables:
                return self._tables[name]
            if self._reader is None:
                await self._host.ensure_tables_parent(self.parent)
                self._reader = await self._host.lite_consumer(self.parent, self.group, invisible=60.0)
                self._loop_task = asyncio.get_running_loop().create_task(self._read_loop())
            self._logs[name] = _Log()
            await self._reader.subscribe([name])
            await self.sync(name)
            table = self._tables[name] = RocketMQTable(self, name, self._logs[name])
            return table

    async def write(self, name: str, record: Record) -> Outcome:
        """Publish `record` and return what this process's fold decided about it."""
        log_ = self._logs[name]
        outcome = log_.outcomes[record.id] = asyncio.get_running_loop().create_future()
        try:
            await self._publish(name, record.key, record.value or b"", fields(record))
            async with asyncio.timeout(self.open_timeout):
                return await outcome
        except TimeoutError:
            raise errors.BackendUnavailableError(
                "rocketmq", f"table {name!r}: a record was written but did not come back within "
                            f"{self.open_timeout} s (its outcome is unknown)") from None
        finally:
            del log_.outcomes[record.id]

    async def settle(self, name: str, key: str) -> None:
        """After a rejected record: restate the row, so that the newest record of the key is not a
        rejected one when older records are dropped (adapters/changelog.py)."""
        fold = self._logs[name].fold
        for _ in range(SETTLE_ATTEMPTS):
            if key not in fold.unsettled:
                return
            try:
                await self.write(name, fold.restore_of(key, new_id()))
            except errors.BackendError as exc:
                log.warning("table %s: could not restore %r after a conflict: %s", name, key, exc)
                return

    async def sync(self, name: str) -> None:
        """Return once this process has folded every record published to `name` before the call."""
        log_ = self._logs[name]
        token = uuid.uuid4().hex
        seen = log_.barriers[token] = asyncio.Event()
        try:
            await self._publish(name, token, b"", {"op": "barrier"})
            async with asyncio.timeout(self.open_timeout):
                await seen.wait()
        except TimeoutError:
            raise errors.BackendUnavailableError(
                "rocketmq", f"table {name!r} did not catch up within {self.open_timeout} s") from None
        finally:
            log_.barriers.pop(token, None)

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        closed = errors.BackendUnavailableError("rocketmq", "the tables are closed")
        for log_ in self._logs.values():
            for fut in log_.outcomes.values():
                if not fut.done():
                    fut.set_exception(closed)
        if self._reader is not None:
            await self._reader.close()
            with contextlib.suppress(errors.BackendError):
                await self._host.drop_lite_group(self.parent, self.group)

    # ------------------------------------------------------------------------------------------

    async def _publish(self, name: str, key: str, body: bytes, headers: dict[str, str]) -> None:
        message = Message(body, {**headers, "at": repr(time.time())}, key)
        await self._host.send(self.parent, message, lite_topic=name)

    async def _read_loop(self) -> None:
        backoff = 0.1
        next_refresh = time.monotonic() + min(self.refresh_after, 3600.0)
        while True:
            try:
                deliveries = await self._reader.poll(max_messages=32, wait=20.0)
                for delivery in deliveries:
                    self._apply(delivery)
                await asyncio.gather(*(d.ack() for d in deliveries))
                if time.monotonic() >= next_refresh:
                    await self._refresh()
                    next_refresh = time.monotonic() + min(self.refresh_after, 3600.0)
                backoff = 0.1
            except errors.BackendError as exc:
                log.warning("table reader: %s; retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    # Caller: the read loop, in log order. Affects: the table's fold, written_at, waiting writers.
    def _apply(self, delivery: Delivery) -> None:
        log_ = self._logs.get(delivery.lite_topic or "")
        op, key = delivery.headers.get("op"), delivery.key
        if log_ is None or key is None:
            return
        if op == "barrier":
            event = log_.barriers.get(key)
            if event is not None:
                event.set()
            return
        record = parse(key, None if op == "del" else delivery.body, delivery.headers)
        outcome = log_.fold.apply(record)
        if outcome.accepted:
            if key in log_.fold.values:
                log_.written_at[key] = _seconds(delivery.headers.get("at"))
            else:
                log_.written_at.pop(key, None)
        waiting = log_.outcomes.get(record.id) if record.id else None
        if waiting is not None and not waiting.done():
            waiting.set_result(outcome)

    async def _refresh(self) -> None:
        """Restate rows old enough to be at risk from commit-log retention."""
        cutoff = time.time() - self.refresh_after
        for name, log_ in list(self._logs.items()):
            for key, at in list(log_.written_at.items()):
                if at < cutoff and key in log_.fold.values:
                    await self.write(name, log_.fold.restore_of(key, new_id()))


def _seconds(text: str | None) -> float:
    try:
        return float(text or "0")
    except ValueError:
        return 0.0
