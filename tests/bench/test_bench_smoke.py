"""Each benchmark runs end to end in a tiny configuration and prints one JSON object.

Timings are never asserted: these runs are far too small to mean anything, and the machine
running the tests may be busy. A durable fsync policy may report {"error": ...} (that is the
bench's documented behaviour when the commit log fails); the in-memory baseline may not.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNS = ("lite_c1", "lite_c4", "capability_c1", "capability_c4")   # c4: --publishers 4


def run_bench(name: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", f"bench.{name}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_readyset_reports_engine_and_naive_medians_for_every_size():
    out = run_bench("readyset", "--sizes", "10,200", "--samples", "50", "--naive-samples", "50",
                    "--warmup", "10")
    assert set(out["poll_us"]) == set(out["naive_poll_us"]) == {"10", "200"}
    assert out["measures"] and out["flatness_sizes"] == [10, 200]
    assert isinstance(out["flatness"], float) and isinstance(out["speedup_vs_naive"], float)


def test_lite_scale_builds_every_topic_and_reports_bytes_per_topic():
    out = run_bench("lite_scale", "--topics", "500", "--clients", "2")
    assert out["topics"] == 500 and out["engine_health"]["lite_topics"] == 500
    assert out["check"]["messages_received"] == 2
    assert {"rss_bytes", "bytes_per_lite_topic", "build_seconds"} <= set(out)


def test_engine_throughput_reports_every_policy_and_concurrency(tmp_path):
    out = run_bench("engine_throughput", "--messages", "40", "--max-seconds", "0.5",
                    "--publishers", "4", "--dir", str(tmp_path))
    results = out["results"]
    assert list(results) == ["memory", "never", "interval", "batch", "always"]
    assert set(results["memory"]) == set(RUNS)
    for policy, runs in results.items():
        if "error" in runs:
            assert policy != "memory" and isinstance(runs["error"], str)
            continue
        for run in RUNS:
            assert runs[run]["messages"] >= 1 and runs[run]["msgs_per_s"] > 0
            assert runs[run]["publishers"] == (1 if run.endswith("_c1") else 4)
    assert list(tmp_path.iterdir()) == []     # every temporary data directory was removed


def test_backend_roundtrip_reports_latency_and_throughput_against_the_embedded_baseline():
    out = run_bench("backend_roundtrip", "--backend", "lite-remote", "--roundtrips", "20", "--concurrency", "1,4")
    assert out["baseline_backend"] == "lite-embedded"
    for key in ("c1", "c4"):
        assert {"p50_us", "p99_us", "roundtrips_per_s"} <= set(out["figures"][key])
        assert set(out["ratio_vs_baseline"][key]) == {"p50", "roundtrips_per_s", "total_cpu_per_roundtrip"}
        assert out["figures"][key]["engine_cpu_us_per_roundtrip"] > 0


def test_backend_roundtrip_rounds_alternate_the_backends_and_report_the_median_round():
    out = run_bench("backend_roundtrip", "--backend", "lite-remote", "--roundtrips", "20", "--concurrency", "1,4",
                    "--rounds", "3")
    assert out["rounds"] == 3
    for key in ("c1", "c4"):
        ratios = out["round_ratios_roundtrips_per_s"][key]
        assert len(ratios) == 3 and ratios == sorted(ratios)
        median = out["figures"][key]["roundtrips_per_s"] / out["baseline"][key]["roundtrips_per_s"]
        assert abs(median - ratios[1]) < 0.001
        assert out["figures"][key]["engine_cpu_us_per_roundtrip"] > 0


def test_table_scale_reports_the_table_against_a_plain_sorted_list():
    out = run_bench("table_scale", "--rows", "3000", "--ops", "50")
    for name in ("table", "list+insort"):
        assert set(out[name]["3000"]) == {"insert_us", "remove_us", "page50_us"}
    assert isinstance(out["insert_vs_insort"], float) and isinstance(out["remove_vs_insort"], float)
