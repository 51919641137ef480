"""MCP `tools/call` end to end: through the gateway to a native capability and to an A2A agent
registered by URL, next to the A2A `SendMessage` figures of bench.gateway_e2e measured on the
same servers in the same run.

    python -m bench.mcp_e2e --backend lite [--duration 5] [--concurrency 1,64]

The servers are bench.gateway_e2e's (bare route, a2a-sdk echo agent, gateway with the native
`echo` worker and the agent registered as `remote-echo`). Tools, each driven by `wrk -t1` with a
Lua body (protocol 2026-07-28, stateless POSTs) at every concurrency:

  native    tools/call echo          gateway -> lite engine -> worker -> reply events -> MCP result
  bridged   tools/call remote-echo   the same task through the bridge to the agent over HTTP

Every tool answers one checked call before and after its load. One JSON object on stdout.
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
from ._http import wrk
from ._util import emit, environment, progress, sizes
from .mcp_calls import CALL, HEADERS

TOOLS = {"native": "echo", "bridged": gateway_e2e.REMOTE}
ANSWER = "echo: hi"


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


def measure_mcp(servers: gateway_e2e.Servers, concurrency: list[int], seconds: float, warmup: float = 1.0) -> dict:
    """Every tool at every concurrency: {target: {"c1": {calls_per_s, p50_ms, ...}}}."""
    url = f"{servers.gateway.base_url}/mcp"
    out = {}
    for target, tool in TOOLS.items():
        body, headers = call(tool)
        check(url, tool)
        if warmup > 0:
            wrk(url, body, headers, max(concurrency), warmup)
        out[target] = {}
        for c in concurrency:
            progress(f"mcp {target}: {c} connection(s), {seconds:g} s")
            figures = wrk(url, body, headers, c, seconds)
            out[target][f"c{c}"] = {"calls_per_s": figures.pop("per_s"), **figures}
        check(url, tool)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=gateway_e2e.BACKENDS, default="lite")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point (default 5)")
    parser.add_argument("--concurrency", type=sizes, default=[1, 64])
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each target")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench.mcp_e2e needs wrk (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="mcp-e2e-") as tmp:
        servers = gateway_e2e.Servers(args.backend, str(Path(tmp) / "lite") if args.backend == "lite" else None)
        try:
            mcp = measure_mcp(servers, args.concurrency, args.duration, args.warmup)
            a2a = gateway_e2e.measure_a2a(servers, args.concurrency, args.duration, args.warmup)
        finally:
            servers.stop()
    top = f"c{max(args.concurrency)}"
    emit({"bench": "mcp_e2e", "what": "MCP tools/call (protocol 2026-07-28, streamable HTTP, stateless) and "
                                      "A2A JSON-RPC SendMessage on the same servers",
          "backend": args.backend, "load_generator": "wrk -t1", "duration_s_per_point": args.duration,
          "mcp": mcp, "a2a": a2a, **gateway_e2e.summary(a2a, args.concurrency),
          f"mcp_native_calls_per_s_{top}": mcp["native"][top]["calls_per_s"],
          f"mcp_vs_a2a_native_{top}": round(mcp["native"][top]["calls_per_s"] / a2a["native"][top]["tasks_per_s"], 3),
          "environment": environment(), "wall_s": round(time.time() - started, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
