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
