"""The admin path speaks RocketMQ's remoting protocol to the name server and the brokers."""

import pytest

from adapters.base import TopicSpec
from adapters.rocketmq import RemotingAdmin
from adapters.rocketmq.admin import AdminError

from tests.contract.helpers import unique


@pytest.fixture
async def admin(cluster):
    client = RemotingAdmin(cluster.namesrv_addr)
    yield client
    await client.close()


async def test_topics_are_created_with_type_order_and_lite_expiry(backend, admin):
    name = unique("par")
    await backend.create_topic(TopicSpec(name, lite=True, ordered=True, lite_idle_seconds=3600))
    config = await admin.topic_config(name)
    assert config["order"] is True
    assert config["attributes"] == {"message.type": "LITE", "lite.topic.expiration": "60"}
    assert await admin.topic_config(unique("missing")) is None


async def test_an_existing_topic_keeps_its_queues_when_declared_again(backend, admin):
    name = unique("cap")
    await admin.create_topic(name, message_type="NORMAL", queues=6)
    await backend.create_topic(TopicSpec(name, max_attempts=3))
    config = await admin.topic_config(name)
    assert (config["readQueueNums"], config["writeQueueNums"]) == (6, 6)


async def test_group_updates_keep_settings_they_do_not_name(admin):
    group = unique("grp")
    await admin.create_group(group, max_retry=2)
    await admin.create_group(group, attributes={"lite.sub.client.quota": "7"})
    await admin.create_group(group)
    assert not await admin.has_offset(group, "anything")
    await admin.delete_group(group)
    await admin.delete_group(group)                     # idempotent


async def test_capability_groups_get_their_retry_limit_and_dead_letter_topic(backend, admin):
    topic = await _capability(backend, max_attempts=4)
    consumer = await backend.group_consumer(topic, unique("workers"))
    assert consumer._session.max_attempts() == 4           # the proxy reports retryMaxTimes + 1
    assert await admin.topic_config(backend.dead_letter_topic(consumer.group)) is not None


async def test_broker_refusals_are_admin_errors(admin):
    with pytest.raises(AdminError):
        await admin.create_topic(unique("bad"), message_type="NO_SUCH_TYPE")


async def _capability(backend, **spec) -> str:
    name = unique("cap")
    await backend.create_topic(TopicSpec(name, **spec))
    return name
