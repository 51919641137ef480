"""MCP `tools/call` end to end: through the gateway to a native capability and to an A2A agent
registered by URL, next to the A2A `SendMessage` figures of bench.gateway_e2e measured on the
same servers in the same run.

    python -m bench.mcp_e2e --backend lite [--duration 5] [--concurrency 1,64]

The servers are bench.gateway_e2e's (bare route, a2a-sdk echo agent, gateway with the native
`echo` worker and the agent registered as `remote-echo`), plus a second gateway of this module's
(`sdk-gateway`: the same settings, its own engine and `echo` worker, `mcp_lean_dispatch = false`)
that is up while the MCP targets run. Targets, each driven by `wrk -t1` with a Lua body
(protocol 2026-07-28, stateless POSTs) at every concurrency, taking turns at each concurrency:

  native      tools/call echo          gateway -> lite engine -> worker -> reply events -> MCP result,
                                       answered by the lean path (gateway/mcp/lean.py)
  native_sdk  tools/call echo          the same on the SDK-only gateway: the SDK's session manager
                                       and low-level server answer every request
  bridged     tools/call remote-echo   the same task through the bridge to the agent over HTTP

Every target answers one checked call before and after its load. One JSON object on stdout;
`mcp_lean_vs_sdk_native_<c>` is native over native_sdk calls/s at the highest concurrency;
`mcp_native_p99_over_p50_<c>` is the lean path's tail at the lowest one.

Warm-up and order (`--warmup-order`). By default each point is warmed right before it, at its
own concurrency, so no point starts while its server still works off an earlier, heavier load.
wrk ends a run by closing its connections with calls in flight, and the gateway cancels each of
those tasks; after a 64-connection burst on `bridged` that takes the gateway seconds (each
cancel asks the agent for its task list, then cancels it: Bridge._cancel_remote), and the native
tool is served by the same process. `upfront` is the old order: every target warmed at the
highest concurrency first, so the native c1 point began right after the bridged burst and its
tail was that drain (p50 5.9 ms, p99 363 ms in one sitting, while the SDK path, a process of its
own, had 2.0x). A warm-up's own drain would still fall into the point after it (the bridged c64
point: 21 calls/s, its ready call 3.5 s, in one sitting), so before each point the bench waits
until the gateway follows no task (`topicbridge_tasks_in_flight` in its /metrics): `settle_ms`.
Each point's `ready_call_ms` is one checked call made just before wrk starts: hundreds of ms
there mean the server was still busy when the point began.

What else sets the c1 tail: per point, `loop_cpu_us_per_call` and `loop_runq_wait_us_per_call`
are the serving process's event-loop thread's CPU and its wait for a core (Linux schedstat). On
this shared 2-core machine under load (5-20) that wait was a third to a half of a call's median
time and most of every slow call; the profile of the slow calls found nothing else of ours (no
loop stall on CPU; at c1 the gateway's GC thresholds leave at most one young collection in 10 s)
besides slow fdatasyncs on the durable path (100-250 ms each while other processes write to the
same disk). A later probe (per call inside the lean path: wall time, the loop thread's CPU and
run-queue wait from schedstat, gc callbacks, fdatasync timings; 950 calls at c1, load 10-15)
split the calls at or over p99 (mean 194 ms) into 159 ms waiting for a core, 11 ms on CPU and
24 ms off CPU (fdatasyncs in flight for 31 ms of it; their p99 14 ms, max 94 ms), 6 ms of GC;
calls at or under p50 (mean 10.6 ms): 3.1 ms waiting for a core, 4.5 ms CPU, 3.0 ms off CPU.
`bare_p99_over_p50_<c>` is the bare route's own tail in the same run (65-436x in those runs):
the machine's share. `cpu_us_per_call` is the serving process's CPU per call (all threads).
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from . import gateway_e2e
from ._agents import echo
from ._http import Child, bound_socket, ready, start_uvicorn, wrk
from ._util import emit, environment, progress, sizes
from .mcp_calls import CALL, HEADERS

MODULE = "bench.mcp_e2e"
TOOLS = {"native": "echo", "native_sdk": "echo", "bridged": gateway_e2e.REMOTE}
ANSWER = "echo: hi"


# ---------------------------------------------------------------- the SDK-only gateway (child process)

async def _serve_sdk_gateway(backend: str, data_dir: str | None) -> None:
    from gateway.app import build_app
    from gateway.http.serving import uvicorn_options
    from gateway.process import tune_gc
    from gateway.workers.worker import Worker

    tune_gc()       # as `topicbridge serve` and bench.gateway_e2e's gateways do: the paths differ in MCP only
    settings = gateway_e2e.gateway_settings(backend, data_dir)
    settings["gateway"]["mcp_lean_dispatch"] = False
    app = build_app(settings)
    sock = bound_socket()
    serving = await start_uvicorn(app, sock, uvicorn_options(settings))
    gateway = app.state.gateway
    worker = Worker(gateway.backend, "echo", echo, concurrency=256,
                    card={"name": "Echo", "description": "Echoes the message."})
    await gateway.add_part(worker)     # started now, closed by the gateway's lifespan before its backend
    await gateway.mcp.refresh()
    ready(port=sock.getsockname()[1])
    await serving


def sdk_gateway(backend: str, data_dir: str | None) -> Child:
    return Child(MODULE, "--serve", "sdk-gateway", "--backend", backend,
                 *(["--data-dir", data_dir] if data_dir else []))


def call(tool: str) -> tuple[dict, dict]:
    """The body and headers of one `tools/call` of `tool`."""
    return {**CALL, "params": {**CALL["params"], "name": tool}}, {**HEADERS, "Mcp-Name": tool}


def check(url: str, tool: str) -> float:
    """wrk counts HTTP errors only: make sure the call really answers with the echo. Returns the
    call's latency in ms (on an open connection, as wrk's are; no client set-up counted)."""
    body, headers = call(tool)
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.connect()
        started = time.perf_counter()
        conn.request("POST", parts.path, json.dumps(body), headers)
        response = conn.getresponse()
        text = response.read().decode()
        elapsed_ms = (time.perf_counter() - started) * 1000
    finally:
        conn.close()
    try:
        answer = json.loads(text[text.index("{"):].splitlines()[0] if text.startswith("event") else text)
        content = answer["result"].get("content") or [{}]
        ok = response.status == 200 and not answer["result"].get("isError") and \
            any(ANSWER in block.get("text", "") for block in content)
    except (ValueError, KeyError, AttributeError):
        ok = False
    if not ok:
        raise RuntimeError(f"tools/call {tool} failed ({response.status}): {text[:500]}")
    return round(elapsed_ms, 2)


WARMUP_ORDERS = gateway_e2e.WARMUP_ORDERS
IN_FLIGHT = "topicbridge_tasks_in_flight"


def in_flight(base_url: str) -> int | None:
    """Tasks the gateway at `base_url` still follows (its /metrics), None when it has no metrics."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        text = response.read().decode()
    finally:
        conn.close()
    if response.status != 200:
        return None
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines() if line.startswith(IN_FLIGHT + "{"))


