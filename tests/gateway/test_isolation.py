"""A task is visible, listable and cancellable only through its own capability's routes and
only by the principal that created it (gateway/a2a/access.py); admins see every capability."""

from __future__ import annotations

import pytest

from .serving import running_gateway

A = "token-of-alice-0123456789"
B = "token-of-bob-9876543210xx"
V1 = {"A2A-Version": "1.0"}
NOT_FOUND = -32001          # A2A TaskNotFoundError


def rpc(method: str, params: dict, request_id: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def send(text: str, **configuration) -> dict:
    return rpc("SendMessage", {"message": {"messageId": f"m-{text}", "role": "ROLE_USER", "parts": [{"text": text}]},
                               "configuration": configuration})


def as_(token: str) -> dict:
    return V1 | {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def gw(tmp_path):
    async with running_gateway({"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005},
                                "gateway": {"demo": True, "bearer_tokens": [A, B]}}) as gw:
        yield gw


async def _created(gw, token: str, text: str, capability: str = "echo") -> str:
    sent = (await gw.http.post(f"/agents/{capability}/", json=send(text), headers=as_(token))).json()
    assert "result" in sent, sent
    return sent["result"]["task"]["id"]


async def _call(gw, token: str, capability: str, method: str, params: dict) -> dict:
    return (await gw.http.post(f"/agents/{capability}/", json=rpc(method, params), headers=as_(token))).json()


async def test_a_task_is_found_only_by_its_creator_through_its_own_capability(gw):
    task_id = await _created(gw, A, "alice's")
    assert (await _call(gw, A, "echo", "GetTask", {"id": task_id}))["result"]["id"] == task_id
    assert (await _call(gw, B, "echo", "GetTask", {"id": task_id}))["error"]["code"] == NOT_FOUND
    assert (await _call(gw, A, "word-stats", "GetTask", {"id": task_id}))["error"]["code"] == NOT_FOUND


async def test_http_json_get_task_of_another_principal_is_404(gw):
    task_id = await _created(gw, A, "rest")
    mine = await gw.http.get(f"/agents/echo/tasks/{task_id}", headers=as_(A))
    theirs = await gw.http.get(f"/agents/echo/tasks/{task_id}", headers=as_(B))
    assert mine.status_code == 200 and theirs.status_code == 404


async def test_cancel_through_another_capability_or_principal_is_not_found(gw):
    task_id = await _created(gw, A, "to cancel", capability="echo")
    for token, capability in ((A, "word-stats"), (B, "echo")):
        answer = await _call(gw, token, capability, "CancelTask", {"id": task_id})
        assert answer["error"]["code"] == NOT_FOUND, answer


async def test_subscribe_and_push_configs_of_another_principal_are_not_found(gw):
    task_id = await _created(gw, A, "subscribed")
    listed = await _call(gw, B, "echo", "ListTaskPushNotificationConfigs", {"taskId": task_id})
    assert listed["error"]["code"] == NOT_FOUND
    created = await _call(gw, B, "echo", "CreateTaskPushNotificationConfig",
                          {"taskId": task_id, "url": "http://127.0.0.1:9/hook"})
    assert created["error"]["code"] == NOT_FOUND
    stream = await gw.http.post("/agents/echo/", json=rpc("SubscribeToTask", {"id": task_id}), headers=as_(B))
    assert f'"code":{NOT_FOUND}' in stream.text.replace(" ", "")


async def test_list_tasks_pages_only_the_callers_tasks_of_that_capability(gw):
    mine = {await _created(gw, A, f"a{i}") for i in range(3)}
    await _created(gw, B, "b0")
    await _created(gw, A, "elsewhere", capability="word-stats")
    seen, token = [], ""
    for _ in range(5):
        page = (await _call(gw, A, "echo", "ListTasks", {"pageSize": 1, "pageToken": token}))["result"]
        seen += [t["id"] for t in page.get("tasks", [])]
        token = page.get("nextPageToken", "")
        if not token:
            break
    assert sorted(seen) == sorted(mine)
    theirs = (await _call(gw, B, "echo", "ListTasks", {}))["result"]["tasks"]
    assert [t["id"] for t in theirs if t["id"] in mine] == []


async def test_a_continuation_of_another_principals_task_is_not_found(gw):
    task_id = await _created(gw, A, "first")
    params = {"message": {"messageId": "m2", "role": "ROLE_USER", "taskId": task_id, "parts": [{"text": "more"}]}}
    answer = await _call(gw, B, "echo", "SendMessage", params)
    assert answer["error"]["code"] == NOT_FOUND


async def test_without_authentication_capabilities_still_isolate_tasks(tmp_path):
    async with running_gateway({"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005},
                                "gateway": {"demo": True}}) as gw:
        sent = (await gw.http.post("/agents/echo/", json=send("open"), headers=V1)).json()
        task_id = sent["result"]["task"]["id"]
        other = (await gw.http.post("/agents/word-stats/", json=rpc("GetTask", {"id": task_id}), headers=V1)).json()
        assert other["error"]["code"] == NOT_FOUND
        own = (await gw.http.post("/agents/echo/", json=rpc("GetTask", {"id": task_id}), headers=V1)).json()
        assert own["result"]["id"] == task_id
