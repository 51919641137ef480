"""The lite engine served over gRPC (`topicbridge engine`): one `Engine` behind the
`topicbridge.engine.v1.LiteEngine` service of proto/engine.proto.

A failed call carries the gRPC status of `STATUS` and, in the trailing metadata key
`ERROR_KEY`, the engine error as JSON (`{"type": ..., "args": {...}}`): clients rebuild the
typed error with `decode_error` instead of parsing messages.

Shutdown (SIGTERM, SIGINT) goes in phases: stop accepting calls, answer waiting long-polls
empty, let the other calls finish within a bound, then close the engine so the commit log is
flushed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import signal
import sys
from pathlib import Path

import grpc

from . import errors as err
from .access import Access, check_exposure
from .config import EngineConfig, TopicConfig
from .engine import Engine
from .proto import engine_pb2 as pb
from .proto import engine_pb2_grpc as pb_grpc
from .stream import Delivery

log = logging.getLogger(__name__)

ERROR_KEY = "topicbridge-error-bin"
READY_LINE = "topicbridge engine listening on {host}:{port}"

# Room around the largest allowed body in a request: up to 64 headers of 16 KiB, names, key.
REQUEST_OVERHEAD = (1 << 20) + (64 << 10)
# A Poll or Receive answer stops growing past this many bytes; the rest goes back to the engine.
RESPONSE_BUDGET = 32 << 20
# Items in one PublishMany or AckMany.
MAX_BATCH_ITEMS = 1024

# engine error -> (gRPC status, constructor arguments read back from its attributes).
# Most specific class first.
STATUS: dict[type[err.EngineError], tuple[grpc.StatusCode, tuple[str, ...]]] = {
    err.MessageTooLargeError: (grpc.StatusCode.INVALID_ARGUMENT, ("size", "limit")),
    err.InvalidNameError: (grpc.StatusCode.INVALID_ARGUMENT, ("kind", "value", "reason")),
    err.InvalidArgumentError: (grpc.StatusCode.INVALID_ARGUMENT, ("value", "reason")),
    err.UnknownClientError: (grpc.StatusCode.NOT_FOUND, ("client_id",)),
    err.UnknownReceiptError: (grpc.StatusCode.NOT_FOUND, ("receipt",)),
    err.UnknownTopicError: (grpc.StatusCode.NOT_FOUND, ("topic",)),
    err.TopicKindError: (grpc.StatusCode.FAILED_PRECONDITION, ("topic", "expected")),
    err.ConflictError: (grpc.StatusCode.FAILED_PRECONDITION, ("table", "key", "expected", "actual")),
    err.QuotaExceededError: (grpc.StatusCode.RESOURCE_EXHAUSTED, ("quota", "limit", "client_id")),
    err.EngineClosedError: (grpc.StatusCode.UNAVAILABLE, ()),
    err.StorageError: (grpc.StatusCode.INTERNAL, ("reason",)),
}
_BY_NAME = {cls.__name__: cls for cls in STATUS}


def status_of(error: err.EngineError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls][0]
    return grpc.StatusCode.INTERNAL


# ---------------------------------------------------------------- the error wire format

def encode_error(error: err.EngineError) -> bytes:
    known = next((c for c in type(error).__mro__ if c in STATUS), None)
    if known is None:
        return json.dumps({"type": type(error).__name__, "message": _details(error)}).encode()
    args = {name: _wire_value(getattr(error, name, None)) for name in STATUS[known][1]}
    return json.dumps({"type": known.__name__, "args": args}).encode()


def decode_error(payload: bytes | str) -> err.EngineError | None:
    """Rebuild the engine error sent by `encode_error`; None if it is not one we know."""
    try:
        data = json.loads(payload)
        return _BY_NAME[data["type"]](**data["args"])
    except (ValueError, KeyError, TypeError):
        return None


def _wire_value(value: object, limit: int = 200) -> object:
    # Metadata is small (8 KiB by default): long values are cut, like the port's error data.
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if not isinstance(value, str):
        try:
            if len(json.dumps(value)) <= limit:
                return value
        except (TypeError, ValueError):
            pass
        value = repr(value)
    return value if len(value) <= limit else value[:limit] + "..."


def _details(error: Exception, limit: int = 1000) -> str:
    text = str(error)
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------- the service

def _rpc(handler):
    """Run a handler; an engine error becomes its status plus the error in trailing metadata."""

    @functools.wraps(handler)
    async def call(self: "LiteEngineService", request, context: grpc.aio.ServicerContext):
        try:
            return await handler(self, request, context)
        except err.EngineError as exc:
            await context.abort(status_of(exc), _details(exc),
                                trailing_metadata=((ERROR_KEY, encode_error(exc)),))
        except Exception as exc:   # a bug: say so, keep serving
            log.exception("%s failed", handler.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {_details(exc)}")

    return call


def _stream_rpc(handler):
    """`_rpc` for a streaming handler (an async generator of answers)."""

    @functools.wraps(handler)
    async def call(self: "LiteEngineService", requests, context: grpc.aio.ServicerContext):
        try:
            async for answer in handler(self, requests, context):
                yield answer
        except err.EngineError as exc:
            await context.abort(status_of(exc), _details(exc),
                                trailing_metadata=((ERROR_KEY, encode_error(exc)),))
        except Exception as exc:   # a bug: say so, keep serving
            log.exception("%s failed", handler.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {_details(exc)}")

    return call


def _item_error(error: err.EngineError) -> pb.ItemError:
    return pb.ItemError(code=status_of(error).value[0], message=_details(error), error=encode_error(error))


def _check_batch(items) -> None:
    if not 0 < len(items) <= MAX_BATCH_ITEMS:
        raise err.InvalidArgumentError(len(items), f"a batch holds 1..{MAX_BATCH_ITEMS} items")


class LiteEngineService(pb_grpc.LiteEngineServicer):
    def __init__(self, engine: Engine, response_budget: int = RESPONSE_BUDGET) -> None:
        self._engine = engine
        self._budget = response_budget
        self._polls: set[asyncio.Task] = set()
        self._stopping = False

    def end_long_polls(self) -> None:
        """Answer every waiting Poll and Receive with what it has (nothing), now and from now on.
        Caller: EngineServer.stop."""
        self._stopping = True
        for task in list(self._polls):
            task.cancel()

    @_rpc
    async def CreateTopic(self, request, context):
        config = TopicConfig(lite=request.lite, ordered=request.ordered,
                             lite_idle_seconds=_opt(request, "lite_idle_seconds"),
                             max_attempts=_opt(request, "max_attempts"))
        await self._engine.create_topic(request.name, config)
        return pb.CreateTopicResponse()

    @_rpc
    async def Publish(self, request, context):
        message_id = await self._engine.publish(request.topic, request.body, lite=_opt(request, "lite_topic"),
                                                headers=dict(request.headers) or None, key=_opt(request, "key"))
        return pb.PublishResponse(message_id=message_id)

    @_rpc
    async def PublishMany(self, request, context):
        items = request.items
        _check_batch(items)
        # Every publish runs to its first await here, in order: each appends before it, so the
        # log keeps item order and the items share one group commit. Then this handler waits
        # them out one by one, in its own task (no task per item).
        publish = self._engine.publish
        steps = [_first_step(publish(item.topic, item.body, lite=_opt(item, "lite_topic"),
                                     headers=_headers(item), key=_opt(item, "key")))
                 for item in items]
        response = pb.PublishManyResponse()
        add = response.results.add
        try:
            for n, (coro, outcome) in enumerate(steps):
                if coro is not None:
                    steps[n] = (None, None)
                    outcome = await _last_steps(coro, outcome)
                if isinstance(outcome, err.EngineError):
                    add(error=_item_error(outcome))
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    add(message_id=outcome)
        finally:
            for coro, _ in steps:   # the handler ends early (cancelled, a bug): the rest stop waiting
                if coro is not None:
                    coro.close()
        return response

    @_rpc
    async def AckMany(self, request, context):
        receipts = request.receipts
        _check_batch(receipts)
        response = pb.AckManyResponse()
        add, ack = response.results.add, self._engine.ack
        for receipt in receipts:
            try:
                if not receipt:
                    raise err.InvalidArgumentError(receipt, "receipt is required")
                ack(receipt)
            except err.EngineError as exc:
                add(error=_item_error(exc))
            else:
                add()
        return response

    @_rpc
    async def Receive(self, request, context):
        return self._answer(await self._long_poll(self._receive(request)), context)

    def _receive(self, request: pb.ReceiveRequest):
        return self._engine.receive(request.topic, request.group, max_messages=request.max_messages,
                                    wait=request.wait_seconds, invisible=_opt(request, "invisible_seconds"))

    @_rpc
    async def Ack(self, request, context):
        self._engine.ack(_receipt(request))
        return pb.AckResponse()

    @_rpc
    async def Nack(self, request, context):
        self._engine.nack(_receipt(request), request.delay_seconds)
        return pb.NackResponse()

    @_rpc
    async def Extend(self, request, context):
        self._engine.extend(_receipt(request), request.seconds)
        return pb.ExtendResponse()

    @_rpc
    async def OpenClient(self, request, context):
        self._engine.open_client(request.client_id, group=request.group, topic=request.topic)
        return pb.OpenClientResponse()

    @_rpc
    async def Heartbeat(self, request, context):
        self._engine.heartbeat(request.client_id)
        return pb.HeartbeatResponse()

    @_rpc
    async def CloseClient(self, request, context):
        self._engine.close_client(request.client_id)
        return pb.CloseClientResponse()

    @_rpc
    async def ChangeSubscription(self, request, context):
        Action = pb.ChangeSubscriptionRequest
        change = {Action.ADD: self._engine.subscribe, Action.REMOVE: self._engine.unsubscribe,
                  Action.SYNC: self._engine.sync}.get(request.action)
        if change is None:
            raise err.InvalidArgumentError(request.action, "action must be ADD, REMOVE or SYNC")
        change(request.client_id, list(request.names), _opt(request, "version"))
        return pb.ChangeSubscriptionResponse()

    @_rpc
    async def Poll(self, request, context):
        return self._answer(await self._long_poll(self._poll(request)), context)

    def _poll(self, request: pb.PollRequest):
        return self._engine.poll(request.client_id, max_messages=request.max_messages,
                                 wait=request.wait_seconds, invisible=_opt(request, "invisible_seconds"))

    @_stream_rpc
    async def PollStream(self, requests, context):
        async for answer in self._answer_each(requests, self._poll, context):
            yield answer

    @_stream_rpc
    async def ReceiveStream(self, requests, context):
        async for answer in self._answer_each(requests, self._receive, context):
            yield answer

    async def _answer_each(self, requests, take, context):
        # The client asks again only once it has read the answer: the messages of the last answer
        # are the only ones a vanished client may not have, and they are given back.
        unread: list[Delivery] = []
        context.add_done_callback(lambda ctx: ctx.cancelled() and self._give_back(unread))
        async for request in requests:
            unread.clear()
            unread.extend(self._fit(await self._long_poll(take(request))))
            yield _deliveries(unread)
            if self._stopping:
                return   # the client opens a new stream, which a stopping server refuses

    @_rpc
    async def KvPut(self, request, context):
        version = await self._engine.kv_put(request.table, request.key, request.value,
                                            expect=_opt(request, "expect"))
        return pb.KvPutResponse(version=version)

    @_rpc
    async def KvGet(self, request, context):
        return pb.KvGetResponse(value=self._engine.kv_get(request.table, request.key))

    @_rpc
    async def KvRead(self, request, context):
        row = self._engine.kv_read(request.table, request.key)
        return pb.KvReadResponse() if row is None else pb.KvReadResponse(value=row[0], version=row[1])

    @_rpc
    async def KvDelete(self, request, context):
        deleted = await self._engine.kv_delete(request.table, request.key, expect=_opt(request, "expect"))
        return pb.KvDeleteResponse(deleted=deleted)

    @_rpc
    async def KvList(self, request, context):
        return _items(self._engine.kv_items(request.table, request.prefix))

    @_rpc
    async def KvScan(self, request, context):
        return _items(self._engine.kv_scan(request.table, request.prefix, after=request.after,
                                           limit=request.limit))

    @_rpc
    async def Health(self, request, context):
        h = self._engine.health()
        config = self._engine.config
        return pb.HealthResponse(ok=h["ok"], topics=h["topics"], lite_topics=h["lite_topics"],
                                 clients=h["clients"], inflight=h["inflight"],
                                 max_message_bytes=config.max_message_bytes,
                                 session_timeout=config.session_timeout, problems=h["problems"],
                                 housekeeping_failures=h["housekeeping_failures"])

    # ------------------------------------------------------------ long-polls

    async def _long_poll(self, take) -> list[Delivery]:
        """Await an engine poll or receive. A caller that goes away cancels it (the engine passes
        the wake-up on); `end_long_polls` makes it answer empty."""
        if self._stopping:
            take.close()
            return []
        task = asyncio.ensure_future(take)
        self._polls.add(task)
        try:
            return await task
        except asyncio.CancelledError:
            if task.done() and not task.cancelled() and task.exception() is None:
                self._give_back(task.result())   # the caller went away just as messages came
                raise
            if self._stopping and not asyncio.current_task().cancelling():
                return []
            raise
        finally:
            self._polls.discard(task)

    def _answer(self, deliveries: list[Delivery], context: grpc.aio.ServicerContext) -> pb.Deliveries:
        sent = self._fit(deliveries)
        if sent:
            # Messages taken for a caller that went away before the answer left are given back
            # at once instead of staying invisible until their timeout.
            context.add_done_callback(lambda ctx: ctx.cancelled() and self._give_back(sent))
        return _deliveries(sent)

    def _fit(self, deliveries: list[Delivery]) -> list[Delivery]:
        """The deliveries that fit the response budget (at least one); the rest go back."""
        size = 0
        for i, d in enumerate(deliveries):
            size += len(d.body) + 256
            if d.headers:
                size += sum(len(k) + len(v) for k, v in d.headers.items())
            if i and size > self._budget:
                self._give_back(deliveries[i:])
                return deliveries[:i]
        return deliveries

    def _give_back(self, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            try:
                self._engine.nack(d.receipt)
            except err.EngineError:
                pass   # acked, expired or the engine is closing: nothing to give back


def _opt(request, field: str):
    return getattr(request, field) if request.HasField(field) else None


def _headers(request) -> dict[str, str] | None:
    headers = request.headers   # dict() of an empty protobuf map still walks the Mapping mixin
    return dict(headers) if headers else None


# PublishMany drives each publish coroutine in the handler's task, as a Task would: a step runs
# the coroutine to what it awaits next; the handler awaits that, then takes the next step.

def _first_step(coro) -> tuple:
    """(coro, what it awaits), or (None, its result or EngineError) once it has ended."""
    try:
        awaited = coro.send(None)
    except StopIteration as stop:
        return None, stop.value
    except err.EngineError as exc:
        return None, exc
    except BaseException as exc:   # a bug: PublishMany raises it, as gather did
        return None, exc
    return coro, _taken(coro, awaited)


async def _last_steps(coro, awaited):
    """Run `coro` (suspended on `awaited`) to its end: its result, or the EngineError it raised."""
    while True:
        if awaited is None:
            await asyncio.sleep(0)      # a bare yield: one loop turn
        else:
            # Not `await awaited`: the coroutine's own await of it is still pending (it marked
            # the future blocking); the handler waits for it to be done, then resumes the coroutine.
            waiter = asyncio.get_running_loop().create_future()
            wake = functools.partial(_wake, waiter)
            awaited.add_done_callback(wake)
            try:
                await waiter
            except asyncio.CancelledError:
                awaited.remove_done_callback(wake)
                coro.close()
                raise
        try:
            awaited = coro.send(None)
        except StopIteration as stop:
            return stop.value
        except err.EngineError as exc:
            return exc
        awaited = _taken(coro, awaited)


def _wake(waiter: asyncio.Future, _done: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _taken(coro, awaited):
    """What a step of `coro` yielded: None (a bare yield) or a future, whose end the handler
    then waits for (its exception, if any, reaches the coroutine when it resumes)."""
    if awaited is None or asyncio.isfuture(awaited):
        return awaited
    coro.close()
    raise RuntimeError(f"publish awaited {awaited!r}, not a future")


def _items(rows: list[tuple[str, bytes]]) -> pb.KvListResponse:
    return pb.KvListResponse(items=[pb.KvItem(key=k, value=v) for k, v in rows])


def _receipt(request) -> str:
    if not request.receipt:
        raise err.InvalidArgumentError(request.receipt, "receipt is required")
    return request.receipt


def _deliveries(deliveries: list[Delivery]) -> pb.Deliveries:
    # Each added in place (a message per delivery copied into the answer costs twice); an empty
    # map or an unset key is left out (passing one costs as much as the rest of the fields).
    answer = pb.Deliveries()
    add = answer.deliveries.add
    for d in deliveries:
        if d.headers or d.key is not None:
            add(topic=d.topic, lite_topic=d.lite_topic, message_id=d.message_id, body=d.body, headers=d.headers,
                key=d.key, receipt=d.receipt, attempt=d.attempt, timestamp=d.timestamp)
        else:   # None (lite_topic): unset
            add(topic=d.topic, lite_topic=d.lite_topic, message_id=d.message_id, body=d.body, receipt=d.receipt,
                attempt=d.attempt, timestamp=d.timestamp)
    return answer


# ---------------------------------------------------------------- server lifecycle

class EngineServer:
    """A started gRPC server in front of one engine (which it does not own)."""

    def __init__(self, server: grpc.aio.Server, service: LiteEngineService, port: int) -> None:
        self.grpc_server = server
        self.service = service
        self.port = port

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting calls, end long-polls, wait up to `grace` seconds for the rest."""
        stopping = asyncio.ensure_future(self.grpc_server.stop(grace))
        self.service.end_long_polls()
        await stopping


