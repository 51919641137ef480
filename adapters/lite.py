"""The lite engine behind the Backend port, embedded in this process.

The remote variant (a client of `topicbridge engine`) lives in `lite_remote.py`; both are chosen
by configuration through `adapters.open_backend`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from contextvars import ContextVar
from typing import Iterable

import lite_engine
from lite_engine import Engine, EngineConfig, TopicConfig
from lite_engine.access import Access
from lite_engine.names import validate_name

from . import errors
from .base import Delivery, Health, Message, TopicSpec
from .lite_access import listen_access

log = logging.getLogger("topicbridge.lite")


class translated:
    """Re-raise engine errors as the port's errors (same data, backend-neutral types). A class,
    not a generator context manager: it wraps every call into the engine (a task's path makes
    dozens), and entering a class is a fraction of a generator's set-up."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, lite_engine.EngineError):
            _raise_translated(exc)
        return False


def _raise_translated(exc: lite_engine.EngineError) -> None:
    try:
        raise exc
    except lite_engine.MessageTooLargeError as e:
        raise errors.MessageTooLargeError(e.size, e.limit) from e
    except lite_engine.InvalidNameError as e:
        raise errors.InvalidRequestError(e.kind, e.value, e.reason) from e
    except lite_engine.InvalidArgumentError as e:
        raise errors.InvalidRequestError("argument", e.value, e.reason) from e
    except lite_engine.UnknownClientError as e:
        raise errors.UnknownClientError(e.client_id) from e
    except lite_engine.UnknownReceiptError as e:
        raise errors.UnknownReceiptError(e.receipt) from e
    except lite_engine.UnknownTopicError as e:
        raise errors.NotFoundError("topic", e.topic) from e
    except lite_engine.TopicKindError as e:
        raise errors.ConflictError(str(e)) from e
    except lite_engine.ConflictError as e:
        raise table_conflict(e) from e
    except lite_engine.QuotaExceededError as e:
        raise errors.QuotaExceededError(e.quota, e.limit, e.client_id) from e
    except lite_engine.EngineClosedError as e:
        raise errors.BackendUnavailableError("lite", str(e)) from e
    except lite_engine.DataDirLockedError as e:
        raise errors.StorageError(str(e)) from e   # keeps the advice: how to share one engine
    except lite_engine.StorageError as e:
        raise errors.StorageError(e.reason) from e


def table_conflict(e: lite_engine.ConflictError) -> errors.ConflictError:
    """The port's ConflictError, carrying the row and both versions (0: no row)."""
    conflict = errors.ConflictError(str(e))
    conflict.table, conflict.key, conflict.expected, conflict.actual = e.table, e.key, e.expected, e.actual
    return conflict


def _delivery(d: lite_engine.Delivery, settler) -> Delivery:
    return Delivery(d.topic, d.lite_topic, d.message_id, d.body, d.headers, d.key, d.attempt,
                    d.receipt, settler)


def new_client_id(prefix: str = "client") -> str:
    return f"{prefix}-{os.getpid()}-{os.urandom(4).hex()}"


class _EngineSettler:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def ack(self, delivery: Delivery) -> None:
        with translated():
            self._engine.ack(delivery.receipt)

    async def ack_many(self, deliveries: list[Delivery], *, gone_ok: bool = False) -> None:
        """adapters.base.ack_many for deliveries of this consumer: the engine acks at once, so
        one coroutine acks them all (each tried; the first error raised after)."""
        ack, first = self._engine.ack, None
        for delivery in deliveries:
            try:
                ack(delivery.receipt)
            except lite_engine.UnknownReceiptError as e:
                if not gone_ok and first is None:
                    first = e
            except lite_engine.EngineError as e:
                if first is None:
                    first = e
        if first is not None:
            _raise_translated(first)

    async def nack(self, delivery: Delivery, delay: float = 0.0) -> None:
        with translated():
            self._engine.nack(delivery.receipt, delay)

    async def extend(self, delivery: Delivery, seconds: float) -> None:
        with translated():
            self._engine.extend(delivery.receipt, seconds)


