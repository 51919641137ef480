"""No task lost, none stuck: an instance that comes back follows its tasks again, and the tasks of
an instance that never comes back are adopted by another.

Bounds. An instance renews its lease every `lease_seconds / 3`; a crashed one's lease runs out at
most `lease_seconds` after its last renewal, and the adoption loop of every other instance looks
every `adoption_interval`. So a dead instance's unfinished tasks are followed again within
`lease_seconds + adoption_interval` (defaults 10 s + 2 s: about 12 s) of its death. A restarted
instance (same instance id) follows its own tasks before it serves its first call.

Away too long. The engine expires a reply channel nobody follows after gateway.channel_idle_seconds,
with what the worker published on it. When the instance that follows a task again (restarted, or
adopting) finds that its owner was away longer than that, it writes `away_seconds` into the
task's own metadata; should the task then reach its deadline unended, Lifetimes says the channel
expired while the gateway was away instead of only "deadline exceeded".

Caller: TaskService.start (recover), the supervisor (run). Affects: Relay.active and the reply
consumer's subscriptions (through Relay.follow), the owner and lease tables.
"""

from __future__ import annotations

import asyncio
import logging
import time

from a2a.types import a2a_pb2

from adapters.errors import BackendError, ConflictError

from . import fold
from .ownership import Owners
from .relay import Relay

log = logging.getLogger("topicbridge.tasks")

LEASE_SECONDS = 10.0
ADOPTION_INTERVAL = 2.0


class Recovery:
    def __init__(self, owners: Owners, relay: Relay, *, adoption_interval: float = ADOPTION_INTERVAL,
                 channel_idle: float | None = None) -> None:
        self.owners, self.relay = owners, relay
        self.adoption_interval = adoption_interval
        self.channel_idle = channel_idle    # None: the backend's own idle time, not known here
        self.adopted = 0                # tasks taken over from dead instances (for tests and metrics)
        self._renewed = 0.0
        self._retry: set[str] = set()   # owned tasks whose follow failed: tried again every round

    async def recover(self) -> int:
        """Follow again every task this instance owned when it stopped; returns how many."""
        away = await self.owners.away()
        await self._renew()
        count = 0
        async for task_id in self.owners.mine():
            await self._note_away(task_id, away)
            count += await self._follow(task_id)
        if count:
            log.info("following %d unfinished tasks again after a restart", count)
        return count

    async def run(self) -> None:
        while True:
            try:
                if time.monotonic() - self._renewed >= self.owners.lease_seconds / 3:
                    await self._renew()
                for task_id in list(self._retry):
                    await self._follow(task_id)
                await self.adopt()
            except BackendError as e:       # the next round tries again; the lease has slack for it
                log.warning("lease renewal or adoption failed: %s", e)
            await asyncio.sleep(self.adoption_interval)

    async def _renew(self) -> None:
        await self.owners.renew()
        self._renewed = time.monotonic()

    async def adopt(self) -> int:
        """Take over the unfinished tasks of every instance whose lease ran out."""
        count = 0
        for instance_id, version in await self.owners.expired():
            away = await self.owners.away(instance_id)
            while orphans := await self.owners.orphans(instance_id):
                taken = 0
                for task_id in orphans:
                    if await self.owners.take(instance_id, task_id):
                        taken += 1
                        await self._note_away(task_id, away)
                        count += await self._follow(task_id)
                if not taken and orphans == await self.owners.orphans(instance_id):
                    break       # rows we cannot take (someone else is on them): next round
            else:
                await self.owners.forget(instance_id, version)
        if count:
            self.adopted += count
            log.info("adopted %d unfinished tasks of instances whose lease expired", count)
        return count

    async def _follow(self, task_id: str) -> int:
        try:
            followed = int(await self.relay.follow(task_id))
        except BackendError as e:
            log.warning("following task %s again failed: %s (next round)", task_id, e)
            self._retry.add(task_id)
            return 0
        self._retry.discard(task_id)
        return followed

    async def _note_away(self, task_id: str, away: float | None) -> None:
        """Record in the indexed task that its owner was away longer than the channel idle time."""
        if away is None or self.channel_idle is None or away <= self.channel_idle:
            return
        try:
            row = await self.relay.table.read(task_id)
            if row is None:
                return
            task = a2a_pb2.Task.FromString(row[0])
            if fold.is_final(task.status.state):
                return
            task.metadata.fields[fold.OWN_METADATA].struct_value.fields[AWAY].number_value = round(away, 3)
            await self.relay.table.put(task_id, task.SerializeToString(), expect=row[1])
        except ConflictError:
            pass        # written meanwhile: a later turn or an end, which the deadline check reads
        except BackendError as e:   # only the failure reason's wording depends on it
            log.warning("noting task %s's gateway was away %.0f s failed: %s", task_id, away, e)


AWAY = "away_seconds"       # in the task's own metadata; read by Lifetimes for the failure reason


def away_of(task: a2a_pb2.Task) -> float | None:
    own = task.metadata.fields.get(fold.OWN_METADATA)
    if own is None or not own.HasField("struct_value") or AWAY not in own.struct_value.fields:
        return None
    return own.struct_value.fields[AWAY].number_value
