"""The gateway's ASGI application: one Starlette app whose lifespan owns the backend, the task
service and every long-lived loop. Surfaces add their routes through `Gateway.routes`."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.base import Backend
from adapters.factory import open_backend

from gateway.a2a import routes as a2a_surface
from gateway.admin import api as admin
from gateway.a2a.lean import LeanSendMessage
from gateway.workers.bridge import Bridges
from gateway.registry.cardfetch import AddressPolicy
from gateway.mcp.server import McpSurface
from gateway.registry.capabilities import Registry
from gateway.http.guard import GatewayGuard
from gateway.tasks.service import TaskService

log = logging.getLogger("topicbridge.gateway")

DEMO_AGENTS = Path(__file__).resolve().parents[1] / "examples" / "demo_agents.py"


class Gateway:
    """Everything one gateway instance runs. Parts are started in order and closed in reverse."""

    def __init__(self, settings: dict, backend: Backend | None = None) -> None:
        self.settings = settings
        self.backend = backend or open_backend(settings)
        self.tasks = TaskService(self.backend, instance_id=settings.get("gateway", {}).get("instance_id"))
        self.registry = Registry(self.backend)
        self.bridges = Bridges(self.backend, self.registry, AddressPolicy.from_settings(settings))
        self.mcp = McpSurface(self)
        self._parts: list = []          # started objects with an async close()
        self.a2a_lean: dict = {}        # set by a2a_surface.routes(): what a2a_lean needs
        self.ready = False

    async def start(self) -> None:
        await self.backend.start()
        await self.tasks.start()
        self._parts.append(self.tasks)
        await self.registry.start()
        self._parts.append(self.registry)
        for part in self.extra_parts():
            await part.start()
            self._parts.append(part)
        if self.settings.get("gateway", {}).get("demo"):
            for part in demo_agents(self.backend):
                await part.start()
                self._parts.append(part)
        self.ready = True

    def extra_parts(self) -> list:
        """Long-lived parts beyond the task service (registry, bridges, push delivery)."""
        return [self.bridges, self.mcp]

    async def close(self) -> None:
        self.ready = False
        while self._parts:
            with contextlib.suppress(Exception):
                await self._parts.pop().close()
        await self.backend.close()

    def routes(self) -> list:
        return [Route("/healthz", self._health, methods=["GET"]), Route("/readyz", self._ready, methods=["GET"]),
                *admin.routes(self), *a2a_surface.routes(self), *self.mcp.routes()]

    async def _health(self, request: Request) -> JSONResponse:
        health = await self.backend.health()
        return JSONResponse({"ok": health.ok, "backend": health.backend, "detail": health.detail,
                             "instance": self.tasks.instance_id}, status_code=200 if health.ok else 503)

    async def _ready(self, request: Request) -> JSONResponse:
        """200 once every part has started and the backend answers healthy: the signal for a
        load balancer to send traffic."""
        ok = self.ready and (await self.backend.health()).ok
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


def demo_agents(backend: Backend) -> list:
    """The native example agents of `examples/demo_agents.py` (loaded from the source tree,
    which is not an installed package)."""
    spec = importlib.util.spec_from_file_location("topicbridge_demo_agents", DEMO_AGENTS)
    if spec is None or not DEMO_AGENTS.is_file():
        raise RuntimeError(f"--demo needs {DEMO_AGENTS}, which is not there")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.workers(backend)


def build_app(settings: dict, backend: Backend | None = None) -> Starlette:
    gateway = Gateway(settings, backend)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    routes = gateway.routes()
    middleware = [Middleware(GatewayGuard, **GatewayGuard.settings_kwargs(settings))]
    if settings.get("gateway", {}).get("a2a_lean_dispatch", True):
        middleware.append(Middleware(LeanSendMessage, **gateway.a2a_lean))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.gateway = gateway
    return app
