"""Run the official MCP conformance suite (npm `@modelcontextprotocol/conformance`) against a gateway.

    python tests/conformance/run_mcp_conformance.py                 # every run; exit 0 when all pass
    python tests/conformance/run_mcp_conformance.py --run tasks --keep-results /tmp/conformance

It installs Node 22 (the npm package `node@22`; the machine's Node may be older) and the suite into
`.tools/mcp-conformance/` when they are missing, starts a gateway on 127.0.0.1 (port 0) over the
embedded engine with the fixture capabilities the scenarios call (`mcp_fixtures.py`), and runs:

    2025-11-25  every server scenario of that revision, on its stateful wire (initialize, sessions)
    2026-07-28  every server scenario of that revision, pending ones included (stateless wire)
    tasks       the io.modelcontextprotocol/tasks extension scenarios, on the 2026-07-28 wire

each against `mcp-expected-failures.yml`, whose every entry says why the gateway fails it. The
suite exits non-zero on an unexpected failure and on a baselined scenario that passes. The
summary (one JSON object) goes to stdout; the suite's own output to stderr.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

SUITE_VERSION = "0.2.0-alpha.11"
NODE_PACKAGE = "node@22"
TOOLS = ROOT / ".tools" / "mcp-conformance"
BASELINE = HERE / "mcp-expected-failures.yml"
TASKS_SCENARIOS = ("tasks-lifecycle", "tasks-capability-negotiation", "tasks-wire-fields",
                   "tasks-request-state-removal", "tasks-mrtr-input", "tasks-request-headers",
                   "tasks-dispatch-and-envelope", "tasks-status-notifications", "tasks-required-task-error",
                   "tasks-mrtr-composition")
RUNS = {
    "2025-11-25": [["--suite", "all", "--spec-version", "2025-11-25"]],
    "2026-07-28": [["--suite", "all", "--spec-version", "2026-07-28"]],
    # Extension scenarios are off the dated timeline: --force pins them to the 2026-07-28 wire.
    "tasks": [["--scenario", s, "--spec-version", "2026-07-28", "--force"] for s in TASKS_SCENARIOS],
}
_STAMP = re.compile(r"-\d{4}-\d{2}-\d{2}T[\d-]+Z$")       # results/<server-scenario-timestamp>/
GATEWAY = {"host": "127.0.0.1", "mcp_registry_poll_seconds": 0.2}   # the list-changed probe waits 1.5 s


class SetupError(RuntimeError):
    pass


def install() -> tuple[Path, Path]:
    """Node 22 and the suite under .tools/ (npm registry access needed the first time)."""
    node = TOOLS / "node_modules" / "node" / "bin" / "node"
    package = TOOLS / "node_modules" / "@modelcontextprotocol" / "conformance"
    installed = json.loads((package / "package.json").read_text())["version"] if package.exists() else None
    if installed != SUITE_VERSION or not node.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise SetupError("npm is not installed; it is needed once to fetch node@22 and the suite")
        TOOLS.mkdir(parents=True, exist_ok=True)
        if not (TOOLS / "package.json").exists():
            (TOOLS / "package.json").write_text('{"private": true}\n')
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--save-exact", NODE_PACKAGE,
                               f"@modelcontextprotocol/conformance@{SUITE_VERSION}"],
                              cwd=TOOLS, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise SetupError(f"npm install failed:\n{done.stderr[-2000:]}")
    version = subprocess.run([str(node), "--version"], capture_output=True, text=True).stdout.strip()
    if not version.startswith("v") or int(version[1:].split(".")[0]) < 22:
        raise SetupError(f"{node} is {version!r}; the suite needs Node >= 22")
    return node, package / "dist" / "index.js"


async def run_suite(node: Path, cli: Path, url: str, args: list[str], out: Path) -> int:
    process = await asyncio.create_subprocess_exec(
        str(node), str(cli), "server", "--url", url, *args, "--expected-failures", str(BASELINE),
        "-o", str(out), stdout=sys.stderr, stderr=sys.stderr, env={**os.environ, "NO_COLOR": "1"})
    return await process.wait()


def tally(out: Path) -> dict:
    scenarios, checks = {}, {"SUCCESS": 0, "FAILURE": 0, "WARNING": 0, "SKIPPED": 0, "INFO": 0}
    for result in sorted(out.glob("*/checks.json")):
        found = json.loads(result.read_text())
        name = _STAMP.sub("", result.parent.name.removeprefix("server-"))
        failed = [c["id"] for c in found if c["status"] == "FAILURE"]
        scenarios[name] = {"passed": sum(c["status"] == "SUCCESS" for c in found), "failed": failed}
        for check in found:
            checks[check["status"]] = checks.get(check["status"], 0) + 1
    return {"scenarios": len(scenarios), "scenarios_passing": sum(not s["failed"] for s in scenarios.values()),
            "checks": checks, "failing": {n: s["failed"] for n, s in scenarios.items() if s["failed"]}}


async def conformance(runs: list[str], results: Path) -> dict:
    from tests.conformance.mcp_fixtures import start_workers
    from tests.gateway.serving import running_gateway

    node, cli = install()
    settings = {"backend": "lite", "lite": {"data_dir": None, "tick": 0.005}, "gateway": dict(GATEWAY)}
    summary = {"suite": f"@modelcontextprotocol/conformance@{SUITE_VERSION}", "runs": {}}
    async with running_gateway(settings) as gateway:
        workers = await start_workers(gateway.gateway.backend)
        try:
            for run in runs:
                out = results / run
                codes = [await run_suite(node, cli, gateway.url, args, out) for args in RUNS[run]]
                summary["runs"][run] = {"exit_code": max(codes), **tally(out)}
        finally:
            for worker in workers:
                await worker.close()
    summary["ok"] = all(r["exit_code"] == 0 for r in summary["runs"].values())
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", choices=list(RUNS), help="run only these (repeatable)")
    parser.add_argument("--keep-results", type=Path, default=None, help="keep the suite's checks.json files here")
    args = parser.parse_args(argv)
    results = args.keep_results or Path(tempfile.mkdtemp(prefix="mcp-conformance-"))
    try:
        summary = asyncio.run(conformance(args.run or list(RUNS), results))
    except SetupError as e:
        print(json.dumps({"ok": False, "setup_error": str(e)}))
        return 3
    finally:
        if args.keep_results is None:
            shutil.rmtree(results, ignore_errors=True)
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
