"""The fault kinds. Each is a coroutine `run(rig, tally, n)` that causes its fault around `n`
tasks sent by a real client and returns the monotonic time the fault ended (process back, fault
cleared); the runner then follows every accepted task to its end (tally.py).

A kind says which rig it needs (rigs.py), which backends it applies to, and whether its fault is
permanent: then FAILED with a reason is a correct end; otherwise only COMPLETED is (CANCELED for
the cancel kinds). `ok` in the result: that expectation met, 0 lost, 0 stuck, 0 duplicated.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from adapters.errors import StorageError
from gateway.tasks.lifetimes import FOLLOW_UP_GRACE as LIFETIMES_GRACE

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
    gateway: tuple[tuple[str, object], ...] = ()   # gateway settings of the rig (e.g. a short deadline)


async def send_all(rig, tally: Tally, n: int, text: str = "hello", *, concurrency: int = 16) -> None:
    """Send `n` tasks "<text> <i>"; an empty `text` sends blank messages (word-stats asks for input)."""
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with limit:
            tally.sent(await rig.caller.send(tally.capability, f"{text} {i}" if text else " "))
    await asyncio.gather(*(one(i) for i in range(n)))


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)       # sleep-ok: waiting on another process's state


async def reach(rig, capability: str, task_id: str, *wanted: str) -> None:
    """Wait until GetTask shows the task in one of the `wanted` states."""
    async def there() -> bool:
        task = await rig.caller.get(capability, task_id)
        return isinstance(task, dict) and state(task) in wanted
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
    # the worker has started (a loaded machine may show the first task done already: the rest run)
    await reach(rig, SLOW, tally.accepted[0], "TASK_STATE_WORKING", "TASK_STATE_COMPLETED")
    await asyncio.to_thread(worker.kill)
    await rig.start_worker(SLOW, delay=0.1)              # another instance takes the tasks over
    return time.monotonic()


# ------------------------------------------------------------------ disk and log damage

def _segments(data_dir: Path) -> list[Path]:
    return sorted((p for p in data_dir.rglob("*") if p.is_file() and p.stat().st_size > 0),
                  key=lambda p: p.stat().st_mtime)


def _damage(how: str):
    """`torn`: a crash cut the last write short; the restart truncates it and serves on.
    `corrupt`: bytes changed mid-log; the restart is refused with CorruptLogError naming segment
    and offset (the expected end: nothing is replayed past damage), the operator runs
    `topicbridge engine --repair`, and the restart serves again. The tasks sent before the damage
    had ended; the cut takes what was written after it. A task whose every row it took is gone
    (`cut_by_repair`, counted apart, not as lost); one it rolled back (`rolled_back_by_repair`)
    runs again if its envelope is left, or, if the cut took the envelope and left its index row,
    fails at its deadline (folded `LIFETIMES_GRACE` after it if the cut took its owner row too):
    it must end either way."""
    async def run(rig: Procs, tally: Tally, n: int) -> float:
        await send_all(rig, tally, n)
        await tally.settle(rig.caller, 30.0)             # every task ended before the damage
        before = dict(tally.ends)
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
            tally.notes["refused_start"] = await _refused_start(holder, newest)
            tally.notes["repair"] = await _repair(rig.data_dir)
        await asyncio.to_thread(holder.start)
        if holder is rig.engine:
            await asyncio.to_thread(rig.gateway.signal, signal.SIGTERM)   # a fresh gateway on the repaired engine
            await asyncio.to_thread(rig.gateway.start)
        await rig.caller.until_ready()
        if how == "corrupt":    # what the cut took is gone for good: counted apart, not as lost
            # a task whose owner row the cut took too is followed by nobody: the lifetimes sweep
            # fails it at its deadline and folds that itself LIFETIMES_GRACE later
            await tally.settle(rig.caller, 30.0 + LIFETIMES_GRACE)
            cut = [t for t, end in tally.ends.items() if "lost" in end]
            tally.notes["cut_by_repair"] = len(cut)
            tally.notes["rolled_back_by_repair"] = sum(
                1 for t, end in tally.ends.items() if "lost" not in end and end != before.get(t))
            tally.ends.update({t: before[t] for t in cut})
        await send_all(rig, tally, max(1, n // 4))
        return time.monotonic()
    return run


async def _refused_start(holder, segment: Path) -> str:
    """Start `holder` on the damaged log: it must exit naming the error, the segment and the offset."""
    try:
        await asyncio.to_thread(holder.start, 60.0)
    except RuntimeError as e:
        said = str(e)
        if "CorruptLogError" not in said and "corrupt commit log" not in said or segment.name not in said:
            raise AssertionError(f"refused, but not naming the corrupt segment {segment.name}: {said[-600:]}")
        line = next((l for l in said.splitlines() if "corrupt commit log" in l), said.splitlines()[-1])
        return line.strip()[-300:]
    raise AssertionError(f"{holder.name} started on a log corrupted mid-segment")


async def _repair(data_dir: Path) -> str:
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "lite_engine.cli", "--repair",
                                                    "--data-dir", str(data_dir)], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"topicbridge engine --repair failed: {done.stdout}{done.stderr}")
    return done.stdout.strip()[-400:]


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
    Kind("corrupted-log", "procs", LITE, "echo", _damage("corrupt"), permanent=True,
         # a task the cut rolled back to before its envelope fails at its deadline, within the bound
         gateway=(("task_timeout_seconds", 15.0),)),
    Kind("torn-log", "procs", LITE, "echo", _damage("torn")),
    Kind("agent-down", "inproc", LITE, "", _agent("ok", stop_it=True), permanent=True),
    Kind("agent-slow", "inproc", LITE, "", _agent("slow")),
    Kind("agent-erroring", "inproc", LITE, "", _agent("error"), permanent=True),
    Kind("agent-hanging", "inproc", LITE, "", _agent("hang"), permanent=True,
         gateway=(("task_timeout_seconds", 5.0),)),     # the deadline ends what the agent never does
    Kind("agent-huge", "inproc", LITE, "", _agent("huge"), permanent=True,    # 8 MB answers, over the cap:
         gateway=(("max_agent_response_bytes", 2 << 20),)),                  # read no further, fail fast
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
