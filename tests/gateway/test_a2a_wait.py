"""A blocking SendMessage waits at most `gateway.a2a_wait_seconds`, then answers with the task as it
is; the task runs on and is followed with GetTask."""

from __future__ import annotations

import asyncio

import pytest

from gateway.workers.worker import Worker

from .serving import running_gateway

V1 = {"A2A-Version": "1.0"}


def send(text: str) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
            "params": {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": text}]}}}


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "sdk"])
async def test_a_blocking_call_answers_with_the_running_task_after_the_wait(tmp_path, lean):
    release = asyncio.Event()

    async def slow(task) -> None:
        await release.wait()
        await task.complete(f"done: {task.text}")

    settings = {"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005},
                "gateway": {"a2a_wait_seconds": 0.3, "a2a_lean_dispatch": lean}}
    async with running_gateway(settings, client_timeout=15) as gw:
        worker = Worker(gw.gateway.backend, "slow", slow, card={"name": "Slow", "description": "waits"})
        await worker.start()
        try:
            http = gw.http
            answer = (await http.post("/agents/slow/", json=send("hi"), headers=V1)).json()
            task = answer["result"]["task"]
            assert task["status"]["state"] in ("TASK_STATE_SUBMITTED", "TASK_STATE_WORKING")
            release.set()
            get = {"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": {"id": task["id"]}}
            async with asyncio.timeout(15):
                while (got := (await http.post("/agents/slow/", json=get, headers=V1)).json()["result"]) \
                        ["status"]["state"] != "TASK_STATE_COMPLETED":
                    await asyncio.sleep(0.02)  # sleep-ok: GetTask until the released task is folded
            assert got["artifacts"][0]["parts"][0]["text"] == "done: hi"
        finally:
            await worker.close()
