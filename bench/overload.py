"""Overload: drive the gateway at 25x its sustainable rate and check that it sheds load.

    python -m bench.overload [--factor 25] [--seconds 60] [--processes 4] [--max-in-flight 200]

A real `topicbridge serve --demo` in its own process (gateway.max_tasks_in_flight set). First the
sustainable rate is measured in the same run: blocking SendMessage to the echo agent, closed loop,
`--connections` connections for `--calibrate` seconds (tasks completed per second). Then
`--processes` load generators submit tasks (SendMessage with returnImmediately: the load is work
offered, not connections held)
(processes, raw HTTP/1.1 keep-alive connections, open loop: each request is sent on its schedule
whether or not earlier ones answered, as far as their connections allow) offer `factor` x that
rate for `--seconds`. Prints one JSON object: the rates, the gateway's RSS before, at its peak and
after (sampled from /proc), the latency of admitted requests (p50/p99), the refusals by status
and whether each carried Retry-After, and accepted tasks lost (admitted, but not COMPLETED when
read back by GetTask afterwards). The RocketMQ-A2A paper reports +8.2% old-generation growth at
25x load; done here when RSS after is within +10% of before and every refusal is 429/503 with
Retry-After.
"""

from __future__ import annotations

import argparse
import asyncio
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

from bench._util import emit, progress  # noqa: E402

CAPABILITY = "echo"


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


