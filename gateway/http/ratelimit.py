"""Per-principal request rate limits: 429 with `Retry-After` past `gateway.rate_limit`.

The limit is a `limits` rate string ("100/second", "100/second;3000/minute": every part must
hold), counted per principal (the token's or JWT's identity; the client address for callers
without one) with a sliding window in memory, so per gateway instance. Library: `limits` (the
rate limiter behind Flask-Limiter and SlowAPI: tested window algorithms, async API).
"""

from __future__ import annotations

import math
import time

from limits import parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter


class RateLimiter:
    def __init__(self, rate: str) -> None:
        self.items = parse_many(rate)           # ValueError for a string that is not a rate
        self.limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self.refused = 0

    async def retry_after(self, key: str) -> float | None:
        """None if `key` may make this request now (it is counted), else seconds to wait."""
        for item in self.items:
            if not await self.limiter.hit(item, key):
                stats = await self.limiter.get_window_stats(item, key)
                self.refused += 1
                return max(1.0, math.ceil(stats.reset_time - time.time()))
        return None


def from_setting(rate: str | None) -> RateLimiter | None:
    return RateLimiter(rate) if rate else None
