"""The official a2a-sdk client against the gateway's A2A surface.

Two gateway processes (uvicorn, port 0) share one `topicbridge engine` process; the fixture
agents (echo, gate, slow) are native workers in this process on the same engine. Nothing is
mocked: every call is a task envelope on a capability topic and events on a reply channel.
"""

import asyncio
import uuid

import httpx
import pytest
from a2a.client.card_resolver import A2ACardResolver
from a2a.types import a2a_pb2
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError

from tests.gateway.a2a_servers import (
    ECHO_CARD,
    GatewayProcess,
    a2a_client,
    collect,
    send_request,
    state_of,
    task_id_of,
)

COMPLETED, WORKING, CANCELED = a2a_pb2.TASK_STATE_COMPLETED, a2a_pb2.TASK_STATE_WORKING, a2a_pb2.TASK_STATE_CANCELED


async def test_a_capability_card_points_at_the_gateway_and_keeps_the_agents_skills(gateways, agents):
    base = gateways[0]
    async with httpx.AsyncClient() as http:
        card = await A2ACardResolver(http, f"{base}/agents/echo/").get_agent_card()
    bindings = {(i.protocol_binding, i.protocol_version, i.url) for i in card.supported_interfaces}
    assert bindings == {("JSONRPC", "1.0", f"{base}/agents/echo/"), ("HTTP+JSON", "1.0", f"{base}/agents/echo"),
                        ("JSONRPC", "0.3", f"{base}/agents/echo/"), ("HTTP+JSON", "0.3", f"{base}/agents/echo")}
    assert card.capabilities.streaming and card.capabilities.push_notifications
    assert card.name == ECHO_CARD["name"] and card.version == ECHO_CARD["version"]
    assert [s.id for s in card.skills] == ["echo"] and list(card.skills[0].examples) == ["say hello"]


async def test_the_gateway_card_lists_every_capability_as_a_skill(gateways, agents):
    async with httpx.AsyncClient() as http:
        card = await A2ACardResolver(http, gateways[1]).get_agent_card()
    assert {"echo", "gate", "slow"} <= {s.id for s in card.skills}
    assert {i.url for i in card.supported_interfaces} == {f"{gateways[1]}/agents/", f"{gateways[1]}/agents"}


@pytest.mark.parametrize("streaming", [False, True], ids=["send", "stream"])
@pytest.mark.parametrize("version", ["1.0", "0.3"])
@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_a_message_completes_over_every_binding_and_protocol_version(gateways, agents, binding, version,
                                                                         streaming):
    async with a2a_client(gateways[0], "echo", binding=binding, version=version, streaming=streaming) as client:
        events = await collect(client.send_message(send_request("hi")))
        task = await client.get_task(a2a_pb2.GetTaskRequest(id=task_id_of(events[0])))
    if streaming:
        kinds = [e.WhichOneof("payload") for e in events]
        assert kinds[0] == "task" and "artifact_update" in kinds and state_of(events[-1]) == COMPLETED
    else:
        assert len(events) == 1 and events[0].task.status.state == COMPLETED
    assert task.status.state == COMPLETED and task.artifacts[0].parts[0].text == "echo: hi"
    assert task.history[0].parts[0].text == "hi"


async def test_return_immediately_answers_at_once_and_the_task_finishes_later(gateways, agents):
    text = f"later-{uuid.uuid4().hex}"
    async with a2a_client(gateways[0], "gate") as client, \
            a2a_client(gateways[0], "gate", streaming=True) as streamer:
        [event] = await collect(client.send_message(send_request(text, return_immediately=True)))
        assert event.task.status.state == a2a_pb2.TASK_STATE_SUBMITTED
        updates = []
        async with asyncio.timeout(15):
            async for update in streamer.subscribe(a2a_pb2.SubscribeToTaskRequest(id=event.task.id)):
                updates.append(update)
                agents.gate(text).set()
        done = await client.get_task(a2a_pb2.GetTaskRequest(id=event.task.id))
    assert state_of(updates[-1]) == COMPLETED
    assert done.status.state == COMPLETED and done.artifacts[0].parts[0].text == f"released {text}"


