"""The tools the benches need: a missing wrk skips the end-to-end smoke tests, except under CI=true,
where it fails them with what to install."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = "tests/bench/test_gateway_e2e_smoke.py"


def run_without_wrk(ci: str | None) -> subprocess.CompletedProcess:
    """The smoke tests in a pytest whose PATH holds no wrk (only this interpreter's folder)."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = str(Path(sys.executable).parent)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", SMOKE],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def smoke_tests() -> int:
    """How many tests the smoke module holds (each one must fail, or skip, without wrk)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", SMOKE],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    return sum(1 for line in proc.stdout.splitlines() if line.startswith(SMOKE + "::"))


def test_a_missing_wrk_fails_the_end_to_end_smoke_tests_under_ci():
    proc = run_without_wrk("true")
    assert proc.returncode == 1, proc.stdout
    assert "CI=true: the end-to-end benches drive wrk: apt-get install -y wrk" in proc.stdout
    count = smoke_tests()
    assert count >= 3 and (f"{count} failed" in proc.stdout or f"{count} errors" in proc.stdout)


def test_a_missing_wrk_skips_the_end_to_end_smoke_tests_outside_ci():
    proc = run_without_wrk(None)
    assert proc.returncode == 0, proc.stdout
    count = smoke_tests()
    assert count >= 3 and f"{count} skipped" in proc.stdout and "apt-get install -y wrk" in proc.stdout


def test_make_bench_without_wrk_and_no_way_to_install_it_stops_saying_what_to_install(tmp_path):
    (tmp_path / "id").symlink_to("/usr/bin/id")     # PATH holds neither wrk nor apt-get
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make")
    proc = subprocess.run([make, "-s", "wrk"], cwd=ROOT, env={**os.environ, "PATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "make bench needs wrk" in proc.stderr and "apt-get install -y wrk" in proc.stderr


def test_gateway_e2e_summary_leaves_out_a_figure_whose_target_measured_nothing():
    from bench.gateway_e2e import summary
    point = {"tasks_per_s": 100.0, "p50_ms": 5.0, "cpu_us_per_task": 4000.0}
    results = {t: {"c1": dict(point), "c64": dict(point)} for t in ("native", "direct", "bare", "bridged")}
    results["bare"]["c64"]["tasks_per_s"] = 0.0     # a target that answered nothing: a figure's divisor
    figures = summary(results, [1, 64])
    assert "bridged_vs_direct_c64" in figures and "native_vs_bare_c64" not in figures


def test_a_bench_server_ends_when_its_parent_bench_is_killed():
    """A bench killed mid-run (a timeout, Ctrl-C twice, SIGKILL) leaves no server loading the machine."""
    import time
    parent = subprocess.Popen([sys.executable, "-c",
                               "import sys, time\n"
                               "from bench._http import Child\n"
                               "print(Child('bench.gateway_e2e', '--serve', 'bare').process.pid, flush=True)\n"
                               "time.sleep(120)\n"],  # sleep-ok: the parent stays until the test kills it
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        os.kill(child, 0)                   # the server runs
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        try:
            with open(f"/proc/{child}/stat") as stat:     # a zombie on its way out counts as ended
                if stat.read().split(")")[-1].split()[0] == "Z":
                    return
        except FileNotFoundError:                       # reaped in between
            return
        time.sleep(0.1)                     # sleep-ok: bounded wait for the orphan to end
    os.kill(child, 9)
    raise AssertionError(f"bench server {child} outlived its killed parent")
