"""A fault-injecting wrapper around a real backend: everything goes to the real one, except the
calls a test arms to fail (once each)."""

from __future__ import annotations

import asyncio
import threading
from typing import Callable

from adapters.base import Message
from gateway.tasks.envelope import ReplyEvent


class FaultyBackend:
    def __init__(self, inner) -> None:
        self._inner = inner
        self._publish_faults: list[tuple[Callable[[str, Message], bool], Exception]] = []
        self._poll_faults: dict[str, list[Exception]] = {}
        self.publish_failed = asyncio.Event()
        self.poll_failed = asyncio.Event()

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def fail_publish(self, matches: Callable[[str, Message], bool], error: Exception) -> None:
        """The next publish for which `matches(topic, message)` is true raises `error`."""
        self._publish_faults.append((matches, error))

    def fail_poll(self, parent: str, error: Exception) -> None:
        """The next poll of a lite consumer of `parent` opened through this backend raises `error`."""
        self._poll_faults.setdefault(parent, []).append(error)

    async def publish(self, topic: str, message: Message, *, lite_topic: str | None = None) -> str:
        for fault in self._publish_faults:
            if fault[0](topic, message):
                self._publish_faults.remove(fault)
                self.publish_failed.set()
                raise fault[1]
        return await self._inner.publish(topic, message, lite_topic=lite_topic)

    async def lite_consumer(self, parent: str, *args, **kwargs):
        return _FaultyLiteConsumer(await self._inner.lite_consumer(parent, *args, **kwargs), self, parent)


class _FaultyLiteConsumer:
    def __init__(self, inner, backend: FaultyBackend, parent: str) -> None:
        self._inner, self._backend, self._parent = inner, backend, parent

    def __getattr__(self, name):
        return getattr(self._inner, name)

    async def poll(self, *args, **kwargs):
        faults = self._backend._poll_faults.get(self._parent)
        if faults:
            self._backend.poll_failed.set()
            raise faults.pop(0)
        return await self._inner.poll(*args, **kwargs)


def reply_event_kind(message: Message) -> str:
    """The payload kind of a reply event ("status_update", "artifact_update", ...), or ""."""
    try:
        return ReplyEvent.decode(message.body).event.WhichOneof("payload") or ""
    except Exception:
        return ""


class HeldFsync:
    """A fault-injecting wrapper around the commit log's real fsync: once armed, the next fsync
    blocks until the test releases it (install with the `held_fsync` fixture)."""

    def __init__(self) -> None:
        self.armed = False
        self.entered, self.release = threading.Event(), threading.Event()

    def wrap(self, real):
        def fsync(targets):
            if self.armed:
                self.entered.set()
                self.release.wait(30)
            real(targets)
        return fsync

    async def holds_until_released(self, waiting) -> None:
        """`waiting` (an awaitable on a commit) is still waiting once the fsync is held, and
        finishes once the test releases it."""
        waiter = asyncio.ensure_future(waiting)
        assert await asyncio.to_thread(self.entered.wait, 10)
        assert not waiter.done()
        self.release.set()
        async with asyncio.timeout(10):
            await waiter
