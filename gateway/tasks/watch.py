"""A waiting call's view of one task: the task's events, in order, until its turn ends."""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import AsyncIterator

from a2a.types import a2a_pb2

from .errors import SubscriberTooSlowError

log = logging.getLogger("topicbridge.tasks")

WATCH_QUEUE = 1024


class Watch:
    """The events of one task for one waiting call (one reader of `events`). Bounded: a consumer
    too slow to keep up is cut off (it can re-subscribe and gets the folded task first).
    A deque and one future while the reader waits: an asyncio.Queue builds four deques and an
    Event per watch and a future per read, and every call waits on a watch."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self._events: collections.deque = collections.deque()
        self._waiter: asyncio.Future | None = None
        self.overflowed = False

    def push(self, event: a2a_pb2.StreamResponse | None) -> None:
        if self.overflowed:
            return
        if len(self._events) >= WATCH_QUEUE:
            self.overflowed = True
            log.warning("watcher of task %s fell %d events behind; closing it", self.task_id, WATCH_QUEUE)
            self._events.clear()
            event = None
        self._events.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def events(self) -> AsyncIterator[a2a_pb2.StreamResponse]:
        while True:
            while not self._events:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            event = self._events.popleft()
            if event is None:
                break
            yield event
        if self.overflowed:
            raise SubscriberTooSlowError(self.task_id)
