"""A lite consumer client: its InterestSet, its ReadySet and its waiting polls."""

from __future__ import annotations

import asyncio
from collections import deque


class LiteClient:
    __slots__ = ("id", "group", "topic", "interest", "ready", "ready_queue", "waiters",
                 "inflight", "last_seen", "version", "full_version", "closed")

    def __init__(self, client_id: str, group: str, topic: str, now: float) -> None:
        self.id = client_id
        self.group = group
        self.topic = topic                    # the lite parent topic this client is bound to
        self.interest: set[str] = set()       # InterestSet: lite topic names
        self.ready: set[str] = set()          # ReadySet membership
        self.ready_queue: deque[str] = deque()  # ReadySet order (may hold stale names)
        self.waiters: list[asyncio.Future] = []
        self.inflight: set[str] = set()       # receipts handed to this client
        self.last_seen = now
        self.version = -1                     # highest subscription version applied
        self.full_version = -1                # version of the last full sync
        self.closed = False

    def accepts(self, version: int | None, full: bool) -> bool:
        """Whether a subscription change carrying `version` is newer than what it would undo.

        A partial change older than the last full sync is stale; a full sync older than any
        applied change is stale. Unversioned changes always apply.
        """
        if version is None:
            return True
        if version <= self.full_version or (full and version < self.version):
            return False
        self.version = max(self.version, version)
        if full:
            self.full_version = version
        return True

    # Caller: Engine.open_client. A new incarnation counts versions from 1 again; without this
    # its changes would all look older than its predecessor's and be ignored.
    def restart_versions(self) -> None:
        self.version = self.full_version = -1

    # Caller: Engine._make_ready. Affects: ReadySet, wakes one waiting poll.
    def mark_ready(self, name: str) -> None:
        if name in self.ready:
            return
        self.ready.add(name)
        self.ready_queue.append(name)
        self.wake()

    def unready(self, name: str) -> bool:
        if name in self.ready:
            self.ready.discard(name)
            return True
        return False

    def pop_ready(self) -> str | None:
        queue, ready = self.ready_queue, self.ready
        while queue:
            name = queue.popleft()
            if name in ready:
                ready.discard(name)
                return name
        return None

    def wake(self) -> None:
        while self.waiters:
            fut = self.waiters.pop(0)
            if not fut.done():
                fut.set_result(None)
                return
