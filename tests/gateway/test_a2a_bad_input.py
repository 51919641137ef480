"""Bad input on the A2A routes, sent raw with httpx: each gets the protocol's own error code and
the gateway keeps serving. JSON-RPC errors travel in 200 responses (the SDK's dispatcher), an
unknown capability's too; over HTTP+JSON it is 404."""

import uuid

import httpx
import pytest


V1 = {"A2A-Version": "1.0"}
MESSAGE = {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}


def rpc(method: str, params=None, id_=1) -> dict:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": {} if params is None else params}


@pytest.fixture
async def http(gateways, agents):
    async with httpx.AsyncClient(base_url=gateways[0], timeout=15) as client:
        yield client
        # whatever came before, the gateway still answers
        assert (await client.get("/healthz")).status_code == 200
        ok = await client.post("/agents/echo/", json=rpc("SendMessage", {"message": MESSAGE}), headers=V1)
        assert ok.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"


def error_code(response: httpx.Response) -> int:
    return response.json()["error"]["code"]


@pytest.mark.parametrize("body, code", [
    (b'{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {', -32700),
    (b"\xff\xfe not even text", -32700),
    (b"[]", -32600),
    (b'[{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}]', -32600),
    (b'"just a string"', -32600),
    (b'{"jsonrpc": "1.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}', -32600),
    (b'{"jsonrpc": "2.0", "id": 1}', -32600),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "NoSuchMethod", "params": {}}', -32601),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {}}', -32602),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"parts": "no"}}}', -32602),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"role": "ROLE_USER"}}}',
     -32602),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {}}', -32602),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x", "historyLength": -1}}', -32602),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {"pageSize": 0}}', -32602),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {"pageSize": 101}}', -32602),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {"pageToken": "not-a-token"}}', -32602),
], ids=["truncated", "binary", "empty-batch", "batch", "string", "jsonrpc-1.0", "no-method", "unknown-method",
        "no-message", "parts-not-a-list", "message-without-parts", "get-without-id", "negative-history",
        "page-size-0", "page-size-101", "bad-page-token"])
async def test_malformed_json_rpc_gets_the_spec_error_code(http, body, code):
    response = await http.post("/agents/echo/", content=body, headers={**V1, "Content-Type": "application/json"})
    # a body that is not UTF-8 is refused by the guard before any parser (400), still as a parse error
    assert response.status_code == (400 if body.startswith(b"\xff") else 200) and error_code(response) == code


@pytest.mark.parametrize("method, params, code", [
    ("GetTask", {"id": "0" * 32}, -32001),
    ("GetTask", {"id": "x" * 5000}, -32001),
    ("CancelTask", {"id": "0" * 32}, -32001),
    ("SubscribeToTask", {"id": "0" * 32}, -32001),
    ("ListTaskPushNotificationConfigs", {"taskId": "0" * 32}, -32001),
    ("CreateTaskPushNotificationConfig", {"taskId": "0" * 32, "url": "http://127.0.0.1:9/x"}, -32001),
    ("SendMessage", {"message": {**MESSAGE, "taskId": "0" * 32}}, -32001),
    ("GetExtendedAgentCard", {}, -32004),
], ids=["get", "get-huge-id", "cancel", "subscribe", "list-push", "create-push", "continue-unknown", "extended-card"])
async def test_unknown_tasks_and_unsupported_methods_get_a2a_error_codes(http, method, params, code):
    response = await http.post("/agents/echo/", json=rpc(method, params), headers=V1)
    assert error_code(response) == code


async def test_finished_tasks_cannot_be_subscribed_canceled_or_continued(http):
    done = (await http.post("/agents/echo/", json=rpc("SendMessage", {"message": MESSAGE}), headers=V1)).json()
    task_id = done["result"]["task"]["id"]
    for method, params, code in [("SubscribeToTask", {"id": task_id}, -32004), ("CancelTask", {"id": task_id}, -32002),
                                 ("SendMessage", {"message": {**MESSAGE, "taskId": task_id}}, -32004)]:
        assert error_code(await http.post("/agents/echo/", json=rpc(method, params), headers=V1)) == code


async def test_push_configs_per_task_are_bounded(http):
    done = (await http.post("/agents/echo/", json=rpc("SendMessage", {"message": MESSAGE}), headers=V1)).json()
    task_id = done["result"]["task"]["id"]
    answers = [await http.post("/agents/echo/", headers=V1, json=rpc("CreateTaskPushNotificationConfig", {
        "taskId": task_id, "id": f"c{i}", "url": "http://127.0.0.1:9/hook"})) for i in range(17)]
    assert all("result" in a.json() for a in answers[:16])
    assert error_code(answers[16]) == -32603 and "limit is 16" in answers[16].json()["error"]["message"]


