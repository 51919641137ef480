"""`topicbridge serve --demo` SIGTERMed while clients keep sending: it exits by itself (no SIGKILL
needed within STOP_BOUND), and after a restart on the same data directory every task it had
accepted ends COMPLETED: finished before the exit, or recovered after it. None lost, none stuck."""

from __future__ import annotations

import asyncio
import signal

from bench._faults.kinds import send_all, until
from bench._faults.rigs import Procs
from bench._faults.tally import Tally

TASKS = 40
STOP_BOUND = 30.0       # Proc.signal SIGKILLs after this: a hang, not a slow machine


async def _true(value: bool) -> bool:
    return value


async def test_a_loaded_serve_exits_on_sigterm_and_every_accepted_task_is_finished_or_recovered(tmp_path):
    tally = Tally("echo")
    async with Procs("embedded", tmp_path) as rig:
        sending = asyncio.create_task(send_all(rig, tally, TASKS, concurrency=16))
        await until(lambda: _true(len(tally.accepted) >= TASKS // 4 or sending.done()), timeout=120)
        status = await asyncio.to_thread(rig.gateway.signal, signal.SIGTERM, STOP_BOUND)
        assert status != -signal.SIGKILL, f"serve did not exit within {STOP_BOUND} s of SIGTERM:\n{rig.gateway.tail()}"
        await sending                       # what was sent after the exit is refused, not accepted
        await asyncio.to_thread(rig.gateway.start)
        await rig.caller.until_ready()
        await tally.settle(rig.caller, 60.0)
    summary = tally.summary()
    assert summary["accepted"] > 0
    assert summary["lost"] == summary["stuck"] == summary["duplicated"] == 0, summary
    assert summary["completed"] == summary["accepted"], summary
