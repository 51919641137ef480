"""`topicbridge tasks ...` as a user runs it: a subprocess talking HTTP to gateway processes that
share one engine, so a task started on one instance is listed, watched and cancelled on the other."""

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
V1 = {"A2A-Version": "1.0"}
WAIT = 30


async def cli(*args: str, gateway: str | None = None, on_line=None) -> tuple[int, str, str]:
    """Run the CLI; return its exit code, stdout and stderr. `on_line(line)` sees stdout as it comes."""
    extra = ["--gateway", gateway] if gateway else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICBRIDGE_")} | {"COLUMNS": "200"}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway.cli", *args, *extra, cwd=ROOT,
                                                   env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    lines = []
    async with asyncio.timeout(WAIT):
        async for raw in process.stdout:
            lines.append(raw.decode())
            if on_line is not None:
                await on_line(lines[-1])
        err = await process.stderr.read()
        await process.wait()
    return process.returncode, "".join(lines), err.decode()


async def start(gateway: str, capability: str, text: str) -> str:
    async with httpx.AsyncClient(base_url=gateway, timeout=WAIT) as http:
        answer = await http.post(f"/agents/{capability}/message:send", headers=V1, json={
            "message": {"messageId": os.urandom(8).hex(), "role": "ROLE_USER", "parts": [{"text": text}]},
            "configuration": {"returnImmediately": True}})
    assert answer.status_code == 200, answer.text
    return answer.json()["task"]["id"]


async def test_watch_on_another_instance_follows_a_task_to_completed_line_by_line(gateways, agents):
    first, second = gateways
    task_id = await start(first, "gate", "cli-watch")
    seen = []

    async def on_line(line: str) -> None:
        seen.append(json.loads(line))
        if len(seen) == 1:          # the task as it is: now let it finish
            agents.gate("cli-watch").set()

    code, _, err = await cli("tasks", "watch", task_id, "--json", gateway=second, on_line=on_line)
    assert code == 0, err
    assert seen[0]["event"] == "event" and seen[0]["data"]["task"]["id"] == task_id
    states = [e["data"]["statusUpdate"]["status"]["state"] for e in seen if "statusUpdate" in e.get("data", {})]
    assert states[-1] == "TASK_STATE_COMPLETED" and seen[-1]["event"] == "end"


async def test_watch_shows_a_live_view_that_ends_with_the_tasks_state(gateways, agents):
    task_id = await start(gateways[0], "echo", "hello watcher")
    code, out, err = await cli("tasks", "watch", task_id, gateway=gateways[1])
    assert code == 0, err
    assert task_id in out and "completed" in out and "echo: hello watcher" in out


async def test_list_show_and_cancel_print_tables_or_json(gateways, agents):
    first, second = gateways
    done = await start(first, "echo", "listed")
    running = await start(first, "slow", "forever")

    code, out, _ = await cli("tasks", "list", "--capability", "echo", "--json", gateway=second)
    assert code == 0 and done in [t["id"] for t in json.loads(out)["tasks"]]
    assert {t["capability"] for t in json.loads(out)["tasks"]} == {"echo"}
    code, out, _ = await cli("tasks", "list", "--capability", "slow", "--state", "working", gateway=second)
    assert code == 0 and running in out and "TASK" in out and "CAPABILITY" in out

    code, out, _ = await cli("tasks", "show", done, gateway=second)
    assert code == 0 and "echo: listed" in out and "completed" in out
    code, out, _ = await cli("tasks", "show", done, "--json", gateway=second)
    assert code == 0 and json.loads(out)["summary"]["state"] == "completed"

    code, out, err = await cli("tasks", "cancel", running, "--json", gateway=second)
    assert code == 0, err
    code, out, _ = await cli("tasks", "watch", running, "--json", gateway=first)
    assert code == 4 and "TASK_STATE_CANCELED" in out           # ended unsuccessfully
    code, _, err = await cli("tasks", "cancel", running, gateway=second)
    assert code == 1 and "HTTP 409" in err


async def test_agents_list_prints_a_table_by_default(gateways, agents):
    code, out, _ = await cli("agents", "list", gateway=gateways[0])
    assert code == 0 and "NAME" in out and "HEALTH" in out and "echo" in out and "available" in out


async def test_bad_input_and_unknown_tasks_get_clear_errors(gateways):
    code, _, err = await cli("tasks", "list", "--state", "bogus", gateway=gateways[0])
    assert code == 2 and "invalid choice: 'bogus'" in err
    code, _, err = await cli("tasks", "show", "0" * 32, gateway=gateways[0])
    assert code == 1 and "HTTP 404" in err
    code, _, err = await cli("tasks", "watch", "no such task", gateway=gateways[0])
    assert code == 1 and "HTTP 404" in err
    code, _, err = await cli("tasks", "list", gateway="http://127.0.0.1:1")
    assert code == 3 and "cannot reach the gateway at http://127.0.0.1:1" in err
    code, out, _ = await cli("--version")
    assert code == 0 and out.startswith("topicbridge ")
