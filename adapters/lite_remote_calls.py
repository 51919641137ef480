"""Fewer gRPC calls to a remote lite engine: calls made together go out as one batch (`Batcher`),
and a consumer's polls go over one long-lived stream (`CallStream`).

A unary gRPC call costs more CPU on both sides than the engine work it carries (bench:
backend_roundtrip), so the remote adapter spends calls only where a caller waits for them.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Awaitable, Callable

import grpc

from . import errors


class Batcher:
    """Items submitted in the same loop tick, and while a batch is on its way, go out together as
    one call of `send`; each submitter gets its own result or error.

    One batch is in flight at a time, so items reach the engine in submission order. `send(items)`
    returns one result per item: a value, or an exception for that item's submitter; when `send`
    itself raises, every submitter of the batch gets that error.

    `ordered`: no item may land once an item submitted before it has failed for a passing reason
    (a refused item, InvalidRequestError, fails alone). So a failed batch also fails every item
    that waited behind it: they were submitted before the failure was seen, and a pipelining
    caller (a worker's reply events, then the final one) must not see a later item land while an
    earlier one is lost. Items submitted after the failure is seen go on as usual.
    """

    def __init__(self, send: Callable[[list], Awaitable[list]], *, max_items: int, max_bytes: int,
                 ordered: bool = False) -> None:
        self._send = send
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.ordered = ordered
        self._queue: collections.deque[tuple[object, int, asyncio.Future]] = collections.deque()
        self._pump: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None   # the pump's, read again per pump
        self.batches = 0   # calls made

    async def submit(self, item: object, size: int = 0):
        """`size` counts toward `max_bytes` per batch; an item larger than that goes alone."""
        return await self.enqueue(item, size)

    def enqueue(self, item: object, size: int = 0) -> asyncio.Future:
        """`submit` without the coroutine: the future of the item's result (cancel it to take the
        item back before it leaves). Call from a coroutine of the loop that awaits it."""
        if self._pump is None:
            # Python 3.11's get_running_loop is a getpid() call: once per pump, not per item.
            loop = self._loop = asyncio.get_running_loop()
            fut = loop.create_future()
            self._queue.append((item, size, fut))
            self._pump = loop.create_task(self._run())
        else:
            fut = self._loop.create_future()
            self._queue.append((item, size, fut))
        return fut

    def close(self, error: Exception) -> None:
        """Fail what waits to be sent with `error`; a batch already sent still gets its answer."""
        while self._queue:
            _, _, fut = self._queue.popleft()
            if not fut.done():
                fut.set_exception(error)

    async def _run(self) -> None:
        try:
            while batch := self._take():
                await self._deliver(batch)
        finally:
            self._pump = None

    def _take(self) -> list:
        batch, size = [], 0
        while self._queue and len(batch) < self.max_items:
            item, item_size, fut = self._queue[0]
            if fut.done():          # its caller was cancelled before it left
                self._queue.popleft()
                continue
            if batch and size + item_size > self.max_bytes:
                break
            batch.append(self._queue.popleft())
            size += item_size
        return batch

    async def _deliver(self, batch: list) -> None:
        self.batches += 1
        try:
            results = await self._send([item for item, _, _ in batch])
        except asyncio.CancelledError:
            for _, _, fut in batch:
                fut.cancel()
            raise
        except Exception as exc:   # the call failed: so did every item in it
            results = [exc] * len(batch)
        if self.ordered:
            passing = next((r for r in results if isinstance(r, Exception)
                            and not isinstance(r, errors.InvalidRequestError)), None)
            if passing is not None:
                self.close(passing)
        for (_, _, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)


class CallStream:
    """Requests answered one at a time on a long-lived bidirectional stream, opened on first use
    and again after any failure. A request whose caller gives up (cancelled, or no answer within
    its bound) ends the stream, and the engine gives that answer's messages back."""

    def __init__(self, open_call: Callable[[bool], grpc.aio.StreamStreamCall],
                 port_error: Callable[[grpc.aio.AioRpcError], errors.BackendError],
                 backend: str, rpc_timeout: float) -> None:
        self._open = open_call            # (wait_for_ready) -> a new call
        self._port_error = port_error
        self._backend = backend
        self._rpc_timeout = rpc_timeout
        self._call: grpc.aio.StreamStreamCall | None = None
        self._lock = asyncio.Lock()
        self.opened = 0                   # streams opened

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def ask(self, request, wait: float):
        async with self._lock:
            if self._call is None:
                self._call = self._open(wait > 0)   # like a unary long-poll: wait for a restarting engine
                self.opened += 1
            call = self._call
            try:
                async with asyncio.timeout(self._rpc_timeout + wait):
                    await call.write(request)
                    answer = await call.read()
            except BaseException as exc:
                self._call = None
                call.cancel()
                failure = self._failure(exc)
                if failure is exc:
                    raise
                raise failure from exc
            if answer is grpc.aio.EOF:   # the engine is stopping
                self._call = None
                raise errors.BackendUnavailableError(self._backend, f"the engine ended the stream ({await call.code()})")
            return answer

    def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _failure(self, exc: BaseException) -> BaseException:
        if isinstance(exc, grpc.aio.AioRpcError):
            return self._port_error(exc)
        if isinstance(exc, TimeoutError):
            return errors.BackendUnavailableError(self._backend, "no answer on the stream in time")
        if isinstance(exc, (asyncio.InvalidStateError, grpc.aio.UsageError)):   # ended, or channel closed
            return errors.BackendUnavailableError(self._backend, f"stream closed: {exc}")
        return exc
