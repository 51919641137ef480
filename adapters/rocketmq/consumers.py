"""The consumers the backend hands out: group consumers (capability topics) and lite consumers
(reply channels). Receiving, invisibility and settling are shared (`receiving.py`).

A lite consumer is one LITE_PUSH_CONSUMER client. Its InterestSet is its lite subscription set:
subscribe / unsubscribe are PARTIAL_ADD / PARTIAL_REMOVE, sync and the periodic full sync
(every `full_sync_every`, and after a reconnect) are COMPLETE_ADD. A lite topic the group has
never read is added with offset MIN, so a client of a new group reads what the topic retains
(re-attach); whether the group has an offset is asked through the admin path, one query per
lite topic and broker, except for topics subscribed `fresh` (named by the caller just now: no
offset to find). The quota comes from the group (`lite.sub.client.quota`, in the settings the
proxy sends) and is enforced here: the proxy only refuses a single request far above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Iterable

from .. import errors
from ..base import Delivery
from . import names
from .client import Connection, Session
from .protocol import OK, pb, rpc, status_error
from .receiving import MIN_RECEIVE_INVISIBLE, Consumer, Held, check_take

log = logging.getLogger(__name__)

class RocketMQGroupConsumer(Consumer):
    """A simple consumer of a NORMAL topic in a consumer group (one RocketMQ client)."""

    kind = "group consumer"

    def __init__(self, conn: Connection, session: Session, topic: str, group: str, invisible: float,
                 targets: list[pb.MessageQueue]) -> None:
        super().__init__(conn, session, topic, group, invisible, targets)
        self.group = group

    async def receive(self, max_messages: int = 1, wait: float = 0.0) -> list[Delivery]:
        max_messages, wait = check_take(max_messages, wait)
        if not self._targets:   # a dead-letter topic before its first dead letter
            await asyncio.sleep(min(wait, 1.0))
            return []
        return await self._take(max_messages, wait)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._left()
        await self._release(held_too=False)
        await self._session.close()


class RocketMQLiteConsumer(Consumer):
    """A LITE_PUSH_CONSUMER client: its lite subscription set is the InterestSet."""

    kind = "lite consumer"
    prefetch = True
    # Two receives of 32 keep a relay's replies flowing while the broker pops the next batch.
    # The proxy's limit of 100 unacked messages per lite client ("too many unacked",
    # maxLiteRenewNumPerChannel) counts only the receipts it renews itself (receives with
    # auto_renew, which this adapter does not use), so it does not bound this number (5.5.0
    # source: ReceiveMessageActivity, DefaultReceiptHandleManager). Three receives, or a receive
    # started again as soon as one returns instead of at the caller's next poll, did not deliver
    # a 1,000-reply burst faster (alternating runs, see adapters/rocketmq/README.md).
    receives_per_broker = 2

    def __init__(self, conn: Connection, session: Session, topic: str, group: str, rmq_group: str,
                 invisible: float, targets: list[pb.MessageQueue], *, lease: float, quota: int,
                 full_sync_every: float, admin=None, parent_full: str = "", ordered: bool = False) -> None:
        super().__init__(conn, session, topic, rmq_group, invisible, targets)
        self.group = group
        self._ordered = ordered
        self.client_id = session.client_id
        self._lease = max(lease, MIN_RECEIVE_INVISIBLE)
        self._quota = quota
        self._admin = admin
        self._parent_full = parent_full or topic
        self._interest: set[str] = set()
        self._changes = asyncio.Lock()
        self._additions: set[str] = set()      # queued PARTIAL_ADD
        self._fresh: set[str] = set()          # of those, the ones subscribed `fresh` only
        self._removals: set[str] = set()       # queued PARTIAL_REMOVE
        self._confirming: dict[str, asyncio.Future] = {}   # subscribes waiting for their PARTIAL_ADD
        self._flusher: asyncio.Task | None = None
        self._version = time.time_ns() // 1000
        self._full_sync_every = full_sync_every
        self.regroup = None    # set by the backend: re-creates the group with its settings
        session.on_reconnect = self._reconnected
        self._maintenance = asyncio.get_running_loop().create_task(self._maintain())

    @property
    def interest(self) -> frozenset[str]:
        return frozenset(self._interest)

    def _check_open(self) -> None:
        if self._closed:
            raise errors.UnknownClientError(self.client_id)

    @property
    def quota(self) -> int:
        return self._quota

    @property
    def _receive_invisible(self) -> float:
        return self._lease

    def _batch(self, max_messages: int) -> int:
        # A receive takes every ready message of a lite topic up to the batch, and none of that
        # topic again until all are acked: one at a time is a batch of one.
        return 1 if self._ordered else super()._batch(max_messages)

    def _hold_for(self, seconds_: float) -> float:
        return min(seconds_, self._lease)

    def _stale(self, held: Held, now: float) -> bool:
        # Leases are renewed by `_maintain` (every lease/4, once less than lease/2 is left), so a
        # message that waited a second or two in the buffer needs no ChangeInvisibleDuration
        # before its hand-over: in a burst that round trip held up the whole batch.
        return held.expires_at - now < self._lease / 2

    # -- InterestSet ----------------------------------------------------------------------------

    # The local InterestSet changes before the request goes out (messages of a topic being added
    # may arrive before the answer, and must not be turned away) and is restored if it fails.
    # Changes are group-committed: while one SyncLiteSubscription is in flight, later subscribes
    # and unsubscribes queue up and go out together as one PARTIAL_ADD / PARTIAL_REMOVE (a lite
    # topic per task would otherwise cost two serialised round trips per task). An unsubscribe
    # does not wait for the broker: the topic has left the local InterestSet (its late messages
    # are given back, see `_prepare`), and a failed PARTIAL_REMOVE is repaired by the next full sync.

    async def subscribe(self, lite_topics: Iterable[str], *, fresh: bool = False) -> None:
        wanted = _lite_names(lite_topics)
        self._check_open()
        new = wanted - self._interest
        if len(self._interest) + len(new) > self._quota:
            raise errors.QuotaExceededError("max_subscriptions_per_client", self._quota, self.client_id)
        self._interest |= new
        self._removals -= wanted
        if fresh:
            self._fresh |= new
        else:
            self._fresh -= wanted
        for name in new:
            if name not in self._confirming:
                self._confirming[name] = _quiet_future()
            self._additions.add(name)
        waits = [self._confirming[n] for n in wanted if n in self._confirming]
        if waits:
            self._kick()
            await asyncio.gather(*(asyncio.shield(w) for w in waits))

    async def unsubscribe(self, lite_topics: Iterable[str]) -> None:
        gone = _lite_names(lite_topics) & self._interest
        self._check_open()
        self._interest -= gone
        self._removals |= gone
        self._kick()

    async def sync(self, lite_topics: Iterable[str]) -> None:
        wanted = _lite_names(lite_topics)
        async with self._changes:
            self._check_open()
            if len(wanted) > self._quota:
                raise errors.QuotaExceededError("max_subscriptions_per_client", self._quota, self.client_id)
            before = set(self._interest)
            self._interest = set(wanted) | before   # until the full sync removes the rest
            try:
                await self._add(wanted - before)
                await self._complete(wanted)
            except BaseException:
                self._interest = before
                raise
            self._interest = set(wanted)
            self._removals.clear()   # the COMPLETE_ADD removed them

    def _kick(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Send the queued changes, one request at a time, until none are left.
        Caller: `_kick`. Affects: `_additions`, `_removals`, `_confirming`."""
        while (self._additions or self._removals) and not self._closed:
            async with self._changes:
                gone, self._removals = self._removals - self._interest, set()
                if gone:
                    try:
                        await self._sync(pb.PARTIAL_REMOVE, gone)
                    except errors.BackendError as exc:
                        log.warning("lite unsubscribe of %d topics failed (the next full sync "
                                    "repairs it): %s", len(gone), exc)
                batch, self._additions = self._additions, set()
                fresh, self._fresh = self._fresh & batch, self._fresh - batch
                waiting = {n: self._confirming.pop(n) for n in batch if n in self._confirming}
                added = batch & self._interest
                try:
                    await self._add(added, fresh)
                except BaseException as exc:
                    self._interest -= added
                    cancelled = isinstance(exc, asyncio.CancelledError)   # by close()
                    for fut in waiting.values():
                        _settle(fut, errors.UnknownClientError(self.client_id) if cancelled else exc)
                    if cancelled:
                        raise
                    continue
                for fut in waiting.values():
                    _settle(fut, None)
        self._fail_waiting(errors.UnknownClientError(self.client_id) if self._closed else None)

    def _fail_waiting(self, exc: BaseException | None) -> None:
        if exc is None:
            return
        waiting, self._confirming = self._confirming, {}
        for fut in waiting.values():
            _settle(fut, exc)

    async def _add(self, new: set[str], fresh: set[str] = frozenset()) -> None:
        """PARTIAL_ADD; a lite topic the group never read (`fresh` ones are taken at their word)
        starts at its first retained message."""
        if not new:
            return
        unread = (new & fresh) | await self._without_offset(new - fresh)
        if unread:
            await self._sync(pb.PARTIAL_ADD, unread, pb.OffsetOption(policy=pb.OffsetOption.MIN))
        if new - unread:
            await self._sync(pb.PARTIAL_ADD, new - unread)

    async def _without_offset(self, lite_topics: set[str]) -> set[str]:
        if self._admin is None or not lite_topics:
            return set()   # the broker's rule: offset 0 while the topic's first message is in memory
        full_group = names.with_namespace(self._conn.namespace, self._rmq_group)
        ordered = sorted(lite_topics)
        found = await asyncio.gather(*(self._admin.has_offset(full_group, names.lmq(self._parent_full, n))
                                       for n in ordered), return_exceptions=True)
        return {n for n, has in zip(ordered, found) if has is False}

    async def _complete(self, lite_topics: set[str]) -> None:
        if lite_topics:
            await self._sync(pb.COMPLETE_ADD, lite_topics)
        else:
            await self._sync(pb.COMPLETE_REMOVE, set())

    async def _sync(self, action: int, lite_topics: set[str], offset: pb.OffsetOption | None = None) -> None:
        self._version += 1
        request = rpc.SyncLiteSubscriptionRequest(
            action=action, topic=self._conn.resource(self.topic), group=self._conn.resource(self._rmq_group),
            lite_topic_set=sorted(lite_topics), version=self._version)
        if offset is not None:
            request.offset_option.CopyFrom(offset)
        what = f"{pb.LiteSubscriptionAction.Name(action)} on {self.topic!r} for {self.client_id!r}"
        reply = await self._conn.call("SyncLiteSubscription", request, self.client_id, what)
        if reply.status.code != OK:
            value = next(iter(lite_topics)) if len(lite_topics) == 1 else sorted(lite_topics)
            raise status_error(reply.status, what, value=value, limit=self._quota)

    # -- polling --------------------------------------------------------------------------------

    async def _receive(self, target: pb.MessageQueue, batch: int, wait: float) -> list[Held]:
        try:
            return await super()._receive(target, batch, wait)
        except errors.BackendError as exc:
            if self.regroup is None or not _group_lost(exc):
                raise
        # The group was deleted while this client used it and the broker made it again, bare
        # (no lite.bind.topic): give it back its settings and the broker our subscriptions.
        log.warning("lite group %r lost its settings on the broker: setting them again", self._rmq_group)
        await self.regroup()
        async with self._changes:
            await self._complete(set(self._interest))
        return []

    async def poll(self, max_messages: int = 16, wait: float = 0.0) -> list[Delivery]:
        max_messages, wait = check_take(max_messages, wait)
        return await self._take(max_messages, wait)

    async def _prepare(self, held: Held) -> bool:
        if held.lite_topic not in self._interest:
            # An event queued before an unsubscribe: give the message back to the subscribers.
            with contextlib.suppress(errors.BackendError):
                await self._change(held, 0)
            return False
        return await super()._prepare(held)

    # -- upkeep ---------------------------------------------------------------------------------

    async def _reconnected(self) -> None:
        async with self._changes:
            await self._complete(set(self._interest))

    async def _maintain(self) -> None:
        """Renew leases until their deadline; re-send the whole InterestSet now and then."""
        loop = asyncio.get_running_loop()
        next_sync = loop.time() + self._full_sync_every
        while True:
            await asyncio.sleep(self._lease / 4)
            now = time.monotonic()
            due = [h for h in list(self._held.values())
                   if h.deadline > h.expires_at and h.expires_at - now < self._lease / 2]
            for held in [h for h in list(self._held.values()) if h.expires_at <= now]:
                self._held.pop(held.delivery.receipt, None)
            await asyncio.gather(*(self._renew(h) for h in due), return_exceptions=True)
            if loop.time() >= next_sync:
                with contextlib.suppress(errors.BackendError):
                    await self._reconnected()
                next_sync = loop.time() + self._full_sync_every

    async def _renew(self, held: Held) -> None:
        async with held.lock:
            if self._held.get(held.delivery.receipt) is not held:
                return   # settled meanwhile
            left = held.deadline - time.monotonic()
            if left > 0:
                await self._change(held, min(left, self._lease))

    async def _stop(self) -> None:
        self._closed = True
        for task in (self._maintenance, self._flusher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._fail_waiting(errors.UnknownClientError(self.client_id))

    async def close(self) -> None:
        if self._closed:
            return
        await self._stop()
        self._left()
        await self._release(held_too=True)
        await self._session.close()

    async def abandon(self) -> None:
        if self._closed:
            return
        await self._stop()
        self._left()
        self._drop()
        await self._session.abandon()


def _group_lost(exc: errors.BackendError) -> bool:
    if isinstance(exc, errors.NotFoundError):
        return exc.kind == "group"
    return "bind topic not match" in str(exc)


def _quiet_future() -> asyncio.Future:
    fut = asyncio.get_running_loop().create_future()
    # Every waiter may have been cancelled: an unread failure is not worth a warning.
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())
    return fut


def _settle(fut: asyncio.Future, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    elif isinstance(exc, asyncio.CancelledError):
        fut.cancel()
    else:
        fut.set_exception(exc)


def _lite_names(lite_topics: Iterable[str]) -> set[str]:
    if isinstance(lite_topics, (str, bytes)):
        raise errors.InvalidRequestError("lite topics", lite_topics,
                                         "expected a collection of lite topic names, got one string")
    try:
        items = list(lite_topics)
    except TypeError:
        raise errors.InvalidRequestError("lite topics", lite_topics, "expected a collection of lite topic names")
    return {names.lite_topic(n) for n in items}
