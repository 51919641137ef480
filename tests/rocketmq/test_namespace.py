"""A RocketMQ namespace prefixes every resource; the admin path creates the prefixed names."""

from adapters.base import Message

from tests.contract.helpers import capability, lite_parent, poll_until, receive_until


async def test_topics_groups_and_lite_topics_live_in_the_namespace(open_backend, cluster):
    backend = await open_backend(namespace="team1")
    topic, parent = await capability(backend), await lite_parent(backend)
    assert await backend.admin.topic_config(f"team1%{topic}") is not None
    workers = await backend.group_consumer(topic, "workers")
    await backend.publish(topic, Message(b"job"))
    [job] = await receive_until(workers, 1)
    await job.ack()
    gateway = await backend.lite_consumer(parent, "gw")
    await gateway.subscribe(["task-1"])
    await backend.publish(parent, Message(b"reply"), lite_topic="task-1")
    [reply] = await poll_until(gateway, 1)
    assert (reply.topic, reply.lite_topic, reply.body) == (parent, "task-1", b"reply")
    await reply.ack()
