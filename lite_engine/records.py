"""Commit-log record payloads of the engine.

Every state change is appended as one record; acks, deletes and key-value tombstones are new
records, never rewrites. Strings are UTF-8 with a u16 length prefix ("str" below); all integers
are little-endian.

    TOPIC   str name | str config-json
    PUBLISH str topic | str lite ("" = none) | u64 seq | f64 ts | str key | u8 has_key
            | u16 n_headers | n * (str name | str value) | body (rest of the record)
    ACK     str topic | str lite | str group | u64 offset
    DELETE  str topic | str lite                -- a lite topic expired
    ATTEMPT str topic | str lite | str group | u64 offset | u32 attempt   -- a delivery
    KV_PUT_V str table | str key | u64 version | value (rest)
    KV_DEL_V str table | str key | u64 version  -- a delete consumes a version too
    KV_PUT  str table | str key | value (rest)  -- written before rows had versions; replay
    KV_DEL  str table | str key                 -- gives each the next version in log order

The commit log adds length, CRC, type and LSN around each payload (see lite_engine/commitlog/).
"""

from __future__ import annotations

import json
import struct

TOPIC, PUBLISH, ACK, DELETE, KV_PUT, KV_DEL = 1, 2, 3, 4, 5, 6

_U16 = struct.Struct("<H")
_PUB = struct.Struct("<QdBH")
_U64 = struct.Struct("<Q")


# Encoded names, by name: a task's records repeat the same few (its topic, lite topic, group,
# table, keys) a dozen times, and encoding one costs several times a lookup. Bounded: cleared
# when full.
_ENCODED: dict[str, bytes] = {}
_ENCODED_MAX = 8192


def _s(value: str) -> bytes:
    encoded = _ENCODED.get(value)
    if encoded is None:
        raw = value.encode()
        encoded = _U16.pack(len(raw)) + raw
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        _ENCODED[value] = encoded
    return encoded


