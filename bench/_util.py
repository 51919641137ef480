"""Helpers shared by the benchmarks: one JSON object on stdout, progress on stderr, CPU clocks,
medians and the resident set size."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Iterable

_PAGE = os.sysconf("SC_PAGE_SIZE")


def emit(result: dict) -> None:
    """Print the benchmark's single JSON result on stdout."""
    json.dump(result, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
    sys.stdout.flush()


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: Iterable[float]) -> float:
    return statistics.median(values)


def sizes(text: str) -> list[int]:
    """argparse type for comma-separated positive integers, e.g. "10,1000,100000"."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def words(choices: Iterable[str]):
    """argparse type for a comma-separated subset of `choices`."""
    allowed = list(choices)

    def parse(text: str) -> list[str]:
        picked = [part.strip() for part in text.split(",") if part.strip()]
        bad = [p for p in picked if p not in allowed]
        if bad or not picked:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {allowed}, got {text!r}")
        return picked
    return parse


def thread_cpu_ns() -> int:
    """CPU time of the calling thread; on Linux CLOCK_THREAD_CPUTIME_ID, 1 ns resolution."""
    return time.thread_time_ns()


def process_cpu_s() -> float:
    """CPU time of the whole process, worker threads (fsync) included."""
    return time.process_time()


def check_fine_clock(clock=time.thread_time_ns, need_ns: int = 10_000) -> int:
    """Return the smallest step the clock shows; raise if it is coarser than `need_ns`.

    Per-message medians of a few microseconds are meaningless on a tick-based clock (some
    platforms advance CPU time in 1-16 ms steps)."""
    step, last = None, clock()
    for _ in range(100_000):
        now = clock()
        if now != last:
            step = now - last if step is None else min(step, now - last)
            last = now
            if step <= need_ns:
                break
    if step is None or step > need_ns:
        raise RuntimeError(f"the CPU clock advances in steps of {step} ns; need <= {need_ns} ns")
    return step


def bracket_overhead_ns(clock=time.thread_time_ns, n: int = 20_000) -> float:
    """Median of an empty `clock() ... clock()` bracket: the bias each timed span carries."""
    spans = []
    for _ in range(n):
        t0 = clock()
        spans.append(clock() - t0)
    return median(spans)


def rss_bytes() -> int:
    """Current resident set size, from /proc/self/statm (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def environment() -> dict:
    """What a reader needs to judge a figure measured on a shared machine."""
    return {"python": sys.version.split()[0], "cpus": os.cpu_count(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
