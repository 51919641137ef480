"""The gateway's ASGI application: one Starlette app whose lifespan owns the backend, the task
service and every long-lived loop. Surfaces add their routes through `Gateway.routes`."""

from __future__ import annotations

import contextlib
import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.base import Backend
from adapters.factory import open_backend

from . import a2a_surface, admin
from .bridge import Bridges
from .cardfetch import AddressPolicy
from .mcp_surface import McpSurface
from .registry import Registry
from .tasks import TaskService

log = logging.getLogger("topicbridge.gateway")


class Gateway:
    """Everything one gateway instance runs. Parts are started in order and closed in reverse."""

    def __init__(self, settings: dict, backend: Backend | None = None) -> None:
        self.settings = settings
        self.backend = backend or open_backend(settings)
        self.tasks = TaskService(self.backend)
        self.registry = Registry(self.backend)
        self.bridges = Bridges(self.backend, self.registry, AddressPolicy.from_settings(settings))
        self.mcp = McpSurface(self)
        self._parts: list = []          # started objects with an async close()

    async def start(self) -> None:
        await self.backend.start()
        await self.tasks.start()
        self._parts.append(self.tasks)
        await self.registry.start()
        self._parts.append(self.registry)
        for part in self.extra_parts():
            await part.start()
            self._parts.append(part)

    def extra_parts(self) -> list:
        """Long-lived parts beyond the task service (registry, bridges, push delivery)."""
        return [self.bridges, self.mcp]

    async def close(self) -> None:
        while self._parts:
            with contextlib.suppress(Exception):
                await self._parts.pop().close()
        await self.backend.close()

    def routes(self) -> list:
        return [Route("/healthz", self._health, methods=["GET"]),
                *admin.routes(self), *a2a_surface.routes(self), *self.mcp.routes()]

    async def _health(self, request: Request) -> JSONResponse:
        health = await self.backend.health()
        return JSONResponse({"ok": health.ok, "backend": health.backend, "detail": health.detail,
                             "instance": self.tasks.instance_id}, status_code=200 if health.ok else 503)


def build_app(settings: dict, backend: Backend | None = None) -> Starlette:
    gateway = Gateway(settings, backend)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    app = Starlette(routes=gateway.routes(), lifespan=lifespan)
    app.state.gateway = gateway
    return app
