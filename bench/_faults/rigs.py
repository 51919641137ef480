"""The systems a fault kind runs against, each an async context manager with a `caller`:

    InProc   the gateway in this process (uvicorn on a free port) over a FaultyBackend around the
             real backend: the embedded engine in a data directory, a remote `topicbridge
             engine` process, or a Kafka / RocketMQ broker. The demo agents and a slow native
             worker ("slow-echo") run on the same faulty backend; A2A agents are processes.
    Procs    `topicbridge serve --demo` as a process, on its embedded engine or on a remote
             `topicbridge engine` process: what the signal, disk and log kinds kill and damage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from pathlib import Path

from .client import Caller
from .faulty import FaultyBackend
from .procs import Proc, agent_proc, engine_proc, free_port, gateway_proc, worker_proc

SLOW = "slow-echo"
GATED = "gated-echo"


class InProc:
    def __init__(self, backend: str, workdir: Path, *, slow_delay: float = 1.0, address: str | None = None,
                 data_dir: Path | None = None, gateway: dict | None = None) -> None:
        self.kind = backend
        self.gateway_settings = gateway or {}
        self.workdir = Path(workdir)
        self.slow_delay = slow_delay
        self.address = address              # the broker, for kafka / rocketmq
        self.data_dir = data_dir or self.workdir / "data"
        self.engine: Proc | None = None
        self.agents: list[Proc] = []
        self.gate = asyncio.Event()         # releases the gated worker's tasks

    def settings(self) -> dict:
        gateway = {"host": "127.0.0.1", "demo": True, **self.gateway_settings}
        if self.kind == "embedded":
            return {"backend": "lite", "lite": {"data_dir": str(self.data_dir)}, "gateway": gateway}
        if self.kind == "remote":
            return {"backend": "lite", "lite": {"mode": "remote", "target": self.target}, "gateway": gateway}
        if self.kind == "kafka":
            return {"backend": "kafka", "kafka": {"bootstrap_servers": self.address}, "gateway": gateway}
        endpoint, admin = self.address.split("|")
        return {"backend": "rocketmq", "rocketmq": {"endpoint": endpoint, "admin": admin}, "gateway": gateway}

    async def __aenter__(self) -> "InProc":
        import uvicorn

        from adapters.factory import open_backend
        from gateway.app import build_app
        from gateway.workers.worker import Worker

        if self.kind == "remote":
            self.engine = engine_proc(self.workdir / "engine", free_port())
            await asyncio.to_thread(self.engine.start)
            self.target = f"127.0.0.1:{self.engine.args[self.engine.args.index('--port') + 1]}"
        settings = self.settings()
        self.backend = FaultyBackend(open_backend(settings))
        self.faults = self.backend.faults
        self.app = build_app(settings, self.backend)
        self.gateway = self.app.state.gateway
        port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.serving = asyncio.get_running_loop().create_task(self.server.serve())
        self.caller = Caller(f"http://127.0.0.1:{port}")
        await self.caller.until_ready()
        for name, handler, concurrency in ((SLOW, self._slow, 64), (GATED, self._gated, 1)):
            worker = Worker(self.backend, name, handler, concurrency=concurrency, invisible=5.0,
                            card={"name": name, "description": f"{name} for the fault suite"})
            await self.gateway.add_part(worker)  # started now, closed by the gateway before its backend
        return self

    async def _slow(self, task) -> None:
        await task.working("on it")
        await asyncio.sleep(self.slow_delay)     # sleep-ok: the work a fault interrupts
        await task.complete(text=f"echo: {task.text}")

    async def _gated(self, task) -> None:
        await self.gate.wait()
        await task.complete(text=f"echo: {task.text}")

    async def agent(self, mode: str, delay: float = 1.0) -> tuple[Proc, str]:
        """Start an A2A agent process and register it with the gateway's bridges; (process, name)."""
        proc = agent_proc(mode, delay)
        info = json.loads((await asyncio.to_thread(proc.start)).group(1))
        self.agents.append(proc)
        name = f"agent-{mode}"
        await self.gateway.bridges.register(f"http://127.0.0.1:{info['port']}", name=name)
        return proc, name

    async def __aexit__(self, *exc) -> None:
        await self.caller.aclose()
        self.gate.set()
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(20):
                await self.serving
        for proc in [*self.agents, *([self.engine] if self.engine else [])]:
            await asyncio.to_thread(proc.kill)


class Procs:
    def __init__(self, backend: str, workdir: Path, *, env: dict | None = None,
                 engine_settings: dict | None = None) -> None:
        self.kind = backend
        self.workdir = Path(workdir)
        self.env = env or {}
        self.engine_settings = engine_settings or {}
        self.engine: Proc | None = None
        self.worker: Proc | None = None
        self.port = free_port()

    @property
    def data_dir(self) -> Path:
        """Where the commit log lives: the gateway's (embedded) or the engine's (remote)."""
        return self.workdir / ("engine" if self.kind == "remote" else "data")

    async def __aenter__(self) -> "Procs":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        target = None
        if self.kind == "remote":
            self.engine = engine_proc(self.data_dir, free_port(), **self.engine_settings)
            await asyncio.to_thread(self.engine.start)
            target = self.target
        self.gateway = gateway_proc(self.port, None if target else self.data_dir, engine=target, env=self.env)
        await asyncio.to_thread(self.gateway.start)
        self.caller = Caller(f"http://127.0.0.1:{self.port}")
        await self.caller.until_ready()
        return self

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.engine.args[self.engine.args.index('--port') + 1]}"

    async def restart(self, proc: Proc, sig: int) -> None:
        """End `proc` with `sig` and start it again (same port, same data directory)."""
        await asyncio.to_thread(proc.signal, sig)
        await asyncio.to_thread(proc.start)
        if proc is self.gateway:
            await self.caller.until_ready()

    async def start_worker(self, capability: str, delay: float) -> Proc:
        self.worker = worker_proc(self.target, capability, delay)
        await asyncio.to_thread(self.worker.start)
        return self.worker

    async def __aexit__(self, *exc) -> None:
        await self.caller.aclose()
        for proc in (self.worker, self.gateway, self.engine):
            if proc is not None:
                await asyncio.to_thread(proc.kill)


def clean(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
