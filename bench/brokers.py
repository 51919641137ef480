"""Real brokers for the benchmarks: start one, hand out started backends on it, stop it.

    async with backend("kafka", workdir) as b:        # a started KafkaBackend on a fresh broker
        ...
    async with broker("kafka", workdir) as address:   # just the broker, for several backends
        b1, b2 = KafkaBackend(address), KafkaBackend(address)

Benchmarks run Kafka with a larger heap than the tests and deploy.kafka's "fast" JVM profile
(C1 only: on 2 cores a young broker's C2 compiler costs more than C1 code loses, see
deploy.kafka.JVM_PROFILES) unless `jvm=` or TB_BENCH_KAFKA_JVM says "full". RocketMQ's
cluster likewise runs deploy.rocketmq's "fast" profile (the tests' C1-only small-heap JVMs)
unless `jvm=` or TB_BENCH_ROCKETMQ_JVM says "perf" (C2, bigger fixed heaps, G1: cheaper per
request only once warm, see `rocketmq_jvm`).
`broker_jvm(name)` says what a started broker runs, for the benches' JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

KAFKA_HEAP = "512m"
ROCKETMQ_JVM_ENV = "TB_BENCH_ROCKETMQ_JVM"
KAFKA_JVM_ENV = "TB_BENCH_KAFKA_JVM"


def kafka_jvm() -> str:
    """The JVM profile a bench's Kafka broker gets: TB_BENCH_KAFKA_JVM, else "fast"."""
    from deploy.kafka import JVM_PROFILES

    profile = os.environ.get(KAFKA_JVM_ENV) or "fast"
    if profile not in JVM_PROFILES:
        raise ValueError(f"{KAFKA_JVM_ENV} must be one of {sorted(JVM_PROFILES)}, got {profile!r}")
    return profile


def rocketmq_jvm() -> str:
    """The JVM profile a bench's RocketMQ cluster gets: TB_BENCH_ROCKETMQ_JVM, else "fast".

    "perf" pays off only once warm (JVM CPU per bench.backend_roundtrip round trip at c64, perf
    against fast, load 9-19): 13.3 against 6.9 ms on a just-started cluster (C2 compiling, ~18 s
    of CPU per JVM), 6.6 against 7.6 ms after a 6,000-round-trip warm-up, 4.0 against 5.2 ms
    once both had served ~10,000. A bench's own cluster is young, so "fast" is the default; use
    perf with `--warmup` / `--warmup-bursts` to see a long-running broker."""
    return os.environ.get(ROCKETMQ_JVM_ENV) or "fast"


def broker_jvm(name: str, jvm: str | None = None) -> str | None:
    """How `broker(name)` runs the broker's JVM(s), for a bench's JSON (None: no broker)."""
    if name == "kafka":
        from deploy.kafka import JVM_PROFILES

        profile = jvm or kafka_jvm()
        return f"{profile}: {' '.join(JVM_PROFILES[profile]) or 'C1+C2'}, -Xmx{KAFKA_HEAP}"
    if name == "rocketmq":
        from deploy.rocketmq import JVM_PROFILES

        profile = jvm or rocketmq_jvm()
        chosen = JVM_PROFILES[profile]
        heaps = ", ".join(f"{k} {v}" for k, v in chosen.heaps.items() if k != "admin")
        return f"{profile}: {' '.join(chosen.flags)}; heaps {heaps}"
    return None


@contextlib.asynccontextmanager
async def broker(name: str, workdir: Path, *, jvm: str | None = None):
    """Start the broker for backend `name` in `workdir`; yield its address; stop it.
    `jvm`: the JVM profile (default `kafka_jvm()` / `rocketmq_jvm()`)."""
    if name == "kafka":
        from deploy.kafka import JVM_PROFILES, KafkaBroker

        kafka = KafkaBroker(Path(workdir) / "kafka", heap=KAFKA_HEAP, jvm_options=JVM_PROFILES[jvm or kafka_jvm()])
        address = await asyncio.to_thread(kafka.start)
        try:
            yield address
        finally:
            await asyncio.to_thread(kafka.stop)
    elif name == "rocketmq":
        from deploy.rocketmq import RocketMQCluster

        cluster = RocketMQCluster(Path(workdir) / "rocketmq", jvm=jvm or rocketmq_jvm())
        await asyncio.to_thread(cluster.start)
        try:
            yield f"{cluster.endpoint}|{cluster.namesrv_addr}"   # proxy | name server (admin)
        finally:
            await asyncio.to_thread(cluster.stop)
    else:
        raise ValueError(f"no broker for backend {name!r}")


def new_backend(name: str, address: str, **settings):
    """An unstarted backend of kind `name` on the broker at `address`."""
    if name == "kafka":
        from adapters.kafka import KafkaBackend

        return KafkaBackend(address, **settings)
    if name == "rocketmq":
        from adapters.rocketmq import RocketMQBackend

        endpoint, admin = address.split("|")
        return RocketMQBackend(endpoint, admin=admin, **settings)
    raise ValueError(f"no broker-backed backend {name!r}")


@contextlib.asynccontextmanager
async def backend(name: str, workdir: Path, **settings):
    """Start the broker for `name`, yield a started backend on it, then close both."""
    async with broker(name, workdir) as address:
        started = new_backend(name, address, **settings)
        await started.start()
        try:
            yield started
        finally:
            await started.close()
