"""The task index: every task's folded state by id, newest first for ListTasks, any size.

`TaskIndex` looks like the backend `Table` the call side and the relay write to (put, get, read,
delete with bytes values), and keeps beside the rows by id what they cannot do alone:

    tasks           "<task_id>"                        -> record (below)
    tasks-by-time   "<inverted status ns>/<task_id>"   -> b""   newest first; moved on each write
    tasks-by-scope  "<scope>/<inverted ns>/<task_id>"  -> b""   the same, per capability and principal
                                                                 (`scope_key`): a caller's ListTasks
                                                                 pages its own tasks only
    task-chunks     "<task_id>/<generation>/<n>"       -> one slice of a record too large for a row
    task-lifetimes  "<due unix ms>/<task_id>"          -> b""   a running turn's deadline, written
                                                                 here; lifetimes.py pages and moves it

Record format of a "tasks" row (written in `_record`, read in `_parse`):

    0x00, kind (1 byte), len(order key) (2 bytes, big endian), order key,
    kind 0 (inline):  the serialized a2a Task
    kind 1 (chunked): chunk count (4 bytes, big endian), generation (8 ASCII hex characters)

A serialized Task never starts with 0x00 (field number 0 does not exist), so a row written
before this format (the bare Task) is still read as one.

A task larger than a quarter of the backend's largest value (1 MiB on the lite engine) is
written as chunks of a new generation first, then the row naming them, then the previous
generation's chunks are deleted: a reader always finds every chunk its row names, or retries
once when a write replaced them between its two reads. Chunks of a generation a crash or a
race left behind go when the task is deleted (every chunk under "<task_id>/").

Caller: TaskService (start: wraps the task table), the relay (put), Lifetimes (get, delete,
deadlines). Affects: the four tables above.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import logging
import os
import struct
from dataclasses import dataclass
from typing import Callable

from a2a.types import a2a_pb2

from adapters.base import Backend, Table
from adapters.errors import ConflictError

from . import channels
from . import fold

log = logging.getLogger("topicbridge.tasks")

ORDER_TABLE = "tasks-by-time"
CHUNK_TABLE = "task-chunks"
SCOPE_TABLE = "tasks-by-scope"
LIFETIME_TABLE = "task-lifetimes"

_MAX_NS = 10 ** 20 - 1          # inverted timestamps: 20 digits sort newest first
_HEADER = struct.Struct(">BBH")
_CHUNKS = struct.Struct(">I")
_INLINE, _CHUNKED = 0, 1
_KNOWN = 100_000                # tasks whose order key this process remembers (no read before a write)
SCAN_PAGE = 200


def order_key(task: a2a_pb2.Task, task_id: str) -> str:
    """Newest status first; tasks without a timestamp last (as a2a-sdk's ListTasks orders them)."""
    ns = task.status.timestamp.ToNanoseconds() if task.status.HasField("timestamp") else 0
    return f"{_MAX_NS - ns:020d}/{task_id}"


@functools.lru_cache(maxsize=4096)     # a hash per index write otherwise; few pairs recur
def scope_key(capability: str, principal: str) -> str:
    """Who may list a task: its capability and the principal that created it, as a fixed-size key."""
    return hashlib.sha256(f"{capability}\0{principal}".encode()).hexdigest()[:32]


def task_scope(task: a2a_pb2.Task) -> str:
    """The scope a task records in metadata["topicbridge"] ("" when it names no capability)."""
    own = task.metadata.fields.get(fold.OWN_METADATA)
    if own is None or not own.HasField("struct_value"):
        return ""
    fields = own.struct_value.fields
    capability = fields["capability"].string_value if "capability" in fields else ""
    principal = fields["principal"].string_value if "principal" in fields else ""
    return scope_key(capability, principal) if capability else ""


def lifetime_key(due: float, task_id: str) -> str:
    return f"{max(0, int(due * 1000)):015d}/{task_id}"


def parse_lifetime_key(key: str) -> tuple[float, str]:
    due, _, task_id = key.partition("/")
    return int(due) / 1000, task_id


def deadline_of(task: a2a_pb2.Task) -> float | None:
    """The current turn's deadline (unix seconds) the task records in metadata["topicbridge"]."""
    own = task.metadata.fields.get(fold.OWN_METADATA)
    if own is None or not own.HasField("struct_value") or "deadline" not in own.struct_value.fields:
        return None
    return own.struct_value.fields["deadline"].number_value


@dataclass
class Page:
    tasks: list[a2a_pb2.Task]
    next_page_token: str        # "" on the last page


class PageTokenError(ValueError):
    def __init__(self, token: str) -> None:
        self.token = token
        super().__init__(f"page token {token[:100]!r} is not one this gateway issued")


class TaskIndex:
    """The task table as the call side and the relay see it, plus ListTasks pages."""

    def __init__(self, rows: Table, order: Table, chunks: Table, lifetimes: Table, *, max_value_bytes: int,
                 scoped: Table | None = None, ordered: bool = False, defer: Callable | None = None) -> None:
        self.name = rows.name
        self.ordered = ordered      # the backend's writes are logged in call order (see `_retire`)
        self.defer = defer          # the backend's `defer_durability`, if it has one (see `_write_batch`)
        self.rows, self.order, self.chunks, self.lifetimes = rows, order, chunks, lifetimes
        self.scoped = scoped
        self.chunk_bytes = max(1024, max_value_bytes // 4)
        self._known: dict[str, tuple] = {}      # task id -> (order key, chunk generation) this process wrote
        self._deadline_of: dict[str, float] = {}    # task id -> the deadline whose lifetime row it wrote
        # gateway.task_retention_seconds, once lifetimes.py has told it (None: not known here)
        self.retention: float | None = None
        self._locks: dict[str, list] = {}     # task id -> [lock, users]

    @classmethod
    async def open(cls, backend: Backend) -> "TaskIndex":
        tables = [await backend.table(name) for name in (channels.TASK_TABLE, ORDER_TABLE, CHUNK_TABLE, LIFETIME_TABLE)]
        return cls(*tables, max_value_bytes=backend.max_message_bytes, scoped=await backend.table(SCOPE_TABLE),
                   ordered=bool(getattr(backend, "ordered_publish", False)),
                   defer=getattr(backend, "defer_durability", None))

    # ------------------------------------------------------------ the Table face

    async def put(self, key: str, value: bytes, *, expect: int | None = None,
                  task: a2a_pb2.Task | None = None, deferred: bool = False) -> int:
        """Write the serialized task `value` under id `key`; returns the row's version. `task`:
        the Task `value` serializes, when the caller has it (saves parsing it again here); what
        the put needs of it is read at once, before anything awaits and the caller changes it.
        `deferred`: the caller runs the put inside a `defer_durability()` block of its backend
        and waits for the block's `durable()`: the rows are written one after the other, none
        waiting for a commit (`_write_batch`); a backend without such blocks writes them
        concurrently, as without it. A put of a task as submit first writes it opens such a
        block of its own when the backend has one."""
        facts = _Facts.of(task if task is not None else a2a_pb2.Task.FromString(value), key,
                          self.scoped is not None)
        async with self._lock(key):
            old_order, old_generation = await self._previous(key, facts.new)
            generation = None
            if len(value) > self.chunk_bytes:
                generation = os.urandom(4).hex()
                await self._write_chunks(key, generation, value)
            record = _record(facts.order, value, generation, self.chunk_bytes)
            lifetime = self._lifetime_row(key, facts)
            old = old_order if facts.order != old_order else None
            if deferred and self.defer is not None:
                version = await self._write_batch(key, record, expect, lifetime, facts, old_order, old)
            elif self.defer is not None and facts.new:      # submit's rows: one durable wait for them all
                with self.defer() as own:
                    version = await self._write_batch(key, record, expect, lifetime, facts, old_order, old)
                await own.durable()
            else:
                version = await self._write_each(key, record, expect, lifetime, facts, old_order, old)
            if lifetime is not None and not facts.final:
                self._wrote_deadline(key, facts.deadline)
            self._remember(key, facts.order, generation)
            if old_generation and old_generation != generation:
                await self._drop_chunks(key, old_generation)
            return version

    async def _write_batch(self, key: str, record: bytes, expect: int | None, lifetime: str | None,
                           facts: "_Facts", old_order: str, old: str | None) -> int:
        """The put's rows one after the other, inside a `defer_durability()` block: each write
        is in the log and readable when it returns, without waiting for a commit, so no task
        or future per row; the block's `durable()` is the one wait for all of them. The log
        keeps their order: the old order rows are deleted after the new ones are written, and
        a write refused (a version conflict) raises before anything after it is written. A put
        without `expect` writes the lifetime row first: a log cut between them (a repair) keeps
        no task row without its deadline row, so the sweep still ends it (a lifetime row
        without its task is dropped by the sweep)."""
        early = lifetime is not None and expect is None
        if early:
            await self.lifetimes.put(lifetime, b"")
        version = await self.rows.put(key, record, expect=expect)
        if lifetime is not None and not early:
            await self.lifetimes.put(lifetime, b"")
        if facts.order != old_order:
            await self.order.put(facts.order, b"")
            if facts.scope:
                await self.scoped.put(f"{facts.scope}/{facts.order}", b"")
            if old:
                await self.order.delete(old)
                if facts.scope:
                    await self.scoped.delete(f"{facts.scope}/{old}")
        return version

    async def _write_each(self, key: str, record: bytes, expect: int | None, lifetime: str | None,
                          facts: "_Facts", old_order: str, old: str | None) -> int:
        """The put's rows concurrently, each returning once durable (one group commit for them all)."""
        new_order, scope = facts.order, facts.scope
        moved = new_order != old_order
        # tasks only for the writes this put makes (each is one in the backend's log)
        writes = [asyncio.ensure_future(self.rows.put(key, record, expect=expect))]
        if lifetime is not None:
            writes.append(asyncio.ensure_future(self.lifetimes.put(lifetime, b"")))
        if moved:
            writes.append(asyncio.ensure_future(self.order.put(new_order, b"")))
            if scope:
                writes.append(asyncio.ensure_future(self.scoped.put(f"{scope}/{new_order}", b"")))
        if old:
            version, *_ = await asyncio.gather(*writes, self._retire(writes, old, scope))
        else:
            version, *_ = await asyncio.gather(*writes)
        return version

    async def _retire(self, writes: list[asyncio.Future], old_order: str, scope: str) -> None:
        """Delete the order rows a put replaced once its new rows are written: a crash never leaves
        a task out of ListTasks. On an ordered backend (its writes reach its one log in call order,
        at their first step, synced in that order) the deletes go right behind the writes and
        share their group commit: they cannot be durable without them. Elsewhere they wait for
        the writes to be durable."""
        if self.ordered:    # the writes' first steps ran before this one (tasks run in creation order)
            if any(w.done() and (w.cancelled() or w.exception() is not None) for w in writes):
                return      # refused at once (a version conflict...): the old rows stay
        else:
            await asyncio.gather(*writes)
        if scope:
            await asyncio.gather(self.order.delete(old_order), self.scoped.delete(f"{scope}/{old_order}"))
        else:
            await self.order.delete(old_order)

    async def read(self, key: str) -> tuple[bytes, int] | None:
        loaded = await self._load(key)
        return (loaded[1], loaded[2]) if loaded is not None else None

    async def _load(self, key: str) -> tuple[str, bytes, int] | None:
        """(order key, serialized task, row version) of a task, its chunks put together."""
        for _ in range(3):      # a write may replace the chunks between reading the row and them
            row = await self.rows.read(key)
            if row is None:
                return None
            order, value, generation, count = _parse(row[0])
            if generation is None:
                return order, value, row[1]
            parts = await asyncio.gather(*(self.chunks.get(_chunk_key(key, generation, i)) for i in range(count)))
            if all(part is not None for part in parts):
                return order, b"".join(parts), row[1]
        raise ConflictError(f"task {key!r} was rewritten while being read, three times")

    async def get(self, key: str) -> bytes | None:
        row = await self.read(key)
        return row[0] if row is not None else None

    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        """Remove the task and its order row and chunks (its lifetime rows are Lifetimes')."""
        async with self._lock(key):
            loaded = await self._load(key) if self.scoped is not None else None
            row = await self.rows.read(key)
            deleted = await self.rows.delete(key, expect=expect)
            if row is not None:
                order, _, _, _ = _parse(row[0])
                if order:
                    await self.order.delete(order)
                scope = task_scope(a2a_pb2.Task.FromString(loaded[1])) if loaded is not None else ""
                if order and scope:
                    await self.scoped.delete(f"{scope}/{order}")
            await self._drop_chunks(key, None)
            self._known.pop(key, None)
            self._deadline_of.pop(key, None)
            return deleted

    async def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        """Every task whose id starts with `prefix` (a full read: ListTasks pages with `page`)."""
        out, after = [], ""
        while page := await self.rows.scan(prefix, after=after, limit=SCAN_PAGE):
            for key, _ in page:
                value = await self.get(key)
                if value is not None:
                    out.append((key, value))
            after = page[-1][0]
        return out

    # ------------------------------------------------------------ ListTasks

    async def page(self, *, page_size: int, page_token: str = "", context_id: str = "", state: int = 0,
                   updated_after_ns: int | None = None, budget: int = 1000, scope: str | None = None) -> Page:
        """Up to `page_size` tasks, newest status first, that pass the filters; reads at most
        `budget` order rows (a page may come back short, with a token to go on). With `scope`
        (`scope_key`), only that capability's and principal's tasks, from their own order rows."""
        table, prefix = (self.order, "") if scope is None or self.scoped is None else (self.scoped, f"{scope}/")
        after = _decode_token(page_token)
        after = prefix + after if after else ""
        tasks: list[a2a_pb2.Task] = []
        read = 0
        while len(tasks) < page_size and read < budget:
            rows = await table.scan(prefix, after=after, limit=min(SCAN_PAGE, budget - read))
            if not rows:
                return Page(tasks, "")
            for key, _ in rows:
                read += 1
                after = key
                task = await self._listed(key[len(prefix):])
                if task is None:
                    continue
                if updated_after_ns is not None and order_key(task, task.id) > order_key_at(updated_after_ns):
                    return Page(tasks, "")     # older from here on
                if (not context_id or task.context_id == context_id) and (not state or task.status.state == state):
                    tasks.append(task)
                    if len(tasks) == page_size:
                        break
        more = await table.scan(prefix, after=after, limit=1)
        return Page(tasks, _encode_token(after[len(prefix):]) if more else "")

    async def _listed(self, key: str) -> a2a_pb2.Task | None:
        """The task an order row names, if that row is still its current one."""
        loaded = await self._load(key.partition("/")[2])
        if loaded is None or loaded[0] != key:
            return None         # a write or a delete racing ours left it behind; ListTasks skips it
        return a2a_pb2.Task.FromString(loaded[1])

    # ------------------------------------------------------------ internals

    def _lock(self, key: str) -> "_KeyLock":
        return _KeyLock(self._locks, key)

    async def _previous(self, key: str, new: bool) -> tuple[str, str | None]:
        """The order key and chunk generation of the row being replaced ("", None: no row).
        `new`: the task is as `submit` first writes it (`_is_new`)."""
        known = self._known.get(key)
        if known is not None:
            return known
        if new:
            return "", None
        row = await self.rows.read(key)
        if row is None:
            return "", None
        order, _, generation, _ = _parse(row[0])
        return order, generation

    def _remember(self, key: str, order: str, generation: str | None) -> None:
        if len(self._known) >= _KNOWN:
            self._known.pop(next(iter(self._known)))
        self._known[key] = (order, generation)

    def _lifetime_row(self, key: str, facts: "_Facts") -> str | None:
        """The lifetimes row this put writes, if any. A running turn's deadline gets one (once per
        process and deadline: `_wrote_deadline` once it is written). A turn that ended gets one at
        its status time + retention when that comes before its deadline: the deadline row would
        otherwise keep the task (and its memory) until then."""
        deadline = facts.deadline
        if facts.final:
            self._deadline_of.pop(key, None)      # a later turn's deadline is written again
            if deadline is not None and self.retention is not None:
                expiry = facts.status_seconds + self.retention
                if expiry < deadline:
                    return lifetime_key(expiry, key)
            return None
        if deadline is None or self._deadline_of.get(key) == deadline:
            return None
        return lifetime_key(deadline, key)

    def _wrote_deadline(self, key: str, deadline: float) -> None:
        if len(self._deadline_of) >= _KNOWN:
            self._deadline_of.pop(next(iter(self._deadline_of)))
        self._deadline_of[key] = deadline

    async def _write_chunks(self, key: str, generation: str, value: bytes) -> None:
        view = memoryview(value)
        await asyncio.gather(*(self.chunks.put(_chunk_key(key, generation, i), bytes(view[at:at + self.chunk_bytes]))
                               for i, at in enumerate(range(0, len(value), self.chunk_bytes))))

    async def _drop_chunks(self, key: str, generation: str | None) -> None:
        """Delete one generation's chunks, or every chunk of the task (generation None)."""
        prefix = f"{key}/{generation}/" if generation else f"{key}/"
        while page := await self.chunks.scan(prefix, limit=SCAN_PAGE):
            await asyncio.gather(*(self.chunks.delete(k) for k, _ in page))


@dataclass(slots=True)      # not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__ (~5x)
class _Facts:
    """What a put needs of its task, read once, as the task was when it was serialized (not
    changed after)."""
    order: str
    scope: str
    new: bool
    final: bool
    deadline: float | None
    status_seconds: float

    @classmethod
    def of(cls, task: a2a_pb2.Task, key: str, scoped: bool) -> "_Facts":
        """As order_key, task_scope, _is_new and deadline_of, reading the metadata's Struct once
        (each of its reads costs microseconds)."""
        status = task.status
        ns = status.timestamp.seconds * 1_000_000_000 + status.timestamp.nanos if status.HasField("timestamp") else 0
        own = task.metadata.fields.get(fold.OWN_METADATA)
        fields = own.struct_value.fields if own is not None and own.HasField("struct_value") else {}
        capability = fields["capability"].string_value if "capability" in fields else ""
        scope = scope_key(capability, fields["principal"].string_value if "principal" in fields else "") \
            if scoped and capability else ""
        turn = fields["turn"].number_value if "turn" in fields else 0
        new = (status.state == a2a_pb2.TASK_STATE_SUBMITTED and turn == 0 and not task.artifacts
               and len(task.history) == 1)
        deadline = fields["deadline"].number_value if "deadline" in fields else None
        return cls(f"{_MAX_NS - ns:020d}/{key}", scope, new, fold.is_final(status.state), deadline, ns / 1e9)


def order_key_at(ns: int) -> str:
    """The order key of a status time, before every task id of that time."""
    return f"{_MAX_NS - ns:020d}/\U0010ffff"


def _is_new(task: a2a_pb2.Task) -> bool:
    """A task as `submit` first writes it: nothing of it can be in the index yet."""
    own = task.metadata.fields.get(fold.OWN_METADATA)
    turn = own.struct_value.fields.get("turn") if own is not None and own.HasField("struct_value") else None
    return (task.status.state == a2a_pb2.TASK_STATE_SUBMITTED and not task.artifacts and len(task.history) == 1
            and (turn is None or turn.number_value == 0))


def _chunk_key(key: str, generation: str, i: int) -> str:
    return f"{key}/{generation}/{i:05d}"


def _record(order: str, value: bytes, generation: str | None, chunk_bytes: int) -> bytes:
    encoded = order.encode()
    if generation is None:
        return _HEADER.pack(0, _INLINE, len(encoded)) + encoded + value
    count = -(-len(value) // chunk_bytes)
    return _HEADER.pack(0, _CHUNKED, len(encoded)) + encoded + _CHUNKS.pack(count) + generation.encode()


def _parse(raw: bytes) -> tuple[str, bytes, str | None, int]:
    """(order key, inline value, chunk generation, chunk count) of a row; a bare Task is inline."""
    if not raw or raw[0] != 0:
        return "", raw, None, 0
    _, kind, length = _HEADER.unpack_from(raw)
    at = _HEADER.size + length
    order = raw[_HEADER.size:at].decode()
    if kind == _INLINE:
        return order, raw[at:], None, 0
    (count,) = _CHUNKS.unpack_from(raw, at)
    return order, b"", raw[at + _CHUNKS.size:at + _CHUNKS.size + 8].decode(), count


def _encode_token(order: str) -> str:
    return base64.urlsafe_b64encode(order.encode()).decode().rstrip("=")


def _decode_token(token: str) -> str:
    if not token:
        return ""
    try:
        order = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise PageTokenError(token) from None
    if len(order) < 22 or not order[:20].isdigit() or order[20] != "/":
        raise PageTokenError(token)
    return order


class _KeyLock:
    """One task's writes in this process one at a time (its row, order row and chunks agree)."""

    def __init__(self, locks: dict[str, list], key: str) -> None:
        self._locks, self._key = locks, key

    async def __aenter__(self) -> None:
        entry = self._locks.setdefault(self._key, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            await entry[0].acquire()
        except BaseException:
            self._leave(entry)
            raise

    async def __aexit__(self, *exc) -> None:
        entry = self._locks[self._key]
        entry[0].release()
        self._leave(entry)

    def _leave(self, entry: list) -> None:
        entry[1] -= 1
        if entry[1] == 0:
            del self._locks[self._key]
