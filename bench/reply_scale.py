"""Reply latency with many open reply channels: publish of a reply event -> the waiting caller
has it, on the embedded lite engine, with N lite topics subscribed by the gateway-side consumer.

Two engines live in the same process and are measured in alternating rounds: one with
--channels open reply channels (default 200,000), one with --baseline-channels (default 1,000).
Each has one LiteConsumer (one client id, as one gateway instance) subscribed to every channel,
one channel at a time as the call side does (`open_s` is that time). Every sample picks a random
open channel, registers a waiting caller on it, publishes one reply event on it and stops the
clock when the caller's task runs again with the event in hand (wall clock, perf_counter).
The process runs the gateway's collector settings (gateway.process.tune_gc) and the relay is
wired as TaskService wires it (its index writes deferred on the embedded engine).
`cpu_us_per_sample` is the process CPU time of the timed rounds divided by their samples: on a
busy machine the wall-clock figures carry other processes' load, this one does not.

Modes (--modes):
  port   the Backend port only (adapters/lite.py): a poll loop like the relay's hands each
         delivery to the future of the caller waiting on that channel, then acks it.
  relay  the real gateway relay (gateway/tasks/relay.py, real task index): the caller is a Watch
         on its task, the event a WORKING status update (a ReplyEvent as workers send it);
         the relay decodes, folds and pushes it to the watch, and indexes it later.

--concurrency callers are in flight at once (each on its own channel). --store picks the engine's
durability: memory (no data directory) or an fsync policy with a temporary data directory (the
gateway's default is batch: the publish and the delivery attempt are each made durable before
they count). Output: p50/p90/p99/max in ms, the share of samples over 1 s, RSS, open time, and
the ratio of the large to the small channel count.

    python -m bench.reply_scale [--channels 200000] [--baseline-channels 1000] [--samples 2000]
                                [--concurrency 1,16] [--modes port,relay] [--store memory]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import math
import random
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from a2a.types import a2a_pb2

from adapters.base import Message, TopicSpec
from adapters.lite import EmbeddedLiteBackend
from gateway.tasks import channels
from gateway.tasks.envelope import ReplyEvent
from gateway.process import tune_gc
from gateway.tasks.index import TaskIndex
from gateway.tasks.relay import Active, Relay
from gateway.tasks.watch import Watch
from lite_engine import EngineConfig

from ._util import emit, environment, process_cpu_s, progress, rss_bytes, sizes, words

MODES = ("port", "relay")
STORES = ("memory", "never", "batch", "always")
GOAL_P50_MS = 5.0
ANCHOR_P99_MS = 15.0         # RocketMQ-A2A paper: ~15 ms at 200k channels
SAMPLE_TIMEOUT = 30.0
BODY = b'{"reply":"' + b"r" * 80 + b'"}'


@dataclass
class Rig:
    """One engine, its reply parent and one consumer subscribed to `len(task_ids)` channels."""
    backend: EmbeddedLiteBackend
    consumer: object
    task_ids: list[str]
    open_s: float = 0.0
    open_cpu_s: float = 0.0
    rss_growth: int = 0
    waiting: dict[str, asyncio.Future] = field(default_factory=dict)
    relay: Relay | None = None
    loop: asyncio.Task | None = None

    @property
    def channels(self) -> int:
        return len(self.task_ids)


async def open_rig(n: int, store: str, workdir: Path) -> Rig:
    config = EngineConfig(data_dir=None if store == "memory" else workdir / f"engine-{n}",
                          fsync="batch" if store == "memory" else store, session_timeout=3600.0,
                          max_lite_topics=max(2 * n, 10_000), max_subscriptions_per_client=max(n, 1))
    backend = EmbeddedLiteBackend(config)
    await backend.start()
    await backend.create_topic(TopicSpec(channels.REPLY_TOPIC, lite=True))
    consumer = await backend.lite_consumer(channels.REPLY_TOPIC, "gw-bench", "gw-bench")
    rig = Rig(backend, consumer, [uuid.uuid4().hex for _ in range(n)])
    before = settled_rss()
    t0, c0 = time.perf_counter(), process_cpu_s()
    for task_id in rig.task_ids:            # one channel per call, as TaskService.submit opens them
        await consumer.subscribe([channels.reply_channel(task_id)])
    rig.open_s, rig.open_cpu_s = time.perf_counter() - t0, process_cpu_s() - c0
    rig.rss_growth = settled_rss() - before
    return rig


class GcPauses:
    """Collector pauses per generation while measuring: a full collection walks every object the
    process holds, so its pause grows with the open channels and lands on whichever rig is running."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0

    def __enter__(self) -> "GcPauses":
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._started)

    def report(self) -> dict:
        return {f"gen{g}": {"collections": len(p), "max_ms": round(max(p, default=0.0) * 1000, 3),
                            "total_ms": round(sum(p) * 1000, 3)} for g, p in self.pauses.items()}


def settled_rss() -> int:
    gc.collect()
    return rss_bytes()


