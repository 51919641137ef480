"""The lean SendMessage dispatcher (gateway/a2a_lean.py) answers exactly as the a2a-sdk dispatcher
would: two gateways, lean on and off, get the same requests and must give the same answers (ids,
timestamps and generated names aside). Requests the lean path does not take fall through to the
SDK with their body intact."""

from __future__ import annotations

import contextlib
import json

import httpx
import pytest

from .serving import running_gateway

V1 = {"A2A-Version": "1.0", "Content-Type": "application/json"}
MESSAGE = {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hello there"}]}
VOLATILE = {"id", "taskId", "contextId", "timestamp", "messageId", "artifactId", "deadline"}


def rpc(method: str, params, id_=7) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params}).encode()


@contextlib.asynccontextmanager
async def gateway(tmp_path, lean: bool):
    settings = {"lite": {"data_dir": str(tmp_path / f"engine-{lean}"), "tick": 0.005},
                "gateway": {"demo": True, "a2a_lean_dispatch": lean}}
    async with running_gateway(settings, client_timeout=15) as gw:
        yield gw.http


@pytest.fixture
async def pair(tmp_path):
    async with gateway(tmp_path, True) as lean, gateway(tmp_path, False) as sdk:
        yield lean, sdk


def stable(doc):
    """`doc` without the values that differ from call to call."""
    if isinstance(doc, dict):
        return {k: ("*" if k in VOLATILE else stable(v)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [stable(v) for v in doc]
    return doc


async def both(pair, path: str, body: bytes, headers: dict = V1) -> tuple[httpx.Response, httpx.Response]:
    lean, sdk = pair
    return (await lean.post(path, content=body, headers=headers), await sdk.post(path, content=body, headers=headers))


@pytest.mark.parametrize("params", [
    {"message": MESSAGE},
    {"message": MESSAGE, "configuration": {"historyLength": 0}},
    {"message": MESSAGE, "configuration": {"returnImmediately": False, "acceptedOutputModes": ["text/plain"]}},
    {"message": MESSAGE, "metadata": {"k": [1, "two"]}, "unknownField": 1},
    {"message": {**MESSAGE, "parts": [{"data": {"x": 1}}, {"text": "ünïcode ✓"}]}},
], ids=["plain", "history-0", "configuration", "metadata-and-unknown-field", "data-and-unicode"])
async def test_successful_calls_get_the_same_answer(pair, params):
    lean, sdk = await both(pair, "/agents/echo/", rpc("SendMessage", params))
    assert lean.status_code == sdk.status_code == 200
    assert lean.headers["content-type"] == sdk.headers["content-type"]
    assert stable(lean.json()) == stable(sdk.json())
    assert lean.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"


@pytest.mark.parametrize("path, body, headers", [
    ("/agents/echo/", b'{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {', V1),
    ("/agents/echo/", rpc("SendMessage", {}), V1),
    ("/agents/echo/", rpc("SendMessage", {"message": {"parts": "no"}}), V1),
    ("/agents/echo/", rpc("SendMessage", {"message": {**MESSAGE, "taskId": "0" * 32}}), V1),
    ("/agents/echo/", rpc("SendMessage", {"message": MESSAGE}, id_=True), V1),
    ("/agents/echo/", rpc("SendMessage", {"message": MESSAGE}, id_=[1]), V1),
    ("/agents/echo/", rpc("SendMessage", {"message": MESSAGE}), {"Content-Type": "application/json"}),
    ("/agents/echo/", rpc("SendMessage", {"message": MESSAGE}), {**V1, "A2A-Version": "2.0"}),
    ("/agents/echo/", rpc("SendMessage", {"message": MESSAGE}, id_=None), V1),
    ("/agents/no-such-agent/", rpc("SendMessage", {"message": MESSAGE}), V1),
    ("/agents/echo/", rpc("SendMessage", {"message": MESSAGE, "configuration": {"historyLength": -1}}), V1),
    ("/agents/echo/", b'{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": [1]}', V1),
    ("/agents/echo/", b'{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {}, "extra": 1}', V1),
    ("/agents/echo/", b'{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": ' + b"[" * 5000 +
     b"]" * 5000 + b"}", V1),
], ids=["truncated", "no-message", "bad-parts", "unknown-task", "bool-id", "list-id", "no-version-header",
        "version-2", "null-id", "unknown-capability", "negative-history", "params-list", "extra-member",
        "deep-params"])
async def test_errors_and_fallbacks_get_the_same_answer(pair, path, body, headers):
    lean, sdk = await both(pair, path, body, headers)
    assert lean.status_code == sdk.status_code
    assert stable(lean.json()) == stable(sdk.json())
    assert "error" in lean.json() or "result" in lean.json()


async def test_other_methods_and_0_3_requests_pass_through_with_their_body(pair):
    lean, sdk = pair
    done = (await lean.post("/agents/echo/", content=rpc("SendMessage", {"message": MESSAGE}), headers=V1)).json()
    task_id = done["result"]["task"]["id"]
    got = await lean.post("/agents/echo/", content=rpc("GetTask", {"id": task_id}), headers=V1)
    assert got.json()["result"]["id"] == task_id
    old = {"message": {"messageId": "m1", "role": "user", "parts": [{"kind": "text", "text": "hi"}]}}
    answers = await both(pair, "/agents/echo/", rpc("message/send", old), {"Content-Type": "application/json"})
    assert stable(answers[0].json()) == stable(answers[1].json())
    assert answers[0].json()["result"]["status"]["state"] == "completed"


def _tasks():
    from a2a.types import a2a_pb2
    from google.protobuf import struct_pb2

    plain = a2a_pb2.Task(id="t1", context_id="c1")
    plain.status.state = a2a_pb2.TASK_STATE_COMPLETED
    plain.status.timestamp.FromNanoseconds(1_700_000_000_123_456_000)
    plain.history.append(a2a_pb2.Message(message_id="m1", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text="hi")]))
    plain.artifacts.append(a2a_pb2.Artifact(artifact_id="a1", name="echo", parts=[a2a_pb2.Part(text="echo: hi")]))
    with_metadata = a2a_pb2.Task()
    with_metadata.CopyFrom(plain)
    with_metadata.metadata.update({"topicbridge": {"capability": "echo", "deadline": 1.7e9, "principal": ""},
                                   "list": [1, "two", None, True, {"x": 2.5}], "empty": {}})
    data_part = a2a_pb2.Task()
    data_part.CopyFrom(plain)
    data_part.artifacts[0].parts.add().data.CopyFrom(struct_pb2.Value(number_value=3))
    status_message = a2a_pb2.Task(id="t2")
    status_message.status.state = a2a_pb2.TASK_STATE_INPUT_REQUIRED
    status_message.status.message.CopyFrom(a2a_pb2.Message(message_id="q", role=a2a_pb2.ROLE_AGENT,
                                                           parts=[a2a_pb2.Part(text="which day?")]))
    empty_status = a2a_pb2.Task(id="t3")
    empty_status.status.SetInParent()
    infinite = a2a_pb2.Task()
    infinite.metadata.update({"x": float("inf")})
    return {"plain": plain, "metadata": with_metadata, "data-part": data_part, "status-message": status_message,
            "empty-status": empty_status, "empty": a2a_pb2.Task(), "infinite": infinite}


