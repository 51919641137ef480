"""Fuzz the gateway's HTTP surfaces with >= 100,000 hostile requests and count what came back.

    python -m bench.fuzz [--cases 100000] [--concurrency 16] [--schemathesis 100]

A real `topicbridge serve --demo` in its own process (its log to a file); the cases come from
the hypothesis strategies of tests/gateway/fuzz_cases.py (A2A JSON-RPC and HTTP+JSON, /mcp in the
2025-06-18 and 2025-11-25 eras, the admin API), one per `@given` example (generation only, no
shrinking), handed through a bounded queue to `--concurrency` senders on an event loop in
another thread, so generating and sending overlap. Prints one JSON object: counts per surface and status class,
responses 5xx, transport errors, whether the gateway was still alive, and the tracebacks and
lines its log got. Done when `5xx == 0`, `crashed is false` and `log_tracebacks == 0`.

Then (unless `--schemathesis 0`) schemathesis' stateless checks on the admin API: a second
gateway with a bearer token, every operation of its /admin/openapi.json with `--schemathesis`
schema-valid and as many schema-invalid requests each (tests/gateway/test_admin_schemathesis.py
is the fast slice); reported under "schemathesis": cases per operation, failures (5xx, or a
status, content type, header or body the document does not declare, or invalid data accepted)
with the first few, and the tracebacks its log got. Done when both are 0.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._util import emit, progress  # noqa: E402
from tests.gateway.fuzz_cases import ADMIN_TOKEN, SURFACES, admin_operations, check_admin_case  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, workdir: Path, **env_settings: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "gateway.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TOPICBRIDGE_GATEWAY__A2A_WAIT_SECONDS": "2", **env_settings}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--demo", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(workdir / "engine")], cwd=ROOT, env=env, stdout=self.log.open("w"),
            stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # sleep-ok: polling a child process's readiness, bounded above
        raise RuntimeError("the gateway did not get ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def sender(http: httpx.AsyncClient, queue: asyncio.Queue, tally: dict, fives: list) -> None:
    while (case := await queue.get()) is not None:
        try:
            response = await http.request(case.method, case.path, headers=case.headers, content=case.body)
            status = f"{response.status_code // 100}xx"
            if response.status_code >= 500 and len(fives) < 20:
                fives.append({"case": repr(case)[:400], "status": response.status_code, "body": response.text[:300]})
        except httpx.HTTPError as e:
            status = f"transport:{type(e).__name__}"
        tally[case.surface][status] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--schemathesis", type=int, default=100,
                        help="schemathesis examples per admin operation and mode (0: skip)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="topicbridge-fuzz-"))
    gateway = Gateway(workdir)
    tally: dict = collections.defaultdict(collections.Counter)
    fives: list = []
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    started = time.monotonic()
    try:
        gateway.wait_ready()
        progress(f"gateway up on {gateway.base}; sending {args.cases} cases")
        thread.start()

        async def setup() -> tuple:
            http = httpx.AsyncClient(base_url=gateway.base, timeout=30,
                                     limits=httpx.Limits(max_connections=args.concurrency))
            queue = asyncio.Queue(args.concurrency * 4)
            senders = [asyncio.create_task(sender(http, queue, tally, fives)) for _ in range(args.concurrency)]
            return http, queue, senders

        http, queue, senders = asyncio.run_coroutine_threadsafe(setup(), loop).result()
        sent = [0]

        @settings(max_examples=args.cases, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(st.one_of(*SURFACES.values()))
        def one(case):
            asyncio.run_coroutine_threadsafe(queue.put(case), loop).result()
            sent[0] += 1
            if sent[0] % 2_000 == 0:        # a partial run can be quoted from these lines
                progress(f"{sent[0]} cases: " + json.dumps({k: dict(v) for k, v in sorted(tally.items())}))

        one()

        async def finish() -> None:
            for _ in senders:
                await queue.put(None)
            await asyncio.gather(*senders)
            await http.aclose()

        asyncio.run_coroutine_threadsafe(finish(), loop).result()
        alive = gateway.process.poll() is None and httpx.get(f"{gateway.base}/healthz", timeout=10).status_code == 200
    finally:
        gateway.stop()
        loop.call_soon_threadsafe(loop.stop)
    log = gateway.log.read_text(errors="replace")
    total = sum(sum(t.values()) for t in tally.values())
    emit({"bench": "fuzz", "cases": total, "seconds": round(time.monotonic() - started, 1),
          "per_surface": {surface: dict(sorted(counts.items())) for surface, counts in sorted(tally.items())},
          "5xx": sum(t.get("5xx", 0) for t in tally.values()),
          "transport_errors": sum(n for t in tally.values() for k, n in t.items() if k.startswith("transport")),
          "crashed": not alive, "log_tracebacks": log.count("Traceback (most recent call last)"),
          "log_lines": log.count("\n"), "first_5xx": fives[:5]}
         | ({"schemathesis": schemathesis_run(workdir / "schemathesis", args.schemathesis)} if args.schemathesis else {}))


def schemathesis_run(workdir: Path, examples: int) -> dict:
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    gateway = Gateway(workdir, TOPICBRIDGE_GATEWAY__BEARER_TOKENS=ADMIN_TOKEN)
    cases: collections.Counter = collections.Counter()
    failures: list[str] = []
    started = time.monotonic()
    try:
        gateway.wait_ready()
        for operation in admin_operations(gateway.base):
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                label = f"{operation.label} {mode.value}"
                progress(f"schemathesis: {label}")

                @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                          suppress_health_check=list(HealthCheck))
                @given(operation.as_strategy(generation_mode=mode))
                def one(case):
                    cases[label] += 1
                    try:
                        check_admin_case(case)
                    except (Exception, BaseExceptionGroup) as e:     # schemathesis' FailureGroup
                        failures.append(f"{label}: {e}"[:600])

                try:
                    with contextlib.redirect_stdout(sys.stderr):    # hypothesis' notes: stdout is the JSON
                        one()
                except Unsatisfiable:       # nothing to negate (a task id is any string)
                    cases[label] += 0
    finally:
        gateway.stop()
    log = gateway.log.read_text(errors="replace")
    return {"cases": sum(cases.values()), "seconds": round(time.monotonic() - started, 1),
            "per_operation": dict(sorted(cases.items())), "failures": len(failures),
            "log_tracebacks": log.count("Traceback (most recent call last)"), "first_failures": failures[:5]}


if __name__ == "__main__":
    main()
