"""The state a lite client keeps per reply-topic partition and per subscribed lite topic
(see replies.py for how they are used), and the rule that decides which retained messages of a
lite topic still exist when a subscription starts."""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition

from . import names

H_KEY = "tb-key"                  # record header carrying the message's own key
READY, INFLIGHT, WAITING = range(3)


class ParentSpec:
    """What a lite consumer needs to know about its parent topic."""

    __slots__ = ("name", "partitions", "ordered", "idle", "max_attempts")

    def __init__(self, name: str, partitions: int, ordered: bool, idle: float, max_attempts: int) -> None:
        self.name, self.partitions, self.ordered, self.idle, self.max_attempts = (
            name, partitions, ordered, idle, max_attempts)


class Record:
    __slots__ = ("offset", "ts", "key", "headers", "body", "message_id", "deliveries", "state", "receipt", "timer")

    def __init__(self, record) -> None:
        headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
        self.offset: int = record.offset
        self.ts: float = record.timestamp / 1000
        self.key: str | None = headers.pop(H_KEY, None)
        self.headers = headers
        self.body: bytes = record.value or b""
        self.message_id = f"{record.partition}-{record.offset}"
        self.deliveries = 0
        self.state = READY
        self.receipt: str | None = None
        self.timer: asyncio.TimerHandle | None = None


class Channel:
    """One subscribed lite topic as this client sees it."""

    __slots__ = ("name", "digest", "part", "recs", "seen", "visible", "inflight", "cut", "history",
                 "scanning", "scan_from", "scan_to", "since")

    def __init__(self, name: str, part: "Partition", seen: set[int] | None) -> None:
        self.name = name
        self.digest = names.lite_hash(name)
        self.part = part
        self.recs: list[Record] = []            # unsettled records in offset order
        self.seen: set[int] = seen or set()   # offsets admitted or settled (re-reads are ignored)
        self.visible = 0                      # records in state READY
        self.inflight = 0                     # delivered or nack-delayed, not settled
        self.cut = 0                          # records below are history, filtered for expiry
        self.history: list | None = None      # history being collected; None once admitted
        self.scanning = False
        self.scan_from = self.scan_to = 0     # the part of the history a scan re-reads
        self.since = time.time()              # when the subscription started


class Partition:
    """One partition of the parent topic as this client reads it."""

    __slots__ = ("tp", "reading", "positioned", "begin", "processed", "indexed_from", "history_end", "index",
                 "subs", "owned", "waiting", "unused_since")

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.reading = False
        self.positioned: asyncio.Event | None = None
        self.begin = -1              # the partition's first offset when reading started
        self.processed = -1          # offset after the last record this client has looked at
        self.indexed_from = -1       # the index covers records from here on
        self.history_end = -1        # the end offset when reading started
        self.index: dict[str, list] = {}   # lite topic -> [first offset, last timestamp]
        self.subs = 0                # subscribed lite topics on this partition
        self.owned = False
        self.waiting: set[Channel] = set()   # subscriptions whose history is not complete
        self.unused_since = 0.0            # monotonic time its last subscription went away


def alive(history: list[Record], *, idle: float, since: float) -> list[Record]:
    """The records of `history` that belong to the lite topic's current incarnation.

    The lite engine deletes a lite topic `idle` seconds after its last publish (while nobody
    subscribes) and a later publish starts a new, empty one. Replayed here: a gap longer than
    `idle` between two records ends an incarnation, and if the last record is older than
    `idle` when the subscription starts (`since`), the last one has ended too."""
    current: list[Record] = []
    for rec in sorted(history, key=lambda r: r.offset):
        if current and rec.ts - current[-1].ts > idle:
            current = []
        if not current or rec.offset != current[-1].offset:
            current.append(rec)
    if current and since - current[-1].ts > idle:
        return []
    return current
