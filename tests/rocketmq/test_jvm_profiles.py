"""The cluster's JVM profiles: the tests' quick-start one by default, the benchmarks' full-JIT one
on request, and broker settings that keep an idle broker idle."""

import os
import uuid
from pathlib import Path

import pytest

from deploy.rocketmq import JVM_PROFILES, RocketMQCluster


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_the_tests_cluster_runs_the_quick_start_jvm_profile(cluster):
    for component in ("broker", "proxy"):
        args = _cmdline(cluster.pids()[component])
        assert "-XX:TieredStopAtLevel=1" in args
        assert f"-Xmx{JVM_PROFILES['fast'].heaps[component]}" in args


def test_the_perf_profile_runs_the_full_jit_with_fixed_heaps_and_mqadmin_stays_quick(tmp_path):
    cluster = RocketMQCluster(tmp_path, jvm="perf")
    broker = cluster._java_command("broker")
    assert not any(arg.startswith("-XX:TieredStopAtLevel") for arg in broker)
    assert "-Xms2g" in broker and "-Xmx2g" in broker and "-XX:+UseG1GC" in broker
    assert "-XX:TieredStopAtLevel=1" in cluster._java_command("admin")


def test_an_unknown_jvm_profile_is_refused_naming_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"\['fast', 'perf'\]"):
        RocketMQCluster(tmp_path, jvm="turbo")


def test_the_broker_flushes_its_timer_wheel_and_consume_queues_seldom_not_every_second(cluster):
    # Each timer flush compares the whole 38.7 MB wheel byte by byte, each consume-queue flush
    # walks every lite topic's queue: once a second they kept an idle broker at 20-50% of a core.
    conf = (cluster.workdir / "conf" / "broker.conf").read_text().splitlines()
    assert "timerFlushIntervalMs=60000" in conf and "flushIntervalConsumeQueue=10000" in conf


async def test_lite_topics_cost_the_broker_no_file_descriptor_each(cluster, backend):
    # File consume queues kept one descriptor open per lite topic until it expired: ~19,500 lite
    # topics in, the broker could create no more ("Too many open files") and stalled dispatch.
    from adapters.base import Message, TopicSpec

    parent = f"fd-{uuid.uuid4().hex[:8]}"
    await backend.create_topic(TopicSpec(parent, lite=True))
    broker = cluster.pids()["broker"]
    before = len(os.listdir(f"/proc/{broker}/fd"))
    for n in range(200):
        await backend.publish(parent, Message(b"x"), lite_topic=f"t{n}")
    after = len(os.listdir(f"/proc/{broker}/fd"))
    assert after - before < 50, f"{after - before} more descriptors for 200 lite topics"
    assert "storeType=defaultRocksDB" in (cluster.workdir / "conf" / "broker.conf").read_text().splitlines()