async def test_a_push_url_to_a_link_local_address_is_refused(http):
    params = {"message": MESSAGE, "configuration": {"taskPushNotificationConfig": {
        "url": "http://169.254.169.254/latest/meta-data"}}}
    response = await http.post("/agents/echo/", json=rpc("SendMessage", params), headers=V1)
    assert error_code(response) == -32602 and "link-local" in response.json()["error"]["message"]


@pytest.mark.parametrize("version, code", [("2.0", -32009), ("0.3", -32009), ("banana", -32009)])
async def test_a_wrong_a2a_version_is_version_not_supported(http, version, code):
    response = await http.post("/agents/echo/", json=rpc("SendMessage", {"message": MESSAGE}),
                               headers={"A2A-Version": version})
    assert error_code(response) == code


async def test_no_a2a_version_header_means_0_3_which_has_its_own_method_names(http):
    modern = await http.post("/agents/echo/", json=rpc("GetTask", {"id": "x"}))
    legacy = await http.post("/agents/echo/", json=rpc("tasks/get", {"id": "0" * 32}))
    assert error_code(modern) == -32009 and error_code(legacy) == -32001


async def test_an_unknown_capability_is_not_registered_in_each_protocols_shape(http):
    rpc_answer = await http.post("/agents/nobody/", json=rpc("SendMessage", {"message": MESSAGE}, id_=41),
                                 headers=V1)
    rest_answer = await http.post("/agents/nobody/message:send", json={"message": MESSAGE}, headers=V1)
    card = await http.get("/agents/nobody/.well-known/agent-card.json")
    invalid = await http.get("/agents/NOT..valid/.well-known/agent-card.json")
    assert rpc_answer.status_code == 200 and rpc_answer.json()["id"] == 41 and error_code(rpc_answer) == -32602
    assert "'nobody' is not registered" in rpc_answer.json()["error"]["message"]
    assert rest_answer.status_code == 404 and rest_answer.json()["error"]["status"] == "NOT_FOUND"
    assert card.status_code == 404 and invalid.status_code == 404


async def test_tenant_routing_on_the_gateways_own_interface(http):
    missing = await http.post("/agents/", json=rpc("SendMessage", {"message": MESSAGE}), headers=V1)
    unknown = await http.post("/agents/", json=rpc("SendMessage", {"message": MESSAGE, "tenant": "nobody"}),
                              headers=V1)
    routed = await http.post("/agents/", json=rpc("SendMessage", {"message": MESSAGE, "tenant": "echo"}), headers=V1)
    assert error_code(missing) == -32602 and error_code(unknown) == -32602
    assert "'nobody' is not registered" in unknown.json()["error"]["message"]
    assert routed.json()["result"]["task"]["artifacts"][0]["parts"][0]["text"] == "echo: hi"


@pytest.mark.parametrize("method, path, body, status, reason", [
    ("POST", "/agents/echo/message:send", b"{not json", 400, None),
    ("POST", "/agents/echo/message:send", b"{}", 400, "INVALID_PARAMS"),
    ("GET", f"/agents/echo/tasks/{'0' * 32}", None, 404, "TASK_NOT_FOUND"),
    ("POST", f"/agents/echo/tasks/{'0' * 32}:cancel", b"{}", 404, "TASK_NOT_FOUND"),
    ("GET", "/agents/echo/tasks?pageSize=500", None, 400, "INVALID_PARAMS"),
    ("GET", "/agents/echo/extendedAgentCard", None, 400, "UNSUPPORTED_OPERATION"),
], ids=["bad-json", "no-message", "unknown-task", "cancel-unknown", "page-size", "extended-card"])
async def test_bad_http_json_requests_get_http_status_and_a2a_reason(http, method, path, body, status, reason):
    response = await http.request(method, path, content=body, headers={**V1, "Content-Type": "application/json"})
    assert response.status_code == status
    if reason:
        assert response.json()["error"]["details"][0]["reason"] == reason


async def test_http_json_with_a_wrong_version_is_refused(http):
    response = await http.post("/agents/echo/message:send", json={"message": MESSAGE}, headers={"A2A-Version": "9.0"})
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["reason"] == "VERSION_NOT_SUPPORTED"


async def test_streaming_requests_with_bad_input_get_an_error_not_a_stream(http):
    response = await http.post("/agents/echo/", json=rpc("SendStreamingMessage", {}), headers=V1)
    assert response.headers["content-type"].startswith("application/json") and error_code(response) == -32602
    response = await http.post("/agents/echo/", json=rpc("SubscribeToTask", {"id": uuid.uuid4().hex}), headers=V1)
    assert error_code(response) == -32001
