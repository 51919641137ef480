"""Messages, retained message streams and per-group cursors.

A *stream* is the ordered list of retained messages of a capability topic or of one lite topic.
Each consumer group reading it owns a *cursor*: an ack floor plus a sparse set of acked offsets
above it (like a JetStream consumer state), the next never-delivered offset, and the offsets that
became visible again (timeouts, nacks, a client going away).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from .config import TopicConfig


class Message:
    __slots__ = ("seq", "ts", "key", "headers", "body")

    def __init__(self, seq: int, ts: float, key: str | None, headers: dict[str, str] | None, body: bytes):
        self.seq = seq
        self.ts = ts
        self.key = key
        self.headers = headers
        self.body = body

    @property
    def id(self) -> str:
        return message_id(self.seq)


def message_id(seq: int) -> str:
    return f"{seq:016x}"


class Cursor:
    """Consumption state of one group on one stream."""

    __slots__ = ("group", "floor", "next", "acked", "redeliver", "inflight", "attempts", "holder", "waiters")

    def __init__(self, group: str, start: int) -> None:
        self.group = group
        self.floor = start            # every offset below is acked
        self.next = start             # lowest offset never handed out since (re)start
        self.acked: set[int] | None = None       # acked offsets >= floor
        self.redeliver: list[int] | None = None  # heap of offsets visible again
        self.inflight = 0             # handed out, neither acked nor released
        self.attempts: dict[int, int] | None = None
        self.holder: str | None = None           # lite: the client whose ReadySet holds this stream
        self.waiters = None                      # capability topics: deque of receive() futures

    def mark_acked(self, offset: int) -> None:
        if offset == self.floor:
            self.floor += 1
            acked = self.acked
            while acked and self.floor in acked:
                acked.discard(self.floor)
                self.floor += 1
        elif offset > self.floor:
            if self.acked is None:
                self.acked = set()
            self.acked.add(offset)
        if self.next < self.floor:
            self.next = self.floor
        if self.attempts:
            self.attempts.pop(offset, None)

    def is_acked(self, offset: int) -> bool:
        return offset < self.floor or (self.acked is not None and offset in self.acked)

    def push_visible(self, offset: int) -> None:
        if self.redeliver is None:
            self.redeliver = []
        heapq.heappush(self.redeliver, offset)

    def restore_attempts(self, offset: int, attempts: int) -> None:
        if self.attempts is None:
            self.attempts = {}
        self.attempts[offset] = max(self.attempts.get(offset, 0), attempts)

    def count_attempt(self, offset: int) -> int:
        if self.attempts is None:
            self.attempts = {}
        n = self.attempts.get(offset, 0) + 1
        self.attempts[offset] = n
        return n


class Stream:
    __slots__ = ("messages", "base", "cursors", "durable")

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.base = 0                 # offset of messages[0]
        self.cursors: list[Cursor] | None = None
        # Under fsync=always/batch, offsets >= durable are written but not yet fsynced and are
        # not handed out: a consumer never acts on a message a crash could still take back.
        self.durable: int | None = None

    @property
    def end(self) -> int:
        return self.base + len(self.messages)

    @property
    def visible_end(self) -> int:
        return self.end if self.durable is None else self.durable

    def cursor(self, group: str, create: bool = True) -> Cursor | None:
        for c in self.cursors or ():
            if c.group == group:
                return c
        if not create:
            return None
        c = Cursor(group, self.base)
        if self.cursors is None:
            self.cursors = [c]
        else:
            self.cursors.append(c)
        return c

    def readable(self, cursor: Cursor, ordered: bool) -> bool:
        if ordered and cursor.inflight:
            return False
        return bool(cursor.redeliver) or cursor.next < self.visible_end

    def next_offset(self, cursor: Cursor) -> int | None:
        """Take the next deliverable offset for `cursor` (redeliveries first), or None."""
        while cursor.redeliver:
            off = heapq.heappop(cursor.redeliver)
            if off >= self.base and not cursor.is_acked(off):
                return off
        end = self.visible_end
        while cursor.next < end:
            off = cursor.next
            cursor.next += 1
            if not cursor.is_acked(off):
                return off
        return None

    def get(self, offset: int) -> Message:
        return self.messages[offset - self.base]

    def trim_acked(self, batch: int = 256) -> None:
        """Drop messages every cursor has acked, at least `batch` at a time (or all)."""
        if not self.cursors:
            return
        low = min(c.floor for c in self.cursors)
        n = low - self.base
        if n > 0 and (n >= batch or n == len(self.messages)):
            del self.messages[:n]
            self.base = low


class Topic(Stream):
    """A capability topic (consumed by groups through receive) or a parent of lite topics."""

    __slots__ = ("name", "config", "lites")

    def __init__(self, name: str, config: TopicConfig) -> None:
        super().__init__()
        self.name = name
        self.config = config
        self.lites: dict[str, LiteTopic] | None = {} if config.lite else None


class LiteTopic(Stream):
    __slots__ = ("name", "subs", "last_active", "expiring")

    def __init__(self, name: str, now: float) -> None:
        super().__init__()
        self.name = name
        self.subs: set[str] | None = None   # reverse index: ids of interested clients
        self.last_active = now
        self.expiring = False                # queued in an expiry bucket


class Inflight:
    """A message handed out and not yet acked or released."""

    __slots__ = ("receipt", "topic", "stream", "cursor", "offset", "deadline", "client", "done")

    def __init__(self, receipt, topic, stream, cursor, offset, deadline, client):
        self.receipt: str | None = receipt
        self.topic: Topic = topic
        self.stream: Stream = stream
        self.cursor: Cursor = cursor
        self.offset: int = offset
        self.deadline: float = deadline
        self.client: str | None = client
        self.done = False


@dataclass(slots=True)
class Delivery:
    topic: str
    lite_topic: str | None
    message_id: str
    body: bytes
    headers: dict[str, str]
    key: str | None
    receipt: str
    attempt: int
    timestamp: float


def subscribers(lt: LiteTopic):
    subs = lt.subs
    if subs is None:
        return ()
    return (subs,) if isinstance(subs, str) else tuple(subs)


# The reverse index holds one client id inline and only grows a set for shared topics:
# a million reply channels with one subscriber each must stay small.
def add_subscriber(lt: LiteTopic, client_id: str) -> None:
    subs = lt.subs
    if subs is None:
        lt.subs = client_id
    elif isinstance(subs, str):
        if subs != client_id:
            lt.subs = {subs, client_id}
    else:
        subs.add(client_id)


def remove_subscriber(lt: LiteTopic, client_id: str) -> None:
    subs = lt.subs
    if isinstance(subs, str):
        if subs == client_id:
            lt.subs = None
    elif subs is not None:
        subs.discard(client_id)
        if len(subs) == 1:
            lt.subs = next(iter(subs))
        elif not subs:
            lt.subs = None
