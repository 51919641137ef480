"""Admission by work in flight: a capability whose workers lag refuses new tasks instead of
queueing them without bound.

This instance counts, per capability, the tasks it submitted whose turn has not ended yet (the
relay hook `on_event` sees the end; a task whose end this instance never sees leaves the count at
its deadline). At `max_in_flight` a new submission raises CapabilityOverloadedError (503 with
`Retry-After`: the guard answers it before reading the body, gateway/http/guard.py, and the task
service checks it again for the routes the guard cannot see the capability of). Continuations
(resume) are admitted: they finish work already taken.
"""

from __future__ import annotations

import time

from a2a.types import a2a_pb2

from . import fold
from .errors import TaskError


class CapabilityOverloadedError(TaskError):
    def __init__(self, capability: str, in_flight: int, retry_after: float) -> None:
        self.capability, self.in_flight, self.retry_after = capability, in_flight, retry_after
        super().__init__("", f"capability {capability[:100]!r} has {in_flight} tasks in flight, its limit: "
                             f"retry after {retry_after:g} s")


class Admission:
    def __init__(self, max_in_flight: int | None = None, *, retry_after: float = 1.0, clock=time.time) -> None:
        self.max_in_flight = max_in_flight
        self.retry_after = retry_after
        self.clock = clock
        self._work: dict[str, dict[str, float]] = {}     # capability -> task id -> deadline (unix s)
        self._capability_of: dict[str, str] = {}
        self.refused = 0

    def in_flight(self, capability: str) -> int:
        work = self._work.get(capability)
        if not work:
            return 0
        if self.max_in_flight is not None and len(work) >= self.max_in_flight:
            now = self.clock()
            for task_id in [t for t, deadline in work.items() if deadline < now]:
                self._drop(task_id)
        return len(self._work.get(capability, ()))

    def over(self, capability: str) -> float | None:
        """Seconds to wait when `capability` is at its limit (counted as refused), else None."""
        if self.max_in_flight is None or self.in_flight(capability) < self.max_in_flight:
            return None
        self.refused += 1
        return self.retry_after

    def check(self, capability: str) -> None:
        """Raise CapabilityOverloadedError when `capability` is at its limit."""
        if self.max_in_flight is None:
            return
        count = self.in_flight(capability)
        if count >= self.max_in_flight:
            self.refused += 1
            raise CapabilityOverloadedError(capability, count, self.retry_after)

    def add(self, capability: str, task_id: str, deadline: float) -> None:
        if self.max_in_flight is None:
            return
        self._work.setdefault(capability, {})[task_id] = deadline
        self._capability_of[task_id] = capability

    def discard(self, task_id: str) -> None:
        self._drop(task_id)

    async def on_event(self, task: a2a_pb2.Task, event: a2a_pb2.StreamResponse) -> None:
        """Relay hook: a turn that ended (or waits for input) is no longer work in flight."""
        if task.id in self._capability_of and fold.is_final(task.status.state):
            self._drop(task.id)

    def _drop(self, task_id: str) -> None:
        capability = self._capability_of.pop(task_id, None)
        if capability is not None:
            work = self._work.get(capability)
            if work is not None:
                work.pop(task_id, None)
                if not work:
                    del self._work[capability]
