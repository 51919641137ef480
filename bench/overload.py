"""Overload: drive a capability at 25x its sustainable rate and check that the gateway sheds load.

    python -m bench.overload [--factor 25] [--seconds 60] [--processes 4] [--max-in-flight 50]
                             [--capability slow|echo] [--work-ms 100] [--work-concurrency 1]

A real `topicbridge serve --demo` in its own process (gateway.max_tasks_in_flight set). The
overloaded capability is by default `slow`: an a2a-sdk agent in its own process, bridged by the
gateway (registered through the admin API), whose every task takes `--work-ms` with at most
`--work-concurrency` at a time, so its sustainable rate is low (~10 tasks/s) and 25x of it is a
load the generators can offer on 2 cores shared with the gateway (refusing costs the gateway CPU
too: on a loaded machine the generators reached ~430 requests/s) (`--capability echo`, the demo agent, is bounded by the
gateway's own CPU, and the generators cannot offer 25x of that on the same machine).

First the sustainable rate is measured in the same run: blocking SendMessage, closed loop,
`--connections` connections for `--calibrate` seconds (tasks completed per second). Then
`--processes` load generators (processes, raw HTTP/1.1 keep-alive connections, open loop: each
request is sent on its schedule whether or not earlier ones answered, on an idle connection or a
new one, up to `--per-process-connections` open) submit tasks (SendMessage with returnImmediately: the load is work offered,
not connections held) at `factor` x that rate for `--seconds`. Prints one JSON object: the
rates (offered_factor_actual is the offered rate achieved over the sustainable one), the
gateway's RSS before, at its peak and after `--settle` seconds (sampled from /proc), the latency
of admitted requests (p50/p99), the refusals by status and whether each carried Retry-After, the
final states of the admitted tasks, and accepted tasks lost (admitted, but in no terminal state
when read back by GetTask afterwards). The RocketMQ-A2A paper reports +8.2% old-generation
growth at 25x load; done here when RSS after is within +10% of before, every refusal is 429/503
with Retry-After and no accepted task is lost.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._agents import sdk_echo_app  # noqa: E402
from bench._http import Child, bound_socket, ready, start_uvicorn  # noqa: E402
from bench._util import emit, progress  # noqa: E402

TERMINAL = {"TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED", "TASK_STATE_REJECTED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# ------------------------------------------------------------------ the slow agent (its own process)

def slow_agent_app(base_url: str, work_s: float, concurrency: int):
    """The benches' a2a-sdk echo agent, with every task taking `work_s`, `concurrency` at a time: its
    rate is bounded by design, not by the CPU the machine has left."""
    return sdk_echo_app(base_url, work_s=work_s, concurrency=concurrency, streaming=False)


async def serve_agent(work_s: float, concurrency: int) -> None:
    sock = bound_socket()
    port = sock.getsockname()[1]
    serving = await start_uvicorn(slow_agent_app(f"http://127.0.0.1:{port}", work_s, concurrency), sock)
    ready(port=port)
    await serving


# ------------------------------------------------------------------ raw HTTP/1.1 load

def request_bytes(port: int, capability: str, n: int, immediately: bool) -> bytes:
    body = json.dumps({"jsonrpc": "2.0", "id": n, "method": "SendMessage", "params": {"message": {
        "messageId": f"m-{os.getpid()}-{n}", "role": "ROLE_USER", "parts": [{"text": f"load {n}"}]},
        "configuration": {"returnImmediately": immediately}}}).encode()
    return (f"POST /agents/{capability}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"A2A-Version: 1.0\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def exchange(reader, writer, payload: bytes) -> tuple[int, dict, bytes]:
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def classify(status: int, headers: dict, body: bytes, started: float, out: dict) -> None:
    if status == 200:
        doc = json.loads(body)
        if "result" in doc:
            out["latencies"].append(time.perf_counter() - started)
            task = doc["result"]["task"]
            out["accepted"].append(task["id"])
            out["completed"] += task["status"]["state"] == "TASK_STATE_COMPLETED"
            return
        key = f"200-jsonrpc-error:{doc['error']['code']}"
    else:
        key = f"{status}{'+retry-after' if 'retry-after' in headers else '-no-retry-after'}"
    out["refusals"][key] = out["refusals"].get(key, 0) + 1


async def generator(port: int, capability: str, rate: float, seconds: float, connections: int,
                    immediately: bool = True) -> dict:
    """Open loop: request n is due at start + n / rate, sent on an idle keep-alive connection or a
    new one (at most `connections` open), whether or not earlier ones were answered; one that could
    not get a connection on time is `late`, one that could not until the window closed is `dropped`."""
    out = {"latencies": [], "accepted": [], "completed": 0, "refusals": {}, "sent": 0, "late": 0, "dropped": 0,
           "errors": 0}
    idle: list[tuple] = []
    slots = asyncio.Semaphore(connections)
    start = time.perf_counter() + 0.2
    end = start + seconds

    async def one(n: int, due: float) -> None:
        async with slots:
            if time.perf_counter() > end:
                out["dropped"] += 1
                return
            out["late"] += time.perf_counter() - due > 0.1
            reader, writer = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
            sent_at = time.perf_counter()
            out["sent"] += 1
            try:
                status, headers, body = await exchange(reader, writer, request_bytes(port, capability, n, immediately))
            except (OSError, asyncio.IncompleteReadError, ValueError):
                out["errors"] += 1
                writer.close()
                return
            if headers.get("connection", "").lower() == "close":
                writer.close()
            else:
                idle.append((reader, writer))
            classify(status, headers, body, sent_at, out)

    pending: set[asyncio.Task] = set()
    n = 0
    while (due := start + n / rate) < end:
        if due > time.perf_counter():
            await asyncio.sleep(due - time.perf_counter())  # sleep-ok: the open-loop schedule
        n += 1
        task = asyncio.create_task(one(os.getpid() * 10 ** 7 + n, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    for _, writer in idle:
        writer.close()
    return out


async def closed_loop(port: int, capability: str, seconds: float, connections: int) -> dict:
    """Calibration: `connections` connections, each sending a blocking SendMessage when its last
    one was answered."""
    out = {"latencies": [], "accepted": [], "completed": 0, "refusals": {}, "sent": 0, "errors": 0}
    end = time.perf_counter() + seconds

    async def connection(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = 0
        try:
            while time.perf_counter() < end:
                n += 1
                sent_at = time.perf_counter()
                out["sent"] += 1
                status, headers, body = await exchange(reader, writer,
                                                       request_bytes(port, capability, index * 10 ** 7 + n, False))
                classify(status, headers, body, sent_at, out)
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    await asyncio.gather(*(connection(i) for i in range(connections)))
    return out


def run_generator(args: tuple) -> dict:
    return asyncio.run(generator(*args))


async def get_task(port: int, capability: str, task_id: str) -> str:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": task_id}}).encode()
    payload = (f"POST /agents/{capability}/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"A2A-Version: 1.0\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        _, _, answer = await exchange(reader, writer, payload)
    finally:
        writer.close()
    doc = json.loads(answer)
    return doc["result"]["status"]["state"] if "result" in doc else f"error {doc['error']['code']}"


async def final_states(port: int, capability: str, accepted: list[str], wait: float = 30) -> collections.Counter:
    """The state of every accepted task once each is terminal, or when `wait` is up (then what it
    is in: anything outside TERMINAL counts as lost)."""
    deadline = time.monotonic() + wait
    states: dict[str, str] = {}
    left = list(accepted)
    while True:
        for i in range(0, len(left), 200):
            batch = left[i:i + 200]
            states.update(zip(batch, await asyncio.gather(*(get_task(port, capability, t) for t in batch))))
        left = [t for t in left if states[t] not in TERMINAL]
        if not left or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.5)  # sleep-ok: polling the index, bounded by `wait`
    return collections.Counter(states.values())


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1) if values else 0.0


# ------------------------------------------------------------------ the run

async def register_slow(port: int, agent_url: str) -> None:
    body = json.dumps({"card_url": agent_url, "name": "slow"}).encode()
    payload = (f"POST /admin/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        status, _, answer = await exchange(reader, writer, payload)
    finally:
        writer.close()
    if status != 201:
        raise RuntimeError(f"registering the slow agent: {status} {answer[:300]!r}")


def start_gateway(workdir: Path, port: int, max_in_flight: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOPICBRIDGE_GATEWAY__MAX_TASKS_IN_FLIGHT": str(max_in_flight),
           "TOPICBRIDGE_GATEWAY__A2A_WAIT_SECONDS": "5"}
    log = (workdir / "gateway.log").open("w")
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--demo", "--port", str(port),
                             "--data-dir", str(workdir / "engine")], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def offer(args, port: int, target: float, gateway_pid: int) -> tuple[list[dict], list[int]]:
    """The open-loop load from `args.processes` processes; the gateway's RSS sampled meanwhile."""
    samples: list[int] = []
    share = (port, args.capability, target / args.processes, args.seconds, args.per_process_connections, True)
    with multiprocessing.Pool(args.processes) as pool:
        job = pool.map_async(run_generator, [share] * args.processes)
        while not job.ready():
            samples.append(rss_of(gateway_pid))
            job.wait(0.5)
        return job.get(), samples


