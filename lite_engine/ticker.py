"""A periodic step that survives its own failures: the engine's housekeeping (timeouts, expiry,
storage retries, snapshots) must not stop for good because one pass raised.

A failed pass is logged with its traceback and the next one waits longer (doubling up to
`max_backoff`); `error` holds the failure until a pass succeeds, for the engine's health.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

log = logging.getLogger(__name__)


class Ticker:
    def __init__(self, name: str, step: Callable[[], Awaitable[None]], period: float,
                 max_backoff: float = 5.0) -> None:
        self.name = name
        self._step = step
        self._period = period
        self._max_backoff = max(max_backoff, period)
        self.error: str | None = None     # the last failure, until a pass succeeds
        self.failures = 0                 # in total, for health

    async def run(self) -> None:
        delay, in_a_row = self._period, 0
        while True:
            await asyncio.sleep(delay)
            try:
                await self._step()
            except Exception as exc:      # CancelledError is not an Exception: it ends the loop
                in_a_row += 1
                self.failures += 1
                delay = min(self._period * 2 ** in_a_row, self._max_backoff)
                self.error = f"{self.name} failed {in_a_row} time(s) in a row: {type(exc).__name__}: {exc}"
                log.exception("engine %s failed (%d in a row); next pass in %.2f s", self.name, in_a_row, delay)
                continue
            if in_a_row:
                log.warning("engine %s works again after %d failure(s)", self.name, in_a_row)
            delay, in_a_row, self.error = self._period, 0, None
