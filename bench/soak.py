"""Soak: the native echo through a served gateway at a steady rate for a long time, sampled.

    python -m bench.soak [--seconds 1800] [--rate 200] [--backend embedded|remote] [--sample 10]

`topicbridge serve --demo` runs as its own process (on its embedded engine, or on a `topicbridge
engine` process); this process sends A2A JSON-RPC SendMessage calls to the demo echo agent at
`--rate` per second (open loop: a slow gateway shows up as tasks in flight and errors, not as a
lower rate), each waiting for its answer. Every `--sample` seconds it records the gateway's (and
engine's) RSS, tasks in flight, tasks done and errors by kind. The result says whether RSS stayed
flat after warm-up (the last third of the samples against the first third after the warm-up,
`rss_growth_ratio`), the most tasks ever in flight, and how many quota errors were seen (lite
topics are bounded by tasks in flight: a quota error means reply channels leak).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from ._faults.client import Caller, Refused, state
from ._faults.procs import engine_proc, free_port, gateway_proc
from ._util import emit, environment, progress

PAGE = 4096


def rss_of(pid: int | None) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, TypeError):
        return None


class Load:
    def __init__(self, caller: Caller, rate: float, max_in_flight: int) -> None:
        self.caller = caller
        self.rate = rate
        self.slots = asyncio.Semaphore(max_in_flight)
        self.in_flight = self.done = self.peak = 0
        self.errors: dict[str, int] = {}
        self.tasks: set[asyncio.Task] = set()

    async def run(self, seconds: float) -> None:
        start, sent = time.monotonic(), 0
        while (now := time.monotonic()) - start < seconds:
            due = int((now - start) * self.rate) - sent
            for _ in range(due):
                if self.slots.locked():
                    self._error("client: too many in flight (gateway behind the rate)")
                else:
                    await self.slots.acquire()
                    task = asyncio.create_task(self.one(sent))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                sent += 1
            await asyncio.sleep(0.005)   # sleep-ok: the open-loop pacing tick
        await asyncio.gather(*self.tasks)

    async def one(self, i: int) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            result = await self.caller.send("echo", f"soak {i}", wait=True)
            if isinstance(result, Refused):
                self._error(result.reason)
            elif state(result) != "TASK_STATE_COMPLETED":
                self._error(f"ended {state(result)}")
            else:
                self.done += 1
        finally:
            self.in_flight -= 1
            self.slots.release()

    def _error(self, reason: str) -> None:
        key = "quota" if "quota" in reason.lower() else reason[:80]
        self.errors[key] = self.errors.get(key, 0) + 1


async def soak(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    engine = None
    if args.backend == "remote":
        engine = engine_proc(workdir / "engine", free_port())
        await asyncio.to_thread(engine.start)
    target = f"127.0.0.1:{engine.args[engine.args.index('--port') + 1]}" if engine else None
    port = free_port()
    env = {"TOPICBRIDGE_GATEWAY__CHANNEL_IDLE_SECONDS": str(args.channel_idle)} if args.channel_idle else {}
    if args.retention:
        env["TOPICBRIDGE_GATEWAY__TASK_RETENTION_SECONDS"] = str(args.retention)
    gateway = gateway_proc(port, workdir / "data", engine=target, env=env)
    await asyncio.to_thread(gateway.start)
    caller = Caller(f"http://127.0.0.1:{port}")
    samples = []
    try:
        await caller.until_ready()
        load = Load(caller, args.rate, args.max_in_flight)
        running = asyncio.create_task(load.run(args.seconds))
        start = time.monotonic()
        while not running.done():
            await asyncio.wait([running], timeout=args.sample)
            samples.append({"t_s": round(time.monotonic() - start, 1), "gateway_rss": rss_of(gateway.pid),
                            "engine_rss": rss_of(engine.pid) if engine else None,
                            "lite_topics": await lite_topics(caller), "in_flight": load.in_flight,
                            "done": load.done, "errors": dict(load.errors)})
            progress(str(samples[-1]))
        await running
    finally:
        await caller.aclose()
        for proc in (gateway, engine):
            if proc is not None:
                await asyncio.to_thread(proc.term)
    return {"bench": "soak", "backend": args.backend, "seconds": args.seconds, "rate": args.rate,
            "channel_idle_seconds": args.channel_idle, "task_retention_seconds": args.retention,
            "environment": environment(), "tasks_done": load.done, "tasks_per_s": round(load.done / args.seconds, 1),
            "peak_in_flight": load.peak, "errors": load.errors, "quota_errors": load.errors.get("quota", 0),
            "lite_topics_max": max((s["lite_topics"] or 0 for s in samples), default=None),
            **flatness(samples, args.warmup), "samples": samples}


async def lite_topics(caller: Caller) -> int | None:
    """Lite topics the engine holds (reply and control channels), from the gateway's /healthz."""
    try:
        return (await caller.http.get("/healthz")).json()["detail"].get("lite_topics")
    except Exception:       # a sample without it: the gateway was busy or answering an error
        return None


def flatness(samples: list[dict], warmup: float) -> dict:
    """RSS after warm-up: the mean of the last third of samples over the mean of the first third."""
    steady = [s["gateway_rss"] for s in samples if s["t_s"] >= warmup and s["gateway_rss"]]
    if len(steady) < 3:
        return {"rss_growth_ratio": None, "rss_flat": None}
    third = len(steady) // 3
    ratio = (sum(steady[-third:]) / third) / (sum(steady[:third]) / third)
    return {"rss_growth_ratio": round(ratio, 3), "rss_flat": ratio < 1.1}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1800.0)
    parser.add_argument("--rate", type=float, default=200.0, help="tasks per second (default %(default)s)")
    parser.add_argument("--backend", choices=["embedded", "remote"], default="embedded")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of samples RSS flatness ignores")
    parser.add_argument("--max-in-flight", type=int, default=512)
    parser.add_argument("--retention", type=float, default=None,
                        help="gateway.task_retention_seconds (default: the gateway's, 7 days): an ended task's "
                             "index rows stay in the engine's memory this long (~2 KB each), so RSS levels "
                             "off only once tasks expire as fast as they arrive")
    parser.add_argument("--channel-idle", type=float, default=None,
                        help="gateway.channel_idle_seconds (default: the gateway's): lite topics plateau at "
                             "about 2 x rate x this")
    emit(asyncio.run(soak(parser.parse_args())))


if __name__ == "__main__":
    main()
