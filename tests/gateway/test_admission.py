"""Load shedding: per-principal rate limits (429 + Retry-After) and admission by tasks in flight
per capability (503 + Retry-After before the body is read; the task service refuses the routes
the guard cannot see the capability of)."""

from __future__ import annotations

import asyncio


from gateway.registry.capabilities import Capability
from gateway.tasks.admission import Admission

from .serving import running_gateway

A = "token-of-alice-0123456789"
B = "token-of-bob-9876543210xx"
V1 = {"A2A-Version": "1.0"}


def send(text: str, **params) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
            "params": {"message": {"messageId": f"m-{text}", "role": "ROLE_USER", "parts": [{"text": text}]},
                       "configuration": {"returnImmediately": True}, **params}}


def as_(token: str) -> dict:
    return V1 | {"Authorization": f"Bearer {token}"}


async def test_a_principal_over_its_rate_gets_429_with_retry_after_and_others_do_not(tmp_path):
    async with running_gateway({"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005},
                                "gateway": {"demo": True, "bearer_tokens": [A, B], "rate_limit": "5/minute"}}) as gw:
        answers = [await gw.http.get("/agents/echo/tasks", headers=as_(A)) for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        assert int(answers[-1].headers["retry-after"]) >= 1 and answers[-1].json()["error"]["code"] == 429
        assert (await gw.http.get("/agents/echo/tasks", headers=as_(B))).status_code == 200
        refused = await gw.http.post("/agents/echo/", json=send("x"), headers=as_(A))
        assert refused.status_code == 429 and refused.json()["error"]["code"] == -32600   # JSON-RPC shaped


async def test_mcp_callers_are_rate_limited_too(tmp_path):
    async with running_gateway({"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005},
                                "gateway": {"rate_limit": "2/minute"}}) as gw:
        statuses = [(await gw.http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                        headers={"Accept": "application/json, text/event-stream"})).status_code
                    for _ in range(3)]
        assert statuses[:2] != [429, 429] and statuses[2] == 429


async def test_a_capability_at_its_tasks_in_flight_answers_503_until_work_ends(tmp_path):
    async with running_gateway({"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005},
                                "gateway": {"max_tasks_in_flight": 3}}) as gw:
        # a capability nobody works on: its tasks stay in flight until their deadline fails them
        await gw.gateway.registry.register(Capability("idle", {"name": "idle"}, timeout_seconds=2))
        for i in range(3):
            sent = await gw.http.post("/agents/idle/", json=send(f"t{i}"), headers=V1)
            assert "result" in sent.json(), sent.text
        refused = await gw.http.post("/agents/idle/", json=send("t4"), headers=V1)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        rest = await gw.http.post("/agents/idle/message:send", json=send("t5")["params"], headers=V1)
        assert rest.status_code == 503 and "retry-after" in rest.headers
        tenant = await gw.http.post("/agents/", json=send("t6", tenant="idle"), headers=V1)
        assert "error" in tenant.json() and "in flight" in tenant.json()["error"]["message"]
        assert (await gw.http.get("/agents/idle/tasks", headers=V1)).status_code == 200    # reads still pass
        async with asyncio.timeout(30):     # the deadlines fail the three: the capability admits again
            while gw.gateway.tasks.admission.in_flight("idle"):
                await asyncio.sleep(0.1)  # sleep-ok: waiting on the lifetimes sweep, bounded above
        again = await gw.http.post("/agents/idle/", json=send("t7"), headers=V1)
        assert "result" in again.json(), again.text


def test_admission_forgets_work_past_its_deadline():
    now = [100.0]
    admission = Admission(2, clock=lambda: now[0])
    admission.add("c", "t1", deadline=110)
    admission.add("c", "t2", deadline=120)
    assert admission.over("c") == 1.0
    now[0] = 115
    assert admission.over("c") is None and admission.in_flight("c") == 1
    admission.discard("t2")
    assert admission.in_flight("c") == 0