def settle(base_url: str, timeout: float = 60.0) -> float | None:
    """Waits until the gateway follows no task, and returns how long that took in ms. wrk ends a
    run by closing its connections with calls in flight, and the gateway cancels each of those
    tasks; a bridged one costs two calls to the agent (Bridge._cancel_remote), so after a warm-up
    at 64 connections the drain takes seconds and would fall into the point measured next."""
    started = time.perf_counter()
    while (left := in_flight(base_url)) and time.perf_counter() - started < timeout:
        time.sleep(0.05)
    return None if left is None else round((time.perf_counter() - started) * 1000, 1)


def schedule(targets: list[str], concurrency: list[int], order: str = "point") -> list[tuple[str, str, int]]:
    """The run's steps, ("warm" | "point", target, connections), targets taking turns at each
    concurrency. "point": each point right after a warm-up of its own target at its own
    concurrency. "upfront": every target warmed at the highest concurrency before any point."""
    if order not in WARMUP_ORDERS:
        raise ValueError(f"warm-up order must be one of {WARMUP_ORDERS}, got {order!r}")
    steps = [("warm", t, max(concurrency)) for t in targets] if order == "upfront" else []
    for c in concurrency:
        for target in targets:
            if order == "point":
                steps.append(("warm", target, c))
            steps.append(("point", target, c))
    return steps


def measure_mcp(servers: gateway_e2e.Servers, concurrency: list[int], seconds: float, warmup: float = 1.0,
                backend: str = "lite", data_dir: str | None = None, order: str = "point") -> dict:
    """Every target at every concurrency: {target: {"c1": {calls_per_s, p50_ms, ...}}}. The targets
    take turns at each concurrency, so a change in the machine's load hits them alike."""
    sdk = sdk_gateway(backend, data_dir)
    try:
        child = {target: sdk if target == "native_sdk" else servers.gateway for target in TOOLS}
        urls = {target: f"{child[target].base_url}/mcp" for target in TOOLS}
        for target, tool in TOOLS.items():
            check(urls[target], tool)
        out = {target: {} for target in TOOLS}
        for step, target, c in schedule(list(TOOLS), concurrency, order):
            body, headers = call(TOOLS[target])
            if step == "warm":
                if warmup > 0:
                    wrk(urls[target], body, headers, c, warmup)
                continue
            progress(f"mcp {target}: {c} connection(s), {seconds:g} s")
            settle_ms = settle(child[target].base_url)
            ready_ms = check(urls[target], TOOLS[target])
            pid = child[target].process.pid
            before, cpu_before = loop_clocks(pid), gateway_e2e.cpu_seconds(pid)
            figures = wrk(urls[target], body, headers, c, seconds)
            cpu_us = (gateway_e2e.cpu_seconds(pid) - cpu_before) * 1e6
            out[target][f"c{c}"] = {"calls_per_s": figures.pop("per_s"), **figures, "ready_call_ms": ready_ms,
                                    "settle_ms": settle_ms, "p99_over_p50": tail(figures),
                                    "cpu_us_per_call": round(cpu_us / figures["requests"], 1) if figures["requests"] else None,
                                    **per_call(before, loop_clocks(pid), figures)}
        for target, tool in TOOLS.items():
            check(urls[target], tool)
    finally:
        sdk.stop()
    return out


