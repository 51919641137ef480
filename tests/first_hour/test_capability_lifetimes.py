"""Capabilities nobody can serve: the gateway's own URL is refused at registration with the
reason; worker-announced capabilities whose workers are all gone are removed after
gateway.capability_expiry_seconds of silence."""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway.serving import running_gateway

SETTINGS = {"lite": {"data_dir": None}, "gateway": {}}


@pytest.mark.parametrize("path", ["/", "/.well-known/agent-card.json", "/agents/echo/"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_registering_the_gateways_own_url_is_refused_with_the_reason(host, path):
    async with running_gateway(SETTINGS) as gw:
        answer = await gw.http.post("/admin/agents", json={"card_url": f"http://{host}:{gw.port}{path}"})
        listed = (await gw.http.get("/admin/agents")).json()["agents"]
    assert answer.status_code == 422
    assert "the gateway's own address" in answer.json()["error"]["message"]
    assert listed == []


async def test_a_worker_announced_capability_is_removed_once_its_workers_are_silent_past_the_expiry():
    settings = {"lite": {"data_dir": None}, "gateway": {"demo": True, "capability_expiry_seconds": 0.05}}
    async with running_gateway(settings) as gw:
        names = {a["name"] for a in (await gw.http.get("/admin/agents")).json()["agents"]}
        assert {"echo", "word-stats"} <= names        # live demo workers are never expired
        for worker in [p for p in gw.gateway._started if getattr(p, "capability", None) == "echo"]:
            await worker.close()                       # the echo worker departs: silence starts now
        async with asyncio.timeout(10):
            while "echo" in {a["name"] for a in (await gw.http.get("/admin/agents")).json()["agents"]}:
                await asyncio.sleep(0.05)              # sleep-ok: a bounded poll; each read checks the expiry again
        assert (await gw.http.get("/admin/agents/echo")).status_code == 404
        assert (await gw.http.get("/admin/agents/word-stats")).json()["status"] == "available"


async def test_without_an_expiry_a_departed_workers_capability_stays_listed_as_unavailable():
    settings = {"lite": {"data_dir": None}, "gateway": {"demo": True, "capability_expiry_seconds": None}}
    async with running_gateway(settings) as gw:
        for worker in [p for p in gw.gateway._started if getattr(p, "capability", None) == "echo"]:
            await worker.close()
        echo = (await gw.http.get("/admin/agents/echo")).json()
    assert echo["status"] == "unavailable" and echo["workers"] == 0
