"""The lite engine behind the Backend port, reached over gRPC (a client of `topicbridge engine`).

It keeps the promises of the embedded adapter (`lite.py`) and raises the same port errors: the
engine error travels in the trailing metadata of a failed call (see lite_engine/service.py) and
goes through the same translation; a call that cannot reach the engine raises
`BackendUnavailableError`.

A lite consumer keeps its InterestSet here too. When the engine no longer knows the client (it
restarted, or the session expired), the consumer opens it again and re-sends the full
InterestSet; it also re-sends it periodically so that a lost change is repaired.

Calls are spent where callers wait (lite_remote_calls.py): publishes and acks made together go
out as one PublishMany / AckMany call, and each consumer polls (or receives) over one long-lived
stream, reopened after a failure. A call that fails takes every caller in it along, and the
publishes queued behind it: publishes land in the order they were started (ordered_publish).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import weakref
from typing import Iterable

import grpc

import lite_engine
from lite_engine import EngineConfig
from lite_engine.access import bearer
from lite_engine.kv import check_expect, check_scan
from lite_engine.names import validate_name
from lite_engine.proto import engine_pb2 as pb
from lite_engine.proto import engine_pb2_grpc as pb_grpc
from lite_engine.service import ERROR_KEY, MAX_BATCH_ITEMS, decode_error

from . import errors
from .base import Delivery, Health, Message, TopicSpec
from .lite import new_client_id, translated
from .lite_remote_calls import Batcher, CallStream
from .lite_access import client_credentials, read_token

_Action = pb.ChangeSubscriptionRequest

# Transport failures: the engine is away or restarting; the caller may retry.
_UNAVAILABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
                grpc.StatusCode.ABORTED, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNKNOWN,
                grpc.StatusCode.INTERNAL}

_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),   # the engine bounds its answers
    ("grpc.max_send_message_length", -1),      # the engine says what is too large
    # Reconnect quickly to an engine that restarts (the default backoff grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class _Connection:
    """One channel to the engine; turns failed calls into port errors. `credentials`: TLS (None:
    plaintext); `token`: sent on every call."""

    def __init__(self, target: str, backend: str, rpc_timeout: float, *,
                 credentials: grpc.ChannelCredentials | None = None, token: str | None = None) -> None:
        self.target = target
        self.backend = backend
        self.rpc_timeout = rpc_timeout
        self._credentials = credentials
        self._metadata = bearer(token) if token is not None else None
        self.channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.LiteEngineStub | None = None
        # max_bytes becomes the engine's body limit once started: a batch stays within the
        # request size the engine accepts.
        self.publishes = Batcher(self._publish_many, max_items=MAX_BATCH_ITEMS,
                                 max_bytes=EngineConfig().max_message_bytes, ordered=True)
        self.acks = Batcher(self._ack_many, max_items=MAX_BATCH_ITEMS, max_bytes=1 << 20)

    def open(self) -> None:
        if self._credentials is None:
            self.channel = grpc.aio.insecure_channel(self.target, options=_CHANNEL_OPTIONS)
        else:
            self.channel = grpc.aio.secure_channel(self.target, self._credentials, options=_CHANNEL_OPTIONS)
        self._stub = pb_grpc.LiteEngineStub(self.channel)

    async def close(self) -> None:
        closed = errors.BackendUnavailableError(self.backend, "the backend was closed")
        self.publishes.close(closed)
        self.acks.close(closed)
        if self.channel is not None:
            await self.channel.close()

    def stream(self, method: str) -> CallStream:
        """A stream of `method` ("PollStream", "ReceiveStream"), opened on first use."""
        def open_call(wait_for_ready: bool):
            if self._stub is None:
                raise errors.BackendUnavailableError(self.backend, "not started: call start() first")
            return getattr(self._stub, method)(wait_for_ready=wait_for_ready, metadata=self._metadata)
        return CallStream(open_call, self._port_error, self.backend, self.rpc_timeout)

    async def long_poll(self, stream: CallStream, method: str, request, wait: float):
        """`method` over `stream`; alone, as a unary call, while another poll waits on the stream."""
        wait = bounded_wait(wait)
        if stream.busy:
            return await self.call(method, request, wait=wait)
        return await stream.ask(request, wait)

    async def _publish_many(self, items: list[tuple]) -> list:
        """`items`: (topic, lite_topic, body, headers, key) of RemoteLiteBackend.publish, each
        added to the request in place (a message per item copied into the batch costs twice)."""
        request = pb.PublishManyRequest()
        add, refused = request.items.add, None
        for n, (topic, lite_topic, body, headers, key) in enumerate(items):
            try:
                if headers is None and key is None:
                    add(topic=topic, lite_topic=lite_topic, body=body)   # None: unset
                else:
                    add(topic=topic, lite_topic=lite_topic, body=body, headers=headers, key=key)
            except (TypeError, ValueError) as exc:   # a str protobuf cannot carry (lone surrogates)
                refused = refused or {}
                refused[n] = errors.InvalidRequestError("argument", "PublishRequest", str(exc))
        if refused and len(refused) == len(items):
            return [refused[n] for n in range(len(items))]
        got = await self.call("PublishMany", request)
        self._check_count(got.results, len(request.items))
        item_error = self._item_error
        results = [item_error(r.error) if r.HasField("error") else r.message_id for r in got.results]
        return _merge(results, refused, len(items))

    async def _ack_many(self, receipts: list[str]) -> list:
        try:
            request = pb.AckManyRequest(receipts=receipts)
            refused = None
        except (TypeError, ValueError):   # a receipt protobuf cannot carry: it alone fails
            refused = {}
            for n, receipt in enumerate(receipts):
                try:
                    pb.AckRequest(receipt=receipt)
                except (TypeError, ValueError) as exc:
                    refused[n] = errors.InvalidRequestError("argument", "AckRequest", str(exc))
            if len(refused) == len(receipts):
                return [refused[n] for n in range(len(receipts))]
            request = pb.AckManyRequest(receipts=[r for n, r in enumerate(receipts) if n not in refused])
        got = await self.call("AckMany", request)
        self._check_count(got.results, len(request.receipts))
        if not any(r.HasField("error") for r in got.results):
            results = [None] * len(got.results)
        else:
            results = [self._item_error(r.error) if r.HasField("error") else None for r in got.results]
        return _merge(results, refused, len(receipts))

    def _check_count(self, results, sent: int) -> None:
        if len(results) != sent:
            raise errors.BackendError(f"the engine answered {len(results)} results for {sent} items")

    async def call(self, method: str, request, *, wait: float = 0.0, wait_for_ready: bool = False):
        """Call `method`. A long-poll of `wait` seconds gets that much more time, and waits for an
        engine that is restarting instead of failing at once (a poll loop must not spin)."""
        wait = bounded_wait(wait)
        wait_for_ready = wait_for_ready or wait > 0
        if self._stub is None:
            raise errors.BackendUnavailableError(self.backend, "not started: call start() first")
        try:
            return await getattr(self._stub, method)(request, timeout=self.rpc_timeout + wait,
                                                     wait_for_ready=wait_for_ready, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise self._port_error(exc) from exc
        except grpc.aio.UsageError as exc:   # the channel was closed
            raise errors.BackendUnavailableError(self.backend, str(exc)) from exc

    def _port_error(self, exc: grpc.aio.AioRpcError) -> errors.BackendError:
        sent = next((value for key, value in exc.trailing_metadata() or () if key == ERROR_KEY), None)
        return self._status_error(exc.code(), exc.details() or "", sent)

    def _item_error(self, item: pb.ItemError) -> errors.BackendError:
        try:
            code = next(c for c in grpc.StatusCode if c.value[0] == item.code)
        except StopIteration:
            code = grpc.StatusCode.UNKNOWN
        return self._status_error(code, item.message, item.error or None)

    def _status_error(self, code: grpc.StatusCode, details: str, sent: bytes | None) -> errors.BackendError:
        engine_error = decode_error(sent) if sent else None
        if engine_error is not None:
            return _translate(engine_error)
        if code in _UNAVAILABLE:
            return errors.BackendUnavailableError(self.backend, f"{code.name}: {details}")
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
            return errors.InvalidRequestError("request", code.name, details)
        return errors.BackendError(f"{code.name}: {details}")


def _merge(results: list, refused: dict | None, total: int) -> list:
    """The engine's `results` for the items sent, with the errors of those not sent (`refused`,
    by position) put back in place."""
    if not refused:
        return results
    sent = iter(results)
    return [refused[n] if n in refused else next(sent) for n in range(total)]


def bounded_wait(wait) -> float:
    # A wait the engine refuses, or answers at once, gets no extra time.
    return wait if isinstance(wait, float) and 0 < wait < 86_400 * 7 else 0.0


def _translate(engine_error: Exception) -> errors.BackendError:
    try:
        with translated():
            raise engine_error
    except errors.BackendError as port_error:
        port_error.__cause__ = None
        return port_error
    return errors.BackendError(str(engine_error))   # not reached: every decoded type is translated


def _request(cls, **fields):
    """Build a request; a value protobuf cannot carry is a bad argument, like in the engine."""
    try:
        return cls(**{k: v for k, v in fields.items() if v is not None})
    except (TypeError, ValueError) as exc:
        raise errors.InvalidRequestError("argument", cls.__name__, str(exc)) from None


def _check_expect(expect) -> None:
    with translated():
        check_expect(expect)   # the engine's own check: protobuf cannot carry a negative one


def _delivery(d: pb.Delivery, settler) -> Delivery:
    headers = d.headers   # dict() of an empty protobuf map still walks the Mapping mixin
    return Delivery(d.topic, d.lite_topic if d.HasField("lite_topic") else None, d.message_id, d.body,
                    dict(headers) if headers else {}, d.key if d.HasField("key") else None, d.attempt,
                    d.receipt, settler)


def _receipt(delivery: Delivery) -> str:
    receipt = delivery.receipt
    if type(receipt) is str:
        return receipt   # one protobuf cannot carry fails alone in its batch (_ack_many)
    return _request(pb.AckRequest, receipt=receipt).receipt


class _RemoteSettler:
    def __init__(self, conn: _Connection) -> None:
        self._conn = conn

    async def ack(self, delivery: Delivery) -> None:
        receipt = _receipt(delivery)
        await self._conn.acks.enqueue(receipt, len(receipt) + 8)

    async def ack_many(self, deliveries: list[Delivery], *, gone_ok: bool = False) -> None:
        """adapters.base.ack_many for deliveries of this consumer: all of them join the ack
        batch at once, awaited in one coroutine (each tried; the first error raised after)."""
        acks, pending, first = self._conn.acks, [], None
        for delivery in deliveries:
            try:
                receipt = _receipt(delivery)
            except errors.BackendError as e:
                first = first or e
                continue
            pending.append(acks.enqueue(receipt, len(receipt) + 8))
        try:
            for fut in pending:
                try:
                    await fut
                except errors.UnknownReceiptError as e:
                    if not gone_ok:
                        first = first or e
                except errors.BackendError as e:
                    first = first or e
        except asyncio.CancelledError:
            for fut in pending:
                fut.cancel()   # not yet sent: taken back; sent: its answer is dropped
            raise
        if first is not None:
            raise first

    async def nack(self, delivery: Delivery, delay: float = 0.0) -> None:
        await self._conn.call("Nack", _request(pb.NackRequest, receipt=delivery.receipt, delay_seconds=delay))

    async def extend(self, delivery: Delivery, seconds: float) -> None:
        await self._conn.call("Extend", _request(pb.ExtendRequest, receipt=delivery.receipt, seconds=seconds))


class RemoteGroupConsumer(_RemoteSettler):
    def __init__(self, conn: _Connection, topic: str, group: str, invisible: float) -> None:
        super().__init__(conn)
        self.topic, self.group, self._invisible = topic, group, invisible
        self._stream = conn.stream("ReceiveStream")

    async def receive(self, max_messages: int = 1, wait: float = 0.0) -> list[Delivery]:
        request = _request(pb.ReceiveRequest, topic=self.topic, group=self.group, max_messages=max_messages,
                           wait_seconds=wait, invisible_seconds=self._invisible)
        got = await self._conn.long_poll(self._stream, "Receive", request, request.wait_seconds)
        return [_delivery(d, self) for d in got.deliveries]

    async def close(self) -> None:
        self._stream.close()


def _settle(batch, error) -> None:
    for _, _, apply, done in batch:
        if error is None:
            apply()
        if not done.done():
            done.set_exception(error) if error is not None else done.set_result(None)


class RemoteLiteConsumer(_RemoteSettler):
    """A lite client of a remote engine. While open it heartbeats, re-sends its full InterestSet
    every `full_sync_every` seconds, and reopens itself when the engine forgot it."""

    def __init__(self, conn: _Connection, topic: str, group: str, client_id: str, invisible: float,
                 heartbeat_every: float, full_sync_every: float) -> None:
        super().__init__(conn)
        self.topic, self.group, self.client_id = topic, group, client_id
        self._invisible = invisible
        self._interest: set[str] = set()
        self._versions = itertools.count(1)
        # Changes are sent one at a time so that the engine sees versions in increasing order;
        # changes queued meanwhile go out together (a gateway subscribes once per task).
        self._changes = asyncio.Lock()
        self._queued: collections.deque = collections.deque()
        self._pump: asyncio.Task | None = None
        self._live = True
        self.reopened = 0   # times the engine had forgotten this client
        self._stream = conn.stream("PollStream")
        self._loop = asyncio.get_running_loop()
        self._maintenance = self._loop.create_task(self._maintain(heartbeat_every, full_sync_every))

    @property
    def live(self) -> bool:
        return self._live

    @property
    def interest(self) -> frozenset[str]:
        return frozenset(self._interest)

    async def subscribe(self, lite_topics: Iterable[str], *, fresh: bool = False) -> None:
        # `fresh` is meaningless here: a new subscriber always reads what the topic retains.
        names = list(lite_topics)
        await self._change(_Action.ADD, names, lambda: self._interest.update(names))

    async def unsubscribe(self, lite_topics: Iterable[str]) -> None:
        names = list(lite_topics)
        await self._change(_Action.REMOVE, names, lambda: self._interest.difference_update(names))

    async def sync(self, lite_topics: Iterable[str]) -> None:
        names = list(lite_topics)
        await self._change(_Action.SYNC, names, lambda: setattr(self, "_interest", set(names)))

    async def poll(self, max_messages: int = 16, wait: float = 0.0) -> list[Delivery]:
        request = _request(pb.PollRequest, client_id=self.client_id, max_messages=max_messages,
                           wait_seconds=wait, invisible_seconds=self._invisible)
        try:
            got = await self._conn.long_poll(self._stream, "Poll", request, request.wait_seconds)
        except errors.UnknownClientError:
            if not self._live:
                raise
            await self._reopen()
            got = await self._conn.long_poll(self._stream, "Poll", request, request.wait_seconds)
        return [_delivery(d, self) for d in got.deliveries]

    async def close(self) -> None:
        await self._stop()
        with contextlib.suppress(errors.BackendError):
            await self._conn.call("CloseClient", pb.CloseClientRequest(client_id=self.client_id))

    async def abandon(self) -> None:
        await self._stop()

    async def _stop(self) -> None:
        self._live = False
        self._stream.close()
        self._maintenance.cancel()
        await asyncio.wait([self._maintenance])

    # ------------------------------------------------------------ InterestSet upkeep

    async def _change(self, action: int, names: list[str], apply) -> None:
        # A caller cancelled while it waits cancels only `done`: its change still goes out with
        # its batch (_settle skips a done future), as the others' do.
        done = self._loop.create_future()
        self._queued.append((action, names, apply, done))
        if self._pump is None or self._pump.done():
            self._pump = self._loop.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        async with self._changes:
            while self._queued:
                batch = [self._queued.popleft()]
                while batch[0][0] != _Action.SYNC and self._queued and self._queued[0][0] == batch[0][0]:
                    batch.append(self._queued.popleft())
                try:
                    await self._send_locked(batch[0][0], [n for _, names, _, _ in batch for n in names])
                except errors.BackendError as e:
                    if len(batch) == 1 or not isinstance(e, (errors.InvalidRequestError, errors.QuotaExceededError)):
                        _settle(batch, e)
                        continue
                    for one in batch:       # one bad request must not fail its neighbours
                        try:
                            await self._send_locked(one[0], one[1])
                            _settle([one], None)
                        except errors.BackendError as single:
                            _settle([one], single)
                    continue
                _settle(batch, None)

    async def _send_locked(self, action: int, names: list[str]) -> None:
        try:
            await self._send(action, names)
        except errors.UnknownClientError:
            if not self._live:
                raise
            await self._reopen_locked()
            await self._send(action, names)

    async def _send(self, action: int, names: Iterable[str]) -> None:
        request = _request(pb.ChangeSubscriptionRequest, client_id=self.client_id, action=action,
                           version=next(self._versions), names=names)
        await self._conn.call("ChangeSubscription", request)

    async def _reopen(self) -> None:
        async with self._changes:
            await self._reopen_locked()

    async def _reopen_locked(self) -> None:
        await self._conn.call("OpenClient", pb.OpenClientRequest(client_id=self.client_id, group=self.group,
                                                                 topic=self.topic))
        await self._send(_Action.SYNC, sorted(self._interest))
        self.reopened += 1

    async def _full_sync(self) -> None:
        async with self._changes:
            await self._send(_Action.SYNC, sorted(self._interest))

    async def _maintain(self, heartbeat_every: float, full_sync_every: float) -> None:
        loop = asyncio.get_running_loop()
        next_sync = loop.time() + full_sync_every
        while True:
            await asyncio.sleep(heartbeat_every)
            full = loop.time() >= next_sync
            try:
                await self._conn.call("Heartbeat", pb.HeartbeatRequest(client_id=self.client_id))
                if full:
                    await self._full_sync()
            except errors.UnknownClientError:
                with contextlib.suppress(errors.BackendError):
                    await self._reopen()
            except errors.BackendError:
                continue   # the engine is away: try again at the next beat
            if full:
                next_sync = loop.time() + full_sync_every


class RemoteTable:
    def __init__(self, conn: _Connection, name: str) -> None:
        self._conn, self.name = conn, name

    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        _check_expect(expect)
        got = await self._conn.call("KvPut", _request(pb.KvPutRequest, table=self.name, key=key, value=value,
                                                      expect=expect))
        return got.version

    async def get(self, key: str) -> bytes | None:
        got = await self._conn.call("KvGet", _request(pb.KvGetRequest, table=self.name, key=key))
        return got.value if got.HasField("value") else None

    async def read(self, key: str) -> tuple[bytes, int] | None:
        got = await self._conn.call("KvRead", _request(pb.KvReadRequest, table=self.name, key=key))
        return (got.value, got.version) if got.HasField("value") else None

    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        _check_expect(expect)
        got = await self._conn.call("KvDelete", _request(pb.KvDeleteRequest, table=self.name, key=key,
                                                         expect=expect))
        return got.deleted

    async def scan(self, prefix: str = "", *, after: str = "", limit: int = 100) -> list[tuple[str, bytes]]:
        with translated():
            check_scan(prefix, after, limit)   # protobuf would wrap a negative limit
        got = await self._conn.call("KvScan", _request(pb.KvScanRequest, table=self.name, prefix=prefix,
                                                       after=after, limit=limit))
        return [(item.key, item.value) for item in got.items]

    async def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        got = await self._conn.call("KvList", _request(pb.KvListRequest, table=self.name, prefix=prefix))
        return [(item.key, item.value) for item in got.items]


class RemoteLiteBackend:
    """The lite engine of a `topicbridge engine` process at `target` ("host:port").

    `session_timeout` paces heartbeats (every third of it); None takes the engine's own.
    `tls_ca` (a PEM file) turns TLS on and verifies the engine with it; `tls_cert` and `tls_key`
    are this client's certificate for mutual TLS; `token_file` holds the engine's bearer token.
    """

    name = "lite-remote"
    # Publishes join their batch before their first await, batches go one at a time, the engine
    # appends a batch's items in order, and a failed batch fails the ones queued behind it
    # (Batcher, ordered): a later publish never lands while an earlier one was lost.
    ordered_publish = True

    def __init__(self, target: str = "127.0.0.1:7600", *, session_timeout: float | None = None,
                 full_sync_every: float = 30.0, rpc_timeout: float = 10.0, connect_timeout: float = 5.0,
                 tls_ca: str | None = None, tls_cert: str | None = None, tls_key: str | None = None,
                 token_file: str | None = None) -> None:
        self.target = target
        self.max_message_bytes = EngineConfig().max_message_bytes     # the engine's own once started
        self.session_timeout = session_timeout
        self.full_sync_every = full_sync_every
        self._connect_timeout = connect_timeout
        self._conn = _Connection(target, self.name, rpc_timeout, credentials=client_credentials(tls_ca, tls_cert, tls_key),
                                 token=read_token("lite.token_file", token_file))
        self._consumers: weakref.WeakSet[RemoteLiteConsumer] = weakref.WeakSet()

    async def start(self) -> None:
        """Connect, waiting up to `connect_timeout` for the engine, and learn its limits."""
        self._conn.open()
        try:
            info = await asyncio.wait_for(self._conn.call("Health", pb.HealthRequest(), wait_for_ready=True),
                                          self._connect_timeout)
        except TimeoutError:
            raise errors.BackendUnavailableError(
                self.name, f"no engine answered at {self.target} within {self._connect_timeout} s") from None
        self.max_message_bytes = self._conn.publishes.max_bytes = info.max_message_bytes
        if self.session_timeout is None:
            self.session_timeout = info.session_timeout

    async def close(self) -> None:
        """Close this backend's lite clients on the engine, then the channel."""
        consumers = [c for c in self._consumers if c.live]
        await asyncio.gather(*(c.close() for c in consumers), return_exceptions=True)
        await self._conn.close()

    async def health(self) -> Health:
        try:
            h = await self._conn.call("Health", pb.HealthRequest())
        except errors.BackendError as exc:
            return Health(False, self.name, {"target": self.target, "error": str(exc)})
        return Health(h.ok, self.name, {"topics": h.topics, "lite_topics": h.lite_topics, "clients": h.clients,
                                        "inflight": h.inflight, "target": self.target,
                                        "problems": list(h.problems),
                                        "housekeeping_failures": h.housekeeping_failures})

    async def create_topic(self, spec: TopicSpec) -> None:
        await self._conn.call("CreateTopic", _request(
            pb.CreateTopicRequest, name=spec.name, lite=spec.lite, ordered=spec.ordered,
            lite_idle_seconds=spec.lite_idle_seconds, max_attempts=spec.max_attempts))

    async def publish(self, topic: str, message: Message, *, lite_topic: str | None = None) -> str:
        body, headers, key = message.body, message.headers, message.key
        self._check_size(topic, lite_topic, body)
        if (type(topic) is str and type(body) is bytes and key is None and type(headers) is dict and not headers
                and (lite_topic is None or type(lite_topic) is str)):
            # The common publish, in the types protobuf takes as they are. Its size bounds the
            # encoded item's: a name's character is at most 4 bytes of UTF-8, plus field overhead.
            item = (topic, lite_topic, body, None, None)
            size = len(body) + 4 * (len(topic) + (len(lite_topic) if lite_topic else 0)) + 24
        else:
            request = _request(pb.PublishRequest, topic=topic, lite_topic=lite_topic, body=body,
                               headers=dict(headers), key=key)
            item = (request.topic, request.lite_topic if request.HasField("lite_topic") else None, request.body,
                    dict(request.headers) or None, request.key if request.HasField("key") else None)
            size = request.ByteSize() + 8
        return await self._conn.publishes.enqueue(item, size)

    def _check_size(self, topic: str, lite_topic: str | None, body: bytes) -> None:
        # The engine's answer, without sending a body the transport would refuse.
        if isinstance(body, (bytes, bytearray)) and len(body) > self.max_message_bytes:
            with translated():
                validate_name("topic", topic)
                if lite_topic is not None:
                    validate_name("lite topic", lite_topic)
            raise errors.MessageTooLargeError(len(body), self.max_message_bytes)

    async def group_consumer(self, topic: str, group: str, *, invisible: float = 30.0) -> RemoteGroupConsumer:
        return RemoteGroupConsumer(self._conn, topic, group, invisible)

    async def lite_consumer(self, topic: str, group: str, client_id: str | None = None,
                            *, invisible: float = 30.0) -> RemoteLiteConsumer:
        client_id = client_id or new_client_id(group)
        await self._conn.call("OpenClient", _request(pb.OpenClientRequest, client_id=client_id, group=group,
                                                     topic=topic))
        timeout = self.session_timeout or EngineConfig.session_timeout
        consumer = RemoteLiteConsumer(self._conn, topic, group, client_id, invisible,
                                      heartbeat_every=timeout / 3, full_sync_every=self.full_sync_every)
        self._consumers.add(consumer)
        return consumer

    def dead_letter_topic(self, group: str) -> str:
        return lite_engine.dead_letter_topic(group)

    async def table(self, name: str) -> RemoteTable:
        with translated():
            validate_name("table", name)
        return RemoteTable(self._conn, name)
