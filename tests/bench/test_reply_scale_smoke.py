"""bench.reply_scale runs end to end at a tiny size and prints one JSON object: every mode at every
concurrency for both channel counts, the ratio between them, the open time and RSS. Timings are
never asserted."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIGURES = {"samples", "p50_ms", "p90_ms", "p99_ms", "max_ms", "share_over_1s", "cpu_us_per_sample"}


def run_bench(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.reply_scale", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_reply_scale_reports_percentiles_for_both_channel_counts_in_every_mode_and_concurrency():
    out = run_bench("--channels", "2000", "--baseline-channels", "100", "--samples", "20", "--warmup", "2",
                    "--rounds", "2", "--concurrency", "1,4")
    assert (out["channels"], out["baseline_channels"], out["store"]) == (2000, 100, "memory")
    assert set(out["results"]) == set(out["ratio_vs_baseline"]) == {"port", "relay"}
    for mode, by_c in out["results"].items():
        assert set(by_c) == {"c1", "c4"}
        for c, points in by_c.items():
            assert set(points) == {"100", "2000"}
            for figures in points.values():
                assert set(figures) == FIGURES and figures["samples"] == 20
                assert figures["p50_ms"] <= figures["p90_ms"] <= figures["p99_ms"] <= figures["max_ms"]
                assert 0 <= figures["share_over_1s"] <= 1
            assert set(out["ratio_vs_baseline"][mode][c]) == {"p50_ms", "p99_ms"}
    assert set(out["goal"]["met"]) == {"port_c1", "port_c4", "relay_c1", "relay_c4"}
    assert set(out["open"]) == {"100", "2000"} and out["open"]["2000"]["seconds"] > 0
    assert out["engine_health"]["2000"] == {"lite_topics": 2000, "ok": True}
    assert out["rss_bytes"] > 0
    assert set(out["gc_pauses_while_measuring"]) == {"gen0", "gen1", "gen2"}


def test_reply_scale_on_a_durable_engine_reports_the_port_figures():
    out = run_bench("--channels", "300", "--baseline-channels", "10", "--samples", "6", "--warmup", "0",
                    "--rounds", "1", "--concurrency", "2", "--modes", "port", "--store", "batch")
    assert out["store"] == "batch" and set(out["results"]) == {"port"}
    assert out["results"]["port"]["c2"]["300"]["samples"] == 6


def test_reply_scale_refuses_a_baseline_not_below_the_channel_count():
    proc = subprocess.run([sys.executable, "-m", "bench.reply_scale", "--channels", "100",
                           "--baseline-channels", "100"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--baseline-channels must be >= 1 and below --channels" in proc.stderr
