"""gateway.plain held to json_format: whatever a fast converter accepts, its result is json_format's.

Generated protos and documents cover the plain shapes (which must take the fast path) and everything
around them (metadata, other part kinds, unknown enum numbers, out-of-range timestamps, wrong JSON
types, unknown keys, surrogates, loose timestamp spellings), where the converters may decline."""

import json
from unittest import mock

import pytest
from a2a.types import a2a_pb2
from google.protobuf import json_format, timestamp_pb2
from hypothesis import HealthCheck, example, find, given, settings
from hypothesis import strategies as st

from gateway.tasks import envelope
from gateway.tasks import protojson as plain
from gateway.tasks.envelope import EnvelopeError, ReplyEvent, TaskEnvelope

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SECONDS_MIN, SECONDS_MAX = -62135596800, 253402300799

# --- strategies: protos

texts = st.one_of(st.just(""), st.text(max_size=12),
                  st.sampled_from(["t1", "hello", "how many?", "日本語", "\U0001f600", "a\x00b", "\u2028", '"\\']))
known_roles = st.sampled_from([value.number for value in a2a_pb2.Role.DESCRIPTOR.values])
known_states = st.sampled_from([value.number for value in a2a_pb2.TaskState.DESCRIPTOR.values])
nanos = st.one_of(st.integers(0, 999_999_999), st.integers(0, 999).map(lambda n: n * 1_000_000),
                  st.integers(0, 999_999).map(lambda n: n * 1000), st.sampled_from([0, 1, 999_999_999]))
valid_seconds = st.one_of(st.integers(SECONDS_MIN, SECONDS_MAX), st.integers(1_600_000_000, 1_900_000_000),
                          st.sampled_from([SECONDS_MIN, SECONDS_MAX, 0, -1, 86399, 86400, 951782400]))
any_seconds = st.one_of(valid_seconds, st.integers(-2**63, 2**63 - 1),
                        st.sampled_from([SECONDS_MIN - 1, SECONDS_MAX + 1]))
any_nanos = st.one_of(nanos, st.sampled_from([-1, 1_000_000_000, -2**31, 2**31 - 1]))


