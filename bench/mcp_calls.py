"""MCP `tools/call` through the gateway, against the SDK's low-level server on the same stack.

    python -m bench.mcp_calls [--duration 6] [--concurrency 1,64]

Two servers, each in its own process on 127.0.0.1 (uvicorn with uvloop/httptools, the SDK's
streamable HTTP session manager configured as the gateway configures it):

- gateway: `topicbridge` on the embedded engine with one native capability `echo` (a worker SDK
  agent in the gateway's process): every call is a task envelope on the capability topic, a
  worker turn, reply events on the task's reply channel, the relay, and the MCP result (served
  by the gateway's lean tools/call path, gateway/mcp/lean.py; bench.mcp_e2e compares it with
  the SDK-only path).
- baseline: `mcp.server.Server` with one trivial tool answering at once (no backend at all).

Also measured in the same run, in this process: the task flow alone (TaskService.submit -> worker
-> reply events -> relay, no HTTP, no MCP), the floor the gateway's MCP calls stand on.

Load: `wrk` (one thread; Python clients saturate first on 2 cores) sends 2026-07-28 requests
(stateless: every POST stands alone, so no session to share), with `concurrency` connections.
Latency percentiles come from wrk's own histogram. One JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import _http
from ._util import emit, environment, progress, sizes

ROOT = Path(__file__).resolve().parents[1]
VERSION = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": VERSION,
            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}
CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "hi"}, "_meta": ENVELOPE}}
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
           "MCP-Protocol-Version": VERSION, "Mcp-Method": "tools/call", "Mcp-Name": "echo"}

# ---------------------------------------------------------------- the two servers (child processes)

async def serve_gateway(port: int) -> None:
    import uvicorn

    from gateway.app import build_app
    from gateway.workers.worker import Worker

    settings = {"backend": "lite", "lite": {"data_dir": None}, "gateway": {"host": "127.0.0.1"}}
    app = build_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning",
                                           access_log=False))
    serving = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)

    async def echo(task):
        await task.complete(f"echo: {task.text}")

    worker = Worker(app.state.gateway.backend, "echo", echo, concurrency=256,
                    card={"name": "Echo", "description": "Echoes the message."})
    await worker.start()
    print("READY", flush=True)
    await serving


async def serve_baseline(port: int) -> None:
    import contextlib

    import uvicorn
    from mcp.server import Server
    from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.applications import Starlette
    from starlette.routing import Route

    tool = {"name": "echo", "description": "Echoes the message.",
            "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}}}

    async def list_tools(ctx, params):
        return {"resultType": "complete", "tools": [tool]}

    async def call_tool(ctx, params):
        return {"resultType": "complete", "content": [{"type": "text", "text": f"echo: {params.arguments['message']}"}]}

    server = Server("baseline", on_list_tools=list_tools, on_call_tool=call_tool,
                    get_tool_input_schema=lambda name: tool["inputSchema"])
    manager = StreamableHTTPSessionManager(app=server, json_response=False, stateless=False,
                                           security_settings=TransportSecuritySettings(
                                               enable_dns_rebinding_protection=False))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with manager.run():
            yield

    app = Starlette(routes=[Route("/mcp", StreamableHTTPASGIApp(manager))], lifespan=lifespan)
    server_ = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning",
                                            access_log=False))
    serving = asyncio.get_running_loop().create_task(server_.serve())
    while not server_.started:
        await asyncio.sleep(0.01)
    print("READY", flush=True)
    await serving


async def task_flow(concurrency: list[int], seconds: float) -> dict:
    """The floor under the MCP layer: the same task through TaskService and a worker, no HTTP."""
    from a2a.types import a2a_pb2

    from adapters.factory import open_backend
    from gateway.tasks.service import TaskService
    from gateway.workers.worker import Worker

    backend = open_backend({"backend": "lite", "lite": {"data_dir": None}})
    await backend.start()
    service = TaskService(backend)
    await service.start()

    async def echo(task):
        await task.complete(f"echo: {task.text}")

    worker = Worker(backend, "echo", echo, concurrency=256)
    await worker.start()

    async def one() -> float:
        started = time.perf_counter()
        _, watch = await service.submit("echo", a2a_pb2.Message(message_id=os.urandom(8).hex(),
                                                                 parts=[a2a_pb2.Part(text="hi")]))
        async for _ in watch.events():
            pass
        return time.perf_counter() - started

    out = {}
    try:
        for c in concurrency:
            progress(f"task flow: {c} in flight, {seconds} s")
            latencies: list[float] = []
            deadline = time.perf_counter() + seconds

            async def caller():
                while time.perf_counter() < deadline:
                    latencies.append(await one())

            started = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(c)))
            elapsed = time.perf_counter() - started
            latencies.sort()
            out[f"c{c}"] = {"tasks_per_s": round(len(latencies) / elapsed, 1),
                            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
                            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3), "tasks": len(latencies)}
    finally:
        await worker.close()
        await service.close()
        await backend.close()
    return out


# ---------------------------------------------------------------- the driver

def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    child = subprocess.Popen([sys.executable, "-m", "bench.mcp_calls", "--serve", kind, "--port", str(port)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = child.stdout.readline()
    if line.strip() != "READY":
        child.kill()
        raise RuntimeError(f"the {kind} server did not start: {line}{child.stderr.read()}")
    return child, f"http://127.0.0.1:{port}/mcp"


def check_call(url: str) -> None:
    """One call first: wrk counts HTTP errors only, so make sure the call really succeeds."""
    import httpx
    response = httpx.post(url, json=CALL, headers=HEADERS, timeout=10)
    body = response.text
    result = json.loads(body[body.index("{"):].splitlines()[0]) if body.startswith("event") else response.json()
    if response.status_code != 200 or result.get("result", {}).get("content", [{}])[0].get("text") != "echo: hi":
        raise RuntimeError(f"the call failed ({response.status_code}): {body[:500]}")


def wrk(url: str, connections: int, seconds: float) -> dict:
    figures = _http.wrk(url, CALL, HEADERS, connections, seconds)
    return {"calls_per_s": figures["per_s"], "p50_ms": figures["p50_ms"], "p90_ms": figures["p90_ms"],
            "p99_ms": figures["p99_ms"], "calls": figures["requests"], "errors": figures["errors"]}


def measure(kind: str, concurrency: list[int], seconds: float) -> dict:
    child, url = start(kind)
    try:
        check_call(url)
        wrk(url, max(concurrency), min(2.0, seconds))                # warm up
        out = {}
        for c in concurrency:
            progress(f"{kind}: {c} connection(s), {seconds} s")
            out[f"c{c}"] = wrk(url, c, seconds)
        return out
    finally:
        child.terminate()
        child.wait(10)


def _run(coro):
    """uvloop where installed (uvicorn[standard] brings it), as the servers use."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=sizes, default=[1, 64])
    parser.add_argument("--serve", choices=["gateway", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        import logging
        logging.basicConfig(level=logging.WARNING)
        _run((serve_gateway if args.serve == "gateway" else serve_baseline)(args.port))
        return 0
    if shutil.which("wrk") is None:
        print("bench.mcp_calls needs wrk (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    started = time.time()
    gateway = measure("gateway", args.concurrency, args.duration)
    baseline = measure("baseline", args.concurrency, args.duration)
    floor = _run(task_flow(args.concurrency, args.duration))
    top = f"c{max(args.concurrency)}"
    one = f"c{min(args.concurrency)}"
    emit({"bench": "mcp_calls", "what": "tools/call, protocol 2026-07-28, streamable HTTP, one native capability",
          "load_generator": "wrk -t1", "duration_s_per_point": args.duration, "environment": environment(),
          "gateway": gateway, "baseline_sdk_lowlevel_server": baseline,
          "task_flow_without_mcp": floor,
          f"throughput_ratio_{top}": round(gateway[top]["calls_per_s"] / baseline[top]["calls_per_s"], 3),
          f"overhead_ms_p50_{one}": round(gateway[one]["p50_ms"] - baseline[one]["p50_ms"], 3),
          "wall_s": round(time.time() - started, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
