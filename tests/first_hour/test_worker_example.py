"""examples/worker.py, run as the README says, in its own process against a default
`topicbridge serve`: it reaches the gateway's embedded engine through `lite.listen` and answers
an A2A call; a busy listen port leaves the gateway serving, with a warning."""

from __future__ import annotations

import socket
import sys

import httpx
import pytest
from a2a.types import a2a_pb2

from tests.gateway.a2a_servers import a2a_client, collect, send_request, state_of

from tests.spawned import ROOT, TOPICBRIDGE, Spawned, clean_env, free_port


@pytest.fixture
def gateway(tmp_path):
    """`topicbridge serve` on free ports: (base URL, engine address)."""
    port, engine = free_port(), f"127.0.0.1:{free_port()}"
    served = Spawned([*TOPICBRIDGE, "serve", "--port", str(port), "--data-dir", str(tmp_path / "engine")],
                     env=clean_env(lite__listen=engine))
    try:
        served.wait_for("Uvicorn running on", timeout=60)
        yield f"http://127.0.0.1:{port}", engine
    finally:
        served.stop()


async def test_the_example_worker_in_a_second_process_answers_calls_through_the_gateway(gateway):
    base, engine = gateway
    worker = Spawned([sys.executable, str(ROOT / "examples" / "worker.py")], env=clean_env(lite__target=engine))
    try:
        worker.wait_for("worker summarise is serving", timeout=60)
        async with a2a_client(base, "summarise") as client:
            events = await collect(client.send_message(send_request("one two three")), timeout=30)
        assert state_of(events[-1]) == a2a_pb2.TASK_STATE_COMPLETED
        assert events[-1].task.artifacts[0].parts[0].text == "one two three"
    finally:
        worker.stop()
    assert worker.process.returncode == 0, worker.text       # Ctrl-C / SIGTERM end it cleanly


def test_a_busy_listen_port_leaves_the_gateway_serving_with_a_warning_and_next_steps(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        port = free_port()
        served = Spawned([*TOPICBRIDGE, "serve", "--port", str(port), "--data-dir", ""],
                         env=clean_env(lite__listen=busy))
        try:
            served.wait_for(f"cannot listen on {busy}", timeout=60)
            served.wait_for("Uvicorn running on", timeout=60)
            assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
            assert f"http://127.0.0.1:{port}/admin/agents" in served.text     # where to go next
            assert "python examples/worker.py" in served.text and "topicbridge serve --demo" in served.text
        finally:
            served.stop()
