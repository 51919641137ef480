"""Lite topics (reply channels) emulated on one partitioned Kafka topic per lite parent.

Kafka cannot hold a million topics, so a lite topic is a **record key** on its parent's topic:

    parent topic   one Kafka topic, `reply_partitions` partitions, LogAppendTime timestamps,
                   retention.ms = max(2 x idle, 1 h)
    lite topic L   records with key L, all on partition murmur2(L) mod partitions (Kafka's own
                   key partitioner, so plain Kafka producers keyed by L agree)
    record         key = L (UTF-8), value = body, headers = the message's headers plus
                   ``tb-key`` = the message's own key when it has one (written by
                   KafkaBackend.publish); message id = "<partition>-<offset>"

A `KafkaLiteConsumer` (one client id) reads **only the partitions of the lite topics it
subscribes to** (plus, for an instance that names its reply channels with `routed_name`, the
partitions it owns), never the whole topic, with one plain consumer (no group; all partitions
assigned and paused, resumed as needed). On those partitions it keeps:

* an **InterestSet** (client-side; the quota `max_subscriptions_per_client` is enforced here);
* an **index** of every lite topic name seen on a partition it reads, with its first offset and
  last timestamp, pruned once a name has been idle longer than the parent's idle time;
* per subscribed lite topic: its unsettled records, the ack/inflight state of this client
  (invisibility timers, nack delays, ordered one-at-a-time, retry limit -> dead letter), and a
  **ReadySet** entry when something is deliverable: `poll` carries nothing but the client and
  costs what is ready, not what is subscribed.

Records of lite topics the client does not subscribe to are read and dropped (`skipped` in
`stats()`): that is the price of sharing partitions. A partition whose last subscription went
away is read for `LINGER` seconds more (pausing and resuming costs a fetch wait each time). A gateway instance that mints its task ids
with `routed_name` puts its reply channels on partitions only it owns (group
``tb.owners@<parent>``), so its skip count stays near zero; without it, an instance with k
concurrent tasks reads min(k, partitions) partitions.

**History and re-attach.** Subscribing to L gives the client L's retained messages: if L's
partition is new to the client it is read from its beginning (up to the end offset seen when
reading started, that part is *history*); if the client already passed L's records, the index
says where, and a one-off scan re-reads the partition from there up to the reader's position.
A client of another group (another gateway instance re-attaching a task) therefore reads one
partition from its beginning and keeps only L: its cost is that partition's retained size.

**Idle expiry** is emulated where it is observed, on history: L's history is cut at any gap
longer than the parent's idle time (an older incarnation was deleted), and dropped entirely if
its last record is older than the idle time when the subscription starts. Retention deletes the
bytes later. Unlike the lite engine, a subscriber does not keep a quiet lite topic alive for
*other* clients arriving after a gap longer than the idle time.

**Groups.** Clients of one port-level group share delivery through `membership.LiteMembership`:
a client delivers a lite topic only while it holds it (always, when alone in its group; a
client whose group is its own client id is alone by construction and joins no Kafka group). A
client that subscribes to a topic another member holds keeps its records parked; when the
holder leaves or stops heartbeating (session timeout), the topic moves and the parked records
are delivered from the start of what the new holder has (acks are not shared between members:
a move can redeliver acked messages, never lose unacked ones).

Subscription quota is per client; `max_lite_topics` and `max_messages_per_lite_topic` of the
lite engine have no Kafka counterpart (retention bounds the bytes).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable

from aiokafka import TopicPartition
from aiokafka import errors as kafka_errors

from lite_engine.waiting import wait_woken

from .. import errors
from ..base import Delivery
from . import names
from .channel import INFLIGHT, READY, WAITING, Channel, ParentSpec, Partition, Record, alive
from .cluster import Cluster, new_epoch
from .membership import Holds, LiteMembership, Owners
from .translate import translated

log = logging.getLogger("topicbridge.kafka")

HOUSEKEEPING_EVERY = 10.0     # seconds between two index prunings
# Seconds a partition without subscriptions is still read: a partition resumed while a fetch is
# parked at the broker joins only the next fetch, so pausing at every last unsubscribe would
# cost a fetch wait on the next subscribe there.
LINGER = 60.0
REMEMBERED_ACKS = 10_000      # lite topics whose acked offsets outlive an unsubscribe
MINTED = 100_000              # routed names remembered until subscribed


class KafkaLiteConsumer:
    def __init__(self, cluster: Cluster, parent: ParentSpec, group: str, client_id: str, invisible: float,
                 on_close: Callable[["KafkaLiteConsumer"], None]) -> None:
        self.topic, self.group, self.client_id = parent.name, group, client_id
        self._cluster = cluster
        self._spec = parent
        self._invisible = invisible
        self._on_close = on_close
        self._parts = [Partition(TopicPartition(parent.name, p)) for p in range(parent.partitions)]
        self._interest: set[str] = set()
        self._lites: dict[str, Channel] = {}
        self._ready: collections.deque[str] = collections.deque()
        self._ready_names: set[str] = set()
        self._waiters: list[asyncio.Future] = []
        self._receipts: dict[str, tuple[Channel, Record]] = {}
        self._epoch, self._ids = new_epoch(), itertools.count(1)
        self._acked: collections.OrderedDict[str, set[int]] = collections.OrderedDict()
        self._minted: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._holds = self._last_holds = Holds()
        # A group named after its client id has no other member: nothing to coordinate, and no
        # Kafka group join to wait for (the gateway's own clients are named this way).
        self._membership = (None if group == client_id else
                            LiteMembership(cluster, parent.name, group, self._interest_digests, self._holds_changed))
        self._owners: Owners | None = None
        self._owners_lock = asyncio.Lock()
        self._reader = None
        self._scanner = None
        self._scan_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()
        self._closed = False
        self.counters = collections.Counter()

    async def start(self) -> None:
        # A short fetch wait: a partition resumed while a fetch is parked at the broker is only
        # fetched once that fetch returns.
        self._reader = self._cluster.consumer(purpose="lite-reader", fetch_max_wait_ms=100)
        loop = asyncio.get_running_loop()
        try:
            with translated():
                await self._reader.start()
                tps = [p.tp for p in self._parts]
                self._reader.assign(tps)
                self._reader.pause(*tps)
            self._tasks = [loop.create_task(self._fetch_loop()), loop.create_task(self._housekeeping())]
            if self._membership is None:
                self._holds_changed(Holds(sole=True, members=1, settled=True))
            else:
                await self._membership.start()
        except BaseException:
            await self._stop(leave=True)
            raise

    # ------------------------------------------------------------ InterestSet

    async def subscribe(self, lite_topics: Iterable[str], *, fresh: bool = False) -> None:
        # `fresh` is not used: names from `routed_name` are known to have no history.
        self._check_open()
        added = names.lite_topics(lite_topics) - self._interest
        self._check_quota(len(self._interest) + len(added))
        await self._add(added)
        if added:
            await self._rejoin()

    async def unsubscribe(self, lite_topics: Iterable[str]) -> None:
        self._check_open()
        removed = names.lite_topics(lite_topics) & self._interest
        self._remove(removed)
        if removed:
            await self._rejoin()

    async def sync(self, lite_topics: Iterable[str]) -> None:
        self._check_open()
        wanted = names.lite_topics(lite_topics)
        self._check_quota(len(wanted))
        removed, added = self._interest - wanted, wanted - self._interest
        self._remove(removed)
        await self._add(added)
        if removed or added:
            await self._rejoin()

    async def _rejoin(self) -> None:
        if self._membership is not None:
            await self._membership.rejoin()   # a no-op while the client is alone in its group

    def _check_quota(self, total: int) -> None:
        limit = self._cluster.settings.max_subscriptions_per_client
        if total > limit:
            raise errors.QuotaExceededError("max_subscriptions_per_client", limit, self.client_id)

    # Affects: InterestSet, partitions read, history collection.
    async def _add(self, added: set[str]) -> None:
        by_part: dict[int, list[str]] = collections.defaultdict(list)
        for name in added:
            by_part[names.lite_partition(name, self._spec.partitions)].append(name)
        for p, batch in by_part.items():
            part = self._parts[p]
            fresh = {n for n in batch if n in self._minted}   # made by routed_name: no history
            for name in fresh:
                del self._minted[name]
            await self._read(part, from_end=len(fresh) == len(batch))
            scan = []
            for name in batch:
                if self._closed or name in self._interest:
                    continue
                lite = Channel(name, part, self._acked.pop(name, None))
                self._interest.add(name)
                self._lites[name] = lite
                part.subs += 1
                if name not in fresh and self._begin_history(part, lite):
                    scan.append(lite)
            if scan:
                self._spawn(self._scan(part, scan))
        self._check_ready_all(added)

    def _begin_history(self, part: Partition, lite: Channel) -> bool:
        """Decide where `lite`'s history comes from; True if part of it must be scanned again.

        Records below `cut` are history: the reader still brings [processed, cut); what it
        already passed, [begin, processed), is re-read by a scan if `lite` may be in there
        (the index saw it, or the index does not cover the partition's start)."""
        lite.cut = max(part.processed, part.history_end)
        lite.history = []
        seen = part.index.get(lite.name)
        unindexed_past = part.indexed_from > part.begin
        lite.scan_from = part.begin if unindexed_past else (seen[0] if seen is not None else part.processed)
        lite.scan_to = part.processed
        lite.scanning = lite.scan_from < lite.scan_to
        if not lite.scanning and part.processed >= lite.cut:
            self._finish_history(lite)
        else:
            part.waiting.add(lite)
        return lite.scanning

    def _remove(self, removed: set[str]) -> None:
        for name in removed:
            self._interest.discard(name)
            lite = self._lites.pop(name)
            part = lite.part
            part.subs -= 1
            part.waiting.discard(lite)
            self._ready_names.discard(name)
            for rec in lite.recs:
                if rec.state == WAITING and rec.timer is not None:
                    rec.timer.cancel()
            self._acked[name] = lite.seen - {r.offset for r in lite.recs}
            while len(self._acked) > REMEMBERED_ACKS:
                self._acked.popitem(last=False)
            if part.subs == 0:
                part.unused_since = time.monotonic()   # paused later by _housekeeping if still unused

    # Caller: the assignor, when (re-)joining: after the revoke, so the held bits come from the
    # last settled assignment (the leader keeps a topic with its holder).
    def _interest_digests(self) -> dict[int, bool]:
        last = self._last_holds
        return {lite.digest: last.sole or lite.digest in last.digests for lite in self._lites.values()}

    # Caller: LiteMembership on every revoke and assignment.
    def _holds_changed(self, holds: Holds) -> None:
        self._holds = holds
        if holds.settled:
            self._last_holds = holds
            self._check_ready_all(self._lites)

    def _held(self, lite: Channel) -> bool:
        h = self._holds
        return h.settled and (h.sole or lite.digest in h.digests)

    # ------------------------------------------------------------ reading partitions

    async def _read(self, part: Partition, *, from_end: bool) -> None:
        """Start (or resume) reading `part`: from its beginning the first time, or from its end
        for a partition whose new lite topics are known to have no history."""
        if part.positioned is None:
            part.positioned = asyncio.Event()
            try:
                begin = (await self._cluster.offsets([part.tp], end=False))[part.tp]
                end = (await self._cluster.offsets([part.tp], end=True))[part.tp]
                start = end if from_end else begin
                self._reader.seek(part.tp, start)
            except BaseException:
                part.positioned, event = None, part.positioned
                event.set()
                raise
            part.begin, part.processed, part.indexed_from, part.history_end = begin, start, start, end
            part.positioned.set()
        await part.positioned.wait()
        if part.processed < 0:
            raise errors.BackendUnavailableError("kafka", f"could not position partition {part.tp.partition}")
        if not part.reading and not self._closed:
            part.reading = True
            self._reader.resume(part.tp)

    # Caller: the task started by start(). Affects: index, lite topics, ReadySet, history.
    async def _fetch_loop(self) -> None:
        while True:
            try:
                batch = await self._reader.getmany(timeout_ms=1000, max_records=self._cluster.settings.max_buffered)
            except asyncio.CancelledError:
                raise
            except kafka_errors.ConsumerStoppedError:
                return
            except kafka_errors.KafkaError as exc:
                log.warning("lite client %s: reading %s failed, retrying: %s", self.client_id, self.topic, exc)
                await asyncio.sleep(1.0)
                continue
            for tp, records in batch.items():
                part = self._parts[tp.partition]
                for record in records:
                    self._on_record(part, record)
                for lite in [lt for lt in part.waiting if not lt.scanning and part.processed >= lt.cut]:
                    self._finish_history(lite)

    def _on_record(self, part: Partition, record) -> None:
        if record.offset < part.processed:
            return
        part.processed = record.offset + 1
        self.counters["read"] += 1
        if record.key is None:
            self.counters["skipped"] += 1
            return
        name = record.key.decode(errors="replace")
        seen = part.index.get(name)
        if seen is None:
            part.index[name] = [record.offset, record.timestamp / 1000]
        else:
            seen[1] = record.timestamp / 1000
        lite = self._lites.get(name)
        if lite is None:
            self.counters["skipped"] += 1
            return
        if record.offset < lite.cut:
            if lite.history is not None:
                lite.history.append(Record(record))
            return
        self._admit(lite, Record(record))
        self._check_ready(lite)

    async def _scan(self, part: Partition, lites: list[Channel]) -> None:
        """Re-read the stretch of `part` the reader passed before `lites` were subscribed,
        keeping only their records (re-attach to a partition already read, re-subscribe)."""
        wanted = {lite.name: lite for lite in lites}
        start, stop = min(lite.scan_from for lite in lites), max(lite.scan_to for lite in lites)
        try:
            async with self._scan_lock:
                scanner = await self._get_scanner()
                with translated():
                    scanner.assign([part.tp])
                    scanner.seek(part.tp, start)
                    while await scanner.position(part.tp) < stop:
                        batch = await scanner.getmany(part.tp, timeout_ms=1000)
                        for record in batch.get(part.tp, ()):
                            lite = wanted.get(record.key.decode(errors="replace")) if record.key else None
                            if lite is not None and record.offset < lite.scan_to and lite.history is not None:
                                lite.history.append(Record(record))
                                self.counters["scanned"] += 1
        except errors.BackendError as exc:
            log.warning("lite client %s: history scan of %s failed; those lite topics start empty: %s",
                        self.client_id, part.tp, exc)
        for lite in lites:
            lite.scanning = False
            if lite.history is not None and part.processed >= lite.cut:
                self._finish_history(lite)

    async def _get_scanner(self):
        if self._scanner is None:
            scanner = self._cluster.consumer(purpose="lite-scan")
            with translated():
                await scanner.start()
            self._scanner = scanner
        return self._scanner

    # Affects: the lite topic's records; history older than an idle gap is dropped (expired).
    def _finish_history(self, lite: Channel) -> None:
        lite.part.waiting.discard(lite)
        history, lite.history = lite.history or [], None
        if self._lites.get(lite.name) is not lite:
            return
        for rec in alive(history, idle=self._spec.idle, since=lite.since):
            self._admit(lite, rec)
        self._check_ready(lite)

    def _admit(self, lite: Channel, rec: Record) -> None:
        if rec.offset in lite.seen:
            return
        lite.seen.add(rec.offset)
        bisect.insort(lite.recs, rec, key=lambda r: r.offset)
        lite.visible += 1
        self.counters["matched"] += 1

    # ------------------------------------------------------------ ReadySet and poll

    def _readable(self, lite: Channel) -> bool:
        if lite.history is not None or not lite.visible or not self._held(lite):
            return False
        return not (self._spec.ordered and lite.inflight)

    def _check_ready(self, lite: Channel) -> None:
        if lite.name in self._ready_names or self._lites.get(lite.name) is not lite:
            return
        if self._readable(lite):
            self._ready_names.add(lite.name)
            self._ready.append(lite.name)
            self._wake()

    def _check_ready_all(self, lite_names: Iterable[str]) -> None:
        for name in list(lite_names):
            lite = self._lites.get(name)
            if lite is not None:
                self._check_ready(lite)

    async def poll(self, max_messages: int = 16, wait: float = 0.0) -> list[Delivery]:
        self._check_open()
        max_messages, wait = names.take(max_messages, wait)
        await asyncio.sleep(0)   # a consumer that always finds data must still let timers run
        deadline = time.monotonic() + wait
        while True:
            out = self._take(max_messages)
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                if self._ready:
                    self._wake()
                return out
            if not await wait_woken(self._waiters, remaining, self._wake):
                return []
            self._check_open()

    # Caller: poll. Cost: the ready lite topics it takes, not the InterestSet.
    def _take(self, max_messages: int) -> list[Delivery]:
        out: list[Delivery] = []
        batch = 1 if self._spec.ordered else self._cluster.settings.poll_topic_batch
        while len(out) < max_messages and self._ready:
            name = self._ready.popleft()
            self._ready_names.discard(name)
            lite = self._lites.get(name)
            if lite is None or not self._readable(lite):
                continue
            limit = min(batch, max_messages - len(out))
            for rec in [r for r in lite.recs if r.state == READY][:limit]:
                self._deliver(lite, rec, out)
            self._check_ready(lite)   # to the back: its neighbours get their turn first
        return out

    def _deliver(self, lite: Channel, rec: Record, out: list[Delivery]) -> None:
        lite.visible -= 1
        rec.deliveries += 1
        if rec.deliveries > self._spec.max_attempts:
            self._settle(lite, rec)
            self._spawn(self._dead_letter(lite, rec))
            return
        rec.state = INFLIGHT
        lite.inflight += 1
        rec.receipt = f"{self._epoch}.{next(self._ids):x}"
        self._receipts[rec.receipt] = (lite, rec)
        rec.timer = asyncio.get_running_loop().call_later(self._invisible, self._expire, lite, rec, rec.receipt)
        out.append(Delivery(self.topic, lite.name, rec.message_id, rec.body, dict(rec.headers), rec.key,
                            rec.deliveries, rec.receipt, self))

    def _wake(self) -> None:
        while self._waiters:
            fut = self._waiters.pop(0)
            if not fut.done():
                fut.set_result(None)
                return

    # ------------------------------------------------------------ settling

    async def ack(self, delivery: Delivery) -> None:
        lite, rec = self._claim(delivery)
        lite.inflight -= 1
        self._settle(lite, rec)
        self._check_ready(lite)

    async def nack(self, delivery: Delivery, delay: float = 0.0) -> None:
        delay = names.seconds("delay", delay, allow_zero=True)
        lite, rec = self._claim(delivery)
        if delay == 0:
            self._release(lite, rec)
        else:   # stays in flight (an ordered topic stays locked) until the delay is over
            rec.state = WAITING
            rec.timer = asyncio.get_running_loop().call_later(delay, self._release, lite, rec)

    async def extend(self, delivery: Delivery, seconds: float) -> None:
        seconds = names.seconds("seconds", seconds)
        found = self._receipts.get(delivery.receipt) if isinstance(delivery.receipt, str) else None
        if found is None:
            raise errors.UnknownReceiptError(delivery.receipt)
        lite, rec = found
        rec.timer.cancel()
        rec.timer = asyncio.get_running_loop().call_later(seconds, self._expire, lite, rec, rec.receipt)

    def _claim(self, delivery: Delivery) -> tuple[Channel, Record]:
        receipt = getattr(delivery, "receipt", None)
        found = self._receipts.pop(receipt, None) if isinstance(receipt, str) else None
        if found is None or found[1].state != INFLIGHT:
            raise errors.UnknownReceiptError(receipt)
        found[1].timer.cancel()
        found[1].receipt = None
        return found

    def _expire(self, lite: Channel, rec: Record, receipt: str) -> None:
        if rec.receipt == receipt and rec.state == INFLIGHT:
            self._receipts.pop(receipt, None)
            rec.receipt = None
            self._release(lite, rec)

    # Affects: the record becomes deliverable again; the ReadySet.
    def _release(self, lite: Channel, rec: Record) -> None:
        lite.inflight -= 1
        if self._lites.get(lite.name) is not lite:
            return
        rec.state = READY
        lite.visible += 1
        self._check_ready(lite)

    def _settle(self, lite: Channel, rec: Record) -> None:
        index = bisect.bisect_left(lite.recs, rec.offset, key=lambda r: r.offset)
        if index < len(lite.recs) and lite.recs[index] is rec:
            del lite.recs[index]

    async def _dead_letter(self, lite: Channel, rec: Record) -> None:
        headers = dict(rec.headers)
        headers.update({"x-dlq-topic": self.topic, "x-dlq-message-id": rec.message_id,
                        "x-dlq-lite-topic": lite.name,
                        "x-dlq-reason": f"delivered {self._spec.max_attempts} times without an ack"})
        topic = names.dead_letter_topic(self.group)
        try:
            await self._cluster.ensure_topic(topic, self._cluster.settings.topic_partitions, {})
            await self._cluster.produce(topic, rec.body, key=rec.key.encode() if rec.key is not None else None,
                                        headers=[(k, v.encode()) for k, v in headers.items()])
        except errors.BackendError as exc:
            log.error("lite client %s: could not dead-letter message %s of %s: %s",
                      self.client_id, rec.message_id, lite.name, exc)

    # ------------------------------------------------------------ routing new reply channels

    async def routed_name(self, make: Callable[[], str], *, tries: int | None = None) -> str:
        """A new lite topic name from `make()` that lands on a partition this instance owns.

        Joins the parent's owner group on first use. The name is remembered as brand new, so
        subscribing to it reads no history. Without owned partitions (more instances than
        partitions) any name is returned.
        """
        self._check_open()
        async with self._owners_lock:
            if self._owners is None:
                owners = Owners(self._cluster, self.topic, self._owned)
                await owners.start()
                self._owners = owners
        owned = await self._owners.settled()
        for _ in range(tries or max(64, 8 * self._spec.partitions)):
            name = names.lite_topic(make())
            if not owned or names.lite_partition(name, self._spec.partitions) in owned:
                break
        self._minted[name] = None
        while len(self._minted) > MINTED:
            self._minted.popitem(last=False)
        return name

    def owned_partitions(self) -> frozenset[int]:
        return self._owners.partitions if self._owners is not None else frozenset()

    # Caller: Owners on every assignment. Owned partitions are read from their end: only
    # names minted from now on will be subscribed there without a scan.
    def _owned(self, partitions: frozenset[int]) -> None:
        for part in self._parts:
            was, part.owned = part.owned, part.tp.partition in partitions
            if part.owned and not was and not self._closed:
                self._spawn(self._read(part, from_end=True))
            elif was and not part.owned and part.subs == 0 and part.reading:
                part.reading = False          # another instance names its channels there now
                self._reader.pause(part.tp)

    # ------------------------------------------------------------ lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise errors.UnknownClientError(self.client_id)

    async def close(self) -> None:
        await self._stop(leave=True)

    async def abandon(self) -> None:
        await self._stop(leave=False)

    async def _stop(self, *, leave: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self._on_close(self)
        for task in [*self._tasks, *self._background]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)
        for lite, rec in self._receipts.values():
            rec.timer.cancel()
        self._receipts.clear()
        if self._membership is not None:
            await self._membership.close(leave=leave)
        if self._owners is not None:
            await self._owners.close(leave=leave)
        for consumer in (self._reader, self._scanner):
            if consumer is not None:
                with contextlib.suppress(Exception):
                    await consumer.stop()
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)

    def stats(self) -> dict:
        """Read/skip counters: `read` records looked at, `skipped` of them for lite topics this
        client does not subscribe to, `matched` admitted, `scanned` re-read for history."""
        return {"client_id": self.client_id, "subscriptions": len(self._interest),
                "partitions_read": sorted(p.tp.partition for p in self._parts if p.reading),
                "owned": sorted(self.owned_partitions()), "sole": self._holds.sole,
                "inflight": len(self._receipts), **{k: self.counters[k] for k in ("read", "skipped", "matched", "scanned")}}

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_report)

    # Caller: the task started by start(). Forgets idle names; stops reading unused partitions.
    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_EVERY)
            now, horizon = time.monotonic(), time.time() - self._spec.idle
            for part in self._parts:
                stale = [n for n, (_, last) in part.index.items() if last < horizon and n not in self._interest]
                for name in stale:
                    del part.index[name]
                if part.reading and not part.subs and not part.owned and now - part.unused_since > LINGER:
                    part.reading = False
                    self._reader.pause(part.tp)


def _report(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("lite client background task failed", exc_info=task.exception())
