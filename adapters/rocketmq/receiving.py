"""What group and lite consumers share: receiving, hand-over, settling (`Consumer`).

Receiving. The proxy long-polls for at least `grpcClientConsumerMinLongPollingTimeoutMillis`
(5 s by default) whatever the client asks, and a receive cut short by the client would leave the
messages it popped invisible until their timeout. So a receive is never cancelled: when the
caller's `wait` ends first, the call stays pending and whatever it brings is handed to the next
`receive()`/`poll()` (one pending call per broker). Messages are handed over only when returned
to a caller (a caller cancelled meanwhile leaves them in the buffer); then the invisibility the
port asked for is set (below). While the client registers again after a proxy restart, receives
wait for it instead of failing.

Invisibility. The proxy refuses a receive with less than 10 s of invisibility
(`minInvisibleTimeMillsForRecv`) but accepts any ChangeInvisibleDuration. A group consumer
receives with max(invisible, 10 s) and changes it down at hand-over when less was asked for (or
when the message waited in the buffer). A lite consumer holds messages on a lease: received for
`lease` seconds (10 s), renewed while its process lives until `invisible` has passed. A process
that dies stops renewing, so its messages come back within one lease, which is how a silent
client "loses its in-flight messages" (the proxy itself would keep them for `invisible` or,
with auto-renew, until it expires the channel 120 s after the last heartbeat).

Settling. RocketMQ answers OK to a second ack of the same receipt, so each consumer keeps the
receipts it handed out (`_held`); an unknown, settled or expired receipt is UnknownReceiptError
without a round trip, as in the embedded engine. Acks and invisibility changes of lite messages
always carry `lite_topic`: without it the proxy answers OK and does nothing (deploy/ROCKETMQ.md
§8). A nack of a message on its last attempt forwards it to the dead-letter topic at once
(ForwardMessageToDeadLetterQueue, what the proxy does itself on the next receive).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import grpc
from google.protobuf.duration_pb2 import Duration

from .. import errors
from ..base import Delivery
from .client import Connection, Session
from .protocol import BACKEND, OK, is_system_property, pb, rpc, rpc_error, status_error

log = logging.getLogger(__name__)

MAX_BATCH = 1024           # largest max_messages a caller may ask for (as in the embedded engine)
RECEIVE_BATCH = 32         # the broker pops at most 32 messages per request
MIN_RECEIVE_INVISIBLE = 10.0
MAX_ACK_BATCH = 64
MAX_SECONDS = 12 * 3600.0  # the proxy's maxInvisibleTimeMills
STALE_AFTER = 1.0          # a buffered message older than this gets its invisibility reset at hand-over
POLL_CEILING = 20.0        # the proxy's longest long poll
EMPTY_MARK = "__tb.empty"  # the proxy refuses empty bodies; an empty body travels as b"-" plus this
KEY_PROPERTY = "__tb.key"  # the message key, exactly (RocketMQ splits its own keys at spaces)


def seconds(what: str, value: object, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero) or value > MAX_SECONDS:
        low = "0" if allow_zero else "more than 0"
        raise errors.InvalidRequestError(what, value, f"must be a number of seconds, {low} up to {MAX_SECONDS:.0f}")
    return float(value)


def check_take(max_messages: object, wait: object) -> tuple[int, float]:
    if not isinstance(max_messages, int) or isinstance(max_messages, bool) or not 1 <= max_messages <= MAX_BATCH:
        raise errors.InvalidRequestError("max_messages", max_messages, f"must be an integer in 1..{MAX_BATCH}")
    return max_messages, seconds("wait", wait, allow_zero=True)


def duration(value: float) -> Duration:
    d = Duration()
    d.FromMilliseconds(max(0, int(round(value * 1000))))
    return d


@dataclass(eq=False)
class Held:
    """A received message: buffered, or handed out and not settled yet."""

    delivery: Delivery
    lite_topic: str
    expires_at: float          # monotonic time the broker makes the message visible again
    received_at: float
    deadline: float = 0.0      # lite leases are renewed until then
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Consumer:
    """What group and lite consumers share: pending receives, the buffer, hand-over, settling."""

    kind = "consumer"
    prefetch = False   # keep a receive pending between calls (lite consumers: their own channels)
    receives_per_broker = 1   # receives in flight at once per broker (see `_parallel`)

    def __init__(self, conn: Connection, session: Session, topic: str, rmq_group: str, invisible: float,
                 targets: list[pb.MessageQueue]) -> None:
        self._conn = conn
        self._session = session
        self.topic = topic
        self._rmq_group = rmq_group
        self._invisible = seconds("invisible", invisible)
        self._targets = targets
        self._pending: dict[tuple[str, int], asyncio.Task] = {}   # (broker, slot) -> its receive
        self._buffer: collections.deque[Held] = collections.deque()
        self._held: dict[str, Held] = {}
        self._error: tuple[errors.BackendError, float] | None = None   # from a pending receive, and when
        self._acks: list[tuple[Held, asyncio.Future]] = []   # waiting for the next AckMessage
        self._acker: asyncio.Task | None = None
        self._closed = False
        self.on_close: Callable[[object], None] | None = None   # set by the backend

    def _left(self) -> None:
        if self.on_close is not None:
            self.on_close(self)

    # -- receiving ------------------------------------------------------------------------------

    @property
    def _receive_invisible(self) -> float:
        return max(self._invisible, MIN_RECEIVE_INVISIBLE)

    def _check_open(self) -> None:
        if self._closed:
            raise errors.BackendError(f"this {self.kind} is closed")

    async def _take(self, max_messages: int, wait: float) -> list[Delivery]:
        self._check_open()
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + wait
        while True:
            self._collect()
            if self._buffer:
                out = await self._hand_over(max_messages)
                if out:
                    if self.prefetch and self._session.connected.is_set():
                        # The broker pops the next batch while the caller works on (and acks) this one.
                        self._start_receives(self._batch(max_messages), POLL_CEILING)
                    return out
                continue   # everything buffered had gone stale: look again
            if self._error is not None:
                (error, at), self._error = self._error, None
                # A transient failure while nobody was waiting is history: receive again.
                if at >= began or not isinstance(error, errors.BackendUnavailableError):
                    raise error
            remaining = deadline - loop.time()
            if not self._session.connected.is_set():
                # Reconnecting (e.g. the proxy restarted): receive once the client is registered again.
                if remaining <= 0:
                    return []
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._session.connected.wait(), remaining)
                continue
            self._start_receives(self._batch(max_messages), remaining)
            if remaining <= 0:
                return []
            if not self._pending:   # nowhere to receive from (no broker serves the topic)
                await asyncio.sleep(min(remaining, 1.0))
                return []
            await asyncio.wait(list(self._pending.values()), timeout=remaining,
                               return_when=asyncio.FIRST_COMPLETED)

    def _batch(self, max_messages: int) -> int:
        return min(max_messages, RECEIVE_BATCH)

    def _collect(self) -> None:
        for key, task in list(self._pending.items()):
            if not task.done():
                continue
            del self._pending[key]
            if task.cancelled():
                continue
            exc = task.exception()
            if exc is not None:
                error = exc if isinstance(exc, errors.BackendError) else errors.BackendError(repr(exc))
                self._error = (error, getattr(task, "finished_at", 0.0))
                continue
            self._buffer.extend(task.result())

    def _start_receives(self, batch: int, wait: float) -> None:
        for target in self._targets:
            for slot in range(self._parallel(batch)):
                key = (target.broker.name, slot)
                if key not in self._pending:
                    task = asyncio.get_running_loop().create_task(self._receive(target, batch, wait))
                    task.add_done_callback(_stamp)
                    self._pending[key] = task

    def _parallel(self, batch: int) -> int:
        """Receives in flight per broker. More than one only for full batches: a broker pops a
        batch message by message, so one receive at a time caps a busy consumer at one batch
        per pop's duration (hundreds of ms on a loaded broker), while the replies keep coming."""
        return self.receives_per_broker if batch >= RECEIVE_BATCH else 1

    async def _receive(self, target: pb.MessageQueue, batch: int, wait: float) -> list[Held]:
        poll = min(max(wait, 0.0), POLL_CEILING)
        request = rpc.ReceiveMessageRequest(
            group=self._conn.resource(self._rmq_group), message_queue=target, batch_size=batch,
            filter_expression=pb.FilterExpression(type=pb.TAG, expression="*"),
            invisible_duration=duration(self._receive_invisible), long_polling_timeout=duration(poll))
        what = f"receive from {self.topic!r} for {self._rmq_group!r}"
        # Stamped when the first reply arrives, not when the long poll began: the broker starts
        # the invisible time when it pops, and a batch that waited 5 s in the poll is not stale.
        received_at: float | None = None
        out: list[Held] = []
        try:
            # The proxy derives its timing from the deadline, which must outlast its own minimum poll.
            call = self._conn.stub.ReceiveMessage(request, metadata=self._conn.metadata(self._session.client_id),
                                                  timeout=POLL_CEILING + self._conn.rpc_timeout)
            async for reply in call:
                if received_at is None:
                    received_at = time.monotonic()
                if reply.HasField("status") and reply.status.code not in (OK, pb.MESSAGE_NOT_FOUND):
                    if _settings_unknown(reply.status):
                        self._session.lost()   # the proxy restarted under us: register again
                        return out
                    raise status_error(reply.status, what, value=self.topic)
                if reply.HasField("message"):
                    out.append(self._held_from(reply.message, received_at))
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, what) from exc
        except grpc.aio.UsageError as exc:   # the channel closed under the call
            raise errors.BackendUnavailableError(BACKEND, f"{what}: {exc}") from exc
        return out

    def _held_from(self, message, received_at: float) -> Held:
        props = message.system_properties
        user = dict(message.user_properties)
        body = b"" if user.pop(EMPTY_MARK, None) == "1" else message.body
        key = user.pop(KEY_PROPERTY, None)
        lite = props.lite_topic or ""
        delivery = Delivery(self.topic, lite or None, props.message_id, body,
                            {k: v for k, v in user.items() if not is_system_property(k)},
                            key, props.delivery_attempt or 1, props.receipt_handle, self)
        return Held(delivery, lite, received_at + self._receive_invisible, received_at)

    async def _hand_over(self, max_messages: int) -> list[Delivery]:
        batch = [self._buffer.popleft() for _ in range(min(max_messages, len(self._buffer)))]
        preparing = asyncio.ensure_future(asyncio.gather(*(self._prepare(held) for held in batch)))
        try:
            ready = await asyncio.shield(preparing)
        except asyncio.CancelledError:
            # The caller gave up (e.g. wait_for): nothing taken may be lost, so what was being
            # prepared goes back to the buffer for the next caller.
            preparing.add_done_callback(lambda done: self._requeue(batch, done))
            raise
        out = []
        for held, ok in zip(batch, ready):
            if ok:
                self._held[held.delivery.receipt] = held
                out.append(held.delivery)
        return out

    def _requeue(self, batch: list[Held], done: asyncio.Future) -> None:
        kept = batch if done.cancelled() or done.exception() else [h for h, ok in zip(batch, done.result()) if ok]
        self._buffer.extendleft(reversed(kept))

    async def _prepare(self, held: Held) -> bool:
        """Set the invisibility the caller asked for, counted from now. False: drop the message."""
        now = time.monotonic()
        target = self._hold_for(self._invisible)
        held.deadline = now + self._invisible
        if target < self._receive_invisible or self._stale(held, now):
            try:
                await self._change(held, target)
            except errors.UnknownReceiptError:
                return False   # it timed out in the buffer and belongs to someone else by now
            except errors.BackendError as exc:
                log.warning("could not set the invisibility of %s: %s", held.delivery.message_id, exc)
        return True

    def _hold_for(self, seconds_: float) -> float:
        return seconds_

    def _stale(self, held: Held, now: float) -> bool:
        """Whether `held` waited long enough in the buffer that its invisibility must be counted
        again from the hand-over."""
        return now - held.received_at > STALE_AFTER

    # -- settling -------------------------------------------------------------------------------

    def _claim(self, delivery: Delivery) -> Held:
        """Take `delivery` out of the handed-out set: settling it twice is an unknown receipt."""
        receipt = getattr(delivery, "receipt", None)
        held = self._held.pop(receipt, None) if isinstance(receipt, str) else None
        if held is None or held.expires_at <= time.monotonic():
            raise errors.UnknownReceiptError(receipt if isinstance(receipt, str) else repr(receipt))
        return held

    def _restore(self, held: Held) -> None:
        self._held[held.delivery.receipt] = held

    async def ack(self, delivery: Delivery) -> None:
        held = self._claim(delivery)
        async with held.lock:
            done = asyncio.get_running_loop().create_future()
            done.add_done_callback(lambda f: f.cancelled() or f.exception())   # its caller may be gone
            self._acks.append((held, done))
            if self._acker is None or self._acker.done():
                self._acker = asyncio.get_running_loop().create_task(self._send_acks())
            await asyncio.shield(done)

    async def _send_acks(self) -> None:
        """Group commit of acks: those made while one AckMessage is in flight go out together
        (one request, one entry each; the broker answers per entry). Caller: `ack`."""
        while self._acks:
            batch, self._acks = self._acks[:MAX_ACK_BATCH], self._acks[MAX_ACK_BATCH:]
            entries = []
            for held, _ in batch:
                entry = rpc.AckMessageEntry(message_id=held.delivery.message_id, receipt_handle=held.delivery.receipt)
                if held.lite_topic:
                    entry.lite_topic = held.lite_topic
                entries.append(entry)
            request = rpc.AckMessageRequest(group=self._conn.resource(self._rmq_group),
                                            topic=self._conn.resource(self.topic), entries=entries)
            try:
                reply = await self._conn.call("AckMessage", request, self._session.client_id,
                                              f"ack of {len(entries)} messages on {self.topic!r}")
            except BaseException as exc:
                for held, done in batch:
                    if isinstance(exc, errors.BackendUnavailableError):
                        self._restore(held)   # worth trying again
                    _fail(done, exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            by_receipt = {e.receipt_handle: e.status for e in reply.entries}
            in_order = [e.status for e in reply.entries] if len(reply.entries) == len(batch) else None
            for i, (held, done) in enumerate(batch):
                status = by_receipt.get(held.delivery.receipt) or (in_order[i] if in_order else reply.status)
                if status.code in (OK, pb.MULTIPLE_RESULTS):
                    if not done.done():
                        done.set_result(None)
                    continue
                error = status_error(status, f"ack on {self.topic!r}", receipt=held.delivery.receipt)
                if isinstance(error, errors.BackendUnavailableError):
                    self._restore(held)
                _fail(done, error)

    async def nack(self, delivery: Delivery, delay: float = 0.0) -> None:
        delay = seconds("delay", delay, allow_zero=True)
        held = self._claim(delivery)
        async with held.lock:
            max_attempts = self._session.max_attempts()
            if delivery.attempt >= max_attempts:
                request = rpc.ForwardMessageToDeadLetterQueueRequest(
                    group=self._conn.resource(self._rmq_group), topic=self._conn.resource(self.topic),
                    receipt_handle=delivery.receipt, message_id=delivery.message_id,
                    delivery_attempt=delivery.attempt, max_delivery_attempts=max_attempts)
                if held.lite_topic:
                    request.lite_topic = held.lite_topic
                await self._settle("ForwardMessageToDeadLetterQueue", request, held, "dead-letter")
                return
            try:
                await self._change(held, delay)
            except errors.BackendUnavailableError:
                self._restore(held)
                raise

    async def extend(self, delivery: Delivery, seconds_: float) -> None:
        seconds_ = seconds("seconds", seconds_)
        held = self._claim(delivery)
        self._restore(held)
        async with held.lock:
            held.deadline = time.monotonic() + seconds_
            await self._change(held, self._hold_for(seconds_))

    async def _settle(self, method: str, request, held: Held, what: str) -> None:
        try:
            reply = await self._conn.call(method, request, self._session.client_id,
                                          f"{what} of {held.delivery.message_id} on {self.topic!r}")
        except errors.BackendUnavailableError:
            self._restore(held)
            raise
        statuses = [reply.status] + [e.status for e in getattr(reply, "entries", ())]
        for status in statuses:
            if status.code not in (OK, pb.MULTIPLE_RESULTS):
                error = status_error(status, f"{what} on {self.topic!r}", receipt=held.delivery.receipt)
                if isinstance(error, errors.BackendUnavailableError):
                    self._restore(held)   # worth trying again
                raise error

    async def _change(self, held: Held, invisible: float) -> None:
        """ChangeInvisibleDuration: `held` becomes visible `invisible` seconds from now."""
        delivery = held.delivery
        request = rpc.ChangeInvisibleDurationRequest(
            group=self._conn.resource(self._rmq_group), topic=self._conn.resource(self.topic),
            receipt_handle=delivery.receipt, message_id=delivery.message_id,
            invisible_duration=duration(invisible))
        if held.lite_topic:
            request.lite_topic = held.lite_topic
        reply = await self._conn.call("ChangeInvisibleDuration", request, self._session.client_id,
                                      f"invisibility of {delivery.message_id} on {self.topic!r}")
        if reply.status.code != OK:
            raise status_error(reply.status, f"invisibility of {delivery.message_id}", receipt=delivery.receipt)
        old = delivery.receipt
        if reply.receipt_handle:
            delivery.receipt = reply.receipt_handle
        held.expires_at = time.monotonic() + invisible
        if self._held.get(old) is held:
            del self._held[old]
            self._held[delivery.receipt] = held

    # -- leaving --------------------------------------------------------------------------------

    async def _release(self, *, held_too: bool) -> None:
        """Stop receiving; give back what was buffered (and handed out, with `held_too`) so that
        it is delivered again at once. Best effort: what cannot be given back times out."""
        pending = list(self._pending.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._pending.clear()
        give_back = list(self._buffer) + (list(self._held.values()) if held_too else [])
        self._buffer.clear()
        self._held.clear()
        self._error = None
        if give_back:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._conn.rpc_timeout):
                    await asyncio.gather(*(self._change(h, 0) for h in give_back), return_exceptions=True)

    def _drop(self) -> None:
        """Forget everything without telling the broker, as a crashed process would."""
        for task in self._pending.values():
            task.cancel()
        self._pending.clear()
        self._buffer.clear()
        self._held.clear()


def _fail(done: asyncio.Future, exc: BaseException) -> None:
    if done.done():
        return
    if isinstance(exc, Exception):
        done.set_exception(exc)
    else:
        done.cancel()


def _settings_unknown(status) -> bool:
    # What ReceiveMessageActivity answers for a client whose settings the proxy does not have.
    return status.code == pb.INTERNAL_SERVER_ERROR and '"settings" is null' in status.message


def _stamp(task: asyncio.Task) -> None:
    task.finished_at = asyncio.get_running_loop().time()
