"""Who follows which unfinished task, and which gateway instances are alive.

Two tables shared by every instance on a backend:

    task-owners     "<instance_id>/<task_id>" -> b""   one row per running turn an instance follows:
                    written with the turn's first index write, deleted when the turn ends
    gateway-leases  "<instance_id>" -> {"expires": unix seconds, "renewed": unix seconds}
                    renewed while the instance runs; "renewed" says when it was last heard of
                    (how long a restarted or dead instance was away)

An instance that comes back (same instance id) scans its own owner rows and follows those tasks
again. An instance whose lease expired has its rows taken over by others, one row at a time with
compare-and-set: the adopter writes its own row, then deletes the dead instance's row expecting
the version it read. Exactly one adopter's delete succeeds; the others drop the row they wrote.

Caller: TaskService (claim/release around turns), Recovery (renew, mine, expired, take).
"""

from __future__ import annotations

import json
import logging
import time
from typing import AsyncIterator

from adapters.base import Table
from adapters.errors import ConflictError

log = logging.getLogger("topicbridge.tasks")

OWNER_TABLE = "task-owners"
LEASE_TABLE = "gateway-leases"
PAGE = 200


class Owners:
    def __init__(self, owners: Table, leases: Table, instance_id: str, *, lease_seconds: float) -> None:
        self.owners, self.leases = owners, leases
        self.instance_id = instance_id
        self.lease_seconds = lease_seconds

    def _key(self, task_id: str, instance_id: str | None = None) -> str:
        return f"{instance_id or self.instance_id}/{task_id}"

    async def claim(self, task_id: str) -> None:
        await self.owners.put(self._key(task_id), b"")

    async def release(self, task_id: str) -> None:
        await self.owners.delete(self._key(task_id))

    async def mine(self) -> AsyncIterator[str]:
        async for key in self._rows(f"{self.instance_id}/"):
            yield key.split("/", 1)[1]

    async def _rows(self, prefix: str) -> AsyncIterator[str]:
        after = ""
        while page := await self.owners.scan(prefix, after=after, limit=PAGE):
            for key, _ in page:
                yield key
            after = page[-1][0]
            if len(page) < PAGE:
                return

    # ------------------------------------------------------------ leases

    async def renew(self) -> None:
        await self.leases.put(self.instance_id, _lease(time.time() + self.lease_seconds))

    async def expire(self) -> None:
        """Leaving for good (or for a while): others may adopt our tasks at once."""
        await self.leases.put(self.instance_id, _lease(0.0))

    async def away(self, instance_id: str | None = None) -> float | None:
        """Seconds since the instance (this one by default) last renewed its lease or left; None
        if it never did (or wrote a lease before "renewed" was recorded)."""
        raw = await self.leases.get(instance_id or self.instance_id)
        renewed = _field(raw, "renewed") if raw is not None else None
        return max(0.0, time.time() - renewed) if renewed else None

    async def expired(self) -> list[tuple[str, int]]:
        """Other instances whose lease ran out: (instance id, lease row version)."""
        now, out, after = time.time(), [], ""
        while page := await self.leases.scan("", after=after, limit=PAGE):
            for instance_id, raw in page:
                if instance_id != self.instance_id and _expires(raw) < now:
                    row = await self.leases.read(instance_id)
                    if row is not None and _expires(row[0]) < now:
                        out.append((instance_id, row[1]))
            after = page[-1][0]
            if len(page) < PAGE:
                break
        return out

    async def orphans(self, instance_id: str) -> list[str]:
        """One page of the task ids a dead instance still owns."""
        prefix = f"{instance_id}/"
        return [key.split("/", 1)[1] for key, _ in await self.owners.scan(prefix, limit=PAGE)]

    async def take(self, instance_id: str, task_id: str) -> bool:
        """Adopt one task of a dead instance; True for exactly one of the instances that race."""
        theirs = self._key(task_id, instance_id)
        row = await self.owners.read(theirs)
        if row is None:
            return False
        await self.claim(task_id)
        try:
            taken = await self.owners.delete(theirs, expect=row[1])
        except ConflictError:
            taken = False
        if not taken:
            await self.release(task_id)
        return taken

    async def forget(self, instance_id: str, version: int) -> None:
        """Drop a dead instance's lease once nothing of it is left (unless it came back)."""
        try:
            await self.leases.delete(instance_id, expect=version)
        except ConflictError:
            pass


def _lease(expires: float) -> bytes:
    return json.dumps({"expires": expires, "renewed": time.time()}).encode()


def _expires(raw: bytes) -> float:
    value = _field(raw, "expires")
    if value is None:
        log.warning("malformed lease row %r: treated as expired", raw[:100])
        return 0.0
    return value


def _field(raw: bytes, name: str) -> float | None:
    try:
        return float(json.loads(raw)[name])
    except (ValueError, KeyError, TypeError):
        return None

