"""In-process round trips per second, for each fsync policy of the commit log.

A round trip is publish -> poll -> ack on lite topics, or publish -> receive -> ack on a
capability topic (consumer group). Each policy runs in a fresh engine with a data_dir in a new
temporary directory (under --dir); the pure in-memory engine (no data_dir) runs first as the
baseline. Every policy is measured at two concurrencies:

  c1   one task doing strict round trips: await publish, then poll/receive one message, ack it.
       With `batch` or `always` every publish waits for its own fsync.
  cN   N publisher tasks (--publishers, default 64), each awaiting its publish, and one consumer
       task taking up to N messages per poll/receive and acking them. Under `batch` the
       publishers waiting at the same time share one fsync (group commit). Where a publish
       returns without suspending (memory, never, interval, and always, whose fsync runs
       inside append) the publisher tasks do not interleave: the first one publishes until
       the load runs out, then the consumer drains. `max_unacked`, the largest backlog the
       consumer saw, shows which case a run was.

Lite messages go round-robin to 64 lite topics all subscribed by one client. Bodies are 100
bytes. Publishing stops after --messages messages or --max-seconds (whichever comes first;
the JSON says which) and the run ends when all of them are acked. msgs_per_s is messages / wall time until the last ack; loop_cpu_s is the CPU
time of the event-loop thread (the "one core" the target speaks of), process_cpu_s adds the
commit log's worker threads. `fsyncs` counts fdatasync calls on segment files, when the commit
log exposes them to count.

A policy whose engine cannot start or fails reports {"error": ...} instead of figures.

    python -m bench.engine_throughput [--policies never,interval,batch,always] [--messages 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from lite_engine import Engine, EngineConfig, TopicConfig

from ._util import emit, environment, process_cpu_s, progress, thread_cpu_ns, words

POLICIES = ("never", "interval", "batch", "always")
LITE_PARENT, CAP_TOPIC, GROUP, CLIENT = "reply", "work", "bench", "c1"
LITE_TOPICS = 64
BODY = b"m" * 100
TARGET_NEVER_MSGS_PER_S = 50_000


class Load:
    """Hands out message numbers until the count or the deadline is reached."""

    def __init__(self, messages: int, seconds: float) -> None:
        self.limit, self.deadline, self.issued = messages, time.perf_counter() + seconds, 0

    def take(self) -> int | None:
        if self.issued >= self.limit or time.perf_counter() >= self.deadline:
            return None
        self.issued += 1
        return self.issued - 1

    @property
    def stopped_by(self) -> str:
        return "count" if self.issued >= self.limit else "time"


# ---------------------------------------------------------------- workloads


def lite_name(i: int) -> str:
    return f"lt-{i % LITE_TOPICS:02d}"


async def lite_sequential(engine: Engine, load: Load) -> None:
    while (i := load.take()) is not None:
        await engine.publish(LITE_PARENT, BODY, lite=lite_name(i))
        [d] = await engine.poll(CLIENT, max_messages=1)
        engine.ack(d.receipt)


async def cap_sequential(engine: Engine, load: Load) -> None:
    while load.take() is not None:
        await engine.publish(CAP_TOPIC, BODY)
        [d] = await engine.receive(CAP_TOPIC, GROUP, max_messages=1)
        engine.ack(d.receipt)


async def concurrent(engine: Engine, load: Load, publishers: int, lite: bool) -> tuple[float, int]:
    """N publishers and one consumer; returns the perf_counter time of the last ack and the
    largest backlog (published, not yet acked) the consumer saw."""
    done = asyncio.Event()
    last_ack, max_unacked = time.perf_counter(), 0

    async def publish() -> None:
        while (i := load.take()) is not None:
            if lite:
                await engine.publish(LITE_PARENT, BODY, lite=lite_name(i))
            else:
                await engine.publish(CAP_TOPIC, BODY)

    async def consume() -> None:
        nonlocal last_ack, max_unacked
        acked = 0
        while not (done.is_set() and acked >= load.issued):
            if lite:
                got = await engine.poll(CLIENT, max_messages=publishers, wait=0.05)
            else:
                got = await engine.receive(CAP_TOPIC, GROUP, max_messages=publishers, wait=0.05)
            max_unacked = max(max_unacked, load.issued - acked)
            for d in got:
                engine.ack(d.receipt)
            if got:
                acked += len(got)
                last_ack = time.perf_counter()

    async def publish_all() -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(publishers):
                tg.create_task(publish())
        done.set()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(publish_all())
        tg.create_task(consume())
    return last_ack, max_unacked


# ---------------------------------------------------------------- measuring


@contextmanager
def counting_fsyncs():
    """Count fdatasync calls of the commit log, if it has a module-level hook to wrap."""
    try:
        from lite_engine.commitlog import segment_files
    except Exception:       # the durable log may not exist (yet); the run reports the error
        yield None
        return
    original = getattr(segment_files, "_fdatasync", None)
    if original is None:
        yield None
        return
    box, lock = [0], threading.Lock()

    def counted(fd: int) -> None:
        with lock:
            box[0] += 1
        original(fd)

    segment_files._fdatasync = counted
    try:
        yield box
    finally:
        segment_files._fdatasync = original


async def new_engine(policy: str | None, parent: Path) -> tuple[Engine, tempfile.TemporaryDirectory | None]:
    tmp = tempfile.TemporaryDirectory(prefix=f"tb-bench-{policy}-", dir=parent) if policy else None
    config = EngineConfig(data_dir=Path(tmp.name) if tmp else None, fsync=policy or "batch",
                          session_timeout=3600.0)
    engine = None
    try:
        engine = Engine(config)
        await engine.start()
        await engine.create_topic(LITE_PARENT, TopicConfig(lite=True))
        await engine.create_topic(CAP_TOPIC)
        engine.open_client(CLIENT, group=GROUP, topic=LITE_PARENT)
        engine.subscribe(CLIENT, [lite_name(i) for i in range(LITE_TOPICS)])
    except BaseException:
        if engine is not None:
            await _close_quietly(engine)
        if tmp:
            tmp.cleanup()
        raise
    return engine, tmp


async def _close_quietly(engine: Engine) -> None:
    try:
        await engine.close()
    except Exception as exc:
        progress(f"close failed: {exc!r}")


async def measure(policy: str | None, parent: Path, kind: str, publishers: int, args) -> dict:
    """One run in a fresh engine: `kind` is "lite" or "capability"; publishers 1 = round trips."""
    engine, tmp = await new_engine(policy, parent)
    try:
        with counting_fsyncs() as fsyncs:
            load = Load(args.messages, args.max_seconds)
            t0, cpu0, loop0 = time.perf_counter(), process_cpu_s(), thread_cpu_ns()
            async with asyncio.timeout(args.max_seconds * 3 + 30):
                if publishers == 1:
                    await (lite_sequential if kind == "lite" else cap_sequential)(engine, load)
                    t_end, max_unacked = time.perf_counter(), 1
                else:
                    t_end, max_unacked = await concurrent(engine, load, publishers, kind == "lite")
            cpu, loop_cpu = process_cpu_s() - cpu0, (thread_cpu_ns() - loop0) / 1e9
            synced = fsyncs[0] if fsyncs is not None and policy else None
        await engine.close()
    finally:
        await _close_quietly(engine)      # idempotent; covers the error paths
        if tmp:
            tmp.cleanup()
    elapsed = t_end - t0
    return {
        "publishers": publishers, "consumers": 1, "max_per_take": 1 if publishers == 1 else publishers,
        "max_unacked": max_unacked,
        "messages": load.issued, "stopped_by": load.stopped_by,
        "seconds": round(elapsed, 4),
        "msgs_per_s": round(load.issued / elapsed) if elapsed > 0 else None,
        "loop_cpu_s": round(loop_cpu, 4),
        "msgs_per_loop_cpu_s": round(load.issued / loop_cpu) if loop_cpu > 0 else None,
        "process_cpu_s": round(cpu, 4),
        "fsyncs": synced,
    }


async def measure_policy(policy: str | None, args) -> dict:
    label = policy or "memory"
    out: dict = {}
    for kind in ("lite", "capability"):
        for publishers in (1, args.publishers):
            name = f"{kind}_c{publishers}"
            progress(f"{label}: {name}")
            try:
                out[name] = await measure(policy, args.dir, kind, publishers, args)
            except Exception as exc:
                return {"error": _describe(exc), "failed_at": name, **out}
    return out


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


async def run(args: argparse.Namespace) -> dict:
    env = environment()
    results = {"memory": await measure_policy(None, args)}
    for policy in args.policies:
        results[policy] = await measure_policy(policy, args)
    never_c1 = results.get("never", {}).get("lite_c1", {})
    return {
        "bench": "engine_throughput",
        "unit": "messages per second, wall clock, publish -> poll/receive -> ack",
        "results": results,
        "target": {"policy": "never", "figure": "lite_c1 (strict round trips, one task)",
                   "msgs_per_s_min": TARGET_NEVER_MSGS_PER_S,
                   "msgs_per_s": never_c1.get("msgs_per_s"),
                   "msgs_per_loop_cpu_s": never_c1.get("msgs_per_loop_cpu_s"),
                   "met_wall": (never_c1.get("msgs_per_s") or 0) >= TARGET_NEVER_MSGS_PER_S,
                   "met_loop_cpu": (never_c1.get("msgs_per_loop_cpu_s") or 0) >= TARGET_NEVER_MSGS_PER_S},
        "setup": {"body_bytes": len(BODY), "lite_topics": LITE_TOPICS, "data_dir_parent": str(args.dir),
                  "messages_per_run": args.messages, "max_seconds_per_run": args.max_seconds,
                  "fsync_interval_s": EngineConfig().fsync_interval},
        "environment": env,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.engine_throughput", description=__doc__.split("\n")[0])
    p.add_argument("--policies", type=words(POLICIES), default=list(POLICIES),
                   help="comma-separated fsync policies (default never,interval,batch,always)")
    p.add_argument("--messages", type=int, default=50_000, help="messages per run (default 50000)")
    p.add_argument("--max-seconds", type=float, default=10.0, help="time bound per run (default 10)")
    p.add_argument("--publishers", type=int, default=64, help="concurrent publishers (default 64)")
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()),
                   help="where the temporary data directories go (default: the system temp dir)")
    args = p.parse_args(argv)
    if args.messages < 1 or args.max_seconds <= 0 or args.publishers < 2:
        p.error("--messages must be >= 1, --max-seconds > 0, --publishers >= 2")
    return args


def main(argv: list[str] | None = None) -> None:
    emit(asyncio.run(run(parse_args(argv))))


if __name__ == "__main__":
    main()
