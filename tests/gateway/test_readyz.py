"""/readyz names a background loop that is down: a real gateway (uvicorn, the real lite engine)
whose reply poll raises an unexpected error once, through a fault-injecting wrapper."""

import asyncio

import httpx
import pytest

from adapters.factory import engine_config
from adapters.lite import EmbeddedLiteBackend
from gateway.app import build_app
from gateway.supervisor import Supervisor
from gateway.tasks import channels
from gateway.workers.worker import Worker

from .faults import FaultyBackend
from .serving import running_app

V1 = {"A2A-Version": "1.0", "Content-Type": "application/json"}


async def echo(task) -> None:
    await task.complete(text=f"echo: {task.text}")


@pytest.fixture
async def gateway(tmp_path):
    """A served gateway on a wrapped engine; its supervisor counts a loop healthy after 0.3s."""
    backend = FaultyBackend(EmbeddedLiteBackend(engine_config({"data_dir": str(tmp_path / "engine"),
                                                               "tick": 0.005})))
    app = build_app({"gateway": {}}, backend, supervisor=Supervisor(backoff=0.05, healthy_after=0.3))
    async with running_app(app, lifespan="on") as server:
        gw = app.state.gateway
        await gw.add_part(Worker(gw.backend, "echo", echo, card={"name": "Echo", "description": "Echoes."},
                                 supervisor=gw.supervisor))
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            yield backend, http


async def readiness(http: httpx.AsyncClient, ready: bool) -> dict:
    """The /readyz body, once it says `ready` (bounded)."""
    async with asyncio.timeout(10):
        while True:
            response = await http.get("/readyz")
            if (response.status_code == 200) == ready:
                return response.json()
            await asyncio.sleep(0.02)  # sleep-ok: polling the endpoint under test, bounded above


async def test_a_crashed_reply_relay_is_named_by_readyz_until_it_recovers_and_tasks_still_complete(gateway):
    backend, http = gateway
    assert await readiness(http, True) == {"ready": True}
    backend.fail_poll(channels.REPLY_TOPIC, RuntimeError("injected: the poll blew up"))
    async with asyncio.timeout(10):
        await backend.poll_failed.wait()
    down = (await readiness(http, False))["down"]
    [(name, error)] = down.items()
    assert name.startswith("tasks.relay") and error == "RuntimeError: injected: the poll blew up"
    await readiness(http, True)
    request = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
        "messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "still here"}]}}}
    response = await http.post("/agents/echo/", json=request, headers=V1, timeout=15)
    assert "result" in response.json(), response.text
    task = response.json()["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert task["artifacts"][0]["parts"][0]["text"] == "echo: still here"


async def test_readyz_says_503_with_the_backends_detail_when_the_backend_is_down(gateway):
    backend, http = gateway
    await backend._inner.close()
    body = (await readiness(http, False))
    assert body["backend"]["ok"] is False and body["ready"] is False
