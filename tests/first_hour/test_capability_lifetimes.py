"""Capabilities nobody can serve: the gateway's own URL is refused at registration with the
reason; worker-announced capabilities whose workers are all gone are removed after
gateway.capability_expiry_seconds of silence."""

from __future__ import annotations

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