async def close_rig(rig: Rig) -> None:
    await stop_loop(rig)
    await rig.consumer.close()
    await rig.backend.close()


# ------------------------------------------------------------------ the gateway side's loops

async def port_loop(rig: Rig) -> None:
    """The relay's shape on the bare port: poll, hand each event to its waiting caller, ack."""
    while True:
        batch = await rig.consumer.poll(max_messages=64, wait=1.0)
        for d in batch:
            fut = rig.waiting.pop(d.lite_topic, None)
            if fut is not None and not fut.done():
                fut.set_result(d.body)
        await asyncio.gather(*(d.ack() for d in batch))


async def start_loop(rig: Rig, mode: str) -> None:
    if mode == "relay":
        rig.relay = Relay(rig.consumer, await TaskIndex.open(rig.backend))
        rig.relay.backend = rig.backend     # as TaskService.start wires it (deferred index writes)
        rig.loop = asyncio.get_running_loop().create_task(rig.relay.run())
    else:
        rig.loop = asyncio.get_running_loop().create_task(port_loop(rig))


async def stop_loop(rig: Rig) -> None:
    if rig.loop is not None:
        rig.loop.cancel()
        await asyncio.gather(rig.loop, return_exceptions=True)
        rig.loop = None
    if rig.relay is not None:
        await rig.relay.close()
        rig.relay = None


# ------------------------------------------------------------------ one sample

async def port_sample(rig: Rig, task_id: str) -> float:
    name = channels.reply_channel(task_id)
    fut = asyncio.get_running_loop().create_future()
    rig.waiting[name] = fut
    t0 = time.perf_counter()
    await rig.backend.publish(channels.REPLY_TOPIC, Message(BODY), lite_topic=name)
    async with asyncio.timeout(SAMPLE_TIMEOUT):
        await fut
    return time.perf_counter() - t0


_seqs = itertools.count()


def working_event(task_id: str) -> bytes:
    update = a2a_pb2.TaskStatusUpdateEvent(task_id=task_id, context_id=task_id)
    update.status.state = a2a_pb2.TASK_STATE_WORKING
    return ReplyEvent(task_id, 1, next(_seqs), a2a_pb2.StreamResponse(status_update=update)).encode()


async def relay_sample(rig: Rig, task_id: str) -> float:
    active = rig.relay.active.get(task_id)
    if active is None:
        active = rig.relay.active[task_id] = Active(a2a_pb2.Task(id=task_id), started=None)
    watch = Watch(task_id)
    active.watches.append(watch)
    body = working_event(task_id)           # the worker's cost, not the delivery's
    events = watch.events()
    try:
        t0 = time.perf_counter()
        await rig.backend.publish(channels.REPLY_TOPIC, Message(body, {"task_id": task_id}),
                                  lite_topic=channels.reply_channel(task_id))
        async with asyncio.timeout(SAMPLE_TIMEOUT):
            await anext(events)
        return time.perf_counter() - t0
    finally:
        active.watches.remove(watch)
        await events.aclose()


async def round_of(rig: Rig, mode: str, count: int, concurrency: int, rng: random.Random) -> list[float]:
    """`count` samples, `concurrency` callers at once, each on a channel no other caller holds."""
    sample = relay_sample if mode == "relay" else port_sample
    ids = rig.task_ids
    picks = (ids[rng.randrange(len(ids))] for _ in itertools.count())
    busy: set[str] = set()
    out: list[float] = []
    budget = iter(range(count))

    async def caller() -> None:
        for _ in budget:
            task_id = next(t for t in picks if t not in busy)
            busy.add(task_id)
            try:
                out.append(await sample(rig, task_id))
            finally:
                busy.discard(task_id)
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return out


# ------------------------------------------------------------------ figures

