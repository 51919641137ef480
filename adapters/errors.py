"""Errors every backend adapter raises, whatever the broker underneath.

    BackendError
    ├── InvalidRequestError(field, value, reason)   -- bad names, arguments, bodies
    │   └── MessageTooLargeError(size, limit)
    ├── NotFoundError(kind, name)                   -- topic, client, table row
    │   ├── UnknownClientError(client_id)
    │   └── UnknownReceiptError(receipt)            -- already acked, expired, never issued
    ├── ConflictError(reason)                       -- e.g. a topic exists with another kind
    ├── QuotaExceededError(quota, limit, client_id)
    ├── BackendUnavailableError(backend, reason)    -- broker down, connection lost: retry later
    └── StorageError(reason)                        -- the backend could not persist

What each error is called on each protocol is the gateway's business (`gateway/errors.py`).
"""

from __future__ import annotations


class BackendError(Exception):
    """Base of every error an adapter raises on purpose."""

    def to_dict(self) -> dict:
        data = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return {"type": type(self).__name__, "message": str(self), **data}


class InvalidRequestError(BackendError):
    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = _printable(value)
        self.reason = reason
        super().__init__(f"invalid {field} {self.value!r}: {reason}")


class MessageTooLargeError(InvalidRequestError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__("body", size, f"{size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class NotFoundError(BackendError):
    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"unknown {kind} {name!r}")


class UnknownClientError(NotFoundError):
    def __init__(self, client_id: str) -> None:
        super().__init__("client", client_id)
        self.args = (f"unknown lite client {client_id!r} (never opened, closed, or expired)",)


class UnknownReceiptError(NotFoundError):
    def __init__(self, receipt: str) -> None:
        super().__init__("receipt", _printable(receipt))
        self.args = (f"unknown receipt {self.name!r} (already acked, expired, or never issued)",)


class ConflictError(BackendError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class QuotaExceededError(BackendError):
    def __init__(self, quota: str, limit: int, client_id: str | None = None) -> None:
        self.quota = quota
        self.limit = limit
        self.client_id = client_id
        who = f" for client {client_id!r}" if client_id else ""
        super().__init__(f"quota {quota} exceeded{who}: limit is {limit}")


class BackendUnavailableError(BackendError):
    def __init__(self, backend: str, reason: str) -> None:
        self.backend = backend
        self.reason = reason
        super().__init__(f"backend {backend} unavailable: {reason}")


class StorageError(BackendError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"storage failure: {reason}")


def _printable(value: object, limit: int = 120) -> object:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "..."
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return value
