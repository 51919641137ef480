"""`topicbridge serve --demo` on its embedded engine (data directory kept), killed (SIGKILL) or
stopped (SIGTERM) while a bridged A2A agent works on a task the client called blocking or
streaming, then started again on the same port and data directory: the task ends COMPLETED with
one artifact, as GetTask shows it (on 9dcf2a7 it stayed SUBMITTED/WORKING forever: nobody
subscribed to its reply channel after the restart). The native worker under the same signals:
the gateway-sigkill and gateway-sigterm kinds of test_kinds.py."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
import pytest

from bench._faults.client import HEADERS, Caller, message, state
from bench._faults.procs import agent_proc, free_port, gateway_proc

AGENT = "slow-agent"


async def _started(proc) -> str:
    ready = await asyncio.to_thread(proc.start)
    return ready.group(1) if ready.re.groups else ready.group(0)


async def _call_until_first_event(caller: Caller, call: str) -> asyncio.Task:
    """Start the call; return it (running) once the task exists on the gateway."""
    method = "SendStreamingMessage" if call == "streaming" else "SendMessage"
    params = {"message": message("restart me")}
    if call == "blocking":
        params["configuration"] = {"returnImmediately": False}
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}

    async def run() -> None:
        headers = HEADERS | ({"Accept": "text/event-stream"} if call == "streaming" else {})
        try:
            async with caller.http.stream("POST", f"/agents/{AGENT}/", json=body, headers=headers) as response:
                async for _ in response.aiter_lines():
                    pass
        except httpx.HTTPError:
            pass            # the gateway went away mid-call: what this test does to it
    return asyncio.get_running_loop().create_task(run())


async def _only_task(caller: Caller) -> dict:
    async with asyncio.timeout(30):
        while True:
            listed = await caller.call(AGENT, "ListTasks", {})
            if isinstance(listed, dict) and listed.get("tasks"):
                [task] = listed["tasks"]
                if state(task) == "TASK_STATE_WORKING":
                    return task
            await asyncio.sleep(0.05)   # sleep-ok: until the bridge has the agent working


# two of the four pairs, to keep the suite short: each call kind and each signal once
@pytest.mark.parametrize("call, sig", [("blocking", signal.SIGKILL), ("streaming", signal.SIGTERM)],
                         ids=["blocking-sigkill", "streaming-sigterm"])
async def test_a_bridged_agents_task_ends_completed_after_serve_restarts_mid_call(tmp_path, call, sig):
    agent = agent_proc("slow", delay=3.0)
    port = free_port()
    gateway = gateway_proc(port, tmp_path / "data")
    caller = Caller(f"http://127.0.0.1:{port}")
    try:
        info = json.loads(await _started(agent))
        await _started(gateway)
        await caller.until_ready()
        registered = await caller.http.post("/admin/agents", json={"card_url": f"http://127.0.0.1:{info['port']}",
                                                                   "name": AGENT})
        assert registered.status_code == 201, registered.text
        running = await _call_until_first_event(caller, call)
        task = await _only_task(caller)
        await asyncio.to_thread(gateway.signal, sig)
        await running
        await _started(gateway)
        await caller.until_ready()
        async with asyncio.timeout(60):
            while state(ended := await caller.get(AGENT, task["id"])) != "TASK_STATE_COMPLETED":
                assert state(ended) in ("TASK_STATE_SUBMITTED", "TASK_STATE_WORKING"), ended
                await asyncio.sleep(0.1)    # sleep-ok: GetTask, as a client would
        assert len(ended["artifacts"]) == 1
    finally:
        await caller.aclose()
        await asyncio.to_thread(gateway.kill)
        await asyncio.to_thread(agent.kill)
