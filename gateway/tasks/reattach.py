"""Following a task by reading its reply channel directly, with a client of its own: what
SubscribeToTask does when the task is not running on this instance (it runs elsewhere, waits for
input, or its owner died).

The reader starts after the position of the task it was handed (what the caller has seen) and
yields every later event, across turns, until the task is terminal. An INPUT_REQUIRED turn end
does not end it: the next turn (resumed on any instance) comes on the same channel.

It never hangs on a channel that says nothing: after `check_after` seconds of silence it reads the
task index, and if the index knows more (the channel expired after the task ended, or another
instance folded events this reader cannot see), it yields the indexed status and ends if that is
terminal. What it folds up to a turn's end it writes to the index with compare-and-set, so a task
whose owner died is indexed by whoever watches it.
"""

from __future__ import annotations

import logging
import os
import time
from typing import AsyncIterator

from a2a.types import a2a_pb2

from adapters.base import Backend, Table
from adapters.errors import BackendError, ConflictError

from . import channels
from . import fold
from . import positions
from .envelope import EnvelopeError, ReplyEvent
from .relay import recorded

log = logging.getLogger("topicbridge.tasks")


class Reader:
    def __init__(self, backend: Backend, table: Table, instance_id: str, *, poll_wait: float,
                 check_after: float) -> None:
        self.backend, self.table = backend, table
        self.instance_id = instance_id
        self.poll_wait, self.check_after = poll_wait, check_after

    async def follow(self, seen: a2a_pb2.Task, *, to_end: bool = True) -> AsyncIterator[a2a_pb2.StreamResponse]:
        """Events after `seen` (folded into it as they go) until the task is terminal, or (not
        `to_end`) until the turn ends."""
        task_id = seen.id
        group = f"{self.instance_id}-attach-{os.urandom(3).hex()}"
        consumer = await self.backend.lite_consumer(channels.REPLY_TOPIC, group, group)
        # no position recorded: the index row of a turn's start (submit, resume), nothing folded yet
        position = positions.position_of(seen) or (recorded(seen)[1], 0, -1)
        try:
            await consumer.subscribe([channels.reply_channel(task_id)])
            quiet_since = time.monotonic()
            while not _ended(seen, to_end):
                deliveries = await consumer.poll(max_messages=64, wait=self.poll_wait)
                events = sorted(filter(None, map(_decode, deliveries)), key=lambda e: e.position)
                for event in events:
                    if event.position <= position:
                        continue        # folded into `seen` already
                    position = event.position
                    fold.apply(seen, event.event)
                    positions.stamp(seen, position)
                    yield event.event
                    if event.final:
                        await self._index(seen, position)
                if events:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= self.check_after:
                    quiet_since = time.monotonic()
                    update = await self._from_index(seen, position)
                    if update is not None:
                        position = positions.position_of(seen) or position
                        yield update
        finally:
            await consumer.close()

    async def _from_index(self, seen: a2a_pb2.Task, position: tuple) -> a2a_pb2.StreamResponse | None:
        """The indexed task, if it is further than what this reader folded: as a status event."""
        try:
            raw = await self.table.get(seen.id)
        except BackendError as e:
            log.warning("re-attach to task %s could not read the index: %s", seen.id, e)
            return None
        if raw is None:
            return None
        indexed = a2a_pb2.Task.FromString(raw)
        ahead = positions.position_of(indexed)
        if ahead is None or ahead <= position:
            return None
        seen.CopyFrom(indexed)
        update = a2a_pb2.TaskStatusUpdateEvent(task_id=seen.id, context_id=seen.context_id)
        update.status.CopyFrom(seen.status)
        return a2a_pb2.StreamResponse(status_update=update)

    async def _index(self, task: a2a_pb2.Task, position: tuple) -> None:
        """Write a turn's end to the index unless the index holds as much or more already."""
        try:
            row = await self.table.read(task.id)
            if row is not None:
                indexed = positions.position_of(a2a_pb2.Task.FromString(row[0]))
                if indexed is not None and indexed >= position:
                    return
            await self.table.put(task.id, task.SerializeToString(), expect=row[1] if row else 0)
        except ConflictError:
            pass        # written meanwhile by the owner: it knows at least as much
        except BackendError as e:
            log.warning("re-attach could not index task %s: %s", task.id, e)


def _ended(task: a2a_pb2.Task, to_end: bool) -> bool:
    state = task.status.state
    return state in fold.TERMINAL or (not to_end and state in fold.INTERRUPTED)


def _decode(delivery) -> ReplyEvent | None:
    try:
        return ReplyEvent.decode(delivery.body)
    except EnvelopeError as e:
        log.warning("re-attach skips malformed reply event %s: %s", delivery.message_id, e.reason)
        return None

