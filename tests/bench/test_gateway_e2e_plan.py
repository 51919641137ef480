"""bench.gateway_e2e starts only the server processes its measured targets need."""

from bench.gateway_e2e import plan


def test_only_the_processes_the_named_targets_need_are_started():
    assert plan(["direct"]) == (["direct"], {"agent", "bare"})
    assert plan(["native", "bridged"])[1] == {"gateway", "agent", "bare"}
    assert plan(["native_memory"])[1] == {"gateway-memory", "agent", "bare"}
    targets, kinds = plan(None)
    assert "bridged_memory" not in targets and "gateway-memory" not in kinds and "gateway-traced" in kinds
