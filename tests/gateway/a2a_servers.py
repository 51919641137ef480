"""Real servers for the A2A tests: gateway processes over a shared `topicbridge engine`, native
fixture agents served by the worker SDK, and a push-notification receiver.

    engine = EngineProcess(tmp / "engine").start()           # "127.0.0.1:PORT"
    gw = GatewayProcess(engine, push={...}).start()           # uvicorn in a child process
    async with Agents(engine) as agents: ...                  # echo, gate and slow capabilities
    async with PushReceiver() as receiver: ...                # Starlette on uvicorn, this loop

The fixtures on them (engine, gateways, agents, receiver) are in conftest.py.

A gateway child is `python -m tests.gateway.a2a_servers --settings JSON`: `build_app` on the
remote lite backend, served by uvicorn on 127.0.0.1 port 0; it prints `READY <port>` once the
app's lifespan has started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from a2a.client import ClientConfig, create_client
from a2a.client.card_resolver import A2ACardResolver
from a2a.types import a2a_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.lite_remote import RemoteLiteBackend
from gateway.registry.capabilities import Capability, Registry
from gateway.workers.worker import Worker
from tests.gateway.serving import Server

ROOT = Path(__file__).resolve().parents[2]
# Push settings of the shared gateways: quick retries, and a job held by a gateway that died
# comes back after 2 s.
FAST_PUSH = {"backoff_base": 0.05, "backoff_max": 0.2, "max_attempts": 3, "invisible": 2.0}

ECHO_CARD = {"name": "Echo", "description": "Repeats what it is told.", "version": "2.1.0",
             "skills": [{"id": "echo", "name": "echo", "description": "echo the text back", "tags": ["text"],
                         "examples": ["say hello"]}],
             "supportedInterfaces": [{"url": "http://agent.invalid/", "protocolBinding": "JSONRPC",
                                      "protocolVersion": "1.0"}]}


@contextlib.asynccontextmanager
async def a2a_client(base: str, name: str, *, binding: str = "JSONRPC", version: str = "1.0",
                     streaming: bool = False):
    """The official SDK client for capability `name`, from its card at the gateway, limited to
    the interface of `binding` and protocol `version` (a 0.3 interface gets the SDK's 0.3 client)."""
    async with httpx.AsyncClient() as http:
        card = await A2ACardResolver(http, f"{base}/agents/{name}/").get_agent_card()
    chosen = [i for i in card.supported_interfaces if i.protocol_binding == binding and i.protocol_version == version]
    del card.supported_interfaces[:]
    card.supported_interfaces.extend(chosen)
    client = await create_client(card, ClientConfig(streaming=streaming, supported_protocol_bindings=[binding]))
    try:
        yield client
    finally:
        await client.close()


def user_message(text: str, context_id: str = "") -> a2a_pb2.Message:
    return a2a_pb2.Message(message_id=os.urandom(8).hex(), role=a2a_pb2.ROLE_USER, context_id=context_id,
                           parts=[a2a_pb2.Part(text=text)])


def send_request(text: str, *, context_id: str = "", return_immediately: bool = False,
                 push: a2a_pb2.TaskPushNotificationConfig | None = None) -> a2a_pb2.SendMessageRequest:
    request = a2a_pb2.SendMessageRequest(message=user_message(text, context_id))
    request.configuration.return_immediately = return_immediately
    if push is not None:
        request.configuration.task_push_notification_config.CopyFrom(push)
    return request


async def collect(stream, timeout: float = 15.0) -> list[a2a_pb2.StreamResponse]:
    async with asyncio.timeout(timeout):
        return [event async for event in stream]


def task_id_of(event: a2a_pb2.StreamResponse) -> str:
    return event.task.id or event.status_update.task_id or event.artifact_update.task_id


def state_of(event: a2a_pb2.StreamResponse) -> int:
    return event.task.status.state if event.HasField("task") else event.status_update.status.state


# ------------------------------------------------------------------ gateway processes

class GatewayProcess:
    def __init__(self, engine_target: str, *, push: dict | None = None, start_timeout: float = 60.0) -> None:
        self.settings = {"backend": "lite", "lite": {"mode": "remote", "target": engine_target},
                         "push": push or {}}
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.url = ""
        self._lines: list[str] = []

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def start(self) -> str:
        self.spawn()
        return self.wait_ready()

    def spawn(self) -> None:
        self.url = ""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.gateway.a2a_servers", "--settings", json.dumps(self.settings)],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._ready = threading.Event()
        threading.Thread(target=self._read, args=(self.process, self._ready), daemon=True).start()

    def wait_ready(self) -> str:
        self._ready.wait(self.start_timeout)
        if not self.url:
            self.kill()
            raise RuntimeError(f"the gateway did not start within {self.start_timeout} s:\n{self.output}")
        return self.url

    def _read(self, process: subprocess.Popen, ready: threading.Event) -> None:
        with process.stdout:
            for line in process.stdout:
                self._lines.append(line)
                if line.startswith("READY ") and not ready.is_set():
                    self.url = f"http://127.0.0.1:{int(line.split()[1])}"
                    ready.set()
        ready.set()

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def _serve_gateway(settings: dict) -> None:
    from gateway.app import build_app

    server = Server()
    await server.start(build_app(settings), lifespan="on", timeout_graceful_shutdown=None)
    print(f"READY {server.port}", flush=True)
    await server.serve_until_stopped()


# ------------------------------------------------------------------ fixture agents

class Agents:
    """Native capabilities in this process, on the shared engine:
    echo   answers "echo: <text>" as an artifact and completes;
    gate   works until the test opens the gate named by the message text (`gate(name)`);
    slow   works until it is canceled."""

    def __init__(self, engine_target: str) -> None:
        self.backend = RemoteLiteBackend(engine_target)
        self.registry = Registry(self.backend)
        self._gates: dict[str, asyncio.Event] = {}
        self._workers: list[Worker] = []

    def gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    async def __aenter__(self) -> "Agents":
        await self.backend.start()
        await self.registry.start()
        for name, handler, card in (("echo", _echo, ECHO_CARD), ("gate", self._gated, {"name": "Gate"}),
                                    ("slow", _slow, {"name": "Slow", "description": "never finishes"})):
            worker = Worker(self.backend, name, handler)
            await worker.start()
            self._workers.append(worker)
            await self.registry.put(Capability(name, card))
        return self

    async def __aexit__(self, *exc) -> None:
        for worker in self._workers:
            await worker.close()
        await self.backend.close()

    async def _gated(self, task) -> None:
        await self.gate(task.text).wait()
        await task.complete(f"released {task.text}")


async def _echo(task) -> None:
    await task.artifact(f"echo: {task.text}", name="echo")
    await task.complete()


async def _slow(task) -> None:
    await asyncio.Event().wait()


# ------------------------------------------------------------------ push receiver

class PushReceiver:
    """Records every POST under /<path>: `tried` every body, `received` (headers, body) of the
    accepted ones. `fail(path, n)` makes the next n POSTs to that path answer 503."""

    def __init__(self) -> None:
        self.received: dict[str, list[tuple[dict, dict]]] = {}
        self.tried: dict[str, list[dict]] = {}
        self._failures: dict[str, int] = {}
        self._changed = asyncio.Condition()
        self._server = Server()
        self.base = self._server.base_url

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    def fail(self, path: str, times: int) -> None:
        self._failures[path] = times

    async def wait_for(self, predicate, timeout: float = 15.0):
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))
        return predicate(self)

    async def _receive(self, request: Request) -> JSONResponse:
        path = request.path_params["path"]
        body = await request.json()
        async with self._changed:
            self.tried.setdefault(path, []).append(body)
            if self._failures.get(path, 0) > 0:
                self._failures[path] -= 1
                self._changed.notify_all()
                return JSONResponse({"error": "try again"}, status_code=503)
            self.received.setdefault(path, []).append((dict(request.headers), body))
            self._changed.notify_all()
        return JSONResponse({})

    async def __aenter__(self) -> "PushReceiver":
        await self._server.start(Starlette(routes=[Route("/{path}", self._receive, methods=["POST"])]))
        return self

    async def __aexit__(self, *exc) -> None:
        await self._server.stop()


def states(bodies: list[dict]) -> list[str]:
    """The task states in push notification bodies (StreamResponse), in arrival order."""
    out = []
    for body in bodies:
        state = (body.get("statusUpdate") or body.get("task") or {}).get("status", {}).get("state")
        if state:
            out.append(state)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve a gateway for the A2A tests")
    parser.add_argument("--settings", required=True, help="gateway settings as JSON")
    args = parser.parse_args(argv)
    asyncio.run(_serve_gateway(json.loads(args.settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
