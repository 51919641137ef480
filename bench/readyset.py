"""CPU cost of one delivered message through `poll` against the number of subscriptions.

One lite client is subscribed to S lite topics (S from --sizes). Each cycle publishes one
100-byte message to a random subscribed topic (not timed), then polls it with
`max_messages=1` and acks it (timed: poll + ack). Only one message is pending at a time, so a
poll has exactly one ready topic among S subscribed ones.

Baseline, same workload and same random topics: the classic model, a dict of topic -> deque in
which a poll walks the subscribed topics to find a non-empty one. The walk stops as soon as it
has `max_messages` messages, which is generous to the baseline (S/2 topics on average here).

How the time is measured: each poll + ack span is bracketed with `time.thread_time_ns()`
(CLOCK_THREAD_CPUTIME_ID: CPU time of the loop thread, so other processes on a busy machine
do not inflate it). The bench checks at start that this clock advances in steps of <= 1 us
and exits otherwise: on a tick-based clock (1-16 ms steps) per-message medians are
meaningless. The median of an empty bracket (the cost of reading the clock, ~0.5 us on a VM)
is measured and subtracted from every median and reported as `clock_overhead_us`. Nothing
suspends inside the bracket (a ready poll returns without awaiting), so no other task runs
in it. As a cross-check, `cycle_cpu_us` is the process CPU time of the whole measured loop
(publish, poll, ack, clock reads) divided by its cycles.

    python -m bench.readyset [--sizes 10,1000,100000] [--samples 2000] [--warmup 300]
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import deque

from lite_engine import Engine, EngineConfig

from ._util import (bracket_overhead_ns, check_fine_clock, emit, environment, median,
                    process_cpu_s, progress, sizes, thread_cpu_ns)

PARENT, GROUP, CLIENT = "reply", "bench", "c1"
BODY = b"r" * 100
FLATNESS_MAX, SPEEDUP_MIN = 1.5, 100.0


class NaiveConsumer:
    """The classic model: a read walks the subscribed topics looking for messages."""

    def __init__(self, names: list[str]) -> None:
        self.queues: dict[str, deque[bytes]] = {name: deque() for name in names}
        self.inflight: dict[int, tuple[str, bytes]] = {}
        self.next_receipt = 0

    def publish(self, name: str, body: bytes) -> None:
        self.queues[name].append(body)

    def poll(self, max_messages: int) -> list[tuple[str, bytes, int]]:
        out = []
        for name, queue in self.queues.items():
            while queue and len(out) < max_messages:
                body = queue.popleft()
                self.next_receipt += 1
                self.inflight[self.next_receipt] = (name, body)
                out.append((name, body, self.next_receipt))
            if len(out) >= max_messages:
                break
        return out

    def ack(self, receipt: int) -> None:
        del self.inflight[receipt]


def topic_names(s: int) -> list[str]:
    return [f"lt-{i:07d}" for i in range(s)]


async def engine_spans(s: int, cycles: int, warmup: int, seed: int) -> tuple[list[int], float]:
    """Thread CPU ns of each poll + ack, and the process CPU us of a whole cycle."""
    engine = Engine(EngineConfig(max_subscriptions_per_client=max(s, 1), session_timeout=3600.0))
    await engine.start()
    try:
        engine.open_client(CLIENT, group=GROUP, topic=PARENT)
        names = topic_names(s)
        engine.subscribe(CLIENT, names)
        rng = random.Random(seed)
        for _ in range(warmup):
            await _engine_cycle(engine, names[rng.randrange(s)])
        spans, cpu0 = [], process_cpu_s()
        for _ in range(cycles):
            spans.append(await _engine_cycle(engine, names[rng.randrange(s)]))
        return spans, (process_cpu_s() - cpu0) / cycles * 1e6
    finally:
        await engine.close()


async def _engine_cycle(engine: Engine, name: str) -> int:
    await engine.publish(PARENT, BODY, lite=name)
    t0 = thread_cpu_ns()
    [delivery] = await engine.poll(CLIENT, max_messages=1)
    engine.ack(delivery.receipt)
    span = thread_cpu_ns() - t0
    if delivery.lite_topic != name:
        raise RuntimeError(f"poll returned lite topic {delivery.lite_topic!r}, expected {name!r}")
    return span


def naive_spans(s: int, cycles: int, warmup: int, seed: int) -> tuple[list[int], float]:
    names = topic_names(s)
    consumer = NaiveConsumer(names)
    rng = random.Random(seed)
    for _ in range(warmup):
        _naive_cycle(consumer, names[rng.randrange(s)])
    spans, cpu0 = [], process_cpu_s()
    for _ in range(cycles):
        spans.append(_naive_cycle(consumer, names[rng.randrange(s)]))
    return spans, (process_cpu_s() - cpu0) / cycles * 1e6


def _naive_cycle(consumer: NaiveConsumer, name: str) -> int:
    consumer.publish(name, BODY)
    t0 = thread_cpu_ns()
    [(got, _, receipt)] = consumer.poll(max_messages=1)
    consumer.ack(receipt)
    span = thread_cpu_ns() - t0
    if got != name:
        raise RuntimeError(f"naive poll returned lite topic {got!r}, expected {name!r}")
    return span


def per_message_us(spans: list[int], overhead_ns: float) -> float:
    return round(max(median(spans) - overhead_ns, 0.0) / 1000, 3)


async def run(args: argparse.Namespace) -> dict:
    env = environment()
    step_ns = check_fine_clock()
    overhead = bracket_overhead_ns()
    poll_us, naive_us, cycle_us, naive_cycle_us = {}, {}, {}, {}
    for s in args.sizes:
        progress(f"engine: {s} subscriptions, {args.samples} samples")
        spans, cycle = await engine_spans(s, args.samples, args.warmup, args.seed)
        poll_us[str(s)], cycle_us[str(s)] = per_message_us(spans, overhead), round(cycle, 3)
        progress(f"naive: {s} subscriptions, {args.naive_samples} samples")
        spans, cycle = naive_spans(s, args.naive_samples, min(args.warmup, args.naive_samples), args.seed)
        naive_us[str(s)], naive_cycle_us[str(s)] = per_message_us(spans, overhead), round(cycle, 3)
    small, large = str(min(args.sizes)), str(max(args.sizes))
    flatness = poll_us[large] / poll_us[small] if poll_us[small] else None
    speedup = naive_us[large] / poll_us[large] if poll_us[large] else None
    return {
        "bench": "readyset",
        "measures": "poll(max_messages=1) + ack of the one pending message; thread CPU time, "
                    "clock-read overhead subtracted; median per message",
        "workload": "1 lite client subscribed to S lite topics; per cycle one 100-byte message "
                    "is published to a random subscribed topic (untimed), then polled and acked",
        "naive_baseline": "dict topic->deque; poll walks subscribed topics until it has "
                          "max_messages (stops early: S/2 topics on average)",
        "poll_us": poll_us,
        "naive_poll_us": naive_us,
        "flatness": _round(flatness),
        "flatness_sizes": [int(small), int(large)],
        "speedup_vs_naive": _round(speedup),
        "targets": {"flatness_max": FLATNESS_MAX, "speedup_vs_naive_min": SPEEDUP_MIN,
                    "met": flatness is not None and speedup is not None
                    and flatness <= FLATNESS_MAX and speedup >= SPEEDUP_MIN},
        "samples": {"engine": args.samples, "naive": args.naive_samples, "warmup": args.warmup},
        "cross_check_cycle_cpu_us": {"engine": cycle_us, "naive": naive_cycle_us,
                                     "note": "process CPU of publish + poll + ack + 2 clock reads, "
                                             "mean per cycle"},
        "clock": {"name": "thread_time_ns", "step_ns": step_ns,
                  "clock_overhead_us": round(overhead / 1000, 3)},
        "environment": env,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.readyset", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=sizes, default=[10, 1000, 100_000],
                   help="comma-separated subscription counts (default 10,1000,100000)")
    p.add_argument("--samples", type=int, default=2000, help="timed cycles per size (engine)")
    p.add_argument("--naive-samples", type=int, default=2000, help="timed cycles per size (baseline)")
    p.add_argument("--warmup", type=int, default=300, help="untimed cycles per size before the samples")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if args.samples < 1 or args.naive_samples < 1 or args.warmup < 0:
        p.error("--samples and --naive-samples must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> None:
    emit(asyncio.run(run(parse_args(argv))))


if __name__ == "__main__":
    main()
