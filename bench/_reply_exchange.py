"""What every reply pattern of bench.reply_patterns shares, on any broker: the instance's side
(`Instance`), the store-polling pattern (`Polling`, written against the backend port's Table) and
the exchange that publishes every reply and measures reads and latency (`exchange`)."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid


class Instance:
    """One gateway instance's side of a pattern: `expect` registers a task and returns where
    its reply must go; the reply's arrival time is set on the task's future."""

    reads = 0

    async def start(self) -> None: ...
    async def expect(self, task_id: str, arrived: asyncio.Future) -> str: ...
    async def close(self) -> None: ...


class Polling(Instance):
    def __init__(self, backend, table: str, interval: float) -> None:
        self._backend, self._name, self._interval = backend, table, interval
        self._waiting: dict[str, asyncio.Future] = {}
        self.lookups = 0

    async def start(self) -> None:
        await self._backend.start()
        self._table = await self._backend.table(self._name)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)    # polling is the pattern under test
            for task_id, fut in list(self._waiting.items()):
                self.lookups += 1
                if await self._table.get(task_id) is not None:
                    del self._waiting[task_id]
                    fut.set_result(time.perf_counter())

    async def expect(self, task_id: str, arrived: asyncio.Future) -> str:
        self._waiting[task_id] = arrived
        return task_id

    @property
    def reads(self) -> int:
        return self._backend._tables[self._name].records_read

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._backend.close()


# ------------------------------------------------------------------ the measured exchange


async def exchange(instances: list[Instance], publish, args, settle: float = 0.0) -> dict:
    """`settle` > 0: before and after the replies, wait until the instances' read counts stay
    put for `settle` seconds (copies that other instances have yet to read count too)."""
    loop = asyncio.get_running_loop()
    tasks = []
    began = time.perf_counter()
    for k in range(args.tasks):
        task_id = uuid.uuid4().hex
        arrived = loop.create_future()
        address = await instances[k % len(instances)].expect(task_id, arrived)
        tasks.append((task_id, address, arrived))
    setup = time.perf_counter() - began
    if settle:
        await settled(instances, settle)
    reads_before = sum(i.reads for i in instances)
    gate = asyncio.Semaphore(args.inflight)
    latencies: list[float] = []

    async def one(task_id: str, address: str, arrived: asyncio.Future) -> None:
        async with gate:
            sent = time.perf_counter()
            await publish(address, task_id, b"reply:" + task_id.encode())
        latencies.append(await asyncio.wait_for(arrived, 120) - sent)

    began = time.perf_counter()
    await asyncio.gather(*(one(*t) for t in tasks))
    elapsed = time.perf_counter() - began
    if settle:
        await settled(instances, settle)
    reads = sum(i.reads for i in instances) - reads_before
    latencies.sort()
    out = {"replies": len(latencies), "reads_per_reply": round(reads / len(latencies), 3),
           "p50_ms": round(statistics.median(latencies) * 1e3, 2),
           "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1e3, 2),
           "max_ms": round(latencies[-1] * 1e3, 2),
           # A tail hides below p99: e.g. replies whose broker event was dropped and re-created
           # by a full dispatch ~10-18 s later.
           "share_over_1s": _share_over(latencies, 1.0),
           "share_over_15s": _share_over(latencies, 15.0),
           "replies_per_s": round(len(latencies) / elapsed, 1),
           "setup_ms_per_task": round(setup / len(latencies) * 1e3, 3)}
    lookups = sum(getattr(i, "lookups", 0) for i in instances)
    if lookups:
        out["store_lookups_per_reply"] = round(lookups / len(latencies), 2)
    return out


def _share_over(latencies: list[float], seconds: float) -> float:
    return round(sum(1 for x in latencies if x > seconds) / len(latencies), 4)


async def settled(instances: list[Instance], quiet: float, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    last = sum(i.reads for i in instances)
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet)
        now = sum(i.reads for i in instances)
        if now == last:
            return
        last = now
