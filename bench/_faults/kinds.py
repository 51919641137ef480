"""The fault kinds. Each is a coroutine `run(rig, tally, n)` that causes its fault around `n`
tasks sent by a real client and returns the monotonic time the fault ended (process back, fault
cleared); the runner then follows every accepted task to its end (tally.py).

A kind says which rig it needs (rigs.py), which backends it applies to, and whether its fault is
permanent: then FAILED with a reason is a correct end; otherwise only COMPLETED is (CANCELED for
the cancel kinds). `ok` in the result: that expectation met, 0 lost, 0 stuck, 0 duplicated.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from adapters.errors import StorageError

from .client import state
from .rigs import GATED, SLOW, InProc, Procs
from .tally import Tally

LITE = ("embedded", "remote")


@dataclass(frozen=True)
class Kind:
    name: str
    rig: str                                # "inproc" | "procs"
    backends: tuple[str, ...]
    capability: str
    run: Callable[..., Awaitable[float]]
    permanent: bool = False
    expect: str = "completed"               # or "canceled"


async def send_all(rig, tally: Tally, n: int, text: str = "hello", *, concurrency: int = 16) -> None:
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with limit:
            tally.sent(await rig.caller.send(tally.capability, f"{text} {i}"))
    await asyncio.gather(*(one(i) for i in range(n)))


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)       # sleep-ok: waiting on another process's state


async def reach(rig, capability: str, task_id: str, wanted: str) -> None:
    async def there() -> bool:
        task = await rig.caller.get(capability, task_id)
        return isinstance(task, dict) and state(task) == wanted
    await until(there)


# ------------------------------------------------------------------ processes

def _kill_mid_send(target: str, sig: int):
    async def run(rig: Procs, tally: Tally, n: int) -> float:
        sending = asyncio.create_task(send_all(rig, tally, n, concurrency=4))
        await until(lambda: _true(len(tally.accepted) >= max(1, n // 2) or sending.done()))
        await rig.restart(rig.gateway if target == "gateway" else rig.engine, sig)
        await sending
        await send_all(rig, tally, max(1, n // 4))      # and it serves new tasks after the restart
        return time.monotonic()
    return run


async def _true(value: bool) -> bool:
    return value


async def worker_sigkill(rig: Procs, tally: Tally, n: int) -> float:
    worker = await rig.start_worker(SLOW, delay=2.0)
    await send_all(rig, tally, n)
    await reach(rig, SLOW, tally.accepted[0], "TASK_STATE_WORKING")
    await asyncio.to_thread(worker.kill)
    await rig.start_worker(SLOW, delay=0.1)              # another instance takes the tasks over
    return time.monotonic()


# ------------------------------------------------------------------ disk and log damage

def _segments(data_dir: Path) -> list[Path]:
    return sorted((p for p in data_dir.rglob("*") if p.is_file() and p.stat().st_size > 0),
                  key=lambda p: p.stat().st_mtime)


def _damage(how: str):
    async def run(rig: Procs, tally: Tally, n: int) -> float:
        await send_all(rig, tally, n)
        await tally.settle(rig.caller, 30.0)             # every task ended before the damage
        tally.ends.clear()                               # ... and is read again after it
        holder = rig.engine if rig.kind == "remote" else rig.gateway
        await asyncio.to_thread(holder.kill)
        newest = _segments(rig.data_dir)[-1]
        if how == "torn":       # a write cut short by the crash: half a record header at the tail
            with open(newest, "ab") as f:
                f.write(b"\x00\x00\x01\x00\xde\xad")
        else:                   # bit rot in the middle of the newest file
            data = bytearray(newest.read_bytes())
            middle = len(data) // 2
            data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
            newest.write_bytes(bytes(data))
        await asyncio.to_thread(holder.start)
        if holder is rig.engine:
            await asyncio.to_thread(rig.gateway.signal, signal.SIGTERM)   # a fresh gateway on the repaired engine
            await asyncio.to_thread(rig.gateway.start)
        await rig.caller.until_ready()
        await send_all(rig, tally, max(1, n // 4))
        return time.monotonic()
    return run


def mount_small(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True,
                   capture_output=True)


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


async def full_data_dir(rig: Procs, tally: Tally, n: int) -> float:
    """The data directory is a tmpfs capped small (set up by the runner): send big tasks until the
    gateway refuses them, then grow the disk and send again."""
    for i in range(max(n, 400)):
        if tally.sent(await rig.caller.send(tally.capability, f"{i} " + "x" * 32_000)) is None and tally.refused >= 3:
            break
    subprocess.run(["mount", "-o", "remount,size=256m", str(rig.data_dir)], check=True, capture_output=True)
    ended = time.monotonic()
    await send_all(rig, tally, max(1, n // 4))
    return ended


# ------------------------------------------------------------------ agents behind a bridge

def _agent(mode: str, stop_it: bool = False):
    async def run(rig: InProc, tally: Tally, n: int) -> float:
        proc, name = await rig.agent(mode, delay=1.0)
        tally.capability = name
        if stop_it:
            await asyncio.to_thread(proc.kill)
        await send_all(rig, tally, n)
        return time.monotonic()
    return run


# ------------------------------------------------------------------ clients and cancels

async def client_disconnect(rig: InProc, tally: Tally, n: int) -> float:
    await asyncio.gather(*(_drop(rig, tally, i) for i in range(n)))
    return time.monotonic()


async def _drop(rig: InProc, tally: Tally, i: int) -> None:
    tally.sent(await rig.caller.stream_and_drop(tally.capability, f"hang up {i}"))


async def cancel_submitted(rig: InProc, tally: Tally, n: int) -> float:
    await send_all(rig, tally, n + 1)                   # the gated worker holds the first, the rest wait
    first, *queued = tally.accepted
    await asyncio.gather(*(rig.caller.cancel(GATED, t) for t in queued))
    rig.gate.set()
    await rig.caller.cancel(GATED, first)               # may already be done: then it stays COMPLETED
    return time.monotonic()


async def cancel_working(rig: InProc, tally: Tally, n: int) -> float:
    rig.slow_delay = 30.0
    await send_all(rig, tally, n)
    for task_id in tally.accepted:
        await reach(rig, SLOW, task_id, "TASK_STATE_WORKING")
    await asyncio.gather(*(rig.caller.cancel(SLOW, t) for t in tally.accepted))
    return time.monotonic()


async def cancel_input_required(rig: InProc, tally: Tally, n: int) -> float:
    await send_all(rig, tally, n, text="")
    for task_id in tally.accepted:
        await reach(rig, "word-stats", task_id, "TASK_STATE_INPUT_REQUIRED")
    await asyncio.gather(*(rig.caller.cancel("word-stats", t) for t in tally.accepted))
    return time.monotonic()


# ------------------------------------------------------------------ the backend port, through FaultyBackend

def _port_fault(op: str, *, delay: float = 0.0, storage: bool = False):
    async def run(rig: InProc, tally: Tally, n: int) -> float:
        error = StorageError(f"injected {op} failure") if storage else None
        if delay:
            rig.faults.delay(op, delay, times=n)
        else:
            rig.faults.fail(op, error=error, times=max(1, n // 2))
        await send_all(rig, tally, n)
        if not delay:
            await rig.faults.bitten(op, at_least=max(1, n // 2))
        rig.faults.clear()
        ended = time.monotonic()
        await send_all(rig, tally, max(1, n // 4))
        return ended
    return run


KINDS: dict[str, Kind] = {k.name: k for k in [
    Kind("gateway-sigkill", "procs", LITE, "echo", _kill_mid_send("gateway", signal.SIGKILL)),
    Kind("gateway-sigterm", "procs", LITE, "echo", _kill_mid_send("gateway", signal.SIGTERM)),
    Kind("engine-sigkill", "procs", ("remote",), "echo", _kill_mid_send("engine", signal.SIGKILL)),
    Kind("engine-sigterm", "procs", ("remote",), "echo", _kill_mid_send("engine", signal.SIGTERM)),
    Kind("worker-sigkill", "procs", ("remote",), SLOW, worker_sigkill),
    Kind("full-data-dir", "procs", LITE, "echo", full_data_dir, permanent=True),
    Kind("corrupted-log", "procs", LITE, "echo", _damage("corrupt"), permanent=True),
    Kind("torn-log", "procs", LITE, "echo", _damage("torn")),
    Kind("agent-down", "inproc", LITE, "", _agent("ok", stop_it=True), permanent=True),
    Kind("agent-slow", "inproc", LITE, "", _agent("slow")),
    Kind("agent-erroring", "inproc", LITE, "", _agent("error"), permanent=True),
    Kind("agent-hanging", "inproc", LITE, "", _agent("hang"), permanent=True),
    Kind("agent-huge", "inproc", LITE, "", _agent("huge"), permanent=True),
    Kind("agent-garbage", "inproc", LITE, "", _agent("garbage"), permanent=True),
    Kind("client-disconnect", "inproc", LITE, SLOW, client_disconnect),
    Kind("cancel-submitted", "inproc", LITE, GATED, cancel_submitted, expect="canceled"),
    Kind("cancel-working", "inproc", LITE, SLOW, cancel_working, expect="canceled"),
    Kind("cancel-input-required", "inproc", LITE, "word-stats", cancel_input_required, expect="canceled"),
    Kind("publish-failing", "inproc", LITE, "echo", _port_fault("publish")),
    Kind("put-failing", "inproc", LITE, "echo", _port_fault("put", storage=True)),
    Kind("poll-failing", "inproc", LITE, "echo", _port_fault("poll")),
    Kind("ack-failing", "inproc", LITE, "echo", _port_fault("ack")),
    Kind("publish-delayed", "inproc", LITE, "echo", _port_fault("publish", delay=0.3)),
    Kind("put-delayed", "inproc", LITE, "echo", _port_fault("put", delay=0.3)),
]}
