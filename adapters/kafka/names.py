"""What crosses the Kafka adapter's boundary: names, messages and arguments, checked before any
broker call; and the names of the topics and groups the adapter derives from them.

Topics, groups and tables become Kafka topic names (or parts of them), so they follow Kafka's
rule: ``[A-Za-z0-9._-]``, at most 249 characters, not ``.`` or ``..``. Lite topic names and client
ids never become Kafka names (a lite topic is a record key), so they follow the lite engine's
rule, which keeps the two backends interchangeable for the gateway.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from typing import Iterable

import lite_engine
from lite_engine.names import validate_name

from .. import errors
from ..base import Message

TOPIC_MAX = 249
GROUP_MAX = 200                  # leaves room for the prefixes of derived topics
_KAFKA_NAME = re.compile(r"[A-Za-z0-9._-]+")
SYSTEM_PREFIX = "tb."            # topics the adapter creates for itself
DLQ_PREFIX = "tb.dlq."
RETRY_PREFIX = "tb.retry."
TABLE_PREFIX = "tb.table."
TOPICS_TOPIC = "tb.topics"       # compacted: topic name -> TopicSpec as JSON
HEADER_PREFIX = "tb-"            # record headers the adapter writes; refused in user headers

MAX_BATCH = 1024
MAX_HEADERS = 64
MAX_HEADER_BYTES = 16 << 10
MAX_KEY_BYTES = 1024
MAX_SECONDS = 7 * 86_400


def topic(value: object, *, system_ok: bool = False) -> str:
    """A user topic; with `system_ok`, a dead-letter topic (``tb.dlq.<group>``) too."""
    name = _kafka_name("topic", value, TOPIC_MAX)
    if name.startswith(SYSTEM_PREFIX):
        if system_ok and name.startswith(DLQ_PREFIX) and len(name) > len(DLQ_PREFIX):
            return name
        raise errors.InvalidRequestError("topic", name, f"names starting with {SYSTEM_PREFIX!r} are reserved")
    return name


def group(value: object) -> str:
    return _kafka_name("group", value, GROUP_MAX)


def table(value: object) -> str:
    return _kafka_name("table", value, TOPIC_MAX - len(TABLE_PREFIX))


def lite_topic(value: object) -> str:
    return _engine_name("lite topic", value)


def client_id(value: object) -> str:
    return _engine_name("client id", value)


def lite_topics(values: Iterable[str]) -> set[str]:
    if isinstance(values, (str, bytes)):
        raise errors.InvalidRequestError("lite topics", values, "expected a collection of names, got one string")
    return {lite_topic(v) for v in values}


def _kafka_name(kind: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise errors.InvalidRequestError(kind, value, f"must be a string, got {type(value).__name__}")
    if not value:
        raise errors.InvalidRequestError(kind, value, "must not be empty")
    if len(value) > limit:
        raise errors.InvalidRequestError(kind, value, f"is {len(value)} characters long, the limit is {limit}")
    if _KAFKA_NAME.fullmatch(value) is None:
        bad = next(ch for ch in value if _KAFKA_NAME.fullmatch(ch) is None)
        raise errors.InvalidRequestError(kind, value, f"contains {bad!r}; Kafka allows letters, digits, '.', '_' and '-'")
    if value in (".", ".."):
        raise errors.InvalidRequestError(kind, value, "'.' and '..' are not valid Kafka names")
    return value


def _engine_name(kind: str, value: object) -> str:
    try:
        return validate_name(kind, value)
    except lite_engine.InvalidNameError as e:
        raise errors.InvalidRequestError(kind, e.value, e.reason) from None


def message(msg: object, limit: int) -> Message:
    """Check a message against the limits every backend shares (see lite_engine/engine.py)."""
    if not isinstance(msg, Message):
        raise errors.InvalidRequestError("message", type(msg).__name__, "expected an adapters.base.Message")
    body, key, headers = msg.body, msg.key, msg.headers
    if not isinstance(body, (bytes, bytearray)):
        raise errors.InvalidRequestError("body", type(body).__name__, "message body must be bytes")
    if len(body) > limit:
        raise errors.MessageTooLargeError(len(body), limit)
    if key is not None and (not isinstance(key, str) or len(key.encode()) > MAX_KEY_BYTES):
        raise errors.InvalidRequestError("key", key, f"must be a string of at most {MAX_KEY_BYTES} bytes")
    if not isinstance(headers, dict) or len(headers) > MAX_HEADERS:
        raise errors.InvalidRequestError("headers", headers, f"must be a dict of at most {MAX_HEADERS} entries")
    for name, value in headers.items():
        if not isinstance(name, str) or not name or not name.isprintable() or len(name) > 255:
            raise errors.InvalidRequestError("header name", name, "must be 1..255 printable characters")
        if name.startswith(HEADER_PREFIX):
            raise errors.InvalidRequestError("header name", name, f"names starting with {HEADER_PREFIX!r} are reserved")
        if not isinstance(value, str) or len(value.encode()) > MAX_HEADER_BYTES:
            raise errors.InvalidRequestError("header", name, f"values must be strings of at most {MAX_HEADER_BYTES} bytes")
    return msg


def messages(values: object, limit: int) -> list[Message]:
    """The messages of one publish_many call, each checked as by `message`."""
    if not isinstance(values, (list, tuple)) and (isinstance(values, (Message, str, bytes))
                                                  or not isinstance(values, Iterable)):
        raise errors.InvalidRequestError("messages", type(values).__name__, "expected a sequence of Messages")
    checked = [message(m, limit) for m in values]
    if len(checked) > MAX_BATCH:
        raise errors.InvalidRequestError("messages", len(checked), f"at most {MAX_BATCH} messages per call")
    return checked


def take(max_messages: object, wait: object) -> tuple[int, float]:
    if (not isinstance(max_messages, int) or isinstance(max_messages, bool)
            or not 1 <= max_messages <= MAX_BATCH):
        raise errors.InvalidRequestError("max_messages", max_messages, f"must be an integer in 1..{MAX_BATCH}")
    return max_messages, seconds("wait", wait, allow_zero=True)


def seconds(what: str, value: object, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero) or value > MAX_SECONDS:
        low = "[0" if allow_zero else "(0"
        raise errors.InvalidRequestError(what, value, f"must be a number of seconds in {low}, {MAX_SECONDS}]")
    return float(value)


def table_key(key: object) -> str:
    if not isinstance(key, str) or not key or len(key.encode()) > MAX_KEY_BYTES or not key.isprintable():
        raise errors.InvalidRequestError("key", key, f"keys must be 1..{MAX_KEY_BYTES} bytes of printable text")
    return key


# ------------------------------------------------------------------ derived names


def dead_letter_topic(group_name: str) -> str:
    return DLQ_PREFIX + group_name


def retry_topic(topic_name: str, group_name: str) -> str:
    """The topic where `group_name` re-publishes the messages of `topic_name` it retries.

    Readable prefixes, then a digest of the pair: "a.b"+"c" and "a"+"b.c" must not collide."""
    digest = hashlib.blake2b(f"{topic_name}\0{group_name}".encode(), digest_size=6).hexdigest()
    return f"{RETRY_PREFIX}{group_name[:100]}.{topic_name[:120]}.{digest}"


def table_topic(name: str) -> str:
    return TABLE_PREFIX + name


def kafka_group(group_name: str, topic_name: str) -> str:
    """The Kafka consumer group of one port-level group on one topic ('@' is in neither)."""
    return f"{group_name}@{topic_name}"


def owners_group(parent: str) -> str:
    return f"tb.owners@{parent}"


def lite_partition(name: str, partitions: int) -> int:
    """The partition of the reply topic a lite topic lives on: Kafka's own key partitioner
    (murmur2 of the key), so a plain Kafka producer keyed by the lite topic name agrees."""
    hashed = _hashes.get(name)
    if hashed is None:
        hashed = murmur2(name.encode()) & 0x7FFFFFFF
        if len(_hashes) >= _HASHES_KEPT:
            _hashes.clear()      # cheaper than an LRU; a burst of misses refills it
        _hashes[name] = hashed
    return hashed % partitions


# A reply channel's name is hashed by its subscribe and by every reply event published on it.
_hashes: dict[str, int] = {}
_HASHES_KEPT = 65_536
_M = 0x5BD1E995


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (seed 0x9747b28c), as aiokafka.partitioner.murmur2 computes it, with
    4-byte words unpacked at once: the key partitioner is on every lite publish."""
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * _M) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * _M) & 0xFFFFFFFF
        h = ((h * _M) & 0xFFFFFFFF) ^ k
    tail = length & 3
    if tail:
        if tail == 3:
            h ^= data[whole + 2] << 16
        if tail >= 2:
            h ^= data[whole + 1] << 8
        h = ((h ^ data[whole]) * _M) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * _M) & 0xFFFFFFFF
    return h ^ (h >> 15)


def lite_hash(name: str) -> int:
    """A 64-bit digest of a lite topic name, as carried in group membership metadata."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")
