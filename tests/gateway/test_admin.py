"""The admin API over real HTTP: a gateway served by uvicorn, agents that are real a2a-sdk servers."""

import json

import pytest

from gateway.admin.api import OPENAPI

from .remote_agents import running_agent
from .serving import running_gateway


def serving(tmp_path, **gateway_settings):
    return running_gateway({"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005},
                            "gateway": gateway_settings})


@pytest.fixture
async def gw(tmp_path):
    async with serving(tmp_path) as gw:
        yield gw


@pytest.fixture
async def agent():
    async with running_agent(streaming=True) as agent:
        yield agent


def error_of(response, status):
    assert response.status_code == status, response.text
    return response.json()["error"]


async def test_registering_by_base_url_answers_201_with_the_record_and_starts_a_bridge(gw, agent):
    response = await gw.http.post("/admin/agents", json={"card_url": agent.base_url})
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["name"] == "pdf-summariser" and response.headers["location"] == "/admin/agents/pdf-summariser"
    assert (record["source"], record["card_url"], record["status"]) == ("a2a", agent.card_url, "available")
    assert record["card"]["name"] == "PDF Summariser" and record["topic"] == "tb-cap-pdf-summariser"
    assert "pdf-summariser" in gw.gateway.bridges.running
    shown = (await gw.http.get("/admin/agents/pdf-summariser")).json()
    assert shown["card_url"] == agent.card_url


async def test_registering_by_full_card_url_and_with_a_chosen_name(gw, agent):
    response = await gw.http.post("/admin/agents", json={"card_url": agent.card_url, "name": "digest"})
    assert response.status_code == 201 and response.json()["name"] == "digest"


async def test_a_second_registration_of_the_same_name_is_409(gw, agent):
    assert (await gw.http.post("/admin/agents", json={"card_url": agent.base_url})).status_code == 201
    error = error_of(await gw.http.post("/admin/agents", json={"card_url": agent.card_url}), 409)
    assert error["type"] == "ConflictError" and "pdf-summariser" in error["message"]


@pytest.mark.parametrize("body, field", [
    (b"{not json", "body"),
    (b"[1, 2]", "body"),
    (b'"just a string"', "body"),
    (b"{}", "card_url"),
    (b'{"card_url": 42}', "card_url"),
    (b'{"card_url": "   "}', "card_url"),
    (b'{"card_url": "http://a.example", "extra": 1}', "extra"),
    (b'{"card_url": "http://a.example", "name": "Not Valid"}', "name"),
    (b'{"card_url": "http://a.example", "name": 7}', "name"),
])
async def test_malformed_bodies_are_400_and_say_which_field(gw, body, field):
    response = await gw.http.post("/admin/agents", content=body, headers={"content-type": "application/json"})
    error = error_of(response, 400)
    assert error["type"] == "InvalidRequestError" and error["field"] == field


async def test_a_body_nested_too_deeply_is_400_from_the_guard(gw):
    body = b"[" * 30_000 + b"]" * 30_000
    response = await gw.http.post("/admin/agents", content=body, headers={"content-type": "application/json"})
    error = error_of(response, 400)
    assert error["type"] == "MalformedBodyError" and "nested deeper" in error["reason"]


async def test_an_oversize_body_is_413(gw):
    body = json.dumps({"card_url": "http://a.example/" + "x" * 70_000})
    error = error_of(await gw.http.post("/admin/agents", content=body), 413)
    assert error["type"] == "MessageTooLargeError"


@pytest.mark.parametrize("card_url, kind", [
    ("http://169.254.169.254/latest/meta-data/", "RefusedURLError"),
    ("http://[fe80::1]:8080/", "RefusedURLError"),
    ("http://metadata.google.internal/", "RefusedURLError"),
    ("http://127.0.0.1:1/", "UnreachableError"),
])
async def test_refused_and_unreachable_urls_are_422(gw, card_url, kind):
    error = error_of(await gw.http.post("/admin/agents", json={"card_url": card_url}), 422)
    assert error["type"] == kind and error["reason"]


