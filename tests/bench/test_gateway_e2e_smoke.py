"""bench.gateway_e2e and bench.mcp_e2e run end to end in a tiny configuration and print one JSON
object with every target at every concurrency. Timings are never asserted. Without wrk they skip,
except under CI=true, where they fail."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ("--backend", "lite", "--duration", "1", "--warmup", "0")

NO_WRK = "the end-to-end benches drive wrk: apt-get install -y wrk (Debian package wrk; make bench does it as root)"


@pytest.fixture(autouse=True)
def wrk_installed():
    """Without wrk these tests skip, except under CI=true, where a missing wrk fails them."""
    if shutil.which("wrk") is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {NO_WRK}")
        pytest.skip(NO_WRK)


def run_bench(name: str, concurrency: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", f"bench.{name}", *TINY, "--concurrency", concurrency],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_gateway_e2e_reports_every_target_and_the_bridge_overhead():
    out = run_bench("gateway_e2e", "1,2")
    assert set(out["results"]) == {"native", "native_sdk", "native_nometrics", "native_traced", "bridged", "bridged_sdk", "bridged_httpx", "direct",
                                   "direct_stream", "bare"}
    for target in out["results"].values():
        assert set(target) == {"c1", "c2"}
        assert all(point["requests"] > 0 and point["errors"] == 0 for point in target.values())
        assert {"tasks_per_s", "p50_ms", "p99_ms"} <= set(target["c1"])
    assert isinstance(out["overhead_ms_p50"], float) and out["native_tasks_per_s_c2"] > 0
    assert isinstance(out["overhead_vs_stream_ms_p50"], float) and out["lean_vs_sdk_dispatch_c2"] > 0


def test_gateway_e2e_timeline_stamps_the_stages_of_a_bridged_call():
    proc = subprocess.run([sys.executable, "-m", "bench.gateway_e2e", "--backend", "lite", "--timeline", "5",
                           "--targets", "bridged,proxy"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out["results"]) == {"bridged", "proxy"}
    stamps = {row["stamp"] for row in out["results"]["bridged"]["stages"]}
    assert {"client:send", "gateway:in", "submit", "io:fsynced", "worker:delivery", "bridge:call", "agent:in",
            "agent:out", "bridge:answer", "emit", "relay:batch", "handler:settled", "gateway:out",
            "client:recv"} <= stamps
    assert {"proxy:in", "agent:in", "agent:out", "proxy:out"} <= {row["stamp"] for row in out["results"]["proxy"]["stages"]}


def test_gateway_e2e_splits_the_bridge_overhead_into_durable_writes_and_the_rest():
    proc = subprocess.run([sys.executable, "-m", "bench.gateway_e2e", *TINY, "--concurrency", "1",
                           "--targets", "bridged,bridged_memory,direct,proxy"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out["results"]) == {"bridged", "bridged_memory", "direct", "proxy"}
    assert all(point["requests"] > 0 and point["errors"] == 0 for target in out["results"].values()
               for point in target.values())
    assert out["results"]["bridged_memory"]["c1"]["cpu_us_per_task"] > 0
    assert isinstance(out["overhead_memory_ms_p50"], float) and isinstance(out["durable_ms_p50"], float)
    # the proxy (opt-in): the floor of a Python hop in front of the same agent
    assert out["results"]["proxy"]["c1"]["cpu_us_per_task"] > 0
    assert isinstance(out["proxy_overhead_ms_p50"], float) and isinstance(out["overhead_above_proxy_ms_p50"], float)


def test_mcp_e2e_reports_both_tools_next_to_the_a2a_figures():
    out = run_bench("mcp_e2e", "2")
    assert set(out["mcp"]) == {"native", "native_sdk", "bridged"}
    assert set(out["a2a"]) >= {"native", "native_sdk", "bridged", "direct", "direct_stream", "bare"}
    for tool in out["mcp"].values():
        point = tool["c2"]
        assert point["requests"] > 0 and point["errors"] == 0 and {"calls_per_s", "p50_ms", "p99_ms"} <= set(point)
        assert point["settle_ms"] >= 0      # each point began once the gateway followed no task
    assert out["mcp_native_calls_per_s_c2"] > 0 and out["mcp_lean_vs_sdk_native_c2"] > 0
