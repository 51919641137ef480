"""Logging of `topicbridge serve`: lite_engine/logsetup.py's handler with the gateway's fields
(instance, backend, and the trace id of the current span when tracing is on), and the access log
turned off or sampled (`observability.access_log`, the share of requests written)."""

from __future__ import annotations

import logging
import random

from adapters import logsetup

from . import tracing


class TraceId(logging.Filter):
    """Adds the current span's trace id (32 hex digits) to records logged inside one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if tracing.enabled and getattr(record, "trace_id", None) is None:
            from opentelemetry import trace
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                record.trace_id = format(context.trace_id, "032x")
        return True


class Sample(logging.Filter):
    """Passes a `share` of the records (the access log: one line a request)."""

    def __init__(self, share: float, rng=random.random) -> None:
        super().__init__()
        self.share, self.rng = share, rng

    def filter(self, record: logging.LogRecord) -> bool:
        return self.share >= 1 or self.rng() < self.share


def configure(settings: dict, *, level: str | None = None, fmt: str | None = None, stream=None) -> dict:
    """Configure logging from the settings' `observability` section (`level` and `fmt` override
    it: the command line's flags). Returns the uvicorn.run options that go with it."""
    options = settings.get("observability", {})
    gateway = settings.get("gateway", {})
    logsetup.configure(level or options.get("log_level", "info"), fmt or options.get("log_format", "text"),
                       static={"instance": gateway.get("instance_id"), "backend": settings.get("backend")},
                       repeat_window=options.get("repeat_window_seconds", 10.0), filters=(TraceId(),), stream=stream)
    share = float(options.get("access_log", 0))
    access = logging.getLogger("uvicorn.access")
    for old in [f for f in access.filters if isinstance(f, Sample)]:
        access.removeFilter(old)
    if 0 < share < 1:
        access.addFilter(Sample(share))
    # log_config=None: uvicorn keeps the handler installed here instead of its own
    return {"log_config": None, "access_log": share > 0}
