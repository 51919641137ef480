"""A first-time user on RocketMQ (issue 16): `topicbridge serve --backend rocketmq --demo` on a
fresh namespace (its topics and groups are new), stopped and started again at once on the same
port, then a second instance next to it. Every start is ready and answers an A2A call through
the demo echo agent. Real subprocesses on the session's real RocketMQ cluster."""

from __future__ import annotations

import signal
import uuid

import httpx
from a2a.types import a2a_pb2

from tests.gateway.a2a_servers import a2a_client, collect, send_request, state_of
from tests.rocketmq.cluster import shared_cluster
from tests.spawned import TOPICBRIDGE, Spawned, clean_env, free_port

START_TIMEOUT = 120.0    # a gateway process may take 60 s to start on a loaded machine


def serve(cluster, namespace: str, port: int) -> Spawned:
    return Spawned([*TOPICBRIDGE, "serve", "--backend", "rocketmq", "--endpoint", cluster.endpoint,
                    "--namesrv", cluster.namesrv_addr, "--demo", "--port", str(port)],
                   env=clean_env(rocketmq__namespace=namespace))


async def ready_and_echoing(served: Spawned, port: int, text: str) -> None:
    served.wait_for("Uvicorn running on", timeout=START_TIMEOUT)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text
    await echoing(port, text)


async def echoing(port: int, text: str) -> None:
    """One A2A round trip through the demo echo agent, by the SDK client (its own timeout: a
    reply the gateway receives late fails here as it would for a user)."""
    async with a2a_client(f"http://127.0.0.1:{port}", "echo") as client:
        events = await collect(client.send_message(send_request(text)), timeout=60)
    assert state_of(events[-1]) == a2a_pb2.TASK_STATE_COMPLETED, events[-1]
    assert events[-1].task.artifacts[0].parts[0].text == text


def interrupted(served: Spawned) -> int:
    """Ctrl-C, as the user stops it; the exit code (130 after a clean shutdown, as shells do)."""
    served.process.send_signal(signal.SIGINT)
    return served.exit_code(timeout=60)


async def test_serve_on_a_fresh_rocketmq_namespace_starts_again_at_once_and_beside_a_second_instance():
    cluster = shared_cluster()
    namespace = f"first-{uuid.uuid4().hex[:10]}"
    port, other_port = free_port(), free_port()
    first = serve(cluster, namespace, port)
    try:
        await ready_and_echoing(first, port, "first start")
        assert interrupted(first) == 130, first.text
    finally:
        first.stop()
    assert "Traceback" not in first.text, first.text

    again = serve(cluster, namespace, port)          # at once, same port: the same instance id
    beside = None
    try:
        await ready_and_echoing(again, port, "started again")
        beside = serve(cluster, namespace, other_port)
        await ready_and_echoing(beside, other_port, "a second instance")
        await echoing(port, "the first one still answers")
        assert interrupted(beside) == 130, beside.text
        assert interrupted(again) == 130, again.text
    finally:
        again.stop()
        if beside is not None:
            beside.stop()
    for served in (again, beside):
        assert "Traceback" not in served.text, served.text