def _read_s(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = _U16.unpack_from(buf, pos)
    pos += 2
    return bytes(buf[pos:pos + n]).decode(), pos + n


def encode_topic(name: str, config: dict) -> bytes:
    return _s(name) + _s(json.dumps(config, separators=(",", ":")))


def decode_topic(payload: bytes) -> tuple[str, dict]:
    buf = memoryview(payload)
    name, pos = _read_s(buf, 0)
    config, _ = _read_s(buf, pos)
    return name, json.loads(config)


def encode_publish(topic: str, lite: str, seq: int, ts: float, key: str | None,
                   headers: dict[str, str] | None, body: bytes) -> bytes:
    parts = [_s(topic), _s(lite), _s(key or ""),
             _PUB.pack(seq, ts, key is not None, len(headers) if headers else 0)]
    if headers:
        for name, value in headers.items():
            parts.append(_s(name))
            parts.append(_s(value))
    parts.append(body)
    return b"".join(parts)


def decode_publish(payload: bytes):
    """Return (topic, lite, seq, ts, key, headers, body)."""
    buf = memoryview(payload)
    topic, pos = _read_s(buf, 0)
    lite, pos = _read_s(buf, pos)
    key, pos = _read_s(buf, pos)
    seq, ts, has_key, n = _PUB.unpack_from(buf, pos)
    pos += _PUB.size
    headers = None
    if n:
        headers = {}
        for _ in range(n):
            name, pos = _read_s(buf, pos)
            headers[name], pos = _read_s(buf, pos)
    return topic, lite, seq, ts, (key if has_key else None), headers, bytes(buf[pos:])


def encode_ack(topic: str, lite: str, group: str, offset: int) -> bytes:
    return _s(topic) + _s(lite) + _s(group) + _U64.pack(offset)


def decode_ack(payload: bytes) -> tuple[str, str, str, int]:
    buf = memoryview(payload)
    topic, pos = _read_s(buf, 0)
    lite, pos = _read_s(buf, pos)
    group, pos = _read_s(buf, pos)
    (offset,) = _U64.unpack_from(buf, pos)
    return topic, lite, group, offset


def encode_delete(topic: str, lite: str) -> bytes:
    return _s(topic) + _s(lite)


def decode_delete(payload: bytes) -> tuple[str, str]:
    buf = memoryview(payload)
    topic, pos = _read_s(buf, 0)
    lite, _ = _read_s(buf, pos)
    return topic, lite


def encode_kv_unversioned(table: str, key: str, value: bytes = b"") -> bytes:
    """A KV_PUT / KV_DEL payload as engines before versioned rows wrote it."""
    return _s(table) + _s(key) + value


def decode_kv_unversioned(payload: bytes) -> tuple[str, str, bytes]:
    buf = memoryview(payload)
    table, pos = _read_s(buf, 0)
    key, pos = _read_s(buf, pos)
    return table, key, bytes(buf[pos:])


def encode_kv(table: str, key: str, version: int, value: bytes = b"") -> bytes:
    """A KV_PUT_V / KV_DEL_V payload."""
    return _s(table) + _s(key) + _U64.pack(version) + value


def decode_kv(payload: bytes) -> tuple[str, str, int, bytes]:
    """Return (table, key, version, value); value is b"" for a delete."""
    buf = memoryview(payload)
    table, pos = _read_s(buf, 0)
    key, pos = _read_s(buf, pos)
    (version,) = _U64.unpack_from(buf, pos)
    return table, key, version, bytes(buf[pos + 8:])


# Snapshot-only records: a snapshot is the engine state written as records that replay into it.
#   META    u64 next_seq
#   KV_CLOCK u64 last table version handed out (a deleted row's version is never reused)
#   STREAM  str topic | str lite | u64 base       -- offset of the first retained message
#   CURSOR  str topic | str lite | str group | u64 floor | u32 n | n * u64 acked-above-floor
META, STREAM, CURSOR, KV_CLOCK = 7, 8, 9, 10
ATTEMPT = 11
KV_PUT_V, KV_DEL_V = 12, 13
_U32 = struct.Struct("<I")
_ATTEMPT = struct.Struct("<QI")


def encode_attempt(topic: str, lite: str, group: str, offset: int, attempt: int) -> bytes:
    return _s(topic) + _s(lite) + _s(group) + _ATTEMPT.pack(offset, attempt)


def decode_attempt(payload: bytes) -> tuple[str, str, str, int, int]:
    buf = memoryview(payload)
    topic, pos = _read_s(buf, 0)
    lite, pos = _read_s(buf, pos)
    group, pos = _read_s(buf, pos)
    offset, attempt = _ATTEMPT.unpack_from(buf, pos)
    return topic, lite, group, offset, attempt


def encode_u64(value: int) -> bytes:
    return _U64.pack(value)


def decode_u64(payload: bytes) -> int:
    return _U64.unpack_from(payload, 0)[0]


def encode_meta(next_seq: int) -> bytes:
    return _U64.pack(next_seq)


def decode_meta(payload: bytes) -> int:
    return _U64.unpack_from(payload, 0)[0]


def encode_stream(topic: str, lite: str, base: int) -> bytes:
    return _s(topic) + _s(lite) + _U64.pack(base)


def decode_stream(payload: bytes) -> tuple[str, str, int]:
    buf = memoryview(payload)
    topic, pos = _read_s(buf, 0)
    lite, pos = _read_s(buf, pos)
    return topic, lite, _U64.unpack_from(buf, pos)[0]


def encode_cursor(topic: str, lite: str, group: str, floor: int, acked: list[int]) -> bytes:
    return (_s(topic) + _s(lite) + _s(group) + _U64.pack(floor) + _U32.pack(len(acked))
            + struct.pack(f"<{len(acked)}Q", *acked))


def decode_cursor(payload: bytes) -> tuple[str, str, str, int, list[int]]:
    buf = memoryview(payload)
    topic, pos = _read_s(buf, 0)
    lite, pos = _read_s(buf, pos)
    group, pos = _read_s(buf, pos)
    floor, = _U64.unpack_from(buf, pos)
    n, = _U32.unpack_from(buf, pos + 8)
    return topic, lite, group, floor, list(struct.unpack_from(f"<{n}Q", buf, pos + 12))


_FRAME = struct.Struct("<BI")


def frame(rtype: int, payload: bytes) -> bytes:
    """One record inside a snapshot body: u8 type | u32 length | payload."""
    return _FRAME.pack(rtype, len(payload)) + payload


def unframe(data: bytes):
    buf, pos = memoryview(data), 0
    while pos < len(buf):
        rtype, n = _FRAME.unpack_from(buf, pos)
        pos += _FRAME.size
        yield rtype, bytes(buf[pos:pos + n])
        pos += n
