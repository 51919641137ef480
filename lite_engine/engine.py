"""The lite engine: capability topics with consumer groups, and lite topics served through
per-client InterestSets and ReadySets. Pure asyncio; no protocol knowledge.

Poll carries only a client id: it takes lite topics from the client's ReadySet, which is fed by
events (a message on a subscribed lite topic, an ack leaving readable messages, an order lock
released, a subscription coming online while messages wait, a message becoming visible again,
a client going away), never by scanning the InterestSet.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections import deque
from typing import Iterable

from . import metrics
from . import records as rec
from .client import LiteClient
from .config import EngineConfig, TopicConfig, dead_letter_topic
from .errors import (EngineClosedError, InvalidArgumentError, MessageTooLargeError,
                     QuotaExceededError, TopicKindError, UnknownClientError, UnknownTopicError)
from .inflight import InflightTable
from .kv import KvStore, check_expect, check_scan
from .names import validate_name
from .ticker import Ticker
from .stream import (Cursor, Delivery, Inflight, LiteTopic, Message, Stream, Topic, add_subscriber, message_id,
                     remove_subscriber, subscribers)
from .validation import check_kv_key, check_message, check_topic_config, lite_names
from .validation import seconds as check_seconds
from .waiting import wait_woken, wake_one

MAX_BATCH = 1024
STORAGE_RETRY_SECONDS = 0.5   # how often a full disk is tried again


class Engine:
    def __init__(self, config: EngineConfig | None = None, *, clock=time.monotonic) -> None:
        self.config = config or EngineConfig()
        self._clock = clock
        self._topics: dict[str, Topic] = {}
        self._clients: dict[str, LiteClient] = {}
        self._kv = KvStore()
        self._inflight = InflightTable(self._on_visible)
        self._expiry: dict[int, list[tuple[Topic, LiteTopic]]] = {}
        self._expiry_seconds: list[int] = []
        self._lite_count = 0
        self._seq = 0
        self._store = None
        if self.config.data_dir is not None:
            from .persistence import Persistence   # the commit log is only loaded when used
            self._store = Persistence(self.config)
            self._append = self._store.append   # _append below, one call less on each of a task's ~23 records
        self._housekeeper: asyncio.Task | None = None
        self._upkeep = Ticker("housekeeping", self._housekeeping_pass, self.config.tick)
        self._next_storage_retry = 0.0
        self._attempt_lsn: int | None = None   # the last delivery attempt recorded
        self._closed = False
        self._started = False
        self._gated = self._store is not None and self.config.fsync in ("always", "batch")

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> "Engine":
        if self._store is not None:
            self._store.recover(self)
        self._housekeeper = asyncio.get_running_loop().create_task(self._upkeep.run())
        self._started = True
        return self

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            try:
                await self._housekeeper
            except asyncio.CancelledError:
                pass
        for client in list(self._clients.values()):
            client.closed = True
            for fut in client.waiters:
                if not fut.done():
                    fut.set_result(None)
        for topic in self._topics.values():     # receivers waiting on groups return empty
            for cursor in topic.cursors or ():
                for fut in cursor.waiters or ():
                    if not fut.done():
                        fut.set_result(None)
        if self._store is not None:
            await self._store.close()

    async def __aenter__(self) -> "Engine":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def health(self) -> dict:
        """`ok` is False while the commit log refuses writes or housekeeping fails; `problems`
        says why. `housekeeping_failures` counts failed passes since start."""
        problems = [p for p in (self._store.problem if self._store is not None else None,
                                self._upkeep.error) if p]
        return {"ok": not self._closed and self._started and not problems,
                "topics": len(self._topics), "lite_topics": self._lite_count,
                "clients": len(self._clients), "inflight": len(self._inflight),
                "housekeeping_failures": self._upkeep.failures, "problems": problems}

    def sizes(self) -> dict:
        """What the engine holds, for metrics: one pass over topics and clients."""
        retained = 0
        for topic in list(self._topics.values()):
            retained += len(topic.messages)
            for lite in list(topic.lites.values()) if topic.lites else ():
                retained += len(lite.messages)
        clients = list(self._clients.values())
        log_bytes, segments = self._store.log_size if self._store is not None else (0, 0)
        return {"topics": len(self._topics), "lite_topics": self._lite_count, "clients": len(clients),
                "subscriptions": sum(len(c.interest) for c in clients),
                "ready_clients": sum(1 for c in clients if c.ready), "messages_retained": retained,
                "inflight": len(self._inflight), "commitlog_bytes": log_bytes, "commitlog_segments": segments,
                "healthy": 1 if self.health()["ok"] else 0}

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError()

    # ---------------------------------------------------------------- topics

    async def create_topic(self, name: str, config: TopicConfig | None = None) -> None:
        """Create a topic, or update the settings of an existing one of the same kind."""
        self._check_open()
        validate_name("topic", name)
        config = config or TopicConfig()
        check_topic_config(config, self.config)
        lsn = self._define_topic(name, config)
        await self._sync(lsn)

    def _define_topic(self, name: str, config: TopicConfig) -> int | None:
        topic = self._topics.get(name)
        if topic is not None and topic.config.lite != config.lite:
            raise TopicKindError(name, "lite" if topic.config.lite else "capability")
        if topic is not None and topic.config == config:
            return None
        if topic is None:
            self._topics[name] = Topic(name, config)
        else:
            topic.config = config
        return self._append(rec.TOPIC, rec.encode_topic(name, config.to_json()))

    def _topic(self, name: str, lite: bool, create: bool = True) -> Topic:
        topic = self._topics.get(name)
        if topic is None:
            if not create:
                raise UnknownTopicError(name)
            self._define_topic(name, TopicConfig(lite=lite))
            topic = self._topics[name]
        if topic.config.lite != lite:
            raise TopicKindError(name, "lite" if lite else "capability")
        return topic

    def topics(self) -> dict[str, TopicConfig]:
        return {name: t.config for name, t in self._topics.items()}

    # ---------------------------------------------------------------- publish

    async def publish(self, topic: str, body: bytes, *, lite: str | None = None,
                      headers: dict[str, str] | None = None, key: str | None = None) -> str:
        """Append a message; returns its id once durable under the fsync policy."""
        self._check_open()
        validate_name("topic", topic, system_ok=lite is None)
        if lite is not None:
            validate_name("lite topic", lite)
        check_message(body, headers, key, self.config.max_message_bytes)
        seq, lsn = self._publish(topic, lite, body, headers or None, key)
        if lsn is not None:
            fut = self._reveal_when_durable(topic, lite, lsn) if self._gated else self._store.durable(lsn)
            if fut is not None:
                await fut
        return message_id(seq)

    def _reveal_when_durable(self, topic: str, lite: str | None, lsn: int) -> asyncio.Future | None:
        """Reveal the stream up to its end once `lsn` is durable, even if nobody awaits the future."""
        stream = self._topics[topic] if lite is None else self._topics[topic].lites.get(lite)
        reveal_to = stream.end
        return self._store.durable(lsn, lambda: self._reveal(topic, lite, reveal_to))

    # Syncs complete in log order, so revealing up to `offset` never skips an undurable message.
    def _reveal(self, topic_name: str, lite: str | None, offset: int) -> None:
        topic = self._topics.get(topic_name)
        stream = topic if lite is None or topic is None else topic.lites.get(lite)
        if stream is None or stream.durable is None or stream.durable >= offset:
            return
        stream.durable = offset
        if lite is None:
            self._wake_groups(topic)
        else:
            self._on_lite_message(topic, stream)

    def _publish(self, topic_name, lite, body, headers, key) -> tuple[int, int | None]:
        topic = self._topic(topic_name, lite is not None)
        if lite is None:
            stream = topic
        else:
            stream = self._lite_topic(topic, lite, create=True)
            limit = self.config.max_messages_per_lite_topic
            if len(stream.messages) >= limit:
                stream.trim_acked(batch=1)   # lite topics keep acked history for re-attach, up to the limit
                if len(stream.messages) >= limit:
                    raise QuotaExceededError("max_messages_per_lite_topic", limit)
        seq, ts = self._seq, time.time()
        lsn = self._append(rec.PUBLISH, rec.encode_publish(topic_name, lite or "", seq, ts, key, headers, body))
        self._seq += 1
        if self._gated and stream.durable is None:
            stream.durable = stream.end
        stream.messages.append(Message(seq, ts, key, headers, body))
        if lite is not None:
            self._touch(topic, stream)
        # Gated (policy always/batch, lsn not None): the message is not readable before it is
        # durable, and its reveal (_reveal) makes the stream ready or wakes a receiver then.
        if lsn is None or not self._gated:
            if lite is None:
                self._wake_groups(topic)
            else:
                self._on_lite_message(topic, stream)
        return seq, lsn

    # ---------------------------------------------------------------- groups on capability topics

    async def receive(self, topic: str, group: str, *, max_messages: int = 1, wait: float = 0.0,
                      invisible: float | None = None) -> list[Delivery]:
        """Take up to `max_messages` for `group`; long-poll up to `wait` seconds when none is ready."""
        self._check_open()
        validate_name("topic", topic, system_ok=True)
        validate_name("group", group)
        max_messages, wait, invisible = self._check_take(max_messages, wait, invisible)
        t = self._topic(topic, lite=False)
        cursor = t.cursor(group, create=False) or self._join_group(t, group)
        deadline = self._clock() + wait
        while True:
            out: list[Delivery] = []
            self._deliver(t, t, cursor, max_messages, invisible, None, out)
            remaining = deadline - self._clock()
            if out or remaining <= 0 or self._closed:
                if out and t.readable(cursor, False):
                    wake_one(cursor.waiters)
                return await self._hand_over(out)
            if cursor.waiters is None:
                cursor.waiters = deque()
            if not await wait_woken(cursor.waiters, remaining, lambda: wake_one(cursor.waiters)):
                return []

    def _join_group(self, topic: Topic, group: str) -> Cursor:
        # Recorded so that replay keeps this group's unread messages from being trimmed.
        cursor = topic.cursor(group)
        self._append(rec.CURSOR, rec.encode_cursor(topic.name, "", group, cursor.floor, []))
        return cursor

    def _wake_groups(self, topic: Topic) -> None:
        for cursor in topic.cursors or ():
            if cursor.waiters:
                wake_one(cursor.waiters)

    # ---------------------------------------------------------------- acks

    def ack(self, receipt: str) -> None:
        self._check_open()
        inf = self._inflight.get(receipt)
        self._inflight.settle(inf)
        self._forget_receipt(inf)
        inf.cursor.mark_acked(inf.offset)
        self._append(rec.ACK, rec.encode_ack(inf.topic.name, _lite_name(inf.stream), inf.cursor.group, inf.offset))
        if isinstance(inf.stream, LiteTopic):
            self._make_ready(inf.topic, inf.stream, inf.cursor)
        else:
            inf.stream.trim_acked()

    def nack(self, receipt: str, delay: float = 0.0) -> None:
        """Give a message back; it is delivered again after `delay` seconds."""
        self._check_open()
        delay = check_seconds("delay", delay, allow_zero=True)
        inf = self._inflight.get(receipt)
        self._forget_receipt(inf)
        if delay == 0:
            self._inflight.release(inf)
        else:
            self._inflight.defer(inf, self._clock() + delay)

    def extend(self, receipt: str, seconds: float) -> None:
        """Keep a received message invisible for `seconds` more from now."""
        self._check_open()
        seconds = check_seconds("seconds", seconds)
        self._inflight.extend(self._inflight.get(receipt), self._clock() + seconds)

    def _forget_receipt(self, inf: Inflight) -> None:
        client = self._clients.get(inf.client) if inf.client else None
        if client is not None:
            client.inflight.discard(inf.receipt)

    # Caller: InflightTable.release. Affects: ReadySets or waiting receivers.
    def _on_visible(self, inf: Inflight) -> None:
        self._forget_receipt(inf)
        if isinstance(inf.stream, LiteTopic):
            self._make_ready(inf.topic, inf.stream, inf.cursor)
        elif inf.cursor.waiters:
            wake_one(inf.cursor.waiters)

    # ---------------------------------------------------------------- delivery

    # Caller: receive, _take_lite. Affects: cursor positions, inflight table, dead letters.
    def _deliver(self, topic: Topic, stream: Stream, cursor: Cursor, limit: int, invisible: float,
                 client: LiteClient | None, out: list[Delivery]) -> None:
        deadline = self._clock() + invisible
        max_attempts = topic.config.max_attempts or self.config.max_attempts
        lite = _lite_name(stream) or None
        while limit > 0:
            offset = stream.next_offset(cursor)
            if offset is None:
                return
            attempt = cursor.count_attempt(offset)
            msg = stream.get(offset)
            if attempt > max_attempts:
                self._dead_letter(topic, stream, cursor, offset, msg, max_attempts)
                continue
            lsn = self._append(rec.ATTEMPT, rec.encode_attempt(topic.name, lite or "", cursor.group, offset, attempt))
            if lsn is not None:
                self._attempt_lsn = lsn
            inf = self._inflight.issue(topic, stream, cursor, offset, deadline, client.id if client else None)
            if client is not None:
                client.inflight.add(inf.receipt)
            out.append(Delivery(topic.name, lite, f"{msg.seq:016x}", msg.body,   # message_id(), inline
                                dict(msg.headers) if msg.headers else {}, msg.key, inf.receipt, attempt, msg.ts))
            limit -= 1

    async def _hand_over(self, out: list[Delivery]) -> list[Delivery]:
        """Return `out` once its delivery attempts are written to the OS, so that a process
        killed while they are worked on (a handler that crashes it on every try) still counts
        them: max_attempts holds across restarts. Their fsync rides the next commit (the
        worker's first reply event, or LAZY_SYNC_DELAY later) instead of one of their own on
        the task's path; only a power loss within that window leaves one uncounted. Deliveries
        that cannot be handed over are given back. Caller: receive (envelopes), not poll."""
        lsn = self._attempt_lsn
        if not out or lsn is None:
            return out
        try:
            await self._store.written(lsn)
        except BaseException:
            for d in out:
                inf = self._inflight.lookup(d.receipt)
                if inf is not None:
                    self._forget_receipt(inf)
                    self._inflight.release(inf)
            raise
        return out

    def _dead_letter(self, topic, stream, cursor, offset, msg: Message, max_attempts: int) -> None:
        headers = dict(msg.headers or {})
        headers.update({"x-dlq-topic": topic.name, "x-dlq-message-id": msg.id,
                        "x-dlq-reason": f"delivered {max_attempts} times without an ack"})
        if isinstance(stream, LiteTopic):
            headers["x-dlq-lite-topic"] = stream.name
        _, lsn = self._publish(dead_letter_topic(cursor.group), None, msg.body, headers, msg.key)
        if lsn is not None and self._gated:
            fut = self._reveal_when_durable(dead_letter_topic(cursor.group), None, lsn)
            if fut is not None:     # nobody awaits it: a failure is the log's, logged and sticky there
                fut.add_done_callback(_retrieved)
        cursor.mark_acked(offset)
        self._append(rec.ACK, rec.encode_ack(topic.name, _lite_name(stream), cursor.group, offset))

    # ---------------------------------------------------------------- lite clients

    def open_client(self, client_id: str, *, group: str, topic: str) -> None:
        """Register a lite consumer bound to lite parent `topic` in `group`. Opening a client id
        the engine still holds is a new incarnation of it (a restarted process): it keeps the
        InterestSet, but numbers its subscription changes from scratch, and what its predecessor
        took and did not settle is deliverable again at once: the predecessor is gone (crashed or
        restarted), and waiting out those invisibility deadlines would only stall its channels."""
        self._check_open()
        validate_name("client id", client_id)
        validate_name("group", group)
        validate_name("topic", topic)
        self._topic(topic, lite=True)
        client = self._clients.get(client_id)
        if client is None:
            self._clients[client_id] = LiteClient(client_id, group, topic, self._clock())
        elif (client.group, client.topic) != (group, topic):
            raise InvalidArgumentError(client_id, f"client is already bound to topic {client.topic!r} "
                                                  f"in group {client.group!r}")
        else:
            client.last_seen = self._clock()
            client.restart_versions()
            self._release_inflight(client)

    def heartbeat(self, client_id: str) -> None:
        self._client(client_id).last_seen = self._clock()

    def close_client(self, client_id: str) -> None:
        self._drop_client(self._client(client_id))

    def interest(self, client_id: str) -> frozenset[str]:
        return frozenset(self._client(client_id).interest)

    def _client(self, client_id: str) -> LiteClient:
        self._check_open()
        client = self._clients.get(client_id) if isinstance(client_id, str) else None
        if client is None:
            raise UnknownClientError(client_id)
        return client

    def subscribe(self, client_id: str, lites: Iterable[str], version: int | None = None) -> None:
        client = self._client(client_id)
        names = lite_names(lites) - client.interest
        self._check_quotas(client, names, len(client.interest) + len(names))
        if client.accepts(version, full=False):
            self._add_interest(client, names)

    def unsubscribe(self, client_id: str, lites: Iterable[str], version: int | None = None) -> None:
        client = self._client(client_id)
        names = lite_names(lites)
        if client.accepts(version, full=False):
            self._remove_interest(client, names & client.interest)

    def sync(self, client_id: str, lites: Iterable[str], version: int | None = None) -> None:
        """Replace the client's whole InterestSet (the periodic full sync)."""
        client = self._client(client_id)
        names = lite_names(lites)
        self._check_quotas(client, names - client.interest, len(names))
        if client.accepts(version, full=True):
            self._remove_interest(client, client.interest - names)
            self._add_interest(client, names - client.interest)

    def _check_quotas(self, client: LiteClient, added: set[str], total: int) -> None:
        limit = self.config.max_subscriptions_per_client
        if total > limit:
            raise QuotaExceededError("max_subscriptions_per_client", limit, client.id)
        lites = self._topics[client.topic].lites
        new = sum(1 for n in added if n not in lites)
        if new and self._lite_count + new > self.config.max_lite_topics:
            raise QuotaExceededError("max_lite_topics", self.config.max_lite_topics)

    # Affects: InterestSet, reverse index; ready events for topics with waiting messages.
    def _add_interest(self, client: LiteClient, names: set[str]) -> None:
        topic = self._topics[client.topic]
        for name in names:
            lt = self._lite_topic(topic, name, create=True)
            client.interest.add(name)
            add_subscriber(lt, client.id)
            if lt.messages:
                self._make_ready(topic, lt, lt.cursor(client.group))

    def _remove_interest(self, client: LiteClient, names: set[str]) -> None:
        topic = self._topics[client.topic]
        for name in names:
            client.interest.discard(name)
            lt = topic.lites.get(name)
            if lt is None:
                continue
            remove_subscriber(lt, client.id)
            self._schedule_expiry(topic, lt, lt.last_active)
            cursor = lt.cursor(client.group, create=False)
            if cursor is not None and cursor.holder == client.id:
                cursor.holder = None
                if client.unready(name):
                    self._make_ready(topic, lt, cursor)

    def _drop_client(self, client: LiteClient) -> None:
        client.closed = True
        del self._clients[client.id]
        self._remove_interest(client, set(client.interest))
        self._release_inflight(client)
        for fut in client.waiters:
            if not fut.done():
                fut.set_result(None)

    # Caller: _drop_client, open_client (a new incarnation). Affects: the inflight table, ReadySets.
    def _release_inflight(self, client: LiteClient) -> None:
        for receipt in list(client.inflight):
            inf = self._inflight.lookup(receipt)
            if inf is not None:
                self._inflight.release(inf)
        client.inflight.clear()

    async def poll(self, client_id: str, *, max_messages: int = 16, wait: float = 0.0,
                   invisible: float | None = None) -> list[Delivery]:
        """Take up to `max_messages` from the client's ready lite topics, fairly; long-poll
        up to `wait` seconds when nothing is ready."""
        client = self._client(client_id)
        max_messages, wait, invisible = self._check_take(max_messages, wait, invisible)
        client.last_seen = self._clock()
        deadline = client.last_seen + wait
        while True:
            out = self._take_lite(client, max_messages, invisible)
            remaining = deadline - self._clock()
            if out or remaining <= 0:
                if client.ready:
                    client.wake()
                # Unlike receive, no wait for the ATTEMPT records: they ride the commit the
                # append kicked. Lite consumers (relay fold, reattach, MCP streams, worker
                # control) handle a delivery idempotently, and every durable effect of handling
                # it (its ack, an index row, a publish) is appended after its ATTEMPT record in
                # this one sequential log, so that record is durable before any such effect
                # is. A crash before that leaves no durable trace of the delivery, and its
                # redelivery under the same attempt number is, for the log, the first one. What
                # is given up: max_attempts of a lite topic does not count a process killed
                # within one group commit of each delivery. Envelopes keep the wait (receive).
                return out
            if not await wait_woken(client.waiters, remaining, client.wake):
                return []
            if client.closed:
                raise UnknownClientError(client_id)
            client.last_seen = self._clock()

    # Caller: poll. Cost: proportional to the ready topics it takes, not to the InterestSet.
    def _take_lite(self, client: LiteClient, max_messages: int, invisible: float) -> list[Delivery]:
        out: list[Delivery] = []
        topic = self._topics[client.topic]
        ordered = topic.config.ordered
        batch = 1 if ordered else self.config.poll_topic_batch
        while len(out) < max_messages:
            name = client.pop_ready()
            if name is None:
                break
            lt = topic.lites.get(name)
            if lt is None or name not in client.interest:
                continue
            cursor = lt.cursor(client.group)
            self._deliver(topic, lt, cursor, min(batch, max_messages - len(out)), invisible, client, out)
            if lt.readable(cursor, ordered):
                client.mark_ready(name)   # to the back: its neighbours get their turn first
        return out

    # Caller: publish, ack, release, subscribe, unsubscribe, client going away.
    # Affects: cursor.holder and the holder's ReadySet.
    def _make_ready(self, topic: Topic, lt: LiteTopic, cursor: Cursor) -> None:
        if not lt.readable(cursor, topic.config.ordered):
            return
        holder = self._clients.get(cursor.holder) if cursor.holder else None
        if holder is None or lt.name not in holder.interest:
            holder = self._choose_holder(lt, cursor.group)
            cursor.holder = holder.id if holder else None
            if holder is None:
                return
        holder.mark_ready(lt.name)

    def _choose_holder(self, lt: LiteTopic, group: str) -> LiteClient | None:
        best = None
        for cid in subscribers(lt):
            c = self._clients.get(cid)
            if c is not None and c.group == group and (best is None or len(c.ready) < len(best.ready)):
                best = c
        return best

    def _on_lite_message(self, topic: Topic, lt: LiteTopic) -> None:
        subs = lt.subs
        if subs is None:
            return
        if type(subs) is str:      # one subscriber (a reply channel): no set of groups to build
            c = self._clients.get(subs)
            if c is not None:
                self._make_ready(topic, lt, lt.cursor(c.group))
            return
        groups = set()
        for cid in subscribers(lt):
            c = self._clients.get(cid)
            if c is not None and c.group not in groups:
                groups.add(c.group)
                self._make_ready(topic, lt, lt.cursor(c.group))

    def _lite_topic(self, topic: Topic, name: str, create: bool) -> LiteTopic | None:
        lt = topic.lites.get(name)
        if lt is None and create:
            if self._lite_count >= self.config.max_lite_topics:
                raise QuotaExceededError("max_lite_topics", self.config.max_lite_topics)
            lt = topic.lites[name] = LiteTopic(name, self._clock())
            self._lite_count += 1
            self._schedule_expiry(topic, lt, lt.last_active)
        return lt

    # ---------------------------------------------------------------- lite topic expiry

    # Idle time counts from the last publish; a topic with subscribers is never deleted.
    def _touch(self, topic: Topic, lt: LiteTopic) -> None:
        lt.last_active = self._clock()
        self._schedule_expiry(topic, lt, lt.last_active)

    def _idle_seconds(self, topic: Topic) -> float:
        idle = topic.config.lite_idle_seconds or self.config.lite_idle_seconds
        return max(idle, self.config.min_lite_idle_seconds)

    def _schedule_expiry(self, topic: Topic, lt: LiteTopic, since: float) -> None:
        if lt.expiring:
            return
        due = math.ceil(since + self._idle_seconds(topic))
        bucket = self._expiry.get(due)
        if bucket is None:
            bucket = self._expiry[due] = []
            heapq.heappush(self._expiry_seconds, due)
        bucket.append((topic, lt))
        lt.expiring = True

    def _expire_lite_topics(self, now: float) -> None:
        while self._expiry_seconds and self._expiry_seconds[0] <= now:
            for topic, lt in self._expiry.pop(heapq.heappop(self._expiry_seconds)):
                lt.expiring = False
                if topic.lites.get(lt.name) is not lt:
                    continue
                if lt.subs:
                    self._schedule_expiry(topic, lt, now)
                elif now - lt.last_active >= self._idle_seconds(topic):
                    self._delete_lite(topic, lt)
                else:
                    self._schedule_expiry(topic, lt, lt.last_active)

    def _delete_lite(self, topic: Topic, lt: LiteTopic) -> None:
        del topic.lites[lt.name]
        self._lite_count -= 1
        self._append(rec.DELETE, rec.encode_delete(topic.name, lt.name))

    # ---------------------------------------------------------------- durable key-value tables

    async def kv_put(self, table: str, key: str, value: bytes, *, expect: int | None = None) -> int:
        """Write a row; returns its new version once durable. `expect`: None unconditional, 0 only
        if absent, v only if the row is at version v (else ConflictError)."""
        version, lsn = self.kv_put_applied(table, key, value, expect=expect)
        if lsn is not None and (fut := self._store.durable(lsn)) is not None:
            await fut
        return version

    def kv_put_applied(self, table: str, key: str, value: bytes, *,
                       expect: int | None = None) -> tuple[int, int | None]:
        """kv_put without its durable wait: the row is written and readable at once; returns its
        version and the LSN that `kv_sync` makes durable (None in memory). A caller that only needs
        readers to see the row before it goes on, and waits for durability later, saves a sleep."""
        self._check_kv(table, key)
        if not isinstance(value, (bytes, bytearray)):
            raise InvalidArgumentError(type(value).__name__, "value must be bytes")
        if len(value) > self.config.max_message_bytes:
            raise MessageTooLargeError(len(value), self.config.max_message_bytes)
        if expect is not None:
            self._kv.check(table, key, check_expect(expect))
        version, value = self._kv.next_version(), bytes(value)
        lsn = self._append(rec.KV_PUT_V, rec.encode_kv(table, key, version, value))
        self._kv.apply_put(table, key, value, version)
        return version, lsn

    async def kv_delete(self, table: str, key: str, *, expect: int | None = None) -> bool:
        deleted, lsn = self.kv_delete_applied(table, key, expect=expect)
        if lsn is not None and (fut := self._store.durable(lsn)) is not None:
            await fut
        return deleted

    def kv_delete_applied(self, table: str, key: str, *, expect: int | None = None) -> tuple[bool, int | None]:
        """kv_delete without its durable wait (see kv_put_applied)."""
        self._check_kv(table, key)
        if expect is not None:
            self._kv.check(table, key, check_expect(expect))
        if self._kv.read(table, key) is None:
            return False, None
        version = self._kv.next_version()
        lsn = self._append(rec.KV_DEL_V, rec.encode_kv(table, key, version))
        self._kv.apply_delete(table, key, version)
        return True, lsn

    async def kv_sync(self, lsn: int | None) -> None:
        """Return once `lsn` (from kv_put_applied / kv_delete_applied) is durable under the fsync
        policy; StorageError if the log cannot make it so."""
        self._check_open()
        await self._sync(lsn)

    def kv_sync_future(self, lsn: int | None, *, lazy: bool = False) -> asyncio.Future | None:
        """kv_sync without a coroutine, for a caller that awaits many: None if `lsn` is durable
        already, else a future done once it is (failed with StorageError if it cannot be).
        `lazy`: the wait starts no group commit of its own; it rides the next one, or the
        deferred commit of unwaited records (fsync batch: within 2 * LAZY_SYNC_DELAY), for a
        caller nobody is blocked on."""
        self._check_open()
        return self._store.durable(lsn, lazy=lazy) if lsn is not None else None

    def kv_read(self, table: str, key: str) -> tuple[bytes, int] | None:
        self._check_kv(table, key)
        return self._kv.read(table, key)

    def kv_get(self, table: str, key: str) -> bytes | None:
        row = self.kv_read(table, key)
        return row[0] if row is not None else None

    def kv_scan(self, table: str, prefix: str = "", *, after: str = "", limit: int = 100) -> list[tuple[str, bytes]]:
        """Rows whose key starts with `prefix` and sorts after `after`, in key order, at most `limit`."""
        self._check_open()
        validate_name("table", table)
        check_scan(prefix, after, limit)
        return self._kv.scan(table, prefix, after, limit)

    def kv_items(self, table: str, prefix: str = "") -> list[tuple[str, bytes]]:
        self._check_open()
        validate_name("table", table)
        check_scan(prefix, "", 1)
        return self._kv.items(table, prefix)

    def _check_kv(self, table: str, key: str) -> None:
        self._check_open()
        validate_name("table", table)
        check_kv_key(key)

    # ---------------------------------------------------------------- restore
    # Caller: Persistence.recover, one call per record of the snapshot and the log. Each applies
    # a recorded change without recording it again (the store refuses appends while replaying).

    def restore_topic(self, name: str, config: TopicConfig) -> None:
        self._define_topic(name, config)

    def restore_message(self, topic: str, lite: str, message: Message) -> None:
        t = self._topic(topic, lite=bool(lite))
        stream = t if not lite else self._lite_topic(t, lite, create=True)
        stream.messages.append(message)
        if lite:
            self._touch(t, stream)
        self._seq = max(self._seq, message.seq + 1)

    def restore_ack(self, topic: str, lite: str, group: str, offset: int) -> None:
        stream = self._stream(topic, lite)
        if stream is not None:
            stream.cursor(group).mark_acked(offset)
            if not lite:
                stream.trim_acked()

    def restore_attempt(self, topic: str, lite: str, group: str, offset: int, attempt: int) -> None:
        stream = self._stream(topic, lite)
        if stream is None or offset < stream.base:
            return
        cursor = stream.cursor(group)
        if not cursor.is_acked(offset):
            cursor.restore_attempts(offset, attempt)

    def restore_lite_deleted(self, topic: str, lite: str) -> None:
        t = self._topics.get(topic)
        if t is not None and t.lites and lite in t.lites:
            self._delete_lite(t, t.lites[lite])

    def restore_next_seq(self, seq: int) -> None:
        self._seq = max(self._seq, seq)

    def restore_stream(self, topic: str, lite: str, base: int) -> None:
        self._stream(topic, lite, create=True).base = base

    def restore_cursor(self, topic: str, lite: str, group: str, floor: int, acked: list[int]) -> None:
        cursor = self._stream(topic, lite, create=True).cursor(group)
        cursor.floor = cursor.next = floor
        cursor.acked = set(acked) or None

    def restore_row(self, table: str, key: str, value: bytes, version: int | None) -> None:
        self._kv.apply_put(table, key, value, self._kv.next_version() if version is None else version)

    def restore_row_deleted(self, table: str, key: str, version: int | None) -> None:
        self._kv.apply_delete(table, key, self._kv.next_version() if version is None else version)

    def restore_kv_clock(self, version: int) -> None:
        self._kv.clock = max(self._kv.clock, version)

    def _stream(self, topic: str, lite: str, create: bool = False) -> Stream | None:
        t = self._topics.get(topic)
        if t is None:
            if not create:
                return None
            t = self._topic(topic, lite=bool(lite))
        return t if not lite else self._lite_topic(t, lite, create=create)

    # ---------------------------------------------------------------- housekeeping and storage

    def _append(self, rtype: int, payload: bytes) -> int | None:
        return self._store.append(rtype, payload) if self._store is not None else None

    async def _sync(self, lsn: int | None) -> None:
        if lsn is not None and (fut := self._store.durable(lsn)) is not None:
            await fut

    def run_timers(self) -> None:
        """Release expired invisibility deadlines, expire idle lite topics, drop silent clients."""
        now = self._clock()
        self._inflight.expire(now)
        self._expire_lite_topics(now)
        timeout = self.config.session_timeout
        for client in [c for c in self._clients.values() if not c.waiters and now - c.last_seen > timeout]:
            self._drop_client(client)

    async def _housekeeping_pass(self) -> None:
        """Caller: the housekeeping Ticker, every `tick` seconds."""
        self.run_timers()
        if self._store is not None:
            await self._storage_upkeep()

    async def _storage_upkeep(self) -> None:
        if not self._store.healthy:
            now = time.monotonic()
            if now >= self._next_storage_retry:   # a full disk: try the refused records again
                self._next_storage_retry = now + STORAGE_RETRY_SECONDS
                await self._store.retry()
        elif self._store.snapshot_due():
            await self.snapshot()

    async def snapshot(self) -> None:
        """Write the engine's state as a snapshot now (housekeeping does it every
        `snapshot_every` records); replay then starts there."""
        if self._store is not None:
            from .persistence import EngineState
            started = time.perf_counter()
            await self._store.snapshot(EngineState(self._seq, list(self._topics.values()), self._kv))
            metrics.SNAPSHOT.observe(time.perf_counter() - started)

    def _check_take(self, max_messages, wait, invisible) -> tuple[int, float, float]:
        if not isinstance(max_messages, int) or isinstance(max_messages, bool) or not 1 <= max_messages <= MAX_BATCH:
            raise InvalidArgumentError(max_messages, f"max_messages must be an integer in 1..{MAX_BATCH}")
        wait = check_seconds("wait", wait, allow_zero=True)
        invisible = check_seconds("invisible", self.config.default_invisible if invisible is None else invisible)
        return max_messages, wait, invisible


# -------------------------------------------------------------------- helpers

def _retrieved(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


def _lite_name(stream: Stream) -> str:
    return stream.name if isinstance(stream, LiteTopic) else ""
