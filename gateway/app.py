"""The gateway's ASGI application: one Starlette app whose lifespan owns the backend, the task
service and every long-lived part. Everything is wired here, explicitly: route factories only
build routes; every background loop runs under the gateway's one `Supervisor`, so `/readyz`
names a part that is down."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.base import Backend
from adapters.factory import open_backend

from gateway.observability import wiring as observability
from gateway import settings as config
from gateway.a2a.lean import LeanSendMessage
from gateway.a2a.push import PushService, PushSettings
from gateway.a2a.grpc import GrpcSurface
from gateway.a2a.routes import A2ASurface
from gateway.admin import api as admin
from gateway.backend_start import start_backend
from gateway.http.backend_gate import BackendGate, BackendWatch
from gateway.http import quiet
from gateway.http.guard import GatewayGuard
from gateway.http.outbound import AddressPolicy
from gateway.mcp.server import McpSurface
from gateway.registry.capabilities import Registry
from gateway.registry.cards import CardSecurity
from gateway.registry.liveness import Liveness
from gateway.supervisor import Supervisor
from gateway.tasks.lifetimes import Lifetimes
from gateway.tasks.service import TaskService
from gateway.workers.bridges import Bridges
from gateway.ui import pages as ui
from gateway.ui import session as ui_session

log = logging.getLogger("topicbridge.gateway")
CLOSE_SECONDS, CLOSE_SECONDS_BACKEND_DOWN = 10.0, 1.0


class Gateway:
    """Everything one gateway instance runs. Parts are started in order and closed in reverse,
    then the supervisor (whatever loop is left) and the backend."""

    def __init__(self, settings: dict, backend: Backend | None = None, *,
                 supervisor: Supervisor | None = None) -> None:
        self.settings = settings
        self.options = options = config.with_defaults(settings)["gateway"]
        self.observability = config.with_defaults(settings)["observability"]
        observability.configure(self, self.observability)
        self.supervisor = supervisor or Supervisor()
        self.backend = backend or open_backend(settings)
        self.tasks = TaskService(self.backend, instance_id=options["instance_id"], supervisor=self.supervisor, **{
            k: v for k, v in options.items() if k in ("lease_seconds", "adoption_interval", "channel_idle_seconds",
                                                     "max_tasks_in_flight")})
        self.registry = Registry(self.backend, expiry=options["capability_expiry_seconds"])
        if not options["accept_without_live_worker"]:       # refused at once rather than queued
            self.tasks.availability = Liveness(self.registry).refusal
        self.lifetimes = Lifetimes(self.tasks, timeout_of=self.registry.timeout_of, capability_names=self.registry.names,
                                   timeout=options["task_timeout_seconds"], retention=options["task_retention_seconds"])
        self.bridges = Bridges(self.backend, self.registry, AddressPolicy.from_settings(settings),
                               supervisor=self.supervisor, max_response_bytes=options["max_agent_response_bytes"],
                               lean_call=options["bridge_lean_call"], lean_http=options["bridge_lean_http"])
        self.push = PushService(self.backend, PushSettings.from_settings(settings), supervisor=self.supervisor)
        self.tasks.on_event.append(self.push.on_event)      # the relay publishes push jobs
        self.a2a = A2ASurface(self.tasks, self.registry, self.push, blocking_wait=options["a2a_wait_seconds"],
                              security=CardSecurity.from_settings(settings), card_max_age=options["card_max_age_seconds"])
        self.mcp = McpSurface(self)
        self.a2a.grpc = GrpcSurface.from_settings(self.a2a.handler, settings, self.supervisor)     # None: off
        self._parts: list = [self.tasks, self.registry, self.lifetimes, self.bridges, self.mcp, self.push]
        self.backend_watch = BackendWatch(self.backend, self.supervisor)     # calls fail fast while it is down
        self._parts.append(self.backend_watch)
        self._parts += [self.a2a.grpc] if self.a2a.grpc is not None else []
        if options["demo"]:
            self._parts += demo_agents(self.backend)
        self._started: list = []        # parts with an async close(), in start order
        self.ready = False
        self._backend_started = False

    async def add_part(self, part) -> None:
        """Run `part` (anything with async start() and close()) with the gateway: started with
        the others, at once if the gateway runs already, and closed before the backend."""
        if self.ready:
            await part.start()
            self._started.append(part)
        else:
            self._parts.append(part)

    async def start_backend(self) -> None:
        """Start the backend, retrying while it is unreachable (gateway.backend_start_timeout).
        `topicbridge serve` calls it before serving, so giving up is one line, not a traceback."""
        if not self._backend_started:
            await start_backend(self.backend, self.options["backend_start_timeout"])
            self._backend_started = True

    async def start(self) -> None:
        await self.start_backend()
        try:
            for part in self._parts:
                await part.start()
                self._started.append(part)
            await self.tasks.create_channels()     # the channel idle time, over the workers' default
        except BaseException:       # what did start is closed, and the backend with it
            await self.close()
            raise
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        # A part waiting on a backend that is gone would hold the shutdown for the backend's own
        # timeouts (Kafka: 30 s per consumer): each gets a bound, shorter while it is known down.
        bound = CLOSE_SECONDS_BACKEND_DOWN if self.backend_watch.reason else CLOSE_SECONDS
        while self._started:
            part = self._started.pop()
            await _close_within(part.close(), type(part).__name__, bound)
        await self.supervisor.close()
        self._backend_started = False
        await _close_within(self.backend.close(), "the backend", bound)

    def routes(self) -> list:
        # MCP first: its one path is the busiest the router matches (A2A's SendMessage is answered
        # ahead of the router, LeanSendMessage), and the router tries routes in order
        return [*self.mcp.routes(),
                Route("/healthz", self._health, methods=["GET"]), Route("/readyz", self._ready, methods=["GET"]),
                *admin.routes(self), *observability.routes(self, self.observability), *ui.routes(self), Route("/", ui.root_redirect, methods=["GET"]),
                *self.a2a.routes()]

    def middleware(self) -> list[Middleware]:
        middleware = [*observability.middleware(self.observability),
                      *ui_session.middleware(self),     # a browser's login cookie, for the guard
                      Middleware(GatewayGuard, **GatewayGuard.settings_kwargs(self.settings),
                                 admission=self.tasks.admission),
                      Middleware(BackendGate, watch=self.backend_watch)]
        if self.options["a2a_lean_dispatch"]:
            middleware.append(Middleware(LeanSendMessage, **self.a2a.lean_options()))
        return middleware

    async def _health(self, request: Request) -> JSONResponse:
        health = await self.backend.health()
        return JSONResponse({"ok": health.ok, "backend": health.backend, "detail": health.detail,
                             "instance": self.tasks.instance_id}, status_code=200 if health.ok else 503)

    async def _ready(self, request: Request) -> JSONResponse:
        """200 once every part has started, no background loop is down and the backend answers
        healthy: the signal for a load balancer to send traffic. Else 503 saying what is wrong."""
        health = await self.backend.health()
        down = self.supervisor.down()
        if self.ready and health.ok and not down:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "started": self.ready, "down": down,
                             "backend": {"ok": health.ok, "name": health.backend, "detail": health.detail}},
                            status_code=503)


def demo_agents(backend: Backend) -> list:
    """The native example agents echo and word-stats (gateway/workers/demo.py)."""
    from gateway.workers.demo import workers
    return workers(backend)


async def _close_within(closing, what: str, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await closing
    except TimeoutError:
        log.warning("closing %s took over %g s; left behind", what, seconds)
    except asyncio.CancelledError:
        if asyncio.current_task().cancelling():
            raise
        # not ours: a client library's own task cancelled under it (aiokafka's fetcher on a gone broker)
        log.warning("closing %s was cut short inside its client library", what)
    except Exception as e:  # the other parts and the backend must still close
        log.warning("closing %s failed: %s: %s", what, type(e).__name__, e)


def build_app(settings: dict, backend: Backend | None = None, *, supervisor: Supervisor | None = None) -> Starlette:
    gateway = Gateway(settings, backend, supervisor=supervisor)
    quiet.install()         # a malformed request is one log line at most, never a traceback

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    app = Starlette(routes=gateway.routes(), lifespan=lifespan, middleware=gateway.middleware())
    app.state.gateway = gateway
    return app
