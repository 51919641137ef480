"""The documents that cross the backend: round trips, and the fast validity checks held to the schemas."""

import json

import pytest
from a2a.types import a2a_pb2
from google.protobuf import json_format

from gateway.tasks import envelope
from gateway.tasks import protojson as plain
from gateway.tasks.envelope import EnvelopeError, ReplyEvent, TaskEnvelope

WRONG_VALUES = [None, True, False, 0, 1, -1, 1.0, 1.5, "", "x", "bad id!", "x" * 300, [], [1], {}, {"a": 1},
                {"topic": "t", "lite_topic": "l"}, {"parts": []}, {"task": {}}, {"task": {}, "message": {}},
                {"task": 1}, {"k": 1}, {"k": "v"}]


def envelope_doc(turn: int = 1) -> dict:
    """A continuation's envelope by default: it has every field."""
    message = a2a_pb2.Message(message_id="m1", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text="hi")])
    question = a2a_pb2.Message(message_id="q1", role=a2a_pb2.ROLE_AGENT, parts=[a2a_pb2.Part(text="which?")])
    return json.loads(TaskEnvelope("t1", "c1", "echo", message, deadline=5.0, trace={"traceparent": "00"},
                                   metadata={"a": 1}, turn=turn, history=[message, question]).encode())


def reply_doc(turn: int = 1) -> dict:
    update = a2a_pb2.TaskStatusUpdateEvent(task_id="t1", context_id="c1")
    update.status.state = a2a_pb2.TASK_STATE_COMPLETED
    return json.loads(ReplyEvent("t1", 1, 0, a2a_pb2.StreamResponse(status_update=update), True, turn).encode())


def variants(doc: dict):
    """The document with each key removed, replaced by each wrong value, plus an unknown key."""
    yield doc
    yield {**doc, "unknown": 1}
    for key in doc:
        yield {k: v for k, v in doc.items() if k != key}
        for value in WRONG_VALUES:
            yield {**doc, key: value}
        if isinstance(doc[key], dict):
            for inner in doc[key]:
                for value in WRONG_VALUES:
                    yield {**doc, key: {**doc[key], inner: value}}


CASES = [("task-envelope", envelope._envelope_valid, envelope_doc()), ("reply-event", envelope._reply_valid, reply_doc())]


@pytest.mark.parametrize("kind, fast, doc", CASES, ids=[c[0] for c in CASES])
def test_the_fast_check_accepts_only_documents_its_schema_accepts(kind, fast, doc):
    validator = envelope._validator(kind)
    taken = 0
    for variant in variants(doc):
        if fast(variant):
            taken += 1
            assert validator.is_valid(variant), variant
    assert fast(doc) and taken > 1


@pytest.mark.parametrize("kind, fast, doc", CASES, ids=[c[0] for c in CASES])
def test_documents_the_fast_check_is_too_strict_for_are_still_accepted(kind, fast, doc):
    doc = {**doc, "version": 1.0}
    assert not fast(doc) and envelope._load(kind, json.dumps(doc).encode()) == doc


def test_a_bad_envelope_is_refused_with_where_and_why():
    with pytest.raises(EnvelopeError, match=r"at task_id: .* does not match"):
        TaskEnvelope.decode(json.dumps({**envelope_doc(), "task_id": "bad id!"}).encode())


def test_a_reply_event_with_two_payloads_is_refused():
    doc = reply_doc()
    doc["event"]["message"] = {}
    with pytest.raises(EnvelopeError, match="at event"):
        ReplyEvent.decode(json.dumps(doc).encode())


def test_envelope_and_reply_event_round_trip():
    decoded = TaskEnvelope.decode(json.dumps(envelope_doc()).encode())
    assert (decoded.task_id, decoded.capability, decoded.message.parts[0].text, decoded.deadline) == \
        ("t1", "echo", "hi", 5.0)
    assert decoded.turn == 1 and [m.message_id for m in decoded.history] == ["m1", "q1"]
    event = ReplyEvent.decode(json.dumps(reply_doc()).encode())
    assert event.final and event.position == (1, 1, 0)
    assert event.event.status_update.status.state == a2a_pb2.TASK_STATE_COMPLETED


