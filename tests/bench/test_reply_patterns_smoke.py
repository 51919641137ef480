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
