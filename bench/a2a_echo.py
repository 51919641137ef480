"""A2A JSON-RPC `SendMessage` through the gateway to a native echo agent, against baselines.

Each server runs in its own subprocess on uvicorn (uvloop + httptools, one worker) bound to
127.0.0.1 port 0, and is driven by `wrk` (1 thread, --connections, --duration, --latency) with
a Lua script that sets the body and headers:

  bare            a bare Starlette route answering a small JSON object: the HTTP ceiling
  gateway         POST /agents/echo/ `SendMessage` (blocking) through the A2A surface's lean
                  handler, TaskService, the embedded lite engine (commit log in a temporary
                  directory, fsync "batch": the default configuration) and an echo
                  `gateway.worker.Worker` in the same process. Every call is a task envelope on
                  the capability topic and three reply events on its reply channel.
  gateway-memory  the same with the engine in memory (no commit log): the CPU cost of the path
  sdk             the a2a-sdk `DefaultRequestHandler` echo agent (in-memory task store, no
                  messaging at all): what the SDK's own handler machinery costs

`layer_cpu_us_per_call` isolates the A2A layer from the task flow and from HTTP: the same
`SendMessage` is called N times on the ASGI app in this process (no sockets), once through the
gateway's routes with a stand-in TaskService that answers at once (routing, capability gate,
the SDK's JSON-RPC dispatcher and version check, the lean handler, serialization), and once
through the SDK echo agent above; the figure is process CPU time per call.

Before and after each run one request is checked by hand (a COMPLETED task with the echo
artifact). wrk's "Non-2xx or 3xx" count is reported as `errors`. Without wrk (Debian package
`wrk`) an httpx load generator is used and the JSON says so; it saturates before the servers on
2 cores, so its figures are a floor.

    python -m bench.a2a_echo [--duration 6] [--connections 16] [--servers bare,gateway,gateway-memory,sdk]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._agents import echo, sdk_echo_app
from ._http import Child, bare_app, bound_socket, ready, start_uvicorn
from ._util import emit, environment, progress, words

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ("bare", "gateway", "gateway-memory", "sdk")
PATHS = {"bare": "/bare", "gateway": "/agents/echo/", "gateway-memory": "/agents/echo/", "sdk": "/"}
REQUEST = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
           "params": {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hello"}]}}}
HEADERS = {"Content-Type": "application/json", "A2A-Version": "1.0"}


# ------------------------------------------------------------------ servers (child processes)

def _sdk_app():
    return sdk_echo_app("http://127.0.0.1")


def _gateway_app(data_dir: str | None):
    from gateway.app import build_app
    return build_app({"backend": "lite", "lite": {"data_dir": data_dir, "fsync": "batch"}})


async def _serve(kind: str, data_dir: str | None) -> None:
    gateway = kind.startswith("gateway")
    app = _gateway_app(data_dir) if gateway else {"bare": bare_app, "sdk": _sdk_app}[kind]()
    sock = bound_socket()
    serving = await start_uvicorn(app, sock)
    worker = None
    if gateway:
        from gateway.registry.capabilities import Capability
        from gateway.workers.worker import Worker
        instance = app.state.gateway
        worker = Worker(instance.backend, "echo", echo, concurrency=256)
        await worker.start()
        await instance.registry.put(Capability("echo", {"name": "echo", "description": "echoes its input"}))
    ready(port=sock.getsockname()[1])
    await serving
    if worker is not None:
        await worker.close()


def serve_main(kind: str, data_dir: str | None) -> None:
    import uvloop
    uvloop.run(_serve(kind, data_dir))


class Server(Child):
    def __init__(self, kind: str, data_dir: str | None) -> None:
        super().__init__("bench.a2a_echo", "--serve", kind, *(["--data-dir", data_dir] if data_dir else []))
        self.url = self.base_url + PATHS[kind]


# ------------------------------------------------------------------ the A2A layer alone

def _stub_gateway_app():
    """The gateway's A2A routes over a TaskService stand-in whose tasks complete at once."""

    from a2a.types import a2a_pb2
    from starlette.applications import Starlette

    from gateway.a2a.push import PushService
    from gateway.a2a.routes import A2ASurface
    from gateway.registry.capabilities import Capability
    from gateway.tasks.service import Watch

    class Tasks:
        on_event: list = []

        async def submit(self, name, message, metadata=None):
            task = a2a_pb2.Task(id="t" * 32, context_id="c" * 32, history=[message])
            task.status.state = a2a_pb2.TASK_STATE_SUBMITTED
            watch = Watch(task.id)
            for state in (a2a_pb2.TASK_STATE_WORKING, a2a_pb2.TASK_STATE_COMPLETED):
                update = a2a_pb2.TaskStatusUpdateEvent(task_id=task.id, context_id=task.context_id)
                update.status.state = state
                watch.push(a2a_pb2.StreamResponse(status_update=update))
                if state == a2a_pb2.TASK_STATE_WORKING:
                    artifact = a2a_pb2.TaskArtifactUpdateEvent(task_id=task.id, context_id=task.context_id)
                    artifact.artifact.artifact_id, artifact.artifact.name = "a", "echo"
                    artifact.artifact.parts.add(text="echo: hello")
                    watch.push(a2a_pb2.StreamResponse(artifact_update=artifact))
            watch.push(None)
            return task, watch

    class Registry:
        async def get(self, name):
            return Capability(name, {})

    surface = A2ASurface(Tasks(), Registry(), PushService(None), blocking_wait=None)
    return Starlette(routes=surface.routes())


