"""The engine's durable state: records appended to the commit log, replayed on start, and
periodic snapshots that bound replay time (segments covered by a snapshot are deleted)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import records as rec
from .commitlog import CommitLog, CommitLogError
from .config import EngineConfig, TopicConfig
from .errors import StorageError
from .stream import Message, Stream

if TYPE_CHECKING:
    from .engine import Engine

_RECORD_OVERHEAD = 128 << 10   # headers, key and names around the largest allowed body


class Persistence:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._log = CommitLog(config.data_dir, fsync=config.fsync, segment_bytes=config.segment_bytes,
                              fsync_interval=config.fsync_interval,
                              max_payload=config.max_message_bytes + _RECORD_OVERHEAD)
        self._last_lsn: int | None = None
        self._since_snapshot = 0
        self._replaying = False
        self._error: StorageError | None = None
        self._lazy = config.fsync in ("never", "interval")

    @property
    def healthy(self) -> bool:
        return self._error is None

    def recover(self, engine: "Engine") -> None:
        self._replaying = True
        try:
            snap = self._log.open()
            start = 0
            if snap is not None:
                lsn, data = snap
                for rtype, payload in rec.unframe(data):
                    apply(engine, rtype, payload)
                start, self._last_lsn = lsn + 1, lsn
            for lsn, rtype, payload in self._log.replay(start):
                apply(engine, rtype, payload)
                self._last_lsn = lsn
                self._since_snapshot += 1
        except CommitLogError as exc:
            raise StorageError(str(exc)) from exc
        finally:
            self._replaying = False

    def append(self, rtype: int, payload: bytes) -> int | None:
        if self._replaying:
            return None
        if self._error is not None:
            raise self._error
        try:
            lsn = self._log.append(rtype, payload)
        except CommitLogError as exc:
            self._error = StorageError(str(exc))
            raise self._error from exc
        self._last_lsn = lsn
        self._since_snapshot += 1
        return lsn

    async def sync(self, lsn: int) -> None:
        if self._lazy:
            return    # never/interval: the log writes at the next loop turn, many records at once
        try:
            await self._log.sync(lsn)
        except CommitLogError as exc:
            self._error = self._error or StorageError(str(exc))
            raise self._error from exc

    def snapshot_due(self) -> bool:
        return self._since_snapshot >= self.config.snapshot_every

    async def snapshot(self, engine: "Engine") -> None:
        if self._last_lsn is None:
            return
        lsn, data = self._last_lsn, b"".join(snapshot_records(engine))
        self._since_snapshot = 0
        try:
            await self._log.write_snapshot(lsn, data)
        except CommitLogError as exc:
            self._error = self._error or StorageError(str(exc))
            raise self._error from exc

    async def close(self) -> None:
        try:
            await self._log.close()
        except CommitLogError as exc:
            raise StorageError(str(exc)) from exc


# ------------------------------------------------------------------ replay

def apply(engine: "Engine", rtype: int, payload: bytes) -> None:
    """Apply one record (from the log or a snapshot) to a starting engine."""
    if rtype == rec.TOPIC:
        name, config = rec.decode_topic(payload)
        engine._define_topic(name, TopicConfig.from_json(config))
    elif rtype == rec.PUBLISH:
        _restore_message(engine, *rec.decode_publish(payload))
    elif rtype == rec.ACK:
        topic, lite, group, offset = rec.decode_ack(payload)
        stream = _stream(engine, topic, lite)
        if stream is not None:
            stream.cursor(group).mark_acked(offset)
            if not lite:
                stream.trim_acked()
    elif rtype == rec.DELETE:
        topic, lite = rec.decode_delete(payload)
        t = engine._topics.get(topic)
        if t is not None and t.lites and lite in t.lites:
            engine._delete_lite(t, t.lites[lite])
    elif rtype == rec.KV_PUT:
        table, key, version, value = rec.decode_kv(payload)
        engine._kv.apply_put(table, key, value, version)
    elif rtype == rec.KV_DEL:
        table, key, version, _ = rec.decode_kv(payload)
        engine._kv.apply_delete(table, key, version)
    elif rtype == rec.KV_CLOCK:
        engine._kv.clock = max(engine._kv.clock, rec.decode_u64(payload))
    elif rtype == rec.META:
        engine._seq = max(engine._seq, rec.decode_meta(payload))
    elif rtype == rec.STREAM:
        topic, lite, base = rec.decode_stream(payload)
        stream = _stream(engine, topic, lite, create=True)
        stream.base = base
    elif rtype == rec.CURSOR:
        topic, lite, group, floor, acked = rec.decode_cursor(payload)
        cursor = _stream(engine, topic, lite, create=True).cursor(group)
        cursor.floor = cursor.next = floor
        cursor.acked = set(acked) or None
    else:
        raise StorageError(f"unknown record type {rtype} in the commit log")


def _stream(engine: "Engine", topic: str, lite: str, create: bool = False) -> Stream | None:
    t = engine._topics.get(topic)
    if t is None:
        if not create:
            return None
        t = engine._topic(topic, lite=bool(lite))
    if not lite:
        return t
    return engine._lite_topic(t, lite, create=create)


def _restore_message(engine, topic, lite, seq, ts, key, headers, body) -> None:
    t = engine._topic(topic, lite=bool(lite))
    stream = t if not lite else engine._lite_topic(t, lite, create=True)
    stream.messages.append(Message(seq, ts, key, headers, body))
    if lite:
        engine._touch(t, stream)
    engine._seq = max(engine._seq, seq + 1)


# ------------------------------------------------------------------ snapshot

def snapshot_records(engine: "Engine"):
    yield rec.frame(rec.META, rec.encode_meta(engine._seq))
    for topic in engine._topics.values():
        yield rec.frame(rec.TOPIC, rec.encode_topic(topic.name, topic.config.to_json()))
        if topic.lites is None:
            yield from _stream_records(topic.name, "", topic)
        else:
            for lt in topic.lites.values():
                yield from _stream_records(topic.name, lt.name, lt)
    yield rec.frame(rec.KV_CLOCK, rec.encode_u64(engine._kv.clock))
    for table, key, value, version in engine._kv.rows():
        yield rec.frame(rec.KV_PUT, rec.encode_kv(table, key, version, value))


def _stream_records(topic: str, lite: str, stream: Stream):
    yield rec.frame(rec.STREAM, rec.encode_stream(topic, lite, stream.base))
    for m in stream.messages:
        yield rec.frame(rec.PUBLISH, rec.encode_publish(topic, lite, m.seq, m.ts, m.key, m.headers, m.body))
    for c in stream.cursors or ():
        acked = sorted(c.acked) if c.acked else []
        yield rec.frame(rec.CURSOR, rec.encode_cursor(topic, lite, c.group, c.floor, acked))