@pytest.mark.parametrize("name", list(_tasks()))
def test_the_answer_is_written_exactly_as_json_format_writes_it(name):
    from a2a.types import a2a_pb2
    from google.protobuf import json_format

    from gateway.a2a.lean import response_dict

    task = _tasks()[name]
    try:
        expected = json_format.MessageToDict(a2a_pb2.SendMessageResponse(task=task))
    except json_format.Error:      # json_format refuses it: so does the lean path (the dispatcher answers an error)
        with pytest.raises(json_format.Error):
            response_dict(task)
        return
    answer = response_dict(task)
    assert answer == expected
    assert list(answer["task"]) == list(expected["task"])      # the task's key order too (a map's has none)
    message = task.history[0] if task.history else a2a_pb2.Message()
    assert response_dict(message) == json_format.MessageToDict(a2a_pb2.SendMessageResponse(message=message))


@pytest.mark.parametrize("params", [
    {"message": MESSAGE},
    {"message": {**MESSAGE, "contextId": "c", "taskId": "t", "referenceTaskIds": ["r"], "extensions": ["e"]}},
    {"message": {**MESSAGE, "metadata": {"k": 1}}},
    {"message": {**MESSAGE, "parts": [{"data": {"x": 1}}]}},
    {"message": {**MESSAGE, "unknownField": 1}},
    {"message": MESSAGE, "configuration": {"historyLength": 2}},
    {"message": {}},
], ids=["plain", "ids", "metadata", "data-part", "unknown-field", "configuration", "empty-message"])
def test_the_request_is_read_exactly_as_json_format_reads_it(params):
    from a2a.types import a2a_pb2
    from google.protobuf import json_format

    from gateway.a2a.lean import _send_message_request

    request_id, request = _send_message_request(rpc("SendMessage", params))
    assert request_id == 7
    expected = json_format.ParseDict(params, a2a_pb2.SendMessageRequest(), ignore_unknown_fields=True)
    assert request == expected and request.message.ListFields() == expected.message.ListFields()
