"""The caller's side of a fault run: A2A 1.0 JSON-RPC over httpx against /agents/<name>/.

Transport errors and JSON-RPC errors come back as values (`Refused`), never as exceptions: a
kind counts them (a send refused during a fault is not a task the gateway accepted)."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from dataclasses import dataclass

import httpx

HEADERS = {"Content-Type": "application/json", "A2A-Version": "1.0"}
TASK_NOT_FOUND = -32001
TERMINAL = {"TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED", "TASK_STATE_REJECTED"}
_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Refused:
    """A call that did not get a result: an HTTP/transport failure or a JSON-RPC error."""
    reason: str
    code: int | None = None


def message(text: str, task_id: str | None = None) -> dict:
    msg = {"messageId": uuid.uuid4().hex, "role": "ROLE_USER", "parts": [{"text": text}]}
    return msg | ({"taskId": task_id} if task_id else {})


class Caller:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=timeout,
                                      limits=httpx.Limits(max_connections=64))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(self, capability: str, method: str, params: dict) -> dict | Refused:
        body = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params}
        try:
            response = await self.http.post(f"/agents/{capability}/", json=body, headers=HEADERS)
            doc = response.json()
        except (httpx.HTTPError, ValueError) as e:
            return Refused(f"{type(e).__name__}: {e}")
        if "error" in doc:
            return Refused(doc["error"].get("message", ""), doc["error"].get("code"))
        return doc.get("result", {})

    async def send(self, capability: str, text: str, *, wait: bool = False) -> dict | Refused:
        """SendMessage; the task as the gateway answered it (submitted, unless `wait`)."""
        params = {"message": message(text), "configuration": {"returnImmediately": not wait}}
        result = await self.call(capability, "SendMessage", params)
        return result.get("task", result) if isinstance(result, dict) else result

    async def get(self, capability: str, task_id: str) -> dict | Refused:
        return await self.call(capability, "GetTask", {"id": task_id})

    async def cancel(self, capability: str, task_id: str) -> dict | Refused:
        return await self.call(capability, "CancelTask", {"id": task_id})

    async def answer(self, capability: str, task_id: str, text: str) -> dict | Refused:
        params = {"message": message(text, task_id), "configuration": {"returnImmediately": True}}
        result = await self.call(capability, "SendMessage", params)
        return result.get("task", result) if isinstance(result, dict) else result

    async def stream_and_drop(self, capability: str, text: str) -> str | Refused:
        """SendStreamingMessage, read the first event (the task), then hang up: a client that
        disconnects mid-stream. Returns the task id."""
        body = {"jsonrpc": "2.0", "id": next(_ids), "method": "SendStreamingMessage",
                "params": {"message": message(text)}}
        try:
            async with self.http.stream("POST", f"/agents/{capability}/", json=body,
                                        headers=HEADERS | {"Accept": "text/event-stream"}) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        doc = json.loads(line[5:])
                        if "error" in doc:
                            return Refused(doc["error"].get("message", ""), doc["error"].get("code"))
                        result = doc["result"]
                        return (result.get("task") or result)["id"]
        except (httpx.HTTPError, ValueError, KeyError) as e:
            return Refused(f"{type(e).__name__}: {e}")
        return Refused("the stream ended before its first event")

    async def until_ready(self, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    if (await self.http.get("/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)   # sleep-ok: polling a process that is starting


def state(task: dict) -> str:
    return task.get("status", {}).get("state", "")


def reason(task: dict) -> str:
    parts = task.get("status", {}).get("message", {}).get("parts", [])
    return " ".join(p.get("text", "") for p in parts).strip()
