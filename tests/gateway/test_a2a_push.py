"""Push notifications: configs through the official client, delivery to a local Starlette
receiver at least once with retries and backoff, dead letters, and delivery that survives the
gateway which owned it being killed."""

import asyncio
import json
import uuid

import pytest
from a2a.types import a2a_pb2
from a2a.utils.errors import TaskNotFoundError

from gateway.a2a import push
from tests.gateway.a2a_servers import (
    Agents,
    GatewayProcess,
    PushReceiver,
    a2a_client,
    collect,
    send_request,
    states,
)
from tests.lite_engine.engine_process import EngineProcess

COMPLETED = "TASK_STATE_COMPLETED"


def config(url: str, **fields) -> a2a_pb2.TaskPushNotificationConfig:
    return a2a_pb2.TaskPushNotificationConfig(url=url, **fields)


def completed(path: str):
    """Until the receiver has the final state; other notifications may still be on their way."""
    return lambda r: COMPLETED in states([body for _, body in r.received.get(path, [])])


async def test_notifications_reach_the_receiver_with_the_token_and_credentials(gateways, agents, receiver):
    auth = a2a_pb2.AuthenticationInfo(scheme="Bearer", credentials="s3cret")
    async with a2a_client(gateways[0], "echo") as client:
        [event] = await collect(client.send_message(send_request(
            "ping", push=config(receiver.url("plain"), token="tok-1", authentication=auth))))
    # working, the artifact, completed: in any order (delivery is concurrent and not ordered)
    await receiver.wait_for(lambda r: len(r.received.get("plain", [])) >= 3)
    headers, _ = receiver.received["plain"][0]
    assert headers["x-a2a-notification-token"] == "tok-1" and headers["authorization"] == "Bearer s3cret"
    bodies = [body for _, body in receiver.received["plain"]]
    assert all(body.get("statusUpdate", body.get("artifactUpdate", body.get("task", {}))) for body in bodies)
    assert {b["statusUpdate"]["taskId"] for b in bodies if "statusUpdate" in b} == {event.task.id}
    assert any(b.get("artifactUpdate", {}).get("artifact", {}).get("parts") == [{"text": "echo: ping"}]
               for b in bodies)


async def test_a_receiver_that_fails_twice_gets_every_notification(gateways, agents, receiver):
    receiver.fail("flaky", 2)
    async with a2a_client(gateways[1], "echo", streaming=True) as client:
        await collect(client.send_message(send_request("retry me", push=config(receiver.url("flaky")))))
    # delivery is not ordered: a retried notification may arrive after a later one
    await receiver.wait_for(lambda r: len(r.received.get("flaky", [])) >= 3)
    bodies = [body for _, body in receiver.received["flaky"]]
    assert set(states(bodies)) == {"TASK_STATE_WORKING", COMPLETED}
    assert any("artifactUpdate" in body for body in bodies)
    assert len(receiver.tried["flaky"]) == 3 + 2


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_push_configs_are_created_read_listed_and_deleted_through_the_client(gateways, agents, receiver,
                                                                                   binding):
    text = f"crud-{uuid.uuid4().hex}"
    async with a2a_client(gateways[0], "gate", binding=binding) as client, \
            a2a_client(gateways[1], "gate", binding=binding) as other:
        [event] = await collect(client.send_message(send_request(text, return_immediately=True)))
        task_id = event.task.id
        created = await client.create_task_push_notification_config(
            config(receiver.url(text), task_id=task_id, token="t"))
        named = await other.create_task_push_notification_config(
            config(receiver.url(text + "-2"), task_id=task_id, id="second"))
        got = await other.get_task_push_notification_config(
            a2a_pb2.GetTaskPushNotificationConfigRequest(task_id=task_id, id=created.id))
        listed = await client.list_task_push_notification_configs(
            a2a_pb2.ListTaskPushNotificationConfigsRequest(task_id=task_id))
        await other.delete_task_push_notification_config(
            a2a_pb2.DeleteTaskPushNotificationConfigRequest(task_id=task_id, id="second"))
        agents.gate(text).set()
        await receiver.wait_for(completed(text))
        left = await client.list_task_push_notification_configs(
            a2a_pb2.ListTaskPushNotificationConfigsRequest(task_id=task_id))
        with pytest.raises(TaskNotFoundError):
            await client.get_task_push_notification_config(
                a2a_pb2.GetTaskPushNotificationConfigRequest(task_id=task_id, id="second"))
    assert created.id and created.task_id == task_id and named.id == "second"
    assert got.url == receiver.url(text) and got.token == "t"
    assert {c.id for c in listed.configs} == {created.id, "second"}
    assert [c.id for c in left.configs] == [created.id]
    # the deleted config may have seen the task start, never its end
    assert COMPLETED not in states([body for _, body in receiver.received.get(text + "-2", [])])


async def test_notifications_that_keep_failing_are_dead_lettered_with_the_reason(engine, gateways, agents, receiver):
    receiver.fail("down", 1000)
    async with a2a_client(gateways[0], "echo") as client:
        [event] = await collect(client.send_message(send_request("nobody home", push=config(receiver.url("down")))))
    dlq = await agents.backend.group_consumer(agents.backend.dead_letter_topic(push.GROUP), f"t-{uuid.uuid4().hex}")
    dead = []                       # (reason, job) of this task's notifications
    # working, artifact and completed; delivery is at least once, so a working status folded
    # while SendMessage stored the config can come twice (the relay hook's and the snapshot's):
    # read until the end is there and every notification tried has been dead-lettered
    def settled() -> bool:
        return COMPLETED in states([job["event"] for _, job in dead]) and \
            len(receiver.tried.get("down", [])) == 3 * len(dead)
    async with asyncio.timeout(20):
        while not settled():
            for delivery in await dlq.receive(max_messages=16, wait=1.0):
                await delivery.ack()
                if delivery.headers.get("task_id") == event.task.id:
                    dead.append((delivery.headers["x-dlq-reason"], json.loads(delivery.body)))
    assert {reason for reason, _ in dead} == {"HTTP 503 (attempt 3)"}
    assert {"TASK_STATE_WORKING", COMPLETED} <= set(states([job["event"] for _, job in dead]))
    assert "down" not in receiver.received and len(receiver.tried.get("down", [])) == 3 * len(dead)


async def test_pending_notifications_survive_a_gateway_killed_and_restarted(tmp_path):
    """One gateway alone in the push group: it is killed while a notification waits for a
    receiver that is down; a new gateway on the same engine delivers it."""
    patient = {"backoff_base": 0.2, "backoff_max": 0.5, "max_attempts": 100, "invisible": 1.0}
    own_engine = EngineProcess(tmp_path / "engine", fsync="never")
    target = own_engine.start()
    first = GatewayProcess(target, push=patient)
    try:
        url = first.start()
        async with Agents(target), PushReceiver() as receiver:
            receiver.fail("later", 10_000)
            async with a2a_client(url, "echo") as client:
                request = send_request("keep it", push=config(receiver.url("later")))
                [event] = await collect(client.send_message(request))
            assert event.task.status.state == a2a_pb2.TASK_STATE_COMPLETED
            await receiver.wait_for(lambda r: COMPLETED in states(r.tried.get("later", [])))
            first.kill()
            receiver.fail("later", 0)
            second = GatewayProcess(target, push=patient)
            second.start()
            try:
                await receiver.wait_for(lambda r: {"TASK_STATE_WORKING", COMPLETED} <= set(
                    states([body for _, body in r.received.get("later", [])])), timeout=20)
            finally:
                second.stop()
    finally:
        first.kill()
        own_engine.kill()