def test_a_first_turn_writes_no_turn_and_documents_without_one_are_turn_0():
    first, event = envelope_doc(turn=0), reply_doc(turn=0)
    assert "turn" not in first and "history" not in first and "turn" not in event   # as readers without turns expect
    old_reply = {"version": 1, "task_id": "t1", "attempt": 2, "seq": 3, "final": False,
                 "event": {"statusUpdate": {"taskId": "t1", "status": {"state": "TASK_STATE_WORKING"}}}}
    decoded = ReplyEvent.decode(json.dumps(old_reply).encode())
    assert decoded.turn == 0 and decoded.position == (0, 2, 3)
    assert decoded.position < ReplyEvent.decode(json.dumps(reply_doc(turn=1)).encode()).position
    envelope = TaskEnvelope.decode(json.dumps(first).encode())
    assert envelope.turn == 0 and envelope.history == []


@pytest.mark.parametrize("kind, doc", [("task-envelope", {**envelope_doc(), "turn": -1}),
                                       ("task-envelope", {**envelope_doc(), "history": [1]}),
                                       ("reply-event", {**reply_doc(), "turn": "1"})])
def test_a_bad_turn_or_history_is_refused(kind, doc):
    with pytest.raises(EnvelopeError):
        envelope._load(kind, json.dumps(doc).encode())


def status_events():
    for state in (a2a_pb2.TASK_STATE_UNSPECIFIED, a2a_pb2.TASK_STATE_WORKING, a2a_pb2.TASK_STATE_COMPLETED):
        for ids in (("t1", "c1"), ("", "")):
            for stamped in (True, False):
                update = a2a_pb2.TaskStatusUpdateEvent(task_id=ids[0], context_id=ids[1])
                update.status.state = state
                if stamped:
                    update.status.timestamp.GetCurrentTime()
                yield a2a_pb2.StreamResponse(status_update=update)
    yield a2a_pb2.StreamResponse(status_update=a2a_pb2.TaskStatusUpdateEvent(task_id="t1"))   # no status at all
    with_message = a2a_pb2.TaskStatusUpdateEvent(task_id="t1")
    with_message.status.message.parts.add(text="why")
    yield a2a_pb2.StreamResponse(status_update=with_message)
    yield a2a_pb2.StreamResponse(message=a2a_pb2.Message(message_id="m1"))


@pytest.mark.parametrize("event", list(status_events()), ids=str)
def test_the_status_update_shortcut_matches_json_format_both_ways(event):
    expected = json_format.MessageToDict(event)
    fast = plain.event_to_dict(event)
    assert fast is None or fast == expected
    parsed = plain.event_from_dict(expected)
    assert parsed is None or parsed == json_format.ParseDict(expected, a2a_pb2.StreamResponse())


def test_a_workers_status_update_takes_the_shortcut():
    event = next(status_events())
    assert plain.event_to_dict(event) is not None
    assert plain.event_from_dict(json_format.MessageToDict(event)) is not None


@pytest.mark.parametrize("status", [{"state": "TASK_STATE_NOPE"}, {"state": 3}, {"state": ["x"]},
                                    {"timestamp": "yesterday"}, {"timestamp": 5}, {"other": 1}, None])
def test_status_updates_the_shortcut_does_not_know_go_through_json_format(status):
    assert plain.event_from_dict({"statusUpdate": {"taskId": "t1", "status": status}}) is None


@pytest.mark.parametrize("doc", [
    {"a": 1, "b": [1, 2.5, None, True, False, "é\u2028\"x\\"], "c": {"d": {}}, "e": []},
    {"nan": float("nan"), "inf": float("inf"), "-inf": -float("inf"), "big": 10**30, "tiny": 1e-300},
    {1: 2, 2.5: 3, None: 4, True: 5, "tuple": (1, 2)}, [], "text", 3])
def test_documents_are_written_exactly_as_the_compact_json_encoder_writes_them(doc):
    assert envelope._dump(doc) == json.JSONEncoder(separators=(",", ":")).encode(doc).encode()


def test_a_value_json_cannot_write_fails_as_it_does_in_the_json_encoder():
    with pytest.raises(TypeError, match="Object of type object is not JSON serializable"):
        envelope._dump({"x": object()})
