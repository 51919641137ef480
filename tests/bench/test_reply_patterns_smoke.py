"""bench.reply_patterns runs every pattern end to end at a tiny size against a real broker and
prints one JSON object. Timings are never asserted; the read counts are exact at any size."""

import json
import subprocess
import sys
from pathlib import Path

from bench.reply_patterns import PATTERNS
from tests.kafka.support import broker

ROOT = Path(__file__).resolve().parents[2]


async def test_reply_patterns_report_reads_latency_and_broker_footprint_for_every_pattern():
    kafka = await broker()      # the session's broker: skips without Java, fails under CI=true
    proc = subprocess.run([sys.executable, "-m", "bench.reply_patterns", "--backend", "kafka", "--instances", "2",
                           "--tasks", "8", "--partitions", "4", "--bootstrap", kafka.bootstrap],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)

    assert list(out["patterns"]) == list(PATTERNS)
    for figures in out["patterns"].values():
        assert figures["replies"] == 8
        assert {"reads_per_reply", "p50_ms", "p99_ms", "topics", "partitions"} <= set(figures)
    patterns = out["patterns"]
    assert patterns["exclusive"]["reads_per_reply"] == 1.0 and patterns["exclusive"]["topics"] == 2
    assert patterns["broadcast"]["reads_per_reply"] == 2.0
    assert patterns["lite-routed"]["reads_per_reply"] == 1.0
    assert patterns["lite-routed"]["skipped_per_reply"] == 0.0


def test_reply_patterns_on_rocketmq_native_lite_reads_each_reply_once():
    from bench.reply_patterns import ROCKETMQ_PATTERNS
    from tests.rocketmq.cluster import shared_cluster

    cluster = shared_cluster()  # the session's cluster: skips without Java, fails under CI=true
    proc = subprocess.run([sys.executable, "-m", "bench.reply_patterns", "--backend", "rocketmq", "--instances", "2",
                           "--tasks", "8", "--partitions", "2", "--patterns", ",".join(ROCKETMQ_PATTERNS) + ",lite-routed",
                           "--bootstrap", f"{cluster.endpoint}|{cluster.namesrv_addr}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    patterns = json.loads(proc.stdout)["patterns"]

    assert list(patterns) == [*ROCKETMQ_PATTERNS, "lite-routed"]
    assert patterns.pop("lite-routed")["expressible"] is False
    for figures in patterns.values():
        assert figures["replies"] == 8
        assert {"reads_per_reply", "p50_ms", "p99_ms", "max_ms", "share_over_1s", "share_over_15s",
                "topics", "groups"} <= set(figures)
    assert patterns["exclusive"]["reads_per_reply"] == 1.0
    assert (patterns["exclusive"]["topics"], patterns["exclusive"]["groups"]) == (2, 2)
    assert patterns["broadcast"]["reads_per_reply"] == 2.0 and patterns["broadcast"]["foreign_per_reply"] == 1.0
    assert patterns["polling"]["reads_per_reply"] == 2.0
    assert patterns["lite"]["reads_per_reply"] == 1.0 and patterns["lite"]["foreign_per_reply"] == 0.0
    assert (patterns["lite"]["topics"], patterns["lite"]["groups"], patterns["lite"]["lite_topics"]) == (1, 2, 8)