async def test_get_task_honours_history_length(gateways, agents):
    async with a2a_client(gateways[0], "echo") as client:
        [event] = await collect(client.send_message(send_request("remember me")))
        full = await client.get_task(a2a_pb2.GetTaskRequest(id=event.task.id))
        none = await client.get_task(a2a_pb2.GetTaskRequest(id=event.task.id, history_length=0))
    assert full.history and not none.history and none.status.state == COMPLETED


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_list_tasks_filters_by_context_and_state_and_pages(gateways, agents, binding):
    context = uuid.uuid4().hex
    async with a2a_client(gateways[0], "echo", binding=binding) as client:
        sent = [(await collect(client.send_message(send_request(f"n{i}", context_id=context))))[0].task.id
                for i in range(3)]
        first = await client.list_tasks(a2a_pb2.ListTasksRequest(context_id=context, page_size=2))
        second = await client.list_tasks(a2a_pb2.ListTasksRequest(context_id=context, page_size=2,
                                                                  page_token=first.next_page_token))
        completed = await client.list_tasks(a2a_pb2.ListTasksRequest(context_id=context, status=COMPLETED,
                                                                     include_artifacts=True))
        working = await client.list_tasks(a2a_pb2.ListTasksRequest(context_id=context, status=WORKING))
    assert len(first.tasks) == 2 and first.next_page_token and first.total_size == 2     # paged, never counted
    assert len(second.tasks) == 1 and not second.next_page_token
    assert {t.id for t in [*first.tasks, *second.tasks]} == set(sent)
    assert not first.tasks[0].artifacts and completed.tasks[0].artifacts
    assert len(completed.tasks) == 3 and not working.tasks


async def test_cancel_stops_a_working_task_and_reports_it_canceled(gateways, agents):
    async with a2a_client(gateways[0], "slow", streaming=True) as client:
        stream = client.send_message(send_request("take your time"))
        async with asyncio.timeout(15):
            async for event in stream:
                if state_of(event) == WORKING:
                    break
        canceled = await client.cancel_task(a2a_pb2.CancelTaskRequest(id=task_id_of(event)))
        rest = await collect(stream)
        with pytest.raises(TaskNotCancelableError):
            await client.cancel_task(a2a_pb2.CancelTaskRequest(id=canceled.id))
    assert canceled.status.state == CANCELED
    assert state_of(rest[-1]) == CANCELED


async def test_cancel_of_an_unknown_task_is_task_not_found(gateways, agents):
    async with a2a_client(gateways[0], "echo") as client:
        with pytest.raises(TaskNotFoundError):
            await client.cancel_task(a2a_pb2.CancelTaskRequest(id=uuid.uuid4().hex))


async def test_a_second_gateway_follows_a_task_started_on_the_first(gateways, agents):
    first, second = gateways
    text = f"follow-{uuid.uuid4().hex}"
    async with a2a_client(first, "gate") as starter, a2a_client(second, "gate", streaming=True) as follower:
        [started] = await collect(starter.send_message(send_request(text, return_immediately=True)))
        events = []
        async with asyncio.timeout(15):
            async for event in follower.subscribe(a2a_pb2.SubscribeToTaskRequest(id=started.task.id)):
                events.append(event)
                agents.gate(text).set()       # once the second gateway is attached, let it finish
        from_second = await indexed(follower, started.task.id, COMPLETED)
    assert events[0].task.id == started.task.id
    assert state_of(events[-1]) == COMPLETED
    assert from_second.artifacts[0].parts[0].text == f"released {text}"


async def test_tasks_outlive_a_gateway_killed_with_sigkill(engine, gateways, agents):
    doomed = GatewayProcess(engine)
    url = doomed.start()
    try:
        async with a2a_client(url, "echo") as client:
            [done] = await collect(client.send_message(send_request("before the crash")))
        text = f"crash-{uuid.uuid4().hex}"
        async with a2a_client(url, "gate") as client:
            [running] = await collect(client.send_message(send_request(text, return_immediately=True)))
    finally:
        doomed.kill()
    async with a2a_client(gateways[1], "echo") as survivor:
        answered = await survivor.get_task(a2a_pb2.GetTaskRequest(id=done.task.id))
    assert answered.status.state == COMPLETED and answered.artifacts[0].parts[0].text == "echo: before the crash"
    async with a2a_client(gateways[1], "gate", streaming=True) as survivor:
        events = []
        async with asyncio.timeout(15):
            async for event in survivor.subscribe(a2a_pb2.SubscribeToTaskRequest(id=running.task.id)):
                events.append(event)
                agents.gate(text).set()
    assert state_of(events[-1]) == COMPLETED


async def indexed(client, task_id: str, state: int) -> a2a_pb2.Task:
    """GetTask until the task shows `state`: another instance indexes it a moment after the
    stream this one read."""
    async with asyncio.timeout(15):
        while (task := await client.get_task(a2a_pb2.GetTaskRequest(id=task_id))).status.state != state:
            await asyncio.sleep(0.02)  # sleep-ok: observing another instance's index
    return task
