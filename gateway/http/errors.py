"""Why the guard refuses a request before any route sees it.

    RequestRefusedError(reason)
    ├── UnauthorizedError                   -- no valid bearer token
    ├── ForbiddenError(right)               -- a valid one, without the right for this route
    ├── RateLimitedError(retry_after)       -- 429: this principal's request rate is over its limit
    ├── OverloadedError(capability, retry_after) -- 503: the capability has its limit of work in flight
    ├── BodyTooLargeError(size, limit)      -- the body is over gateway.max_body_bytes
    ├── BodyTimeoutError(seconds)           -- the body did not arrive in time
    ├── MalformedBodyError(received, reason) -- JSON nested too deeply, or not UTF-8
    └── BackendDownError(reason, retry_after) -- 503: the backend is down (backend_gate.py)

The HTTP layer knows nothing of the gateway's error table (`gateway/errors.py`), so each class
carries its HTTP status and gRPC status name as data; the table reads them from here.
"""

from __future__ import annotations


class RequestRefusedError(Exception):
    http_status = 400
    grpc_status = "INVALID_ARGUMENT"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)

    def to_dict(self) -> dict:
        data = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return {"type": type(self).__name__, "message": str(self), **data}


class UnauthorizedError(RequestRefusedError):
    http_status = 401
    grpc_status = "UNAUTHENTICATED"

    def __init__(self) -> None:
        super().__init__("a valid bearer token is required")


class ForbiddenError(RequestRefusedError):
    http_status = 403
    grpc_status = "PERMISSION_DENIED"

    def __init__(self, right: str) -> None:
        self.right = right
        super().__init__(f"the credentials do not grant {right}")


class RateLimitedError(RequestRefusedError):
    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many requests: retry after {retry_after:g} seconds")


class OverloadedError(RequestRefusedError):
    http_status = 503
    grpc_status = "UNAVAILABLE"

    def __init__(self, capability: str, retry_after: float) -> None:
        self.capability, self.retry_after = capability, retry_after
        super().__init__(f"capability {capability[:100]!r} has its limit of tasks in flight: "
                         f"retry after {retry_after:g} seconds")


class BodyTooLargeError(RequestRefusedError):
    http_status = 413

    def __init__(self, size: int, limit: int) -> None:
        self.size, self.limit = size, limit
        super().__init__(f"the request body of {size} bytes exceeds the limit of {limit} bytes")


class BodyTimeoutError(RequestRefusedError):
    http_status = 408
    grpc_status = "DEADLINE_EXCEEDED"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"the request body did not arrive within {seconds:g} seconds")


class MalformedBodyError(RequestRefusedError):
    def __init__(self, received: int, reason: str) -> None:
        self.received = received
        super().__init__(f"invalid body (<{received} bytes>): {reason}")
        self.reason = reason
        self.not_json = reason.startswith("not UTF-8")     # not JSON text at all: a parse error


class BackendDownError(RequestRefusedError):
    http_status = 503
    grpc_status = "UNAVAILABLE"

    def __init__(self, reason: str, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"the backend is unavailable: {reason}; retry after {retry_after} s")
