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
                                       answered by the lean path (gateway/mcp_lean.py)
  native_sdk  tools/call echo          the same on the SDK-only gateway: the SDK's session manager
                                       and low-level server answer every request
  bridged     tools/call remote-echo   the same task through the bridge to the agent over HTTP

Every target answers one checked call before and after its load. One JSON object on stdout;
`mcp_lean_vs_sdk_native_<c>` is native over native_sdk calls/s at the highest concurrency.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

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
    from gateway.workers.worker import Worker

    settings = gateway_e2e.gateway_settings(backend, data_dir)
    settings["gateway"]["mcp_lean_dispatch"] = False
    app = build_app(settings)
    sock = bound_socket()
    serving = await start_uvicorn(app, sock)
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


def check(url: str, tool: str) -> None:
    """wrk counts HTTP errors only: make sure the call really answers with the echo."""
    import httpx
    body, headers = call(tool)
    response = httpx.post(url, json=body, headers=headers, timeout=10)
    text = response.text
    answer = json.loads(text[text.index("{"):].splitlines()[0]) if text.startswith("event") else response.json()
    content = answer.get("result", {}).get("content") or [{}]
    if response.status_code != 200 or answer["result"].get("isError") or \
            not any(ANSWER in block.get("text", "") for block in content):
        raise RuntimeError(f"tools/call {tool} failed ({response.status_code}): {text[:500]}")


def measure_mcp(servers: gateway_e2e.Servers, concurrency: list[int], seconds: float, warmup: float = 1.0,
                backend: str = "lite", data_dir: str | None = None) -> dict:
    """Every target at every concurrency: {target: {"c1": {calls_per_s, p50_ms, ...}}}. The targets
    take turns at each concurrency, so a change in the machine's load hits them alike."""
    sdk = sdk_gateway(backend, data_dir)
    try:
        urls = {target: f"{(sdk if target == 'native_sdk' else servers.gateway).base_url}/mcp" for target in TOOLS}
        for target, tool in TOOLS.items():
            check(urls[target], tool)
            if warmup > 0:
                body, headers = call(tool)
                wrk(urls[target], body, headers, max(concurrency), warmup)
        out = {target: {} for target in TOOLS}
        for c in concurrency:
            for target, tool in TOOLS.items():
                progress(f"mcp {target}: {c} connection(s), {seconds:g} s")
                body, headers = call(tool)
                figures = wrk(urls[target], body, headers, c, seconds)
                out[target][f"c{c}"] = {"calls_per_s": figures.pop("per_s"), **figures}
        for target, tool in TOOLS.items():
            check(urls[target], tool)
    finally:
        sdk.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=gateway_e2e.BACKENDS, default="lite")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point (default 5)")
    parser.add_argument("--concurrency", type=sizes, default=[1, 64])
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each target")
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
            mcp = measure_mcp(servers, args.concurrency, args.duration, args.warmup, args.backend, sdk_dir)
            a2a = gateway_e2e.measure_a2a(servers, args.concurrency, args.duration, args.warmup)
        finally:
            servers.stop()
    top = f"c{max(args.concurrency)}"
    emit({"bench": "mcp_e2e", "what": "MCP tools/call (protocol 2026-07-28, streamable HTTP, stateless; the lean "
                                      "path and the SDK-only path) and A2A JSON-RPC SendMessage on the same servers",
          "backend": args.backend, "load_generator": "wrk -t1", "duration_s_per_point": args.duration,
          "mcp": mcp, "a2a": a2a, **gateway_e2e.summary(a2a, args.concurrency),
          f"mcp_native_calls_per_s_{top}": mcp["native"][top]["calls_per_s"],
          f"mcp_native_sdk_calls_per_s_{top}": mcp["native_sdk"][top]["calls_per_s"],
          f"mcp_lean_vs_sdk_native_{top}": round(mcp["native"][top]["calls_per_s"] /
                                                 mcp["native_sdk"][top]["calls_per_s"], 3),
          f"mcp_vs_a2a_native_{top}": round(mcp["native"][top]["calls_per_s"] / a2a["native"][top]["tasks_per_s"], 3),
          "environment": environment(), "wall_s": round(time.time() - started, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
