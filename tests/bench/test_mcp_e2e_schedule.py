"""bench.mcp_e2e's run order: no point starts right after a heavier load on its server.

wrk ends each run with its calls in flight and the gateway cancels them; after a 64-connection
burst on the bridged tool that work lasted seconds and landed in the next point on the same
gateway process (the native c1 point's p99). The schedule is pure, so it is checked here without
servers; the smoke test in test_gateway_e2e_smoke.py runs the whole bench."""

import pytest

from bench.mcp_e2e import TOOLS, schedule

TARGETS = list(TOOLS)


def test_each_point_comes_right_after_a_warm_up_of_its_own_target_at_its_own_concurrency():
    steps = schedule(TARGETS, [1, 64])
    points = [i for i, step in enumerate(steps) if step[0] == "point"]
    assert len(points) == len(TARGETS) * 2
    for i in points:
        assert steps[i - 1] == ("warm", steps[i][1], steps[i][2])


def test_no_low_concurrency_point_follows_a_higher_concurrency_load():
    steps = schedule(TARGETS, [1, 64])
    for before, step in zip(steps, steps[1:]):
        if step[2] == 1:
            assert before[2] == 1, (before, step)


def test_targets_take_turns_at_each_concurrency():
    points = [(target, c) for kind, target, c in schedule(TARGETS, [1, 64]) if kind == "point"]
    assert points == [(t, 1) for t in TARGETS] + [(t, 64) for t in TARGETS]


def test_the_upfront_order_warms_every_target_at_the_highest_concurrency_before_any_point():
    steps = schedule(TARGETS, [1, 64], "upfront")
    assert steps[:len(TARGETS)] == [("warm", t, 64) for t in TARGETS]
    assert all(kind == "point" for kind, _, _ in steps[len(TARGETS):])
    assert steps[len(TARGETS) - 1] == ("warm", "bridged", 64) and steps[len(TARGETS)] == ("point", "native", 1)


def test_an_unknown_order_is_refused_with_the_choices_named():
    with pytest.raises(ValueError, match="point.*upfront.*'sideways'"):
        schedule(TARGETS, [1], "sideways")
