"""bench.overload and bench.fuzz end to end in a tiny configuration: each prints one JSON object
with the fields the README quotes. Timings and rates are never asserted (the machine is busy);
what must hold at any size is: no 5xx, no traceback, no refusal without Retry-After, no accepted
task lost."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(name: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", f"bench.{name}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_overload_sheds_load_on_the_slow_agent_and_loses_no_accepted_task():
    out = run_bench("overload", "--seconds", "3", "--calibrate", "2", "--settle", "1", "--factor", "10",
                    "--processes", "1", "--per-process-connections", "8", "--connections", "4",
                    "--max-in-flight", "4")
    assert out["capability"] == "slow" and out["gateway_alive"] is True
    assert out["sent"] > 0 and out["admitted"] > 0
    assert out["accepted_lost"] == 0 and out["refusals_without_retry_after"] == 0
    assert {"sustainable_per_s", "offered_factor_actual", "admitted_p99_ms", "rss_before_mb", "rss_peak_mb",
            "rss_after_mb", "rss_growth_pct", "accepted_final_states"} <= set(out)


def test_fuzz_and_its_schemathesis_run_find_no_5xx_and_no_traceback():
    out = run_bench("fuzz", "--cases", "40", "--concurrency", "4", "--schemathesis", "2")
    assert out["cases"] == 40 and out["5xx"] == 0 and out["crashed"] is False and out["log_tracebacks"] == 0
    run = out["schemathesis"]
    assert run["cases"] > 0 and run["failures"] == 0 and run["log_tracebacks"] == 0, run["first_failures"]
    assert "POST /admin/agents negative" in run["per_operation"]
