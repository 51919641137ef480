"""SubscribeToTask through the gateway with the official a2a-sdk client: a stream opened on a
task that waits for input follows it through the answer to its terminal state, and closes there,
on the embedded engine and on a remote `topicbridge engine` (the demo's word-stats agent asks for
a text when it is sent none)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from a2a.types import a2a_pb2
from a2a.utils.errors import UnsupportedOperationError

from tests.gateway.a2a_servers import a2a_client, collect, send_request, state_of
from tests.lite_engine.engine_process import EngineProcess

from .serving import running_gateway

COMPLETED, INPUT_REQUIRED = a2a_pb2.TASK_STATE_COMPLETED, a2a_pb2.TASK_STATE_INPUT_REQUIRED


@pytest.fixture(params=["embedded", "remote"])
async def gateway(request, tmp_path):
    engine = None
    lite = {"data_dir": str(tmp_path / "engine"), "tick": 0.005}
    if request.param == "remote":
        engine = EngineProcess(tmp_path / "remote-engine", fsync="never")
        lite = {"mode": "remote", "target": engine.start()}
    try:
        async with running_gateway({"lite": lite, "gateway": {"demo": True}}, client_timeout=15) as gw:
            yield gw
    finally:
        if engine is not None:
            engine.kill()


def answer(task_id: str, text: str) -> a2a_pb2.SendMessageRequest:
    request = send_request(text)
    request.message.task_id = task_id
    return request


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_a_subscription_opened_at_input_required_follows_the_answer_to_completed_and_ends(gateway, binding):
    async with a2a_client(gateway.base, "word-stats", binding=binding) as client, \
            a2a_client(gateway.base, "word-stats", binding=binding, streaming=True) as streaming:
        asked = await collect(client.send_message(send_request("")))
        task_id = asked[-1].task.id
        assert state_of(asked[-1]) == INPUT_REQUIRED
        seen: list[a2a_pb2.StreamResponse] = []
        answered = None
        async with asyncio.timeout(20), contextlib.aclosing(
                streaming.subscribe(a2a_pb2.SubscribeToTaskRequest(id=task_id))) as stream:
            async for event in stream:      # the stream must end by itself at COMPLETED
                seen.append(event)
                if answered is None:
                    answered = asyncio.create_task(collect(client.send_message(answer(task_id, "One. Two words."))))
        await answered
        task = await client.get_task(a2a_pb2.GetTaskRequest(id=task_id))
    assert state_of(seen[0]) == INPUT_REQUIRED and state_of(seen[-1]) == COMPLETED
    assert any(e.HasField("artifact_update") for e in seen)
    assert task.status.state == COMPLETED


async def test_a_subscription_to_a_finished_task_is_refused_as_unsupported(gateway):
    async with a2a_client(gateway.base, "word-stats") as client, \
            a2a_client(gateway.base, "word-stats", streaming=True) as streaming:
        done = await collect(client.send_message(send_request("Short text.")))
        assert state_of(done[-1]) == COMPLETED
        # A2A 1.0: subscribing to a task in a terminal state is UnsupportedOperationError.
        with pytest.raises(UnsupportedOperationError, match="TASK_STATE_COMPLETED"):
            await collect(streaming.subscribe(a2a_pb2.SubscribeToTaskRequest(id=done[-1].task.id)), timeout=10)
