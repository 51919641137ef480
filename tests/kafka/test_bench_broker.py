"""The Kafka broker the benchmarks start: its JVM profile, and its CPU counted as the backend's."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bench import brokers
from bench.backend_roundtrip import descendants_cpu
from deploy.kafka import BrokerUnavailable

from .support import skip_or_fail


def _child_jvm_args(workdir: Path) -> list[str]:
    """The command line of this process's child JVM running from `workdir`."""
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            args = (proc / "cmdline").read_bytes().decode().split("\0")
        except (OSError, ValueError):
            continue
        if ppid == os.getpid() and "kafka.Kafka" in args and any(str(workdir) in a for a in args):
            return args
    raise AssertionError(f"no child broker JVM runs from {workdir}")


async def test_the_benchmarks_broker_runs_c1_only_and_its_cpu_counts_as_this_process_descendants(tmp_path, monkeypatch):
    monkeypatch.delenv(brokers.KAFKA_JVM_ENV, raising=False)
    before = descendants_cpu()
    try:
        async with brokers.broker("kafka", tmp_path):
            args = _child_jvm_args(tmp_path)
            assert "-XX:TieredStopAtLevel=1" in args and f"-Xmx{brokers.KAFKA_HEAP}" in args
            assert descendants_cpu() > before   # starting a JVM costs CPU: the broker's, seen from here
    except BrokerUnavailable as exc:
        skip_or_fail(exc)
    assert brokers.kafka_jvm() == "fast"


def test_the_full_jit_profile_is_picked_by_the_environment(monkeypatch):
    monkeypatch.setenv(brokers.KAFKA_JVM_ENV, "full")
    assert brokers.kafka_jvm() == "full"


def test_an_unknown_kafka_jvm_profile_is_refused_naming_the_choices(tmp_path, monkeypatch):
    monkeypatch.setenv(brokers.KAFKA_JVM_ENV, "turbo")

    async def start():
        async with brokers.broker("kafka", tmp_path):
            pass

    with pytest.raises(ValueError, match=r"TB_BENCH_KAFKA_JVM must be one of \['fast', 'full'\], got 'turbo'"):
        asyncio.run(start())
