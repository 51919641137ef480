"""HTTP pieces shared by the benchmarks that drive servers over loopback: a server child process
that prints its port, uvicorn on a port-0 socket, the bare Starlette ceiling, and `wrk` with a
Lua script that sets the body and headers and prints wrk's own histogram as JSON."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = %(body)s
%(headers)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "errors": %%d}\\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def bare_app():
    """A bare Starlette JSON route on the same stack as the servers: the HTTP ceiling."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def bare(request):
        await request.body()
        return JSONResponse({"jsonrpc": "2.0", "id": 1, "result": {"ok": True}})

    return Starlette(routes=[Route("/bare", bare, methods=["POST"])])


def bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def start_uvicorn(app, sock: socket.socket, options: dict | None = None) -> asyncio.Task:
    """Serve `app` on `sock` (uvloop + httptools, one worker); return once it accepts. `options`:
    uvicorn.Config keywords over these (a gateway passes `topicbridge serve`'s)."""
    import uvicorn

    config = {"loop": "uvloop", "http": "httptools", "log_level": "warning", "access_log": False,
              "lifespan": "on", **(options or {})}
    server = uvicorn.Server(uvicorn.Config(app, **config))
    serving = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            serving.result()
            raise SystemExit("uvicorn stopped before it started")
        await asyncio.sleep(0.01)   # sleep-ok: uvicorn has no started event
    return serving


_WATCH_PARENT = "TB_BENCH_CHILD_OF_PIPE"


def ready(**info) -> None:
    """The child's one line to its parent: READY and a JSON object (port, names, ...). A child of
    `Child` also ends (SIGTERM to itself) when its stdin closes: its parent is gone, even killed,
    and a server left behind would load every later bench on the machine."""
    print("READY " + json.dumps(info), flush=True)
    if os.environ.get(_WATCH_PARENT) == "1":
        import threading

        def watch() -> None:
            sys.stdin.buffer.read()         # returns at EOF: the parent's end of the pipe closed
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class Child:
    """A server in its own process (`python -m <module> <args>`), which prints `ready(...)`."""

    def __init__(self, module: str, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, stdout=subprocess.PIPE,
                                        stdin=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONPATH": str(ROOT), _WATCH_PARENT: "1"})
        line = self.process.stdout.readline()
        if not line.startswith("READY "):
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"{module} {' '.join(args)} did not start (got {line!r})")
        self.info = json.loads(line[len("READY "):])
        self.base_url = f"http://127.0.0.1:{self.info['port']}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wrk(url: str, body: dict, headers: dict, connections: int, seconds: float) -> dict:
    """`wrk -t1` for `seconds` with `connections` connections; rate, latency percentiles, errors
    (transport errors and non-2xx answers)."""
    lines = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_SCRIPT % {"body": json.dumps(json.dumps(body)), "headers": lines})
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                              "-s", f.name, url], capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(f.name)
    found = re.search(r"^RESULT (.*)$", out.stdout, re.M)
    if not found:
        raise RuntimeError(f"wrk gave no result:\n{out.stdout}\n{out.stderr}")
    raw = json.loads(found.group(1))
    return {"per_s": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
            "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
            "requests": raw["requests"], "errors": raw["errors"]}
