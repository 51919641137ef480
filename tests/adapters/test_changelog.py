"""The changelog fold: readers of a log-based table agree on compare-and-set, replays included."""

from adapters.changelog import Fold, Record


def compacted(log: list[tuple[int, Record]]) -> list[tuple[int, Record]]:
    """What Kafka's compaction keeps: the newest record of every key, at its offset."""
    newest = {record.key: offset for offset, record in log}
    return [(offset, record) for offset, record in log if newest[record.key] == offset]


def replay(log: list[tuple[int, Record]]) -> Fold:
    fold = Fold()
    for offset, record in log:
        fold.apply(record, offset)
    return fold


def state(fold: Fold) -> dict:
    return {key: (fold.values[key], fold.versions[key]) for key in fold.values}


def test_a_record_whose_expectation_fails_is_rejected_with_the_actual_version():
    fold = Fold()
    first = fold.apply(Record("put", "k", b"a", expect=0), 0)
    lost = fold.apply(Record("put", "k", b"b", expect=0), 1)
    assert (first.accepted, first.version) == (True, 1)
    assert (lost.accepted, lost.version) == (False, 1)
    assert state(fold) == {"k": (b"a", 1)} and "k" in fold.unsettled


def test_a_replay_of_the_compacted_log_after_a_restore_agrees_with_a_reader_that_saw_everything():
    live, log = Fold(), []

    def append(record):
        offset = len(log)
        log.append((offset, record))
        return live.apply(record, offset)

    append(Record("put", "k", b"a"))
    v = append(Record("put", "k", b"b", expect=1)).version
    assert not append(Record("put", "k", b"c", expect=1)).accepted   # lost a race
    append(live.restore_of("k", "r1"))                                # what the loser then writes
    assert "k" not in live.unsettled
    assert state(replay(compacted(log))) == state(live) == {"k": (b"b", v)}
    assert state(replay(log)) == state(live)


def test_a_record_whose_history_was_compacted_away_is_accepted_on_replay():
    log = [(0, Record("put", "k", b"a")), (1, Record("put", "k", b"b", expect=1)),
           (2, Record("put", "j", b"x")), (3, Record("put", "k", b"c", expect=2))]
    assert state(replay(compacted(log))) == state(replay(log)) == {"k": (b"c", 4), "j": (b"x", 3)}


def test_a_stale_restore_leaves_the_newer_row_and_asks_for_another():
    fold = Fold()
    fold.apply(Record("put", "k", b"a"), 0)
    fold.apply(Record("put", "k", b"b", expect=1), 1)
    outcome = fold.apply(Record("restore", "k", b"a", version=1), 2)
    assert not outcome.accepted and "k" in fold.unsettled
    assert state(fold) == {"k": (b"b", 2)}


def test_counter_versions_grow_across_a_delete_without_offsets():
    fold = Fold()
    assert fold.apply(Record("put", "k", b"a")).version == 1
    assert fold.apply(Record("del", "k", None, expect=1)).version == 2
    assert fold.current("k") == 0
    assert fold.apply(Record("put", "k", b"b", expect=0, base=2)).version == 3


def test_scan_pages_in_key_order():
    fold = Fold()
    for i, key in enumerate(["b/2", "a", "b/1", "b/3", "c"]):
        fold.apply(Record("put", key, key.encode()), i)
    assert fold.scan("b/", "", 2) == [("b/1", b"b/1"), ("b/2", b"b/2")]
    assert fold.scan("b/", "b/2", 2) == [("b/3", b"b/3")]
    assert fold.scan("", "b/3", 10) == [("c", b"c")]
    assert [k for k, _ in fold.items("b/")] == ["b/1", "b/2", "b/3"]
