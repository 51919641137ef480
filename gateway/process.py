"""Process-wide tuning for a process that serves the gateway (`topicbridge serve`, the benchmarks).

CPython's cyclic garbage collector runs a young-generation pass every 700 net allocations by
default. A gateway call allocates thousands of short-lived objects (request, protobuf messages,
futures, reply events), so the collector ran several times per call and its older-generation
passes walked the long-lived engine state (lite topics, cursors, the task index) again and again:
with the defaults, bench.gateway_e2e measured ~1,000 native tasks/s at concurrency 64; with
these thresholds ~1,400/s on the same machine in the same hour. Almost nothing the gateway
allocates per call is cyclic, so collecting less often costs little memory.

A full collection still walks every object the process holds, so its pause grew with the open
reply channels (bench.reply_scale: ~1.8 s at 200,000). Hence two freezes:
- at startup, what the imports built (modules, classes, functions) is frozen: never walked again;
- after each full collection, its survivors are frozen, so the next one walks only what came
  since. A garbage cycle among frozen objects is not found until they are thawed; every
  `THAW_EVERY` full collections they are, and that one collection walks the whole heap (a
  bounded leak of cyclic garbage against one long pause in `THAW_EVERY`). Objects freed by
  reference counting (nearly all) are freed whether frozen or not.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (20_000, 20, 20)
THAW_EVERY = 16


class _FreezeSurvivors:
    """gc callback: freeze what a full collection left, thaw everything every `thaw_every`."""

    def __init__(self, thaw_every: int) -> None:
        self.thaw_every, self.full_collections = thaw_every, 0

    def __call__(self, phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            if self.full_collections % self.thaw_every == self.thaw_every - 1:
                gc.unfreeze()       # this collection looks at everything once more
            return
        self.full_collections += 1
        gc.freeze()


def tune_gc(thaw_every: int = THAW_EVERY) -> None:
    """Caller: once per process, after the imports, before serving. Idempotent."""
    gc.set_threshold(*GC_THRESHOLDS)
    if any(isinstance(cb, _FreezeSurvivors) for cb in gc.callbacks):
        return
    gc.collect()
    gc.freeze()
    gc.callbacks.append(_FreezeSurvivors(thaw_every))
