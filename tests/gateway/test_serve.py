"""`topicbridge serve` as a newcomer runs it: a real subprocess on a free port, with --demo."""

from __future__ import annotations

import json

import httpx
import pytest
from a2a.types import a2a_pb2

from gateway.app import build_app

from tests.spawned import free_port, spawn_serve

from .a2a_servers import a2a_client, collect, send_request, state_of

COMPLETED = a2a_pb2.TASK_STATE_COMPLETED


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A served gateway with the demo agents: its base URL."""
    port = free_port()
    served = spawn_serve("--demo", "--port", str(port), "--data-dir", str(tmp_path_factory.mktemp("engine")))
    try:
        served.wait_for("Uvicorn running on")
        yield f"http://127.0.0.1:{port}"
    finally:
        served.stop()


async def test_serve_demo_is_ready_and_lists_the_demo_agents_with_their_cards(demo):
    async with httpx.AsyncClient(base_url=demo, timeout=10) as http:
        assert (await http.get("/readyz")).json() == {"ready": True}
        health = await http.get("/healthz")
        agents = {a["name"]: a for a in (await http.get("/admin/agents")).json()["agents"]}
        found = (await http.get("/admin/agents", params={"q": "count the words of a text"})).json()["agents"]
    assert {"echo", "word-stats"} <= set(agents) and agents["echo"]["status"] == "available"
    skill = agents["word-stats"]["card"]["skills"][0]
    assert skill["tags"] and skill["examples"] and agents["word-stats"]["card"]["description"]
    assert found[0]["name"] == "word-stats"
    port = demo.rsplit(":", 1)[1]
    assert health.status_code == 200 and health.json()["instance"].startswith("gw-") \
        and health.json()["instance"].endswith(f"-{port}")      # stable across restarts


async def test_the_demo_echo_agent_answers_the_a2a_sdk_client(demo):
    async with a2a_client(demo, "echo") as client:
        events = await collect(client.send_message(send_request("hello, gateway")))
    assert state_of(events[-1]) == COMPLETED
    assert events[-1].task.artifacts[0].parts[0].text == "hello, gateway"


async def test_the_demo_word_stats_agent_counts_and_quotes_the_first_sentence(demo):
    async with a2a_client(demo, "word-stats", binding="HTTP+JSON") as client:
        events = await collect(client.send_message(send_request("The cat sat. The dog ran away!")))
    stats = json.loads(events[-1].task.artifacts[0].parts[0].text)
    assert stats == {"words": 7, "sentences": 2, "characters": 30, "first_sentence": "The cat sat."}


def test_serve_flags_override_the_config_file(tmp_path):
    config = tmp_path / "topicbridge.toml"
    config.write_text('[gateway]\nhost = "0.0.0.0"\nport = 1\n')
    port = free_port()
    served = spawn_serve("--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                    "--data-dir", str(tmp_path / "engine"))
    try:
        served.wait_for(f"Uvicorn running on http://127.0.0.1:{port}")
        assert (tmp_path / "engine").is_dir()
    finally:
        served.stop()


async def test_readyz_is_503_until_the_gateway_has_started_and_after_it_closed():
    app = build_app({"lite": {"data_dir": None, "tick": 0.005}, "gateway": {}})
    gateway = app.state.gateway
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        assert (await http.get("/readyz")).status_code == 503
        await gateway.start()
        try:
            assert (await http.get("/readyz")).status_code == 200
        finally:
            await gateway.close()
        assert (await http.get("/readyz")).status_code == 503