class EmbeddedGroupConsumer(_EngineSettler):
    def __init__(self, engine: Engine, topic: str, group: str, invisible: float) -> None:
        super().__init__(engine)
        self.topic, self.group, self._invisible = topic, group, invisible

    async def receive(self, max_messages: int = 1, wait: float = 0.0) -> list[Delivery]:
        await asyncio.sleep(0)   # a consumer that always finds data must still let timers run
        with translated():
            got = await self._engine.receive(self.topic, self.group, max_messages=max_messages,
                                             wait=wait, invisible=self._invisible)
        return [_delivery(d, self) for d in got]

    async def close(self) -> None:
        pass


class EmbeddedLiteConsumer(_EngineSettler):
    """A lite client of the in-process engine. Heartbeats run while it is open."""

    def __init__(self, engine: Engine, topic: str, group: str, client_id: str, invisible: float,
                 heartbeat_every: float) -> None:
        super().__init__(engine)
        self.topic, self.group, self.client_id = topic, group, client_id
        self._invisible = invisible
        self._versions = itertools.count(1)
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat(heartbeat_every))

    async def _beat(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(lite_engine.EngineError):
                self._engine.heartbeat(self.client_id)

    async def subscribe(self, lite_topics: Iterable[str], *, fresh: bool = False) -> None:
        # `fresh` is meaningless here: a new subscriber always reads what the topic retains.
        with translated():
            self._engine.subscribe(self.client_id, list(lite_topics), next(self._versions))

    async def unsubscribe(self, lite_topics: Iterable[str]) -> None:
        with translated():
            self._engine.unsubscribe(self.client_id, list(lite_topics), next(self._versions))

    async def sync(self, lite_topics: Iterable[str]) -> None:
        with translated():
            self._engine.sync(self.client_id, list(lite_topics), next(self._versions))

    async def poll(self, max_messages: int = 16, wait: float = 0.0) -> list[Delivery]:
        await asyncio.sleep(0)   # a consumer that always finds data must still let timers run
        with translated():
            got = await self._engine.poll(self.client_id, max_messages=max_messages, wait=wait,
                                          invisible=self._invisible)
        return [_delivery(d, self) for d in got]

    async def close(self) -> None:
        self._heartbeat.cancel()
        with contextlib.suppress(lite_engine.EngineError):
            self._engine.close_client(self.client_id)

    async def abandon(self) -> None:
        self._heartbeat.cancel()


class DeferredDurability:
    """`with backend.defer_durability() as writes:` table writes started inside return once
    written and readable by every reader of the table, not once durable; `await
    writes.durable()` returns once all of them are (or raises the BackendError that keeps them
    from it). Writes in tasks started inside the block count too (they copy its context).

    What it is for: the relay answers a waiting caller as soon as the turn's end is readable in
    the task index, and waits for the index write's fsync only before it acks the reply event
    (which, unacked, comes back and is indexed again if this process dies first): a durable wait
    fewer on every blocking call's path. Readers may see a row that a crash then takes back;
    the caller that does this must be able to write it again (the relay's redelivery)."""

    __slots__ = ("engine", "_lsn", "_token")
    defers = True       # writes inside return before they are durable

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lsn: int | None = None
        self._token = None

    def __enter__(self) -> "DeferredDurability":
        self._token = _DEFERRAL.set(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _DEFERRAL.reset(self._token)

    def note(self, lsn: int | None) -> None:
        if lsn is not None and (self._lsn is None or lsn > self._lsn):
            self._lsn = lsn       # the log syncs in LSN order: the last write covers the others

    async def durable(self, *, lazy: bool = False) -> None:
        """Once every write of the block is durable. `lazy`: starting no commit for it (the next
        writer's commit, or the engine's deferred one, takes it), for a wait nobody is blocked on."""
        with translated():
            fut = self.engine.kv_sync_future(self._lsn, lazy=lazy)
            if fut is not None:
                await fut


_DEFERRAL: ContextVar[DeferredDurability | None] = ContextVar("topicbridge_deferred_durability", default=None)


class EngineTable:
    def __init__(self, engine: Engine, name: str) -> None:
        self._engine, self.name = engine, name

    # put and delete await the engine's durable future themselves rather than its kv_put /
    # kv_delete coroutine: a frame less on each of a task's table writes.
    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        with translated():
            engine = self._engine
            version, lsn = engine.kv_put_applied(self.name, key, value, expect=expect)
            deferral = _DEFERRAL.get()
            if deferral is not None and deferral.engine is engine:
                deferral.note(lsn)
            elif lsn is not None and (fut := engine.kv_sync_future(lsn)) is not None:
                await fut
            return version

    async def get(self, key: str) -> bytes | None:
        with translated():
            return self._engine.kv_get(self.name, key)

    async def read(self, key: str) -> tuple[bytes, int] | None:
        with translated():
            return self._engine.kv_read(self.name, key)

    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        with translated():
            engine = self._engine
            deleted, lsn = engine.kv_delete_applied(self.name, key, expect=expect)
            deferral = _DEFERRAL.get()
            if deferral is not None and deferral.engine is engine:
                deferral.note(lsn)
            elif lsn is not None and (fut := engine.kv_sync_future(lsn)) is not None:
                await fut
            return deleted

    async def scan(self, prefix: str = "", *, after: str = "", limit: int = 100) -> list[tuple[str, bytes]]:
        with translated():
            return self._engine.kv_scan(self.name, prefix, after=after, limit=limit)

    async def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        with translated():
            return self._engine.kv_items(self.name, prefix)


class EmbeddedLiteBackend:
    """The default backend: the lite engine in this process."""

    name = "lite"
    ordered_publish = True      # Engine.publish and kv_put/kv_delete append before their first await


    def __init__(self, config: EngineConfig | None = None, *, listen: str | None = None,
                 access: Access | None = None) -> None:
        self.config = config or EngineConfig()
        self.max_message_bytes = self.config.max_message_bytes
        self.engine = Engine(self.config)
        self.listen = listen            # host:port where other local processes reach this engine
        # TLS and the token of that face; a host other than loopback needs a token.
        self.access = listen_access(listen) if listen and access is None else access
        self.listening: str | None = None
        self._face = None

    async def start(self) -> None:
        with translated():
            await self.engine.start()
        if self.listen:
            await self._open_face(self.listen)

    async def _open_face(self, address: str) -> None:
        """Serve the engine over gRPC, so workers in other processes share it (lite.mode=remote):
        only one process may open the data directory. A busy port costs only the sharing."""
        from lite_engine.service import serve
        host, _, port = address.rpartition(":")
        try:
            self._face, bound = await serve(self.engine, host.strip("[]"), int(port), access=self.access)
        except (OSError, RuntimeError) as e:
            log.warning("the embedded engine is not shared with other processes: cannot listen on %s (%s); "
                        "set lite.listen to a free host:port", address, e)
            return
        self.listening = f"{host}:{bound}"

    async def close(self) -> None:
        if self._face is not None:
            face, self._face = self._face, None
            await face.stop(grace=1.0)      # answers waiting polls; remote workers reconnect later
        await self.engine.close()

    async def health(self) -> Health:
        detail = self.engine.health()
        return Health(detail.pop("ok"), self.name, detail)

    async def create_topic(self, spec: TopicSpec) -> None:
        config = TopicConfig(lite=spec.lite, ordered=spec.ordered, lite_idle_seconds=spec.lite_idle_seconds,
                             max_attempts=spec.max_attempts)
        with translated():
            await self.engine.create_topic(spec.name, config)

    async def publish(self, topic: str, message: Message, *, lite_topic: str | None = None) -> str:
        with translated():
            return await self.engine.publish(topic, message.body, lite=lite_topic,
                                             headers=dict(message.headers) or None, key=message.key)

    async def group_consumer(self, topic: str, group: str, *, invisible: float = 30.0) -> EmbeddedGroupConsumer:
        return EmbeddedGroupConsumer(self.engine, topic, group, invisible)

    async def lite_consumer(self, topic: str, group: str, client_id: str | None = None,
                            *, invisible: float = 30.0) -> EmbeddedLiteConsumer:
        client_id = client_id or new_client_id(group)
        with translated():
            self.engine.open_client(client_id, group=group, topic=topic)
        return EmbeddedLiteConsumer(self.engine, topic, group, client_id, invisible,
                                    heartbeat_every=self.config.session_timeout / 3)

    def dead_letter_topic(self, group: str) -> str:
        return lite_engine.dead_letter_topic(group)

    async def table(self, name: str) -> EngineTable:
        with translated():
            validate_name("table", name)
        return EngineTable(self.engine, name)

    def defer_durability(self) -> DeferredDurability:
        """Table writes that return before they are durable (see DeferredDurability). Optional
        in the port: a backend whose writes are readable only once durable has none."""
        return DeferredDurability(self.engine)
