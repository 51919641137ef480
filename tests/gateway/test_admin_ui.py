"""The admin task API and the UI's server side over HTTP: bad input, unknown tasks, the live
stream's filters, the login cookie. (The pages in a real browser: test_ui_browser.py.)"""

import json

import pytest

from gateway.workers.worker import Worker

from .serving import running_gateway

V1 = {"A2A-Version": "1.0"}
TOKEN = "s3cret-admin-token"


def message(text: str) -> dict:
    return {"message": {"messageId": f"m-{text}", "role": "ROLE_USER", "parts": [{"text": text}]}}


@pytest.fixture
async def gw(tmp_path):
    async with running_gateway({"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005}, "gateway": {}}) as gw:
        async def echo(task):
            await task.artifact(f"echo: {task.text}", name="echo")

        async def other(task):
            await task.artifact("other", name="other")

        workers = [Worker(gw.gateway.backend, name, handler, card={"name": name, "description": f"the {name} agent"})
                   for name, handler in (("echo", echo), ("other", other))]
        for worker in workers:
            await worker.start()
        try:
            yield gw
        finally:
            for worker in workers:
                await worker.close()


async def send(gw, capability: str, text: str) -> dict:
    answer = await gw.http.post(f"/agents/{capability}/message:send", json=message(text), headers=V1)
    assert answer.status_code == 200, answer.text
    return answer.json()["task"]


@pytest.mark.parametrize("path, status, field", [
    ("/admin/tasks?state=bogus", 400, "state"),
    ("/admin/tasks?limit=0", 400, "limit"),
    ("/admin/tasks?limit=abc", 400, "limit"),
    ("/admin/tasks?page_token=not-a-token", 400, "page_token"),
    ("/admin/tasks/live?state=finished", 400, "state"),
    (f"/admin/tasks/{'0' * 32}", 404, None),
    (f"/admin/tasks/{'0' * 32}/events", 404, None),
])
async def test_bad_task_queries_get_the_admin_apis_error_naming_the_field(gw, path, status, field):
    answer = await gw.http.get(path)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["message"] and (field is None or error.get("field") == field or field in error["message"])


async def test_tasks_are_listed_by_capability_and_state_and_an_ended_one_cannot_be_cancelled(gw):
    done = await send(gw, "echo", "one")
    await send(gw, "other", "two")
    listed = (await gw.http.get("/admin/tasks", params={"capability": "echo", "state": "completed"})).json()
    assert [t["id"] for t in listed["tasks"]] == [done["id"]]
    assert listed["tasks"][0] | {"updated": None} == {
        "id": done["id"], "context_id": done["contextId"], "capability": "echo", "state": "completed",
        "updated": None, "message": "", "artifacts": 1}
    shown = (await gw.http.get(f"/admin/tasks/{done['id']}")).json()
    assert shown["task"]["artifacts"][0]["parts"][0]["text"] == "echo: one"
    refused = await gw.http.post(f"/admin/tasks/{done['id']}/cancel")
    assert refused.status_code == 409 and "COMPLETED" in refused.json()["error"]["message"]


async def test_the_live_stream_sends_only_the_tasks_that_pass_its_filters(gw):
    await send(gw, "other", "not this one")
    wanted = await send(gw, "echo", "this one")
    async with gw.http.stream("GET", "/admin/tasks/live", params={"capability": "echo"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        async for line in lines:
            if line.startswith("data:"):
                first = json.loads(line[5:])
                break
    assert first["id"] == wanted["id"] and first["capability"] == "echo"


async def test_a_task_stream_of_an_ended_task_is_the_task_then_the_end(gw):
    done = await send(gw, "echo", "streamed")
    answer = await gw.http.get(f"/admin/tasks/{done['id']}/events")
    events = [block.split("\n") for block in answer.text.strip().split("\n\n")]
    assert [e[0] for e in events] == ["event: event", "event: end"]
    assert json.loads(events[0][1][5:])["task"]["id"] == done["id"]


async def test_forms_from_another_origin_or_malformed_are_refused(gw):
    cross = await gw.http.post("/admin/ui/agents", data={"card_url": "http://x.invalid/"},
                               headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403 and "evil.example" in cross.text
    big = await gw.http.post("/admin/ui/agents", content=b"card_url=" + b"a" * 20_000,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413
    bad = await gw.http.post("/admin/ui/agents", content=b"card_url=\xff\xfe",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert bad.status_code == 400 and "not UTF-8" in bad.text          # the guard's refusal
    empty = await gw.http.post("/admin/ui/agents", data={"card_url": " "})
    assert empty.status_code == 303 and "problem=" in empty.headers["location"]
    native = await gw.http.post("/admin/ui/agents/echo/refresh")
    assert native.status_code == 303 and "native" in native.headers["location"]


async def test_unknown_pages_and_the_root(gw):
    assert (await gw.http.get("/")).headers["location"] == "/admin/ui/"
    missing = await gw.http.get("/admin/ui/tasks/nope")
    assert missing.status_code == 404 and "&#39;nope&#39;" in missing.text
    refresh = await gw.http.post("/admin/agents/nobody/refresh")
    assert refresh.status_code == 404 and refresh.json()["error"]["type"] == "NotFoundError"


async def test_with_tokens_a_browser_logs_in_with_a_cookie_that_only_its_own_origin_uses(tmp_path):
    settings = {"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005}, "gateway": {"bearer_tokens": [TOKEN]}}
    async with running_gateway(settings) as gw:
        http = gw.http
        page = await http.get("/admin/ui/tasks?state=working")
        assert page.status_code == 303
        assert page.headers["location"] == "/admin/ui/login?next=%2Fadmin%2Fui%2Ftasks%3Fstate%3Dworking"
        assert (await http.get("/admin/ui/login")).status_code == 200
        assert (await http.get("/admin/ui/static/ui.js")).status_code == 200
        assert (await http.get("/admin/tasks")).status_code == 401        # the API still wants a token

        wrong = await http.post("/admin/ui/login", data={"token": "guess", "next": "/admin/ui/status"})
        assert wrong.status_code == 303
        refused = await http.get("/admin/ui/status")
        assert refused.status_code == 303 and "problem=" in refused.headers["location"]

        http.cookies.clear()
        login = await http.post("/admin/ui/login", data={"token": TOKEN, "next": "https://evil.example/"})
        assert login.status_code == 303 and login.headers["location"] == "/admin/ui/"
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert (await http.get("/admin/ui/status")).status_code == 200
        assert (await http.get("/admin/tasks")).status_code == 200        # the page's script reads it too
        foreign = await http.get("/admin/tasks", headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 401

        out = await http.post("/admin/ui/logout")
        assert out.status_code == 303 and (await http.get("/admin/ui/")).status_code == 303
