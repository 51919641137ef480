"""Resumable 2025-11-25 SSE streams: the SDK's `EventStore` over a bounded memory of recent
events, so a client that lost a response stream reconnects with `Last-Event-ID` and gets what it
missed (the SDK sends a priming event first, then each event with its id).

Per instance, as the session itself is (a 2025-11-25 session lives on the instance that created
it). Bounded: at most MAX_STREAMS streams (the least recently written goes first) and
MAX_EVENTS_PER_STREAM events each; an id older than that replays nothing (the SDK then answers
as for an unknown id). Event ids are `<stream id>/<sequence>`, unless a subclass names the event
itself (`keep`: streams.py gives a task's progress its reply-channel cursor).
"""

from __future__ import annotations

from collections import OrderedDict, deque

from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
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