def loop_clocks(pid: int) -> tuple[int, int] | None:
    """(on-CPU ns, runnable-but-waiting ns) of the server's main thread, its event loop, from
    Linux schedstat; None where it cannot be read."""
    try:
        cpu, waited, _ = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
        return int(cpu), int(waited)
    except (OSError, ValueError):
        return None


def per_call(before: tuple[int, int] | None, after: tuple[int, int] | None, figures: dict) -> dict:
    """The event loop's CPU and run-queue wait per call during one point. A wait per call near
    the p50 says the machine's other load, not the server, set the latency (the loop was ready
    to run and had no core)."""
    if before is None or after is None or not figures["requests"]:
        return {}
    n = figures["requests"]
    return {"loop_cpu_us_per_call": round((after[0] - before[0]) / n / 1000, 1),
            "loop_runq_wait_us_per_call": round((after[1] - before[1]) / n / 1000, 1)}


def tail(figures: dict) -> float | None:
    """p99 over p50 of one point (None when nothing was measured)."""
    return round(figures["p99_ms"] / figures["p50_ms"], 2) if figures.get("p50_ms") else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=gateway_e2e.BACKENDS, default="lite")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point (default 5)")
    parser.add_argument("--concurrency", type=sizes, default=[1, 64])
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each point (before each target with --warmup-order upfront)")
    parser.add_argument("--warmup-order", choices=WARMUP_ORDERS, default="point",
                        help="point: warm each point's target at its concurrency right before it (default); "
                             "upfront: warm every target at the highest concurrency first (the old order)")
    parser.add_argument("--serve", choices=["sdk-gateway"], help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        import uvloop
        uvloop.run(_serve_sdk_gateway(args.backend, args.data_dir))
        return 0
    if shutil.which("wrk") is None:
        print("bench.mcp_e2e needs wrk (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="mcp-e2e-") as tmp:
        servers = gateway_e2e.Servers(args.backend, str(Path(tmp) / "lite") if args.backend == "lite" else None)
        try:
            sdk_dir = str(Path(tmp) / "lite-mcp-sdk") if args.backend == "lite" else None
            mcp = measure_mcp(servers, args.concurrency, args.duration, args.warmup, args.backend, sdk_dir,
                              args.warmup_order)
            a2a = gateway_e2e.measure_a2a(servers, args.concurrency, args.duration, args.warmup,
                                          order=args.warmup_order)
        finally:
            servers.stop()
    top, low = f"c{max(args.concurrency)}", f"c{min(args.concurrency)}"
    emit({"bench": "mcp_e2e", "what": "MCP tools/call (protocol 2026-07-28, streamable HTTP, stateless; the lean "
                                      "path and the SDK-only path) and A2A JSON-RPC SendMessage on the same servers",
          "backend": args.backend, "load_generator": "wrk -t1", "duration_s_per_point": args.duration,
          "warmup_order": args.warmup_order,
          "mcp": mcp, "a2a": a2a, **gateway_e2e.summary(a2a, args.concurrency),
          f"mcp_native_calls_per_s_{top}": mcp["native"][top]["calls_per_s"],
          f"mcp_native_sdk_calls_per_s_{top}": mcp["native_sdk"][top]["calls_per_s"],
          f"mcp_lean_vs_sdk_native_{top}": round(mcp["native"][top]["calls_per_s"] /
                                                 mcp["native_sdk"][top]["calls_per_s"], 3),
          f"mcp_native_p99_over_p50_{low}": mcp["native"][low]["p99_over_p50"],
          f"mcp_native_sdk_p99_over_p50_{low}": mcp["native_sdk"][low]["p99_over_p50"],
          f"mcp_vs_a2a_native_{top}": round(mcp["native"][top]["calls_per_s"] / a2a["native"][top]["tasks_per_s"], 3),
          # issue 17's goal (>= 0.15), and the bare route's own tail at c1 in the same run: the machine's share
          f"mcp_native_vs_bare_{top}": round(mcp["native"][top]["calls_per_s"] / a2a["bare"][top]["tasks_per_s"], 3),
          f"bare_p99_over_p50_{low}": tail(a2a["bare"][low]),
          "environment": environment(), "wall_s": round(time.time() - started, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
