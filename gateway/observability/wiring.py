"""Wires metrics and tracing into a Gateway from its `observability` settings: the switches,
GET /metrics (behind the admin tokens: the guard protects it like /admin) and the middleware."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import metrics, tracing


def configure(gateway, options: dict) -> None:
    metrics.enabled = bool(options["metrics"])
    tracing.configure({"enabled": options["tracing"], "otlp_endpoint": options["otlp_endpoint"],
                       "service_name": options["service_name"]})
    metrics.watch(gateway)


def routes(gateway, options: dict) -> list:
    if not options["metrics"]:
        return []

    async def scrape(request: Request) -> Response:
        health = await gateway.backend.health()
        metrics.BACKEND_UP.labels(health.backend).set(1 if health.ok else 0)
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)

    return [Route("/metrics", scrape, methods=["GET"])]


def middleware(options: dict) -> list[Middleware]:
    """Outermost first: requests are counted with the status the guard or the app answered."""
    out = []
    if options["metrics"]:
        out.append(Middleware(metrics.RequestMetrics))
    if options["tracing"]:
        out.append(Middleware(tracing.TraceContext))
    return out
