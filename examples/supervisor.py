"""A supervisor that knows what it needs, not who does it: it finds a capability with the
gateway's discovery (`GET /admin/agents?q=`) and calls it with the official a2a-sdk client.

    topicbridge serve --demo &
    python examples/supervisor.py "count the words" "The cat sat. The dog ran."

Environment: TOPICBRIDGE_GATEWAY (default http://127.0.0.1:8080), TOPICBRIDGE_TOKEN (when the
gateway has `gateway.bearer_tokens`).
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

import httpx
from a2a.client import ClientConfig, create_client
from a2a.client.card_resolver import A2ACardResolver
from a2a.types import a2a_pb2


async def run(need: str, text: str) -> str:
    base = os.environ.get("TOPICBRIDGE_GATEWAY", "http://127.0.0.1:8080").rstrip("/")
    token = os.environ.get("TOPICBRIDGE_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        found = (await http.get(f"{base}/admin/agents", params={"q": need, "limit": 1})).raise_for_status().json()
        if not found["agents"]:
            raise SystemExit(f"no capability matches {need!r}")
        name = found["agents"][0]["name"]
        card = await A2ACardResolver(http, f"{base}/agents/{name}/").get_agent_card()
        client = await create_client(card, ClientConfig(streaming=False, httpx_client=http))
        message = a2a_pb2.Message(message_id=uuid.uuid4().hex, role=a2a_pb2.ROLE_USER,
                                  parts=[a2a_pb2.Part(text=text)])
        answer = ""
        async for event in client.send_message(a2a_pb2.SendMessageRequest(message=message)):
            for artifact in event.task.artifacts:
                answer = "".join(part.text for part in artifact.parts)
        await client.close()
    return f"{name}: {answer}"


if __name__ == "__main__":
    need, text = (sys.argv[1:3] + ["echo this", "hello from the supervisor"][len(sys.argv[1:3]):])[:2]
    print(asyncio.run(run(need, text)))
