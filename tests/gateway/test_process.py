"""tune_gc: survivors of a full collection are frozen (the next full collection walks only what
came since), and every THAW_EVERY full collections everything is thawed, so a garbage cycle among
frozen objects is still collected, only later."""

import gc
import weakref

import pytest

from gateway import process


class Node:
    def __init__(self) -> None:
        self.other = self


@pytest.fixture
def tuned():
    thresholds, callbacks = gc.get_threshold(), list(gc.callbacks)
    process.tune_gc(thaw_every=3)
    try:
        yield
    finally:
        gc.callbacks[:] = callbacks
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def test_the_survivors_of_a_full_collection_are_frozen(tuned):
    kept = [Node() for _ in range(100)]
    before = gc.get_freeze_count()
    gc.collect()
    assert gc.get_freeze_count() >= before + len(kept)
    assert not any(n is kept[0] for n in gc.get_objects(generation=2))


def test_a_cycle_among_frozen_objects_is_collected_when_they_are_thawed(tuned):
    node = Node()
    gone = weakref.ref(node)
    gc.collect()                   # node survives and is frozen
    del node
    passed_over = 0
    while process_full_collections() % 3 != 2:
        gc.collect()
        assert gone() is not None  # frozen: not looked at
        passed_over += 1
    gc.collect()                   # the thaw: every object is walked again
    assert gone() is None
    assert passed_over >= 1 or process_full_collections() == 3


def test_tuning_twice_installs_one_callback(tuned):
    process.tune_gc()
    assert sum(isinstance(cb, process._FreezeSurvivors) for cb in gc.callbacks) == 1


def process_full_collections() -> int:
    return next(cb for cb in gc.callbacks if isinstance(cb, process._FreezeSurvivors)).full_collections