def settle(pid: int, seconds: float) -> list[int]:
    samples, until = [], time.monotonic() + seconds
    while time.monotonic() < until:
        samples.append(rss_of(pid))
        time.sleep(0.5)  # sleep-ok: letting the gateway settle before reading RSS after
    return samples


def report(args, sustainable: float, calib: dict, results: list[dict], states: collections.Counter,
           rss: dict) -> dict:
    latencies = [x for r in results for x in r["latencies"]]
    accepted = sum(len(r["accepted"]) for r in results)
    refusals: collections.Counter = collections.Counter()
    for r in results:
        refusals.update(r["refusals"])
    sent = sum(r["sent"] for r in results)
    before, after = rss["before"], rss["after"]
    return {"bench": "overload", "capability": args.capability, "work_ms": args.work_ms,
            "work_concurrency": args.work_concurrency, "sustainable_per_s": round(sustainable, 1),
            "calibration_p99_ms": percentile(calib["latencies"], 0.99), "factor": args.factor,
            "offered_target_per_s": round(sustainable * args.factor, 1),
            "offered_actual_per_s": round(sent / args.seconds, 1),
            "offered_factor_actual": round(sent / args.seconds / sustainable, 1) if sustainable else None,
            "late_sends": sum(r["late"] for r in results), "dropped_sends": sum(r["dropped"] for r in results),
            "seconds": args.seconds,
            "max_tasks_in_flight": args.max_in_flight, "sent": sent,
            "admitted": accepted, "admitted_per_s": round(accepted / args.seconds, 1),
            "admitted_p50_ms": percentile(latencies, 0.5), "admitted_p99_ms": percentile(latencies, 0.99),
            "admitted_max_ms": percentile(latencies, 1.0),
            "refusals": dict(refusals), "refusals_without_retry_after": sum(
                n for k, n in refusals.items() if not k.endswith("+retry-after")),
            "transport_errors": sum(r["errors"] for r in results),
            "accepted_final_states": dict(states), "accepted_lost": accepted - sum(
                n for state, n in states.items() if state in TERMINAL),
            "rss_before_mb": round(before / 2 ** 20, 1), "rss_peak_mb": round(rss["peak"] / 2 ** 20, 1),
            "rss_after_mb": round(after / 2 ** 20, 1), "settle_seconds": args.settle,
            "rss_growth_pct": round(100 * (after - before) / before, 1) if before else None}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=float, default=25)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--calibrate", type=float, default=10)
    parser.add_argument("--settle", type=float, default=20, help="seconds after the load before RSS after")
    parser.add_argument("--connections", type=int, default=16,
                        help="closed-loop connections while calibrating (enough to keep the agent busy, "
                             "under --max-in-flight)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--per-process-connections", type=int, default=256,
                        help="connections a generator process may have open at once")
    parser.add_argument("--max-in-flight", type=int, default=50)
    parser.add_argument("--capability", choices=["slow", "echo"], default="slow")
    parser.add_argument("--work-ms", type=float, default=100)
    parser.add_argument("--work-concurrency", type=int, default=1)
    parser.add_argument("--serve-agent", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.serve_agent:
        import uvloop
        uvloop.run(serve_agent(args.work_ms / 1000, args.work_concurrency))
        return
    workdir = Path(tempfile.mkdtemp(prefix="topicbridge-overload-"))
    port = free_port()
    gateway = start_gateway(workdir, port, args.max_in_flight)
    agent = None
    try:
        asyncio.run(wait_ready(port))
        if args.capability == "slow":
            agent = Child("bench.overload", "--serve-agent", "--work-ms", str(args.work_ms),
                          "--work-concurrency", str(args.work_concurrency))
            asyncio.run(register_slow(port, agent.base_url))
        # calibration: closed loop (each connection sends when its answer arrived)
        calib = asyncio.run(closed_loop(port, args.capability, args.calibrate, args.connections))
        sustainable = calib["completed"] / args.calibrate      # answered COMPLETED, not merely answered
        progress(f"sustainable: {sustainable:.1f}/s (p99 {percentile(calib['latencies'], 0.99)} ms)")
        asyncio.run(final_states(port, args.capability, calib["accepted"]))
        rss_before = rss_of(gateway.pid)
        progress(f"offering {sustainable * args.factor:.0f}/s for {args.seconds:.0f} s from {args.processes} "
                 f"processes; RSS {rss_before / 2 ** 20:.1f} MB")
        results, during = offer(args, port, sustainable * args.factor, gateway.pid)
        accepted = [t for r in results for t in r["accepted"]]
        progress(f"{len(accepted)} admitted; reading each back")
        states = asyncio.run(final_states(port, args.capability, accepted, wait=120))
        after = settle(gateway.pid, args.settle)
        rss = {"before": rss_before, "peak": max([rss_before, *during, *after]), "after": rss_of(gateway.pid)}
        emit(report(args, sustainable, calib, results, states, rss) | {"gateway_alive": gateway.poll() is None})
    finally:
        if agent is not None:
            agent.stop()
        gateway.terminate()
        try:
            gateway.wait(30)
        except subprocess.TimeoutExpired:
            gateway.kill()


async def wait_ready(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            status, _, _ = await exchange(reader, writer, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            writer.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)  # sleep-ok: polling a child process's readiness, bounded above
    raise RuntimeError("the gateway did not get ready")


if __name__ == "__main__":
    main()
