import asyncio
import uuid

from adapters.base import Backend, Delivery, LiteConsumer, Message, TopicSpec


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def lite_parent(backend: Backend, **spec) -> str:
    name = unique("reply")
    await backend.create_topic(TopicSpec(name, lite=True, **spec))
    return name


async def capability(backend: Backend, **spec) -> str:
    name = unique("cap")
    await backend.create_topic(TopicSpec(name, **spec))
    return name


async def publish_all(backend: Backend, topic: str, bodies, lite_topic: str | None = None) -> list[str]:
    return [await backend.publish(topic, Message(b), lite_topic=lite_topic) for b in bodies]


async def poll_until(consumer: LiteConsumer, expect: int, timeout: float = 10.0) -> list[Delivery]:
    """Poll until `expect` deliveries arrived; bounded by `timeout` seconds."""
    out: list[Delivery] = []
    async with asyncio.timeout(timeout):
        while len(out) < expect:
            out += await consumer.poll(max_messages=expect - len(out), wait=1.0)
    return out


async def receive_until(consumer, expect: int, timeout: float = 10.0) -> list[Delivery]:
    out: list[Delivery] = []
    async with asyncio.timeout(timeout):
        while len(out) < expect:
            out += await consumer.receive(max_messages=expect - len(out), wait=1.0)
    return out


async def ack_all(deliveries) -> None:
    for d in deliveries:
        await d.ack()
