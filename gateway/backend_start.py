"""Starting the backend when it may not be there yet (compose start order, a broker restarting):
retry with backoff for `gateway.backend_start_timeout` seconds, one line per failed attempt, then
give up with BackendStartError, whose message is the one line `topicbridge serve` prints."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from adapters.base import Backend
from adapters.errors import BackendError, BackendUnavailableError

log = logging.getLogger("topicbridge.gateway")
FIRST_DELAY, MAX_DELAY = 0.5, 5.0


class BackendStartError(Exception):
    def __init__(self, backend: str, attempts: int, seconds: float, reason: str) -> None:
        self.backend, self.attempts, self.seconds, self.reason = backend, attempts, seconds, reason
        super().__init__(f"backend {backend} did not start after {attempts} attempt(s) in {seconds:g} s: {reason}")


async def start_backend(backend: Backend, timeout: float) -> None:
    """`backend.start()`, again after each BackendUnavailableError until `timeout` seconds have
    passed. Other errors (bad settings, a locked data directory) are not retried."""
    loop = asyncio.get_running_loop()
    deadline, delay, attempt = loop.time() + timeout, FIRST_DELAY, 0
    name = getattr(backend, "name", type(backend).__name__)
    while True:
        attempt += 1
        try:
            await backend.start()
            return
        except BackendUnavailableError as e:
            left = deadline - loop.time()
            if left <= 0:
                raise BackendStartError(name, attempt, timeout, e.reason) from None
            wait = min(delay, left)
            log.warning("backend %s not reachable (attempt %d): %s; retrying in %.1f s, giving up in %.0f s",
                        name, attempt, e.reason, wait, left)
            with contextlib.suppress(BackendError, OSError):
                await backend.close()       # whatever the failed attempt opened
            await asyncio.sleep(wait)
            delay = min(delay * 2, MAX_DELAY)