def server_options(config: EngineConfig, response_budget: int = RESPONSE_BUDGET) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", config.max_message_bytes + REQUEST_OVERHEAD),
            ("grpc.max_send_message_length", max(response_budget, config.max_message_bytes) + REQUEST_OVERHEAD),
            ("grpc.so_reuseport", 0)]   # a second engine on the same port must fail, not share it


async def serve(engine: Engine, host: str = "127.0.0.1", port: int = 0, *,
                response_budget: int = RESPONSE_BUDGET, interceptors=(),
                access: Access = Access()) -> tuple[EngineServer, int]:
    """Serve a started `engine` on host:port (0: a free port); returns the server and its port.
    A Poll or Receive answer holds at least one message and stops before `response_budget` bytes.
    `access`: TLS and the token calls must carry (default: neither)."""
    server = grpc.aio.server(options=server_options(engine.config, response_budget),
                             interceptors=[*access.interceptors(), *interceptors])
    service = LiteEngineService(engine, response_budget)
    pb_grpc.add_LiteEngineServicer_to_server(service, server)
    credentials = access.credentials()
    if credentials is None:
        bound = server.add_insecure_port(_address(host, port))
    else:
        bound = server.add_secure_port(_address(host, port), credentials)
    if not bound:
        raise OSError(f"cannot listen on {_address(host, port)}")
    await server.start()
    return EngineServer(server, service, bound), bound


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run(host: str = "127.0.0.1", port: int = 7600, data_dir: str | Path | None = None,
        fsync: str = "batch", *, drain_seconds: float = 5.0, metrics_port: int | None = None,
        access: Access = Access(), **settings) -> int:
    """Serve the engine until SIGTERM or SIGINT; returns the process exit status (2: a host
    reachable from other machines without a token).

    `settings` are EngineConfig fields (session_timeout, tick, quotas, ...)."""
    try:
        check_exposure(host, access)
    except ValueError as exc:
        print(f"topicbridge engine: {exc}", file=sys.stderr)
        return 2
    config = EngineConfig(data_dir=Path(data_dir) if data_dir else None, fsync=fsync, **settings)
    return asyncio.run(_serve_until_signalled(config, host, port, drain_seconds, metrics_port, access))


