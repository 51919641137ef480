"""Memory of many idle lite topics: N lite topics, each with one subscriber and one unread
100-byte message (the reply-channel case: a million tasks waiting for their answer).

The topics are spread over several lite clients of one group (--clients, default 10: a client
may hold at most max_subscriptions_per_client subscriptions, and many gateway connections is
the realistic shape). Memory mode, no data_dir. Every message body is its own bytes object,
as if it had come off the network; names are generated on the fly and subscribed in chunks, so
no list of N names stays alive in the bench.

bytes_per_lite_topic = (RSS after - RSS before) / N, RSS from /proc/self/statm, taken after a
full gc.collect() each time. "before" is an engine started with the parent topic and clients
open; "after" has every topic subscribed and holding its message.

    python -m bench.lite_scale [--topics 1000000] [--clients 10]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time

from lite_engine import Engine, EngineConfig, TopicConfig

from ._util import emit, environment, process_cpu_s, progress, rss_bytes

PARENT, GROUP = "reply", "gw"
BODY_BYTES = 100
CHUNK = 10_000
TARGET_BYTES = 1500


def lite_name(i: int) -> str:
    return f"task-{i:08d}"


def client_ranges(n: int, clients: int) -> list[range]:
    per = -(-n // clients)
    return [range(start, min(start + per, n)) for start in range(0, n, per)]


def settled_rss() -> int:
    gc.collect()
    return rss_bytes()


async def subscribe_all(engine: Engine, ranges: list[range]) -> None:
    for c, span in enumerate(ranges):
        for start in range(span.start, span.stop, CHUNK):
            stop = min(start + CHUNK, span.stop)
            engine.subscribe(f"c{c}", (lite_name(i) for i in range(start, stop)))


async def publish_all(engine: Engine, n: int) -> None:
    for i in range(n):
        await engine.publish(PARENT, os.urandom(BODY_BYTES), lite=lite_name(i))
        if i % 200_000 == 199_999:
            progress(f"published {i + 1}")


async def check_sample(engine: Engine, ranges: list[range]) -> int:
    """Prove the state is what we claim: each client gets one unread message per poll."""
    got = 0
    for c in range(len(ranges)):
        got += len(await engine.poll(f"c{c}", max_messages=1))
    return got


async def run(args: argparse.Namespace) -> dict:
    env = environment()
    n, ranges = args.topics, client_ranges(args.topics, args.clients)
    per_client = max(len(r) for r in ranges)
    engine = Engine(EngineConfig(max_lite_topics=max(n, 1), session_timeout=86_400.0,
                                 max_subscriptions_per_client=max(per_client, 1)))
    await engine.start()
    try:
        await engine.create_topic(PARENT, TopicConfig(lite=True))
        for c in range(len(ranges)):
            engine.open_client(f"c{c}", group=GROUP, topic=PARENT)
        before = settled_rss()
        progress(f"subscribing {n} lite topics over {len(ranges)} clients")
        t0, c0 = time.perf_counter(), process_cpu_s()
        await subscribe_all(engine, ranges)
        t1, c1 = time.perf_counter(), process_cpu_s()
        progress(f"publishing {n} messages of {BODY_BYTES} bytes")
        await publish_all(engine, n)
        t2, c2 = time.perf_counter(), process_cpu_s()
        after = settled_rss()
        health = engine.health()
        delivered = await check_sample(engine, ranges)
    finally:
        await engine.close()
    per_topic = (after - before) / n
    return {
        "bench": "lite_scale",
        "topics": n,
        "rss_bytes": after,
        "rss_before_bytes": before,
        "rss_growth_bytes": after - before,
        "bytes_per_lite_topic": round(per_topic, 1),
        "target_bytes_per_lite_topic": TARGET_BYTES,
        "met": per_topic <= TARGET_BYTES,
        "layout": {"clients": len(ranges), "subscriptions_per_client": per_client, "group": GROUP,
                   "subscribers_per_topic": 1, "unread_messages_per_topic": 1,
                   "body_bytes": BODY_BYTES, "mode": "memory (no data_dir)"},
        "build_seconds": {"subscribe": round(t1 - t0, 3), "publish": round(t2 - t1, 3),
                          "total": round(t2 - t0, 3), "clock": "wall (perf_counter)"},
        "build_cpu_seconds": {"subscribe": round(c1 - c0, 3), "publish": round(c2 - c1, 3),
                              "total": round(c2 - c0, 3), "clock": "process CPU (process_time)"},
        "engine_health": health,
        "check": {"clients_polled": len(ranges), "messages_received": delivered},
        "rss_source": "/proc/self/statm resident pages, after gc.collect()",
        "environment": env,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.lite_scale", description=__doc__.split("\n")[0])
    p.add_argument("--topics", type=int, default=1_000_000, help="lite topics to build (default 1000000)")
    p.add_argument("--clients", type=int, default=10, help="lite clients sharing them (default 10)")
    args = p.parse_args(argv)
    if args.topics < 1 or not 1 <= args.clients <= args.topics:
        p.error("--topics must be >= 1 and --clients in 1..topics")
    return args


def main(argv: list[str] | None = None) -> None:
    emit(asyncio.run(run(parse_args(argv))))


if __name__ == "__main__":
    main()
