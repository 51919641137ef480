"""A waiting call's view of one task: the task's events, in order, until its turn ends."""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

from a2a.types import a2a_pb2

from .errors import SubscriberTooSlowError

log = logging.getLogger("topicbridge.tasks")

WATCH_QUEUE = 1024


class Watch:
    """The events of one task for one waiting call. Bounded: a consumer too slow to keep up
    is cut off (it can re-subscribe and gets the folded task first)."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self._queue: asyncio.Queue = asyncio.Queue(WATCH_QUEUE)
        self.overflowed = False

    def push(self, event: a2a_pb2.StreamResponse | None) -> None:
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            log.warning("watcher of task %s fell %d events behind; closing it", self.task_id, WATCH_QUEUE)
            self._queue = asyncio.Queue(1)
            self._queue.put_nowait(None)

    async def events(self) -> AsyncIterator[a2a_pb2.StreamResponse]:
        while (event := await self._queue.get()) is not None:
            yield event
        if self.overflowed:
            raise SubscriberTooSlowError(self.task_id)