async def _serve_until_signalled(config: EngineConfig, host: str, port: int, drain_seconds: float,
                                 metrics_port: int | None = None, access: Access = Access()) -> int:
    try:
        engine = await Engine(config).start()
    except (err.EngineError, OSError) as exc:
        print(f"topicbridge engine: cannot open the engine: {exc}", file=sys.stderr)
        return 1
    try:
        server, bound = await serve(engine, host, port, access=access)
    except (OSError, RuntimeError) as exc:
        print(f"topicbridge engine: {exc}", file=sys.stderr)
        await engine.close()
        return 1
    if metrics_port is not None:
        from . import metrics
        try:
            bound_metrics = metrics.serve(engine, host, metrics_port)
        except OSError as exc:
            print(f"topicbridge engine: cannot serve metrics on port {metrics_port}: {exc}", file=sys.stderr)
            await server.stop(0)
            await engine.close()
            return 1
        print(f"topicbridge engine: metrics on http://{host}:{bound_metrics}/metrics", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(READY_LINE.format(host=host, port=bound), file=sys.stderr, flush=True)
    await stop.wait()
    print("topicbridge engine: stopping", file=sys.stderr, flush=True)
    await server.stop(drain_seconds)
    try:
        await engine.close()
    except err.EngineError as exc:
        print(f"topicbridge engine: closing the engine failed: {exc}", file=sys.stderr)
        return 1
    return 0