def request_bytes(port: int, n: int, immediately: bool) -> bytes:
    body = json.dumps({"jsonrpc": "2.0", "id": n, "method": "SendMessage", "params": {"message": {
        "messageId": f"m-{os.getpid()}-{n}", "role": "ROLE_USER", "parts": [{"text": f"load {n}"}]},
        "configuration": {"returnImmediately": immediately}}}).encode()
    return (f"POST /agents/{CAPABILITY}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
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
            if task["status"]["state"] != "TASK_STATE_COMPLETED":
                out["pending"].append(task["id"])
            return
        key = f"200-jsonrpc-error:{doc['error']['code']}"
    else:
        key = f"{status}{'+retry-after' if 'retry-after' in headers else '-no-retry-after'}"
    out["refusals"][key] = out["refusals"].get(key, 0) + 1


async def generator(port: int, rate: float, seconds: float, connections: int, immediately: bool = False) -> dict:
    out = {"latencies": [], "pending": [], "refusals": {}, "sent": 0, "late": 0, "errors": 0}
    start = time.perf_counter() + 0.2
    interval = connections / rate           # each connection's share of the schedule

    async def connection(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        due = start + index * (1 / rate)
        n = 0
        try:
            while due < start + seconds and time.perf_counter() < start + seconds:
                now = time.perf_counter()
                if due > now:
                    await asyncio.sleep(due - now)  # sleep-ok: the open-loop schedule
                elif now - due > interval:
                    out["late"] += 1        # the connection was still busy: this send is late
                n += 1
                sent_at = time.perf_counter()
                out["sent"] += 1
                try:
                    status, headers, body = await exchange(reader, writer, request_bytes(port, index * 10 ** 7 + n, immediately))
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    out["errors"] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                else:
                    if headers.get("connection", "").lower() == "close":
                        writer.close()
                        reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    classify(status, headers, body, sent_at, out)
                due += interval
        finally:
            writer.close()

    await asyncio.gather(*(connection(i) for i in range(connections)))
    return out


def run_generator(args: tuple) -> dict:
    return asyncio.run(generator(*args))


async def get_task(port: int, task_id: str) -> str:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": task_id}}).encode()
    payload = (f"POST /agents/{CAPABILITY}/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nA2A-Version: 1.0"
               f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        _, _, answer = await exchange(reader, writer, payload)
    finally:
        writer.close()
    doc = json.loads(answer)
    return doc["result"]["status"]["state"] if "result" in doc else f"error {doc['error']['code']}"


async def lost_tasks(port: int, pending: list[str], wait: float = 30) -> int:
    deadline = time.monotonic() + wait
    left = list(pending)
    while left and time.monotonic() < deadline:
        states = await asyncio.gather(*(get_task(port, t) for t in left[:200]))
        left = [t for t, s in zip(left[:200], states) if s != "TASK_STATE_COMPLETED"] + left[200:]
        if left:
            await asyncio.sleep(0.5)  # sleep-ok: polling the index, bounded by `wait`
    return len(left)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=float, default=25)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--calibrate", type=float, default=10)
    parser.add_argument("--connections", type=int, default=8, help="closed-loop connections while calibrating")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--per-process-connections", type=int, default=64)
    parser.add_argument("--max-in-flight", type=int, default=200)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="topicbridge-overload-"))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOPICBRIDGE_GATEWAY__MAX_TASKS_IN_FLIGHT": str(args.max_in_flight),
           "TOPICBRIDGE_GATEWAY__A2A_WAIT_SECONDS": "5"}
    log = (workdir / "gateway.log").open("w")
    gateway = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--demo", "--port", str(port),
                                "--data-dir", str(workdir / "engine")], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        asyncio.run(wait_ready(port))
        # calibration: closed loop (each connection sends when its answer arrived)
        calib = asyncio.run(generator(port, 10 ** 6, args.calibrate, args.connections))
        sustainable = len(calib["latencies"]) / args.calibrate
        progress(f"sustainable: {sustainable:.0f}/s (p99 {percentile(calib['latencies'], 0.99)} ms)")
        asyncio.run(lost_tasks(port, calib["pending"]))
        rss_before = rss_of(gateway.pid)
        target = sustainable * args.factor
        progress(f"offering {target:.0f}/s for {args.seconds:.0f} s from {args.processes} processes")
        peak = [rss_before]
        with multiprocessing.Pool(args.processes) as pool:
            job = pool.map_async(run_generator, [(port, target / args.processes, args.seconds,
                                                  args.per_process_connections, True)] * args.processes)
            while not job.ready():
                peak.append(rss_of(gateway.pid))
                job.wait(0.5)
            results = job.get()
        latencies = [x for r in results for x in r["latencies"]]
        pending = [t for r in results for t in r["pending"]]
        refusals: dict = {}
        for r in results:
            for k, v in r["refusals"].items():
                refusals[k] = refusals.get(k, 0) + v
        lost = asyncio.run(lost_tasks(port, pending, wait=120))
        settle = time.monotonic() + 15
        while time.monotonic() < settle:
            peak.append(rss_of(gateway.pid))
            time.sleep(0.5)  # sleep-ok: letting the gateway settle before reading RSS after
        rss_after = rss_of(gateway.pid)
        sent = sum(r["sent"] for r in results)
        emit({"bench": "overload", "sustainable_per_s": round(sustainable, 1),
              "calibration_p99_ms": percentile(calib["latencies"], 0.99), "factor": args.factor,
              "offered_target_per_s": round(target, 1), "offered_actual_per_s": round(sent / args.seconds, 1),
              "late_sends": sum(r["late"] for r in results), "seconds": args.seconds,
              "max_tasks_in_flight": args.max_in_flight,
              "admitted": len(latencies), "admitted_per_s": round(len(latencies) / args.seconds, 1),
              "admitted_p50_ms": percentile(latencies, 0.5), "admitted_p99_ms": percentile(latencies, 0.99),
              "refusals": refusals, "transport_errors": sum(r["errors"] for r in results),
              "accepted_lost": lost, "accepted_not_completed_at_answer": len(pending),
              "rss_before_mb": round(rss_before / 2 ** 20, 1), "rss_peak_mb": round(max(peak) / 2 ** 20, 1),
              "rss_after_mb": round(rss_after / 2 ** 20, 1),
              "rss_growth_pct": round(100 * (rss_after - rss_before) / rss_before, 1) if rss_before else None,
              "gateway_alive": gateway.poll() is None})
    finally:
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
            status, _, _ = await exchange(reader, writer, f"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            writer.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)  # sleep-ok: polling a child process's readiness, bounded above
    raise RuntimeError("the gateway did not get ready")


if __name__ == "__main__":
    main()
