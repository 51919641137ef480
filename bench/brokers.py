"""Real brokers for the benchmarks: start one, hand out started backends on it, stop it.

    async with backend("kafka", workdir) as b:        # a started KafkaBackend on a fresh broker
        ...
    async with broker("kafka", workdir) as address:   # just the broker, for several backends
        b1, b2 = KafkaBackend(address), KafkaBackend(address)

Benchmarks run Kafka with a larger heap than the tests and deploy.kafka's "fast" JVM profile
(C1 only: on 2 cores a young broker's C2 compiler costs more than C1 code loses, see
deploy.kafka.JVM_PROFILES) unless TB_BENCH_KAFKA_JVM says "full".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

KAFKA_HEAP = "512m"
KAFKA_JVM_ENV = "TB_BENCH_KAFKA_JVM"


def kafka_jvm() -> str:
    """The JVM profile a bench's Kafka broker gets: TB_BENCH_KAFKA_JVM, else "fast"."""
    from deploy.kafka import JVM_PROFILES

    profile = os.environ.get(KAFKA_JVM_ENV) or "fast"
    if profile not in JVM_PROFILES:
        raise ValueError(f"{KAFKA_JVM_ENV} must be one of {sorted(JVM_PROFILES)}, got {profile!r}")
    return profile


@contextlib.asynccontextmanager
async def broker(name: str, workdir: Path):
    """Start the broker for backend `name` in `workdir`; yield its address; stop it."""
    if name == "kafka":
        from deploy.kafka import JVM_PROFILES, KafkaBroker

        kafka = KafkaBroker(Path(workdir) / "kafka", heap=KAFKA_HEAP, jvm_options=JVM_PROFILES[kafka_jvm()])
        address = await asyncio.to_thread(kafka.start)
        try:
            yield address
        finally:
            await asyncio.to_thread(kafka.stop)
    elif name == "rocketmq":
        from deploy.rocketmq import RocketMQCluster

        cluster = RocketMQCluster(Path(workdir) / "rocketmq")
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
