"""`topicbridge agents ...` as a user runs it: a subprocess talking HTTP to a served gateway."""

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest


from .remote_agents import running_agent
from .serving import running_gateway

ROOT = Path(__file__).resolve().parents[2]


async def cli(*args: str, gateway: str | None) -> tuple[int, object, str]:
    """Run the CLI; return its exit code, its stdout parsed as JSON (or None) and its stderr."""
    extra = ["--json", "--gateway", gateway] if gateway else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICBRIDGE_")}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway.cli", "agents", *args, *extra,
                                                   cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    return process.returncode, json.loads(out) if out.strip() else None, err.decode()


@pytest.fixture
async def gateway(tmp_path):
    async with running_gateway({"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005}, "gateway": {}}) as gw:
        yield gw.base


async def test_register_list_search_show_remove(gateway):
    async with running_agent(streaming=True) as agent:
        code, record, _ = await cli("register", agent.base_url, gateway=gateway)
        assert code == 0 and record["name"] == "pdf-summariser" and record["card_url"] == agent.card_url

        code, named, _ = await cli("register", agent.card_url, "--name", "digest", gateway=gateway)
        assert code == 0 and named["name"] == "digest"

        code, listing, _ = await cli("list", gateway=gateway)
        assert code == 0 and [a["name"] for a in listing["agents"]] == ["digest", "pdf-summariser"]

        code, found, _ = await cli("list", "--query", "summarise a PDF", "--limit", "1", gateway=gateway)
        assert code == 0 and len(found["agents"]) == 1 and found["agents"][0]["score"] > 0

        code, shown, _ = await cli("show", "digest", gateway=gateway)
        assert code == 0 and shown["card"]["name"] == "PDF Summariser"

        code, removed, _ = await cli("remove", "digest", gateway=gateway)
        assert code == 0 and removed["removed"]["name"] == "digest"


async def test_refresh_fetches_the_card_again_and_a_native_or_unknown_name_is_refused(gateway):
    async with running_agent(streaming=True) as agent:
        code, record, _ = await cli("register", agent.base_url, gateway=gateway)
        assert code == 0 and record["card"]["version"] == "1.0.0"
        agent.card.version = "1.1.0"          # the agent was upgraded: its card says so
        code, refreshed, _ = await cli("refresh", "pdf-summariser", gateway=gateway)
        assert code == 0 and refreshed["card"]["version"] == "1.1.0" and refreshed["status"] == "available"
    code, doc, err = await cli("refresh", "pdf-summariser", gateway=gateway)     # the agent is gone now
    assert code == 1 and "HTTP 422" in err and "ConnectError" in doc["error"]["message"]
    code, doc, err = await cli("refresh", "nobody", gateway=gateway)
    assert code == 1 and "HTTP 404" in err and doc["error"]["type"] == "NotFoundError"


async def test_the_gateways_refusals_exit_1_with_its_message(gateway):
    code, doc, err = await cli("show", "nobody", gateway=gateway)
    assert code == 1 and doc["error"]["type"] == "NotFoundError"
    assert "HTTP 404" in err and "unknown capability 'nobody'" in err

    code, doc, err = await cli("register", "http://169.254.169.254/latest/meta-data/", gateway=gateway)
    assert code == 1 and doc["error"]["type"] == "RefusedURLError" and "HTTP 422" in err

    code, _, err = await cli("remove", "nobody", gateway=gateway)
    assert code == 1 and "HTTP 404" in err


async def test_an_unreachable_gateway_exits_3():
    code, doc, err = await cli("list", gateway="http://127.0.0.1:1")
    assert code == 3 and doc is None and "cannot reach the gateway at http://127.0.0.1:1" in err


async def test_bad_usage_exits_2():
    code, _, err = await cli("list", "--limit", "0", gateway=None)
    assert code == 2 and "must be a positive int" in err
    code, _, err = await cli("frobnicate", gateway=None)
    assert code == 2 and "invalid choice" in err
