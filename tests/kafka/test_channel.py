"""Which retained messages of a lite topic still exist when a subscription starts (pure)."""

from types import SimpleNamespace as Rec

from adapters.kafka.channel import alive


def test_history_keeps_only_the_incarnation_alive_when_the_subscription_starts():
    history = [Rec(offset=o, ts=t) for o, t in [(3, 100.0), (0, 10.0), (1, 11.0), (3, 100.0), (4, 101.0)]]
    assert [r.offset for r in alive(history, idle=5, since=102)] == [3, 4]     # gap 11 -> 100 ended 0-1
    assert alive(history, idle=5, since=200) == []                            # idle since 101: deleted
    assert alive([], idle=5, since=0) == []