def weighted(*choices):
    """One of the strategies, each (weight, strategy) as often as its weight says (st.one_of flattens
    nested one_ofs and would draw a wide one like `wrong` below far more often)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(table.__getitem__)


def rarely(draw) -> bool:
    return draw(st.integers(0, 7)) == 0


@st.composite
def parts(draw, plain_only=False):
    part = a2a_pb2.Part()
    kind = draw(st.sampled_from(["text", "text", "none"] + ([] if plain_only else ["url", "raw", "data"])))
    if kind == "text":
        part.text = draw(texts)
    elif kind == "url":
        part.url = draw(texts)
    elif kind == "raw":
        part.raw = draw(st.binary(max_size=6))
    elif kind == "data":
        part.data.string_value = draw(texts)
    if draw(st.booleans()):
        part.filename = draw(texts)
    if draw(st.booleans()):
        part.media_type = draw(st.one_of(st.sampled_from(["text/plain", "application/json"]), texts))
    if not plain_only and rarely(draw):
        part.metadata.update({"k": draw(texts)})
    return part


@st.composite
def messages(draw, plain_only=False):
    roles = known_roles if plain_only else st.one_of(known_roles, st.integers(3, 2**31 - 1))
    message = a2a_pb2.Message(message_id=draw(texts), context_id=draw(texts), task_id=draw(texts), role=draw(roles))
    message.parts.extend(draw(st.lists(parts(plain_only), max_size=3)))
    message.extensions.extend(draw(st.lists(texts, max_size=2)))
    message.reference_task_ids.extend(draw(st.lists(texts, max_size=2)))
    if not plain_only and rarely(draw):
        message.metadata.update({"k": 1})
    return message


def set_timestamp(draw, timestamp, plain_only):
    timestamp.seconds = draw(valid_seconds if plain_only else any_seconds)
    timestamp.nanos = draw(nanos if plain_only else any_nanos)


@st.composite
def events(draw, plain_only=False):
    kinds = ["status", "status", "artifact", "artifact", "message", "task"] + ([] if plain_only else ["none"])
    kind = draw(st.sampled_from(kinds))
    event = a2a_pb2.StreamResponse()
    if kind == "status":
        update = event.status_update
        update.SetInParent()
        update.task_id, update.context_id = draw(texts), draw(texts)
        if draw(st.integers(0, 5)):
            status = update.status
            status.SetInParent()
            status.state = draw(known_states if plain_only else st.one_of(known_states, st.integers(9, 100)))
            if draw(st.booleans()):
                status.message.CopyFrom(draw(messages(plain_only)))
            if draw(st.integers(0, 3)):
                set_timestamp(draw, status.timestamp, plain_only)
        if not plain_only and rarely(draw):
            update.metadata.update({"k": "v"})
    elif kind == "artifact":
        update = event.artifact_update
        update.SetInParent()
        update.task_id, update.context_id = draw(texts), draw(texts)
        update.append, update.last_chunk = draw(st.booleans()), draw(st.booleans())
        if draw(st.integers(0, 5)):
            artifact = update.artifact
            artifact.SetInParent()
            artifact.artifact_id, artifact.name, artifact.description = draw(texts), draw(texts), draw(texts)
            artifact.parts.extend(draw(st.lists(parts(plain_only), max_size=3)))
            artifact.extensions.extend(draw(st.lists(texts, max_size=2)))
            if not plain_only and rarely(draw):
                artifact.metadata.update({"k": None})
        if not plain_only and rarely(draw):
            update.metadata.update({})
    elif kind == "message":
        event.message.CopyFrom(draw(messages(plain_only)))
    elif kind == "task":      # a bridge's snapshot of a finished remote task
        task = event.task
        task.SetInParent()
        task.id, task.context_id = draw(texts), draw(texts)
        if draw(st.integers(0, 5)):
            task.status.SetInParent()
            task.status.state = draw(known_states)
            if draw(st.integers(0, 3)):
                set_timestamp(draw, task.status.timestamp, plain_only)
        for _ in range(draw(st.integers(0, 2))):
            artifact = task.artifacts.add(artifact_id=draw(texts), name=draw(texts))
            artifact.parts.extend(draw(st.lists(parts(plain_only), max_size=2)))
        task.history.extend(draw(st.lists(messages(plain_only), max_size=2)))
        if not plain_only and rarely(draw):
            task.metadata.update({"k": "v"})
    return event


# --- strategies: documents, the plain grammar with wrong values and keys mixed in

SURROGATES = ["\ud800", "a\udc00b", "\ud83d\ude00", "x\udbff"]
wrong = st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.sampled_from([1.0, 1.5, -0.0, 2**64]),
                  st.text(max_size=4), st.sampled_from(SURROGATES + ["ROLE_USER", "TASK_STATE_WORKING", "1", "2"]),
                  st.lists(st.integers(), max_size=2), st.just([None]), st.just(["x"]), st.just({}),
                  st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
doc_texts = weighted((9, texts), (1, st.sampled_from(SURROGATES)))
loose_timestamps = st.from_regex(r"\A[0-9]{1,4}-[0-9]{1,2}-[0-9]{1,2}[Tt ][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}"
                                 r"(\.[0-9e_ -]{0,11})?([Zz]|[+-][0-9 ]{1,3}:[0-9]{1,3})?\Z")
ODD_TIMESTAMPS = ["", "Z", "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2024-02-29T00:00:00Z",
                  "0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:01",
                  "0001-01-01T00:00:00-00:01", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-00:01",
                  "9999-12-31T23:59:59+00:01", "2024-01-01T00:00:60Z", "2024-01-01T24:00:00Z",
                  "2024-01-01T23:60:00Z", "2024-13-01T00:00:00Z", "2024-00-01T00:00:00Z", "2024-01-00T00:00:00Z",
                  "2024-01-01T00:00:00.Z", "2024-01-01T00:00:00.1234567890Z", "2024-01-01T00:00:00.000000000Z",
                  "2024-01-01T00:00:00.1e-3Z", "2024-01-01T00:00:00.1_0Z", "2024-01-01T00:00:00.1 Z",
                  "2024-01-01T00:00:00.\u0661Z", "\u0662\u0660\u0662\u0664-01-01T00:00:00Z",
                  "\uff12\uff10\uff12\uff14-01-01T00:00:00Z", "2024-01-01t00:00:00Z", "2024-01-01T00:00:00z",
                  "2024-01-01 00:00:00Z", "2024-01-01T00:00:00", "2024-01-01T00:00:00Z\n", "2024-01-01T00:00:00ZZ",
                  "2024-01-01T00:00:00+08:00", "2024-01-01T00:00:00-05:30", "2024-01-01T00:00:00+99:99",
                  "2024-01-01T00:00:00+8:00", "2024-01-01T00:00:00+ 8:00", "2024-01-01T00:00:00+0800",
                  "2024-01-01T00:00:00.5+08:00Z", "2024-1-1T1:1:1Z", "+2024-01-01T00:00:00Z",
                  "2024-01-01T00:00:00.123+08:00", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.999999999Z"]


def _rfc3339(seconds: int, nanos_: int, digits: int, offset_minutes: int | None) -> str:
    timestamp = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos_)
    text = timestamp.ToJsonString()[:19]
    fraction = f"{nanos_:09d}"[:digits]
    zone = "Z" if offset_minutes is None else \
        f"{'-' if offset_minutes < 0 else '+'}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    return text + ("." + fraction if digits else "") + zone


strict_timestamps = st.builds(_rfc3339, valid_seconds, nanos, st.integers(0, 9),
                              st.one_of(st.none(), st.integers(-5999, 5999)))
written_timestamps = st.builds(lambda s, n: timestamp_pb2.Timestamp(seconds=s, nanos=n).ToJsonString(),
                               valid_seconds, nanos)
timestamp_strings = weighted((3, written_timestamps), (3, strict_timestamps), (1, loose_timestamps),
                             (1, st.sampled_from(ODD_TIMESTAMPS)), (1, st.text(max_size=30)))


def sometimes_wrong(good):
    return weighted((9, good), (1, wrong))


def objects(fields: dict, extra_keys: list[str]):
    """Dicts with any of fields (a value sometimes wrong), now and then one key of extra_keys."""
    base = st.fixed_dictionaries({}, optional={k: sometimes_wrong(v) for k, v in fields.items()})
    extra = weighted((7, st.just({})), (1, st.builds(lambda k, v: {k: v}, st.sampled_from(extra_keys), wrong)))
    return st.builds(lambda b, e: {**b, **e}, base, extra)


part_docs = objects({"text": doc_texts, "filename": doc_texts, "mediaType": doc_texts},
                    ["url", "raw", "data", "metadata", "media_type", "unknown"])
message_docs = objects({"messageId": doc_texts, "contextId": doc_texts, "taskId": doc_texts,
                        "role": st.sampled_from([v.name for v in a2a_pb2.Role.DESCRIPTOR.values] + ["ROLE_NOPE"]),
                        "parts": st.lists(sometimes_wrong(part_docs), max_size=3),
                        "extensions": st.lists(sometimes_wrong(doc_texts), max_size=2),
                        "referenceTaskIds": st.lists(sometimes_wrong(doc_texts), max_size=2)},
                       ["message_id", "metadata", "role", "unknown"])
state_names = st.sampled_from([v.name for v in a2a_pb2.TaskState.DESCRIPTOR.values] + ["TASK_STATE_NOPE"])
status_docs = objects({"state": state_names, "message": message_docs, "timestamp": timestamp_strings},
                      ["update", "unknown"])
status_update_docs = objects({"taskId": doc_texts, "contextId": doc_texts, "status": status_docs},
                             ["task_id", "metadata", "final", "unknown"])
artifact_docs = objects({"artifactId": doc_texts, "name": doc_texts, "description": doc_texts,
                         "parts": st.lists(sometimes_wrong(part_docs), max_size=3),
                         "extensions": st.lists(sometimes_wrong(doc_texts), max_size=2)},
                        ["artifact_id", "metadata", "unknown"])
artifact_update_docs = objects({"taskId": doc_texts, "contextId": doc_texts, "artifact": artifact_docs,
                                "append": st.booleans(), "lastChunk": st.booleans()},
                               ["last_chunk", "metadata", "unknown"])
event_docs = weighted(
    (3, st.fixed_dictionaries({"statusUpdate": status_update_docs})),
    (3, st.fixed_dictionaries({"artifactUpdate": artifact_update_docs})),
    (2, st.fixed_dictionaries({"message": message_docs})),
    (1, st.builds(lambda a, b: {**a, **b}, st.fixed_dictionaries({"statusUpdate": status_update_docs}),
                  st.fixed_dictionaries({}, optional={"message": message_docs, "status_update": st.just({}),
                                                      "task": st.just({}), "unknown": wrong}))),
    (1, st.fixed_dictionaries({}, optional={"task": st.just({"id": "t"}), "unknown": wrong})), (1, wrong))

ALL_KEYS = sorted({f.json_name for t in (a2a_pb2.StreamResponse, a2a_pb2.TaskStatusUpdateEvent, a2a_pb2.TaskStatus,
                                         a2a_pb2.TaskArtifactUpdateEvent, a2a_pb2.Artifact, a2a_pb2.Message,
                                         a2a_pb2.Part) for f in t.DESCRIPTOR.fields} | {"message_id", "unknown"})
leaf_values = weighted((3, wrong), (2, doc_texts), (2, timestamp_strings), (1, state_names),
                       (1, st.sampled_from(["ROLE_USER", "ROLE_AGENT"])), (1, st.just({"text": "x"})),
                       (1, st.just([{"text": "x"}])))


@st.composite
def mutated(draw, docs):
    """A document of docs with one change: a value replaced or removed, a key or list item added."""
    doc = json.loads(json.dumps(draw(docs)))
    nodes = []

    def walk(node):
        if isinstance(node, (dict, list)):
            nodes.append(node)
            for child in (node.values() if isinstance(node, dict) else node):
                walk(child)
    walk(doc)
    node = draw(st.sampled_from(nodes))
    action = draw(st.sampled_from(["replace", "remove", "add"])) if node else "add"
    if isinstance(node, dict):
        if action == "add":
            node[draw(st.sampled_from(ALL_KEYS))] = draw(leaf_values)
        else:
            key = draw(st.sampled_from(sorted(node)))
            if action == "replace":
                node[key] = draw(leaf_values)
            else:
                del node[key]
    elif action == "add":
        node.append(draw(leaf_values))
    else:
        index = draw(st.integers(0, len(node) - 1))
        if action == "replace":
            node[index] = draw(leaf_values)
        else:
            del node[index]
    return doc


plain_event_docs = events(plain_only=True).map(json_format.MessageToDict)
event_doc_cases = weighted((2, event_docs), (1, plain_event_docs), (2, mutated(plain_event_docs)))
message_doc_cases = weighted((4, message_docs), (1, wrong),
                             (3, mutated(messages(plain_only=True).map(json_format.MessageToDict))))

# --- the reference: json_format


def reference_to_dict(message):
    try:
        return json_format.MessageToDict(message)
    except Exception as e:     # an invalid timestamp: SerializeToJsonError / ValueError
        return e


def reference_parse(doc, cls):
    try:
        return json_format.ParseDict(doc, cls(), ignore_unknown_fields=True)
    except Exception as e:
        return e


def assert_same_dict(fast, expected):
    assert not isinstance(expected, Exception), (fast, expected)
    assert fast == expected
    assert json.dumps(fast) == json.dumps(expected)         # key order too: the same bytes on the wire


def assert_same_proto(fast, expected, doc, cls):
    assert not isinstance(expected, Exception), (doc, fast, expected)
    assert fast == expected
    assert fast.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)  # presence
    assert fast == json_format.ParseDict(doc, cls())         # nothing unknown was ignored


# --- timestamps


@SETTINGS
@given(any_seconds, any_nanos)
@example(SECONDS_MIN, 0)
@example(SECONDS_MAX, 999_999_999)
@example(SECONDS_MIN - 1, 0)
@example(SECONDS_MAX + 1, 0)
@example(0, -1)
@example(0, 1_000_000_000)
def test_timestamp_to_json_is_to_json_string(seconds, nanos_):
    try:
        expected = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos_).ToJsonString()
    except ValueError:
        expected = None
    assert plain.timestamp_to_json(seconds, nanos_) == expected
    assert plain.timestamp_to_json(seconds, nanos_) == expected     # again, from the caches


def from_json_string(value):
    timestamp = timestamp_pb2.Timestamp()
    try:
        timestamp.FromJsonString(value)
    except (ValueError, TypeError):
        return None
    return timestamp.seconds, timestamp.nanos


def check_timestamp_from_json(value):
    for _ in range(2):          # the second time the date and time may be cached
        fast = plain.timestamp_from_json(value)
        assert fast is None or fast == from_json_string(value), value


@SETTINGS
@given(weighted((5, timestamp_strings), (1, wrong)))
def test_timestamp_from_json_is_from_json_string(value):
    check_timestamp_from_json(value)


@pytest.mark.parametrize("value", ODD_TIMESTAMPS)
def test_odd_timestamps_are_read_as_from_json_string_reads_them_or_left_to_it(value):
    check_timestamp_from_json(value)


@SETTINGS
@given(valid_seconds, nanos, st.sampled_from(["", "Z", ".Z", ".1Z", ".123456789Z", ".1234567890Z", "z", ".\u0661Z",
                                               "+01:00", "-01:30", " Z", "Z ", ".12a4Z", ".1", "Z\n", ".-1Z", ".+1Z"]))
def test_a_cached_date_and_time_takes_only_what_from_json_string_reads_the_same(seconds, nanos_, suffix):
    text = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos_).ToJsonString()
    assert plain.timestamp_from_json(text) == (seconds, nanos_)
    value = text[:19] + suffix
    fast = plain.timestamp_from_json(value)
    assert fast is None or fast == from_json_string(value), value


@SETTINGS
@given(strict_timestamps)
def test_what_to_json_string_writes_and_strict_offsets_take_the_fast_path(value):
    expected = from_json_string(value)
    if expected is not None:        # an offset can move the time out of range
        assert plain.timestamp_from_json(value) == expected


def test_fractions_of_up_to_nine_digits_are_read_as_from_json_string_reads_them():
    fractions = [f"{n:0{d}d}" for d in (1, 2, 3) for n in range(10 ** d)]
    fractions += [f"{n:09d}" for n in range(0, 1_000_000_000, 7_654_321)] + ["999999999", "000000001", "5" * 7]
    for fraction in fractions:
        value = f"2024-05-06T07:08:09.{fraction}Z"
        assert plain.timestamp_from_json(value) == from_json_string(value), value


# --- messages and events, both ways


@SETTINGS
@given(messages())
def test_message_to_dict_is_message_to_dict(message):
    fast = plain.message_to_dict(message)
    if fast is not None:
        assert_same_dict(fast, reference_to_dict(message))


@SETTINGS
@given(messages(plain_only=True))
def test_plain_messages_take_the_fast_path_both_ways(message):
    doc = plain.message_to_dict(message)
    assert_same_dict(doc, reference_to_dict(message))
    parsed = plain.message_from_dict(doc)
    assert parsed is not None
    assert_same_proto(parsed, reference_parse(doc, a2a_pb2.Message), doc, a2a_pb2.Message)
    assert parsed == message


@SETTINGS
@given(message_doc_cases)
def test_message_from_dict_is_parse_dict(doc):
    fast = plain.message_from_dict(doc)
    if fast is not None:
        assert_same_proto(fast, reference_parse(doc, a2a_pb2.Message), doc, a2a_pb2.Message)


@SETTINGS
@given(events())
def test_event_to_dict_is_message_to_dict(event):
    fast = plain.event_to_dict(event)
    if fast is not None:
        assert_same_dict(fast, reference_to_dict(event))
    parsed = plain.event_from_dict(fast if fast is not None else reference_to_dict(event))
    if parsed is not None:
        assert parsed == event


@SETTINGS
@given(events(plain_only=True))
def test_plain_events_take_the_fast_path_both_ways(event):
    doc = plain.event_to_dict(event)
    assert_same_dict(doc, reference_to_dict(event))
    parsed = plain.event_from_dict(doc)
    assert parsed is not None
    assert_same_proto(parsed, reference_parse(doc, a2a_pb2.StreamResponse), doc, a2a_pb2.StreamResponse)
    assert parsed == event


@SETTINGS
@given(event_doc_cases)
def test_event_from_dict_is_parse_dict(doc):
    fast = plain.event_from_dict(doc)
    if fast is not None:
        assert_same_proto(fast, reference_parse(doc, a2a_pb2.StreamResponse), doc, a2a_pb2.StreamResponse)


@pytest.mark.parametrize("shape", ["status", "artifact", "refused"])
def test_the_document_grammar_reaches_the_fast_path_and_beyond_it(shape):
    """The generated documents are neither all refused nor all accepted: the property above tests something."""
    def found(doc):
        event = plain.event_from_dict(doc)
        if shape == "refused":
            return event is None and type(doc) is dict and type(doc.get("statusUpdate")) is dict \
                and type(doc["statusUpdate"].get("status")) is dict
        if shape == "status":
            return event is not None and event.status_update.status.HasField("timestamp") \
                and len(event.status_update.status.message.parts) > 0
        return event is not None and len(event.artifact_update.artifact.parts) > 1
    find(event_doc_cases, found, settings=settings(max_examples=5000, database=None))


@pytest.mark.parametrize("doc", [
    {"message": {"parts": [{"text": "a", "url": None}]}},          # json_format: null clears, not a second oneof
    {"message": {"parts": ["x"]}}, {"message": {"role": 1.5}}, {"message": {"role": 1}}, {"message": {"role": "1"}},
    {"message": {"role": None}}, {"message": {"messageId": None}}, {"message": {"extensions": "ab"}},
    {"message": {"extensions": [None]}}, {"message": {"parts": [None]}}, {"message": {"parts": [{"text": 5}]}},
    {"message": {"parts": [{"text": "\ud800"}]}}, {"message": {"messageId": "\ud83d\ude00"}},
    {"message": {"message_id": "m"}}, {"message": {"messageId": "m", "message_id": "m"}},
    {"statusUpdate": {"status": 5}}, {"statusUpdate": {"status": None}}, {"statusUpdate": {"status": {"state": 3}}},
    {"statusUpdate": {"status": {"timestamp": None}}}, {"statusUpdate": {"status": {"timestamp": "2024-1-1T1:1:1Z"}}},
    {"statusUpdate": {"status": {"message": None}}}, {"statusUpdate": {"metadata": {}}},
    {"artifactUpdate": {"append": 1}}, {"artifactUpdate": {"lastChunk": "true"}}, {"artifactUpdate": {"artifact": []}},
    {"artifactUpdate": {"artifact": {"parts": [{"raw": "AA=="}]}}},
    {"statusUpdate": {}, "message": {}}, {"status_update": {}}, {"task": {"metadata": {}}}, {}, [], None])
def test_documents_json_format_reads_differently_or_refuses_are_left_to_it(doc):
    assert plain.event_from_dict(doc) is None


def test_enum_names_are_json_formats():
    for value in a2a_pb2.Role.DESCRIPTOR.values:
        message = a2a_pb2.Message(role=value.number)
        assert plain.message_to_dict(message) == json_format.MessageToDict(message)
    for value in a2a_pb2.TaskState.DESCRIPTOR.values:
        event = a2a_pb2.StreamResponse(status_update=a2a_pb2.TaskStatusUpdateEvent(
            status=a2a_pb2.TaskStatus(state=value.number)))
        assert plain.event_to_dict(event) == json_format.MessageToDict(event)


# --- wired into the documents: the same bytes and the same events as through json_format


def worker_events():
    """The events gateway/worker.py's TaskContext publishes, built as it builds them."""
    def status(state, text=None):
        update = a2a_pb2.TaskStatusUpdateEvent(task_id="t-1", context_id="c-1")
        update.status.state = state
        update.status.timestamp.GetCurrentTime()
        if text is not None:
            update.status.message.CopyFrom(a2a_pb2.Message(
                message_id="0123456789abcdef", role=a2a_pb2.ROLE_AGENT, task_id="t-1", context_id="c-1",
                parts=[a2a_pb2.Part(text=text)]))
        return a2a_pb2.StreamResponse(status_update=update)

    def artifact(text, name, append=False, last_chunk=True):
        art = a2a_pb2.Artifact(artifact_id="artifact-0", name=name, parts=[a2a_pb2.Part(text=text)])
        return a2a_pb2.StreamResponse(artifact_update=a2a_pb2.TaskArtifactUpdateEvent(
            task_id="t-1", context_id="c-1", artifact=art, append=append, last_chunk=last_chunk))

    return [status(a2a_pb2.TASK_STATE_WORKING), status(a2a_pb2.TASK_STATE_WORKING, "thinking"),
            status(a2a_pb2.TASK_STATE_INPUT_REQUIRED, "how many?"), status(a2a_pb2.TASK_STATE_FAILED, "boom"),
            status(a2a_pb2.TASK_STATE_COMPLETED), artifact("echo: hello", "echo"), artifact("", "result"),
            artifact("part 2", "stream", append=True, last_chunk=False)]


