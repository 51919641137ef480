"""bench.gateway_e2e --timeline: the stages of calls told apart from time-ordered stamps of
several processes (`stages`), and the proxy target's processes (`plan`)."""

from bench.gateway_e2e import plan, stages


def test_stages_orders_stamps_by_median_offset_and_numbers_repeats():
    stamps = []
    for n in range(3):
        t = n * 1.0
        stamps += [("client:send", t, 0.0, "client"), ("gw:in", t + 0.001, 10.0 + n, "gw"),
                   ("commit", t + 0.002, 10.0001 + n, "gw"), ("agent:in", t + 0.003, 5.0 + n, "agent"),
                   ("commit", t + 0.004, 10.0003 + n, "gw"), ("client:recv", t + 0.005, 0.0, "client")]
    stamps.append(("late", 3.5, 0.0, "gw"))       # after the last call's answer, before any send
    out = stages(sorted(stamps, key=lambda s: s[1]))
    assert out["calls"] == 3 and round(out["p50_us"]) == 5000
    rows = {row["stamp"]: row for row in out["stages"]}
    assert [row["stamp"] for row in out["stages"]] == ["client:send", "gw:in", "commit", "agent:in", "commit#2",
                                                       "client:recv", "late"][:6]
    assert round(rows["commit#2"]["step_us"]) == 1000 and round(rows["commit#2"]["cpu_us"]) == 200
    assert rows["gw:in"]["cpu_us"] is None and rows["agent:in"]["cpu_us"] is None   # a process's first stamp


def test_the_proxy_target_starts_the_proxy_and_the_agent():
    targets, kinds = plan(["proxy"])
    assert targets == ["proxy"] and kinds == {"proxy", "agent", "bare"}
    assert "proxy" not in plan(None)[0] and "proxy" not in plan(None)[1]       # opt-in
