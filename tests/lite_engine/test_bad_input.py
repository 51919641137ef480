"""Malformed input gets a typed error and the engine keeps serving."""

import pytest

from lite_engine import (InvalidArgumentError, InvalidNameError, MessageTooLargeError, TopicConfig,
                         TopicKindError, UnknownClientError, UnknownReceiptError)

BAD_NAMES = ["", " ", "a b", "new\nline", "nul\x00", "\x7f", "x" * 256, "-leading-dash", "%reserved", "%DLQ%bad name", "é", 42, None]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_bad_names_are_rejected_everywhere(engine, name):
    with pytest.raises(InvalidNameError) as err:
        await engine.publish(name, b"x")
    assert "name" in str(err.value)
    if name is not None:   # lite=None means "no lite topic"
        with pytest.raises(InvalidNameError):
            await engine.publish("reply", b"x", lite=name)
    with pytest.raises(InvalidNameError):
        await engine.receive("tasks", name)
    with pytest.raises(InvalidNameError):
        engine.open_client(name, group="g", topic="reply")
    engine.open_client("c", group="g", topic="reply")
    with pytest.raises(InvalidNameError):
        engine.subscribe("c", ["ok", name])
    assert engine.interest("c") == frozenset()   # a rejected batch changes nothing
    await engine.publish("tasks", b"still serving")


async def test_oversize_body_is_rejected(make_engine):
    engine = await make_engine(max_message_bytes=100)
    with pytest.raises(MessageTooLargeError) as err:
        await engine.publish("tasks", b"x" * 101)
    assert (err.value.size, err.value.limit) == (101, 100)
    await engine.publish("tasks", b"x" * 100)


@pytest.mark.parametrize("body", ["text", None, 3, [b"x"]])
async def test_non_bytes_bodies_are_rejected(engine, body):
    with pytest.raises(InvalidArgumentError):
        await engine.publish("tasks", body)


@pytest.mark.parametrize("headers", [{"": "v"}, {"k": 1}, {"k\n": "v"}, {"k": "v" * 20000}, ["k"],
                                     {f"h{i}": "v" for i in range(65)}])
async def test_bad_headers_are_rejected(engine, headers):
    with pytest.raises(InvalidArgumentError):
        await engine.publish("tasks", b"x", headers=headers)


@pytest.mark.parametrize("receipt", ["", "nope", "00000000.1", None, 12, "x" * 10000])
async def test_unknown_receipts_are_rejected(engine, receipt):
    for settle in (engine.ack, engine.nack, lambda r: engine.extend(r, 1)):
        with pytest.raises(UnknownReceiptError):
            settle(receipt)


async def test_unknown_clients_are_rejected(engine):
    for call in (lambda: engine.heartbeat("ghost"), lambda: engine.subscribe("ghost", ["t"]),
                 lambda: engine.sync("ghost", []), lambda: engine.close_client("ghost")):
        with pytest.raises(UnknownClientError):
            call()
    with pytest.raises(UnknownClientError):
        await engine.poll("ghost")


@pytest.mark.parametrize("kwargs", [{"max_messages": 0}, {"max_messages": 5000}, {"max_messages": 1.5},
                                    {"wait": -1}, {"wait": float("nan")}, {"invisible": 0},
                                    {"invisible": float("inf")}, {"wait": "1"}])
async def test_bad_poll_and_receive_arguments_are_rejected(engine, kwargs):
    engine.open_client("c", group="g", topic="reply")
    with pytest.raises(InvalidArgumentError):
        await engine.poll("c", **kwargs)
    with pytest.raises(InvalidArgumentError):
        await engine.receive("tasks", "g", **kwargs)


async def test_a_string_is_not_a_list_of_lite_topics(engine):
    engine.open_client("c", group="g", topic="reply")
    with pytest.raises(InvalidArgumentError):
        engine.subscribe("c", "reply-1")


async def test_topic_kinds_do_not_mix(engine):
    await engine.publish("tasks", b"x")
    with pytest.raises(TopicKindError):
        await engine.publish("tasks", b"x", lite="t")
    with pytest.raises(TopicKindError):
        engine.open_client("c", group="g", topic="tasks")
    with pytest.raises(TopicKindError):
        await engine.create_topic("tasks", TopicConfig(lite=True))


async def test_rebinding_a_client_is_rejected(engine):
    engine.open_client("c", group="g", topic="reply")
    with pytest.raises(InvalidArgumentError):
        engine.open_client("c", group="other", topic="reply")


@pytest.mark.parametrize("key,value", [("", b"v"), ("k\x00", b"v"), ("k", "str"), ("k", None)])
async def test_bad_table_rows_are_rejected(engine, key, value):
    with pytest.raises(InvalidArgumentError):
        await engine.kv_put("registry", key, value)


async def test_a_dead_letter_topic_read_by_a_group_is_still_refused_as_a_lite_topic_name(engine):
    # validate_name remembers names that passed; a system name passes only where system_ok.
    await engine.receive("%DLQ%workers", "g")
    with pytest.raises(InvalidNameError):
        await engine.publish("reply", b"x", lite="%DLQ%workers")
    with pytest.raises(InvalidNameError):
        await engine.publish([], b"x")   # an unhashable name is refused, not a TypeError
