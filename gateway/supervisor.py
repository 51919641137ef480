"""One supervisor for every background loop of a gateway instance.

A loop is a coroutine function that runs until cancelled. If it raises, the supervisor logs the
traceback, marks the loop down (so `/readyz` names it), waits with exponential backoff and runs
it again; a loop that returns normally has finished its work and is not restarted. Cancellation
is never swallowed: `close` cancels every loop at once and waits for them.

Stopping is bounded: a loop that does not end within `stop_seconds` of its cancellation (it
awaits something in a `finally` that hangs: a backend call to a broker that went away) is left
behind with a warning naming it, so one stuck loop cannot hold a SIGTERM'd gateway for the
backend's own timeouts. What such a loop held is the backend's to give back (invisibility,
sessions): nothing accepted is lost.

Caller: the parts that own a loop (task relay, lifetimes, bridges watcher, push sender, workers).
Affects: `down()` (readiness), the restart counters (metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

log = logging.getLogger("topicbridge.supervisor")

Loop = Callable[[], Awaitable[None]]
STOP_SECONDS = 3.0      # a cancelled loop's time to end before it is left behind


@dataclass
class LoopState:
    name: str
    task: asyncio.Task | None = None
    restarts: int = 0
    last_error: str = ""
    crashed: bool = False               # crashed and not yet healthy again
    running_since: float | None = None  # monotonic start of the current run, None while waiting


class Supervisor:
    def __init__(self, *, backoff: float = 0.1, max_backoff: float = 10.0, healthy_after: float = 5.0,
                 stop_seconds: float = STOP_SECONDS) -> None:
        self.backoff = backoff
        self.stop_seconds = stop_seconds
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after      # a loop that has run this long since a crash is up again
        self.loops: dict[str, LoopState] = {}

    def spawn(self, name: str, loop: Loop) -> asyncio.Task:
        """Run `loop` supervised under `name` (unique among running loops)."""
        old = self.loops.get(name)
        if old is not None and old.task is not None and not old.task.done():
            raise ValueError(f"a loop named {name!r} is already running")
        state = self.loops[name] = LoopState(name)
        state.task = asyncio.get_running_loop().create_task(self._run(state, loop), name=f"supervised:{name}")
        return state.task

    async def _run(self, state: LoopState, loop: Loop) -> None:
        delay = self.backoff
        while True:
            state.running_since = time.monotonic()
            try:
                await loop()
                state.crashed = False
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:      # a bug in one loop must not end the instance's work silently
                if time.monotonic() - state.running_since >= self.healthy_after:
                    delay = self.backoff        # it had recovered: start the backoff over
                state.running_since = None
                state.crashed = True
                state.restarts += 1
                state.last_error = f"{type(e).__name__}: {e}"[:500]
                log.exception("background loop %r failed (restart %d in %.1fs)", state.name, state.restarts, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    def down(self) -> dict[str, str]:
        """Loops that crashed and have not yet run `healthy_after` seconds since: name -> last error."""
        now = time.monotonic()
        out = {}
        for state in self.loops.values():
            if state.crashed and state.running_since is not None and now - state.running_since >= self.healthy_after:
                state.crashed = False
            if state.crashed:
                out[state.name] = state.last_error
        return out

    async def stop(self, name: str) -> None:
        state = self.loops.pop(name, None)
        if state is not None and state.task is not None:
            await self._end(state.task)

    async def close(self) -> None:
        states = [self.loops.pop(name) for name in list(self.loops)]
        await asyncio.gather(*(self._end(s.task) for s in states if s.task is not None))

    async def _end(self, task: asyncio.Task) -> None:
        task.cancel()
        # wait(), not wait_for(): the task is not cancelled twice, and our own cancellation still propagates
        done, _ = await asyncio.wait({task}, timeout=self.stop_seconds)
        if not done:
            log.warning("background loop %r did not end within %.0f s of its cancellation; left behind",
                        task.get_name().removeprefix("supervised:"), self.stop_seconds)
            return
        with contextlib.suppress(asyncio.CancelledError):
            task.result()
