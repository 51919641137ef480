"""Resumable 2025-11-25 SSE streams: the SDK's `EventStore` over a bounded memory of recent
events, so a client that lost a response stream reconnects with `Last-Event-ID` and gets what it
missed (the SDK sends a priming event first, then each event with its id).

Per instance, as the session itself is (a 2025-11-25 session lives on the instance that created
it), and per session: the SDK names a response stream by its request id, which every session
counts from the start, so each session writes through a `SessionView` whose ids carry a key of
its own, and replays only ids with that key. Bounded: at most MAX_STREAMS streams (the least recently written goes first) and
MAX_EVENTS_PER_STREAM events each; an id older than that replays nothing (the SDK then answers
as for an unknown id). Event ids are `<stream id>/<sequence>`, unless a subclass names the event
itself (`keep`: streams.py gives a task's progress its reply-channel cursor).
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque

from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types import JSONRPCMessage

MAX_STREAMS = 1024
MAX_EVENTS_PER_STREAM = 256


class RecentEvents(EventStore):
    def __init__(self, *, max_streams: int = MAX_STREAMS, per_stream: int = MAX_EVENTS_PER_STREAM) -> None:
        self.max_streams = max_streams
        self.per_stream = per_stream
        # stream id -> (next seq, deque of (seq, message, event id))
        self._streams: OrderedDict[str, tuple[int, deque]] = OrderedDict()

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        return await self.keep(stream_id, message, None)

    async def keep(self, stream_id: str, message: JSONRPCMessage | None, event_id: str | None) -> str:
        """Remember `message` in its stream under `event_id` (default: `<stream id>/<sequence>`)."""
        seq, events = self._streams.pop(stream_id, (0, None))
        events = events if events is not None else deque(maxlen=self.per_stream)
        event_id = event_id or f"{stream_id}/{seq}"
        events.append((seq, message, event_id))
        self._streams[stream_id] = (seq + 1, events)
        while len(self._streams) > self.max_streams:
            self._streams.popitem(last=False)
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        stream_id, _, seq = last_event_id.rpartition("/")
        found = self._streams.get(stream_id)
        if found is None or not seq.isdigit():
            return None
        after = int(seq)
        for number, message, event_id in list(found[1]):
            if number > after and message is not None:      # priming events carry no message
                await send_callback(EventMessage(message, event_id))
        return stream_id


class SessionView(EventStore):
    """One session's window on the shared store (the session manager asks for one per session)."""

    def __init__(self, store: EventStore, key: str) -> None:
        self.store = store
        self.key = key

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        return await self.store.store_event(f"{self.key}:{stream_id}", message)

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        if not last_event_id.startswith(self.key + ":"):
            return None             # another session's id (or one this store never gave)
        stream_id = await self.store.replay_events_after(last_event_id, send_callback)
        return stream_id[len(self.key) + 1:] if stream_id else None


class SessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager, handing each new session its own SessionView of the event store."""

    @property
    def event_store(self):
        return None if self._events is None else SessionView(self._events, os.urandom(8).hex())

    @event_store.setter
    def event_store(self, value) -> None:
        self._events = value
