"""The commit log's errors, each carrying the data a caller or an operator needs.

Exceptions::

    CommitLogError
    ├── CorruptLogError      bad data found where it cannot be a torn tail (path, offset, reason)
    ├── LogWriteError        an I/O error; every later append/sync raises it again, until
    │                        `retry()` writes the pending records (only for a full disk)
    ├── RecordTooLargeError  payload above max_payload (size, limit)
    └── LogClosedError       append/sync on a log that is not open (path, state)

`lite_engine.commitlog` re-exports them; they live apart so that each part of the log can
raise them without importing the log itself.
"""

from __future__ import annotations

__all__ = ["CommitLogError", "CorruptLogError", "LogClosedError", "LogWriteError", "RecordTooLargeError"]


class CommitLogError(Exception):
    """Base class of every commit log error."""


class CorruptLogError(CommitLogError):
    def __init__(self, path: str, offset: int, reason: str) -> None:
        self.path, self.offset, self.reason = path, offset, reason
        super().__init__(f"corrupt commit log {path} at offset {offset}: {reason}")


class LogWriteError(CommitLogError):
    def __init__(self, path: str, operation: str, cause: BaseException) -> None:
        self.path, self.operation, self.cause = path, operation, cause
        self.errno = getattr(cause, "errno", None)
        super().__init__(f"commit log {operation} failed on {path}: {cause}")

    def again(self) -> LogWriteError:
        """A fresh copy to raise: re-raising one instance keeps growing its traceback."""
        copy = LogWriteError(self.path, self.operation, self.cause)
        copy.__cause__ = self.cause
        return copy


class RecordTooLargeError(CommitLogError, ValueError):
    def __init__(self, path: str, size: int, limit: int) -> None:
        self.path, self.size, self.limit = path, size, limit
        super().__init__(f"record payload of {size} bytes exceeds max_payload={limit} ({path})")


class LogClosedError(CommitLogError):
    def __init__(self, path: str, state: str) -> None:
        self.path, self.state = path, state
        super().__init__(f"commit log {path} is {state}")
