"""Malformed requests cost the log one line at most, never a traceback.

The a2a-sdk's dispatchers log every request they cannot parse with `logger.exception` (a full
traceback: ~4 KB a request), so an unauthenticated caller could fill the log disk. The request
is answered with the protocol's error either way; what the log needs is that it happened.
`install()` puts a filter on those SDK loggers that

- drops the traceback, keeping the exception's type and the start of its message on the line;
- lets at most `per_window` such lines through per logger each `window` seconds, and then one
  line saying how many were left out.

Only the SDKs' request-parsing loggers are filtered: a traceback from the gateway's own code
still means a bug and stays in the log.
"""

from __future__ import annotations

import logging
import time

# Loggers that report a caller's bad input (not a fault of the gateway).
REQUEST_LOGGERS = (
    "a2a.server.routes.jsonrpc_dispatcher",
    "a2a.server.routes.rest_dispatcher",
    "a2a.server.routes.jsonrpc_routes",
    "a2a.server.routes.rest_routes",
    "a2a.server.request_handlers.grpc_handler",
    "a2a.utils.error_handlers",
    "a2a.utils.version_validator",
    "a2a.compat.v0_3.jsonrpc_adapter",
    "a2a.compat.v0_3.rest_adapter",
    "a2a.compat.v0_3.grpc_handler",
    "mcp.server.streamable_http",
    "mcp.server.streamable_http_manager",     # a line per session created or unknown session id
    "mcp.server._streamable_http_modern",
)


class QuietRequestErrors(logging.Filter):
    def __init__(self, per_window: int = 10, window: float = 60.0, clock=time.monotonic) -> None:
        super().__init__()
        self.per_window, self.window, self.clock = per_window, window, clock
        self._started: dict[str, float] = {}
        self._count: dict[str, int] = {}
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info or record.exc_text:
            error = record.exc_info[1] if record.exc_info else None
            message = record.getMessage()
            if error is not None:
                message += f" ({type(error).__name__}: {str(error)[:200]})"
            record.msg, record.args = message, None
            record.exc_info = record.exc_text = record.stack_info = None
        now = self.clock()
        name = record.name
        if now - self._started.get(name, -self.window) >= self.window:
            left_out = self._count.get(name, 0) - self.per_window
            self._started[name], self._count[name] = now, 0
            if left_out > 0:
                record.msg = f"{record.getMessage()} [{left_out} similar lines left out in the last window]"
                record.args = None
        self._count[name] = self._count.get(name, 0) + 1
        if self._count[name] > self.per_window:
            self.dropped += 1
            return False
        return True


QUIET = QuietRequestErrors()


def install(names: tuple[str, ...] = REQUEST_LOGGERS) -> None:
    """Idempotent: each logger gets the one shared filter once."""
    for name in names:
        logger = logging.getLogger(name)
        if QUIET not in logger.filters:
            logger.addFilter(QUIET)