async def _asgi_cpu_per_call(app, path: str, calls: int) -> float:
    body = json.dumps(REQUEST).encode()
    scope = {"type": "http", "http_version": "1.1", "method": "POST", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "scheme": "http", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 1),
             "headers": [(b"host", b"bench"), (b"content-type", b"application/json"), (b"a2a-version", b"1.0"),
                         (b"content-length", str(len(body)).encode())]}

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def call() -> list:
        sent = []

        async def send(message):
            sent.append(message)
        await app(dict(scope), receive, send)
        return sent

    answer = json.loads((await call())[1]["body"])
    if answer.get("result", {}).get("task", {}).get("status", {}).get("state") != "TASK_STATE_COMPLETED":
        raise RuntimeError(f"unexpected answer {json.dumps(answer)[:300]}")
    for _ in range(calls // 10):
        await call()
    t0 = time.process_time()
    for _ in range(calls):
        await call()
    return round((time.process_time() - t0) / calls * 1e6, 1)


def layer_costs(calls: int) -> dict:
    async def measure():
        return {"gateway_a2a_layer": await _asgi_cpu_per_call(_stub_gateway_app(), PATHS["gateway"], calls),
                "sdk_default_handler": await _asgi_cpu_per_call(_sdk_app(), PATHS["sdk"], calls)}
    costs = asyncio.run(measure())
    costs["calls"] = calls
    return costs


# ------------------------------------------------------------------ load

def check(kind: str, url: str) -> None:
    import httpx
    answer = httpx.post(url, json=REQUEST, headers=HEADERS, timeout=10).json()
    if kind == "bare":
        return
    task = answer.get("result", {}).get("task", {})
    state = task.get("status", {}).get("state")
    text = [p.get("text") for a in task.get("artifacts", []) for p in a.get("parts", [])]
    if state != "TASK_STATE_COMPLETED" or text != ["echo: hello"]:
        raise RuntimeError(f"{kind}: unexpected answer {json.dumps(answer)[:500]}")


def run_wrk(url: str, connections: int, duration: float) -> dict:
    lua = "wrk.method = 'POST'\nwrk.body = [[%s]]\n%s\n" % (
        json.dumps(REQUEST), "\n".join(f"wrk.headers['{k}'] = '{v}'" for k, v in HEADERS.items()))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "-s", f.name, url],
                             capture_output=True, text=True, timeout=duration + 60).stdout
    finally:
        os.unlink(f.name)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    latency = {p: _ms(v, unit) for p, v, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"requests_per_s": round(float(rps.group(1)), 1), "requests": int(total.group(1)) if total else None,
            "latency_ms": {"p50": latency.get("50"), "p90": latency.get("90"), "p99": latency.get("99")},
            "errors": int(errors.group(1)) if errors else 0,
            **({"socket_errors": socket_errors.group(1).strip()} if socket_errors else {})}


def _ms(value: str, unit: str) -> float:
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)


def run_httpx(url: str, connections: int, duration: float) -> dict:
    import httpx

    async def load() -> tuple[int, int, list[float]]:
        done, errors, latencies = 0, 0, []
        deadline = time.monotonic() + duration
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=connections), timeout=30) as client:
            async def one():
                nonlocal done, errors
                while time.monotonic() < deadline:
                    t0 = time.perf_counter()
                    response = await client.post(url, json=REQUEST, headers=HEADERS)
                    latencies.append((time.perf_counter() - t0) * 1000)
                    done += 1
                    errors += not response.is_success
            await asyncio.gather(*(one() for _ in range(connections)))
        return done, errors, latencies

    t0 = time.monotonic()
    done, errors, latencies = asyncio.run(load())
    latencies.sort()
    pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 3) if latencies else None
    return {"requests_per_s": round(done / (time.monotonic() - t0), 1), "requests": done,
            "latency_ms": {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99)}, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per server (default 6)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--servers", type=words(SERVERS), default=list(SERVERS))
    parser.add_argument("--layer-calls", type=int, default=3000, help="in-process calls per layer measure")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_main(args.serve, args.data_dir)
        return 0

    tool = "wrk" if shutil.which("wrk") else "httpx"
    results = {}
    with tempfile.TemporaryDirectory(prefix="a2a-echo-") as tmp:
        for kind in args.servers:
            progress(f"{kind}: starting")
            data_dir = str(Path(tmp) / kind) if kind == "gateway" else None
            server = Server(kind, data_dir)
            try:
                check(kind, server.url)
                progress(f"{kind}: {tool} -c{args.connections} for {args.duration:g}s on {server.url}")
                load = run_wrk if tool == "wrk" else run_httpx
                results[kind] = load(server.url, args.connections, args.duration)
                check(kind, server.url)
            except Exception as e:     # one server failing must not hide the others' figures
                results[kind] = {"error": f"{type(e).__name__}: {e}"}
            finally:
                server.stop()
    progress(f"A2A layer alone: {args.layer_calls} in-process calls each")
    layer = layer_costs(args.layer_calls)
    rate = {k: v.get("requests_per_s") for k, v in results.items()}
    out = {"bench": "a2a_echo", "load_generator": tool,
           **({"note": "wrk not found: httpx load generator, which saturates first on 2 cores"}
              if tool == "httpx" else {}),
           "connections": args.connections, "duration_s": args.duration,
           "results": results, "layer_cpu_us_per_call": layer}
    for kind in ("gateway", "gateway-memory"):
        if rate.get(kind) and rate.get("bare"):
            out[f"{kind}_vs_bare"] = round(rate[kind] / rate["bare"], 3)
        if rate.get(kind) and rate.get("sdk"):
            out[f"{kind}_vs_sdk_default_handler"] = round(rate[kind] / rate["sdk"], 2)
    out["sdk_handler_vs_gateway_layer_cpu"] = round(layer["sdk_default_handler"] / layer["gateway_a2a_layer"], 1)
    out["environment"] = environment()
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
