"""Errors raised by the lite engine.

    EngineError
    ├── InvalidArgumentError(value, reason)
    │   ├── InvalidNameError(kind, value, reason)
    │   └── MessageTooLargeError(size, limit)
    ├── NotFoundError
    │   ├── UnknownClientError(client_id)
    │   ├── UnknownReceiptError(receipt)
    │   └── UnknownTopicError(topic)
    ├── TopicKindError(topic, expected)
    ├── ConflictError(table, key, expected, actual)   -- a table write's `expect` did not hold
    ├── QuotaExceededError(quota, limit, client_id)
    ├── EngineClosedError
    └── StorageError(reason)          -- the commit log failed; raised on every later write
        └── DataDirLockedError(data_dir, pid)  -- another engine holds the data directory

Every error carries the offending data as attributes so that the network face and the adapters
can map it to a protocol error without parsing messages.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class InvalidArgumentError(EngineError):
    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"invalid argument {value!r}: {reason}")


class InvalidNameError(InvalidArgumentError):
    def __init__(self, kind: str, value: object, reason: str) -> None:
        self.kind = kind
        InvalidArgumentError.__init__(self, value, reason)
        self.args = (f"invalid {kind} name {_shorten(value)!r}: {reason}",)


class MessageTooLargeError(InvalidArgumentError):
    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        InvalidArgumentError.__init__(self, size, f"message body of {size} bytes exceeds the limit of {limit} bytes")
        self.args = (self.reason,)


class NotFoundError(EngineError):
    pass


class UnknownClientError(NotFoundError):
    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        super().__init__(f"unknown lite client {client_id!r} (never opened, closed, or expired after missing heartbeats)")


class UnknownReceiptError(NotFoundError):
    def __init__(self, receipt: str) -> None:
        self.receipt = receipt
        super().__init__(f"unknown receipt {_shorten(receipt)!r} (already acked, expired, or never issued)")


class UnknownTopicError(NotFoundError):
    def __init__(self, topic: str) -> None:
        self.topic = topic
        super().__init__(f"unknown topic {topic!r}")


class TopicKindError(EngineError):
    def __init__(self, topic: str, expected: str) -> None:
        self.topic = topic
        self.expected = expected
        super().__init__(f"topic {topic!r} is not a {expected} topic")


class ConflictError(EngineError):
    """A conditional table write found another version: `actual` 0 means the row is absent."""

    def __init__(self, table: str, key: str, expected: int, actual: int) -> None:
        self.table = table
        self.key = key
        self.expected = expected
        self.actual = actual
        want = "no row" if expected == 0 else f"version {expected}"
        found = "no row" if actual == 0 else f"version {actual}"
        super().__init__(f"table {table!r} key {_shorten(key)!r}: expected {want}, found {found}")


class QuotaExceededError(EngineError):
    def __init__(self, quota: str, limit: int, client_id: str | None = None) -> None:
        self.quota = quota
        self.limit = limit
        self.client_id = client_id
        who = f" for client {client_id!r}" if client_id else ""
        super().__init__(f"quota {quota} exceeded{who}: limit is {limit}")


class EngineClosedError(EngineError):
    def __init__(self) -> None:
        super().__init__("the engine is closed")


class StorageError(EngineError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"commit log failure: {reason}")


class DataDirLockedError(StorageError):
    def __init__(self, data_dir: str, pid: int | None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        holder = f"process {pid}" if pid is not None else "another process"
        StorageError.__init__(self, f"data directory {data_dir} is in use by {holder}")
        self.args = (
            f"data directory {data_dir} is in use by {holder}: one engine per data directory. "
            f"To share one engine between processes, run `topicbridge engine --data-dir {data_dir}` "
            f"and point every process at it with lite.mode=remote (lite.target=host:port)",)


def _shorten(value: object, limit: int = 80) -> object:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "..."
    return value
