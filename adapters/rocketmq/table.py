"""Tables (registry, task index) on RocketMQ, which has no compacted topics.

Each table is a changelog: one lite topic, named after the table, under a LITE parent kept for
tables (`tb-tables`, no expiry). A put or delete publishes one record there; one lite topic is
one queue, so every process sees the records in the same order. Each backend holds the tables it
opened in memory, like the embedded engine does:

* a private lite group (`tbr-<random>|tb-tables`, created through the admin path and deleted at
  close) subscribes the table's lite topic from its first retained record (offset MIN) and
  replays it; a background loop keeps reading, so other processes' writes show up within a
  delivery (milliseconds);
* `table()` returns once the replay has caught up: the opener publishes a barrier record and
  waits until it comes back;
* a process's own write is visible to it at once. Until its record comes back through the log,
  older records for that key are ignored (`_pending`), then log order decides again.

Record = message on lite topic <table>: key = the table key, header "op" = put | del | barrier,
header "at" = writer's wall clock (seconds), body = the value (empty for del and barrier).

RocketMQ deletes commit-log files after `fileReservedTime` (72 h by default) whatever topic they
hold, so entries are re-published once they are `refresh_after` old (24 h): the log always holds
every live entry, and replay time is bounded by the records of one retention period. Tables are
meant to be small (the port says so): every process that opens one holds all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import errors
from ..base import Message
from . import names

if TYPE_CHECKING:
    from .backend import RocketMQBackend
    from .consumers import RocketMQLiteConsumer

log = logging.getLogger(__name__)

MAX_KEY_BYTES = 1024


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key or len(key.encode()) > MAX_KEY_BYTES or not key.isprintable():
        raise errors.InvalidRequestError("key", key, f"keys must be 1..{MAX_KEY_BYTES} bytes of printable text")
    return key


@dataclass
class _Log:
    entries: dict[str, bytes] = field(default_factory=dict)
    written_at: dict[str, float] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)       # key -> id of our record not seen yet
    barriers: dict[str, asyncio.Event] = field(default_factory=dict)


class RocketMQTable:
    def __init__(self, tables: "Tables", name: str, log_: _Log) -> None:
        self._tables, self.name, self._log = tables, name, log_

    async def put(self, key: str, value: bytes) -> None:
        check_key(key)
        if not isinstance(value, (bytes, bytearray)):
            raise errors.InvalidRequestError("value", type(value).__name__, "value must be bytes")
        await self._tables.write(self.name, "put", key, bytes(value))

    async def get(self, key: str) -> bytes | None:
        check_key(key)
        return self._log.entries.get(key)

    async def delete(self, key: str) -> bool:
        check_key(key)
        existed = key in self._log.entries
        await self._tables.write(self.name, "del", key, b"")
        return existed

    async def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        if not isinstance(prefix, str):
            raise errors.InvalidRequestError("prefix", prefix, "must be a string")
        return sorted((k, v) for k, v in self._log.entries.items() if k.startswith(prefix))


class Tables:
    """The tables one backend opened, all read by one lite consumer of a private group."""

    def __init__(self, backend: "RocketMQBackend", parent: str, *, refresh_after: float,
                 open_timeout: float = 30.0) -> None:
        self._backend = backend
        self.parent = parent
        self.refresh_after = refresh_after
        self.open_timeout = open_timeout
        self.group = f"tbr-{uuid.uuid4().hex[:12]}"
        self._logs: dict[str, _Log] = {}
        self._tables: dict[str, RocketMQTable] = {}
        self._reader: RocketMQLiteConsumer | None = None
        self._loop_task: asyncio.Task | None = None
        self._opening = asyncio.Lock()

    async def open(self, name: str) -> RocketMQTable:
        names.table(name)
        async with self._opening:
            if name in self._tables:
                return self._tables[name]
            if self._reader is None:
                await self._backend.ensure_tables_parent(self.parent)
                self._reader = await self._backend.lite_consumer(self.parent, self.group, invisible=60.0)
                self._loop_task = asyncio.get_running_loop().create_task(self._read_loop())
            log_ = self._logs[name] = _Log()
            await self._reader.subscribe([name])
            await self._barrier(name, log_)
            table = self._tables[name] = RocketMQTable(self, name, log_)
            return table

    async def write(self, name: str, op: str, key: str, value: bytes) -> None:
        log_ = self._logs[name]
        message_id = self._backend.new_message_id()
        log_.pending[key] = message_id
        try:
            await self._publish(name, op, key, value, message_id)
        except BaseException:
            if log_.pending.get(key) == message_id:
                del log_.pending[key]
            raise
        if log_.pending.get(key) == message_id:   # our record has not come back yet: show it now
            self._apply_value(log_, op, key, value, time.time())

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._reader is not None:
            await self._reader.close()
            with contextlib.suppress(errors.BackendError):
                await self._backend.drop_lite_group(self.parent, self.group)

    # ------------------------------------------------------------------------------------------

    async def _publish(self, name: str, op: str, key: str, value: bytes, message_id: str) -> None:
        message = Message(value, {"op": op, "at": repr(time.time())}, key)
        await self._backend.send(self.parent, message, lite_topic=name, message_id=message_id)

    async def _barrier(self, name: str, log_: _Log) -> None:
        token = uuid.uuid4().hex
        seen = log_.barriers[token] = asyncio.Event()
        try:
            await self._publish(name, "barrier", token, b"", self._backend.new_message_id())
            async with asyncio.timeout(self.open_timeout):
                await seen.wait()
        except TimeoutError:
            raise errors.BackendUnavailableError(
                "rocketmq", f"table {name!r} did not replay within {self.open_timeout} s") from None
        finally:
            log_.barriers.pop(token, None)

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

    def _apply(self, delivery) -> None:
        log_ = self._logs.get(delivery.lite_topic or "")
        op, key = delivery.headers.get("op"), delivery.key
        if log_ is None or key is None:
            return
        if op == "barrier":
            event = log_.barriers.get(key)
            if event is not None:
                event.set()
            return
        pending = log_.pending.get(key)
        if pending is not None:
            if pending != delivery.message_id:
                return   # older than our own write, which is still on its way
            del log_.pending[key]
        try:
            at = float(delivery.headers.get("at", "0"))
        except ValueError:
            at = 0.0
        self._apply_value(log_, op, key, delivery.body, at)

    @staticmethod
    def _apply_value(log_: _Log, op: str | None, key: str, value: bytes, at: float) -> None:
        if op == "put":
            log_.entries[key] = value
            log_.written_at[key] = at
        elif op == "del":
            log_.entries.pop(key, None)
            log_.written_at.pop(key, None)

    async def _refresh(self) -> None:
        """Re-publish entries old enough to be at risk from commit-log retention."""
        cutoff = time.time() - self.refresh_after
        for name, log_ in self._logs.items():
            for key, at in list(log_.written_at.items()):
                if at < cutoff and key in log_.entries and key not in log_.pending:
                    await self.write(name, "put", key, log_.entries[key])
