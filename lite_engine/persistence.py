"""The engine's durable state: records appended to the commit log, replayed on start, and
periodic snapshots that bound replay time (segments covered by a snapshot are deleted)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Iterable, Protocol

from . import records as rec
from .commitlog import CommitLog, CommitLogError
from .config import EngineConfig, TopicConfig
from .dirlock import DirLock
from .errors import StorageError
from .kv import KvStore
from .stream import Message, Stream, Topic

_log = logging.getLogger("lite_engine")
_RECORD_OVERHEAD = 128 << 10   # headers, key and names around the largest allowed body


@dataclass(frozen=True, slots=True)
class EngineState:
    """What a snapshot holds, handed over by the engine (read, never written, here)."""

    next_seq: int
    topics: Iterable[Topic]
    kv: KvStore


class Persistence:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._log = CommitLog(config.data_dir, fsync=config.fsync, segment_bytes=config.segment_bytes,
                              fsync_interval=config.fsync_interval,
                              max_payload=config.max_message_bytes + _RECORD_OVERHEAD)
        self._counted_from = 0    # records from this LSN on count towards the next snapshot
        # The engine's loop, from recover() (Engine.start): asyncio.get_running_loop() is a
        # getpid() system call on Python 3.11, and durable() runs on every publish and table write.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replaying = False
        self._lazy = config.fsync in ("never", "interval")
        self._lock = DirLock(config.data_dir)

    @property
    def _since_snapshot(self) -> int:
        return self._log.next_lsn - self._counted_from

    @property
    def healthy(self) -> bool:
        return self._log.write_error is None

    @property
    def log_size(self) -> tuple[int, int]:
        """The commit log's bytes and segments."""
        return self._log.size

    @property
    def problem(self) -> str | None:
        error = self._log.write_error
        return str(error) if error is not None else None

    async def retry(self) -> bool:
        """Write what a full disk refused; True once writes work again."""
        return await self._log.retry()

    def recover(self, engine: Restorable) -> None:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._lock.acquire()   # before the log is opened: opening truncates a torn tail
        try:
            self._replay(engine)
        except BaseException:
            self._lock.release()
            raise

    def _replay(self, engine: Restorable) -> None:
        self._replaying = True
        try:
            snap = self._log.open()
            start = 0
            if snap is not None:
                lsn, data = snap
                for rtype, payload in rec.unframe(data):
                    apply(engine, rtype, payload)
                start = lsn + 1
            for lsn, rtype, payload in self._log.replay(start):
                apply(engine, rtype, payload)
            self._counted_from = start
        except CommitLogError as exc:
            raise StorageError(str(exc)) from exc
        finally:
            self._replaying = False

    def append(self, rtype: int, payload: bytes) -> int | None:
        if self._replaying:
            return None
        try:
            return self._log.append(rtype, payload)
        except CommitLogError as exc:
            raise StorageError(str(exc)) from exc

    async def sync(self, lsn: int) -> None:
        fut = self.durable(lsn)
        if fut is not None:
            await fut

    def durable(self, lsn: int, then: Callable[[], None] | None = None, *,
                lazy: bool = False) -> asyncio.Future[None] | None:
        """None if `lsn` is durable under the policy already (never/interval: at once), else a
        future done once it is, or failed with StorageError if it cannot be. `then()` runs once
        `lsn` is durable, before the future is done and even if its awaiter was cancelled
        meanwhile (never on a failure); policies always/batch only. One waiter object in the
        log's heap per wait: no coroutine, task, shield or done-callback (a durable wait is on
        every publish and table write). `lazy`: the wait starts no commit of its own (CommitLog.add_waiter)."""
        if self._lazy:
            return None   # never/interval: the log writes at the next loop turn, many records at once
        fut = (self._loop or asyncio.get_running_loop()).create_future()
        try:
            if self._log.add_waiter(lsn, _Durable(fut, then), lazy=lazy):
                if then is not None:
                    then()
                return None
        except CommitLogError as exc:
            raise StorageError(str(exc)) from exc
        return fut

    async def written(self, lsn: int) -> None:
        """Once `lsn` survives this process being killed; its fsync rides a later commit."""
        if self._lazy:
            return
        try:
            await self._log.written(lsn)
        except CommitLogError as exc:
            raise StorageError(str(exc)) from exc

    def snapshot_due(self) -> bool:
        return self._since_snapshot >= self.config.snapshot_every

    async def snapshot(self, state: EngineState) -> None:
        lsn = self._log.next_lsn - 1      # the last record appended (or replayed)
        if lsn < 0:
            return
        data = b"".join(snapshot_records(state))
        self._counted_from = lsn + 1
        try:
            await self._log.write_snapshot(lsn, data)
        except CommitLogError as exc:
            raise StorageError(str(exc)) from exc

    async def close(self) -> None:
        try:
            await self._log.close()
        except CommitLogError as exc:
            raise StorageError(str(exc)) from exc
        finally:
            self._lock.release()


