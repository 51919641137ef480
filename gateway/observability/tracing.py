"""W3C trace context across the backend, with OpenTelemetry.

A caller's `traceparent` (or a new trace) is the parent of the gateway's `submit` span; the
submit span's context travels inside the task envelope's `trace` field, the worker's span is its
child, the reply events carry the worker's context back, and whichever instance folds them makes
its `relay.fold` span a child of that. The bridge's HTTP call to a remote agent carries the
current `traceparent` (an httpx request hook).

Off by default (`gateway.tracing.enabled`): every helper checks one module flag and returns at
once, so tracing costs nothing when off. `configure()` installs an SDK TracerProvider exporting
over OTLP/HTTP when `gateway.tracing.otlp_endpoint` is set (the `otlp` extra); a provider the
process installed already (tests install one with an in-memory exporter) is kept.
"""

from __future__ import annotations

import contextlib
import logging

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

log = logging.getLogger("topicbridge.tracing")

enabled = False
_tracer = trace.get_tracer("topicbridge")
_NO_SPAN = contextlib.nullcontext(None)


def configure(options: dict) -> None:
    """Turn tracing on or off from the gateway's `tracing` settings."""
    global enabled, _tracer
    enabled = bool(options.get("enabled"))
    if not enabled:
        return
    provider = trace.get_tracer_provider()
    endpoint = options.get("otlp_endpoint")
    if endpoint and not hasattr(provider, "add_span_processor"):
        provider = _otlp_provider(endpoint, options.get("service_name") or "topicbridge")
        trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("topicbridge")


def _otlp_provider(endpoint: str, service_name: str):
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as e:
        raise RuntimeError("gateway.tracing.otlp_endpoint needs the otlp extra: "
                           "pip install 'topicbridge[otlp]'") from e
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def span(name: str, parent: dict | None = None, attributes: dict | None = None):
    """A span named `name`, child of the trace context in `parent` (a carrier dict such as an
    envelope's `trace`) or of the current context; a no-op context manager when tracing is off."""
    if not enabled:
        return _NO_SPAN
    ctx = propagate.extract(parent) if parent else None
    return _tracer.start_as_current_span(name, context=ctx, attributes=attributes)


def task_span(name: str, parent: dict | None, task_id: str, capability: str, backend):
    """`span` with the task's id, capability and backend as attributes (built only when on)."""
    if not enabled:
        return _NO_SPAN
    return span(name, parent, {"topicbridge.task_id": task_id, "topicbridge.capability": capability,
                               "topicbridge.backend": backend_name(backend)})


def backend_name(backend) -> str:
    return getattr(backend, "name", None) or type(backend).__name__


def carrier() -> dict[str, str]:
    """The current trace context as {"traceparent": ..., ["tracestate": ...]}; {} when off."""
    if not enabled:
        return {}
    out: dict[str, str] = {}
    propagate.inject(out)
    return out


@contextlib.contextmanager
def attached(parent: dict | None):
    """Make the context in `parent` current for the block (no span of its own)."""
    if not enabled or not parent:
        yield
        return
    token = otel_context.attach(propagate.extract(parent))
    try:
        yield
    finally:
        otel_context.detach(token)


async def inject_request(request) -> None:
    """httpx request hook: the outgoing call carries the current trace context."""
    if enabled:
        propagate.inject(request.headers)


class TraceContext:
    """ASGI middleware: a request's `traceparent` becomes the current context while it is
    served, so the task it submits joins the caller's trace. Installed only when tracing is on."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if k in (b"traceparent", b"tracestate")}
        if not headers:
            await self.app(scope, receive, send)
            return
        token = otel_context.attach(propagate.extract(headers))
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)
