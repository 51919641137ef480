"""Receipts of messages handed out and not yet acked, and their invisibility deadlines."""

from __future__ import annotations

import heapq
import itertools
import os
from typing import Callable

from .errors import UnknownReceiptError
from .stream import Cursor, Inflight, Stream, Topic


class InflightTable:
    """Issues receipts and brings unacked messages back when their deadline passes.

    `on_visible(inf)` is called when a message becomes deliverable again (deadline passed, nack
    delay over, holder gone); the engine turns it into a ready event or a wake-up.
    """

    def __init__(self, on_visible: Callable[[Inflight], None]) -> None:
        self._by_receipt: dict[str, Inflight] = {}
        self._timers: list[tuple[float, int, Inflight]] = []
        self._order = itertools.count()
        self._epoch = os.urandom(4).hex()   # receipts of an earlier run are never valid
        self._ids = itertools.count(1)
        self._on_visible = on_visible
        self._stale = 0     # timer entries whose message was settled or re-timed

    def __len__(self) -> int:
        return len(self._by_receipt)

    # Caller: Engine._deliver. Affects: cursor.inflight, timers.
    def issue(self, topic: Topic, stream: Stream, cursor: Cursor, offset: int,
              deadline: float, client: str | None) -> Inflight:
        receipt = f"{self._epoch}.{next(self._ids):x}"
        inf = Inflight(receipt, topic, stream, cursor, offset, deadline, client)
        self._by_receipt[receipt] = inf
        heapq.heappush(self._timers, (deadline, next(self._order), inf))
        cursor.inflight += 1
        return inf

    def lookup(self, receipt: str) -> Inflight | None:
        return self._by_receipt.get(receipt)

    def get(self, receipt: str) -> Inflight:
        inf = self._by_receipt.get(receipt) if isinstance(receipt, str) else None
        if inf is None:
            raise UnknownReceiptError(receipt)
        return inf

    # Caller: Engine.ack. Affects: cursor.inflight; the receipt stops being valid.
    def settle(self, inf: Inflight) -> None:
        self._by_receipt.pop(inf.receipt, None)
        inf.done = True
        inf.cursor.inflight -= 1
        self._went_stale()

    def extend(self, inf: Inflight, deadline: float) -> None:
        inf.deadline = deadline
        heapq.heappush(self._timers, (deadline, next(self._order), inf))
        self._went_stale()

    def _went_stale(self) -> None:
        """Acked messages leave their timer behind; rebuild the heap before they pile up."""
        self._stale += 1
        if self._stale > max(1024, len(self._timers) // 2):
            self._timers = [t for t in self._timers if not t[2].done and t[2].deadline == t[0]]
            heapq.heapify(self._timers)
            self._stale = 0

    # Caller: Engine.nack. The message stays invisible (keeping an order lock) until `deadline`.
    def defer(self, inf: Inflight, deadline: float) -> None:
        self._by_receipt.pop(inf.receipt, None)
        inf.receipt = None
        self.extend(inf, deadline)

    # Caller: timers, Engine._drop_client, nack without delay. Affects: cursor redelivery heap.
    def release(self, inf: Inflight) -> None:
        if inf.done:
            return
        if inf.receipt is not None:
            self._by_receipt.pop(inf.receipt, None)
        inf.done = True
        inf.cursor.inflight -= 1
        inf.cursor.push_visible(inf.offset)
        self._on_visible(inf)

    def expire(self, now: float) -> int:
        """Release everything whose deadline has passed; return how many."""
        timers, n = self._timers, 0
        while timers and timers[0][0] <= now:
            deadline, _, inf = heapq.heappop(timers)
            if not inf.done and inf.deadline == deadline:
                self.release(inf)
                n += 1
        return n

    def next_deadline(self) -> float | None:
        return self._timers[0][0] if self._timers else None
