"""Whether a capability has a worker to take a new task, as the task service asks at submission.

A capability announced by native workers whose workers have all stopped or gone silent
(`Capability.status == "unavailable"`, counted from their heartbeats in capabilities.py) would
queue a new task until one comes back or the task's deadline passes: a caller waiting on it sees
"still running" for as long as it waits. The gateway refuses such a submission at once instead
(NoLiveWorkerError: 503 with Retry-After), unless `gateway.accept_without_live_worker` asks for
queueing. Bridged capabilities always have their bridge, so only heartbeat-announced ones count.
A read is cached for a second: submissions stay off the registry table on the hot path, and a
worker coming back is seen within that second.
"""

from __future__ import annotations

import time

from .capabilities import Registry


class Liveness:
    def __init__(self, registry: Registry, *, ttl: float = 1.0, clock=time.monotonic) -> None:
        self.registry = registry
        self.ttl = ttl
        self.clock = clock
        self._seen: dict[str, tuple[float, str | None]] = {}     # name -> (valid until, refusal)

    async def refusal(self, name: str) -> str | None:
        """Why `name` cannot take a new task now (no live worker), or None."""
        now = self.clock()
        cached = self._seen.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]
        capability = await self.registry.get(name)
        why = None
        if capability is not None and capability.heartbeat is not None and capability.status == "unavailable":
            why = capability.error or "no live workers"
        if len(self._seen) > 10_000:        # names come from callers: keep the cache bounded
            self._seen.clear()
        self._seen[name] = (now + self.ttl, why)
        return why
