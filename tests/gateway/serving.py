"""Real HTTP servers for the tests, in this event loop on 127.0.0.1 and a free port.

    async with running_app(app) as server: ...            # any ASGI app: server.base_url
    async with running_gateway(settings) as gw: ...       # build_app(settings), lifespan on:
                                                          # gw.http (httpx, base_url set), gw.gateway,
                                                          # gw.base, gw.url (its MCP endpoint), gw.port

Every test that talks to an in-process gateway over HTTP starts it through `running_gateway`;
agents and receivers go through `running_app`. (Gateways in child processes, for the tests that
kill one: a2a_servers.GatewayProcess, which serves with `Server` too.)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

import httpx
import uvicorn

from gateway.app import build_app

START_TIMEOUT = 15.0


class Server:
    """An ASGI app on 127.0.0.1:<free port> in this event loop."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None

    async def start(self, app, *, lifespan: str = "off", **uvicorn_options) -> None:
        options = {"log_level": "warning", "timeout_graceful_shutdown": 1, **uvicorn_options}
        self._lifespan = lifespan
        self._server = uvicorn.Server(uvicorn.Config(app, lifespan=lifespan, **options))
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[self.sock]))
        async with asyncio.timeout(START_TIMEOUT):
            while not self._server.started:
                if self._task.done():
                    self._task.result()
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)  # sleep-ok: uvicorn has no started event; bounded above

    async def serve_until_stopped(self) -> None:
        await self._task

    async def stop(self) -> None:
        if self._server is None:
            self.sock.close()
            return
        self._server.should_exit = True
        self._server.force_exit = self._lifespan == "off"     # force_exit would skip the lifespan's shutdown
        with contextlib.suppress(Exception):
            async with asyncio.timeout(START_TIMEOUT):
                await self._task
        self.sock.close()


@contextlib.asynccontextmanager
async def running_app(app, *, lifespan: str = "off", **uvicorn_options):
    server = Server()
    await server.start(app, lifespan=lifespan, **uvicorn_options)
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class RunningGateway:
    app: object
    server: Server
    http: httpx.AsyncClient

    @property
    def gateway(self):
        return self.app.state.gateway

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def base(self) -> str:
        return self.server.base_url

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"


@contextlib.asynccontextmanager
async def running_gateway(settings: dict, *, client_timeout: float = 10, **uvicorn_options):
    """`build_app(settings)` served with its lifespan, and an httpx client on it."""
    app = build_app(settings)
    async with running_app(app, lifespan="on", **uvicorn_options) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=client_timeout) as http:
            yield RunningGateway(app, server, http)