@pytest.mark.parametrize("event", worker_events(), ids=str)
def test_a_workers_events_take_the_fast_path(event):
    doc = plain.event_to_dict(event)
    assert doc == json_format.MessageToDict(event)
    assert plain.event_from_dict(json.loads(json.dumps(doc))) == event


def without_fast_path():
    none = mock.Mock(return_value=None)
    return mock.patch.multiple(plain, message_to_dict=none, message_from_dict=none, event_to_dict=none,
                               event_from_dict=none)


def outcome(call):
    try:
        return call()
    except Exception as e:
        return type(e), str(e)


@SETTINGS
@given(events(), st.integers(0, 3))
def test_reply_events_encode_to_the_bytes_json_format_gives(event, turn):
    reply = ReplyEvent("t1", 1, 2, event, False, turn)
    fast = outcome(reply.encode)
    with without_fast_path():
        assert fast == outcome(reply.encode)


@SETTINGS
@given(event_doc_cases)
def test_reply_events_decode_to_what_json_format_gives(event_doc):
    raw = json.dumps({"version": 1, "task_id": "t1", "attempt": 1, "seq": 0, "event": event_doc}).encode()
    fast = outcome(lambda: ReplyEvent.decode(raw))
    with without_fast_path():
        assert fast == outcome(lambda: ReplyEvent.decode(raw))


