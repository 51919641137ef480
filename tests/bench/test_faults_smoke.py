"""bench.faults and bench.soak run end to end in a tiny configuration and print one JSON object.
Timings are never asserted."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_faults_reports_the_tally_and_recovery_time_of_one_kind():
    out = run_bench("bench.faults", "--kinds", "ack-failing", "--backend", "embedded", "--tasks", "4")
    (result,) = out["results"]
    assert {"sent", "completed", "failed_with_reason", "lost", "stuck", "duplicated", "recovery_s", "ok"} <= set(result)
    assert result["kind"] == "ack-failing" and result["backend"] == "embedded" and result["accepted"] > 0
    assert result["lost"] == 0 and result["stuck"] == 0 and out["failing"] == []


def test_soak_samples_rss_in_flight_and_errors_over_a_few_seconds():
    out = run_bench("bench.soak", "--seconds", "3", "--rate", "20", "--sample", "1", "--warmup", "0")
    assert out["tasks_done"] > 0 and out["quota_errors"] == 0 and out["samples"]
    assert {"gateway_rss", "in_flight", "done", "errors"} <= set(out["samples"][-1])
