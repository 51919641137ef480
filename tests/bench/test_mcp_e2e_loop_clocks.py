"""bench.mcp_e2e's per-call event-loop figures: the serving thread's CPU and its wait for a core,
read from Linux schedstat, divided over the point's calls."""

import os
import sys

import pytest

from bench.mcp_e2e import loop_clocks, per_call

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="schedstat is Linux's")


@linux_only
def test_the_loop_clocks_of_a_process_advance_with_the_cpu_its_main_thread_spends():
    before = loop_clocks(os.getpid())
    sum(i * i for i in range(200_000))
    after = loop_clocks(os.getpid())
    assert before is not None and after is not None
    assert after[0] > before[0] and after[1] >= before[1]


def test_a_process_that_is_gone_has_no_loop_clocks():
    assert loop_clocks(2**22 + 12345) is None        # above the largest pid Linux gives (2**22)


def test_per_call_figures_divide_the_point_over_its_calls_in_microseconds():
    figures = per_call((1_000_000, 500_000), (5_000_000, 2_500_000), {"requests": 4})
    assert figures == {"loop_cpu_us_per_call": 1000.0, "loop_runq_wait_us_per_call": 500.0}


def test_a_point_without_calls_or_without_clocks_reports_no_per_call_figures():
    assert per_call((0, 0), (10, 10), {"requests": 0}) == {}
    assert per_call(None, (10, 10), {"requests": 3}) == {}