@SETTINGS
@given(messages(), st.lists(messages(), max_size=2), st.integers(0, 2))
def test_task_envelopes_encode_and_decode_as_through_json_format(message, history, turn):
    task = TaskEnvelope("t1", "c1", "echo", message, created=1.5, turn=turn, history=history)
    raw = outcome(task.encode)
    with without_fast_path():
        assert raw == outcome(task.encode)
    if isinstance(raw, bytes):
        fast = outcome(lambda: TaskEnvelope.decode(raw))
        with without_fast_path():
            assert fast == outcome(lambda: TaskEnvelope.decode(raw))


@SETTINGS
@given(message_doc_cases, st.lists(message_doc_cases, max_size=2))
def test_task_envelope_documents_decode_as_through_json_format(message_doc, history_docs):
    doc = json.loads(TaskEnvelope("t1", "c1", "echo", a2a_pb2.Message(), created=1.5, turn=1).encode())
    raw = json.dumps({**doc, "message": message_doc, "history": history_docs}).encode()
    fast = outcome(lambda: TaskEnvelope.decode(raw))
    with without_fast_path():
        assert fast == outcome(lambda: TaskEnvelope.decode(raw))


def test_a_document_json_format_refuses_is_still_refused_with_its_reason():
    raw = json.dumps({"version": 1, "task_id": "t1", "attempt": 1, "seq": 0,
                      "event": {"statusUpdate": {"status": {"timestamp": "2024-02-30T00:00:00Z"}}}}).encode()
    with pytest.raises(EnvelopeError, match="day is out of range"):
        ReplyEvent.decode(raw)
    assert envelope.plain is plain
