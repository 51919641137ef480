"""Agent cards over HTTP: strict A2A 1.0 by default, the 0.3 shape for a client that asks with
`A2A-Version: 0.3`, and caching (ETag, Cache-Control max-age, 304 on If-None-Match), on the
gateway's card and a capability's.

"Strict 1.0" is checked against the a2a-sdk's protobuf AgentCard (the 1.0 schema is generated
from the same a2a.proto): the card parses with no unknown field and no REQUIRED field missing."""

from __future__ import annotations

import pytest
from a2a.compat.v0_3 import types as v0_3
from a2a.types import a2a_pb2
from google.protobuf import json_format

from gateway.a2a.handler import require_fields
from gateway.registry.capabilities import Capability
from tests.gateway.a2a_servers import a2a_client, collect, send_request

from .serving import running_gateway

CARDS = ["/.well-known/agent-card.json", "/agents/echo/.well-known/agent-card.json"]
LEGACY_FIELDS = {"url", "preferredTransport", "protocolVersion", "additionalInterfaces"}


@pytest.fixture
async def gw(tmp_path):
    settings = {"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005},
                "gateway": {"demo": True, "card_max_age_seconds": 120}}
    async with running_gateway(settings) as running:
        yield running


@pytest.mark.parametrize("path", CARDS, ids=["gateway", "capability"])
async def test_the_card_is_strict_a2a_1_0(gw, path):
    response = await gw.http.get(path)
    doc = response.json()
    card = json_format.ParseDict(doc, a2a_pb2.AgentCard())     # raises on any field 1.0 does not define
    require_fields(card)
    assert not LEGACY_FIELDS & doc.keys()


async def test_0_3_endpoints_are_listed_in_supported_interfaces_only(gw):
    doc = (await gw.http.get(CARDS[1])).json()
    versions = {(i["protocolBinding"], i["protocolVersion"]) for i in doc["supportedInterfaces"]}
    assert {("JSONRPC", "0.3"), ("HTTP+JSON", "0.3"), ("JSONRPC", "1.0"), ("HTTP+JSON", "1.0")} <= versions


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_a2a_sdks_0_3_client_works_from_the_strict_card(gw, binding):
    async with a2a_client(gw.base, "echo", binding=binding, version="0.3") as client:
        events = await collect(client.send_message(send_request("old")))
    assert events[-1].task.status.state == a2a_pb2.TASK_STATE_COMPLETED


async def test_a_client_asking_for_0_3_gets_a_card_a_0_3_client_reads(gw):
    path = CARDS[1]     # (the gateway's own card has no 0.3 interface: 0.3 has no tenants)
    response = await gw.http.get(path, headers={"A2A-Version": "0.3"})
    card = v0_3.AgentCard.model_validate(response.json())
    assert card.protocol_version.startswith("0.3") and card.url.startswith(gw.base)
    assert response.headers["etag"] != (await gw.http.get(path)).headers["etag"]     # another body, another tag


@pytest.mark.parametrize("path", CARDS, ids=["gateway", "capability"])
async def test_cards_carry_an_etag_and_max_age_and_answer_a_matching_if_none_match_with_304(gw, path):
    first = await gw.http.get(path)
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "public, max-age=120" and etag.startswith('"')
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await gw.http.get(path, headers={"If-None-Match": header})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    stale = await gw.http.get(path, headers={"If-None-Match": '"not-the-card"'})
    assert stale.status_code == 200 and stale.json() == first.json()


async def test_a_changed_card_gets_a_new_etag(gw):
    before = await gw.http.get(CARDS[0])
    await gw.gateway.registry.put(Capability("newcomer", {"name": "Newcomer", "description": "arrived later"}))
    after = await gw.http.get(CARDS[0], headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
    assert "newcomer" in {s["id"] for s in after.json()["skills"]}