async def test_a_url_without_a_card_is_400(gw, agent):
    error = error_of(await gw.http.post("/admin/agents", json={"card_url": agent.base_url + "/nothing.json"}), 400)
    assert error["type"] == "InvalidCardError" and "404" in error["reason"]
    error = error_of(await gw.http.post("/admin/agents", json={"card_url": "gopher://x"}), 400)
    assert "scheme" in error["reason"]


async def test_hosts_outside_the_allow_list_are_422(tmp_path, agent):
    async with serving(tmp_path, allowed_agent_hosts=["agents.example.com"]) as gw:
        error = error_of(await gw.http.post("/admin/agents", json={"card_url": agent.base_url}), 422)
    assert "allowed_agent_hosts" in error["message"]


async def test_listing_and_searching_with_scores(gw, agent):
    assert (await gw.http.post("/admin/agents", json={"card_url": agent.base_url})).status_code == 201
    await gw.gateway.registry.announce("mail-drafter", {"name": "Mail Drafter", "description": "Drafts emails"},
                                       "w-1", ttl=60)
    listed = (await gw.http.get("/admin/agents")).json()["agents"]
    assert [a["name"] for a in listed] == ["mail-drafter", "pdf-summariser"]
    assert "score" not in listed[0]
    found = (await gw.http.get("/admin/agents", params={"q": "summarise a PDF"})).json()
    assert found["query"] == "summarise a PDF"
    assert [a["name"] for a in found["agents"]] == ["pdf-summariser"] and found["agents"][0]["score"] > 0
    assert (await gw.http.get("/admin/agents", params={"q": "draft an email"})).json()["agents"][0]["name"] == \
        "mail-drafter"
    assert len((await gw.http.get("/admin/agents", params={"limit": "1"})).json()["agents"]) == 1
    await gw.gateway.registry.depart("mail-drafter", "w-1")
    available = (await gw.http.get("/admin/agents", params={"status": "available"})).json()["agents"]
    assert [a["name"] for a in available] == ["pdf-summariser"]
    gone = (await gw.http.get("/admin/agents", params={"status": "unavailable", "q": "email"})).json()["agents"]
    assert [a["name"] for a in gone] == ["mail-drafter"]


@pytest.mark.parametrize("param, value", [("limit", "0"), ("limit", "-1"), ("limit", "abc"), ("limit", "1001"),
                                          ("status", "sleeping")])
async def test_a_bad_parameter_is_400(gw, param, value):
    assert error_of(await gw.http.get("/admin/agents", params={param: value}), 400)["field"] == param


async def test_unknown_agents_are_404(gw):
    assert error_of(await gw.http.get("/admin/agents/nobody"), 404)["type"] == "NotFoundError"
    assert error_of(await gw.http.delete("/admin/agents/nobody"), 404)["type"] == "NotFoundError"
    assert error_of(await gw.http.get("/admin/agents/Not%20A%20Name"), 404)["type"] == "NotFoundError"


async def test_removing_an_agent_stops_its_bridge(gw, agent):
    assert (await gw.http.post("/admin/agents", json={"card_url": agent.base_url})).status_code == 201
    response = await gw.http.delete("/admin/agents/pdf-summariser")
    assert response.status_code == 200 and response.json()["removed"]["name"] == "pdf-summariser"
    assert (await gw.http.get("/admin/agents/pdf-summariser")).status_code == 404
    assert "pdf-summariser" not in gw.gateway.bridges.running


async def test_wrong_methods_are_405(gw):
    assert (await gw.http.put("/admin/agents", json={})).status_code == 405
    assert (await gw.http.post("/admin/agents/x", json={})).status_code == 405


async def test_the_openapi_description_is_served_and_valid(gw):
    served = (await gw.http.get("/admin/openapi.json")).json()
    assert served == json.loads(json.dumps(OPENAPI))
    assert served["openapi"] == "3.1.0"
    assert set(served["paths"]) == {"/admin/agents", "/admin/agents/{name}", "/admin/agents/{name}/refresh",
                                    "/admin/tasks", "/admin/tasks/live", "/admin/tasks/{task_id}",
                                    "/admin/tasks/{task_id}/events", "/admin/tasks/{task_id}/cancel",
                                    "/admin/openapi.json"}
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(served)