class _Durable:
    """A durable wait in the commit log's heap (CommitLog.add_waiter): runs `then`, then settles
    the awaiter's future, whose failure is the engine's StorageError."""

    __slots__ = ("fut", "then")

    def __init__(self, fut: asyncio.Future[None], then: Callable[[], None] | None) -> None:
        self.fut, self.then = fut, then

    def done(self) -> bool:
        return False      # settled once: the log pops it from its heap as it settles it

    def set_result(self, _: None) -> None:
        if self.then is not None:
            try:
                self.then()
            except Exception:   # the log's group commit must release the other waiters all the same
                _log.exception("revealing a durable record failed")
        if not self.fut.done():
            self.fut.set_result(None)

    def set_exception(self, exc: BaseException) -> None:
        if not self.fut.done():
            error = StorageError(str(exc))
            error.__cause__ = exc
            self.fut.set_exception(error)


# ------------------------------------------------------------------ replay

class Restorable(Protocol):
    """What replay needs from the engine: one method per recorded change, each applying it
    without recording it again. The engine keeps its state private; replay only calls these."""

    def restore_topic(self, name: str, config: TopicConfig) -> None: ...
    def restore_message(self, topic: str, lite: str, message: Message) -> None: ...
    def restore_ack(self, topic: str, lite: str, group: str, offset: int) -> None: ...
    def restore_lite_deleted(self, topic: str, lite: str) -> None: ...
    def restore_attempt(self, topic: str, lite: str, group: str, offset: int, attempt: int) -> None: ...
    def restore_next_seq(self, seq: int) -> None: ...
    def restore_stream(self, topic: str, lite: str, base: int) -> None: ...
    def restore_cursor(self, topic: str, lite: str, group: str, floor: int, acked: list[int]) -> None: ...
    # version None: a record from before versioned rows; it takes the next version
    def restore_row(self, table: str, key: str, value: bytes, version: int | None) -> None: ...
    def restore_row_deleted(self, table: str, key: str, version: int | None) -> None: ...
    def restore_kv_clock(self, version: int) -> None: ...


def apply(engine: Restorable, rtype: int, payload: bytes) -> None:
    """Apply one record (from the log or a snapshot) to a starting engine."""
    if rtype == rec.TOPIC:
        name, config = rec.decode_topic(payload)
        engine.restore_topic(name, TopicConfig.from_json(config))
    elif rtype == rec.PUBLISH:
        topic, lite, seq, ts, key, headers, body = rec.decode_publish(payload)
        engine.restore_message(topic, lite, Message(seq, ts, key, headers, body))
    elif rtype == rec.ACK:
        engine.restore_ack(*rec.decode_ack(payload))
    elif rtype == rec.ATTEMPT:
        engine.restore_attempt(*rec.decode_attempt(payload))
    elif rtype == rec.DELETE:
        engine.restore_lite_deleted(*rec.decode_delete(payload))
    elif rtype == rec.KV_PUT_V:
        table, key, version, value = rec.decode_kv(payload)
        engine.restore_row(table, key, value, version)
    elif rtype == rec.KV_DEL_V:
        table, key, version, _ = rec.decode_kv(payload)
        engine.restore_row_deleted(table, key, version)
    elif rtype == rec.KV_PUT:           # a data directory from before versioned rows
        table, key, value = rec.decode_kv_unversioned(payload)
        engine.restore_row(table, key, value, None)
    elif rtype == rec.KV_DEL:
        table, key, _ = rec.decode_kv_unversioned(payload)
        engine.restore_row_deleted(table, key, None)
    elif rtype == rec.KV_CLOCK:
        engine.restore_kv_clock(rec.decode_u64(payload))
    elif rtype == rec.META:
        engine.restore_next_seq(rec.decode_meta(payload))
    elif rtype == rec.STREAM:
        engine.restore_stream(*rec.decode_stream(payload))
    elif rtype == rec.CURSOR:
        engine.restore_cursor(*rec.decode_cursor(payload))
    else:
        raise StorageError(f"unknown record type {rtype} in the commit log")


# ------------------------------------------------------------------ snapshot

def snapshot_records(state: EngineState):
    yield rec.frame(rec.META, rec.encode_meta(state.next_seq))
    for topic in state.topics:
        yield rec.frame(rec.TOPIC, rec.encode_topic(topic.name, topic.config.to_json()))
        if topic.lites is None:
            yield from _stream_records(topic.name, "", topic)
        else:
            for lt in topic.lites.values():
                yield from _stream_records(topic.name, lt.name, lt)
    yield rec.frame(rec.KV_CLOCK, rec.encode_u64(state.kv.clock))
    for table, key, value, version in state.kv.rows():
        yield rec.frame(rec.KV_PUT_V, rec.encode_kv(table, key, version, value))


def _stream_records(topic: str, lite: str, stream: Stream):
    yield rec.frame(rec.STREAM, rec.encode_stream(topic, lite, stream.base))
    for m in stream.messages:
        yield rec.frame(rec.PUBLISH, rec.encode_publish(topic, lite, m.seq, m.ts, m.key, m.headers, m.body))
    for c in stream.cursors or ():
        acked = sorted(c.acked) if c.acked else []
        yield rec.frame(rec.CURSOR, rec.encode_cursor(topic, lite, c.group, c.floor, acked))
        for offset, attempt in (c.attempts or {}).items():
            yield rec.frame(rec.ATTEMPT, rec.encode_attempt(topic, lite, c.group, offset, attempt))
