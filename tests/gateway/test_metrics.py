"""GET /metrics: the Prometheus families of gateway/observability/metrics.py, read with prometheus_client's own
parser, count exactly the tasks a test ran through a real gateway (uvicorn, embedded engine,
native workers). /metrics takes the admin API's bearer tokens."""

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.observability import metrics
from gateway.workers.worker import Worker

from .serving import running_gateway

TOKEN = "metrics-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
A2A = {**AUTH, "A2A-Version": "1.0"}
SETTINGS = {"backend": "lite", "lite": {"data_dir": None, "tick": 0.005},
            "gateway": {"bearer_tokens": [TOKEN]}}


def send(text: str) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
            "params": {"message": {"messageId": f"m-{text}", "role": "ROLE_USER", "parts": [{"text": text}]}}}


def card(name: str) -> dict:
    return {"name": name, "description": "Echoes the message, or fails when asked to."}


async def handle(task) -> None:
    if task.text.startswith("fail"):
        await task.fail("asked to fail")
    else:
        await task.artifact(f"echo: {task.text}")
        await task.complete()


def samples(text: str) -> dict:
    """{(sample name, sorted label items): value} of one scrape."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def delta(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def scrape(gw) -> dict:
    response = await gw.http.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


@pytest.fixture
async def gw():
    async with running_gateway(SETTINGS) as gw:
        await gw.gateway.add_part(Worker(gw.gateway.backend, "metered", handle, card=card("Metered")))
        yield gw


async def test_metrics_count_the_tasks_the_test_ran_by_capability_and_state(gw):
    before = await scrape(gw)
    async with asyncio.timeout(20):
        answers = await asyncio.gather(*(gw.http.post("/agents/metered/", json=send(text), headers=A2A)
                                         for text in ("one", "two", "three", "fail-four")))
    states = [a.json()["result"]["task"]["status"]["state"] for a in answers]
    assert sorted(states) == ["TASK_STATE_COMPLETED"] * 3 + ["TASK_STATE_FAILED"]
    after = await scrape(gw)
    counted = lambda state: delta(before, after, "topicbridge_tasks_total", capability="metered", state=state)
    assert (counted("submitted"), counted("completed"), counted("failed")) == (4, 3, 1)
    # A blocking caller's task says WORKING only once its handler ran 0.5 s silent (slow machines)
    assert counted("working") in range(5)
    assert delta(before, after, "topicbridge_task_duration_seconds_count", capability="metered") == 4
    assert delta(before, after, "topicbridge_requests_total", surface="a2a", status="200") == 4
    assert delta(before, after, "topicbridge_reply_events_total") >= 4
    assert delta(before, after, "topicbridge_backend_operation_seconds_count", operation="index_put") >= 4
    assert after[("topicbridge_backend_up", (("backend", "lite"),))] == 1
    assert after.get(("topicbridge_tasks_in_flight", (("capability", "metered"),)), 0) == 0


async def test_every_family_the_issue_names_is_exposed(gw):
    names = {family.name for family in text_string_to_metric_families(
        (await gw.http.get("/metrics", headers=AUTH)).text)}
    assert {"topicbridge_tasks", "topicbridge_task_duration_seconds", "topicbridge_tasks_in_flight",
            "topicbridge_relay_lag_seconds", "topicbridge_reply_events", "topicbridge_bridge_calls",
            "topicbridge_bridge_errors", "topicbridge_push_deliveries", "topicbridge_push_retries",
            "topicbridge_push_dead_letters", "topicbridge_dead_lettered_envelopes", "topicbridge_requests",
            "topicbridge_backend_operation_seconds", "topicbridge_backend_up", "topicbridge_relay_bad_events",
            "topicbridge_lean_answers"} <= names
    # the embedded engine's sizes join the gateway's families
    assert {"topicbridge_engine_topics", "topicbridge_engine_lite_topics", "topicbridge_engine_subscriptions",
            "topicbridge_engine_messages_retained", "topicbridge_engine_fsync_seconds"} <= names


async def test_metrics_need_the_admin_token(gw):
    refused = await gw.http.get("/metrics")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    wrong = await gw.http.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    counted = samples((await gw.http.get("/metrics", headers=AUTH)).text)
    assert counted.get(("topicbridge_requests_total", (("status", "401"), ("surface", "metrics"))), 0) >= 2


async def test_a_malformed_reply_event_is_counted_as_bad(gw):
    from adapters.base import Message
    from gateway.tasks import channels
    before = await scrape(gw)
    task = (await gw.http.post("/agents/metered/", json=send("x"), headers=A2A)).json()["result"]["task"]
    service = gw.gateway.tasks
    # a task this instance follows, and garbage on its reply channel
    await service._consumer.subscribe([channels.reply_channel(task["id"])])
    await gw.gateway.backend.publish(channels.REPLY_TOPIC, Message(b"{not json"),
                                     lite_topic=channels.reply_channel(task["id"]))
    async with asyncio.timeout(10):
        while service.bad_events == before.get(("topicbridge_relay_bad_events_total", ()), 0):
            await asyncio.sleep(0.02)  # sleep-ok: bounded wait for the relay to drop the event
    after = await scrape(gw)
    assert delta(before, after, "topicbridge_relay_bad_events_total") == 1


def test_snapshot_returns_current_values_for_a_status_page():
    values = metrics.snapshot()
    assert "topicbridge_relay_bad_events_total" in values
    assert all({"labels", "value"} <= set(entry) for entries in values.values() for entry in entries)


async def test_with_metrics_off_there_is_no_route_and_nothing_is_recorded():
    off = {**SETTINGS, "observability": {"metrics": False}}
    try:
        async with running_gateway(off) as gw:
            await gw.gateway.add_part(Worker(gw.gateway.backend, "unmetered", handle, card=card("Unmetered")))
            answer = await gw.http.post("/agents/unmetered/", json=send("quiet"), headers=A2A)
            assert answer.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
            assert (await gw.http.get("/metrics", headers=AUTH)).status_code == 404
            recorded = metrics.snapshot().get("topicbridge_tasks_total", [])
            assert not any(e["labels"].get("capability") == "unmetered" for e in recorded)
    finally:
        metrics.enabled = True


async def test_bridge_calls_and_errors_are_counted_per_agent(gw):
    from .remote_agents import running_agent
    before = await scrape(gw)
    async with running_agent(streaming=True, name="Metered Agent") as agent:
        capability = await gw.gateway.bridges.register(agent.base_url)
        ok = await gw.http.post(f"/agents/{capability.name}/", json=send("a report"), headers=A2A)
        assert ok.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
    # the agent is gone: the next call fails after the bridge's retries
    async with asyncio.timeout(60):
        gone = await gw.http.post(f"/agents/{capability.name}/", json=send("anyone?"), headers=A2A)
    assert gone.json()["result"]["task"]["status"]["state"] == "TASK_STATE_FAILED"
    after = await scrape(gw)
    assert delta(before, after, "topicbridge_bridge_calls_total", agent=capability.name) == 2
    assert delta(before, after, "topicbridge_bridge_errors_total", agent=capability.name) == 1
    assert delta(before, after, "topicbridge_tasks_total", capability=capability.name, state="failed") == 1