def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def figures(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    ms = lambda s: round(s * 1000, 3)
    return {"samples": len(ordered), "p50_ms": ms(percentile(ordered, 0.5)), "p90_ms": ms(percentile(ordered, 0.9)),
            "p99_ms": ms(percentile(ordered, 0.99)), "max_ms": ms(ordered[-1]),
            "share_over_1s": round(sum(1 for s in ordered if s > 1.0) / len(ordered), 6)}


async def measure(rigs: list[Rig], mode: str, args: argparse.Namespace, rng: random.Random) -> dict:
    """Alternating rounds over the rigs (the order flips every round), for each concurrency."""
    out: dict = {}
    for rig in rigs:
        await start_loop(rig, mode)
    try:
        for c in args.concurrency:
            got: dict[int, list[float]] = {rig.channels: [] for rig in rigs}
            cpu: dict[int, float] = {rig.channels: 0.0 for rig in rigs}
            for rig in rigs:
                await round_of(rig, mode, args.warmup, c, rng)
            per_round = max(1, args.samples // args.rounds)
            for r in range(args.rounds):
                for rig in (rigs if r % 2 == 0 else rigs[::-1]):
                    c0 = process_cpu_s()
                    got[rig.channels] += await round_of(rig, mode, per_round, c, rng)
                    cpu[rig.channels] += process_cpu_s() - c0
            out[f"c{c}"] = {str(n): {**figures(lat), "cpu_us_per_sample": round(cpu[n] / len(lat) * 1e6, 1)}
                            for n, lat in got.items()}
            progress(f"{mode} c{c}: " + ", ".join(f"{n}: p50 {f['p50_ms']} ms p99 {f['p99_ms']} ms"
                                                   for n, f in out[f"c{c}"].items()))
    finally:
        for rig in rigs:
            await stop_loop(rig)
    return out


def ratios(results: dict, small: int, large: int) -> dict:
    return {mode: {c: {q: round(points[str(large)][q] / points[str(small)][q], 3) if points[str(small)][q] else None
                       for q in ("p50_ms", "p99_ms")}
                   for c, points in by_c.items()}
            for mode, by_c in results.items()}


def goal(results: dict, large: int) -> dict:
    """The p50 goal at every point; a miss that the baseline misses too is not the channel count."""
    points = {f"{mode}_{c}": points[str(large)]["p50_ms"] for mode, by_c in results.items()
              for c, points in by_c.items()}
    return {"p50_ms_max": GOAL_P50_MS, "channels": large, "p50_ms": points,
            "met": {name: p50 <= GOAL_P50_MS for name, p50 in points.items()},
            "anchor": f"RocketMQ-A2A paper: ~{ANCHOR_P99_MS:g} ms at 200k channels (compare p99_ms)"}


async def run(args: argparse.Namespace) -> dict:
    tune_gc()       # the collector settings of a gateway process (`topicbridge serve` does the same)
    env = environment()
    rng = random.Random(args.seed)
    rigs: list[Rig] = []
    with tempfile.TemporaryDirectory(prefix="tb-reply-scale-") as tmp:
        try:
            for n in (args.baseline_channels, args.channels):
                progress(f"opening {n} reply channels ({args.store})")
                rigs.append(await open_rig(n, args.store, Path(tmp)))
                progress(f"opened {n} in {rigs[-1].open_s:.2f} s")
            with GcPauses() as pauses:
                results = {mode: await measure(rigs, mode, args, rng) for mode in args.modes}
            health = {str(rig.channels): await rig.backend.health() for rig in rigs}
            rss = settled_rss()
        finally:
            for rig in rigs:
                await close_rig(rig)
    small, large = args.baseline_channels, args.channels
    return {
        "bench": "reply_scale",
        "measures": "publish of one reply event -> the waiting caller's task runs with it (wall clock)",
        "channels": large, "baseline_channels": small, "store": args.store,
        "layout": {"consumers": 1, "subscriptions_per_consumer": "all channels", "engines": 2,
                   "rounds": args.rounds, "order": "alternating (flips every round)", "warmup": args.warmup},
        "results": results,
        "ratio_vs_baseline": ratios(results, small, large),
        "goal": goal(results, large),
        "open": {str(rig.channels): {"seconds": round(rig.open_s, 3), "cpu_seconds": round(rig.open_cpu_s, 3),
                                     "us_per_channel": round(rig.open_s / rig.channels * 1e6, 2),
                                     "rss_growth_bytes": rig.rss_growth,
                                     "rss_bytes_per_channel": round(rig.rss_growth / rig.channels, 1)}
                 for rig in rigs},
        "rss_bytes": rss,
        "gc_pauses_while_measuring": pauses.report(),
        "engine_health": {n: {"lite_topics": h.detail["lite_topics"], "ok": h.ok} for n, h in health.items()},
        "environment": env,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.reply_scale", description=__doc__.split("\n")[0])
    p.add_argument("--channels", type=int, default=200_000, help="open reply channels (default 200000)")
    p.add_argument("--baseline-channels", type=int, default=1000, help="the same run's baseline (default 1000)")
    p.add_argument("--samples", type=int, default=2000, help="timed samples per mode, concurrency and size")
    p.add_argument("--concurrency", type=sizes, default=[1, 16], help="callers in flight (default 1,16)")
    p.add_argument("--modes", type=words(MODES), default=list(MODES), help="port,relay (default both)")
    p.add_argument("--store", choices=STORES, default="memory", help="memory or an fsync policy (default memory)")
    p.add_argument("--rounds", type=int, default=10, help="alternating rounds the samples are split into")
    p.add_argument("--warmup", type=int, default=100, help="untimed samples per size before each point")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if not 1 <= args.baseline_channels < args.channels:
        p.error("--baseline-channels must be >= 1 and below --channels")
    if args.samples < 1 or args.rounds < 1 or args.warmup < 0:
        p.error("--samples and --rounds must be >= 1, --warmup >= 0")
    if max(args.concurrency) > args.baseline_channels:
        p.error("--concurrency may not exceed --baseline-channels (one channel per caller)")
    return args


def main(argv: list[str] | None = None) -> None:
    emit(asyncio.run(run(parse_args(argv))))


if __name__ == "__main__":
    main()
